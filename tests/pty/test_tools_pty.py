"""Tool calls in the REPL, in a real pty: each call is drawn as it happens, through the terminal's
gate, then the answer; Ctrl-C during a slow tool's reply round keeps the session going; /tools
lists the tools. (The approval prompt, ui/approval.py, is the builtins helper's: its pty test
comes with the merge.)"""

from __future__ import annotations

import pytest

from tests.support.profiles import write_config
from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d, visible
from tests.support.server import Reply

pytestmark = pytest.mark.timeout(40)


@pytest.mark.parametrize("plain", [False, True])
def test_each_call_is_shown_as_it_happens_then_the_answer(srv, spawn_chatcli, plain: bool) -> None:
    srv.script(Reply("", tool_calls=(("now", {"note": "x"}), ("no\x1b]0;pwned\x07w", {}), ("now", {}))),
               Reply("It is noon."))
    child = spawn_chatcli("--tools", "now", *(["--plain"] if plain else []))
    expect_prompt(child)
    child.send("what time is it?\r")
    child.expect_exact("It is noon.", timeout=TIMEOUT)
    expect_prompt(child)
    raw = child.logfile_read.getvalue()
    screen = visible(raw)
    # The first call's arguments do not match now's schema: an error for the model, shown as such.
    assert "⚙ now note=" in screen and "✗ now failed: The arguments do not match" in screen
    assert "✗ now failed: There is no tool named" in screen
    assert "⚙ now\r\n" in screen.replace("⚙ now\n", "⚙ now\r\n") and "✓ now " in screen
    assert "\x1b]0;pwned" not in raw and "\x07" not in raw  # the model's call name never reaches it as a control sequence
    child.send("/tools\r")
    expect_prompt(child)
    assert "now" in visible(child.logfile_read.getvalue()).split("/tools", 1)[1]
    quit_with_ctrl_d(child)


@pytest.mark.parametrize(("key", "runs"), [("y", True), ("n", False)])
def test_shell_asks_in_the_repl_showing_the_exact_command_and_runs_only_on_yes(srv, spawn_chatcli, tmp_path, key, runs):
    made = tmp_path / "made.txt"
    command = f"echo ran | tee {made}"
    srv.script(Reply("", tool_calls=(("shell", {"command": command}),)), Reply("Done."))
    child = spawn_chatcli("--tools", "shell", cols=200)
    expect_prompt(child)
    child.send("make the file\r")
    child.expect_exact("[a]lways this exact command for the session?", timeout=TIMEOUT)
    assert command in visible(child.before)  # the exact command, before the question
    assert not made.exists()  # nothing runs before the answer
    child.send(key)
    child.expect_exact("Done.", timeout=TIMEOUT)
    expect_prompt(child)
    assert made.exists() is runs
    [result] = srv.tool_messages()
    assert ("ran" if runs else "denied") in result["content"], result["content"]
    quit_with_ctrl_d(child)


def test_an_mcp_server_that_cannot_start_is_said_once_in_the_repl_and_the_chat_goes_on(srv, spawn_chatcli):
    write_config('[mcp.gone]\ncommand = "no-such-mcp-server-anywhere"\n')
    child = spawn_chatcli("--tools", "gone.thing")
    expect_prompt(child)
    child.send("hello\r")
    child.expect_exact("echo: hello", timeout=TIMEOUT)
    expect_prompt(child)
    child.send("again\r")
    child.expect_exact("echo: again", timeout=TIMEOUT)
    expect_prompt(child)
    screen = visible(child.logfile_read.getvalue())
    assert screen.count("The MCP server 'gone' could not start") == 1, screen
    quit_with_ctrl_d(child)
