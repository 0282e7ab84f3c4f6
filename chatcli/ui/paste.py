"""Pastes at the prompt, read in linear time and bounded by what the context window holds.

prompt-toolkit's own parser looks for a bracketed paste's end in the whole paste at each read,
which is quadratic; a paste far past the window is refused as it arrives, and never reaches the
prompt or the input history.
"""

from __future__ import annotations

from typing import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyPress
from prompt_toolkit.keys import Keys

# Real text averages about 4 characters a token; 16 leaves room for text that packs tighter
# (runs of spaces, repeated punctuation). A paste longer than this many characters for each
# token of the window is far past what the window holds, and is refused as it arrives.
CHARS_PER_TOKEN = 16


class RefusedPaste(str):
    """The text of a paste PasteParser did not keep (empty), with the sentence saying why."""

    sentence: str


class PasteParser(Vt100Parser):
    """prompt-toolkit's input parser, with a bracketed paste read in linear time and bounded.

    prompt-toolkit looks for the paste's end mark in the whole paste at each read of 1,024
    bytes, which is quadratic: 20 MB cost minutes of CPU. This looks only at what arrived, and
    stops keeping a paste once it is over `limit()` characters: it is refused, and never
    reaches the prompt or the input history.
    """

    END = "\x1b[201~"

    def __init__(self, feed_key_callback: Callable[[KeyPress], None], limit: Callable[[], tuple[int, str]]) -> None:
        self._limit = limit
        super().__init__(feed_key_callback)  # which calls reset()

    def reset(self, request: bool = False) -> None:
        super().reset(request)
        self._pasting: tuple[int, str] | None = None  # (most characters kept, what sets that: the window)
        self._kept: list[str] = []
        self._size = 0
        self._carry = ""  # the last characters read, which may be the start of the end mark

    def feed(self, data: str) -> None:
        if not self._in_bracketed_paste:
            super().feed(data)  # which comes back here for what follows a paste's start mark
            return
        if self._pasting is None:
            self._pasting = self._limit()
        text, self._carry = self._carry + data, ""
        end = text.find(self.END)
        if end < 0:
            keep = min(len(text), len(self.END) - 1)
            self._take(text[: len(text) - keep])
            self._carry = text[len(text) - keep :]
            return
        self._take(text[:end])
        self.feed_key_callback(KeyPress(Keys.BracketedPaste, self._paste()))
        self._in_bracketed_paste = False
        self.feed(text[end + len(self.END) :])

    def _take(self, piece: str) -> None:
        self._size += len(piece)
        assert self._pasting is not None
        if self._size <= self._pasting[0]:
            self._kept.append(piece)
        else:
            self._kept = []  # over the limit: nothing more is kept

    def _paste(self) -> str:
        assert self._pasting is not None
        most, window = self._pasting
        size, text = self._size, "".join(self._kept)
        self._pasting, self._kept, self._size = None, [], 0
        if size <= most:
            return text
        refused = RefusedPaste()
        refused.sentence = (f"That paste is {size:,} characters, far more than {window} holds; "
                            "nothing was put at the prompt.")
        return refused


def bound_pastes(prompt: PromptSession, limit: Callable[[], tuple[int, str]]) -> None:
    """Read the prompt's pastes with PasteParser (a terminal's input, or a pipe in tests)."""
    parser = getattr(prompt.app.input, "vt100_parser", None)
    if isinstance(parser, Vt100Parser):
        prompt.app.input.vt100_parser = PasteParser(parser.feed_key_callback, limit)  # type: ignore[attr-defined]
