"""The flags chatcli and its subcommands share, and finding a subcommand after them.

`chatcli --db X sessions list` and `chatcli sessions list --db X` are the same
command: a subcommand (sessions, usage, models, config, cache) is the first word that
is not a flag or a flag's value, and the global flags it takes go before or
after it. One table defines each shared flag, so the two places agree on its
name, type and help.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, NoReturn, Sequence

from chatcli.base.errors import EXIT_USAGE, ConfigError
from chatcli.config.settings import check_base_url
from chatcli.config.table import SETTINGS_BY_KEY

# Each subcommand, and the global flags (by dest) it takes besides its own.
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "sessions": ("db", "config"),
    "usage": ("db", "config"),
    "models": ("profile", "base_url", "config", "verbose", "log_file"),
    "config": ("profile", "config", "verbose", "log_file"),
    "cache": ("db", "config"),
    "batch": ("profile", "base_url", "config", "db", "verbose", "log_file"),
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One sentence, not a usage dump."""
        command = " ".join(self.prog.split()[:2])  # chatcli, or chatcli sessions
        self.exit(EXIT_USAGE, f"chatcli: {message}; see {command} --help.\n")


def setting_type(key: str):
    """An argparse type that validates a flag with the same rules as the config file."""
    setting = SETTINGS_BY_KEY[key]

    def parse(text: str) -> Any:
        try:
            value = setting.parse(text, "")
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {setting.allowed()}, not {text!r}") from None
        if key == "base_url":
            try:
                return check_base_url(value)
            except ConfigError as exc:
                raise argparse.ArgumentTypeError(exc.message[0].lower() + exc.message[1:].rstrip(".")) from None
        return value

    parse.__name__ = key
    return parse


def _flags() -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    return {
        "profile": (("-p", "--profile"), dict(type=setting_type("profile"), metavar="NAME",
                                              help="use the config file's [profiles.NAME] (also: CHATCLI_PROFILE)")),
        "base_url": (("--base-url",), dict(type=setting_type("base_url"), metavar="URL", help="OpenAI-compatible API base URL")),
        "config": (("--config",), dict(metavar="PATH", help="config file (default: ~/.config/chatcli/config.toml)")),
        "db": (("--db",), dict(type=setting_type("db"), metavar="PATH",
                               help="session database (default: ~/.local/share/chatcli/chatcli.db)")),
        "verbose": (("-v", "--verbose"), dict(action="store_true", help="log each request, its timings and retries to "
                                                                         "stderr (keys redacted), and say why token counts are estimates")),
        "log_file": (("--log-file",), dict(metavar="PATH", help="append that log to PATH instead (or as well, with -v)")),
    }


def add_flags(parser: argparse.ArgumentParser, dests: Sequence[str], *, again: bool = False) -> None:
    """Add the shared flags named. `again`: on a subcommand's own action parser (sessions list), where
    a flag given after the action must not reset one given before it."""
    table = _flags()
    for dest in dests:
        names, options = table[dest]
        parser.add_argument(*names, **options, **({"default": argparse.SUPPRESS} if again else {}))


def split_subcommand(argv: Sequence[str], parser: argparse.ArgumentParser) -> Subcommand | None:
    """The subcommand argv names after chatcli's flags, if it names one.

    A word is a subcommand only where a question would begin, the flags' values skipped as argparse
    takes them: `chatcli -m gpt-4o models` is the subcommand (and a usage error, as it takes no -m),
    while in `chatcli -r sessions` and `chatcli -- models` the word is -r's value and a question.
    """
    i, before = 0, []
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return None
        if word.startswith("-") and word != "-":
            found = _flag_at(argv, i, parser)
            if found is None:
                return None  # a flag chatcli does not know, --version or --completion: the main parser says
            i, flags = found
            before += flags
            continue
        return Subcommand(word, before, list(argv[:i]), list(argv[i + 1 :])) if word in SUBCOMMANDS else None
    return None


@dataclass(frozen=True)
class Subcommand:
    name: str
    flags: list[tuple[str, argparse.Action]]  # the flags before it, as typed (-p, --db), with their actions
    before: list[str]  # the words before it
    after: list[str]  # the words after it

    def refused(self) -> str | None:
        """The sentence for a flag before the subcommand that it does not take, if any."""
        takes = SUBCOMMANDS[self.name]
        for typed, action in self.flags:
            if action.dest not in (*takes, "help"):
                names = [next(n for n in _flags()[d][0] if n.startswith("--")) for d in takes]
                return (f"{self.name} does not take {typed} (it takes {', '.join(names[:-1])} and {names[-1]}); "
                        f"quote a question that begins with the word {self.name!r}")
        return None


def _flag_at(argv: Sequence[str], i: int, parser: argparse.ArgumentParser) -> tuple[int, list] | None:
    """The index just past the flag at argv[i] and its values, as argparse would take them, and the
    flags that word holds (-vc holds two); None for a flag chatcli does not know."""
    word, actions = argv[i], parser._option_string_actions
    if word.startswith("--"):
        name, eq, _ = word.partition("=")
        action = actions.get(name)
        if action is None:  # argparse takes a long flag's unambiguous prefix
            found = {id(a): a for s, a in actions.items() if s.startswith(name) and s.startswith("--")}
            action = next(iter(found.values())) if len(found) == 1 else None
        if action is None or action.dest in ("version", "completion"):
            return None
        return i + 1 + (0 if eq else _values(action, argv[i + 1 :])), [(name, action)]
    flags = []
    for k in range(1, len(word)):  # -p NAME, -pNAME, -vc
        action = actions.get("-" + word[k])
        if action is None:
            return None
        flags.append(("-" + word[k], action))
        if action.nargs != 0:
            return i + 1 + (0 if k + 1 < len(word) else _values(action, argv[i + 1 :])), flags
    return i + 1, flags


def _values(action: argparse.Action, rest: Sequence[str]) -> int:
    """How many of the words after a flag argparse takes as its values."""
    if action.nargs == 0:
        return 0
    if action.nargs == "?":
        return 1 if rest and not rest[0].startswith("-") else 0
    return action.nargs if isinstance(action.nargs, int) else 1


@contextmanager
def request_log(args: argparse.Namespace, env: Any, config: Any) -> Iterator[None]:
    """-v and --log-file: the log of what goes to the server, for a chat and for the subcommands that ask it."""
    if not args.verbose and args.log_file is None:
        yield
        return
    from chatcli import __version__  # lazy: off the path of chatcli --help
    from chatcli.base.log import log, logging_to  # lazy: off the path of chatcli --help

    with logging_to(env.stderr, verbose=args.verbose, log_file=args.log_file, secret=config.api_key):
        log.info("chatcli %s: %s at %s, API key %s, config %s", __version__, config.model, config.shown_url,
                 "set" if config.api_key else "not set", config.config_path)
        yield
