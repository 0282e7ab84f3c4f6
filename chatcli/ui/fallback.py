"""Blocks past the size where markdown helps: when a block is too big, and how it goes out as plain text.

A line of many screens or a table of thousands of rows shows nothing better
as markdown, and rendering it costs more than linear time and memory: rich
wraps a long line, and markdown-it parses one, in worse than linear time, and
a table is measured whole. The markdown renderer draws such a block as the
text it is, as it comes, and the live region shows its last rows; this
module holds what that takes and knows nothing of rich's rendering.
"""

from __future__ import annotations

import re
import time

from chatcli.base.blocks import BlockSplitter

LONG_LINE_ROWS = 100  # a line that wraps to more rows than this is too long
LONG_BLOCK_LINES = 500  # a block (a table, a list) of more lines than this; code is cheap to draw
LARGE_BLOCK = 256 * 1024  # any block larger than this, code included
HELD = 64 * 1024  # plain lines held for the next print, at most
PRINTS_PER_S = 12  # plain lines are printed about as often as the live region is drawn

_CODE_START = re.compile(r"\s*(```|~~~)")


def limit(lines: int, longest: int, size: int, *, code: bool, width: int) -> str | None:
    """What makes a block too big for markdown, said as the start of a sentence, or None."""
    if longest > long_line(width):
        return f"A line of over {long_line(width):,} characters"
    if lines > LONG_BLOCK_LINES and not code:
        return f"A block of over {LONG_BLOCK_LINES} lines"
    if size > LARGE_BLOCK:
        return f"A block of over {LARGE_BLOCK // 1024} KiB"
    return None


def long_line(width: int) -> int:
    return LONG_LINE_ROWS * max(width, 20)


def too_big(block: str, width: int) -> str | None:
    """What makes a finished block too big for markdown, or None."""
    longest = max(map(len, block.split("\n"))) if len(block) > long_line(width) else 0
    return limit(block.count("\n"), longest, len(block), code=bool(_CODE_START.match(block)), width=width)


def unfinished_too_big(splitter: BlockSplitter, width: int) -> str | None:
    """What makes the unfinished block too big for markdown, or None: it costs a few comparisons."""
    return limit(splitter.lines, splitter.longest, splitter.size, code=splitter.in_code, width=width)


class PlainBlock:
    """The lines of a block drawn as plain text, held between prints.

    Lines are printed a dozen times a second, not one by one: each print
    redraws the live region under it, and a table of 50,000 rows would redraw
    it 50,000 times. The blank lines at the end of what is printed are held
    back: those at the block's end are dropped when it ends, and the next
    block is set apart from it by one blank line, as any two blocks are.
    """

    def __init__(self) -> None:
        self.active = False  # the unfinished block is drawn as plain text
        self._held: list[str] = []
        self._length = 0
        self._printed = 0.0  # when lines were last taken to print

    def add(self, lines: str) -> bool:
        """Hold complete lines of the block; return whether it is time to print them."""
        if lines:
            self._held.append(lines)
            self._length += len(lines)
        return bool(self._held) and (self._length > HELD or time.monotonic() - self._printed > 1 / PRINTS_PER_S)

    def take(self, text: str = "", *, ended: bool = False) -> str:
        """The held lines and `text` to print now, without the blank lines at their end (or ""),
        as one string without its final newline. With `ended`, the block is over."""
        text = "".join(self._held) + text if self._held else text
        body = text.rstrip("\n")
        held = "" if ended else text[len(body) + 1 :] if body else text
        self._held, self._length = ([held], len(held)) if held else ([], 0)
        self._printed = time.monotonic()
        if ended:
            self.active = False
        return body

    def rows(self, splitter: BlockSplitter, width: int, height: int) -> list[str]:
        """The last rows of the block, as the terminal will wrap them once printed: what the live
        region shows of it, at a cost that does not grow with the block."""
        from rich.cells import chop_cells  # lazy: keeps rich off the startup path

        rows: list[str] = []
        for line in "".join(self._held).split("\n")[:-1][-height:]:
            rows += chop_cells(line, width) if line else [""]
        length = splitter.line_length  # the line being written starts a row: show it from a row's start
        end = splitter.line_end(min(length, (length % width or width) + (height - 1) * width))
        if end:
            rows += chop_cells(end, width)
        return rows[-height:]
