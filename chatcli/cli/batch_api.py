"""`chatcli batch status|wait|fetch|cancel|list|retry`, and `submit`, which `batch run --via api` calls:
Batch API jobs at the command line (batch/api.py does the work; this says what happened).

Each handler takes (args, env, config) and returns the exit code. What a command is for goes to
stdout (a job's state, the result lines, the job id of a submit in a pipe); how it is going goes to
stderr (wait's progress, the count that ends a fetch). A terminal gets sentences, a pipe plain lines.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from chatcli.base.env import Env
from chatcli.base.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, ChatError, ConfigError, UsageError, one_line
from chatcli.base.format import age, format_cost
from chatcli.base.parse import MAX_ID, whole_number_in
from chatcli.base.text import strip_controls
from chatcli.batch.api import ApiJobs, Limits, Poll, entries_of, job_key
from chatcli.cli.batch_results import reply_check, schema_of, summary, write_job_results
from chatcli.llm.batches import OPEN, BatchWire
from chatcli.llm.pricing import Pricing
from chatcli.store.batches import OK, ROW_STATUSES, Batches, Job
from chatcli.store.db import db_path, opened

if TYPE_CHECKING:
    from chatcli.batch.inputs import Row
    from chatcli.batch.requests import Spec
    from chatcli.cli.schema import Schema
    from chatcli.config.settings import Config

POLL_VARIABLE = "CHATCLI_BATCH_POLL"  # "FIRST[,MOST]" seconds between asks: for tests and the impatient


job_id = whole_number_in(1, MAX_ID, "a job id, as chatcli batch list shows them")
_how_many = whole_number_in(1, MAX_ID, "a whole number of jobs, 1 or more")


def add_api_actions(subparsers: Any) -> dict[str, argparse.ArgumentParser]:
    """The parsers of status, wait, fetch, cancel, list and retry, added to `batch`'s subparsers (by name)."""
    made = {}
    for name, helped in (("status", "a job's state, and how many of its rows are in each state (asks the server)"),
                         ("wait", "wait until the server has run a job, asking with back-off; Ctrl-C stops only the waiting"),
                         ("fetch", "the job's results, one JSON line per input row in input order (to stdout or --output)"),
                         ("cancel", "ask the server to stop a job; rows it has finished can still be fetched"),
                         ("retry", "send a job's failed and expired rows (and any never sent) again, as a new batch")):
        made[name] = subparsers.add_parser(name, help=helped, description=helped[0].upper() + helped[1:] + ".")
        made[name].add_argument("job", type=job_id, help="the job's id, as chatcli batch list shows it")
    made["fetch"].add_argument("--output", metavar="FILE", help="write the result lines here instead of stdout")
    made["retry"].add_argument("--failed", action="store_true", required=True,
                               help="the rows to send again: those that failed or expired (required)")
    made["list"] = subparsers.add_parser("list", help="the batch jobs in the database, newest first (as last seen)",
                                         description="The batch jobs in the database, newest first, as last seen; "
                                         "chatcli batch status JOB asks the server.")
    made["list"].add_argument("-n", "--limit", type=_how_many, default=50, help="at most this many (default 50)")
    return made


# --- the handlers ---


def status(args: argparse.Namespace, env: Env, config: Config) -> int:
    with _opened(env, config) as jobs:
        job = _find(jobs, args.job)
        if _open_entries(job):
            _same_server(job, config)
            job = jobs.refresh(job.id)
        _show_status(env, job, jobs.batches.counts(job.id))
    return EXIT_OK


def wait(args: argparse.Namespace, env: Env, config: Config) -> int:
    with _opened(env, config) as jobs:
        job = _api_job(jobs, args.job, config, doing="wait for")
        return _wait(env, jobs, job, poll_of(env))


def fetch(args: argparse.Namespace, env: Env, config: Config) -> int:
    with _opened(env, config) as jobs:
        job = _find(jobs, args.job)
        if any(not e.get("fetched") for e in entries_of(job)):
            _same_server(job, config)
            job = jobs.collect(job.id)
        still = _open_entries(job)
        if still:
            done, _, total = _progress(job)
            raise ChatError(f"Job {job.id} is not finished: {len(still)} of its {len(entries_of(job))} batches "
                            f"{'is' if len(still) == 1 else 'are'} still {_word(job.status)} ({done:,} of {total:,} "
                            f"requests done); chatcli batch wait {job.id} waits for it.")
        return _write(env, jobs.batches, job, output=args.output)


def cancel(args: argparse.Namespace, env: Env, config: Config) -> int:
    with _opened(env, config) as jobs:
        job = _api_job(jobs, args.job, config, doing="cancel")
        job, asked, unsent = jobs.cancel(job.id)
    if not asked and unsent:
        _say(env, f"Job {job.id}: cancelled its {unsent:,} row{'s' if unsent != 1 else ''} not sent yet; nothing "
                  "else was running.")
        return EXIT_OK
    if not asked and not _open_entries(job):
        _say(env, f"Job {job.id} has ended already ({_word(job.status)}); there is nothing to cancel.")
        return EXIT_OK
    batches = f"{asked} batch{'es' if asked != 1 else ''}" if asked else "the job"
    _say(env, f"Job {job.id}: the server is cancelling {batches}; the rows it finished can still be fetched: "
              f"chatcli batch wait {job.id}, then chatcli batch fetch {job.id}.")
    return EXIT_OK


def retry(args: argparse.Namespace, env: Env, config: Config) -> int:
    if not args.failed:  # argparse requires it; a caller building args by hand may not
        raise UsageError("batch retry sends only the failed and expired rows again: give --failed.")
    with _opened(env, config) as jobs:
        job = _api_job(jobs, args.job, config, doing="retry")
        job, sent = jobs.retry(job.id)
    if not sent:
        _say(env, f"Job {job.id} has no failed, expired or unsent rows; nothing was sent.")
        return EXIT_OK
    _say(env, f"Job {job.id}: sent {sent:,} row{'s' if sent != 1 else ''} again, as a new batch; follow it with "
              f"chatcli batch wait {job.id}, then chatcli batch fetch {job.id}.")
    return EXIT_OK


def list_jobs(args: argparse.Namespace, env: Env, config: Config) -> int:
    with _opened(env, config) as jobs:
        listed = jobs.batches.jobs(limit=args.limit)
        if not listed:
            env.stdout.write("No batch jobs yet.\n")
            return EXIT_OK
        headers = ["id", "via", "status", "ok", "rows", "model", "input", "created"]
        rows = [[str(j.id), j.via, j.status, f"{jobs.batches.counts(j.id)[OK]:,}", f"{j.total:,}", j.model,
                 j.input_name, age(j.created_at)] for j in listed]
    if not env.stdout_isatty:  # for scripts: one line a job, tab-separated, never wrapped
        for row in [headers, *rows]:
            env.stdout.write("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row) + "\n")
        return EXIT_OK
    from chatcli.commands import Result  # lazy: off the path of chatcli --help
    from chatcli.ui.render import make_console  # lazy: keeps rich off the startup path
    from chatcli.ui.views import show_result  # lazy: keeps rich off the startup path

    show_result(make_console(env.stdout, color=not env.no_color), Result(headers=headers, rows=rows))
    return EXIT_OK


ACTIONS = {"status": status, "wait": wait, "fetch": fetch, "cancel": cancel, "list": list_jobs, "retry": retry}


def submit(env: Env, config: Config, *, rows: list[Row], spec: Spec, input_name: str, wait: bool = False,
           output: str | None = None, schema: Schema | None = None, key: str | None = None,
           limits: Limits | None = None) -> int:
    """`batch run --via api`: save the job, send its rows, say its id and how to follow it, and exit 0;
    with `wait`, wait for it and write its results (to `output`, or stdout) as fetch does."""
    key = key or job_key(config.shown_url, spec, input_name)
    with _opened(env, config, limits=limits) as jobs:
        earlier = jobs.batches.find_job(key, via="api")
        before = {e["id"] for e in entries_of(earlier)} if earlier else set()
        try:
            job, sent = jobs.submit(rows=rows, spec=spec, input_name=input_name, server=config.shown_url,
                                    profile=config.profile, key=key)
        except KeyboardInterrupt:
            return _stopped_sending(env, jobs, key)
        if wait:  # stdout is for the result lines: what was done goes to stderr
            def say(sentence: str) -> None:
                env.stderr.write(sentence + "\n")
        else:
            def say(sentence: str) -> None:
                _say(env, sentence, job_id=job.id)
        if not sent:
            say(f"All {job.total:,} rows of job {job.id} have their results already"
                + ("." if wait else f"; chatcli batch fetch {job.id} writes them."))
            return _write(env, jobs.batches, job, output=output, schema=schema) if wait else EXIT_OK
        made = len([e for e in entries_of(job) if e["id"] not in before])
        say(f"Job {job.id}: sent {sent:,} request{'s' if sent != 1 else ''} to the Batch API at {config.shown_url} "
            f"as {made} batch{'es' if made != 1 else ''}, which the server runs within 24 hours"
            + ("; waiting for it (Ctrl-C stops the waiting, not the job)." if wait else
               f"; follow it with chatcli batch status {job.id} or chatcli batch wait {job.id}, then "
               f"chatcli batch fetch {job.id}."))
        if not wait:
            return EXIT_OK
        if _wait(env, jobs, job, poll_of(env), fetching=True) == EXIT_INTERRUPTED:
            return EXIT_INTERRUPTED
        return _write(env, jobs.batches, jobs.collect(job.id), output=output, schema=schema)


# --- the steps ---


@contextmanager
def _opened(env: Env, config: Config, *, limits: Limits | None = None) -> Iterator[ApiJobs]:
    """The jobs of the database the config names, over the server it names; the database is closed after."""
    with opened(db_path(config.db, env.data_dir), failing="Cannot use the database of batch jobs") as store:
        yield ApiJobs(BatchWire(config), Batches(store), Pricing(config.prices), limits=limits or Limits(),
                      checks=lambda spec: reply_check(schema_of(spec)))


def _find(jobs: ApiJobs, number: int) -> Job:
    job = jobs.batches.job(number)
    if job is None:
        raise UsageError(f"There is no batch job {number}; chatcli batch list shows them.")
    return job


def _api_job(jobs: ApiJobs, number: int, config: Config, *, doing: str) -> Job:
    """A job sent through the Batch API, to the server this command talks to."""
    job = _find(jobs, number)
    if job.via != "api":
        raise ChatError(f"Job {job.id} runs here (--via local), not on the server, so there is nothing to {doing}; "
                        "run its chatcli batch run command again to finish the rows not done.")
    _same_server(job, config)
    return job


def _same_server(job: Job, config: Config) -> None:
    """A job is asked after only at the server it was sent to (its batch ids mean nothing elsewhere)."""
    if job.server == config.shown_url:
        return
    profile = job.remote.get("profile") if isinstance(job.remote, dict) else None
    hint = f"-p {profile}" if isinstance(profile, str) and profile else f"--base-url {job.server}"
    raise ConfigError(f"Job {job.id} was sent to {strip_controls(job.server)}, and this command talks to "
                      f"{config.shown_url}; run it with {strip_controls(hint)}.")


def _open_entries(job: Job) -> list[dict[str, Any]]:
    return [e for e in entries_of(job) if e.get("status") in OPEN]


def _progress(job: Job) -> tuple[int, int, int]:
    """Requests the server has done, of those failed, and in all, over the job's batches not yet fetched (this round)."""
    entries = [e for e in entries_of(job) if not e.get("fetched")]
    failed = sum(int(e.get("failed") or 0) for e in entries)
    return (sum(int(e.get("completed") or 0) for e in entries) + failed, failed,
            sum(int(e.get("total") or e.get("rows") or 0) for e in entries))


def _word(status: str) -> str:
    """A status from the server, safe to show."""
    return one_line(status.replace("_", " "), 40)


def _wait(env: Env, jobs: ApiJobs, job: Job, poll: Poll, *, fetching: bool = False) -> int:
    """Wait for the job, its progress on stderr; Ctrl-C leaves it running and says how to wait again.
    `fetching`: the results follow at once (run --wait), so the end does not say how to fetch them."""
    progress = _Progress(env)
    try:
        job = jobs.wait(job.id, poll=poll, heard=progress)
    except KeyboardInterrupt:
        progress.end()
        env.stderr.write(f"chatcli: stopped waiting; job {job.id} goes on: chatcli batch wait {job.id}\n")
        return EXIT_INTERRUPTED
    progress.end()
    if not entries_of(job):
        env.stderr.write(f"Job {job.id} has no batch on the server; chatcli batch retry {job.id} --failed sends its rows.\n")
        return EXIT_FAILURE
    done, _, total = _progress(job)
    if not total:  # every batch fetched already
        env.stderr.write(f"Job {job.id} has ended ({_word(job.status)}); chatcli batch fetch {job.id} writes its results.\n")
        return EXIT_OK
    env.stderr.write(f"Job {job.id} has ended ({_word(job.status)}): the server did {done:,} of {total:,} requests"
                     + ("." if fetching else f"; chatcli batch fetch {job.id} writes the results.") + "\n")
    return EXIT_FAILURE if job.status == "failed" else EXIT_OK


class _Progress:
    """Wait's progress on stderr: one line redrawn on a terminal, a line at each change in a pipe."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.last = ""

    def __call__(self, job: Job) -> None:
        done, failed, total = _progress(job)
        line = (f"Job {job.id}: {_word(job.status)}, {done:,} of {total:,} requests done"
                + (f", {failed:,} failed" if failed else ""))
        if line == self.last:
            return
        self.env.stderr.write(f"\r\x1b[K{line}" if self.env.stderr_isatty else f"{line}\n")
        self.env.stderr.flush()
        self.last = line

    def end(self) -> None:
        if self.env.stderr_isatty and self.last:
            self.env.stderr.write("\n")


def poll_of(env: Env) -> Poll:
    """How often wait asks: every 1 s doubling to 30 s, or as CHATCLI_BATCH_POLL says ("FIRST[,MOST]" seconds)."""
    text = env.environ.get(POLL_VARIABLE)
    if not text:
        return Poll()
    try:
        first, _, most = text.partition(",")
        poll = Poll(float(first), float(most or first))
    except ValueError:
        poll = None
    if poll is None or not 0 < poll.first <= poll.most <= 3600:
        raise UsageError(f"{POLL_VARIABLE} must be seconds, as in 0.5 or 1,30 (first and longest wait), "
                         f"not {one_line(text, 40)!r}.")
    return poll


def _write(env: Env, batches: Batches, job: Job, *, output: str | None, schema: Schema | None = None) -> int:
    """The job's result lines in input order, to `output` or stdout; the count on stderr; the exit code."""
    schema = schema or schema_of(job.spec)
    rows = batches.rows(job.id)
    counts = write_job_results(rows, job.id, output, env.stdout, schema=schema)
    sentence, code = summary(counts)
    cost = [r.cost_usd for r in rows if r.status == OK]
    prices = "batch prices" if job.via == "api" else "list prices"
    priced = f" They cost {format_cost(sum(c for c in cost if c is not None))} at {prices}" if any(
        c is not None for c in cost) else ""
    unknown = " (and some cost unknown)" if priced and None in cost else ""
    where = f" The results are in {strip_controls(str(output))}." if output else ""
    env.stderr.write(f"{sentence}{priced}{unknown}{'.' if priced else ''}{where}\n")
    return code


def _show_status(env: Env, job: Job, counts: dict[str, int]) -> None:
    """A job's state: sentences on a terminal, `name<TAB>value` lines in a pipe."""
    entries = entries_of(job)
    done, failed, total = _progress(job)
    if not env.stdout_isatty:
        fields = [("job", job.id), ("via", job.via), ("status", job.status), ("input", job.input_name),
                  ("model", job.model), ("rows", job.total), *((s, counts[s]) for s in ROW_STATUSES)]
        if job.via == "api":
            fields += [("batches", len(entries)), ("server_done", done), ("server_failed", failed),
                       ("server_total", total)]
        env.stdout.write("".join(f"{name}\t{one_line(str(value), 500)}\n" for name, value in fields))
        return
    where = f"through the Batch API at {job.server}" if job.via == "api" else "here (--via local)"
    lines = [f"Job {job.id}: {_word(job.status)}, {where}, made {age(job.created_at)}.",
             f"  input   {job.input_name}: {job.total:,} rows for {job.model}"]
    if job.via == "api" and entries:
        unfetched = [e for e in entries if not e.get("fetched")]
        lines.append(f"  server  {len(entries)} batch{'es' if len(entries) != 1 else ''}"
                     + (f"; {done:,} of {total:,} requests done, {failed:,} failed" if unfetched else ", all fetched"))
    lines.append("  rows    " + ", ".join(f"{counts[s]:,} {s}" for s in ROW_STATUSES))
    if job.via == "api":
        lines.append(f"  next    chatcli batch {'wait' if _open_entries(job) else 'fetch'} {job.id}")
    env.stdout.write("".join(strip_controls(line) + "\n" for line in lines))


def _say(env: Env, sentence: str, *, job_id: int | None = None) -> None:
    """The result of a command: on a terminal, the sentence; in a pipe, the job id on stdout (for a script's
    JOB=$(...)) and the sentence on stderr."""
    if env.stdout_isatty or job_id is None:
        env.stdout.write(sentence + "\n")
        return
    env.stdout.write(f"{job_id}\n")
    env.stderr.write(sentence + "\n")


def _stopped_sending(env: Env, jobs: ApiJobs, key: str) -> int:
    """Ctrl-C while the rows were being sent: the job is saved, with what was sent."""
    job = jobs.batches.find_job(key, via="api")
    if job is None:
        env.stderr.write("chatcli: stopped before the job was saved; nothing was sent.\n")
        return EXIT_INTERRUPTED
    unsent = sum(1 for r in jobs.batches.rows(job.id) if r.remote_batch is None and r.status != OK)
    env.stderr.write(f"chatcli: stopped sending; job {job.id} is saved with {unsent:,} of its {job.total:,} rows "
                     f"not sent: chatcli batch retry {job.id} --failed sends them.\n")
    return EXIT_INTERRUPTED

