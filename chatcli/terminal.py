"""The terminal itself: no echo while a reply is drawn, and Ctrl-C held mid-draw.

Both keep rich's live region in step with what is really on the screen: an
echoed ^C moves the cursor, and an interrupt in the middle of a write leaves
the cursor where rich does not expect it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, TextIO


@contextmanager
def echo_off(stream: TextIO) -> Iterator[None]:
    """Stop the terminal echoing keys (^C, typeahead) while a reply is drawn.

    An echoed ^C moves the cursor, and rich then erases the wrong lines of its
    live region. Ctrl-C still sends SIGINT, and typed keys wait in the tty's
    queue for the next prompt.
    """
    try:
        import termios

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
        termios.tcsetattr(fd, termios.TCSANOW, saved)


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
