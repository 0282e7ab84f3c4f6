"""End to end in a real pseudo-terminal: the installed `chatcli`, driven with pexpect.

The server is tests/support/server.py; keys are sent as a terminal would send them.
prompt-toolkit draws "> " as ">" and then moves the cursor, so a fresh prompt
is recognised by what starts one: bracketed paste switched on, then the ">".
"""

from __future__ import annotations

import time

import pexpect
import pytest

from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d, visible
from tests.support.server import Error, Reply

pytestmark = pytest.mark.timeout(30)


def test_prompt_and_toolbar_appear_a_reply_is_shown_and_ctrl_d_exits(srv, spawn_chatcli):
    # A real terminal answers "where is the cursor?" (CPR); prompt-toolkit draws
    # the bottom toolbar only once it knows, so answer as a terminal would.
    child = spawn_chatcli(env={"PROMPT_TOOLKIT_NO_CPR": "0"})

    def answer_cpr() -> None:
        child.expect_exact("\x1b[6n", timeout=TIMEOUT)
        child.send("\x1b[3;1R")

    answer_cpr()
    expect_prompt(child)
    child.expect(r"gpt-4o-mini │ temp default │ context ≈?[\d,]+/128k \(\d+%\) │ 0 tokens", timeout=TIMEOUT)  # the toolbar
    child.send("hello there\r")
    child.expect_exact("echo: hello there", timeout=TIMEOUT)
    answer_cpr()
    expect_prompt(child)
    # The toolbar now counts the turn's tokens.
    child.expect(r"gpt-4o-mini │ temp default │ context ≈?[\d,]+/128k \(\d+%\) │ [1-9][\d,]* tokens", timeout=TIMEOUT)
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["hello there"]
    quit_with_ctrl_d(child)


def test_system_flag_starts_the_repl_with_that_persona(srv, spawn_chatcli):
    child = spawn_chatcli("--system", "You are a terse SQL expert")
    banner = visible(expect_prompt(child))
    assert "system prompt: You are a terse SQL expert" in banner
    child.send("hi\r")
    child.expect_exact("echo: hi", timeout=TIMEOUT)
    expect_prompt(child)
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "You are a terse SQL expert"},
        {"role": "user", "content": "hi"},
    ]
    quit_with_ctrl_d(child)


def test_ctrl_c_at_the_prompt_never_quits(srv, spawn_chatcli):
    child = spawn_chatcli()
    expect_prompt(child)
    for keys in ("\x03", "\x03", "half a thought", "\x03"):  # twice at an empty prompt, then on a typed line
        child.send(keys)
        time.sleep(0.2)
    assert child.isalive()
    child.send("still here?\r")
    child.expect_exact("echo: still here?", timeout=TIMEOUT)
    expect_prompt(child)
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["still here?"]
    quit_with_ctrl_d(child)


def test_ctrl_c_interrupts_a_slow_reply_and_the_session_goes_on(srv, spawn_chatcli):
    full = "word " * 400
    srv.script(Reply(full, chunk_size=5, delay=0.02))  # about 8 s to stream in full
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("talk a lot\r")
    child.expect_exact("word word word word", timeout=TIMEOUT)
    child.send("\x03")  # Ctrl-C: the terminal turns it into SIGINT while the reply streams
    child.expect_exact("[interrupted", timeout=TIMEOUT)
    shown = visible(child.before + child.after + expect_prompt(child))
    assert "[interrupted (partial reply kept)]" in shown
    assert child.isalive()
    assert "Traceback" not in shown

    child.send("and now?\r")
    child.expect_exact("echo: and now?", timeout=TIMEOUT)
    expect_prompt(child)
    messages = srv.chat_requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "talk a lot"
    partial = messages[1]["content"]
    assert partial.startswith("word word word word") and len(partial) < len(full)

    child.send("/exit\r")
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.exitstatus == 0


def test_an_error_prints_one_sentence_and_the_repl_goes_on(srv, spawn_chatcli):
    srv.script(Error(401, "Incorrect API key provided."))
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("hello\r")
    child.expect_exact("rejected the API key (401)", timeout=TIMEOUT)
    shown = visible(expect_prompt(child))
    assert "Traceback" not in shown
    assert child.isalive()
    child.send("\r")  # the message is back at the prompt: Enter sends it again
    child.expect_exact("echo: hello", timeout=TIMEOUT)
    expect_prompt(child)
    assert [r.body["messages"] for r in srv.chat_requests] == [[{"role": "user", "content": "hello"}]] * 2
    quit_with_ctrl_d(child)


def test_markdown_is_rendered_and_model_text_is_never_markup(srv, spawn_chatcli):
    srv.script(
        Reply("# Heading\n\nSome **bold** text\n\n```python\nprint('hi')\n```\n"),
        Reply("[bold]not markup[/bold] and [red]neither[/]"),
    )
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("show markdown\r")
    shown = visible(expect_prompt(child))
    assert "Heading" in shown and "# Heading" not in shown
    assert "Some bold text" in shown and "**bold**" not in shown
    assert "print('hi')" in shown and "```" not in shown

    child.send("show brackets\r")
    shown = visible(expect_prompt(child))
    assert "[bold]not markup[/bold] and [red]neither[/]" in shown
    quit_with_ctrl_d(child)


@pytest.mark.parametrize("flags", [(), ("--plain",)], ids=["markdown", "plain"])
def test_control_sequences_in_a_reply_never_reach_the_terminal(srv, spawn_chatcli, flags):
    srv.script(Reply("safe \x1b]0;pwned\x07 text \x1b[2J end \x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ ok"))
    child = spawn_chatcli(*flags)
    expect_prompt(child)
    child.send("hostile\r")
    raw = expect_prompt(child)  # everything from the reply until the next prompt
    assert "\x1b]" not in raw  # no OSC at all: no title change, no hyperlink
    assert "pwned" not in raw and "evil.example" not in raw
    assert "\x1b[2J" not in raw
    assert "\x07" not in raw
    shown = visible(raw)
    assert "safe" in shown and "text" in shown and "end" in shown and "link ok" in shown
    quit_with_ctrl_d(child)


@pytest.mark.parametrize("how", ["NO_COLOR", "--plain", "render"])
def test_no_color_plain_and_render_plain_print_the_text_as_it_streams(srv, spawn_chatcli, how):
    srv.script(Reply("# Title\n\nSome **bold** and `code`.\n"))
    env = {"NO_COLOR": "1"} if how == "NO_COLOR" else {"CHATCLI_RENDER": "plain"} if how == "render" else {}
    child = spawn_chatcli(*(["--plain"] if how == "--plain" else []), "ask", env=env)
    child.expect(pexpect.EOF)
    raw = child.before
    assert "# Title" in raw and "**bold**" in raw and "`code`" in raw  # as written, not drawn
    assert "\x1b[" not in raw  # no colour, no styling, no spinner


def test_a_retry_is_said_in_the_repl_and_the_reply_follows(srv, spawn_chatcli):
    srv.script(Error(429, "slow down", headers={"retry-after-ms": "200"}), Reply("after the wait"))
    child = spawn_chatcli(env={"CHATCLI_MAX_RETRIES": "1"})
    expect_prompt(child)
    child.send("hello\r")
    shown = visible(expect_prompt(child))
    assert "rate limited, retrying in 0.2s (attempt 1/1)" in shown and "after the wait" in shown
    assert shown.index("retrying") < shown.index("after the wait")
    quit_with_ctrl_d(child)
