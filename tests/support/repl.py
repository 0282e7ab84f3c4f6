"""The REPL over a pipe, as prompt-toolkit's own tests drive it: keys in, what it printed out."""

from __future__ import annotations

import io
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prompt_toolkit.buffer import Buffer
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatcli.cli.repl import Repl
from chatcli.core.session import Session
from tests.support.keys import OUTPUTS

ENTER = "\r"


CTRL_C = "\x03"


CTRL_D = "\x04"


ESC_ENTER = "\x1b\r"


UP = "\x1b[A"


TAB = "\t"


@dataclass
class Chat:
    """One REPL over a pipe: type keys, run it until Ctrl-D, read what it printed."""

    session: Session
    repl: Repl
    pipe: PipeInput
    out: io.StringIO

    def run(self, *keys: str | Callable[[], None], pause: float | None = None) -> str:
        """Type `keys`, then Ctrl-D; run the REPL to its end and return its output.

        With `pause`, each key string is typed after a pause, from a thread, as
        a person would: needed where prompt-toolkit works asynchronously
        (history loading, completion) between two keys. A string ending in Enter
        sends a line, and the next key waits for the prompt after it. A callable
        is called there instead of typing, to change the world between two turns.
        """
        if pause is None:
            self.pipe.send_text("".join(keys) + CTRL_D)  # type: ignore[arg-type]
            assert self.repl.run() == 0
        else:

            def typist() -> None:
                app = self.repl.prompt.app
                answered = None  # the prompt that took the last Enter
                for key in (*keys, CTRL_D):
                    time.sleep(pause)
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and not (app.is_running and app.future is not answered):
                        time.sleep(0.01)  # a reply is still streaming: wait for the next prompt
                    if callable(key):
                        key()
                        continue
                    if key.endswith(ENTER) and not key.endswith(ESC_ENTER):
                        answered = app.future
                    self.pipe.send_text(key)

            thread = threading.Thread(target=typist, daemon=True)
            thread.start()
            assert self.repl.run() == 0
            thread.join(timeout=10)
        return self.out.getvalue()

    def waits_for(self, condition: Callable[[Buffer], bool], seconds: float = 10) -> Callable[[], None]:
        """A step for run(keys, pause=...): wait until condition(the prompt's buffer) holds, for things
        prompt-toolkit does in the background (loading the history, finding a suggestion). Past
        seconds it goes on, and the test's own assertions say what did not happen."""

        def wait() -> None:
            buffer = self.repl.prompt.app.current_buffer
            deadline = time.monotonic() + seconds
            while not condition(buffer) and time.monotonic() < deadline:
                time.sleep(0.01)

        return wait


def piped_chat(stack: ExitStack, session: Session, *, markdown: bool = True, history: Path, **prompt: bool) -> Chat:
    """A Repl on `session` as cli.py builds it, reading keys from a pipe and drawing to a string."""
    pipe = stack.enter_context(create_pipe_input())
    out = io.StringIO()
    OUTPUTS.append(out)  # grepped for the key after the test
    repl = Repl(
        session,
        out=out,
        markdown=markdown,
        color=False,
        history_path=history,
        input=pipe,
        output=DummyOutput(),
        warm_up=False,
        **prompt,
    )
    return Chat(session, repl, pipe, out)


def flat(output: str) -> str:
    """The output with line wrapping undone: every run of whitespace becomes one space."""
    return " ".join(output.split())


def user_messages(srv) -> list[str]:
    """The text of the last user message of every chat request, in order."""
    return [r.body["messages"][-1]["content"] for r in srv.chat_requests]


def lines_with(output: str, needle: str) -> list[str]:
    return [line for line in output.splitlines() if needle in line]
