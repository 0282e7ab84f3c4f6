"""The gate to the terminal: what it removes, what it shows, what it keeps, and that it is the
same however a stream is cut. The commands that print through it are walked in a real pty in
pty/test_gate_pty.py."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli.base.errors import one_line
from chatcli.base.text import ControlFilter, strip_controls

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
ZERO_WIDTH = "\u200b\u200e\u200f\u2060\ufeff"
TAGS = "\U000e0001\U000e0041\U000e007f"
# Nothing of these may reach a terminal as it is.
RAW = set(BIDI + ZERO_WIDTH + TAGS + "\u200c\u200d\x1b\x07\x9b\x9d\x9c\r\x00\x7f")


def shown_as(ch: str) -> str:
    return f"<U+{ord(ch):04X}>"


def test_bidi_zero_width_and_tag_characters_are_shown_not_dropped():
    text = "".join(f"[{ch}]" for ch in BIDI + ZERO_WIDTH + TAGS)
    out = strip_controls(text)
    assert out == "".join(f"[{shown_as(ch)}]" for ch in BIDI + ZERO_WIDTH + TAGS)


def test_trojan_source_reads_in_the_order_it_is_stored():
    # A reply that a bidi terminal would show as `rm -rf ~/safe` when it is something else.
    trick = 'echo "\u202e ~/ fr- mr\u2066" && ls'
    assert strip_controls(trick) == 'echo "<U+202E> ~/ fr- mr<U+2066>" && ls'


@pytest.mark.parametrize("word", [
    "می\u200cخواهم",  # Persian: ZWNJ between the parts of a verb
    "क्\u200dष",  # Devanagari: ZWJ asks for a half form
    "👩\u200d💻",  # emoji: a technologist
    "🏳\ufe0f\u200d🌈",  # a rainbow flag, VS16 before the ZWJ
])
def test_a_joiner_where_a_word_or_an_emoji_needs_it_is_kept(word):
    assert strip_controls(word) == word
    assert strip_controls(f"say {word} now") == f"say {word} now"


@pytest.mark.parametrize("text, out", [
    ("ad\u200dmin", "ad<U+200D>min"),  # between Latin letters it can only hide
    ("pay\u200cpal", "pay<U+200C>pal"),
    ("👩\u200d", "👩<U+200D>"),  # at the very end: nothing follows to join
    ("👩\u200dx", "👩<U+200D>x"),
    ("a\u200d👩", "a<U+200D>👩"),
    ("می\u200c\u200cخواهم", "می<U+200C><U+200C>خواهم"),  # one joiner has a job; two do not
    ("\u200d", "<U+200D>"),
])
def test_a_joiner_anywhere_else_is_shown(text, out):
    assert strip_controls(text) == out


def test_escape_sequences_still_go_whole():
    hostile = "a\x1b]52;c;cHduZWQ=\x07b\x1b[2Jc\x1b]0;title\x07d\x1b[?1049he\x9b31mf\x9d0;t\x9cg"
    assert strip_controls(hostile) == "abcdefg"


def test_a_character_that_breaks_a_sequence_is_not_swallowed_with_it():
    assert strip_controls("\x1b\u202e x") == "<U+202E> x"
    assert strip_controls("\x1b[1\u200bm") == "<U+200B>m"


ALPHABET = st.sampled_from(
    list("ab ;[]0\n") + list(RAW) + ["\x1b[", "\x1b]", "\u0645", "\u06cc", "\u0915", "👩", "💻", "\ufe0f", "\x90", "\\"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join), st.lists(st.integers(0, 40), max_size=8))
def test_a_stream_cut_anywhere_comes_out_as_the_whole_does(text, cuts):
    edges = [0, *sorted(c for c in cuts if c <= len(text)), len(text)]
    gate = ControlFilter()
    streamed = "".join(gate.feed(text[a:b]) for a, b in zip(edges, edges[1:])) + gate.flush()
    whole = strip_controls(text)
    assert streamed == whole
    # No raw control; a joiner only where it joins.
    for i, ch in enumerate(whole):
        if ch in "\u200c\u200d":
            assert 0 < i < len(whole) - 1 and whole[i + 1] not in "<"
        else:
            assert ch not in RAW


def test_the_gate_costs_time_linear_in_the_text():
    unit = "word \u202e\x1b[2J \u200b 👩\u200d💻 می\u200cخواهم \x9d0;x\x07 plain text here.\n"

    def cost(n: int) -> float:
        text = unit * n
        start = time.perf_counter()
        gate = ControlFilter()
        for i in range(0, len(text), 7):
            gate.feed(text[i : i + 7])
        strip_controls(text)
        return time.perf_counter() - start

    # Interleaved, the least of five each: a busy machine slows both sizes alike, not only the later one.
    pairs = [(cost(500), cost(4_000)) for _ in range(5)]
    small, large = min(p[0] for p in pairs), min(p[1] for p in pairs)
    assert large < 8 * small * 2, (small, large)  # 8 times the text: about 8 times the time


def test_server_text_on_one_line_shows_what_it_hides():
    assert one_line("model\u202ename\u200b \x1b[2Jend") == "model<U+202E>name<U+200B> end"
    assert one_line("می\u200cخواهم") == "می\u200cخواهم"


def test_json_carries_controls_and_invisible_characters_only_as_escapes():
    from chatcli.base.text import (
        json_text,  # oneshot's --json and the JSON export both write with it
    )

    value = {"reply": "c1 \x9d and \x9b, del \x7f, esc \x1b, bidi \u202e, zw \u200b, tag \U000e0041, fa می\u200cخواهم"}
    for text in (json_text(value), json_text(value, indent=2)):
        assert not set(text) & (RAW | {"\x7f"}), text
        assert "\\u009d" in text and "\\u202e" in text and "\\udb40\\udc41" in text
        assert json.loads(text) == value  # the data is exact
