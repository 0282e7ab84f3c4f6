"""Storage that recovers (issue 14): a full disk is named as such, and the turns it held back
are saved once there is room; a lock held past the busy timeout is retried in the background,
not the turn dropped; damage is named as damage, with no session left without its message;
`chatcli sessions check` finds damage and recovers what the file holds into a new one; and a
message refused before it is sent is not stored.

The parts are real: a small tmpfs filled to its last page (mounting one needs root; without it,
SQLite's max_page_count caps the file instead, which fails a write with the same SQLITE_FULL),
lock holders in other processes, and bytes overwritten inside the database file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

import chatcli.store.backlog
import chatcli.store.db
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.journal import Journal
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, ERROR
from chatcli.llm.client import ChatClient
from chatcli.store.db import Store, StoredMessage
from tests.support.keys import TEST_KEY
from tests.support.server import Reply
from tests.support.sessions import make_session
from tests.support.store import lock_held
from tests.support.tokens import tokenizer

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("byte_encoding")]  # one token a byte


def chat_session(srv, journal: Journal, **kw) -> Session:
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    return make_session(client=client, model=kw.pop("model", "gpt-4o-mini"), journal=journal, **kw)


def query(db: Path, sql: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, args).fetchall()


def saved(db: Path) -> list[str]:
    """The messages' texts, in order; a long one as its start and length (pytest's diff of long
    strings would take minutes)."""
    return [brief(content) for (content,) in query(db, "SELECT content FROM messages ORDER BY id")]


def brief(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:30]}…({len(text)} characters)"


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def said_next(journal: Journal, seconds: float = 10) -> str:
    """The next sentence the journal has to say, waited for (what is held back is retried in the background)."""
    said: list[str | None] = []
    wait_for(lambda: said.append(journal.take_warning()) or said[-1] is not None, "anything said", seconds)
    return said[-1]


def one_sentence(text: str) -> None:
    assert "\n" not in text and text.endswith("."), text
    assert not re.search(r"[.!?]\s+\S", text), f"more than one sentence: {text!r}"


@pytest.fixture
def quick(monkeypatch):
    """Seams for speed: the busy timeout (5 s) becomes 200 ms and the retry interval 50 ms.
    The locks and the full disk stay real."""
    monkeypatch.setattr(chatcli.store.db, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(chatcli.store.backlog, "RETRY_S", 0.05)


# --------------------------------------------------------------------------- #
# A full disk
# --------------------------------------------------------------------------- #


class Tmpfs:
    """A filesystem of its own, 1 MiB, filled with a ballast file until writing fails with ENOSPC."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast"

    def fill(self, journal: Journal | None = None) -> None:
        fd = os.open(self.ballast, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
            with pytest.raises(OSError) as full:
                os.write(fd, b"\0")
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self, journal: Journal | None = None) -> None:
        self.ballast.unlink()


class PageCap:
    """Without root to mount a tmpfs: SQLite's own cap on the file's pages, set on chatcli's
    connection to the pages it has, fails the next write that needs one with SQLITE_FULL."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _cap(self, journal: Journal, pages: int | None) -> None:
        def cap(store: Store) -> None:  # on the journal's connection, in turn with its retry thread
            store.db.execute(f"PRAGMA max_page_count = {pages or store.db.execute('PRAGMA page_count').fetchone()[0]}")

        journal.backlog.read(cap)

    def fill(self, journal: Journal) -> None:
        self._cap(journal, None)

    def free(self, journal: Journal) -> None:
        self._cap(journal, 1 << 30)


@contextlib.contextmanager
def mounted_tmpfs(root: Path):
    root.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(root)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here (root is needed): {done.stderr.strip()}")
    try:
        yield Tmpfs(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "small") as disk:
        yield disk


@pytest.fixture(params=["tmpfs", "page-cap"])
def disk(request, tmp_path):
    if request.param == "page-cap":
        (tmp_path / "capped").mkdir()
        yield PageCap(tmp_path / "capped")
        return
    with mounted_tmpfs(tmp_path / "small") as small:
        yield small


def question(n: int) -> str:
    return f"question {n} " + "x" * 6000  # more than a page: it needs room the full disk does not have


@pytest.mark.usefixtures("byte_encoding")
def test_a_full_disk_is_named_and_the_turns_it_held_back_are_saved_once_there_is_room(srv, disk, quick):
    db = disk.root / "chatcli.db"
    journal = Journal.open(db)
    session = chat_session(srv, journal, model="test-model", tokenizer=tokenizer(window=100_000))
    srv.script(*(Reply(f"answer {n}") for n in range(1, 5)))
    try:
        assert session.send(question(1)).status == COMPLETE
        disk.fill(journal)
        for n in (2, 3):
            assert session.send(question(n)).reply == f"answer {n}"  # the chat goes on
        warning = journal.take_warning()
        assert warning.startswith(f"History is not being saved for now: the disk that holds {db} is full; "
                                  "free some space on it"), warning
        one_sentence(warning)
        assert saved(db) == [brief(question(1)), "answer 1"]

        disk.free(journal)
        said = said_next(journal)
        assert said == "History is being saved again, and the turns held back are saved."
        assert len(saved(db)) == 6
        assert session.send(question(4)).status == COMPLETE
        assert saved(db) == [text for n in range(1, 5) for text in (brief(question(n)), f"answer {n}")]
        assert query(db, "SELECT COUNT(*) FROM sessions") == [(1,)]
        # What each reply cost was held back with it, and still names the reply it paid for.
        replies = [row for (row,) in query(db, "SELECT id FROM messages WHERE role = 'assistant' ORDER BY id")]
        assert [row for (row,) in query(db, "SELECT message_id FROM usage_ledger ORDER BY id")] == replies
        assert journal.take_warning() is None
    finally:
        journal.settle()
        journal.store.close()


def test_a_one_shot_ask_on_a_full_disk_says_the_disk_is_full_not_that_there_was_an_io_error(srv, run_chatcli, tmpfs):
    db = tmpfs.root / "chatcli.db"
    assert run_chatcli("--db", str(db), "first question").returncode == 0
    tmpfs.fill()
    result = run_chatcli("--db", str(db), "second question")
    assert (result.returncode, result.stdout) == (0, "echo: second question\n")
    [line] = result.stderr.splitlines()
    assert f"the disk that holds {db} is full; free some space on it" in line, line
    assert "I/O" not in line
    tmpfs.free()
    assert run_chatcli("--db", str(db), "third question").returncode == 0
    assert saved(db) == ["first question", "echo: first question", "third question", "echo: third question"]


# --------------------------------------------------------------------------- #
# Another program's lock
# --------------------------------------------------------------------------- #


def test_a_turn_made_while_another_program_holds_the_lock_is_saved_once_it_lets_go(srv, tmp_path, quick):
    db = tmp_path / "chatcli.db"
    journal = Journal.open(db)
    session = chat_session(srv, journal)
    srv.script(Reply("answer 1"), Reply("answer 2"), Reply("answer 3"))
    try:
        session.send("before the lock")
        with lock_held(db) as release:
            turn = session.send("while it is locked")
            assert turn.reply == "answer 2"
            warning = journal.take_warning()
            assert warning == (f"History is not being saved for now: {db} stayed locked by another program for "
                               "more than 0.2s; the turns held back are saved once it is free.")
            # What is saved is still there to list, not "no sessions".
            listed = REGISTRY.dispatch(session, "/sessions")
            assert not listed.error, listed.text
            assert [row[1] for row in listed.rows] == ["before the lock"]
            release()
            assert said_next(journal) == "History is being saved again, and the turns held back are saved."
        assert len(saved(db)) == 4
        session.send("after it")
        assert saved(db) == ["before the lock", "answer 1", "while it is locked", "answer 2", "after it", "answer 3"]
    finally:
        journal.store.close()


def test_sessions_that_cannot_be_read_are_said_to_be_unreadable_not_missing(srv, tmp_path, quick):
    db = tmp_path / "chatcli.db"
    Store.open(db).close()
    with lock_held(db, "all") as release:  # held from before chatcli starts: it cannot even read
        journal = Journal.open(db)
        warning = journal.take_warning()
        assert warning == (f"History is not being saved for now: {db} stayed locked by another program for "
                           "more than 0.2s; the turns held back are saved once it is free.")
        session = chat_session(srv, journal)
        srv.script(Reply("answer"))
        assert session.send("a question").reply == "answer"
        listed = REGISTRY.dispatch(session, "/sessions")
        assert listed.error
        assert listed.text == (f"The saved sessions could not be read: {db} stayed locked by another program "
                               "for more than 0.2s.")
        release()
        assert said_next(journal) == "History is being saved again, and the turns held back are saved."
    try:
        assert saved(db) == ["a question", "answer"]
        listed = REGISTRY.dispatch(session, "/sessions")  # once it is free, there they are
        assert [row[1] for row in listed.rows] == ["a question"]
    finally:
        journal.store.close()


# --------------------------------------------------------------------------- #
# Damage
# --------------------------------------------------------------------------- #


def build(db: Path, sessions: int = 3, messages: int = 40) -> list[str]:
    """A database with some sessions, closed (so all of it is in the main file); their messages."""
    store = Store.open(db)
    contents = []
    for s in range(sessions):
        sid = store.create_session(model="m", system=None, params={}, title=f"session {s}")
        for m in range(messages):
            contents.append(f"message {s}.{m} " + "words " * 60)
            store.add_message(sid, StoredMessage(0, "user" if m % 2 == 0 else "assistant", contents[-1], time.time()))
    store.close()
    return contents


def overwrite_page(db: Path, table: str) -> None:
    """Garbage over the page at the root of a table's b-tree: every write to it now meets the damage."""
    [(page,)] = query(db, "SELECT rootpage FROM sqlite_master WHERE name = ?", table)
    with open(db, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(random.Random(page).randbytes(4096))


def overwrite_middle(db: Path) -> bytes:
    """32 KB of garbage in the middle of the file; the damaged file's bytes."""
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(random.Random(14).randbytes(8 * 4096))
    return db.read_bytes()


# Where the damage is decides how SQLite fails: "malformed", "vtable constructor failed", or a
# transaction it rolled back itself ("cannot rollback - no transaction is active" came of that).
@pytest.mark.parametrize("table", ["messages", "messages_fts_data", "messages_fts_idx"])
def test_a_damaged_database_is_named_damaged_and_no_session_is_left_without_its_message(srv, tmp_path, table):
    db = tmp_path / "chatcli.db"
    build(db)
    overwrite_page(db, table)
    journal = Journal.open(db)
    session = chat_session(srv, journal)
    srv.script(Reply("answer"), Reply("another"))
    assert session.send("hello").reply == "answer"  # the chat goes on
    warning = journal.take_warning()
    assert warning == (f"History is not being saved: the history database {db} is damaged; "
                       "run `chatcli sessions check` to recover what it holds.")
    assert session.send("again").reply == "another"
    assert journal.take_warning() is None
    assert query(db, "SELECT title FROM sessions ORDER BY id") == [("session 0",), ("session 1",), ("session 2",)]


# --------------------------------------------------------------------------- #
# chatcli sessions check
# --------------------------------------------------------------------------- #


def test_check_says_a_whole_database_is_whole(run_chatcli, tmp_path):
    db = tmp_path / "chatcli.db"
    build(db, sessions=2, messages=3)
    result = run_chatcli("sessions", "check", "--db", str(db))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{db} is whole: 2 sessions, 6 messages.\n", "")
    one = tmp_path / "one.db"
    build(one, sessions=1, messages=1)
    result = run_chatcli("sessions", "check", "--db", str(one))
    assert result.stdout == f"{one} is whole: 1 session, 1 message.\n"


def test_check_does_not_take_another_programs_lock_for_damage(run_chatcli, tmp_path, quick):
    db = tmp_path / "chatcli.db"
    build(db, sessions=1, messages=2)
    with lock_held(db, "all"):
        result = run_chatcli("sessions", "check", "--recover", "--db", str(db))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"chatcli: Cannot check the history database: {db} stayed locked by another program "
                             "for more than 0.2s.\n")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("chatcli.db")] == ["chatcli.db"]  # none recovered


def test_check_in_a_script_names_the_damage_and_how_to_recover_and_changes_nothing(run_chatcli, tmp_path):
    db = tmp_path / "chatcli.db"
    build(db)
    damaged = overwrite_middle(db)
    result = run_chatcli("sessions", "check", "--db", str(db))
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"chatcli: The history database {db} is damaged (")
    assert line.endswith("run `chatcli sessions check --recover` to recover what it holds into a new file, "
                         "keeping the damaged one beside it.")
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("chatcli.db")} <= \
        {"chatcli.db", "chatcli.db-shm", "chatcli.db-wal"}  # no new file
    assert db.read_bytes() == damaged


@pytest.mark.parametrize("programs", ["as found", "no sqlite3 program"])
def test_check_recover_puts_what_could_be_read_in_a_new_file_and_keeps_the_damaged_one(
        srv, run_chatcli, tmp_path, monkeypatch, programs):
    if programs == "no sqlite3 program":  # the route from Python alone
        monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    db = tmp_path / "chatcli.db"
    contents = [brief(text) for text in build(db)]
    damaged = overwrite_middle(db)
    assert run_chatcli("sessions", "list", "--db", str(db)).returncode == 1  # damaged: it says so

    result = run_chatcli("sessions", "check", "--recover", "--db", str(db))
    assert result.returncode == 0, result.stderr
    said = re.fullmatch(r"Recovered 3 sessions and (\d+) messages into (.+) \((.+)\); the damaged file is kept as "
                        r"(.+)\.\n", result.stdout)
    assert said, result.stdout
    count, into, how, kept = int(said[1]), Path(said[2]), said[3], Path(said[4])
    assert into == db and kept.parent == tmp_path and kept.name.startswith("chatcli.db.damaged-")
    if programs == "no sqlite3 program":
        assert how == "reading row by row"
    assert kept.read_bytes() == damaged  # the damaged file, kept as it was
    recovered = saved(db)
    assert 0 < count == len(recovered) <= len(contents)
    assert set(recovered) <= set(contents) and recovered == sorted(recovered, key=contents.index)

    again = run_chatcli("sessions", "check", "--db", str(db))
    assert again.stdout == f"{db} is whole: 3 sessions, {count} messages.\n"
    listed = run_chatcli("sessions", "list", "--db", str(db))
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()[1:]] == ["session 2", "session 1", "session 0"]
    found = run_chatcli("sessions", "search", "--db", str(db), recovered[-1].split()[1])
    assert recovered[-1].split()[1] in found.stdout  # the search index was built anew
    assert run_chatcli("--db", str(db), "a new question").returncode == 0  # and chatcli goes on writing to it
    assert saved(db)[-2:] == ["a new question", "echo: a new question"]


def test_check_on_a_terminal_asks_before_recovering(spawn_chatcli, tmp_path):
    import pexpect

    db = tmp_path / "chatcli.db"
    build(db)
    damaged = overwrite_middle(db)
    child = spawn_chatcli("sessions", "check", "--db", str(db))
    child.expect(r"is damaged \(.*\)\.")
    child.expect_exact("Recover what can be read into a new file, keeping the damaged one beside it? [y/N] ")
    child.sendline("n")
    child.expect_exact("Nothing was changed.")
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 1 and db.read_bytes() == damaged

    child = spawn_chatcli("sessions", "check", "--db", str(db))
    child.expect_exact("[y/N] ")
    child.sendline("y")
    child.expect(r"Recovered 3 sessions and \d+ messages")
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0
    assert [p for p in tmp_path.iterdir() if p.name.startswith("chatcli.db.damaged-") and p.read_bytes() == damaged]


# --------------------------------------------------------------------------- #
# A refused message
# --------------------------------------------------------------------------- #


@pytest.mark.usefixtures("byte_encoding")
def test_a_message_refused_as_too_big_is_not_stored(srv, tmp_path):
    db = tmp_path / "chatcli.db"
    journal = Journal.open(db)
    session = chat_session(srv, journal, model="test-model", tokenizer=tokenizer(window=400, output=60))
    try:
        for _ in range(3):
            turn = session.send("y" * 200_000)
            assert turn.status == ERROR and "400-token window" in turn.error.message
        assert srv.chat_requests == []
        assert session.turns[-1].user == "y" * 200_000  # kept for the prompt to offer again
        files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("chatcli.db"))
        assert b"y" * 1000 not in files and len(files) < 200_000
        assert query(db, "SELECT COUNT(*) FROM sessions") == [(0,)]

        assert session.send("a short question").status == COMPLETE
        assert saved(db) == ["a short question", "echo: a short question"]
        assert query(db, "SELECT title FROM sessions") == [("a short question",)]
    finally:
        journal.store.close()
