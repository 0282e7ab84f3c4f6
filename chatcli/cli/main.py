"""The command line: parse flags, pick the REPL or one-shot mode, map errors to exit codes.

Kept light on purpose: `chatcli --help` imports neither openai, rich nor
prompt-toolkit, and the REPL imports openai only in the background.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from chatcli import __version__
from chatcli.base.env import Env
from chatcli.base.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    ChatError,
    Terminated,
    one_line,
)
from chatcli.base.parse import check_arguments, readable
from chatcli.base.pii import configured_secrets, hide_known, hide_password, redact_secrets
from chatcli.base.text import for_stream, shown
from chatcli.cli.flags import (
    SUBCOMMANDS,
    Parser,
    add_flags,
    request_log,
    setting_type,
    split_subcommand,
)
from chatcli.config.settings import Profiles, check_environment, default_config_path, load_config, require_api_key
from chatcli.config.table import SETTINGS

if TYPE_CHECKING:
    from chatcli.cli.schema import Schema

EXAMPLES = """\
examples:
  chatcli                                      start an interactive session
  chatcli --system "You are a terse SQL expert"  a session with a persona
  chatcli "why is the sky blue?"               ask once and print the answer
  cat report.md | chatcli "summarize this"     send piped text with an instruction
  chatcli -f main.py -f test_main.py "why does the test fail?"   attach files
  chatcli -i error.png "what does this say?"   attach an image (-o image_detail low: fewer tokens)
  chatcli -p ollama                            use the config's [profiles.ollama]
  chatcli -o top_p 0.9 -o seed 42 "a haiku"    any request parameter, as /set sets it
  chatcli < notes.txt > answer.txt             send a file, write the answer to a file
  chatcli --base-url http://localhost:11434/v1 --model llama3.2   use a local Ollama
  chatcli -c                                   continue the last session
  chatcli --resume 12                          continue session 12
  chatcli sessions list                        saved sessions (also: show, search, export,
                                               delete, prune, rename, check; see chatcli sessions -h)
  chatcli usage --days 30 --by model           tokens and cost, with a bar chart
  chatcli models                               the models the server offers
  chatcli config check                         is the config file right? (also: path, show, profiles)
  chatcli batch run prompts.txt -j 8           one prompt a line, 8 at a time; results as JSON lines
                                               (also: status, wait, fetch, cancel, list, retry; see chatcli batch -h)
  chatcli --db ~/work.db sessions list         flags a subcommand takes go before or after it
  source <(chatcli --completion bash)          Tab completion (also zsh, fish)
  chatcli --json "name three primes" | jq .reply   the answer and its usage as JSON
  chatcli --schema person.json "invent a person"   JSON that must match a JSON Schema
  chatcli --cache -t 0 "define idempotent"      ask again later: answered from the cache, no request
  chatcli cache stats                          the response cache: entries, hits, what they saved (also: clear)
  chatcli -v --log-file chat.log "hi"          log requests and timings (keys redacted)

configuration (lowest to highest): defaults, ~/.config/chatcli/config.toml,
./.env, the environment (OPENAI_API_KEY, OPENAI_BASE_URL, CHATCLI_*), the profile
chosen (-p, CHATCLI_PROFILE), flags.

exit codes: 0 ok, 1 request failed, reply incomplete or not matching --schema, 2 bad command line,
3 bad configuration or API key, 4 server unreachable or silent, 130 Ctrl-C,
129/143 SIGHUP/SIGTERM (the turn so far is saved).
"""


def _where_flags(parser: argparse.ArgumentParser, *, base_url: bool = True) -> None:
    """--profile, --base-url and --config: which server, and which config file, for chatcli and its subcommands."""
    add_flags(parser, ("profile", "base_url", "config") if base_url else ("profile", "config"))


def _tool_names(text: str) -> tuple[str, ...]:
    """--tools read_file,grep: the names, each once."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError("takes tool names separated by commas, as in --tools read_file,grep")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="chatcli",
        description="Chat with OpenAI-compatible models in the terminal. With no question and a terminal "
        "on stdin, opens an interactive session; otherwise asks once and writes the answer to stdout.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", nargs="*", help="ask this once, then exit (piped stdin is appended)")
    parser.add_argument("-m", "--model", type=setting_type("model"), help="model name (default: gpt-4o-mini, or the server's own model when it does not list that one)")
    parser.add_argument("-s", "--system", type=setting_type("system"), help="system prompt, i.e. a persona")
    parser.add_argument("-t", "--temperature", type=setting_type("temperature"), help="sampling temperature, 0 to 2")
    parser.add_argument("--max-tokens", type=setting_type("max_tokens"), metavar="N", help="longest reply, in tokens")
    parser.add_argument("-o", "--option", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a request parameter, as /set does: -o top_p 0.9 -o seed 42 (repeatable)")
    parser.add_argument("-f", "--file", action="append", metavar="PATH", help="attach a text file to the first message, as /file does (repeatable)")
    parser.add_argument("-i", "--image", action="append", metavar="PATH|URL|-", help="attach an image (PNG, JPEG, GIF, WebP) or an image URL to the first message, as /image does; - reads it from stdin (repeatable)")
    _where_flags(parser)
    parser.add_argument("--json", action="store_true", help="ask once and print one JSON object: reply, model, status, finish_reason, usage, cost_usd, cost_source, error (and cached, with the response cache on)")
    parser.add_argument("--schema", metavar="PATH", help="ask once for JSON matching the JSON Schema in PATH (response_format json_schema), print it, and exit 1 if the reply does not match")
    parser.add_argument("--cache", action="store_const", const=True, help="answer a one-shot ask from the response cache if the same request was answered within cache_ttl, and keep its answer there: only a request with temperature 0 or a seed, unless cache_any = true; nothing with --no-save (also: cache = true)")
    parser.add_argument("--plain", action="store_true", help="print replies as plain text as they stream, not markdown (also: NO_COLOR, render = \"plain\")")
    parser.add_argument(
        "-r", "--resume", nargs="?", const="last", metavar="ID", help="continue a saved session (default: the last)"
    )
    parser.add_argument("-c", "--continue", dest="resume", action="store_const", const="last", help="continue the last session")
    parser.add_argument("--tools", type=_tool_names, metavar="NAME,...", help="turn these tools on for the model to call: now (and read_file, grep, ..., an MCP server's NAME.tool); off by default")
    parser.add_argument("--yes", action="store_true", help="run tool calls that would ask (shell, MCP tools) without asking: for scripts; said once on stderr")
    add_flags(parser, ("db",))
    parser.add_argument("--no-save", action="store_true", help="incognito: save no conversation and no input history (with a [budget] set, only tokens and cost are recorded, so the caps hold)")
    add_flags(parser, ("verbose", "log_file"))
    parser.add_argument("--completion", choices=("bash", "zsh", "fish"), help="print a shell completion script, as in: source <(chatcli --completion bash)")
    parser.add_argument("--version", action="version", version=f"chatcli {__version__}")
    return parser


def _models_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="chatcli models", description="List the models the server offers (GET /models), one a line.")
    add_flags(parser, SUBCOMMANDS["models"])
    return parser


def _config_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="chatcli config", description="The config file: where it is, what it sets, whether it is "
                    "right (check also asks the server about the names of [models] tables), and the names of its profiles.")
    parser.add_argument("action", choices=("path", "show", "check", "profiles"))
    add_flags(parser, SUBCOMMANDS["config"])
    return parser


def _reports_parser(name: str) -> Callable[[], argparse.ArgumentParser]:
    """The parser of a report subcommand from chatcli.cli.sessions, imported when it is built."""

    def build() -> argparse.ArgumentParser:
        from chatcli.cli import sessions  # lazy: off the path of chatcli --help

        return getattr(sessions, f"build_{name}_parser")(Parser)

    return build


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """chatcli.cli.MODULE's function NAME, imported when it is called: off the path of chatcli --help."""
    import importlib

    return lambda *args: getattr(importlib.import_module(f"chatcli.cli.{module}"), name)(*args)


# Each subcommand's parser, with the global flags it takes (flags.SUBCOMMANDS); RUNNERS runs it.
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "sessions": _reports_parser("sessions"), "usage": _reports_parser("usage"), "models": _models_parser,
    "config": _config_parser, "cache": lambda: _lazy("cache", "build_cache_parser")(Parser),
    "batch": lambda: _lazy("batch", "build_batch_parser")(Parser),
}


def build_subcommand_parser(name: str) -> argparse.ArgumentParser:
    """The parser of a subcommand, with the global flags it takes (flags.SUBCOMMANDS)."""
    return PARSERS[name]()


def main(argv: Sequence[str] | None = None, *, env=None) -> int:
    """The console script. Tests may pass argv and an Env of their own, and run it in-process."""
    parser, args, runner = _parsed(list(sys.argv[1:] if argv is None else argv))

    env = env or Env.from_process()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    try:
        check_arguments(parser, args)  # bytes that are not UTF-8: said here, before anything meets them
        check_environment(env.environ)
        return _unless_hung_up(runner, args, env)
    except ChatError as exc:
        env.stderr.write(f"chatcli: {shown(exc.message)}\n")
        return exc.exit_code
    except Terminated as exc:
        if exc.signum == signal.SIGHUP and (env.stdout_isatty or env.stdin_isatty):
            _to_devnull()  # the terminal is gone: Python's flush at exit would fail, and exit 120
        return 128 + exc.signum  # the turn so far is saved; the terminal may be gone, so say nothing
    except KeyboardInterrupt:
        env.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (chatcli ... | head -1): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # Most often writing the reply failed (a full disk, a closed terminal).
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            env.stderr.write(f"chatcli: stopped by a system error: {exc.strerror or exc}.\n")
            env.stderr.flush()
        except OSError:
            os.dup2(devnull, sys.stderr.fileno())  # the terminal is gone: nowhere left to say it
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not fail again
        return EXIT_FAILURE
    except Exception as exc:  # a bug in chatcli: one sentence here, the details in a file for a report
        where = save_crash(env, exc)
        env.stderr.write(f"chatcli: internal error ({type(exc).__name__}), which is a bug in chatcli; "
                         f"{f'the details are in {where}; please' if where else 'please'} report it.\n")
        return EXIT_FAILURE


def _parsed(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace, Callable[..., int]]:
    """The parser that read argv, what it read, and what runs it: a subcommand, the completion
    script, or a chat (_run)."""
    sub = split_subcommand(argv, build_parser())
    if sub is not None:
        parser = build_subcommand_parser(sub.name)
        refused = sub.refused()
        if refused:
            parser.error(refused)
        return parser, parser.parse_args(sub.before + sub.after), RUNNERS[sub.name]
    parser = build_parser()
    args = parser.parse_args(argv)
    return parser, args, _completion if args.completion else _run


def _completion(args: argparse.Namespace, env) -> int:
    """--completion bash|zsh|fish: the script, made from the parsers themselves."""
    from chatcli.cli.completion import completion_script  # lazy: off the path of chatcli --help

    subcommands = {name: build_subcommand_parser(name) for name in SUBCOMMANDS}
    env.stdout.write(completion_script(build_parser(), args.completion, subcommands))
    return 0


def _unless_hung_up(runner, args: argparse.Namespace, env) -> int:
    """runner(args, env), where an error that comes of the terminal going away is the hangup it is.

    Closing the terminal mid-reply sends SIGHUP (Terminated), and the turn is saved; then
    drawing the reply's end or restoring the terminal fails on the dead terminal, and that
    error would hide the hangup. A terminal I/O error (EIO) can also come before the signal.
    """
    try:
        return runner(args, env)
    except Exception as exc:
        seen: BaseException | None = exc
        while seen is not None and not isinstance(seen, Terminated):
            seen = seen.__context__
        if seen is not None:
            raise Terminated(seen.signum) from None
        if isinstance(exc, OSError) and exc.errno == errno.EIO and (env.stdout_isatty or env.stdin_isatty):
            raise Terminated(signal.SIGHUP) from None
        raise


def _to_devnull() -> None:
    """Point stdout and stderr at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass


def save_crash(env, exc: BaseException) -> Path | None:
    """The traceback, with the key and anything key-shaped taken out, in the state directory."""
    import time  # lazy: off the path of chatcli --help
    import traceback  # lazy: off the path of chatcli --help

    from chatcli.base.secrets import known_api_key  # lazy: off the path of chatcli --help

    text = "".join(traceback.format_exception(exc))
    path = env.state_dir / "crash.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"chatcli {__version__}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n{redact_secrets(text, known_api_key())}\n")
    except OSError:
        return None
    return path


def _terminate(signum: int, frame) -> None:
    raise Terminated(signum)


def _config_action(args: argparse.Namespace, env) -> int:
    """chatcli config path | show | check."""
    from chatcli.config.example import toml_value  # lazy: off the path of chatcli --help

    def out(text: str) -> None:  # a file name or a value from the file: data in a pipe, gated on a terminal
        env.stdout.write(for_stream(readable(text), terminal=env.stdout_isatty))

    if args.action == "path":
        out(f"{args.config or env.environ.get('CHATCLI_CONFIG') or default_config_path(env)}\n")
        return 0
    config = load_config(env, config_path=args.config, flags={"profile": args.profile})  # a bad file: one sentence, exit 3
    if args.action == "profiles":  # one a line, for scripts and for completing -p
        out("".join(f"{name}\n" for name in config.profiles))
        return 0
    if args.action == "check":
        from chatcli.base.secrets import know  # lazy: off the path of chatcli --help
        from chatcli.cli.config_check import (  # lazy: off the path of chatcli --help
            cache_warnings,
            model_table_warnings,
        )

        know(config)
        with request_log(args, env, config):
            warnings = [*config.warnings, *cache_warnings(config),
                        *model_table_warnings(env, config, config_path=args.config)]
        for warning in warnings:
            env.stderr.write(f"chatcli: warning: {shown(warning)}\n")
        there = config.config_path if config.config_path and config.config_path.is_file() else None
        out(f"ok: {there or 'no config file; defaults, .env and the environment'}\n")
        return 0
    for setting in SETTINGS:
        value = getattr(config, setting.key)
        if value is None:
            out(f"# {setting.key} is not set\n")
        else:
            text = '"***"' if setting.secret else toml_value(hide_password(value) if setting.key == "proxy" else value)
            out(f"{setting.key} = {text}\n")
    out(f"redact = [{', '.join(toml_value(k) for k in config.redact)}]\n")
    out(f"tools = [{', '.join(toml_value(k) for k in config.tools)}]\n")
    out(f"tool_ask = {toml_value('all') if config.tool_ask == ('all',) else '[' + ', '.join(toml_value(k) for k in config.tool_ask) + ']'}\n")
    if config.block_words:  # counted, not listed: a blocked word is not shown, not even here
        out(f"# block_words: {len(config.block_words)} words or phrases, from the file and block_words_file\n")
    if config.headers:  # a header may carry a credential: names only
        masked = ", ".join(f"{toml_value(name)} = {toml_value('***')}" for name in config.headers)
        out(f"headers = {{ {masked} }}\n")
    for line in _mcp_lines(config.mcp):
        out(line)
    if config.profiles:
        out(f"# profiles: {', '.join(config.profiles)}\n")
    return 0


def _mcp_lines(servers: Any) -> list[str]:
    """config show's [mcp.NAME] lines: a server's env may carry a credential, so its names only."""
    from chatcli.config.example import toml_value  # lazy: off the path of chatcli --help

    lines = []
    for name, server in servers.items():
        listed = ", ".join(toml_value(a) for a in server["args"])
        env = ", ".join(f"{toml_value(k)} = {toml_value('***')}" for k in server["env"])
        lines.append(f"[mcp.{name}] command = {toml_value(server['command'])}, args = [{listed}]"
                     + (f", env = {{ {env} }}" if env else "") + "\n")
    return lines


def _list_models(args: argparse.Namespace, env) -> int:
    from chatcli.llm.client import ChatClient  # lazy: off the path of chatcli --help

    config = load_config(env, config_path=args.config, flags={"base_url": args.base_url, "profile": args.profile})
    require_api_key(config)
    from chatcli.app import make_tokenizer  # lazy: off the path of chatcli --help
    from chatcli.base.secrets import know  # lazy: off the path of chatcli --help
    from chatcli.llm.server_facts import ServerFacts  # lazy: off the path of chatcli --help

    know(config)
    with request_log(args, env, config):
        client = ChatClient(config)
        names = client.models()
        facts = ServerFacts(client, make_tokenizer(config))
        for name in names:  # the name first, so `cut -d' ' -f1` gives the names alone
            window = facts.window_for(name)
            listed = one_line(hide_known(name, configured_secrets(config)), 200)  # a server's words: gated, even in a pipe
            env.stdout.write(listed + (f"  window {window.tokens:,} ({window.source})" if window else "") + "\n")
    return 0


def _report(name: str):
    """A runner from chatcli.sessions, imported when it runs."""

    def run(args: argparse.Namespace, env) -> int:
        from chatcli.cli import sessions  # lazy: off the path of chatcli --help

        return getattr(sessions, name)(args, env)

    return run


RUNNERS = {"sessions": _report("run_sessions"), "usage": _report("run_usage"), "models": _list_models,
           "config": _config_action, "cache": _lazy("cache", "run_cache"), "batch": _lazy("batch", "run_batch")}


def _run(args: argparse.Namespace, env) -> int:
    schema = None
    if args.schema is not None:  # a bad schema file is a bad command line: said before anything else
        from chatcli.cli.schema import load_schema  # lazy: off the path of chatcli --help

        schema = load_schema(args.schema)

    flags = {
        "model": args.model,
        "system": args.system,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "base_url": args.base_url,
    }
    config = load_config(env, config_path=args.config,
                         flags={**flags, "db": args.db, "profile": args.profile, "tools": args.tools, "cache": args.cache})
    from chatcli.base.secrets import know  # lazy: off the path of chatcli --help

    know(config)  # for a crash report, and for messages said where the config is not at hand
    for warning in config.warnings:
        env.stderr.write(f"chatcli: warning: {shown(warning)}\n")
    require_api_key(config)
    with request_log(args, env, config):
        return _start(args, env, config, flags, schema=schema)


def _start(args: argparse.Namespace, env, config, flags: dict[str, Any], *, schema: Schema | None = None) -> int:
    from chatcli.app import start_session  # lazy: off the path of chatcli --help
    from chatcli.ui.output import make_renderer  # lazy: off the path of chatcli --help

    save = config.save and not args.no_save
    profiles = Profiles(env, args.config)
    session, config = start_session(args, env, config, flags, save=save, profiles=profiles)
    if session.system and session.redact:
        redacted = session.set_system(session.system)  # from the config, a flag, or a session saved before
        if redacted is not None:
            env.stderr.write(f"chatcli: {redacted}.\n")
    oneshot = bool(args.question or args.json or args.schema or not (env.stdin_isatty and env.stdout_isatty))
    from chatcli.cli.inputs import as_commands, equip_tools, image_from_stdin  # lazy: off the path of chatcli --help

    if args.image and "-" in args.image:
        env = image_from_stdin(session, env)  # the question then comes from the arguments alone
    for text in as_commands(session, args):  # what -f, -i and -o did, naming files and values
        if not oneshot:
            env.stderr.write(f"chatcli: {shown(text)}\n")
    # The output strategy, chosen once, for either mode.
    output = make_renderer(env, markdown=config.render == "markdown" and not args.plain, repl=not oneshot,
                           hold=bool(args.json or schema is not None))
    equip_tools(session, config, env, yes=args.yes, terminal=env.stdin_isatty and env.stdout_isatty, repl=not oneshot)
    try:
        if oneshot:
            from chatcli.app import equip_cache  # lazy: off the path of chatcli --help
            from chatcli.cli.oneshot import run_oneshot  # lazy: off the path of chatcli --help

            equip_cache(session, config, save=save)
            return run_oneshot(
                session, env, args.question, output=output, verbose=args.verbose, stats=config.stats,
                as_json=args.json, schema=schema,
            )
        if args.cache:
            env.stderr.write("chatcli: --cache is for one-shot asks; the interactive session asks the server each time.\n")
        return _run_repl(args, env, config, session, output, save=save)
    finally:
        from chatcli.app import close_tools  # lazy: off the path of chatcli --help

        close_tools(session)  # MCP servers end with the program, leaving no process behind


def _run_repl(args: argparse.Namespace, env, config, session, output, *, save: bool) -> int:
    from chatcli.base.log import holding  # lazy: off the path of chatcli --help
    from chatcli.cli.repl import Repl  # lazy: off the path of chatcli --help

    repl = Repl(
        session,
        out=env.stdout,
        keyboard=env.stdin,
        strategy=output,
        verbose=args.verbose,
        environ=env.environ,
        stats=config.stats,
        vi=config.editing_mode == "vi",
        multiline=config.multiline,
        history_path=env.state_dir / "history" if save else None,
    )
    with holding():
        return repl.run()


