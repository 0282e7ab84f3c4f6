"""Hypothesis strategies the fuzz tests share: text that trips parsers, and values each setting accepts."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from chatcli.config.table import Setting

TRICKY = [
    "", " ", "\t", "\n", " \t\r\n ", "\x00", "\x1b[31m", "\u200b", "\u00a0", "\ufeff",
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "+inf", "-0", "-0.0", "0", "1", "2", "2.0000001",
    "1e309", "-1e309", "1e-400", "0x10", "1_0", "0_1", "1,5", "0.7", ".5", "5.", "٣", "²", "½",
    "9" * 400, "9" * 4301, "9" * 5000, "-" + "9" * 5000, "1" + "0" * 400 + ".5",
    "default", "none", "unset", "on", "off", "ON", "true", "yes", "1 2", "x" * 10_000,
]


numbers_as_text = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**500), max_value=10**500).map(str),
    st.floats().map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
)


long_text = st.builds(lambda ch, n: ch * n, st.characters(), st.integers(min_value=1000, max_value=50_000))


# Digits only, at lengths around the edges: past a 64-bit integer (20), and int()'s limit (4,300 digits).
digit_runs = st.builds(lambda digit, n: digit * n, st.sampled_from("0123456789١"), st.sampled_from([1, 2, 20, 4300, 4301, 5000]))


any_text = st.one_of(
    st.text(),
    st.sampled_from(TRICKY),
    numbers_as_text,
    digit_runs,
    long_text,
    st.lists(st.sampled_from(TRICKY) | st.text(max_size=8) | numbers_as_text, max_size=5).map(" ".join),
)


# api_key_cmd is run by load_config: it only ever gets a harmless command, or a non-string.
HARMLESS_COMMANDS = st.sampled_from(["true", "echo sk-fuzz-key"])


def valid_value(s: Setting) -> st.SearchStrategy[Any]:
    """A value the setting accepts, often at its limits."""
    if s.key == "api_key_cmd":
        return HARMLESS_COMMANDS
    if s.key == "base_url":
        return st.sampled_from(["http://localhost:11434/v1", "https://api.openai.com/v1/", " http://[::1]:8080 ", "https://x"])
    if s.key == "api_key":
        return st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
    if s.choices:
        return st.sampled_from(s.choices)
    if s.kind is bool:
        return st.booleans()
    if s.kind is int:
        edges = [s.minimum, s.maximum if s.maximum is not None else 10**400]
        return st.integers(min_value=s.minimum, max_value=s.maximum) | st.sampled_from([int(x) for x in edges if x is not None])
    if s.kind is float:
        low, high = s.minimum, s.maximum
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False) | st.integers(
            min_value=None if low is None else math.ceil(low), max_value=None if high is None else math.floor(high)
        )
    return st.text(max_size=30).filter(lambda t: s.optional or t.strip())


def as_env_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
