"""The terminal itself: no echo while a reply is drawn, Ctrl-C held mid-draw, the clipboard, the editor.

The first two keep rich's live region in step with what is really on the
screen: an echoed ^C moves the cursor, and an interrupt in the middle of a
write leaves the cursor where rich does not expect it. The clipboard is the
terminal's own, set with OSC 52, so /copy works over SSH too.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, TextIO

from chatcli.base.errors import ChatError
from chatcli.base.text import osc52_payload


@contextmanager
def echo_off(stream: TextIO) -> Iterator[None]:
    """Stop the terminal echoing keys (^C, typeahead) while a reply is drawn.

    An echoed ^C moves the cursor, and rich then erases the wrong lines of its
    live region. Ctrl-C still sends SIGINT, and typed keys wait in the tty's
    queue for the next prompt.
    """
    try:
        import termios  # POSIX only: elsewhere there is no echo to stop

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, AttributeError, ValueError, OSError):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        yield
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        except termios.error:
            pass  # the terminal is gone (closed mid-reply): nothing is left to restore


class InterruptGuard:
    """Holds Ctrl-C while a block is being drawn, and raises it right after.

    A KeyboardInterrupt that lands in the middle of writing to the terminal
    leaves the cursor where rich did not expect it, and the live region then
    erases the wrong lines. Installed only in the main thread, where signals go.
    """

    def __init__(self) -> None:
        self._holding = 0
        self._pending = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    @contextmanager
    def hold(self, *, deliver: bool = True) -> Iterator[None]:
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._pending:
                self._pending = False
                if deliver:
                    raise KeyboardInterrupt


# GNU screen keeps at most 768 bytes of a DCS string (256 before 4.2); each
# piece of the sequence goes in its own DCS, as hterm's osc52.sh does.
SCREEN_CHUNK = 252


def osc52(text: str) -> str:
    """The xterm sequence that sets the clipboard ("c") to text."""
    return f"\x1b]52;c;{osc52_payload(text)}\x07"


def tmux_passthrough(sequence: str) -> str:
    """Wrap a sequence for tmux to hand to the outer terminal as it is (ESCs doubled)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def screen_passthrough(sequence: str) -> str:
    """Wrap a sequence for GNU screen to hand to the outer terminal, in DCS pieces screen keeps whole."""
    return "".join(f"\x1bP{sequence[i : i + SCREEN_CHUNK]}\x1b\\" for i in range(0, len(sequence), SCREEN_CHUNK))


@dataclass(frozen=True)
class Clipboard:
    """How to reach the terminal's clipboard with OSC 52, decided once from the output and TERM, TMUX and STY.

    chatcli writes OSC 52 itself, so the clipboard is the one of the terminal
    the user is looking at, also over SSH. Nobody can ask a terminal whether
    it took the sequence, so only the cases known never to work are refused:
    output that is not a terminal, TERM=dumb, and the Linux console (TERM=linux),
    which ignores OSC 52.

    Inside tmux, an application's OSC 52 reaches the outer terminal only with
    `set -g set-clipboard on`: the default, `external`, drops it (tmux's
    input_osc_52 acts only when the option is on). tmux's own passthrough
    (DCS "tmux;") works by default before tmux 3.3, and from 3.3 with
    `set -g allow-passthrough on`. So inside tmux both are written: whichever
    the user's tmux allows gets through, and one that is switched off is
    dropped silently; when both are on, the clipboard is set twice to the same
    text. Inside GNU screen (TERM=screen* with STY, and no TMUX: tmux sets
    TERM=screen too) the sequence goes through screen's DCS passthrough.
    """

    problem: str | None = None  # why nothing can be copied, as a sentence; None when it can
    via: str = "direct"  # "direct", "tmux" or "screen"

    @classmethod
    def detect(cls, *, isatty: bool, environ: Mapping[str, str]) -> Clipboard:
        term = environ.get("TERM", "")
        if not isatty:
            return cls(problem="Nothing was copied: the output is not a terminal, so there is no clipboard to reach.")
        if term == "dumb":
            return cls(problem="Nothing was copied: this terminal (TERM=dumb) has no clipboard support.")
        if term == "linux":
            return cls(problem="Nothing was copied: the Linux console (TERM=linux) has no clipboard support.")
        if environ.get("TMUX"):
            return cls(via="tmux")
        if term.startswith("screen") and environ.get("STY"):
            return cls(via="screen")
        return cls()

    def sequence(self, text: str) -> str:
        """What to write to the terminal to put text on its clipboard."""
        plain = osc52(text)
        if self.via == "tmux":
            return plain + tmux_passthrough(plain)
        if self.via == "screen":
            return screen_passthrough(plain)
        return plain


def write_whole(stream: TextIO, data: str) -> None:
    """Write data and flush, with Ctrl-C held until it is all out.

    An OSC or DCS sequence cut off mid-write would leave the terminal reading
    a string, and it would swallow what is printed next; a Ctrl-C pressed
    meanwhile is dropped, as the copy finishes at once.
    """
    guard = InterruptGuard()
    guard.install()
    try:
        with guard.hold(deliver=False):
            stream.write(data)
            stream.flush()
    finally:
        guard.uninstall()


def edit_in_editor(text: str) -> str:
    """Let the user write in $VISUAL or $EDITOR (vi if neither is set), starting from text; what they saved."""


    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="chatcli-") as folder:
        path = os.path.join(folder, "message.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            done = subprocess.run([*shlex.split(editor), path])
        except (OSError, ValueError) as exc:
            raise ChatError(f"Could not start the editor {editor!r} ({getattr(exc, 'strerror', None) or exc}); "
                            "set VISUAL or EDITOR.") from None
        if done.returncode != 0:
            raise ChatError(f"The editor exited with status {done.returncode}; nothing was put at the prompt.")
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
