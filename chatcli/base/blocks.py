"""Markdown blocks: where finished ones end in a reply still growing, and its fenced code.

The streaming renderer prints each finished block once; BlockSplitter finds
them, looking at each line once, without parsing the markdown. code_blocks
gives /copy the fenced code of a finished reply, byte for byte.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterator

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d{1,9}[.)])(?:\s|$)")


class LineBuffer:
    """A line being written, piece by piece: held in a few large strings, however it is fed.

    A line can be a whole reply, fed four characters at a time: a list of its
    pieces would take ten times its size, and joining it on every look would
    cost time quadratic in its length. Pieces are joined 256 at a time, the
    whole line once, and its start or end costs what is asked for.
    """

    def __init__(self) -> None:
        self._joined: list[str] = []
        self._recent: list[str] = []
        self.length = 0

    def __bool__(self) -> bool:
        return self.length > 0

    def add(self, piece: str) -> None:
        self._recent.append(piece)
        self.length += len(piece)
        if len(self._recent) >= 256:
            self._joined.append("".join(self._recent))
            self._recent = []

    def take(self) -> str:
        """The whole line; the buffer is empty after."""
        line = "".join(self._joined) + "".join(self._recent) if self._joined else "".join(self._recent)
        self.clear()
        return line

    def clear(self) -> None:
        self._joined, self._recent, self.length = [], [], 0

    def start(self, length: int) -> str:
        """The first `length` characters, or fewer."""
        return "".join(_upto(itertools.chain(self._joined, self._recent), length))[:length]

    def end(self, length: int) -> str:
        """The last `length` characters, or fewer."""
        pieces = _upto(itertools.chain(reversed(self._recent), reversed(self._joined)), length)
        return "".join(reversed(pieces))[-length:] if length > 0 else ""


def _upto(pieces: Iterator[str], length: int) -> list[str]:
    """The first of pieces that make `length` characters together."""
    out, have = [], 0
    for piece in pieces:
        if have >= length:
            break
        out.append(piece)
        have += len(piece)
    return out


class BlockSplitter:
    """Finds where finished markdown blocks end in a growing text.

    Complete lines are kept in a list and each is looked at once, so feeding a
    reply costs time linear in its length, however long a block grows. A block
    ends at a blank line followed by a line that starts a new top-level block,
    or at the end of a top-level code fence. Loose lists stay whole, so their
    numbering and spacing match a one-go render.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []  # complete lines of the unfinished block, with their "\n"
        self._partial = LineBuffer()  # the line still being written
        self._size = 0  # characters in _lines
        self._longest = 0  # the longest line in _lines, "\n" included
        self._taken = False  # take_lines() handed out lines of the unfinished block
        self._judged = False  # the line being written was classified by cut_before_line()
        self._fence: tuple[str, int] | None = None  # (marker char, length) while inside a fence
        self._fence_top = False
        self._opens_block = False  # the open fence is the first line of the unfinished block
        self._fence_at = 0
        self._blank = False  # a blank line was seen since the last non-blank one
        self._is_list = False  # the unfinished block is a list
        self._started = False  # the unfinished block has a non-blank line

    @property
    def text(self) -> str:
        """The unfinished text: what has not been returned as a block yet."""
        return "".join(self._lines) + self._partial.start(self._partial.length)

    @property
    def lines(self) -> int:
        """The complete lines of the unfinished block."""
        return len(self._lines)

    @property
    def longest(self) -> int:
        """The length of the unfinished block's longest line, the one still being written included."""
        return max(self._longest, self._partial.length)

    @property
    def line_length(self) -> int:
        """The length of the line being written."""
        return self._partial.length

    @property
    def size(self) -> int:
        """The length of the unfinished text."""
        return self._size + self._partial.length

    @property
    def in_code(self) -> bool:
        """The unfinished block is a fenced code block, still open."""
        return self._fence is not None and self._fence_top and self._opens_block

    def code_excerpt(self, lines: int) -> str:
        """The open code block (in_code) up to its fence's line, then its last `lines` lines: the end
        of a long code block, to show it as it grows at a cost that does not grow with it."""
        head = "".join(self._lines[: self._fence_at + 1])
        end = "".join(self._lines[max(self._fence_at + 1, len(self._lines) - lines) :])
        return head + end + self._partial.start(self._partial.length)

    def line_end(self, length: int) -> str:
        """The last `length` characters (or fewer) of the line being written: they cost what they
        are, not what the line is (it can be a whole reply)."""
        return self._partial.end(length)

    def take_lines(self) -> str:
        """Return the complete lines of the unfinished block and forget them; the block goes on.

        For a block drawn as it comes rather than when it ends: the block still
        ends where it would have, as a block of the lines given after this.
        """
        if not self._lines:
            return ""
        lines = "".join(self._lines)
        self._lines, self._size, self._longest = [], 0, 0
        self._taken = True
        return lines

    def take_rest(self) -> str:
        """Return the unfinished text and forget it (the reply has ended)."""
        rest = self.text
        self._lines = []
        self._partial.clear()
        self._size = self._longest = 0
        self._taken = self._judged = False
        return rest

    def feed(self, text: str) -> list[str]:
        """Add text; return the blocks it finished, in order.

        A block whose lines were taken with take_lines() is returned with the
        lines that came after that, which may be none: an empty block.
        """
        done: list[str] = []
        *complete, last = text.split("\n")
        for piece in complete:
            line = self._partial.take() + piece if self._partial else piece
            if self._judged:
                self._judged = False
            elif self._classify(line) == "before" and (self._lines or self._taken):
                done.append(self._cut())
            self._lines.append(line + "\n")
            self._size += len(line) + 1
            self._longest = max(self._longest, len(line) + 1)
            if self._fence_closed_block:
                done.append(self._cut())
        if last:
            self._partial.add(last)
        return done

    def cut_before_line(self) -> str | None:
        """End the unfinished block before the line being written, if that line starts a new one.

        A block ends when the line after it does, which for a line of many
        screens is long after its start has shown it begins a new block. Return
        the block ended, or None when the line's start does not tell (yet).
        """
        if self._judged or self._fence is not None or not self._blank or not self._partial:
            return None
        start = self._partial.start(64)
        if not start.strip() or start[0].isspace():
            return None
        self._judged = True  # classified once, now, from its start
        return self._cut() if self._classify(start) == "before" and (self._lines or self._taken) else None

    def _cut(self) -> str:
        block = "".join(self._lines)
        self._lines, self._size, self._longest, self._taken = [], 0, 0, False
        return block

    def _classify(self, line: str) -> str | None:
        """Say whether this line shows that a block ended just before it."""
        self._fence_closed_block = False
        if self._fence is not None:
            char, length = self._fence
            stripped = line.strip()
            if stripped and set(stripped) == {char} and len(stripped) >= length:
                self._fence = None
                if self._fence_top:
                    self._started = False
                    self._is_list = False
                    self._fence_closed_block = True
            return None
        if not line.strip():
            self._blank = self._started
            return None
        cut = None
        if self._blank and not line[0].isspace():
            is_item = bool(_LIST_ITEM.match(line))
            if not (self._is_list and is_item):
                cut = "before"
        self._blank = False
        first = not self._started or cut is not None
        if first:
            self._started = True
            self._is_list = bool(_LIST_ITEM.match(line))
        fence = _FENCE.match(line)
        if fence:
            self._fence = (fence.group(2)[0], len(fence.group(2)))
            self._fence_top = fence.group(1) == "" and not self._is_list
            self._opens_block = first
            self._fence_at = len(self._lines)  # where the fence's line goes
        return cut


# A fence line as /copy reads it: indentation, the fence, and its info string.
_CODE_FENCE = re.compile(r"(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)")


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of markdown, each exactly as written between its fence lines.

    A fence is three or more backticks or tildes; it closes with a line of at
    least as many of the same, and a block left open runs to the end (a reply
    cut short). The fence's own indentation (a block inside a list item) is
    taken off each line, as CommonMark does; the code's indentation is kept.
    """
    blocks: list[str] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        opening = _CODE_FENCE.fullmatch(lines[i].rstrip("\r"))
        i += 1
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        while i < len(lines):
            closing = _CODE_FENCE.fullmatch(lines[i].rstrip("\r"))
            i += 1
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) and not closing["info"].strip(" \t"):
                break
            line = lines[i - 1]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
        else:
            if body and not body[-1]:  # a block left open: the reply's final newline is not code
                body.pop()
        code = "\n".join(body)
        blocks.append(code[:-1] if code.endswith("\r") else code)
    return blocks
