"""Saying, on a terminal with plain output, that a reply has stalled: "[no tokens for 5s]",
counting up, and erased when tokens come again or the reply ends.

The markdown renderer says it in its live region. Plain output has none, so
this draws the notice itself, from a thread of its own, on one line it can
erase: after the reply's text on the same line when the reply is drawn on that
terminal (the REPL, --plain), or on a line of its own on stderr when stdout is
a pipe. It never draws where it could not erase: a line too full for it is
left alone.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

from chatcli.core.turn import STALL_S


class StallNotice:
    def __init__(self, out: TextIO, *, after_text: bool) -> None:
        self._out = out
        self._after_text = after_text  # the reply is drawn on this terminal: the notice goes on its last line
        self._lock = threading.Lock()
        self._column = 0  # cells the reply's last line takes so far, when after_text
        self._last = ""  # the reply's last character
        self._last_token: float | None = None
        self._shown = ""  # the notice on the screen now
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, daemon=True, name="stall-notice")
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        with self._lock:
            self._erase()

    def token(self) -> None:
        """A token came (text or reasoning): the reply flows again."""
        with self._lock:
            self._erase()
            self._last_token = time.monotonic()

    @contextmanager
    def clear(self) -> Iterator[None]:
        """Hold the terminal to write something else, the notice erased first."""
        with self._lock:
            self._erase()
            yield

    def wrote(self, text: str) -> None:
        """The reply's text written (inside clear()), to know where its last line ends.

        A running column, not the line itself: keeping the line would copy it on every delta,
        quadratic in a reply that is one long line."""
        if self._after_text and text:
            if "\n" in text:
                self._column, self._last, text = 0, "", text.rsplit("\n", 1)[1]
            self._column = _advance(self._column, text)
            self._last = text[-1:] or self._last

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            with self._lock:
                if self._last_token is not None and time.monotonic() - self._last_token >= STALL_S:
                    self._show(int(time.monotonic() - self._last_token))

    def _show(self, seconds: int) -> None:
        from rich.cells import cell_len  # lazy: keeps rich off the startup path

        if self._after_text:
            notice = f"{' ' if self._last.strip() else ''}[no tokens for {seconds}s]"
        else:
            notice = f"chatcli: no tokens for {seconds}s; the reply may have stalled (Ctrl-C stops it)"
        if notice == self._shown:
            return
        width = _width(self._out)
        used = self._column if self._after_text else 0
        if used and used % width == 0 or used % width + cell_len(notice) >= width:
            return  # no room left on the line: the notice would wrap, and could not be erased
        try:
            self._erase()
            self._out.write(notice)
            self._out.flush()
        except (OSError, ValueError):  # the terminal is gone
            self._done.set()
            return
        self._shown = notice

    def _erase(self) -> None:
        if not self._shown:
            return
        from rich.cells import cell_len  # lazy: keeps rich off the startup path

        try:
            self._out.write(f"\x1b[{cell_len(self._shown)}D\x1b[K")  # back over it, then clear to the line's end
            self._out.flush()
        except (OSError, ValueError):
            pass
        self._shown = ""


def _width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return shutil.get_terminal_size().columns


def _advance(column: int, text: str) -> int:
    """The column after text written from column, tabs stopping every 8 cells as expandtabs does."""
    from rich.cells import cell_len  # lazy: keeps rich off the startup path

    for i, piece in enumerate(text.split("\t")):
        if i:
            column = (column // 8 + 1) * 8
        column += cell_len(piece)
    return column
