"""What may reach a terminal: the one gate for text from outside, and text as it is shown.

Everything chatcli writes to a terminal passes one gate, ControlFilter: no control sequence
from outside (a reply, a server's error, a model id, a title, a file name) reaches it, and
characters that hide or reorder text are shown as <U+202E>. strip_controls is the gate for a
whole string, shown for a message (secrets taken out too), for_stream for data on stdout
(gated on a terminal, exact in a pipe), and json_text writes JSON that needs no gate.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from chatcli.base.pii import hide_known

# Anything that can steer a terminal: C0 controls but tab and newline, DEL, C1.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
# Characters a terminal draws as nothing, or that reorder the text around them, so what is seen
# is not what is there ("Trojan Source"): bidi marks, embeddings, overrides and isolates; zero-width
# spaces, joiners and the word joiner; invisible operators; the BOM; the tag characters, which
# can spell out a hidden message. They are shown as <U+202E>, never dropped: the reader learns
# that something is there. Left alone: variation selectors (emoji and CJK need them), the soft
# hyphen (terminals draw it), and the Arabic number signs, which are drawn.
_INVISIBLE = ("\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
              "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f")
_SPECIAL = re.compile(f"[{_CONTROLS}{_INVISIBLE}]")
_STRING_END = re.compile("[\x07\x9c\x1b\n]")
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_TEXT, _ESC, _ESC_INTERMEDIATE, _CSI, _STRING, _STRING_ESC = range(6)


def visible(ch: str) -> str:
    """How an invisible or reordering character is shown: <U+202E>."""
    return f"<U+{ord(ch):04X}>"


def _joins(ch: str) -> bool:
    """A letter or mark of a script whose words take ZWNJ and ZWJ (Arabic, Syriac, Thaana, N'Ko,
    the Indic scripts, Sinhala, Thai to Khmer and Mongolian): Persian writes "می‌خواهم" with a
    ZWNJ, Devanagari asks for a half form with a ZWJ. No Latin, Greek or Cyrillic letter counts,
    so no command, URL or identifier in those scripts can hide a joiner."""
    o = ord(ch)
    if not (0x0600 <= o <= 0x1CFF or 0xA800 <= o <= 0xABFF or 0xFB50 <= o <= 0xFDFF or 0xFE70 <= o <= 0xFEFC):
        return False
    return unicodedata.category(ch)[0] in "LM"


def _emoji(ch: str) -> bool:
    """A pictograph (or VS16, or a skin tone) that a ZWJ may join to the next: 👩‍💻, 🏳️‍🌈, ❤️‍🔥."""
    o = ord(ch)
    return 0x1F000 <= o <= 0x1FAFF or 0x2300 <= o <= 0x23FF or 0x2600 <= o <= 0x27BF or 0x2B00 <= o <= 0x2BFF or o == 0xFE0F


class ControlFilter:
    """Makes untrusted text safe for a terminal, as a stream: the one gate to the terminal.

    Escape sequences (CSI, OSC, DCS, ...) and control characters are removed; bidi controls,
    zero-width and tag characters are shown visibly (`visible`). A ZWNJ or ZWJ is kept where it
    has a job: inside a word of a script that joins its letters, and a ZWJ between two emoji
    (a family, a rainbow flag); anywhere else it is shown. Which it is depends on the next
    character, so a joiner at the end of a chunk waits for the next one, or for `flush`.

    It keeps state between chunks, because a sequence can be split across two deltas, and the
    result is the same however the text is cut. An unterminated string sequence ends at a
    newline, so a stray ESC ] can never swallow the rest of a reply. Plain runs are copied
    whole, so the cost is linear in the text and small per character.
    """

    def __init__(self) -> None:
        self._state = _TEXT
        self._last = "\n"  # the last character let through: whether a joiner after it may stay
        self._held = ""  # a joiner waiting for the character after it

    def feed(self, text: str) -> str:
        if self._state == _TEXT and not self._held and not _SPECIAL.search(text):
            if text:
                self._last = text[-1]
            return text  # the common case: nothing to remove
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            if self._state == _TEXT:
                match = _SPECIAL.search(text, i)
                end = match.start() if match else n
                if end > i:
                    self._release(out, text[i])
                    out.append(text[i:end])
                    self._last = text[end - 1]
                    i = end
                    continue
                self._special(text[i], out)
                i += 1
            elif self._state == _STRING:
                match = _STRING_END.search(text, i)  # an OSC 52 payload is skipped in one step
                if match is None:
                    break
                i = match.end()
                ch = match.group()
                if ch == "\x1b":
                    self._state = _STRING_ESC
                else:
                    self._state = _TEXT
                    if ch == "\n":
                        out.append(ch)
                        self._last = ch
            else:
                self._in_sequence(text[i], out)
                i += 1
        return "".join(out)

    def flush(self) -> str:
        """What is held at the end of the text: a joiner that nothing followed, shown."""
        held, self._held = self._held, ""
        self._state = _TEXT
        return visible(held) if held else ""

    def _release(self, out: list[str], following: str) -> None:
        """The held joiner, kept if `following` continues what it joins, else shown."""
        if not self._held:
            return
        keep = _emoji(following) if self._held == _ZWJ and _emoji(self._last) else _joins(following)
        out.append(self._held if keep else visible(self._held))
        self._last, self._held = self._held, ""

    def _special(self, ch: str, out: list[str]) -> None:
        o = ord(ch)
        if ch in (_ZWNJ, _ZWJ):
            self._release(out, ch)
            if _joins(self._last) or (ch == _ZWJ and _emoji(self._last)):
                self._held = ch
            else:
                out.append(visible(ch))
                self._last = ch
            return
        if o > 0x9F:  # bidi, zero-width, tags
            self._release(out, ch)
            out.append(visible(ch))
            self._last = ch
            return
        if ch == "\x1b" or o in (0x9B, 0x90, 0x98, 0x9D, 0x9E, 0x9F):
            self._release(out, ch)
            self._state = _ESC if ch == "\x1b" else _CSI if o == 0x9B else _STRING
        # any other control character is dropped

    def _in_sequence(self, ch: str, out: list[str]) -> None:
        """One character inside an escape sequence (ESC, CSI or the ESC inside a string)."""
        o = ord(ch)
        state = self._state
        if state in (_ESC, _ESC_INTERMEDIATE):
            if ch == "[" and state == _ESC:
                self._state = _CSI
            elif ch in "]PX^_" and state == _ESC:
                self._state = _STRING
            elif 0x20 <= o <= 0x2F:
                self._state = _ESC_INTERMEDIATE
            elif 0x30 <= o <= 0x7E:
                self._state = _TEXT  # the final byte of a two-character sequence
            else:  # not part of a sequence (a newline, a letter): the sequence ends before it
                self._state = _TEXT
                self._after_sequence(ch, out)
        elif state == _CSI:
            if 0x40 <= o <= 0x7E:
                self._state = _TEXT
            elif not 0x20 <= o <= 0x3F:
                self._state = _TEXT
                self._after_sequence(ch, out)
        elif state == _STRING_ESC:
            self._state = _TEXT if ch == "\\" else _STRING

    def _after_sequence(self, ch: str, out: list[str]) -> None:
        """A character that ended a broken sequence: it is text, or the start of something else."""
        if _SPECIAL.match(ch):
            self._special(ch, out)
        else:
            self._release(out, ch)
            out.append(ch)
            self._last = ch


def strip_controls(text: str) -> str:
    """Safe text from any untrusted string, in one go (ControlFilter, flushed)."""
    gate = ControlFilter()
    return gate.feed(text) + gate.flush()


_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_INVISIBLE}]")


def _json_escape(match: re.Match[str]) -> str:
    o = ord(match[0])
    if o > 0xFFFF:  # JSON spells a character past the BMP as a surrogate pair
        o -= 0x10000
        return f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}"
    return f"\\u{o:04x}"


def json_text(value: object, *, indent: int | None = None) -> str:
    """JSON that is exact as data and inert on a terminal: json.dumps escapes C0 controls, and
    this escapes DEL, C1 and the invisible characters the gate would show, as \\u escapes,
    so a reader gets every character back and a terminal is sent none of them."""
    import json  # lazy: off the path of chatcli --help

    return _JSON_UNSAFE.sub(_json_escape, json.dumps(value, ensure_ascii=False, indent=indent))


def shown(message: str) -> str:
    """A message as it may be shown: without the configured secrets (a server's words, a file
    name or a setting's value can be in it), through the gate."""
    # Imported here: pii's tables are not needed on the way to --help, which loads this module.
    from chatcli.base.secrets import known_secrets  # lazy: off the path of chatcli --help

    return strip_controls(hide_known(message, known_secrets()))


def for_stream(text: str, *, terminal: bool) -> str:
    """Text bound for stdout: through the gate for a terminal; exact for a pipe or a file, where
    it is data (an export, a list for a script) and the program reading it decides."""
    return strip_controls(text) if terminal else text


# Terminals cap what one OSC 52 may carry (some at about 100 KB of base64), and
# drop a longer one whole; past this, /copy refuses rather than copy nothing.
OSC52_LIMIT = 100_000


def osc52_payload(text: str) -> str:
    """The base64 of text's UTF-8: what OSC 52 carries, and all of it (no ESC or BEL can appear in it)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


