"""The interactive loop: read a line, run a command or a turn, draw the outcome.

openai is imported in a background thread while the user types its first
message, so the prompt appears at once and the first reply does not wait.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import nullcontext
from typing import Mapping, TextIO

from chatcli import __version__
from chatcli.base.env import isatty
from chatcli.base.errors import ChatError, Terminated
from chatcli.base.events import LogLine
from chatcli.base.log import routed
from chatcli.commands import REGISTRY, Result
from chatcli.core.session import Session
from chatcli.core.turn import ERROR, PENDING, Turn, outcome_of
from chatcli.ui.output import MARKDOWN, PIPE, Output, warm_up_rendering
from chatcli.ui.prompt import SentAndInterrupted, make_prompt_session, open_history
from chatcli.ui.terminal import Clipboard, echo_off, edit_in_editor, write_whole
from chatcli.ui.views import (
    show_error,
    show_notice,
    show_outcome,
    show_recap,
    show_result,
    show_stats,
)


def terminal_approver():
    """The approver that asks on the terminal (ui/approval.py's prompt): `[y]es / [n]o / [e]dit /
    [a]lways`, with shell's exact command shown and editable."""
    from chatcli.core.toolloop import shown_arguments  # lazy: off the startup path
    from chatcli.ui.approval import ask_approval  # lazy: off the startup path

    def approve(call, tool, arguments):
        command = arguments.get("command") if tool.name == "shell" else None
        shows = command if isinstance(command, str) else shown_arguments(json.dumps(arguments, ensure_ascii=False))
        return ask_approval(call, tool.name, arguments, shows=shows, editable=command if isinstance(command, str) else None)

    return approve


class Repl:
    def __init__(
        self,
        session: Session,
        *,
        out: TextIO,
        keyboard: TextIO | None = None,
        strategy: Output | None = None,
        markdown: bool = True,
        verbose: bool = False,
        color: bool = True,
        history_path=None,
        input=None,
        output=None,
        warm_up: bool = True,
        environ: Mapping[str, str] | None = None,
        stats: bool = False,
        vi: bool = False,
        multiline: bool = False,
    ) -> None:
        self.session = session
        self.out = out
        # TERM, TMUX and STY say how OSC 52 reaches the clipboard (/copy); decided once.
        self.clipboard = Clipboard.detect(isatty=isatty(out), environ=os.environ if environ is None else environ)
        self.keyboard = keyboard
        # How replies are drawn: make_renderer's choice; without one (tests drawing to a string),
        # markdown or plain text as `markdown` says, on `out`, whatever it is.
        self.strategy = strategy or Output(MARKDOWN if markdown else PIPE, out=out, notices=out, color=color)
        self.stats = stats
        self.verbose = verbose
        self.console = self.strategy.console
        self.prompt = make_prompt_session(
            session, REGISTRY, history=open_history(history_path, redact=session.redact), vi=vi,
            color=self.strategy.color, multiline=multiline, input=input, output=output, say=lambda text: show_error(self.console, text),
        )
        self._orphan: Turn | None = None
        self._warm_up = threading.Thread(target=self._warm, daemon=True) if warm_up else None

    def _warm(self) -> None:
        try:
            self.session.client.warm_up()
            self.session.tokenizer.preload(self.session.model)
            warm_up_rendering()
        except Exception:  # noqa: BLE001 - a failure here shows up again, with a sentence, on send
            pass

    def _start_warm_up(self, _app=None) -> None:
        """Begin importing openai once the first prompt is on screen, so the two do not compete."""
        if self._warm_up is not None and not self._warm_up.is_alive() and self._warm_up.ident is None:
            self._warm_up.start()

    def run(self) -> int:
        try:
            return self._loop()
        finally:
            # However the loop ends (Ctrl-D, /exit, SIGTERM), let the background
            # import finish: a daemon thread still importing at interpreter
            # shutdown can abort Python.
            if self._warm_up is not None and self._warm_up.ident is not None:
                self._warm_up.join(timeout=5)

    def _loop(self) -> int:
        self.prompt.app.after_render.add_handler(self._start_warm_up)
        prefill = self._greet()
        while True:
            try:
                text = self.prompt.read_line(default=prefill)
            except Terminated:
                raise
            except SentAndInterrupted as exc:  # Ctrl-C the moment after Enter: nothing went
                show_notice(self.console, "[interrupted before it was sent; the message is back at the prompt]")
                prefill = exc.text
                continue
            except KeyboardInterrupt:
                prefill = ""  # Ctrl-C at the prompt clears the line
                continue
            except EOFError:
                break
            next_prefill = self._take(text)
            if next_prefill is None:
                break
            prefill = next_prefill
        self.session.journal.settle()  # one last try at what a full disk or a lock held back
        self.warn()
        return 0

    def _greet(self) -> str:
        """The first lines: version, model and how to get help; a resumed session's recap. Returns
        what goes at the first prompt (a last message that got no reply)."""
        s = self.session
        persona = f" · system prompt: {_shorten(s.system)}" if s.system else ""
        profile = s.policy.profile
        # With no model configured the server's own is asked for in the background; the toolbar names it.
        model = s.model if s.model_chosen else "the server's model"
        where = f"profile {profile}: {model}" if profile else model
        show_notice(self.console, f"chatcli {__version__} · {where}{persona} · /help for commands, Ctrl-D to quit")
        prefill = self.recap() if s.turns else ""
        self.warn()
        return prefill

    def _take(self, text: str) -> str | None:
        """One line typed: a command or a message. Returns what goes at the next prompt, or None to end."""
        if not text.strip():
            return ""
        if text.startswith("/") and not text.startswith("//"):
            return self._command(text)
        if text.startswith("//"):
            text = text[1:]  # a message that really starts with a slash
        self._drop_orphan_if_resent(text)
        return self._after_turn(self.send(text), prefill="")

    def _command(self, text: str) -> str | None:
        """Run a slash command and draw its Result. Returns what goes at the next prompt, or None for /exit."""
        s = self.session
        try:
            result = REGISTRY.dispatch(s, text, on_event=lambda event: show_notice(self.console, f"[{event}]"))
        except Terminated:
            raise
        except KeyboardInterrupt:  # a command that talks to the server (/compact)
            show_notice(self.console, "[interrupted]")
            return ""
        # /model, /resume and /new may bring another encoding: load it in the background, for the toolbar.
        s.tokenizer.preload(s.model)
        if result.clipboard is not None:
            result = self.copy(result)
        if result.edit is not None:
            result = self.edit(result.edit)
        show_result(self.console, result)
        self.warn()
        if result.exit:
            return None
        recalled = self.recap() if result.recap else ""  # the recap is drawn either way
        prefill = result.prefill or recalled
        if not result.retry:
            return prefill
        return self._after_turn(self.send(None), prefill=prefill)

    def _after_turn(self, turn: Turn | None, *, prefill: str) -> str:
        """After a turn: a message that failed before any reply goes back to the prompt, to send again."""
        self.warn()
        if turn is not None and turn.status == ERROR and not turn.reply and turn in self.session.turns:
            self._orphan = turn
            show_notice(self.console, "Your message is back at the prompt: press Enter to send it again.")
            return turn.user
        return prefill

    def copy(self, result: Result) -> Result:
        """Put result.clipboard on the terminal's clipboard with OSC 52; say why not when it cannot."""
        if self.clipboard.problem:
            return Result(self.clipboard.problem, error=True)
        write_whole(self.out, self.clipboard.sequence(result.clipboard or ""))
        return result

    def edit(self, text: str) -> Result:
        """/edit: the user writes in $VISUAL or $EDITOR, starting from text; it comes back to the prompt."""
        try:
            written = edit_in_editor(text)
        except ChatError as exc:
            return Result(exc.message, error=True)
        if not written.strip():
            return Result("The message was left empty; nothing was put at the prompt.")
        return Result("Your message is at the prompt: press Enter to send it.", prefill=written)

    def warn(self) -> None:
        """Say once that history is not being saved, and why (or that it is saved again); and what
        the MCP servers had to say since the last turn."""
        warning = self.session.journal.take_warning()
        if warning:
            show_error(self.console, warning)
        for news in self.session.toolloop.take_news() if self.session.toolloop is not None else ():
            show_error(self.console, news)  # an MCP server that could not start or stopped

    def recap(self) -> str:
        """Show the session's history briefly; return a last message that got no reply, to send again."""
        show_recap(self.console, self.session)
        last = self.session.turns[-1] if self.session.turns else None
        if last is not None and last.status == PENDING:
            show_notice(self.console, "Your last message got no reply; it is back at the prompt: press Enter to send it.")
            self._orphan = last
            self.session.images = [*last.images, *self.session.images]  # they go with it again
            return last.user
        return ""

    def _drop_orphan_if_resent(self, text: str) -> None:
        """Sending an unanswered or failed message again replaces it; until then it stays saved."""
        orphan, self._orphan = self._orphan, None
        if orphan is not None and text == orphan.user and self.session.turns and self.session.turns[-1] is orphan:
            self.session.undo()

    def send(self, text: str | None) -> Turn | None:
        """Send text as a turn, or with None send the last message again (/retry)."""
        renderer = self.strategy.renderer(show_reasoning=self.session.show_reasoning)
        loop = self.session.toolloop  # a tool call's question is asked with the reply's drawing paused
        try:
            with echo_off(self.keyboard) if self.keyboard else nullcontext(), renderer, \
                    routed(lambda line: renderer.handle(LogLine(line))), \
                    loop.asking_with(renderer.paused) if loop is not None else nullcontext():
                if text is None:
                    turn = self.session.retry(on_event=renderer.handle)
                else:
                    turn = self.session.send(text, on_event=renderer.handle)
        except Terminated:
            raise
        except KeyboardInterrupt:
            # Ctrl-C outside the stream itself (while the renderer started or
            # finished); the session kept whatever arrived.
            show_notice(self.console, "[interrupted]")
            return None
        if turn is None:
            return None
        self.report(turn)
        if text is None and turn not in self.session.turns:
            show_notice(self.console, "The earlier reply is kept.")
        return turn

    def report(self, turn: Turn) -> None:
        """The turn's end, in the words one-shot mode uses too (outcome_of)."""
        if self.stats:
            show_stats(self.console, self.session, turn)
        why = self.session.tokenizer.take_problem(self.session.model) if self.verbose else None
        show_outcome(self.console, outcome_of(turn, estimates=why))


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
