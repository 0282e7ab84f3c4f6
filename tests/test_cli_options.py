"""-o NAME VALUE and -f PATH: /set and /file from the command line, with their checks, for
people used to llm's -o and -f, or aichat's -f."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_USAGE
from tests.support.pty import TIMEOUT, ask, expect_prompt, quit_with_ctrl_d, visible


def test_options_are_sent_as_request_parameters(srv, run_chatcli):
    result = run_chatcli("-o", "top_p", "0.9", "-o", "seed", "42", "-o", "stop", '"###" END', "hi")

    assert result.returncode == 0, result.stderr
    body = srv.chat_requests[0].body
    assert (body["top_p"], body["seed"], body["stop"]) == (0.9, 42, ["###", "END"])
    assert result.stderr == ""  # one-shot output stays clean for pipes


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-o", "top_p", "7"], "chatcli: -o: top_p must be a number from 0 to 1, not '7'."),
        (["-o", "topp", "0.5"], "chatcli: -o: There is no parameter 'topp'. Did you mean top_p? /params lists them."),
        (["-o", "seed", "many"], "chatcli: -o: seed must be a whole number"),
        (["-f", "nosuch.txt"], "chatcli: -f: Could not read nosuch.txt (No such file or directory); nothing was attached."),
    ],
)
def test_a_bad_option_or_file_is_a_usage_error_and_nothing_is_sent(srv, run_chatcli, args, says):
    result = run_chatcli(*args, "hi")

    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1
    assert srv.chat_requests == []


def test_a_binary_file_is_refused(srv, run_chatcli, tmp_path: Path):
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02\xff")

    result = run_chatcli("-f", str(tmp_path / "blob.bin"), "hi")

    assert result.returncode == EXIT_USAGE
    assert "is not a text file (it is binary or not UTF-8)" in result.stderr
    assert srv.chat_requests == []


def test_files_go_with_the_question_and_piped_stdin(srv, run_chatcli):
    Path("main.py").write_text("print('hi')\n")
    Path("notes.md").write_text("```sh\nls\n```\n")

    result = run_chatcli("-f", "main.py", "-f", "notes.md", "what do these do?", input="and this log line\n")

    assert result.returncode == 0, result.stderr
    sent = srv.chat_requests[0].body["messages"][-1]["content"]
    assert sent.startswith("File main.py:\n```\nprint('hi')\n```\n\nFile notes.md:\n````\n```sh\nls\n```\n````\n\n")
    assert sent.index("what do these do?") < sent.index("and this log line")


def test_a_file_alone_is_a_message(srv, run_chatcli):
    Path("question.md").write_text("What is 2 + 2?\n")

    result = run_chatcli("-f", "question.md")  # stdin: an empty pipe

    assert result.returncode == 0, result.stderr
    assert srv.chat_requests[0].body["messages"][-1]["content"] == "File question.md:\n```\nWhat is 2 + 2?\n```"


def test_a_file_given_to_a_session_goes_with_its_first_message(srv, spawn_chatcli):
    Path("notes.md").write_text("the meeting is at noon\n")
    child = spawn_chatcli("-f", "notes.md")
    banner = visible(expect_prompt(child))
    child.send("when is the meeting?\r")
    child.expect_exact("echo: File notes.md:", timeout=TIMEOUT)
    expect_prompt(child)
    ask(child, "and after?")
    quit_with_ctrl_d(child)

    assert "Attached notes.md (" in banner and "it goes with your next message" in banner
    first, second = (r.body["messages"][-1]["content"] for r in srv.chat_requests)
    assert "the meeting is at noon" in first and first.endswith("when is the meeting?")
    assert second == "and after?"
