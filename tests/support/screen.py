"""A terminal emulator for what chatcli writes to a pty: a pyte screen that keeps its scrollback
and knows which rows it wrapped itself, and a one-shot run fed to it.

The emulator behaves like xterm: lines that scroll off the top go to the scrollback, shrinking
the window pushes the top lines into the scrollback, and a narrower window cuts lines off (no
reflow). It also remembers which rows the terminal wrapped itself (soft wraps), so
`logical_lines()` gives what a user copying from the terminal would get.
"""

from __future__ import annotations

import time

import pexpect
import pyte
import pytest
from pyte.screens import Margins

from tests.support.pty import TIMEOUT


class Terminal(pyte.Screen):
    """A pyte screen that keeps its scrollback and knows which rows it wrapped itself."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.scrollback: list[tuple[str, bool]] = []  # (row text, soft-wrapped), oldest first
        self._drawing = False
        self._stream = pyte.Stream(self)

    def feed(self, data: str) -> None:
        self._stream.feed(data)

    # -- scrollback and soft wraps ----------------------------------------- #

    def draw(self, data: str) -> None:
        self._drawing = True  # a linefeed now is the terminal wrapping a long line
        try:
            super().draw(data)
        finally:
            self._drawing = False

    def linefeed(self) -> None:
        self.buffer[self.cursor.y].wrapped = self._drawing
        super().linefeed()

    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self.scrollback.append(self._row(0))
        super().index()

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        super().erase_in_line(how, private)
        if how in (0, 2):
            self.buffer[self.cursor.y].wrapped = False

    def erase_in_display(self, how: int = 0, *args, **kwargs) -> None:
        super().erase_in_display(how, *args, **kwargs)
        for line in self.buffer.values():
            line.wrapped = False  # rough, but chatcli must never send ED anyway

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """As xterm: a shorter window pushes top rows to the scrollback, enough to keep the cursor row."""
        lines = lines or self.lines
        if lines < self.lines:
            over = max(0, self.cursor.y + 1 - lines)
            for _ in range(over):
                self.scrollback.append(self._row(0))
                for y in range(self.lines - 1):
                    self.buffer[y] = self.buffer[y + 1]
                self.buffer.pop(self.lines - 1, None)
            self.cursor.y -= over
            for y in range(lines, self.lines):
                self.buffer.pop(y, None)
            self.dirty.update(range(lines))
            self.lines = lines
        super().resize(lines, columns)
        self.set_margins()

    def _row(self, y: int) -> tuple[str, bool]:
        line = self.buffer[y]
        return "".join(line[x].data for x in range(self.columns)), getattr(line, "wrapped", False)

    # -- reading it back ---------------------------------------------------- #

    def all_rows(self) -> list[tuple[str, bool]]:
        rows = self.scrollback + [self._row(y) for y in range(self.lines)]
        while rows and not rows[-1][0].strip():
            rows.pop()
        return rows

    def rows(self) -> list[str]:
        """Scrollback then screen, one string per terminal row, trailing spaces stripped."""
        return [text.rstrip() for text, _ in self.all_rows()]

    def logical_lines(self) -> list[str]:
        """What copying everything from the terminal gives: soft-wrapped rows joined."""
        out, pending = [], ""
        for text, wrapped in self.all_rows():
            if wrapped:
                pending += text
            else:
                out.append((pending + text).rstrip())
                pending = ""
        if pending:
            out.append(pending.rstrip())
        return out

    def screen_chars(self, needle: str) -> list[pyte.screens.Char]:
        """The cells showing needle on the visible screen (first match)."""
        for y in range(self.lines):
            line = self.buffer[y]
            text = "".join(line[x].data for x in range(self.columns))
            at = text.find(needle)
            if at >= 0:
                return [line[x] for x in range(at, at + len(needle))]
        raise AssertionError(f"{needle!r} is not on the screen:\n" + "\n".join(self.display))


def run_to_end(child: pexpect.spawn, term: Terminal | None, *, on_read=None) -> str:
    """Feed everything the child writes to term until it exits; return all of it.

    on_read(all_so_far, new) is called after each read, before term (if any) is fed the new bytes.
    """
    chunks: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail("chatcli did not finish; last output: " + repr("".join(chunks)[-500:]))
        try:
            data = child.read_nonblocking(65536, timeout=left)
        except pexpect.EOF:
            break
        except pexpect.TIMEOUT:
            continue
        chunks.append(data)
        if on_read is not None:
            on_read("".join(chunks), data)
        if term is not None:
            term.feed(data)
    child.close()
    return "".join(chunks)


def one_shot_in_pty(spawn_chatcli, *args: str, rows: int = 40, cols: int = 120, env=None):
    """One-shot `chatcli ARGS "question"` in a rows x cols pty; returns (raw output, terminal, exit status)."""
    child = spawn_chatcli(*args, "question", rows=rows, cols=cols, env=env)
    term = Terminal(cols, rows)
    raw = run_to_end(child, term)
    return raw, term, child.exitstatus
