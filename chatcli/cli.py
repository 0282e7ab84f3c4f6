"""The command line: parse flags, pick the REPL or one-shot mode, map errors to exit codes.

Kept light on purpose: `chatcli --help` imports neither openai, rich nor
prompt-toolkit, and the REPL imports openai only in the background.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn, Sequence

from chatcli import __version__
from chatcli.config import SETTINGS_BY_KEY
from chatcli.errors import EXIT_INTERRUPTED, EXIT_USAGE, ChatError, ConfigError

EXAMPLES = """\
examples:
  chatcli                                      start an interactive session
  chatcli --system "You are a terse SQL expert"  a session with a persona
  chatcli "why is the sky blue?"               ask once and print the answer
  cat report.md | chatcli "summarize this"     send piped text with an instruction
  chatcli < notes.txt > answer.txt             send a file, write the answer to a file
  chatcli --base-url http://localhost:11434/v1 --model llama3.2   use a local Ollama

configuration (lowest to highest): defaults, ~/.config/chatcli/config.toml,
./.env, the environment (OPENAI_API_KEY, OPENAI_BASE_URL, CHATCLI_*), flags.

exit codes: 0 ok, 1 request failed or reply incomplete, 2 bad command line,
3 bad configuration or API key, 4 server unreachable or silent, 130 Ctrl-C.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One sentence, not a usage dump."""
        self.exit(EXIT_USAGE, f"chatcli: {message}; see chatcli --help.\n")


def _setting(key: str):
    """An argparse type that validates a flag with the same rules as the config file."""
    setting = SETTINGS_BY_KEY[key]

    def parse(text: str) -> Any:
        try:
            return setting.parse(text, "")
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {setting.allowed()}, not {text!r}") from None

    parse.__name__ = key
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chatcli",
        description="Chat with OpenAI-compatible models in the terminal. With no question and a terminal "
        "on stdin, opens an interactive session; otherwise asks once and writes the answer to stdout.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", nargs="*", help="ask this once, then exit (piped stdin is appended)")
    parser.add_argument("-m", "--model", type=_setting("model"), help="model name (default: gpt-4o-mini)")
    parser.add_argument("-s", "--system", type=_setting("system"), help="system prompt, i.e. a persona")
    parser.add_argument("-t", "--temperature", type=_setting("temperature"), help="sampling temperature, 0 to 2")
    parser.add_argument("--max-tokens", type=_setting("max_tokens"), metavar="N", help="longest reply, in tokens")
    parser.add_argument("--base-url", type=_setting("base_url"), metavar="URL", help="OpenAI-compatible API base URL")
    parser.add_argument("--config", metavar="PATH", help="config file (default: ~/.config/chatcli/config.toml)")
    parser.add_argument("--plain", action="store_true", help="print replies as plain text, not markdown")
    parser.add_argument("--version", action="version", version=f"chatcli {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from chatcli.env import Env

    env = Env.from_process()
    try:
        return _run(args, env)
    except ChatError as exc:
        env.stderr.write(f"chatcli: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        env.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (chatcli ... | head -1): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace, env) -> int:
    from chatcli.client import ChatClient
    from chatcli.config import load_config, require_api_key
    from chatcli.session import Session

    flags = {
        "model": args.model,
        "system": args.system,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "base_url": args.base_url,
    }
    config = load_config(env, config_path=args.config, flags=flags)
    require_api_key(config)
    params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
    session = Session(
        client=ChatClient(config),
        model=config.model,
        system=config.system,
        params={k: v for k, v in params.items() if v is not None},
    )
    markdown = config.markdown and not args.plain

    if args.question or not (env.stdin_isatty and env.stdout_isatty):
        from chatcli.oneshot import run_oneshot

        return run_oneshot(session, env, args.question, markdown=markdown)

    from chatcli.repl import Repl

    repl = Repl(
        session,
        out=env.stdout,
        keyboard=env.stdin,
        markdown=markdown,
        color=not env.no_color,
        history_path=env.state_dir / "history",
    )
    return repl.run()
