"""prompt-toolkit parts: key bindings, completer, toolbar and the prompt session.

Factories take the state they show, so tests can call them with a small session.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
import termios
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app, run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.keys import Keys
from prompt_toolkit.utils import get_cwidth
from prompt_toolkit.validation import ValidationError, Validator

from chatcli.base.errors import Terminated, one_line
from chatcli.base.format import format_cost
from chatcli.base.parse import undecodable
from chatcli.base.pii import scrub
from chatcli.base.text import strip_controls
from chatcli.commands import Registry
from chatcli.core.attachments import chips
from chatcli.core.session import Session
from chatcli.ui.paste import CHARS_PER_TOKEN, RefusedPaste, bound_pastes


def make_key_bindings(*, multiline: bool = False, say: Callable[[str], None] | None = None) -> KeyBindings:
    """Enter sends; Alt-Enter (or Esc then Enter) inserts a newline. With `multiline`, the other way round.

    A paste PasteParser refused puts nothing at the prompt, and `say` tells why."""
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _alt_enter(event) -> None:
        if multiline:
            event.current_buffer.validate_and_handle()
        else:
            event.current_buffer.insert_text("\n")

    @kb.add(Keys.BracketedPaste)
    def _paste(event) -> None:
        if isinstance(event.data, RefusedPaste):
            if say is not None:
                run_in_terminal(lambda: say(event.data.sentence))
            return
        # As prompt-toolkit's own: some terminals paste \r\n or \r line endings.
        event.current_buffer.insert_text(event.data.replace("\r\n", "\n").replace("\r", "\n"))

    @kb.add(Keys.Vt100MouseEvent)
    def _mouse(event) -> None:
        # prompt-toolkit reads any ESC [ digits m as a mouse report, and its handler fails on one
        # that is not (colour codes typed or pasted without bracketed paste: "\x1b[31m"), with
        # "Unhandled exception in event loop". A real report goes to its handler; anything else
        # is what was typed, put at the prompt without its ESC.
        if _MOUSE_REPORT.fullmatch(event.data):
            _default_mouse_handler()(event)
        else:
            event.current_buffer.insert_text(event.data.replace("\x1b", ""))

    return kb


# The mouse reports prompt-toolkit's handler reads: X10 (ESC [ M and three bytes), xterm SGR
# (ESC [ < b;x;y M or m) and urxvt (ESC [ b;x;y M). A colour code ends in m without the <.
_MOUSE_REPORT = re.compile(r"\x1b\[M[\s\S]{3}|\x1b\[<\d+;\d+;\d+[mM]|\x1b\[\d+;\d+;\d+M")


def _default_mouse_handler() -> Callable:
    from prompt_toolkit.key_binding.bindings.mouse import load_mouse_bindings  # lazy: only when a report comes

    return load_mouse_bindings().get_bindings_for_keys((Keys.Vt100MouseEvent,))[0].handler


class DecodableText(Validator):
    """Refuses, at Enter, a line that holds bytes that are not UTF-8: it stays at the prompt to be
    mended, with a sentence under it, and is neither sent nor kept in the input history."""

    def validate(self, document: Document) -> None:
        if undecodable(document.text):
            raise ValidationError(message="This line holds bytes that are not UTF-8 text, which cannot be sent; "
                                          "delete them, or press Ctrl-C to clear the line.")


class SlashCompleter(Completer):
    """Completes slash commands at the start of the line, from the registry, and the argument of some.

    `arguments` maps a command to what completes its argument (/model: the server's model
    names, if they are known); each returns at once, never waiting on the network.
    """

    def __init__(self, registry: Registry, arguments: dict[str, Callable[[], list[str] | None]] | None = None,
                 *, paths: tuple[str, ...] = ()) -> None:
        from prompt_toolkit.completion import PathCompleter  # lazy: keeps prompt_toolkit off the startup path

        self._registry = registry
        self._arguments = {registry.command_for(name): names for name, names in (arguments or {}).items()}
        self._paths = {registry.command_for(name) for name in paths}  # commands whose arguments are paths
        self._path_completer = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        command, space, partial = text.partition(" ")
        if space and self._registry.command_for(command) in self._paths:  # /file, /image: the last path typed
            raw, word = last_word(partial)
            for found in self._path_completer.get_completions(Document(word, len(word)), complete_event):
                path = word[: len(word) + found.start_position] + found.text
                # Quoted as the command reads its arguments (shlex), so "my shot.png" stays one path.
                quoted = shlex.quote(path) if any(ch.isspace() or ch in "'\"\\" for ch in path) else path
                yield Completion(quoted, start_position=-len(raw),
                                 display=strip_controls(found.display_text))  # a file name can hold anything
            return
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


def last_word(text: str) -> tuple[str, str]:
    """The last word of a command line as typed (`raw`, quotes and backslashes and all) and as the
    shell-like split of /file and /image reads it (`word`); a quote left open counts as closed."""
    start, word, quote, escaped = 0, "", None, False
    for at, ch in enumerate(text):
        if escaped:
            word, escaped = word + ch, False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            word, quote = (word, None) if ch == quote else (word + ch, quote)
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            start, word = at + 1, ""
        else:
            word += ch
    return text[start:], word


def make_message(session: Session) -> Callable[[], FormattedText]:
    """The prompt: a chip for each file and image waiting to go with the next message, on lines of
    their own above "> " (on the prompt's line, chips wider than the terminal left no room to type)."""

    def message() -> FormattedText:
        waiting = chips(session)
        if not waiting:
            return FormattedText([("class:prompt", "> ")])
        lines = chip_lines(waiting, get_app().output.get_size().columns)
        return FormattedText([("class:chip", "\n".join(lines)), ("", "\n"), ("class:prompt", "> ")])

    return message


def chip_lines(waiting: list[str], width: int) -> list[str]:
    """The chips packed into lines `width` columns wide; a chip wider than a line is cut with "…"."""
    lines: list[str] = []
    for chip in waiting:
        if get_cwidth(chip) > width - 1:
            while chip and get_cwidth(chip) > width - 2:
                chip = chip[:-1]
            chip += "…"
        if lines and get_cwidth(lines[-1]) + 1 + get_cwidth(chip) <= width - 1:
            lines[-1] += " " + chip
        else:
            lines.append(chip)
    return lines


def make_toolbar(session: Session) -> Callable[[], FormattedText]:
    """The bottom toolbar: model, temperature and the session's tokens, read fresh each redraw."""

    def toolbar() -> FormattedText:
        session.settle()  # the server's model and window, once it has said them; never waits
        temp = session.temperature
        profile = session.policy.profile
        _, total = session.accounts.accounting()
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
                *_rate_limit_warning(session),
                ("class:bottom-toolbar", "│ /help "),
            ]
        )

    return toolbar


def _rate_limit_warning(session: Session) -> list[tuple[str, str]]:
    """'│ ⚠ tokens 4% left, resets in 12s' while the server's requests or tokens left are under 10%
    (its words are our own: only numbers are read from its headers)."""
    limits = session.rate_limits
    warning = limits.warning() if limits is not None else None
    if warning is None:
        return []
    return [("class:bottom-toolbar class:bottom-toolbar.warning bold fg:ansired", f"│ ⚠ {warning} ")]


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
    say: Callable[[str], None] | None = None,
) -> ChatPrompt:
    """`say` prints a sentence above the prompt: why a paste was refused."""
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory  # lazy: keeps prompt_toolkit off the startup path

    prompt = ChatPrompt(
        message=make_message(session),
        history=history,
        key_bindings=make_key_bindings(multiline=multiline, say=say),
        validator=DecodableText(),
        validate_while_typing=False,
        multiline=multiline,
        vi_mode=vi,
        enable_open_in_editor=True,  # Ctrl-X Ctrl-E (v in vi's normal mode): $EDITOR on what is typed
        refresh_interval=0.5,  # the toolbar shows the server's model and window as soon as it says them
        auto_suggest=AutoSuggestFromHistory(),  # greyed from history; the Right arrow takes it
        completer=SlashCompleter(registry, {
            "model": lambda: session.sender.known_models(),
            "profile": lambda: list(session.policy.profiles),
        }, paths=("file", "image")),
        complete_while_typing=True,
        bottom_toolbar=make_toolbar(session),
        enable_history_search=False,  # Up walks history; Ctrl-R searches it
        prompt_continuation=lambda width, line_number, wrap_count: ". ".rjust(width),
        color_depth=None if color else _monochrome(),
        input=input,
        output=output,
    )
    bound_pastes(prompt, lambda: paste_limit(session))
    return prompt


def paste_limit(session: Session) -> tuple[int, str]:
    """The most characters a paste may have, and the window that sets it, in words."""
    window = session.plan().window
    return window * CHARS_PER_TOKEN, f"the model's {window:,}-token window"


class SentAndInterrupted(KeyboardInterrupt):
    """Ctrl-C came just after Enter, before the line left the prompt: `text` was not sent."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ChatPrompt(PromptSession):
    """The prompt, and read_line(), which keeps a Ctrl-C pressed the moment after Enter.

    Between Enter and prompt() returning, prompt-toolkit still holds the terminal: in raw
    mode a Ctrl-C is a key it keeps for the next prompt, and after raw mode its SIGINT
    handler hands the Ctrl-C to an application that has finished. Either way the Ctrl-C
    was lost and the reply ran on, for up to a second when the terminal does not answer a
    cursor-position request. read_line() says such a Ctrl-C with SentAndInterrupted.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._accepted: str | None = None  # the line accepted by the current read_line()
        accept = self.default_buffer.accept_handler

        def remember(buffer) -> bool:
            self._accepted = buffer.document.text
            return accept(buffer) if accept is not None else False

        self.default_buffer.accept_handler = remember
        _no_wait_for_an_unanswered_cpr(self.app.renderer)

    def read_line(self, default: str = "") -> str:
        """The next line; SentAndInterrupted when a Ctrl-C came as it was sent."""
        self._accepted = None
        try:
            with _terminate_through(self.app):
                # handle_sigint=False: a SIGINT after Enter ends the prompt (asyncio's own handler)
                # rather than reaching an application that has finished.
                text = self.prompt(default=default, handle_sigint=False)
            if _ctrl_c_typed_ahead(self.app.input):
                raise SentAndInterrupted(text)
        except SentAndInterrupted:
            raise
        except KeyboardInterrupt:
            if self._accepted is None or isinstance(sys.exc_info()[1], Terminated):
                raise  # Ctrl-C at the prompt: it clears the line; SIGTERM or SIGHUP: chatcli ends
            raise SentAndInterrupted(self._accepted) from None
        return text


@contextmanager
def _terminate_through(app) -> Iterator[None]:
    """While the prompt runs, SIGTERM and SIGHUP end it through its event loop.

    The process's handler raises Terminated wherever Python is, and inside the prompt that
    is prompt-toolkit's own code: a task loading the history caught it and printed a
    traceback. Here the signal asks the application to exit with Terminated instead, and a
    signal that comes as it is already ending is raised once the prompt has returned.
    """

    pending: list[int] = []

    def deliver(signum: int, frame) -> None:
        try:
            loop = asyncio.get_running_loop()  # the prompt's, when it runs in this thread
        except RuntimeError:
            raise Terminated(signum) from None
        pending.append(signum)
        loop.call_soon_threadsafe(end)

    def end() -> None:
        if app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=Terminated(pending[0]))

    signums = [s for s in (signal.SIGTERM, signal.SIGHUP) if callable(signal.getsignal(s))]
    before = {s: signal.signal(s, deliver) for s in signums}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if pending:
        raise Terminated(pending[0])


def _ctrl_c_typed_ahead(input) -> bool:
    """A Ctrl-C typed in a terminal between Enter and now, taken out of what the next prompt reads.

    A pipe's keys are all typed ahead, for the prompts to come, and are left as they are."""

    from prompt_toolkit.input.typeahead import (  # lazy: keeps prompt_toolkit off the startup path
        get_typeahead,
        store_typeahead,
    )
    from prompt_toolkit.input.vt100 import Vt100Input  # lazy: keeps prompt_toolkit off the startup path
    from prompt_toolkit.keys import Keys  # lazy: keeps prompt_toolkit off the startup path

    try:
        if not isinstance(input, Vt100Input) or not os.isatty(input.fileno()):
            return False
        with input.raw_mode():  # keys still in the terminal's queue, typed as raw mode ended
            keys = [*get_typeahead(input), *input.read_keys()]
    except (OSError, ValueError, termios.error):
        return False
    rest = [key for key in keys if key.key != Keys.ControlC]
    store_typeahead(input, rest)
    return len(rest) < len(keys)


def _no_wait_for_an_unanswered_cpr(renderer) -> None:
    """Once a line is sent, wait for the terminal's cursor-position report only if it has ever sent one.

    prompt-toolkit asks the terminal where the cursor is (CPR) and, when the line is
    accepted, waits up to a second for an answer still to come, with the terminal in raw
    mode. A terminal that never answers (a serial console, some emulators, pexpect) then
    gets every reply a second late, and a Ctrl-C pressed in that second is read as a key
    and lost: the reply runs on until read_timeout. A terminal that answers has done so
    within milliseconds, so it is still waited for.
    """
    from prompt_toolkit.renderer import CPR_Support  # lazy: keeps prompt_toolkit off the startup path

    wait = renderer.wait_for_cpr_responses

    async def wait_if_answering(timeout: int = 1) -> None:
        # With 0, prompt-toolkit's own timeout path: the questions pending are dropped at once.
        await wait(timeout if renderer.cpr_support == CPR_Support.SUPPORTED else 0)

    renderer.wait_for_cpr_responses = wait_if_answering


def _monochrome():
    from prompt_toolkit.output import ColorDepth  # lazy: keeps prompt_toolkit off the startup path

    return ColorDepth.MONOCHROME

