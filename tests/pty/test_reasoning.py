"""Reasoning streamed apart from the answer, the wait spinner, and the stats line.

Models such as DeepSeek's, or vLLM with a reasoning parser, stream
`reasoning_content` deltas before the answer. The test server sends them the
same way; what reaches the terminal is read from a real pty.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pexpect

from chatcli.config.settings import Config
from chatcli.core.journal import Journal
from chatcli.core.resume import load_session
from chatcli.llm.client import ChatClient
from tests.support.keys import TEST_KEY
from tests.support.pty import expect_prompt, quit_with_ctrl_d
from tests.support.server import Reply
from tests.support.sessions import make_session

THINKING = "Let me think.\nSix times seven is forty-two."
ANSWER = "The answer is **42**."


def screen_text(raw: str) -> str:
    """The screen a reader is left with (the pty is 120x40, and these replies fit it)."""
    import pyte

    screen = pyte.Screen(120, 40)
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n") if "\r\n" not in raw else raw)
    return "\n".join(line.rstrip() for line in screen.display).rstrip("\n")


def drawn(raw: str) -> str:
    """Everything drawn, frames of the live region included, with the escapes dropped."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)


def ask_in_a_pty(spawn_chatcli, env=None) -> str:
    child = spawn_chatcli("what is six times seven", env=env or {})
    child.expect(pexpect.EOF)
    return child.before


def test_reasoning_is_shown_dimmed_and_apart_before_the_answer(srv, spawn_chatcli):
    srv.script(Reply(ANSWER, reasoning=THINKING))
    raw = ask_in_a_pty(spawn_chatcli)
    shown = screen_text(raw)
    lines = [line.rstrip() for line in shown.splitlines()]
    first, second = lines.index("│ Let me think."), lines.index("│ Six times seven is forty-two.")
    answer = next(i for i, line in enumerate(lines) if "The answer is 42." in line)
    assert first < second < answer and lines[second + 1] == ""  # apart: a blank line before the answer
    assert re.search(r"\x1b\[[0-9;]*2[;m][^\n]*Let me think\.", raw)  # dim (SGR 2)
    assert shown.count("Let me think.") == 1  # printed to scrollback once


def test_hidden_reasoning_shows_a_thinking_spinner_instead(srv, spawn_chatcli):
    srv.script(Reply(ANSWER, reasoning="pondering " * 30, chunk_size=2, delay=0.02))
    raw = ask_in_a_pty(spawn_chatcli, env={"CHATCLI_SHOW_REASONING": "false"})
    assert "pondering" not in raw
    assert re.search(r"thinking… \d+\.\ds", drawn(raw))
    assert "The answer is 42." in screen_text(raw)


def test_a_pipe_gets_the_answer_alone(srv, run_chatcli):
    srv.script(Reply(ANSWER, reasoning=THINKING))
    result = run_chatcli("what is six times seven")
    assert result.returncode == 0 and result.stdout == ANSWER + "\n"


def test_reasoning_is_stored_with_the_reply_and_never_sent_back(srv, tmp_path):
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    journal = Journal.open(tmp_path / "chatcli.db")
    session = make_session(client=client, model="test-model", journal=journal)
    srv.script(Reply(ANSWER, reasoning=THINKING))
    turn = session.send("what is six times seven")
    assert (turn.reply, turn.reasoning) == (ANSWER, THINKING)

    session.send("and eight times nine")
    sent = srv.chat_requests[-1].body["messages"]
    assert sent[1] == {"role": "assistant", "content": ANSWER}
    assert "forty-two" not in str(sent)

    with sqlite3.connect(tmp_path / "chatcli.db") as db:
        assert db.execute("SELECT reasoning FROM messages WHERE role = 'assistant' ORDER BY id").fetchall() == [
            (THINKING,), (None,)
        ]
    resumed = load_session(journal, session.id, client=client)
    assert resumed.turns[0].reasoning == THINKING and resumed.messages("x") == session.messages("x")


def test_the_wait_spinner_counts_the_seconds(srv, spawn_chatcli):
    srv.script(Reply("late but here", first_delay=0.6))
    raw = ask_in_a_pty(spawn_chatcli)
    assert re.search(r"waiting for the reply… 0\.[3-9]s", drawn(raw))
    assert "late but here" in screen_text(raw) and "waiting" not in screen_text(raw)  # the spinner is gone at the end


def test_the_stats_line_gives_first_token_tokens_and_rate(srv, spawn_chatcli):
    srv.script(Reply("some words to count " * 20, first_delay=0.3, delay=0.002))
    shown = screen_text(ask_in_a_pty(spawn_chatcli, env={"CHATCLI_STATS": "1"}))
    found = re.search(r"first token (\d+\.\d\d)s · ([\d,]+) tokens in (\d+\.\d)s · ([\d,]+) tokens/s", shown)
    assert found, shown[-300:]
    assert float(found[1]) >= 0.3
    # The server's own usage (tests/support/server.py counts a word a token): 80 words, exact, so no ≈.
    assert "≈" not in found[0] and int(found[2].replace(",", "")) == 80


def test_without_stats_there_is_no_stats_line(srv, spawn_chatcli):
    srv.script(Reply("plain reply"))
    assert "first token" not in screen_text(ask_in_a_pty(spawn_chatcli))


def test_the_migration_adds_the_reasoning_column_to_an_existing_database(tmp_path):
    from chatcli.store.db import Store
    from chatcli.store.migrations import MIGRATIONS

    Store.open(tmp_path / "old.db", migrations=MIGRATIONS[:6]).close()
    store = Store.open(Path(tmp_path / "old.db"))
    columns = [row[1] for row in store.db.execute("PRAGMA table_info(messages)")]
    assert "reasoning" in columns
    store.close()


def test_reasoning_command_hides_and_shows_it_in_the_repl(srv, spawn_chatcli):

    srv.script(Reply("first answer", reasoning="first thoughts"), Reply("second answer", reasoning="second thoughts"))
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("one\r")
    assert "first thoughts" in expect_prompt(child)
    child.send("/reasoning off\r")
    assert "Reasoning is hidden" in expect_prompt(child)
    child.send("two\r")
    out = expect_prompt(child)
    assert "second answer" in out and "second thoughts" not in out
    child.send("/reasoning sideways\r")
    assert "takes on or off" in expect_prompt(child)
    quit_with_ctrl_d(child)


def test_the_stats_line_follows_each_reply_in_the_repl_too(srv, spawn_chatcli):

    srv.script(Reply("one reply"), Reply("another reply", usage=False))
    child = spawn_chatcli(env={"CHATCLI_STATS": "1"})
    expect_prompt(child)
    child.send("one\r")
    assert re.search(r"first token \d+\.\d\ds · [\d,]+ tokens in", drawn(expect_prompt(child)))
    child.send("two\r")
    assert re.search(r"first token \d+\.\d\ds · ≈[\d,]+ tokens in", drawn(expect_prompt(child)))  # no usage: ≈
    quit_with_ctrl_d(child)


def test_a_reasoning_models_first_token_is_its_first_thought(srv, tmp_path):
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    session = make_session(client=client, model="test-model")
    srv.script(Reply(ANSWER, reasoning="thinking " * 20, chunk_size=4, delay=0.01))
    turn = session.send("what is six times seven")
    # 180 characters of reasoning in 4-character chunks, 10 ms apart, come before the first answer token.
    assert turn.first_token_s is not None and turn.first_token_s < 0.3 < turn.total_s
