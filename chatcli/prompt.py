"""prompt-toolkit parts: key bindings, completer, toolbar and the prompt session.

Factories take the state they show, so tests can call them with a small session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings

from chatcli.commands import Registry
from chatcli.errors import one_line
from chatcli.pricing import format_cost
from chatcli.session import Session
from chatcli.terminal import strip_controls


def make_key_bindings(*, multiline: bool = False) -> KeyBindings:
    """Enter sends; Alt-Enter (or Esc then Enter) inserts a newline. With `multiline`, the other way round."""
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _alt_enter(event) -> None:
        if multiline:
            event.current_buffer.validate_and_handle()
        else:
            event.current_buffer.insert_text("\n")

    return kb


class SlashCompleter(Completer):
    """Completes slash commands at the start of the line, from the registry, and the argument of some.

    `arguments` maps a command to what completes its argument (/model: the server's model
    names, if they are known); each returns at once, never waiting on the network.
    """

    def __init__(self, registry: Registry, arguments: dict[str, Callable[[], list[str] | None]] | None = None) -> None:
        self._registry = registry
        self._arguments = {registry.command_for(name): names for name, names in (arguments or {}).items()}

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        command, space, partial = text.partition(" ")
        names = self._arguments.get(self._registry.command_for(command)) if space else None
        if names is not None and " " not in partial:
            for name in names() or ():
                if name.startswith(partial):  # a server's model name: shown through the gate
                    yield Completion(name, start_position=-len(partial), display=strip_controls(name))
            return
        if not text.startswith("/") or any(ch.isspace() for ch in text):
            return
        for name in self._registry.names():
            if name.startswith(text.lower()):
                command = self._registry.command_for(name)
                yield Completion(name, start_position=-len(text), display_meta=command.help if command else "")


def make_toolbar(session: Session) -> Callable[[], FormattedText]:
    """The bottom toolbar: model, temperature and the session's tokens, read fresh each redraw."""

    def toolbar() -> FormattedText:
        session.settle()  # the server's model and window, once it has said them; never waits
        temp = session.temperature
        profile = session.client.config.profile if session.client is not None else None
        _, total = session.accounting()
        mark = "" if total.exact else "≈"
        tokens = total.usage.total_tokens
        plan = session.plan()
        used = plan.tokens
        window = plan.window
        return FormattedText(
            [
                ("class:bottom-toolbar", f" {profile}: {one_line(session.shown_model, 60)} " if profile else f" {one_line(session.shown_model, 60)} "),
                ("class:bottom-toolbar", f"│ temp {temp:g} " if temp is not None else "│ temp default "),
                ("class:bottom-toolbar", f"│ context {used}/{_short(window)} ({100 * used.tokens / window:.0f}%) "),
                ("class:bottom-toolbar", f"│ {mark}{tokens:,} tokens {format_cost(total.cost, exact=total.exact)} "),
                ("class:bottom-toolbar", "│ /help "),
            ]
        )

    return toolbar


def _short(n: int) -> str:
    """2048 as 2,048 (local servers' windows are told apart by their last digits), 128000 as 128k,
    1047576 as 1M."""
    if n < 10_000:
        return f"{n:,}"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}".rstrip("0").rstrip(".") + "M"
    if n >= 1000:
        return f"{n / 1000:.1f}".rstrip("0").rstrip(".") + "k"
    return str(n)


def open_history(path: Path | None, *, redact: tuple[str, ...] = ()) -> History:
    """Input history kept across runs, in a file only the user can read.

    With `redact` set, the file keeps each message as it was sent, scrubbed:
    personal data kept out of the request is kept off the disk too.
    """
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        os.close(fd)
    except OSError:
        return InMemoryHistory()
    if not redact:
        return FileHistory(str(path))

    class ScrubbedHistory(FileHistory):
        def store_string(self, string: str) -> None:
            from chatcli.pii import scrub

            super().store_string(scrub(string, redact).text)

    return ScrubbedHistory(str(path))


def make_prompt_session(
    session: Session,
    registry: Registry,
    *,
    history: History,
    color: bool = True,
    vi: bool = False,
    multiline: bool = False,
    input=None,
    output=None,
) -> PromptSession:
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory

    return PromptSession(
        message=[("class:prompt", "> ")],
        history=history,
        key_bindings=make_key_bindings(multiline=multiline),
        multiline=multiline,
        vi_mode=vi,
        enable_open_in_editor=True,  # Ctrl-X Ctrl-E (v in vi's normal mode): $EDITOR on what is typed
        refresh_interval=0.5,  # the toolbar shows the server's model and window as soon as it says them
        auto_suggest=AutoSuggestFromHistory(),  # greyed from history; the Right arrow takes it
        completer=SlashCompleter(registry, {
            "model": lambda: session.client.known_models() if session.client is not None else None,
            "profile": lambda: list(session.client.config.profiles) if session.client is not None else None,
        }),
        complete_while_typing=True,
        bottom_toolbar=make_toolbar(session),
        enable_history_search=False,  # Up walks history; Ctrl-R searches it
        prompt_continuation=lambda width, line_number, wrap_count: ". ".rjust(width),
        color_depth=None if color else _monochrome(),
        input=input,
        output=output,
    )


def _monochrome():
    from prompt_toolkit.output import ColorDepth

    return ColorDepth.MONOCHROME

