"""The approval prompt in a real pty: one key answers, Ctrl-C is a no (not a traceback), and
[e]dit edits the command on a prompt line. The REPL's own wiring is tested after the loop joins.
"""

from __future__ import annotations

import io
import sys

import pexpect
import pytest

from tests.support.pty import visible

# A small program that asks once and prints the answer, as the REPL's approver will.
ASK = """
import sys
from chatcli.base.events import ToolCall
from chatcli.ui.approval import ask_approval
command = sys.argv[1]
answer = ask_approval(ToolCall("call_1", "shell", "{}"), "shell", {"command": command}, shows=command, editable=command)
print("ANSWER", answer.answer, answer.arguments)
"""


def ask_in_pty(command: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-c", ASK, command], env={"TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1",
                                                                   "PATH": "/usr/bin:/bin"},
                          dimensions=(24, 100), encoding="utf-8", codec_errors="replace", timeout=15)
    child.logfile_read = io.StringIO()
    child.expect_exact("for the session?")
    return child


def answer(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return visible(child.before).strip().splitlines()[-1]


@pytest.mark.parametrize("key, said", [("y", "ANSWER yes None"), ("n", "ANSWER no None"), ("a", "ANSWER always None"),
                                       ("\x03", "ANSWER no None")])
def test_one_key_answers_in_a_terminal(key: str, said: str) -> None:
    child = ask_in_pty("ls -l")
    child.send(key)
    assert answer(child) == said
    assert "Traceback" not in child.logfile_read.getvalue()


def test_edit_then_yes_runs_the_edited_command() -> None:
    child = ask_in_pty("rm -rf build")
    child.send("e")
    child.expect_exact("command:")
    child.send("\x15ls build\r")  # Ctrl-U clears the line
    child.expect_exact("ls build")
    child.expect_exact("for the session?")
    child.send("y")
    assert answer(child) == "ANSWER yes {'command': 'ls build'}"


def test_the_command_is_shown_as_it_is() -> None:
    child = ask_in_pty("echo safe\rrm -rf ~")
    child.send("n")
    screen = visible(child.logfile_read.getvalue())
    assert "echo safe<U+000D>rm -rf ~" in screen
    assert answer(child) == "ANSWER no None"
