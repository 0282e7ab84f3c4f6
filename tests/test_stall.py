"""A reply that stops mid-stream shows it, and the stats line in every output mode.

A real llama-server sent SIGTERM stops generating but holds the connection open
for 30 s; the test server does the same with Reply(stall_after=N). After
turn.STALL_S without a token, mid-reply, a notice counts the seconds: in the
REPL's live region, after the text on a plain terminal, or on stderr in one-shot
mode, never in a pipe's stdout, and it is gone once tokens come again. The stats
line counts tokens per second over the time tokens were flowing.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
import time

import pexpect
import pytest

import chatcli.core.turn
from chatcli.config.settings import Config
from chatcli.core.turn import STALL_S
from chatcli.llm.client import ChatClient
from tests.support.keys import TEST_KEY
from tests.support.pty import PROMPT, TIMEOUT, expect_prompt, quit_with_ctrl_d
from tests.support.running import CHATCLI
from tests.support.screen import Terminal
from tests.support.server import Reply
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(40)

STATS = re.compile(r"first token (\d+\.\d\d)s · ([\d,]+) tokens in (\d+\.\d)s(?: · ([\d,]+) tokens/s)?(?: · stalled (\d+\.\d)s)?")
BEFORE, AFTER = "The first part came at once, ", "and the rest after a long wait."
# Past STALL_S, by enough to see the count go up once; the stall starts after the first part.
STALLED = Reply(BEFORE + AFTER, chunk_size=len(BEFORE), stall_after=1, stall_seconds=STALL_S + 1.4)


def stats(text: str) -> tuple[float, int, float, int, float]:
    found = STATS.search(text)
    assert found, text[-400:]
    first, tokens, total, rate, stalled = found.groups()
    return float(first), int(tokens.replace(",", "")), float(total), int((rate or "0").replace(",", "")), float(stalled or 0)


# --------------------------------------------------------------------------- #
# The stats line
# --------------------------------------------------------------------------- #


def test_plain_output_gets_the_stats_line_on_stderr_and_stdout_stays_the_reply(srv, run_chatcli):
    srv.script(Reply("some words to count " * 10, delay=0.002))
    result = run_chatcli("count", env={"CHATCLI_STATS": "true"})

    assert result.returncode == 0 and result.stdout == "some words to count " * 10 + "\n"  # the reply alone
    [line] = result.stderr.splitlines()
    assert line.startswith("chatcli: first token ")
    assert stats(line)[1] == 40  # the server's usage: a word a token


def test_the_plain_repl_shows_the_stats_line_too(srv, spawn_chatcli):
    srv.script(Reply("one reply"))
    child = spawn_chatcli("--plain", env={"CHATCLI_STATS": "1"})
    expect_prompt(child)
    child.send("one\r")
    assert stats(expect_prompt(child))[1] == 2
    quit_with_ctrl_d(child)


def test_a_stall_is_not_generation_time(srv, monkeypatch):
    monkeypatch.setattr(chatcli.core.turn, "STALL_S", 0.2)  # in this process only: a short stall will do
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    session = make_session(client=client, model="test-model")
    srv.script(Reply("word " * 40, chunk_size=5, delay=0.01, stall_after=20, stall_seconds=1.0))

    turn = session.send("go")

    assert 0.6 <= turn.stalled_s <= 0.95, turn.stalled_s  # the gap past the threshold, and only it
    from chatcli.ui.views import stats_line

    first, tokens, total, rate, stalled = stats(stats_line(session, turn))
    assert stalled == round(turn.stalled_s, 1)
    flowing = turn.total_s - turn.first_token_s - turn.stalled_s
    assert rate == round(tokens / flowing) and rate > 2 * tokens / (total - first)


# --------------------------------------------------------------------------- #
# The notice
# --------------------------------------------------------------------------- #


def test_the_repl_says_a_stall_live_and_the_scrollback_does_not_keep_it(srv, spawn_chatcli):
    srv.script(STALLED)
    child = spawn_chatcli(rows=30, cols=100, env={"CHATCLI_STATS": "1"})
    term = Terminal(100, 30)
    term.feed(expect_prompt(child) + child.after)
    child.send("go\r")
    child.expect(r"no tokens for 3s \(Ctrl-C stops the reply\)", timeout=TIMEOUT)
    child.expect(r"no tokens for 4s", timeout=TIMEOUT)  # counting up
    term.feed(child.before + child.after)
    assert AFTER not in child.before  # said while the rest had not come
    child.expect(PROMPT, timeout=TIMEOUT)
    term.feed(child.before + child.after)

    rows = term.rows()
    assert not any("no tokens" in row for row in rows), rows
    assert any(BEFORE + AFTER in row for row in rows), rows
    assert any("stalled 1." in row for row in rows), rows  # the stats line says the stall apart
    quit_with_ctrl_d(child)


def test_the_plain_repl_says_it_after_the_text_and_erases_it(srv, spawn_chatcli):
    srv.script(STALLED)
    child = spawn_chatcli("--plain", rows=30, cols=100)
    term = Terminal(100, 30)
    term.feed(expect_prompt(child) + child.after)
    child.send("go\r")
    child.expect_exact(f"{BEFORE}[no tokens for 3s]", timeout=TIMEOUT)
    term.feed(child.before + child.after)
    child.expect(PROMPT, timeout=TIMEOUT)
    term.feed(child.before + child.after)

    rows = term.rows()
    assert not any("no tokens" in row for row in rows), rows
    assert BEFORE + AFTER in rows, rows  # the reply's line as the model wrote it
    quit_with_ctrl_d(child)


def test_one_shot_says_it_on_a_terminal_stderr_and_the_pipe_gets_the_reply_alone(srv, chat_env):
    srv.script(STALLED)
    master, slave = pty.openpty()
    env = {**chat_env, "TERM": "xterm-256color", "COLUMNS": "100"}
    process = subprocess.Popen([str(CHATCLI), "go"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=slave, env=env)
    os.close(slave)
    said: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(master, said), daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=30)
    reader.join(timeout=5)
    os.close(master)
    raw = b"".join(said).decode()

    assert process.returncode == 0, raw
    assert stdout.decode() == BEFORE + AFTER + "\n"  # nothing of the notice in the pipe
    assert "chatcli: no tokens for 3s; the reply may have stalled (Ctrl-C stops it)" in raw
    assert "no tokens for 4s" in raw
    term = Terminal(100, 10)
    term.feed(raw.replace("\n", "\r\n") if "\r\n" not in raw else raw)
    assert not any(row.strip() for row in term.rows()), term.rows()  # erased: the terminal is as it was


def _read_all(fd: int, into: list[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the other end closed
            return
        if not data:
            return
        into.append(data)


def test_no_notice_without_a_stall(srv, spawn_chatcli):
    srv.script(Reply("quick " * 30, chunk_size=3, delay=0.01))
    child = spawn_chatcli("go")
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    assert "no tokens" not in child.before


def test_following_one_long_line_costs_linear_time():
    """The stall notice follows where the reply's last line ends. Keeping that line copied it on
    every delta: `--plain` on a terminal took 3.8 s for 1 MiB on one line and 206 s for 10 MiB."""
    from chatcli.ui.stall import StallNotice

    def cost(size: int) -> float:
        with open(os.devnull, "w") as out:
            notice = StallNotice(out, after_text=True)
            delta = "word " * 51 + "x"  # 256 characters, no newline
            start = time.process_time()
            for _ in range(size // len(delta)):
                notice.wrote(delta)
            return time.process_time() - start

    cost(1 << 16)  # warm up
    small, large = min(cost(1 << 18) for _ in range(3)), min(cost(1 << 21) for _ in range(3))
    # 8 times the text: linear is 8x the time, quadratic 64x; allow for a noisy machine
    assert large < max(small, 0.005) * 24, (small, large)
