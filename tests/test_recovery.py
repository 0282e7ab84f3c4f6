"""Storage (issue 14): a message refused before it is sent is not stored.

The parts are real: the test server, the openai SDK over HTTP, and a SQLite file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from chatcli.client import ChatClient
from chatcli.config import Config
from chatcli.journal import Journal
from chatcli.session import COMPLETE, ERROR, Session
from tests.conftest import TEST_KEY
from tests.test_tokens import byte_encoding, tokenizer  # noqa: F401 - the fixture registers the encoding

pytestmark = pytest.mark.timeout(60)


def chat_session(srv, journal: Journal, **kw) -> Session:
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    return Session(client=client, model=kw.pop("model", "gpt-4o-mini"), journal=journal, **kw)


def query(db: Path, sql: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, args).fetchall()


def saved(db: Path) -> list[str]:
    """The messages' texts, in order; a long one as its start and length (pytest's diff of long
    strings would take minutes)."""
    return [brief(content) for (content,) in query(db, "SELECT content FROM messages ORDER BY id")]


def brief(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:30]}…({len(text)} characters)"


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
