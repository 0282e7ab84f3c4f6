"""Rendering stays linear in a reply's size: one line of any length, a table of any number of rows.

The live region is redrawn about 12 times a second while a reply streams, so
what a frame costs matters as much as what the reply costs: a frame that
renders the whole unfinished block makes a reply that is one block (one long
line, one long table) cost time quadratic in its length. These tests stream
replies at a steady pace, as a fast model would, so the frames happen, and
compare the CPU of a reply with that of one four times longer.
"""

from __future__ import annotations

import io
import random
import re
import time

import pytest
from rich.console import Console

from chatcli.base.events import ReasoningDelta, TextDelta
from chatcli.ui.render import MarkdownRenderer, PlainRenderer

WIDTH, HEIGHT = 120, 40
RATE = 100_000  # characters a second: a fast local server
NOTICE = re.compile(r"too (long|large) to format")

WORDS = ("the", "renderer", "**stream**", "terminal", "`buffer()`", "reply", "*model*", "token",
         "[link](https://example.com/x)", "scrollback", "block", "table", "column", "parser", "delta")


def one_line(size: int, seed: int = 1) -> str:
    """A single line of `size` characters, with the inline markup models write."""
    rng = random.Random(seed)
    words, length = [], 0
    while length < size:
        words.append(rng.choice(WORDS))
        length += len(words[-1]) + 1
    return " ".join(words)[:size]


def table(rows: int) -> str:
    lines = ["| name | value | ratio | note |", "|------|------:|------:|------|"]
    lines += [f"| `row{i}` | {i * 7 % 9999} | {i % 97}.{i % 10} | *row* {i} |" for i in range(rows)]
    return "\n".join(lines) + "\n"


def console(*, terminal: bool) -> Console:
    return Console(file=io.StringIO(), width=WIDTH, height=HEIGHT, force_terminal=terminal,
                   color_system="truecolor" if terminal else None, markup=False, emoji=False, highlight=False)


def stream(text: str, out: Console | None, *, rate: float | None = None, delta: int = 4, limit: float = 30.0) -> float:
    """Stream text in `delta`-character deltas into a MarkdownRenderer on `out` (None: a PlainRenderer);
    return the CPU seconds it took.

    With a rate, the deltas come at that many characters a second, so the live region's frames
    happen as they do for a real stream. A run past `limit` seconds fails the test at once.
    """
    started, cpu = time.perf_counter(), time.process_time()
    with MarkdownRenderer(out) if out is not None else PlainRenderer(io.StringIO()) as renderer:
        for i in range(0, len(text), delta):
            renderer.handle(TextDelta(text[i : i + delta]))
            if rate is not None and i % 1024 < delta:
                ahead = started + i / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
                elapsed = time.perf_counter() - started
                assert elapsed < limit, f"{len(text):,} characters were not drawn in {limit:.0f} s (at {i:,})"
    return time.process_time() - cpu


def shown(out: Console) -> str:
    return out.file.getvalue()


def costs(small: str, large: str) -> tuple[float, float]:
    """The CPU of the large reply drawn as markdown, over the small one's and over the large one's as plain text.

    Each is the best of two runs: a shared machine is noisy.
    """
    stream(small[:20_000], console(terminal=True), rate=RATE)  # warm-up: imports, the parser, pygments
    a = min(stream(small, console(terminal=True), rate=RATE) for _ in range(2))
    b = min(stream(large, console(terminal=True), rate=RATE) for _ in range(2))
    plain = min(stream(large, None) for _ in range(2))  # no live region: no frames to pace
    return b / a, b / plain


def test_a_reply_on_one_line_costs_time_linear_in_its_length():
    growth, over_plain = costs(one_line(30_000), one_line(120_000))
    # 4x the length: linear is 4x (less, with what every reply costs); quadratic is 16x. Past the
    # size where markdown helps, the line is plain text, and costs what plain output does.
    assert growth < 5, f"4x the length cost {growth:.1f}x the CPU"
    assert over_plain < 3, f"drawn as markdown, the line cost {over_plain:.1f}x its plain output's CPU"


def test_a_long_table_costs_time_linear_in_its_rows():
    growth, over_plain = costs(table(800), table(3200))
    assert growth < 5, f"4x the rows cost {growth:.1f}x the CPU"
    assert over_plain < 5, f"drawn as markdown, the table cost {over_plain:.1f}x its plain output's CPU"


def test_a_line_many_screens_wide_is_shown_as_plain_text_whole_and_said_once():
    text = one_line(300_000, seed=2)
    out = console(terminal=False)
    rng = random.Random(3)
    with MarkdownRenderer(out) as renderer:
        i = 0
        while i < len(text):
            size = rng.choice([1, 3, 4, 17, 200])
            renderer.handle(TextDelta(text[i : i + size]))
            i += size
    lines = [line.rstrip() for line in shown(out).splitlines()]
    assert len(NOTICE.findall(shown(out))) == 1
    assert lines.count(text) == 1  # every character, once, as written: not a markdown rendering
    assert "".join(lines).count("https://example.com/x") == text.count("https://example.com/x")


def test_a_table_of_thousands_of_rows_is_plain_text_between_markdown_blocks():
    rows = table(3000)
    text = "Intro with **bold**.\n\n" + rows + "\nAfter the *table*, more **bold**.\n\n" + table(2500)
    out = console(terminal=False)
    stream(text, out)
    lines = [line.rstrip() for line in shown(out).splitlines()]
    assert len(NOTICE.findall(shown(out))) == 1  # said once, though two tables were too long
    assert "Intro with bold." in lines  # markdown before
    assert "After the table, more bold." in lines  # and after: only the table fell back
    table_lines = [line for line in lines if line.startswith("|")]
    assert table_lines == rows.splitlines() + table(2500).splitlines()  # in order, none lost or repeated


@pytest.mark.parametrize("delta", [4, 4096])
def test_text_around_a_long_line_keeps_its_markdown(delta):
    line = one_line(50_000, seed=4)
    text = f"# Title\n\nSome **bold** text.\n\n{line}\n\nThen `code` and *emphasis*.\n"
    out = console(terminal=False)
    stream(text, out, delta=delta)
    lines = [line.rstrip() for line in shown(out).splitlines()]
    assert lines.count(line) == 1
    assert "Some bold text." in lines and "Then code and emphasis." in lines
    assert len(NOTICE.findall(shown(out))) == 1


def test_a_long_line_of_reasoning_is_shown_whole_once():
    line = one_line(200_000, seed=6)
    out = console(terminal=False)
    with MarkdownRenderer(out) as renderer:
        for i in range(0, len(line), 4):
            renderer.handle(ReasoningDelta(line[i : i + 4]))
        renderer.handle(TextDelta("The answer.\n"))
    lines = [row.rstrip() for row in shown(out).splitlines()]
    assert lines.count("│ " + line) == 1  # the terminal wraps it, and a copy gives it back whole
    assert "The answer." in lines


def test_a_long_code_block_keeps_its_highlighting():
    code = "".join(f"    total += value_{i} * {i}  # line {i}\n" for i in range(800))
    text = f"```python\ndef f():\n{code}```\n"
    out = console(terminal=True)
    stream(text, out, delta=64)
    assert not NOTICE.search(shown(out))
    assert "\x1b[" in shown(out).rsplit("line 798", 1)[-1]  # highlighted to the end


# --------------------------------------------------------------------------- #
# In a real terminal
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(60)
def test_a_line_of_many_screens_reaches_a_terminal_whole_once_and_copies_as_written(srv, spawn_chatcli):
    from tests.support.screen import one_shot_in_pty
    from tests.support.server import Reply

    line = one_line(40_000, seed=5)
    rows = table(600)
    srv.script(Reply(f"Before **this**.\n\n{line}\n\nBetween *these*.\n\n{rows}\nAfter `that`.\n", chunk_size=64))
    raw, term, status = one_shot_in_pty(spawn_chatcli, rows=40, cols=120)
    assert status == 0, raw[-500:]
    lines = term.logical_lines()  # rows the terminal wrapped itself are joined, as a copy gives them
    assert lines.count(line) == 1, [piece[:80] for piece in lines]
    assert [piece for piece in lines if piece.startswith("|")] == rows.splitlines()
    assert "Before this." in lines and "Between these." in lines and "After that." in lines
    assert len(NOTICE.findall("\n".join(lines))) == 1
    assert "\x1b[2J" not in raw and "\x1b[H" not in raw
