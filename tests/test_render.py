"""Rendering: safe text, blocks printed once, streamed output equal to a one-go render."""

from __future__ import annotations

import io
import random
import re

import pytest
from rich.console import Console

from chatcli.base.blocks import BlockSplitter
from chatcli.base.events import TextDelta, Usage
from chatcli.base.text import ControlFilter, strip_controls
from chatcli.ui.markdown import markdown
from chatcli.ui.render import MarkdownRenderer, PlainRenderer

UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

HOSTILE = (
    "plain \x1b[31mred\x1b[0m text\x1b]0;pwned-title\x07 then "
    "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ and \x9b2J c1 \x1bc reset "
    "\x1bP1$qm\x1b\\ dcs \x07bell \x08back\r\nnext\tline\x00nul\x7fdel"
)

DOC = """# Release notes

Some *emphasis*, **strong**, `inline code` and a [link](https://example.com/x).

- first
- second
  - nested

1. one

2. two
   continued

```python
def f(x):

    return x * 2
```
Text right after code.

> a quote
> that continues

| name | value |
|------|-------|
| a    | 1     |

## Second heading

---

Last paragraph
with a soft break.
"""


def test_control_sequences_are_removed_and_words_kept():
    out = strip_controls(HOSTILE)
    assert not UNSAFE.search(out.replace("\n", "").replace("\t", ""))
    for word in ("plain", "red", "text", "then", "link", "c1", "reset", "dcs", "bell", "back", "next", "line", "nul", "del"):
        assert word in out
    assert "pwned-title" not in out and "evil.example" not in out


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_control_filter_catches_sequences_split_across_deltas(size):
    f = ControlFilter()
    out = "".join(f.feed(HOSTILE[i : i + size]) for i in range(0, len(HOSTILE), size))
    assert out == strip_controls(HOSTILE)


def test_an_unterminated_sequence_cannot_swallow_the_reply():
    assert strip_controls("before \x1b]0;no end\nafter") == "before \nafter"
    assert strip_controls("x\x1b[12\nmore") == "x\nmore"


def test_plain_renderer_writes_text_as_it_comes_and_ends_the_line():
    out = io.StringIO()
    with PlainRenderer(out) as r:
        r.handle(TextDelta("**not styled** "))
        r.handle(Usage(1, 1, 2))
        r.handle(TextDelta("\x1b[1mbold?\x1b[0m"))
    assert out.getvalue() == "**not styled** bold?\n"


def render_streamed(text: str, deltas: list[int], width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    with MarkdownRenderer(console) as r:
        i = 0
        for size in deltas:
            r.handle(TextDelta(text[i : i + size]))
            i += size
        r.handle(TextDelta(text[i:]))
    return console.file.getvalue()


def render_whole(text: str, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(markdown(text))
    return console.file.getvalue()


@pytest.mark.parametrize("width", [40, 80, 120])
@pytest.mark.parametrize("seed", range(4))
def test_streamed_markdown_reads_the_same_as_rendering_it_whole(width, seed):
    rng = random.Random(seed)
    deltas = [rng.choice([1, 2, 4, 9, 30]) for _ in range(len(DOC))]
    assert render_streamed(DOC, deltas, width) == render_whole(DOC, width)


def test_each_block_reaches_the_scrollback_exactly_once():
    paragraphs = [f"Paragraph {i} says something." for i in range(50)]
    text = "\n\n".join(paragraphs) + "\n"
    out = render_streamed(text, [4] * (len(text) // 4), 80)
    assert re.findall(r"Paragraph (\d+)", out) == [str(i) for i in range(50)]


def test_model_text_is_never_read_as_rich_markup():
    text = "[bold red]not markup[/bold red] and :smile: and [link=http://x]y[/link]\n"
    out = render_streamed(text, [3] * 30, 80)
    assert "[bold red]not markup[/bold red]" in out
    assert ":smile:" in out


def test_markdown_renderer_strips_control_sequences():
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system="truecolor")
    with MarkdownRenderer(console) as r:
        r.handle(TextDelta(HOSTILE))
    out = console.file.getvalue()
    assert "pwned-title" not in out and "evil.example" not in out
    assert "\x1b]0;" not in out and "\x9b" not in out and "\x07" not in out


def test_links_show_their_url():
    assert "https://example.com/x" in render_streamed(DOC, [5] * 400, 100)


def test_splitter_holds_an_open_block_and_loses_nothing():
    splitter = BlockSplitter()
    text = ("A line of a long paragraph that goes on.\n" * 2000) + "\n"
    blocks = []
    for i in range(0, len(text), 4):
        blocks += splitter.feed(text[i : i + 4])
    assert blocks == [] and splitter.text == text  # still open: nothing flushed, nothing lost
    blocks += splitter.feed("Next paragraph.\n")
    assert blocks == [text] and splitter.text == "Next paragraph.\n"


def test_splitter_keeps_code_fences_whole_even_with_blank_lines():
    splitter = BlockSplitter()
    blocks = splitter.feed("Intro\n\n```\na\n\nb\n```\nafter\n")
    assert blocks == ["Intro\n\n", "```\na\n\nb\n```\n"]
    assert splitter.text == "after\n"


def test_html_in_model_text_is_shown_not_dropped():
    text = "Wrap it in a <div> tag, then use <br> for breaks.\n\n<details>\nhidden text\n</details>\n"
    out = render_streamed(text, [3] * 40, 80)
    assert "<div>" in out and "<br>" in out and "<details>" in out and "hidden text" in out


def test_reference_link_definitions_streamed_after_their_links_still_show_the_url():
    text = "See [the docs][docs] for more.\n\nAnother paragraph.\n\n[docs]: https://example.com/docs\n"
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None, force_terminal=False)
    with MarkdownRenderer(console) as r:
        for i in range(0, len(text), 4):
            r.handle(TextDelta(text[i : i + 4]))
    shown = out.getvalue()
    assert "[the docs][docs]" in shown and "[docs]: https://example.com/docs" in shown
