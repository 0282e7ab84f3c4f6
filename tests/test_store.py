"""The SQLite store, in-process and with real processes: settings, migrations,
concurrency, search, deletion, and what the Journal does when the disk fails.

Each test gets its own database under tmp_path; raw sqlite3 connections play
"another program" (an old chatcli, a second writer, a lock holder).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import chatcli.store.db
from chatcli.config.settings import Config
from chatcli.core.journal import Journal
from chatcli.core.resume import load_session
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE
from chatcli.llm.client import ChatClient
from chatcli.store.db import Store, StoredMessage, StoreError
from chatcli.store.migrations import MIGRATIONS
from tests.support.keys import TEST_KEY
from tests.support.server import Reply
from tests.support.sessions import make_session
from tests.support.store import read_only

pytestmark = pytest.mark.timeout(30)

DAY = 86400


def message(role: str, content: str, **extra) -> StoredMessage:
    return StoredMessage(id=0, role=role, content=content, created_at=time.time(), **extra)


def raw(path: Path) -> sqlite3.Connection:
    """Another program's connection to the same file."""
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def pragma(db: sqlite3.Connection, name: str):
    return db.execute(f"PRAGMA {name}").fetchone()[0]


def assert_healthy(path: Path) -> None:
    """integrity_check is ok, and the full-text index agrees with the messages."""
    db = raw(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # raises sqlite3.DatabaseError if the FTS index and its content table disagree
        db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    finally:
        db.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chatcli.db"


@pytest.fixture
def store(db_path: Path):
    opened = Store.open(db_path)
    yield opened
    opened.close()


# --------------------------------------------------------------------------- #
# A new database
# --------------------------------------------------------------------------- #


def test_a_new_database_is_private_durable_and_at_the_current_schema(db_path):
    old = os.umask(0)  # with no umask to help, 0600 must come from chatcli itself
    try:
        store = Store.open(db_path)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
        sid = store.create_session(model="gpt-4o-mini", system=None, params={})
        store.add_message(sid, message("user", "a private thought"))
        # While it is open, the -wal and -shm files hold the same words: they must be private too.
        files = sorted(p.name for p in db_path.parent.iterdir())
        assert files == ["chatcli.db", "chatcli.db-shm", "chatcli.db-wal"]
        for name in files:
            assert stat.S_IMODE((db_path.parent / name).stat().st_mode) == 0o600, name

        db = store.db
        assert pragma(db, "journal_mode") == "wal"
        assert pragma(db, "synchronous") == 2  # FULL
        assert pragma(db, "foreign_keys") == 1
        assert pragma(db, "busy_timeout") > 0
        assert pragma(db, "user_version") == len(MIGRATIONS)
    finally:
        store.close()
    # What is stored in the file itself, as another program sees it.
    other = raw(db_path)
    try:
        assert pragma(other, "journal_mode") == "wal"
        assert pragma(other, "user_version") == len(MIGRATIONS)
    finally:
        other.close()


def test_reopening_a_current_database_changes_nothing(db_path):
    store = Store.open(db_path)
    sid = store.create_session(model="m", system="s", params={"temperature": 0.5}, title="kept")
    store.add_message(sid, message("user", "hello"))
    store.close()
    store = Store.open(db_path)
    try:
        assert [(i.id, i.title, i.model, i.system, i.params, i.turns) for i in store.list_sessions()] == [
            (sid, "kept", "m", "s", {"temperature": 0.5}, 1)
        ]
        assert pragma(store.db, "user_version") == len(MIGRATIONS)
    finally:
        store.close()


# --------------------------------------------------------------------------- #
# Migrations
# --------------------------------------------------------------------------- #


def test_a_database_from_the_first_schema_version_migrates_and_keeps_everything(db_path):
    Store.open(db_path, migrations=MIGRATIONS[:1]).close()
    old = raw(db_path)
    assert pragma(old, "user_version") == 1
    tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "messages_fts" not in tables and "session_events" not in tables  # really the old schema
    # What a first-version chatcli wrote, with the SQL of that schema (_m1_initial).
    old.execute("BEGIN")
    old.execute(
        "INSERT INTO sessions (id, title, created_at, updated_at, model, system, params) "
        "VALUES (7, 'Lighthouses', 1700000000.0, 1700000100.0, 'gpt-old', 'Be brief.', '{\"temperature\": 0.7}')"
    )
    old.executemany(
        "INSERT INTO messages (session_id, role, content, status, finish_reason, model, params, "
        "prompt_tokens, completion_tokens, total_tokens, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (7, "user", "How do lighthouse lenses rotate?", None, None, None, None, None, None, None, None, 1700000001.0),
            (7, "assistant", "They float on a bath of mercury.", "complete", "stop", "gpt-old",
             '{"temperature": 0.7}', 12, 7, 19, None, 1700000002.0),
            (7, "user", "And the clockwork?", None, None, None, None, None, None, None, None, 1700000003.0),
            (7, "assistant", "A falling weight dri", "error", None, "gpt-old", None, None, None, None,
             "the connection broke off", 1700000004.0),
        ],
    )
    old.execute("COMMIT")
    old.close()

    store = Store.open(db_path)
    try:
        assert pragma(store.db, "user_version") == len(MIGRATIONS)
        [info] = store.list_sessions()
        assert (info.id, info.title, info.model, info.system, info.params) == (
            7, "Lighthouses", "gpt-old", "Be brief.", {"temperature": 0.7}
        )
        assert (info.turns, info.updated_at) == (2, 1700000100.0)
        from chatcli.cli.sessions import spent

        assert spent(store, info) == "19"  # as /usage counts them: the replies' reported usage
        assert info.context_from == 0  # the new column's default for old rows
        messages = store.messages(7)
        assert [(m.role, m.content, m.status, m.error) for m in messages] == [
            ("user", "How do lighthouse lenses rotate?", None, None),
            ("assistant", "They float on a bath of mercury.", "complete", None),
            ("user", "And the clockwork?", None, None),
            ("assistant", "A falling weight dri", "error", "the connection broke off"),
        ]
        assert messages[1].usage is not None and messages[1].usage["total_tokens"] == 19
        assert messages[1].first_token_ms is None  # a column the old schema did not have

        # Full-text search (built by migration 2) finds messages written before it existed.
        hits = store.search("mercury")
        assert [(h.session_id, h.title, h.role) for h in hits] == [(7, "Lighthouses", "assistant")]
        assert [h.session_id for h in store.search("lighthouse")] == [7]

        # chatcli can pick the old conversation up again, with its state.
        journal = Journal.open(db_path)
        try:
            session = load_session(journal, 7, client=None)
            assert (session.model, session.params) == ("gpt-old", {"temperature": 0.7})
            assert session.messages("next") == [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How do lighthouse lenses rotate?"},
                {"role": "assistant", "content": "They float on a bath of mercury."},
                {"role": "user", "content": "And the clockwork?"},
                {"role": "assistant", "content": "A falling weight dri"},
                {"role": "user", "content": "next"},
            ]
            assert journal.take_warning() is None
        finally:
            journal.store.close()

        # The new columns and tables work on the old session.
        row = store.add_message(7, message("assistant", "now with timing", status="complete", first_token_ms=42,
                                          total_ms=900, usage={"total_tokens": 5, "cached_tokens": 3}))
        store.update_session(7, event="clear", context_from=row)
        new = store.messages(7)[-1]
        assert (new.first_token_ms, new.total_ms, new.usage["cached_tokens"]) == (42, 900, 3)
        assert store.session(7).context_from == row
        assert store.db.execute("SELECT kind FROM session_events WHERE session_id = 7").fetchall() == [("clear",)]
        assert [h.session_id for h in store.search("timing")] == [7]
    finally:
        store.close()
    assert_healthy(db_path)


def test_a_database_from_a_newer_chatcli_is_refused_with_a_reason_and_left_alone(db_path):
    Store.open(db_path).close()
    newer = len(MIGRATIONS) + 3
    db = raw(db_path)
    db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    with pytest.raises(StoreError) as caught:
        Store.open(db_path)
    assert "upgrade" in str(caught.value).lower()
    assert str(db_path) in str(caught.value)
    db = raw(db_path)
    try:
        assert pragma(db, "user_version") == newer
    finally:
        db.close()
    # The Journal turns it into its one sentence.
    journal = Journal.open(db_path)
    assert not journal.saving
    warning = journal.take_warning()
    assert warning.startswith("History is not being saved") and "upgrade" in warning


# --------------------------------------------------------------------------- #
# Concurrency: real processes
# --------------------------------------------------------------------------- #

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from chatcli.store.db import Store, StoredMessage

    path, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    deadline = time.monotonic() + 15
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("the go file never appeared")
        time.sleep(0.0005)
    store = Store.open(path)
    sid = store.create_session(model=name, system=None, params={}, title=name)
    for i in range(100):
        role = "user" if i % 2 == 0 else "assistant"
        store.add_message(sid, StoredMessage(id=0, role=role, content=f"{name} says {i}", created_at=time.time()))
    store.close()
    print(sid)
    """
)


@pytest.mark.server
def test_two_processes_writing_at_once_both_succeed(db_path, tmp_path):
    # The database exists already; two processes racing to *create* it is
    # test_opening_a_new_database_while_another_program_holds_its_lock_waits.
    Store.open(db_path).close()
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    time.sleep(0.3)  # both are waiting on the barrier
    go.touch()
    results = [w.communicate(timeout=25) for w in writers]
    for w, (out, err) in zip(writers, results):
        assert w.returncode == 0, err
        assert err == ""

    store = Store.open(db_path)
    try:
        sessions = {i.title: i for i in store.list_sessions()}
        assert set(sessions) == {"alpha", "beta"}
        for name, info in sessions.items():
            assert [m.content for m in store.messages(info.id)] == [f"{name} says {i}" for i in range(100)]
            assert info.turns == 50
        assert store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 200
        assert pragma(store.db, "user_version") == len(MIGRATIONS)
    finally:
        store.close()
    assert_healthy(db_path)


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    from pathlib import Path

    path, marker, seconds, statements = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    for statement in statements:
        db.execute(statement)
    marker.touch()
    time.sleep(seconds)
    db.execute("COMMIT")
    """
)


@contextlib.contextmanager
def lock_held_by_another_process(path: Path, tmp_path: Path, seconds: float, *statements: str):
    """A second process takes the write lock (BEGIN IMMEDIATE), runs statements, sleeps, commits."""
    locked = tmp_path / "locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(locked), str(seconds), *statements], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not locked.exists():
            assert holder.poll() is None, holder.stderr.read()
            assert time.monotonic() < deadline, "the lock holder never started"
            time.sleep(0.005)
        yield holder
    finally:
        holder.wait(timeout=10)
    assert holder.returncode == 0, holder.stderr.read()


@pytest.mark.server
def test_opening_an_up_to_date_database_does_not_wait_for_a_writer(store, db_path, tmp_path):
    """Many chatcli processes start at once (xargs -P): only their writes queue for the lock, not their starts."""
    store.close()
    with lock_held_by_another_process(db_path, tmp_path, 1.0):
        started = time.monotonic()
        Store.open(db_path).close()
        assert time.monotonic() - started < 0.5


@pytest.mark.server
def test_a_write_waits_for_another_programs_lock_and_then_succeeds(store, db_path, tmp_path):
    sid = store.create_session(model="m", system=None, params={})
    insert = "INSERT INTO sessions (title, created_at, updated_at, model, params) VALUES ('holder', 0, 0, 'x', '{}')"
    with lock_held_by_another_process(db_path, tmp_path, 1.0, insert):
        started = time.monotonic()
        row = store.add_message(sid, message("user", "written after the wait"))
        waited = time.monotonic() - started
    assert waited > 0.5, f"the write did not wait for the lock ({waited:.2f}s)"
    assert row > 0
    assert [m.content for m in store.messages(sid)] == ["written after the wait"]
    assert "holder" in [i.title for i in store.list_sessions()]  # the other program's write went through too


@pytest.mark.server
def test_opening_a_new_database_while_another_program_holds_its_lock_waits(db_path, tmp_path):
    db_path.parent.mkdir(parents=True)
    os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))  # just created, as Store.open creates it
    with lock_held_by_another_process(db_path, tmp_path, 0.5):
        started = time.monotonic()
        store = Store.open(db_path)
        waited = time.monotonic() - started
    try:
        assert waited > 0.2
        sid = store.create_session(model="m", system=None, params={})
        store.add_message(sid, message("user", "saved"))
        assert pragma(store.db, "journal_mode") == "wal"
    finally:
        store.close()
    assert_healthy(db_path)


# --------------------------------------------------------------------------- #
# Search
# --------------------------------------------------------------------------- #


@pytest.fixture
def searchable(store):
    pool = store.create_session(model="m", system=None, params={}, title="Pools")
    store.add_message(pool, message("user", "Why does the connection pool grow or shrink (slowly)?"))
    store.add_message(pool, message("assistant", "The pool keeps idle connections for reuse; it is not magic."))
    birds = store.create_session(model="m", system=None, params={}, title="Birds")
    store.add_message(birds, message("user", "Tell me about puffins and the sea"))
    return store, pool, birds


def marked(snippet: str) -> list[str]:
    return re.findall("\x02(.*?)\x03", snippet)


def test_search_finds_words_and_marks_them_in_snippets(searchable):
    store, pool, birds = searchable
    hits = store.search("pool")
    assert sorted((h.session_id, h.title, h.role) for h in hits) == [(pool, "Pools", "assistant"), (pool, "Pools", "user")]
    for hit in hits:
        assert [w.lower() for w in marked(hit.snippet)] == ["pool"], hit.snippet
    # several words: all must be there
    [hit] = store.search("puffins sea")
    assert hit.session_id == birds
    assert sorted(marked(hit.snippet)) == ["puffins", "sea"]
    assert store.search("pool puffins") == []
    assert store.search("albatross") == []
    assert store.search("   ") == []


@pytest.mark.parametrize(
    "text",
    [
        '"', '""', "'", '"pool"', 'pool"', "*", "pool*", "-", "-pool", "NOT", "NOT pool", "OR", "pool OR",
        "AND", "(", ")", "(pool", "pool)", "(slowly)?", "NEAR(pool idle)", "content:pool", "^pool", "{a b}",
        "+", ":", "pool -- shrink", "magic.", "it's", "\\", "%", "_",
    ],
)
def test_search_text_with_fts_syntax_characters_does_not_raise(searchable, text):
    store, pool, birds = searchable
    hits = store.search(text)
    assert isinstance(hits, list)
    # Punctuation around a word does not hide it: the words are what is matched.
    if text in ('"pool"', 'pool"', "pool*", "-pool", "(pool", "pool)", "^pool"):
        assert {h.session_id for h in hits} == {pool}, text
    if text == "OR":  # a word like any other, not an operator
        assert {h.session_id for h in hits} == {pool}


# --------------------------------------------------------------------------- #
# Deleting and pruning
# --------------------------------------------------------------------------- #


def message_count(store: Store, session_id: int) -> int:
    return store.db.execute("SELECT COUNT(*) FROM messages WHERE session_id = ?", (session_id,)).fetchone()[0]


def test_deleting_a_session_deletes_its_messages_events_and_search_entries(searchable, db_path):
    store, pool, birds = searchable
    store.update_session(pool, event="model", model="other")
    assert message_count(store, pool) == 2
    assert store.delete_session(pool) is True
    assert store.session(pool) is None
    assert message_count(store, pool) == 0
    assert store.db.execute("SELECT COUNT(*) FROM session_events WHERE session_id = ?", (pool,)).fetchone()[0] == 0
    assert store.search("pool") == []
    # the other session is untouched
    assert [m.content for m in store.messages(birds)] == ["Tell me about puffins and the sea"]
    assert [h.session_id for h in store.search("puffins")] == [birds]
    assert store.delete_session(pool) is False
    assert_healthy(db_path)


def test_prune_deletes_only_sessions_older_than_the_cutoff(store, db_path):
    ages = {"ancient": 400 * DAY, "old": 31 * DAY, "recent": 29 * DAY, "today": 60}
    ids = {}
    for name, age in ages.items():
        ids[name] = store.create_session(model="m", system=None, params={}, title=name)
        store.add_message(ids[name], message("user", f"{name} words"))
        store.db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - age, ids[name]))
    assert store.prune(older_than_s=30 * DAY) == 2
    assert sorted(i.title for i in store.list_sessions()) == ["recent", "today"]
    assert message_count(store, ids["ancient"]) == 0 and message_count(store, ids["old"]) == 0
    assert store.search("ancient") == [] and [h.session_id for h in store.search("recent")] == [ids["recent"]]
    assert store.prune(older_than_s=30 * DAY) == 0
    assert_healthy(db_path)


# --------------------------------------------------------------------------- #
# The Journal when the database is corrupt, read-only or locked
# --------------------------------------------------------------------------- #


def chat_session(srv, journal: Journal) -> Session:
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    return make_session(client=client, model="gpt-4o-mini", journal=journal)


def assert_says_once_and_chat_goes_on(srv, journal: Journal, *, why: str, passing: bool = False) -> str:
    """Two turns work; there is exactly one warning, a single sentence that says why. A failure
    that passes (a lock) holds the turns back to save later (test_recovery.py); others stop saving."""
    session = chat_session(srv, journal)
    srv.script(Reply("first answer"), Reply("second answer"))
    first = session.send("first question")
    assert (first.status, first.reply) == (COMPLETE, "first answer")
    warning = journal.take_warning()
    assert warning is not None, "no warning that history is not being saved"
    assert warning.startswith("History is not being saved"), warning
    assert "\n" not in warning and warning.endswith(".")
    assert not re.search(r"[.!?]\s+\S", warning), f"more than one sentence: {warning!r}"
    assert re.search(why, warning, re.IGNORECASE), warning

    second = session.send("second question")
    assert (second.status, second.reply) == (COMPLETE, "second answer")
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    assert journal.take_warning() is None  # said once only
    assert journal.saving is passing
    return warning


@pytest.mark.parametrize(
    "content",
    [b"not a database, just some text someone saved here\n" * 3, os.urandom(8192)],
    ids=["text", "random-bytes"],
)
def test_a_corrupt_database_is_reported_once_and_left_alone(srv, db_path, content):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(content)
    journal = Journal.open(db_path)
    assert_says_once_and_chat_goes_on(srv, journal, why=r"damaged|not a database|malformed")
    assert db_path.read_bytes() == content  # the user's file is not overwritten


def test_a_database_with_damaged_pages_is_reported_once(srv, db_path):
    store = Store.open(db_path)
    sid = store.create_session(model="m", system=None, params={})
    for i in range(300):
        store.add_message(sid, message("user", f"message {i} " + "padding " * 40))
    store.close()
    data = bytearray(db_path.read_bytes())
    assert len(data) > 8 * 4096
    data[4096:] = b"\xa5" * (len(data) - 4096)  # keep the header page, wreck the rest
    db_path.write_bytes(bytes(data))
    journal = Journal.open(db_path)
    assert_says_once_and_chat_goes_on(srv, journal, why=r"damaged|malformed|not a database")


def test_a_read_only_database_is_reported_once_and_chat_goes_on(srv, db_path):
    Store.open(db_path).close()
    with read_only(db_path):
        journal = Journal.open(db_path)
        assert_says_once_and_chat_goes_on(srv, journal, why=r"cannot be written|read-?only|permission")
        if journal.store is not None:
            journal.store.close()


@pytest.fixture
def short_busy_timeout(monkeypatch):
    # Seam: the real busy timeout is 5 s; 200 ms keeps the test fast. The
    # lock is real, held by another connection for longer than the timeout.
    monkeypatch.setattr(chatcli.store.db, "BUSY_TIMEOUT_MS", 200)


@pytest.fixture
def lock_holder(db_path):
    Store.open(db_path).close()
    other = raw(db_path)

    def hold():
        other.execute("BEGIN IMMEDIATE")

    yield hold
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def test_a_database_locked_when_chatcli_opens_it_is_reported_once(srv, db_path, short_busy_timeout, lock_holder):
    lock_holder()
    started = time.monotonic()
    journal = Journal.open(db_path)
    assert time.monotonic() - started < 3
    assert_says_once_and_chat_goes_on(srv, journal, why=r"locked", passing=True)


def test_a_database_locked_in_the_middle_of_a_chat_is_reported_once(srv, db_path, short_busy_timeout, lock_holder):
    journal = Journal.open(db_path)
    assert journal.saving and journal.take_warning() is None
    lock_holder()
    assert_says_once_and_chat_goes_on(srv, journal, why=r"locked", passing=True)
