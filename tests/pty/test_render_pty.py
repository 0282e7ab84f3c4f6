"""What reaches a real terminal: chatcli in a pty, every byte it writes fed to a pyte screen.

These tests look at the reply as a user sees it. chatcli runs in a real
pseudo-terminal (pexpect); what it writes is checked twice: as raw output, for
control sequences the model must never get through, and as the screen and
scrollback of a VT100 emulator (pyte), for what the reply reads like. The
reference for "reads like" is the finished reply rendered in one go by
chatcli's own `markdown()`, run through the same emulator.

The emulator behaves like xterm: lines that scroll off the top go to the
scrollback, shrinking the window pushes the top lines into the scrollback,
and a narrower window cuts lines off (no reflow). It also remembers which rows
the terminal wrapped itself (soft wraps), so `logical_lines()` gives what a
user copying from the terminal would get.
"""

from __future__ import annotations

import io
import re
import textwrap

import pexpect
import pytest

from tests.support.pty import PROMPT, TIMEOUT
from tests.support.screen import Terminal, one_shot_in_pty, run_to_end
from tests.support.server import Reply

pytestmark = pytest.mark.timeout(30)


# --------------------------------------------------------------------------- #
# A terminal
# --------------------------------------------------------------------------- #


def normalized(rows: list[str]) -> list[str]:
    """Rows with trailing spaces gone, runs of blank rows made one, no blank rows at either end."""
    out: list[str] = []
    for row in rows:
        row = row.rstrip()
        if row or (out and out[-1]):
            out.append(row)
    while out and not out[-1]:
        out.pop()
    return out


def one_go_rows(text: str, columns: int) -> list[str]:
    """The finished reply rendered in one go, as the terminal would show it."""
    from chatcli.ui.markdown import markdown
    from chatcli.ui.render import make_console

    buf = io.StringIO()
    console = make_console(buf, width=columns, force_terminal=True, color=False)
    console.print(markdown(text))
    out = buf.getvalue().replace("\n", "\r\n")  # what the tty's onlcr does
    term = Terminal(columns, out.count("\n") + 2)
    term.feed(out)
    require(not term.scrollback, "the reference render scrolled")
    return term.rows()


def test_the_terminal_model_keeps_scrollback_soft_wraps_and_resizes_as_xterm():
    """The emulator itself, so a failure below is chatcli's and not the model's."""
    term = Terminal(10, 3)
    term.feed("one\r\n" + "x" * 25 + "\r\nabc\r\n" + "y" * 10 + "\r\nlast")
    assert term.rows() == ["one", "x" * 10, "x" * 10, "xxxxx", "abc", "y" * 10, "last"]
    # A wrap by the terminal joins when copied; a hard newline at the edge does not.
    assert term.logical_lines() == ["one", "x" * 25, "abc", "y" * 10, "last"]
    term.feed("\r\x1b[2Kfinal")  # rewriting a row keeps the rows above
    assert term.rows()[-2:] == ["y" * 10, "final"]
    term.resize(2, 4)  # shorter: the top row goes to the scrollback; narrower: the screen's rows are cut
    assert term.rows() == ["one", "x" * 10, "x" * 10, "xxxxx", "abc", "yyyy", "fina"]
    assert (term.cursor.y, term.lines, term.columns) == (1, 2, 4)


def require(condition: object, message: str) -> None:
    """A precondition: pytest.fail, not AssertionError, so an xfail(raises=AssertionError) test
    fails for real when chatcli breaks in some other way."""
    if not condition:
        pytest.fail(message)


def first_difference(got: list[str], want: list[str]) -> str:
    """Where two row lists part, and which non-blank rows the terminal shows more often than it should."""
    extra = [row for row in dict.fromkeys(got) if row.strip() and got.count(row) > want.count(row)]
    dups = f"; rows shown too often: {extra[:6]!r}" if extra else ""
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"row {i}: got {g!r}, want {w!r}{dups}"
    return f"got {len(got)} rows, want {len(want)}; extra: {(got[len(want):] or want[len(got):])[:5]!r}{dups}"


# --------------------------------------------------------------------------- #
# Running chatcli
# --------------------------------------------------------------------------- #


# --------------------------------------------------------------------------- #
# 1. Hostile text never steers the terminal
# --------------------------------------------------------------------------- #

HOSTILE = (
    "alpha \x1b[2J\x1b[H bravo \x1b[5A charlie\n\n"
    "title \x1b]0;pwned\x07 and \x1b]2;x-title\x1b\\ done\n\n"
    "see \x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\ end\n\n"
    "clip \x1b]52;c;ZXZpbA==\x07 board\n\n"
    "c1 \x9b31mred\x9b0m and \x9d0;c1-title\x9c plain\n\n"
    "bell\x07 back\x08\x08spaced\n"
)
# The text a user must still read, once the sequences are gone (whitespace collapsed).
HOSTILE_VISIBLE = [
    "alpha bravo charlie",
    "title and done",
    "see click here end",
    "clip board",
    "c1 red and plain",
    "bell backspaced",
]
# HOSTILE with every control sequence and control character taken out.
HOSTILE_PLAIN = (
    "alpha  bravo  charlie\n\n"
    "title  and  done\n\n"
    "see click here end\n\n"
    "clip  board\n\n"
    "c1 red and  plain\n\n"
    "bell backspaced\n"
)
# What the model tried to smuggle; none of it may reach the pty.
SMUGGLED = ["\x1b[2J", "\x1b[H", "\x1b[5A", "\x1b]", "]0;", "]2;", "]8;", "]52;", "\x07", "\x08",
            "pwned", "x-title", "evil.example", "ZXZpbA==", "c1-title"]
# CSI sequences rich's Live and printing use: SGR, erase line, cursor up one, show/hide cursor.
_CSI = re.compile(r"\x1b\[([0-?]*)([ -/]*)([@-~])")
_HARMLESS_CSI = re.compile(r"\x1b\[(?:[0-9;]*m|2?K|1?A|\?25[hl])")


def assert_no_hostile_output(raw: str) -> None:
    for bad in SMUGGLED:
        at = raw.find(bad)
        assert at < 0, f"{bad!r} reached the terminal: ...{raw[max(0, at - 80):at + 40]!r}..."
    assert "\ufffd" not in raw, "the output is not valid UTF-8"
    c1 = sorted({f"U+{ord(ch):04X}" for ch in raw if 0x80 <= ord(ch) <= 0x9F})
    assert not c1, f"C1 controls reached the terminal: {c1}"


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_hostile_sequences_in_a_reply_never_reach_the_terminal(srv, spawn_chatcli, chunk_size):
    # In the answer and in the reasoning streamed before it (shown dimmed, behind a gutter).
    srv.script(Reply(HOSTILE, reasoning=HOSTILE, chunk_size=chunk_size))
    raw, term, status = one_shot_in_pty(spawn_chatcli)
    assert status == 0, raw
    assert_no_hostile_output(raw)
    # Everything else chatcli wrote is its own drawing: no erase-display, no
    # cursor addressing, no scroll regions, no OSC/DCS strings, no other C0.
    others = sorted({m.group(0) for m in _CSI.finditer(raw) if not _HARMLESS_CSI.fullmatch(m.group(0))})
    assert not others, f"unexpected CSI sequences: {others!r}"
    assert not re.search(r"\x1b[^\[]", raw), "an ESC sequence other than CSI"
    assert not re.search(r"[\x00-\x09\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]", raw), "a C0 control other than CR, LF, ESC"
    # The terminal's own state: title untouched, nothing drawn over the text.
    assert term.title == "" and term.icon_name == ""
    shown = " ".join(" ".join(term.rows()).replace("│", " ").split())
    for words in HOSTILE_VISIBLE:
        assert shown.count(words) == 2, f"{words!r} is not on the screen twice: {shown!r}"
    assert shown.index(HOSTILE_VISIBLE[0]) < shown.index(HOSTILE_VISIBLE[-1])


def test_hostile_sequences_in_a_repl_reply_never_reach_the_terminal(srv, spawn_chatcli):
    srv.script(Reply(HOSTILE, chunk_size=4))
    child = spawn_chatcli()
    term = Terminal(120, 40)
    child.expect(PROMPT, timeout=TIMEOUT)
    term.feed(child.before + child.after)
    child.send("hostile\r")
    child.expect(PROMPT, timeout=TIMEOUT)
    output = child.before
    term.feed(child.before + child.after)
    # prompt-toolkit draws with BS and cursor moves of its own; the reply is what
    # comes after it stops reading the line (bracketed paste off).
    reply = output[output.index("\x1b[?2004l"):]
    assert_no_hostile_output(reply)
    assert term.title == "" and term.icon_name == ""
    shown = " ".join(" ".join(term.rows()).split())
    for words in HOSTILE_VISIBLE:
        assert words in shown, f"{words!r} is missing from the screen: {shown!r}"
    child.sendcontrol("d")
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.exitstatus == 0


# --------------------------------------------------------------------------- #
# 2. Rich markup in model text is only text
# --------------------------------------------------------------------------- #

MARKUP = (
    "# Heading [red]not red[/red]\n\n"
    "Literal [bold]not bold[/bold] and [link=https://evil.example]click[/link] here.\n\n"
    "- a stray [/x] closing tag\n"
    "- an open [red] tag and [/] more\n\n"
    "| [b]cell[/b] | [i]x[/i] |\n|---|---|\n| [u]u[/u] | [blink]b[/blink] |\n"
)


def test_rich_markup_in_a_reply_is_shown_literally(srv, spawn_chatcli):
    srv.script(Reply(MARKUP))
    raw, term, status = one_shot_in_pty(spawn_chatcli)
    assert status == 0, raw
    assert "Traceback" not in raw and "Error" not in raw
    shown = "\n".join(term.rows())
    for literal in ["[red]not red[/red]", "[bold]not bold[/bold]", "[link=https://evil.example]click[/link]",
                    "a stray [/x] closing tag", "an open [red] tag and [/] more", "[b]cell[/b]",
                    "[i]x[/i]", "[u]u[/u]", "[blink]b[/blink]"]:
        assert literal in shown, f"{literal!r} is not on the screen:\n{shown}"
    assert "\x1b]8;" not in raw  # no hyperlink was made of [link=...]
    # "not bold" is drawn as plain paragraph text, and the text after "[red]" is not red.
    assert not any(c.bold for c in term.screen_chars("not bold"))
    assert all(c.fg == "default" for c in term.screen_chars("tag and [/] more"))
    assert normalized(term.rows()) == normalized(one_go_rows(MARKUP, 120))


# --------------------------------------------------------------------------- #
# 3. The streamed reply reads the same as a one-go render
# --------------------------------------------------------------------------- #

DOC = """# Release notes

Some *emphasis*, **strong** text, ~~struck~~ and `inline code` here; a sentence long enough to wrap at forty columns.

## Lists

- first item
- second item with a [link](https://example.com/docs/page)
  - nested one
  - nested two
    1. deep numbered
    2. another
- third item

1. one
2. two

> A quote that goes on
> over two lines.
>
> And a second quoted paragraph.

### A table

| name | value | note |
| ---- | ----: | ---- |
| alpha | 1 | first |
| beta | 22 | second |

Before the code.

```python
def greet(name: str) -> str:
    if not name:  # nobody there
        return "hello, nobody"

    return f"hello {name}"
```

After the code. A link to [the docs](https://docs.example.org/page?x=1) and `code`.
"""
DOC_CODE = [
    "def greet(name: str) -> str:",
    "    if not name:  # nobody there",
    '        return "hello, nobody"',
    "",
    '    return f"hello {name}"',
]


@pytest.mark.parametrize("cols", [120, 40])
def test_streamed_markdown_reads_like_a_one_go_render(srv, spawn_chatcli, cols):
    srv.script(Reply(DOC, chunk_size=4))
    raw, term, status = one_shot_in_pty(spawn_chatcli, cols=cols)
    assert status == 0, raw
    got, want = normalized(term.rows()), normalized(one_go_rows(DOC, cols))
    assert got == want, first_difference(got, want) + "\n" + "\n".join(got)
    shown = " ".join(" ".join(got).split())
    # Link targets are shown, so a user sees where a link goes.
    assert "https://example.com/docs/page" in shown.replace(" ", "")
    assert "https://docs.example.org/page?x=1" in shown.replace(" ", "")
    assert "waiting for the reply" not in shown  # the spinner is gone
    # Code that fits is copied from the terminal as written (but for a common indent).
    assert copied_code(term) == DOC_CODE
    assert colour_sgr(raw), "no colours: the NO_COLOR test below would prove nothing"


# --------------------------------------------------------------------------- #
# 4. Fenced code is copied from the terminal as it was written
# --------------------------------------------------------------------------- #


def copied_code(term: Terminal) -> list[str]:
    """The code block as a user copying it from the terminal gets it, common indentation removed."""
    lines = term.logical_lines()
    marks = [i for i, line in enumerate(lines) if "Before the code." in line or "After the code." in line]
    require(len(marks) == 2, "the paragraphs around the code block are not on the terminal once each")
    start, end = marks
    block = [line for line in lines[start + 1:end]]
    while block and not block[0].strip():
        block.pop(0)
    while block and not block[-1].strip():
        block.pop()
    return [line.rstrip() for line in textwrap.dedent("\n".join(block)).split("\n")]


def code_reply(code: list[str]) -> str:
    return "Before the code.\n\n```python\n" + "\n".join(code) + "\n```\n\nAfter the code.\n"


def test_a_fenced_code_line_wider_than_the_terminal_is_not_rewrapped(srv, spawn_chatcli):
    # 60-character lines in a 40-column terminal; a 150-character line at 120 columns is cut the
    # same way (one_go_rows(code_reply(...), 120) shows it), and streamed equals one-go (above).
    cols, width = 40, 60
    words = "result = compute(alpha_value, beta_value, gamma_value, delta_value, epsilon_value)"
    long_line = (words + " + 1" * 40)[:width - len("  # end")] + "  # end"
    url_line = 'URL = "https://example.com/' + "x" * (width - 28) + '"'
    code = ["def f():", "    return 1", long_line, url_line]
    require(len(long_line) == len(url_line) == width, "the long lines are not as long as meant")
    srv.script(Reply(code_reply(code), chunk_size=4))
    raw, term, status = one_shot_in_pty(spawn_chatcli, cols=cols)
    require(status == 0, raw)
    assert copied_code(term) == code, "\n".join(term.logical_lines())


# --------------------------------------------------------------------------- #
# 5. A reply of many screens lands in the scrollback whole
# --------------------------------------------------------------------------- #


def long_reply() -> str:
    parts = ["# A long reply\n"]
    parts += [f"Paragraph line {n:03d} of the long reply.\n" for n in range(1, 101)]
    parts.append("```python\n" + "".join(f"print('code line {n:03d}')\n" for n in range(101, 201)) + "```\n")
    parts.append("".join(f"- list item line {n:03d}\n" for n in range(201, 301)))
    parts.append("The end.\n")
    return "\n".join(parts)


def test_a_reply_of_many_screens_is_in_the_scrollback_once_and_in_order(srv, spawn_chatcli):
    text = long_reply()
    srv.script(Reply(text, chunk_size=4))
    raw, term, status = one_shot_in_pty(spawn_chatcli, rows=40, cols=120)
    assert status == 0, raw
    got, want = normalized(term.rows()), normalized(one_go_rows(text, 120))
    assert len(want) > 3 * 40
    assert got == want, first_difference(got, want)
    joined = "\n".join(got)
    for n in range(1, 301):
        assert joined.count(f"line {n:03d}") == 1, n


# --------------------------------------------------------------------------- #
# 6. Resizing the window while a reply streams
# --------------------------------------------------------------------------- #


RESIZED_REPLY = (
    "".join(f"Paragraph {k:02d}: the quick brown fox jumps over the dog.\n\n" for k in range(1, 4))
    + "".join(f"- streaming list item {k:02d}\n" for k in range(1, 27))
    + "\nAfter the list.\n"
)


def stream_with_resizes(srv, spawn_chatcli, resizes: list[tuple[str, tuple[int, int]]], *, in_flight: bool = False):
    """Stream RESIZED_REPLY into a 40x120 pty; once a trigger text is out, resize the pty and the terminal.

    The terminal is resized after drawing the bytes read so far, or with in_flight before drawing
    the last read: as when the window changes size between chatcli writing and the terminal drawing.
    """
    srv.script(Reply(RESIZED_REPLY, chunk_size=4, delay=0.004))  # about 0.8 s of streaming
    child = spawn_chatcli("question", rows=40, cols=120)
    term = Terminal(120, 40)
    pending = list(resizes)
    done_at: list[int] = []

    def resize(so_far: str, new: str) -> None:
        while pending and pending[0][0] in so_far:
            size = pending.pop(0)[1]
            child.setwinsize(*size)
            if not in_flight:
                term.feed(new)
                new = ""
            term.resize(*size)
            done_at.append(len(so_far))
        if new:
            term.feed(new)

    raw = run_to_end(child, None, on_read=resize)  # resize() feeds the terminal
    require(child.exitstatus == 0, raw)
    require(len(done_at) == len(resizes), "a resize did not happen")
    require("After the list." not in raw[:done_at[-1]], "the last resize came after the list was finished")
    return raw, term


def test_resizing_the_window_mid_reply_leaves_the_reply_whole(srv, spawn_chatcli):
    # The list is one block, so it stays in the live region while it grows: the
    # resizes happen with a live region of 12 or more, then 18 or more rows on screen.
    # Fewer rows, then more and wider: bytes written for the old size are harmless
    # at the new one. (A narrower window is racy: see the in-flight test below.)
    resizes = [("item 12", (30, 120)), ("item 18", (40, 160))]
    _, term = stream_with_resizes(srv, spawn_chatcli, resizes)
    got = normalized(term.rows())
    want = normalized(one_go_rows(RESIZED_REPLY, 120))
    assert want == normalized(one_go_rows(RESIZED_REPLY, 160))  # every line fits in 120 columns
    assert got == want, first_difference(got, want) + "\n" + "\n".join(got)


def test_shrinking_the_window_below_the_live_region_leaves_no_stray_lines(srv, spawn_chatcli):
    _, term = stream_with_resizes(srv, spawn_chatcli, [("item 16", (12, 120))])
    got = normalized(term.rows())
    want = normalized(one_go_rows(RESIZED_REPLY, 120))
    assert got == want, first_difference(got, want) + "\n" + "\n".join(got)


def test_narrowing_the_window_while_a_redraw_is_in_flight_leaves_no_stray_lines(srv, spawn_chatcli):
    _, term = stream_with_resizes(srv, spawn_chatcli, [("item 12", (40, 80))], in_flight=True)
    got = normalized(term.rows())
    want = normalized(one_go_rows(RESIZED_REPLY, 80))
    assert got == want, first_difference(got, want) + "\n" + "\n".join(got)


# --------------------------------------------------------------------------- #
# 7. NO_COLOR and --plain
# --------------------------------------------------------------------------- #

COLOURFUL = "# Title\n\nSome **bold** and `code` and a [link](https://example.com).\n\n```python\nx = {'a': 1}\n```\n"
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def colour_sgr(raw: str) -> list[str]:
    """SGR sequences that set a foreground or background colour."""
    found = []
    for m in _SGR.finditer(raw):
        params = [int(p) for p in re.split(r"[;:]", m.group(1)) if p]
        i = 0
        while i < len(params):
            p = params[i]
            if 30 <= p <= 37 or 40 <= p <= 47 or 90 <= p <= 97 or 100 <= p <= 107 or p in (38, 48, 58):
                found.append(m.group(0))
                break
            i += 1
    return found


@pytest.mark.parametrize("flags, env", [(["--plain"], {}), ([], {"NO_COLOR": "1"})], ids=["--plain", "NO_COLOR=1"])
def test_plain_output_is_the_text_as_streamed_without_colour_or_control_sequences(srv, spawn_chatcli, flags, env):
    # README: NO_COLOR, like --plain, prints replies as plain text as they stream.
    text = "# Title\n\n**not rendered** and `code`\n\n" + COLOURFUL + HOSTILE + "last line without newline"
    srv.script(Reply(text, chunk_size=1))
    raw, term, status = one_shot_in_pty(spawn_chatcli, *flags, env=env)
    assert status == 0, raw
    assert colour_sgr(raw) == []
    assert_no_hostile_output(raw)
    assert "\x1b" not in raw  # no SGR, no spinner, no cursor moves: nothing of chatcli's own either
    shown = "# Title\n\n**not rendered** and `code`\n\n" + COLOURFUL + HOSTILE_PLAIN + "last line without newline\n"
    assert raw == shown.replace("\n", "\r\n")  # the tty's onlcr makes each \n a \r\n
    assert term.rows()[:3] == ["# Title", "", "**not rendered** and `code`"]
