"""The content filter in the REPL, in a real pty: a reply that holds a blocked word never reaches
the screen, not even for a frame of the live region that is drawn over later (everything the
pty was sent is read, not only the screen it leaves); /show-filtered obeys show_filtered, and a
resumed session's recap shows the reply withheld."""

from __future__ import annotations

import os
from pathlib import Path

import pexpect
import pytest

from chatcli.base.events import WITHHELD
from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d, visible
from tests.support.server import Reply

pytestmark = pytest.mark.timeout(40)

BLOCKED = "The password is swordfish, and 这是禁止的词."
CLEAN = "A plain answer, drawn as ever."


def configure(extra: str = "") -> None:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('block_words = ["swordfish", "禁止"]\n' + extra, encoding="utf-8")


def said(child: pexpect.spawn) -> str:
    """Everything the pty was sent so far, escapes and overwritten frames included."""
    return child.logfile_read.getvalue()


def assert_unseen(raw: str) -> None:
    # Split by a cursor move or a style between its letters, a word would still be drawn: look
    # at the text with the escapes taken out as well as at the raw bytes.
    for text in (raw, visible(raw)):
        assert "swordfish" not in text and "禁止" not in text


def ask(child: pexpect.spawn, text: str) -> None:
    child.send(text + "\r")
    expect_prompt(child)


@pytest.mark.parametrize("render", ["markdown", "plain"])
def test_a_withheld_reply_never_reaches_the_screen(srv, spawn_chatcli, render: str) -> None:
    configure(f'render = "{render}"\n')
    srv.script(Reply(BLOCKED, chunk_size=2, delay=0.04), Reply(CLEAN, chunk_size=2))
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("what is the password\r")
    child.expect_exact(WITHHELD, timeout=TIMEOUT)
    expect_prompt(child)
    if render == "markdown":  # while it is held back, the spinner says it is coming
        assert "receiving the reply, shown when it ends" in visible(said(child))
    ask(child, "and now?")  # a reply without one is shown
    assert CLEAN in visible(said(child))
    ask(child, "/show-filtered")
    assert "Filtered replies can't be shown: set show_filtered = true" in visible(said(child))
    quit_with_ctrl_d(child)
    assert_unseen(said(child))
    # What was sent is as typed, and the withheld reply went back to the model with the next turn.
    assert srv.chat_requests[1].body["messages"][1] == {"role": "assistant", "content": BLOCKED}


def test_show_filtered_shows_the_original_when_the_config_allows(srv, spawn_chatcli) -> None:
    configure("show_filtered = true\n")
    srv.script(Reply(BLOCKED, chunk_size=3))
    child = spawn_chatcli()
    expect_prompt(child)
    ask(child, "what is the password")
    assert WITHHELD in visible(said(child))
    assert_unseen(said(child))
    ask(child, "/show-filtered")
    assert "swordfish" in visible(said(child)) and "这是禁止的词" in visible(said(child))
    quit_with_ctrl_d(child)


def test_a_resumed_session_recaps_it_withheld(srv, spawn_chatcli) -> None:
    configure()
    srv.script(Reply(BLOCKED))
    first = spawn_chatcli()
    expect_prompt(first)
    ask(first, "what is the password")
    quit_with_ctrl_d(first)
    again = spawn_chatcli("-c")
    recap = visible(expect_prompt(again))
    assert "what is the password" in recap and WITHHELD in recap
    quit_with_ctrl_d(again)
    assert_unseen(said(first) + said(again))


def wait_for_request(srv, count: int) -> None:
    """Until the server has the request and has begun to stream (nothing of it is drawn yet)."""
    import time

    deadline = time.monotonic() + TIMEOUT
    while len(srv.chat_requests) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


def test_ctrl_c_mid_reply_checks_what_came_before_any_of_it_is_drawn(srv, spawn_chatcli) -> None:
    configure()
    srv.script(Reply("swordfish " + "word " * 400, chunk_size=5, delay=0.02),  # about 8 s in full
               Reply("plain " * 400, chunk_size=6, delay=0.02))
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("talk a lot\r")
    wait_for_request(srv, 1)
    child.send("\x03")  # Ctrl-C while the reply is held back
    child.expect_exact(WITHHELD, timeout=TIMEOUT)
    expect_prompt(child)
    assert "interrupted" in visible(said(child))
    child.send("and again\r")
    wait_for_request(srv, 2)
    child.send("\x03")
    child.expect_exact("plain plain plain", timeout=TIMEOUT)  # a clean partial reply is drawn once checked
    expect_prompt(child)
    quit_with_ctrl_d(child)
    assert_unseen(said(child))
