"""chatcli batch: many one-shot asks from a file, run here N at a time (--via local) or through the
provider's Batch API (--via api), each row's result kept as it comes, joined back in input order.

`run` is here; the other actions (status, wait, fetch, cancel, list, retry) and the Batch API's
submit are cli/batch_api.py's. Every row is sent as a one-shot ask
would send it: the config, the profile and the flags make one Spec that each row's body shares.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

from chatcli.base.errors import EXIT_INTERRUPTED, ChatError, UsageError
from chatcli.base.parse import whole_number, whole_number_in
from chatcli.base.text import for_stream, json_text, shown, strip_controls
from chatcli.cli.flags import SUBCOMMANDS, add_flags, request_log, setting_type

if TYPE_CHECKING:
    from chatcli.base.env import Env
    from chatcli.batch.inputs import Row
    from chatcli.batch.requests import Spec
    from chatcli.cli.schema import Schema
    from chatcli.config.settings import Config
    from chatcli.core.session import Session
    from chatcli.store.batches import Batches, Job

VIA = ("api", "local")
DEFAULT_JOBS = 4
MAX_JOBS = 256
GLOBAL = SUBCOMMANDS["batch"]  # the global flags batch takes, before or after its action

EXAMPLES = """\
examples:
  chatcli batch run prompts.txt                     one prompt a line; results as JSON lines on stdout
  chatcli batch run rows.jsonl --output out.jsonl   {"id": ..., "prompt"|"messages"|"vars": ...} a line
  chatcli batch run data.csv --prompt-template 'Summarize: {{text}}' -m gpt-4o-mini
  chatcli batch run prompts.txt --via local -j 16   16 requests at once, from here
  chatcli batch run prompts.txt --dry-run           the requests, tokens, cost and first body; nothing sent
  chatcli batch status 3                            a job sent to the Batch API (also: wait, fetch, cancel)

Running the same command again finds its job and sends only the rows not done yet (after a
Ctrl-C, a cap reached or kill -9 alike). Exit codes: 0 every row succeeded, 1 any did not.
"""


jobs_count = whole_number_in(1, MAX_JOBS, f"a whole number from 1 to {MAX_JOBS}")  # -j: requests at once


def build_batch_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(prog="chatcli batch", description="Many one-shot asks from a .txt, .jsonl or .csv file, "
                          "run here N at a time or through the provider's Batch API; results in input order.",
                          epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, GLOBAL)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    p = sub.add_parser("run", help="send every row of INPUT; results as JSON lines in input order",
                       description="Send every row of INPUT as a one-shot ask would send it, and write one JSON "
                       "line per row, in input order: id, status, reply, parsed, usage, cost_usd, error.")
    p.add_argument("input", metavar="INPUT", help="a .txt (a prompt a line), .jsonl (id, and prompt, messages or "
                   "vars) or .csv file (its columns fill --prompt-template)")
    p.add_argument("--via", choices=VIA, help="api: the provider's Batch API (half price, results within 24h); "
                   "local: from here, -j at a time (default: api where the server has one)")
    p.add_argument("-j", "--jobs", type=jobs_count, default=DEFAULT_JOBS, metavar="N",
                   help=f"--via local: requests at once, 1 to {MAX_JOBS} (default {DEFAULT_JOBS})")
    p.add_argument("--output", metavar="FILE", help="write the result lines here instead of stdout")
    p.add_argument("--prompt-template", metavar="T", help="each row's prompt, its {{column}}s filled from the row "
                   "(.csv columns, .jsonl vars; {{prompt}} for a .txt line or a .jsonl prompt)")
    p.add_argument("--dry-run", action="store_true", help="print the request count, the token and cost estimate "
                   "and the first request; send nothing")
    p.add_argument("--wait", action="store_true", help="--via api: wait for the job and write its results")
    p.add_argument("--cache", action="store_true", help="answer rows from the response cache, and keep their replies in it: "
                   "requests with temperature 0 or a seed only, unless the config says cache_any = true (also: cache = true)")
    p.add_argument("-s", "--system", type=setting_type("system"), help="system prompt for every row")
    p.add_argument("-m", "--model", type=setting_type("model"), help="model name")
    p.add_argument("-t", "--temperature", type=setting_type("temperature"), help="sampling temperature, 0 to 2")
    p.add_argument("--max-tokens", type=setting_type("max_tokens"), metavar="N", help="longest reply, in tokens")
    p.add_argument("-o", "--option", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a request parameter, as /set does: -o top_p 0.9 -o seed 42 (repeatable)")
    p.add_argument("--schema", metavar="PATH", help="ask each row for JSON matching the JSON Schema in PATH; "
                   "a reply that does not match is a failed row")
    from chatcli.cli.batch_api import add_api_actions  # lazy: only for chatcli batch

    add_api_actions(sub)  # status, wait, fetch, cancel, list, retry
    for action in sub.choices.values():  # chatcli batch run X --db Y, as well as chatcli --db Y batch run X
        add_flags(action, GLOBAL, again=True)
    return parser


def run_batch(args: argparse.Namespace, env: Env) -> int:
    if args.action == "run":
        return run(args, env)
    from chatcli.cli.batch_api import ACTIONS  # lazy: only for chatcli batch

    # list, status and fetch read the database (status and fetch ask the server about a Batch API job);
    # wait, cancel and retry always talk to the server, so they need the key.
    config = _config(args, env, flags={}, needs_key=args.action in ("wait", "cancel", "retry"))
    with request_log(args, env, config):
        return ACTIONS[args.action](args, env, config)


def _config(args: argparse.Namespace, env: Env, *, flags: dict[str, Any], needs_key: bool = True) -> Config:
    """The config as a one-shot ask loads it, with these flags and batch's own (--base-url, --db, -p)."""
    from chatcli.base.secrets import know  # lazy: off the path of chatcli --help
    from chatcli.config.settings import load_config, require_api_key  # lazy: off the path of chatcli --help

    config = load_config(env, config_path=args.config,
                         flags={**flags, "base_url": args.base_url, "db": args.db, "profile": args.profile})
    know(config)
    for warning in config.warnings:
        _say(env, f"warning: {warning}")
    if needs_key:
        require_api_key(config)
    return config


def run(args: argparse.Namespace, env: Env) -> int:
    """batch run: the rows, the spec, then a dry run, the Batch API, or the local runner."""
    from chatcli.batch.inputs import read_rows  # lazy: off the path of chatcli --help

    schema = None
    if args.schema is not None:  # a bad schema file is a bad command line: said before anything else
        from chatcli.cli.schema import load_schema  # lazy: off the path of chatcli --help

        schema = load_schema(args.schema)
    if args.output is not None and not Path(args.output).expanduser().parent.is_dir():
        raise UsageError(f"--output {strip_controls(args.output)}: its folder does not exist; make it, or name another.")
    flags = {"model": args.model, "system": args.system, "temperature": args.temperature,
             "max_tokens": args.max_tokens}
    config = _config(args, env, flags=flags)
    rows = read_rows(Path(args.input).expanduser(), template=args.prompt_template)
    with request_log(args, env, config):
        session = build_session_for(args, env, config)
        spec = spec_of(session, schema, say=lambda sentence: _say(env, sentence))
        if args.dry_run:  # asks the server nothing, not even whether it has a Batch API
            return dry_run(args, env, config, session, spec, rows, via=args.via)
        named = args.via is not None  # else the server is asked, and the opening says why the rows run here
        if choose_via(args, config, session) == "api":
            return run_api(args, env, config, session, spec, rows, schema=schema, named=named)
        return run_local(args, env, config, session, spec, rows, schema=schema, named=named)


def choose_via(args: argparse.Namespace, config: Config, session: Session) -> str:
    """--via, or else where the job runs: the Batch API where the server has one (a probe), else here."""
    if args.via:
        return args.via
    from chatcli.llm.batches import has_batch_api  # lazy: off the path of chatcli --help

    return "api" if has_batch_api(config, session.sender) else "local"


def build_session_for(args: argparse.Namespace, env: Env, config: Config) -> Session:
    """A session as a one-shot ask starts one (the config's model, system prompt, temperature and
    max_tokens, then -o as /set does it), for its settings and its client; it keeps no history."""
    from chatcli.app import build_session  # lazy: off the path of chatcli --help
    from chatcli.cli.inputs import as_commands  # lazy: off the path of chatcli --help
    from chatcli.core.conversation import Conversation  # lazy: off the path of chatcli --help

    params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
    conversation = Conversation(model=config.model, system=config.system,
                                params={k: v for k, v in params.items() if v is not None})
    session = build_session(config, conversation)
    session.model_chosen = config.model_set
    if session.system and session.redact:
        redacted = session.set_system(session.system)
        if redacted is not None:
            _say(env, f"{redacted}.")
    as_commands(session, SimpleNamespace(option=args.option, file=None, image=None))
    if not session.model_chosen and not args.dry_run:
        session.settle(wait=config.connect_timeout)  # no model configured: the server's own, as a one-shot ask takes
    return session


def spec_of(session: Session, schema: Schema | None, *, say: Callable[[str], None]) -> Spec:
    """What every row is sent with: the session's model, system prompt and parameters, fitted to
    what the model takes (as each one-shot request is), and --schema's response_format."""
    from chatcli.batch.requests import Spec  # lazy: off the path of chatcli --help
    from chatcli.core.attachments import wire_params  # lazy: off the path of chatcli --help

    params, notices = session.sender.adapter.fit(session.model, wire_params(session.params))
    for notice in notices:
        say(f"{notice}.")
    return Spec(model=session.model, system=session.system, params=params,
                response_format=schema.response_format() if schema is not None else None, redact=session.redact)


def dry_run(args: argparse.Namespace, env: Env, config: Config, session: Session, spec: Spec, rows: list[Row], *,
            via: str | None) -> int:
    """The request count, the token and cost estimate and the first request; nothing is sent. Without
    --via, the server is not even asked whether it has a Batch API."""
    from chatcli.batch.estimate import estimate  # lazy: off the path of chatcli --help
    from chatcli.batch.requests import body_of  # lazy: off the path of chatcli --help

    bodies = [(row.id, body_of(row, spec)) for row in rows]
    guess = estimate(bodies, tokenizer=session.tokenizer, pricing=session.accounts.pricing, model=spec.model,
                     batch=via == "api")
    where = {"local": f"here, {args.jobs} at a time", "api": "through the Batch API"}.get(
        via, f"through the Batch API if the server has one (else here, {args.jobs} at a time; --via chooses)")
    model = [] if session.model_chosen else [  # a run asks the server first, as a one-shot ask does; this did not
        f"model: {spec.model} is chatcli's default; a run takes the server's own instead if it does not list it"]
    lines = [f"batch: {len(rows):,} row{'s' if len(rows) != 1 else ''} from {args.input}, to {config.shown_url}, "
             f"run {where}", *model, *guess.lines(), f"first request (id {bodies[0][0]}):",
             json_text(bodies[0][1], indent=2), "nothing was sent (--dry-run)"]
    env.stdout.write(for_stream("\n".join(lines) + "\n", terminal=env.stdout_isatty))
    env.stdout.flush()
    return 0


def run_api(args: argparse.Namespace, env: Env, config: Config, session: Session, spec: Spec, rows: list[Row], *,
            schema: Schema | None, named: bool) -> int:
    """--via api: the whole job checked against the caps at batch prices, then sent (cli/batch_api.submit)."""
    from chatcli.batch.estimate import budget_guard, estimate  # lazy: off the path of --help
    from chatcli.batch.requests import body_of, job_key  # lazy: off the path of chatcli --help
    from chatcli.cli.batch_api import submit  # lazy: off the path of chatcli --help
    from chatcli.store.db import db_path, opened  # lazy: off the path of chatcli --help

    path = Path(args.input).expanduser()
    accounts = session.accounts
    if named:  # --via api named: a server without one is said before a job is made
        if config.api_type == "azure":
            raise ChatError("chatcli does not send batches to Azure OpenAI's Batch API; run the rows here with "
                            "--via local.")
        from chatcli.llm.batches import BatchWire  # lazy: off the path of chatcli --help

        BatchWire(config, session.sender).list(limit=1)  # a 404 says there is none; a 401, a network failure, theirs
    if args.cache:
        _say(env, "--cache answers only rows run here (--via local); the Batch API's rows are all sent.")
    if accounts.budget.capped:
        guess = estimate([(row.id, body_of(row, spec)) for row in rows], tokenizer=session.tokenizer,
                         pricing=accounts.pricing, model=spec.model, batch=True)
        with opened(db_path(config.db, env.data_dir), failing="Cannot read the usage ledger the caps count") as store:
            _within_budget(env, budget_guard(store, accounts.budget, accounts.pricing), guess)
    return submit(env, config, rows=rows, spec=spec, input_name=str(path), wait=args.wait, output=args.output,
                  schema=schema, key=job_key(config.base_url, spec, str(path)), limits=_limits(env))


def _limits(env: Env):
    """Where request files are split: the API's limits, or fewer requests a file with
    CHATCLI_BATCH_FILE_REQUESTS (for a server that takes fewer; and the tests)."""
    from chatcli.batch.api import Limits  # lazy: off the path of chatcli --help

    text = env.environ.get("CHATCLI_BATCH_FILE_REQUESTS", "")
    number = whole_number(text) if text else None
    return Limits(requests=number) if number else Limits()


def run_local(args: argparse.Namespace, env: Env, config: Config, session: Session, spec: Spec, rows: list[Row], *,
              schema: Schema | None, named: bool) -> int:
    """--via local: the job found (to resume) or made, checked against the caps, run, and written."""
    from chatcli.store.db import db_path, opened  # lazy: off the path of chatcli --help

    with opened(db_path(config.db, env.data_dir), failing="The batch cannot use its database",
                then="; what finished is saved, so the same command goes on from there") as store:
        return _run_local(args, env, config, session, spec, rows, schema=schema, store=store, named=named)


def _run_local(args: argparse.Namespace, env: Env, config: Config, session: Session, spec: Spec, rows: list[Row], *,
               schema: Schema | None, store: Any, named: bool) -> int:
    from chatcli.base.pii import configured_secrets  # lazy: off the path of chatcli --help
    from chatcli.batch.estimate import budget_guard, estimate  # lazy: off the path of --help
    from chatcli.batch.local import BUDGET, INTERRUPTED, LocalRunner  # lazy: off the path of chatcli --help
    from chatcli.store.batches import OK, PENDING, Batches  # lazy: off the path of chatcli --help

    batches = Batches(store)
    job, kept = _job(batches, config, spec, rows, Path(args.input).expanduser())
    pending = batches.rows(job.id, status=PENDING)
    accounts = session.accounts
    from chatcli.cli.batch_results import reply_check  # lazy: off the path of chatcli --help

    runner = LocalRunner(_cached(args, config, session, batches), batches, job.id, jobs=args.jobs, total=len(rows),
                         pricing=accounts.pricing, tokenizer=session.tokenizer, secrets=configured_secrets(config),
                         check=reply_check(schema))
    if pending and accounts.budget.capped:  # the whole job against the caps, before anything is sent
        guess = estimate([(r.custom_id, r.request) for r in pending], tokenizer=session.tokenizer,
                         pricing=accounts.pricing, model=spec.model)
        runner.guard = budget_guard(store, accounts.budget, accounts.pricing, in_flight=runner.in_flight)
        runner.estimates = guess.per_row
        _within_budget(env, runner.guard, guess)
    opening = _opening(job, len(rows), kept, len(pending), args.jobs)
    if pending and not named:
        opening = opening.rstrip(".") + f" ({config.shown_url} has no Batch API)."
    _say(env, opening)
    bar = _bar(env) if pending else None
    say = (lambda s: bar.say(f"chatcli: {shown(s)}")) if bar is not None else (lambda s: _say(env, s))
    runner.say = say
    if bar is not None:
        runner.progress = lambda t: bar.update(total=t.total, done=t.done, failed=t.failed, before=t.before,
                                               cost=t.cost, note=t.note)
    batches.update_job(job.id, status="running")
    with bar if bar is not None else nullcontext():
        end = runner.run(pending)
    counts = batches.counts(job.id)
    if end.status == INTERRUPTED:
        batches.update_job(job.id, status="interrupted")
        left = len(rows) - counts[OK]
        _say(env, f"Stopped: {counts[OK]:,} of {len(rows):,} rows are done and saved; run the same command again "
                  f"to do the other {left:,}.")
        return EXIT_INTERRUPTED
    batches.update_job(job.id, status="stopped" if end.status == BUDGET else "done")
    from chatcli.cli.batch_results import summary, write_job_results  # lazy: off the path of chatcli --help

    written = write_job_results(batches.rows(job.id), job.id, args.output, env.stdout, schema=schema)
    if end.status == BUDGET and end.refusal is not None:
        _say(env, end.refusal)
        _say(env, f"{end.left:,} row{'s were' if end.left != 1 else ' was'} not started; run the same command "
                  "again once the budget allows.")
    sentence, code = summary(written)
    _say(env, sentence)
    return code


def _job(batches: Batches, config: Config, spec: Spec, rows: list[Row], path: Path) -> tuple[Job, int]:
    """The job this command makes, and how many of its rows are already done: found and brought up to
    date with the input (a rerun), or made."""
    from chatcli.batch.requests import bodies_of, job_key  # lazy: off the path of chatcli --help

    bodies = bodies_of(rows, spec)
    key = job_key(config.base_url, spec, str(path))
    job = batches.find_job(key, via="local")
    if job is None:
        return batches.create_job(via="local", key=key, input_name=str(path), server=config.shown_url,
                                  model=spec.model, spec=spec.record(), rows=bodies), 0
    return job, batches.sync_rows(job.id, bodies)


def _cached(args: argparse.Namespace, config: Config, session: Session, batches: Batches) -> Any:
    """The client rows are sent with: with --cache (or config `cache`), the response cache in front of
    it, in the batch's own database, sharing its write lock (the worker threads keep replies in it)."""
    if not (args.cache or config.cache) or not config.save:  # save = false: nothing kept, as for one-shot asks
        return session.sender
    from chatcli.app import caching  # lazy: off the path of chatcli --help

    return caching(session, config, batches.store, lock=batches.lock)


def _within_budget(env: Env, guard: Any, guess: Any) -> None:
    """The whole job against the [budget] caps, before anything is sent: refused with its figures, or
    a warning said when it comes near one."""
    from chatcli.batch.estimate import check_job  # lazy: off the path of chatcli --help

    refusal, warning = check_job(guard, guess)
    if refusal is not None:
        raise ChatError(refusal)
    if warning:
        _say(env, warning[0].upper() + warning[1:] + ".")


def _opening(job: Job, total: int, kept: int, pending: int, jobs: int) -> str:
    """The line a run begins with: which job, and what is left to do."""
    rows = f"{total:,} row{'s' if total != 1 else ''}"
    if not pending:
        return f"Batch job {job.id}: all {rows} are done already; nothing to send."
    at_once = f"{min(jobs, pending)} at a time"
    if kept:
        return f"Batch job {job.id}: {kept:,} of {rows} are done already; running the other {pending:,} here, {at_once}."
    return f"Batch job {job.id}: running {rows} here, {at_once}."


def _bar(env: Env):
    """The progress bar on a terminal's stderr; None elsewhere."""
    if not env.stderr_isatty:
        return None
    from chatcli.ui.progress import ProgressBar  # lazy: keeps rich off the startup path

    return ProgressBar(env.stderr, color=not env.no_color)


def _say(env: Env, sentence: str) -> None:
    env.stderr.write(f"chatcli: {shown(sentence)}\n")
    env.stderr.flush()

