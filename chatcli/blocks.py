"""Markdown blocks: where finished ones end in a reply still growing, and its fenced code.

The streaming renderer prints each finished block once; BlockSplitter finds
them, looking at each line once, without parsing the markdown. code_blocks
gives /copy the fenced code of a finished reply, byte for byte.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d{1,9}[.)])(?:\s|$)")


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
        self._partial: list[str] = []  # pieces of the line still being written
        self._fence: tuple[str, int] | None = None  # (marker char, length) while inside a fence
        self._fence_top = False
        self._blank = False  # a blank line was seen since the last non-blank one
        self._is_list = False  # the unfinished block is a list
        self._started = False  # the unfinished block has a non-blank line

    @property
    def text(self) -> str:
        """The unfinished text: what has not been returned as a block yet."""
        return "".join(self._lines) + "".join(self._partial)

    def take_rest(self) -> str:
        """Return the unfinished text and forget it (the reply has ended)."""
        rest = self.text
        self._lines, self._partial = [], []
        return rest

    def feed(self, text: str) -> list[str]:
        """Add text; return the blocks it finished, in order."""
        done: list[str] = []
        *complete, last = text.split("\n")
        for piece in complete:
            self._partial.append(piece)
            line = "".join(self._partial)
            self._partial = []
            if self._classify(line) == "before" and self._lines:
                done.append("".join(self._lines))
                self._lines = []
            self._lines.append(line + "\n")
            if self._fence_closed_block:
                done.append("".join(self._lines))
                self._lines = []
        if last:
            self._partial.append(last)
        return done

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
        if not self._started or cut is not None:
            self._started = True
            self._is_list = bool(_LIST_ITEM.match(line))
        fence = _FENCE.match(line)
        if fence:
            self._fence = (fence.group(2)[0], len(fence.group(2)))
            self._fence_top = fence.group(1) == "" and not self._is_list
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
