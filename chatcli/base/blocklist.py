"""The content filter's matching: whether a text holds one of the configured blocked words.

Both sides are brought to one form first (NFKC, casefolded, invisible format characters
dropped, runs of white space made one space), so a full-width "ｂａｄ" or a "b\\u200bad" split
by a zero-width space is still the word. A word in a script that spaces its words (Latin,
Cyrillic, Greek...) matches only as a whole word, so "class" does not trip on "ass"; a word
in a script that does not (Chinese, Japanese, Thai, Korean, whose particles join the word)
matches anywhere. The words go into one regex shaped as a trie, so a text is read once, at
a cost per character bounded by the longest word, however many words there are.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

# Scripts written without spaces between words (or, for Hangul, with particles joined to them):
# Thai, Lao, Myanmar, Khmer, Hangul Jamo, CJK punctuation, kana, CJK ideographs and their
# extensions, Hangul syllables, compatibility ideographs, half-width kana (NFKC widens them).
UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"
)

# A letter or digit of a spaced script: a word of one must not have one just before or after it.
_WORDISH = f"[^\\W{UNSPACED}]"
_UNSPACED_CHAR = re.compile(f"[{UNSPACED}]")
_WORD_CHAR = re.compile(r"\w")
_SPACES = re.compile(r"\s+")
_END = ""  # the trie's mark that a word ends here


def normalized(text: str) -> str:
    """Text in the form both sides are compared in."""
    text = unicodedata.normalize("NFKC", text)
    text = unicodedata.normalize("NFKC", text.casefold())
    if any(unicodedata.category(c) == "Cf" for c in text):
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPACES.sub(" ", text)


def read_words(text: str) -> list[str]:
    """The words of a block_words_file: one word or phrase a line; blank lines and `#` comments skipped."""
    words = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


class Blocklist:
    """The configured blocked words, compiled once; `found` says whether a text holds one."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(dict.fromkeys(w for w in (normalized(w).strip() for w in words) if w))
        self._pattern = _compile(self.words) if self.words else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def found(self, text: str) -> bool:
        return self.match(text) is not None

    def match(self, text: str) -> str | None:
        """The blocked word the text holds, in its normalised form (for tests and logs; never shown)."""
        if self._pattern is None or not text:
            return None
        hit = self._pattern.search(normalized(text))
        return hit.group(0) if hit else None


def _spaced(word: str) -> bool:
    """A word whose script spaces its words, so it matches whole words only."""
    return _UNSPACED_CHAR.search(word) is None


def _compile(words: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for all the words: each kind (whole words, or not, at either end) as a trie
    behind the boundaries it needs, which are written once per kind (a lookaround per word makes
    compiling thousands of words take seconds)."""
    kinds: dict[tuple[bool, bool], list[str]] = {}
    for word in words:
        spaced = _spaced(word)
        bounds = (spaced and bool(_WORD_CHAR.match(word[0])), spaced and bool(_WORD_CHAR.match(word[-1])))
        kinds.setdefault(bounds, []).append(word)
    parts = []
    for (before, after), group in kinds.items():
        parts.append((f"(?<!{_WORDISH})" if before else "") + _trie(group) + (f"(?!{_WORDISH})" if after else ""))
    return re.compile("|".join(parts))


def _trie(words: list[str]) -> str:
    """The words as a trie-shaped regex: at each character only the branches that can still match.
    (A shorter word that fails its boundary gives way to a longer one: the regex backtracks.)"""
    root: dict = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[_END] = True
    return _branches(root)


def _branches(node: dict) -> str:
    alternatives = []
    for char, child in node.items():
        if char == _END:
            continue
        pattern = re.escape(char)
        while len(child) == 1 and _END not in child:  # a run with no branching needs no group
            (char, child), = child.items()
            pattern += re.escape(char)
        alternatives.append(pattern + _branches(child))
    if _END in node:
        alternatives.append("")
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"
