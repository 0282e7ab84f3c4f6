"""Durability end to end: `kill -9` in the middle of a streamed reply loses no turn.

The installed `chatcli` runs in a real pty (pexpect) against tests/support/server.py,
with its database at the default path under the isolated XDG_DATA_HOME. The
process is killed with SIGKILL while a reply streams; `chatcli --resume` (or
-c) must then show every earlier turn and put the unanswered message back at
the prompt, and the database must pass `PRAGMA integrity_check`.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pexpect
import pytest

from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d, visible
from tests.support.running import CHATCLI
from tests.support.server import Reply

pytestmark = pytest.mark.timeout(30)

SLOW = "word " * 2000  # 2000 chunks of 5 characters, 10 ms apart: about 20 s in full


def db_file(home: Path) -> Path:
    return home / "data" / "chatcli" / "chatcli.db"


def query(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def saved(path: Path) -> list[tuple[str, str]]:
    return [(role, content) for role, content in query(path, "SELECT role, content FROM messages ORDER BY id")]


def integrity(path: Path) -> str:
    ((result,),) = query(path, "PRAGMA integrity_check")
    return result


def kill_9(child: pexpect.spawn) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.signalstatus == signal.SIGKILL


@pytest.mark.parametrize("resume", [("--resume",), ("-c",), ("--resume", "1")], ids=["resume", "c", "resume-id"])
def test_sigkill_mid_reply_then_resume_shows_every_turn_and_resends_the_last_message(
    srv, spawn_chatcli, isolated_env, resume
):
    child = spawn_chatcli()
    expect_prompt(child)
    for text in ("first question", "second question"):
        child.send(text + "\r")
        child.expect_exact(f"echo: {text}", timeout=TIMEOUT)
        expect_prompt(child)

    srv.script(Reply(SLOW, chunk_size=5, delay=0.01))
    child.send("third question\r")
    child.expect_exact("word word word word", timeout=TIMEOUT)  # the reply is on screen, streaming
    kill_9(child)

    db = db_file(isolated_env)
    assert integrity(db) == "ok"
    assert db.stat().st_mode & 0o077 == 0  # only the user can read the conversation
    assert saved(db) == [
        ("user", "first question"),
        ("assistant", "echo: first question"),
        ("user", "second question"),
        ("assistant", "echo: second question"),
        ("user", "third question"),  # committed before the request: it survived the kill
    ]
    assert (isolated_env / "state" / "chatcli" / "history").exists()  # input history is written too

    child = spawn_chatcli(*resume)
    recap = visible(expect_prompt(child))
    # A turn a line or two; the last message has no reply and is offered again.
    for line in (
        "Session 1: first question · 3 turns",
        "› first question",
        "echo: first question",
        "› second question",
        "echo: second question",
        "› third question",
        "(no reply)",
    ):
        assert line in recap, f"{line!r} not in recap:\n{recap}"
    assert recap.index("› first question") < recap.index("› second question") < recap.index("› third question")
    assert "word word" not in recap  # nothing of the killed reply was saved
    assert "back at the prompt" in recap
    child.expect_exact("third question", timeout=TIMEOUT)  # drawn in the prompt's line
    requests_before = len(srv.chat_requests)

    child.send("\r")  # Enter sends the message that was put back
    child.expect_exact("echo: third question", timeout=TIMEOUT)
    expect_prompt(child)
    assert len(srv.chat_requests) == requests_before + 1
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "echo: first question"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "echo: second question"},
        {"role": "user", "content": "third question"},
    ]
    quit_with_ctrl_d(child)

    assert integrity(db) == "ok"
    assert saved(db)[4:] == [("user", "third question"), ("assistant", "echo: third question")]
    assert len(saved(db)) == 6  # the unanswered row was replaced, not doubled
    assert query(db, "SELECT COUNT(*) FROM sessions") == [(1,)]


def test_sigkill_during_a_one_shot_keeps_the_question(srv, chat_env, isolated_env):
    srv.script(Reply(SLOW, chunk_size=5, delay=0.01))
    proc = subprocess.Popen(
        [str(CHATCLI), "why is the sky blue?"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=chat_env,
    )
    try:
        shown = b""
        deadline = time.monotonic() + TIMEOUT
        while b"word word word" not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                shown += chunk
        assert b"word word word" in shown, (shown, proc.stderr.read() if proc.poll() is not None else "")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    db = db_file(isolated_env)
    assert integrity(db) == "ok"
    assert saved(db) == [("user", "why is the sky blue?")]
    assert query(db, "SELECT title FROM sessions") == [("why is the sky blue?",)]


def test_no_save_writes_nothing_under_home(srv, spawn_chatcli, isolated_env):
    child = spawn_chatcli("--no-save")
    expect_prompt(child)
    child.send("keep this secret\r")
    child.expect_exact("echo: keep this secret", timeout=TIMEOUT)
    expect_prompt(child)
    child.send("/sessions\r")
    child.expect_exact("History is not being saved", timeout=TIMEOUT)
    expect_prompt(child)
    quit_with_ctrl_d(child)

    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["keep this secret"]
    written = sorted(str(p.relative_to(isolated_env)) for p in isolated_env.rglob("*") if not p.is_dir())
    assert written == []
    assert list(Path.cwd().iterdir()) == []  # nor in the working directory


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["hangup", "term"])
def test_a_closed_terminal_or_sigterm_mid_reply_saves_the_partial_reply_and_exits(srv, spawn_chatcli, isolated_env, signum):
    child = spawn_chatcli()
    expect_prompt(child)
    srv.script(Reply(SLOW, chunk_size=5, delay=0.01))
    child.send("long question\r")
    child.expect_exact("word word word word", timeout=TIMEOUT)
    os.kill(child.pid, signum)
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.exitstatus == 128 + signum

    db = db_file(isolated_env)
    assert integrity(db) == "ok"
    rows = query(db, "SELECT role, content, status FROM messages ORDER BY id")
    assert rows[0] == ("user", "long question", None)
    role, content, status = rows[1]
    assert (role, status) == ("assistant", "interrupted")
    assert content.startswith("word word word word") and len(content) < len(SLOW)


def test_sigterm_at_the_prompt_exits_cleanly(spawn_chatcli):
    child = spawn_chatcli()
    expect_prompt(child)
    os.kill(child.pid, signal.SIGTERM)
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.exitstatus == 128 + signal.SIGTERM
    assert "Traceback" not in visible(child.before or ""), visible(child.before or "")


def test_sigterm_while_the_prompt_loads_the_history_ends_without_a_traceback(spawn_chatcli, tmp_path):
    """prompt-toolkit reads the input history in a task once the prompt is drawn. A SIGTERM
    raised inside that task was caught there and printed as "Loading history failed" with a
    traceback and "Press ENTER to continue". A long history makes that window wide."""
    history = Path(os.environ["XDG_STATE_HOME"]) / "chatcli" / "history"
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_text("".join(f"\n# 2026-01-01 00:00:00.000000\n+message {i} of a long history\n"
                               for i in range(150_000)))
    child = spawn_chatcli()
    expect_prompt(child)
    time.sleep(0.05)
    os.kill(child.pid, signal.SIGTERM)
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    shown = visible(child.before or "")
    assert child.exitstatus == 128 + signal.SIGTERM
    assert "Traceback" not in shown and "Press ENTER" not in shown, shown
