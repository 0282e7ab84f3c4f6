"""Input from outside, checked where it comes in: text that does not decode, and ids.

Python hands over argv and the environment decoded with surrogateescape, so bytes that are
not UTF-8 arrive as lone surrogates, which no encoder takes: not the JSON of a request, not
SQLite, not tiktoken. They are refused here, with the name of what held them, before anything
else meets them. File paths are the exception: the file system takes any bytes back.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Callable, Iterator

from chatcli.base.errors import UsageError

_SURROGATE = re.compile("[\ud800-\udfff]")

# SQLite's integers, and so session ids, stop at 2**63 - 1.
MAX_ID = 2**63 - 1

# Arguments that name files: passed on to the file system as the bytes they are.
PATH_ARGUMENTS = frozenset({"config", "db", "log_file", "schema", "output"})


def undecodable(text: str) -> bool:
    """Whether text holds bytes that did not decode (lone surrogates)."""
    return _SURROGATE.search(text) is not None


def readable(text: str) -> str:
    """Text with each byte that did not decode shown as U+FFFD, as a terminal would show it."""
    return _SURROGATE.sub("\ufffd", text)


def not_utf8(what: str) -> str:
    return (f"{what} is not UTF-8 text: it holds bytes that do not decode; "
            "give it in UTF-8 (check the terminal's encoding and the locale).")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A UsageError naming the first argument that holds bytes that are not UTF-8."""
    for action in _actions(parser, args):
        if action.dest in PATH_ARGUMENTS:
            continue
        value = getattr(args, action.dest, None)
        if action.dest == "option" and value:  # -o NAME VALUE
            for name, setting in value:
                if undecodable(name):
                    raise UsageError(not_utf8("The name given to -o"))
                if undecodable(setting):
                    raise UsageError(not_utf8(f"The value of -o {name}"))
        elif any(undecodable(text) for text in _texts(value)):
            raise UsageError(not_utf8(_named(action)))


def whole_number_in(low: int, high: int, must: str) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`; `must` says what it must be when it is not."""

    def parse(text: str) -> int:
        number = whole_number(text)
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be {must}, not {_quoted(text)}")
        return number

    return parse


session_id = whole_number_in(1, MAX_ID, "a session id, as chatcli sessions list shows them")
count = whole_number_in(0, MAX_ID, f"a whole number from 0 to {MAX_ID}")  # how many, from 0 up

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text: str) -> int | None:
    """Seconds in a duration such as 30d, 12h, 2w or 90s (a whole number and one unit), or None."""
    match = _DURATION.match(text)
    return int(match.group(1)) * DURATION_UNITS[match.group(2)] if match else None


def whole_number(text: str) -> int | None:
    """Digits as a number, or None; int() refuses more than 4,300 digits, and no count or id has that many."""
    if not text.isdecimal():  # '²' is a digit to str.isdigit, and not to int()
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _quoted(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _actions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Iterator[argparse.Action]:
    """The parser's actions, and those of the subcommand args chose (chatcli sessions rename)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                yield from _actions(chosen, args)
        else:
            yield action


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _texts(item)


def _named(action: argparse.Action) -> str:
    if action.dest == "file":
        return f"The file name given to {'/'.join(action.option_strings)}"
    if action.option_strings:
        return f"The value of {'/'.join(action.option_strings)}"
    return {"text": "The search text"}.get(action.dest, f"The {action.dest}")  # the question, the title
