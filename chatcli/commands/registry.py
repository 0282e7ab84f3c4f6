"""The registry of slash commands, the Result a handler returns, and /help and /exit, which read it."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from chatcli.base.errors import ChatError
from chatcli.base.events import Event
from chatcli.core.session import Session


@dataclass
class Result:
    text: str = ""
    error: bool = False
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    exit: bool = False
    retry: bool = False  # the REPL sends the last message again (/retry)
    prefill: str | None = None  # the REPL puts this back at the prompt (/undo)
    recap: bool = False  # the REPL shows the session's history (/resume)
    clipboard: str | None = None  # the REPL puts this on the terminal's clipboard (/copy), then shows text
    edit: str | None = None  # the REPL opens $EDITOR on this, and puts what is written at the prompt (/edit)


Handler = Callable[..., Result]  # (session, arg), and on_event= for a command that hears the server


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    help: str
    args: str = ""
    aliases: tuple[str, ...] = ()
    hears: bool = False  # the handler takes on_event: what the server says while it runs (/compact's retries)


class Registry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self._lookup: dict[str, Command] = {}

    def command(self, name: str, *, help: str, args: str = "", aliases: tuple[str, ...] = (), hears: bool = False):
        def register(handler: Handler) -> Handler:
            cmd = Command(name, handler, help, args, aliases, hears)
            self.commands[name] = cmd
            for key in (name, *aliases):
                self._lookup[key] = cmd
            return handler

        return register

    def names(self) -> list[str]:
        """Every name a user may type, aliases included, with the slash."""
        return sorted("/" + key for key in self._lookup)

    def command_for(self, name: str) -> Command | None:
        return self._lookup.get(name.removeprefix("/").lower())

    def unknown(self, name: str) -> Result:
        near = difflib.get_close_matches(name.lower(), self._lookup, n=1, cutoff=0.5)
        hint = f" Did you mean /{near[0]}?" if near else " Type /help for the list."
        return Result(f"Unknown command /{name}.{hint}", error=True)

    def dispatch(self, session: Session, line: str, *, on_event: Callable[[Event], None] | None = None) -> Result:
        """Run the command on the line. `on_event` hears what a command that asks the server is
        told as it happens (a retry, before its wait), for the front end to say."""
        name, arg = (line.strip().removeprefix("/").split(None, 1) + ["", ""])[:2]
        if not name:
            return Result("Type a command after the slash; /help lists them.", error=True)
        cmd = self.command_for(name)
        if cmd is None:
            return self.unknown(name)
        if arg.strip() and not cmd.args:
            # Never half-obey: /undo 3 would drop one exchange, /clear now would clear.
            return Result(f"/{cmd.name} takes nothing after it, not {_shown(arg.strip())}; type /{cmd.name} alone.", error=True)
        try:
            if cmd.hears:
                return cmd.handler(session, arg.strip(), on_event=on_event)
            return cmd.handler(session, arg.strip())
        except ChatError as exc:
            return Result(exc.message, error=True)


REGISTRY = Registry()
command = REGISTRY.command


@command("help", args="[command]", help="List the commands, or say how one is used.", aliases=("?",))
def help_command(session: Session, arg: str) -> Result:
    """With no argument, every command with a line on what it does. /help NAME (with or
    without the slash) gives its arguments and these details. /? is the same."""
    if arg:
        cmd = REGISTRY.command_for(arg.split()[0])
        if cmd is None:
            return REGISTRY.unknown(arg.split()[0].removeprefix("/"))
        also = f" Also: /{', /'.join(cmd.aliases)}." if cmd.aliases else ""
        usage = f"/{cmd.name}" + (f" {cmd.args}" if cmd.args else " (takes nothing after it)")
        details = inspect.cleandoc(cmd.handler.__doc__ or "").replace("\n", " ")  # the handler's docstring
        return Result(f"{usage}: {cmd.help}{also}" + (f"\n\n{details}" if details else ""))
    rows = [
        [f"/{c.name}" + (f" {c.args}" if c.args else ""), c.help + (f" (also /{', /'.join(c.aliases)})" if c.aliases else "")]
        for c in REGISTRY.commands.values()
    ]
    rows.append(["Alt-Enter", "Insert a newline (Esc then Enter works too)."])
    rows.append(["Ctrl-C", "Cancel a reply, or clear the line."])
    rows.append(["Ctrl-D", "Quit."])
    return Result(headers=["command", "what it does"], rows=rows)


@command("exit", help="Quit chatcli.", aliases=("quit", "q"))
def exit_command(session: Session, arg: str) -> Result:
    """Ends chatcli; Ctrl-D at an empty prompt does the same. The session is already saved:
    every message is written before it is sent, every reply as it ends."""
    return Result(exit=True)


# The words that unset a value (/temp default, /set seed none, /system none): back to the server's own.
UNSET = ("default", "unset", "none")


def _shown(text: str, limit: int = 40) -> str:
    """A user's argument quoted in an error: one line, bounded."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")

