"""/copy: the last reply, or one of its code blocks, onto the terminal's clipboard with OSC 52.

The handler picks the text and never touches the terminal; the REPL writes the
sequence, wrapped for tmux or GNU screen when chatcli runs inside one. The last
test runs the installed chatcli in a real pty and decodes what it wrote.
"""

from __future__ import annotations

import base64
import io
import re
from contextlib import ExitStack

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatcli.base.blocks import code_blocks
from chatcli.base.text import OSC52_LIMIT
from chatcli.cli.repl import Repl
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, INTERRUPTED, Turn
from chatcli.ui.terminal import Clipboard, osc52, screen_passthrough, tmux_passthrough
from tests.support.pty import PROMPT, TIMEOUT, expect_prompt, quit_with_ctrl_d
from tests.support.server import Reply
from tests.support.sessions import make_session

FIRST = 'import os\n\nprint(os.getcwd())'
SECOND = "def greet(name):\n    if name:\n        return f'hi {name}'  # keep   spacing\n\n    return 'hi'"
REPLY = f"Two ways.\n\n```python\n{FIRST}\n```\n\nOr, longer:\n\n~~~~ python title=x\n{SECOND}\n~~~~\n\nDone."
XTERM = {"TERM": "xterm-256color"}


@pytest.fixture
def session() -> Session:
    return make_session(config=Config(base_url="http://127.0.0.1:9/v1"), model="gpt-4o-mini")


def add_turn(session: Session, reply: str, status: str = COMPLETE) -> Turn:
    turn = Turn(user="q", model=session.model, params={}, reply=reply, status=status)
    session.turns.append(turn)
    return turn


def decoded(sequence: str) -> str:
    """The text every OSC 52 in sequence sets the clipboard to (they must all agree)."""
    payloads = re.findall(r"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07", sequence)
    assert payloads, repr(sequence[:80])
    texts = {base64.b64decode(p, validate=True).decode("utf-8") for p in payloads}
    assert len(texts) == 1
    return texts.pop()


# --------------------------------------------------------------------------- #
# The handler


def test_copy_takes_the_whole_last_reply(session):
    add_turn(session, "an older reply")
    add_turn(session, REPLY)
    result = REGISTRY.dispatch(session, "/copy")
    assert not result.error
    assert result.clipboard == REPLY
    assert result.text == f"Copied the last reply ({len(REPLY):,} characters) to the clipboard."


def test_copy_n_takes_that_code_block_as_written(session):
    add_turn(session, REPLY)
    first, second = REGISTRY.dispatch(session, "/copy 1"), REGISTRY.dispatch(session, "/copy 2")
    assert first.clipboard == FIRST
    assert second.clipboard == SECOND  # no fence lines, indentation and spacing kept, no final newline
    assert "code block 2 of 2" in second.text and f"({len(SECOND)} characters)" in second.text


def test_copy_skips_a_turn_that_got_no_reply_and_says_a_partial_one_is_partial(session):
    add_turn(session, "cut off mid", status=INTERRUPTED)
    add_turn(session, "")  # a message that failed before any text came
    result = REGISTRY.dispatch(session, "/copy")
    assert result.clipboard == "cut off mid"
    assert "interrupted" in result.text and "partial" in result.text


def test_copy_refusals_are_one_sentence_and_copy_nothing(session):
    def refusal(line: str) -> str:
        result = REGISTRY.dispatch(session, line)
        assert result.error and result.clipboard is None and "\n" not in result.text
        return result.text

    assert "no reply to copy" in refusal("/copy")
    add_turn(session, REPLY)
    assert "has 2 code blocks" in refusal("/copy 3")
    assert "has 2 code blocks" in refusal("/copy 0")
    assert "'abc'" in refusal("/copy abc")
    assert "'-1'" in refusal("/copy -1")
    add_turn(session, "No code here.")
    assert "no code blocks" in refusal("/copy 1")
    add_turn(session, "```\n```")
    assert "empty" in refusal("/copy 1")


def test_copy_refuses_a_reply_too_big_for_one_sequence_and_gives_its_size(session):
    add_turn(session, "x" * 80_000)  # 106,668 bytes of base64
    result = REGISTRY.dispatch(session, "/copy")
    assert result.error and result.clipboard is None
    assert "106,668 bytes" in result.text and f"{OSC52_LIMIT:,}" in result.text
    add_turn(session, "x" * 75_000)  # exactly 100,000: still fine
    assert REGISTRY.dispatch(session, "/copy").clipboard == "x" * 75_000


def test_help_lists_copy(session):
    assert any(row[0] == "/copy [N]" for row in REGISTRY.dispatch(session, "/help").rows)


def test_code_blocks_follow_commonmark_fences():
    text = "\n".join([
        "1. Run:",
        "   ```sh",
        "   make test",
        "     --verbose",
        "   ```",
        "````markdown",
        "```python",
        "x = 1",
        "```",
        "````",
        "``` not`a fence",
        "```",
        "unclosed, as in a reply cut short",
        "",
    ])
    assert code_blocks(text) == [
        "make test\n  --verbose",  # the fence's indentation comes off, the code's stays
        "```python\nx = 1\n```",  # a shorter fence inside a longer one is code
        "unclosed, as in a reply cut short",
    ]
    assert code_blocks("```\r\na\r\n  b\r\n```\r\n") == ["a\r\n  b"]
    assert code_blocks("no code") == []


# --------------------------------------------------------------------------- #
# The sequence, and where it can go


def test_osc52_carries_any_text_as_base64():
    text = "naïve ☃ \x1b]0;pwned\x07 \x1b\\ \x9c end\n"
    sequence = osc52(text)
    assert sequence.startswith("\x1b]52;c;") and sequence.endswith("\x07")
    inner = sequence[len("\x1b]52;c;") : -1]
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", inner)  # nothing in the text can end the sequence early
    assert decoded(sequence) == text


def test_the_environment_decides_how_the_sequence_is_wrapped():
    text = "y" * 1000
    plain = osc52(text)
    assert Clipboard.detect(isatty=True, environ=XTERM).sequence(text) == plain

    # tmux (which sets TERM=screen too): plain OSC 52, taken with set-clipboard on, then tmux's passthrough.
    tmux = Clipboard.detect(isatty=True, environ={"TERM": "screen-256color", "TMUX": "/tmp/tmux-1/default,1,0", "STY": "1.x"})
    assert tmux.via == "tmux"
    sequence = tmux.sequence(text)
    assert sequence == plain + tmux_passthrough(plain)
    assert sequence.endswith("\x1bPtmux;\x1b" + plain + "\x1b\\")
    assert decoded(sequence) == text

    # GNU screen: DCS pieces short enough for screen to keep whole, which join back into the sequence.
    screen = Clipboard.detect(isatty=True, environ={"TERM": "screen.xterm-256color", "STY": "1234.pts-0.host"})
    assert screen.via == "screen"
    sequence = screen.sequence(text)
    assert sequence == screen_passthrough(plain)
    pieces = re.findall(r"\x1bP(.*?)\x1b\\", sequence, re.DOTALL)
    assert len(pieces) > 1 and all(len(p) <= 252 for p in pieces)
    assert "".join(pieces) == plain
    assert "".join(f"\x1bP{p}\x1b\\" for p in pieces) == sequence

    # TERM=screen with no STY is not GNU screen (a terminal that just says so): plain.
    assert Clipboard.detect(isatty=True, environ={"TERM": "screen"}).sequence(text) == plain


@pytest.mark.parametrize(
    ("isatty", "environ", "why"),
    [
        (False, XTERM, "not a terminal"),
        (True, {"TERM": "dumb"}, "TERM=dumb"),
        (True, {"TERM": "linux"}, "Linux console"),
    ],
)
def test_no_clipboard_support_is_one_sentence(isatty, environ, why):
    problem = Clipboard.detect(isatty=isatty, environ=environ).problem
    assert problem and why in problem and "\n" not in problem


# --------------------------------------------------------------------------- #
# The REPL


class TtyOut(io.StringIO):
    """A captured output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run_repl(session: Session, out: io.StringIO, environ: dict[str, str], *lines: str) -> str:
    with ExitStack() as stack:
        pipe = stack.enter_context(create_pipe_input())
        repl = Repl(session, out=out, color=False, history_path=None, input=pipe, output=DummyOutput(),
                    warm_up=False, environ=environ)
        pipe.send_text("".join(line + "\r" for line in lines) + "\x04")
        assert repl.run() == 0
    return out.getvalue()


def test_repl_writes_the_sequence_then_says_what_it_copied(session):
    add_turn(session, REPLY)
    out = run_repl(session, TtyOut(), XTERM, "/copy 2")
    assert osc52(SECOND) in out
    assert out.index(osc52(SECOND)) < out.index("Copied code block 2 of 2")


def test_repl_without_a_terminal_copies_nothing_and_says_so(session):
    add_turn(session, REPLY)
    out = run_repl(session, io.StringIO(), XTERM, "/copy")
    assert "\x1b]52" not in out
    assert "output is not a terminal" in out and "Copied" not in out
    out = run_repl(session, TtyOut(), {"TERM": "linux"}, "/copy")
    assert "\x1b]52" not in out and "Linux console" in out


def test_copy_in_a_real_pty_puts_the_second_code_block_on_the_clipboard(srv, spawn_chatcli):

    srv.script(Reply(REPLY, chunk_size=16))
    child = spawn_chatcli(env={"TMUX": "", "STY": ""})
    expect_prompt(child)
    child.send("show me\r")
    child.expect_exact("Done.", timeout=TIMEOUT)
    expect_prompt(child)
    child.send("/copy 2\r")
    expected = "\x1b]52;c;" + base64.b64encode(SECOND.encode()).decode() + "\x07"
    child.expect_exact(expected, timeout=TIMEOUT)  # the exact block, base64 and all, as the terminal gets it
    child.expect(PROMPT, timeout=TIMEOUT)
    assert "Copied code block 2 of 2" in child.before
    quit_with_ctrl_d(child)


def test_a_digit_that_is_not_a_decimal_number_is_a_sentence_not_a_crash():

    session = make_session(client=None, model="m")
    for line in ("/copy ²", "/compact ²", "/resume ²"):
        result = REGISTRY.dispatch(session, line)
        assert result.error, line
