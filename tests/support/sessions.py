"""Sessions for tests: one builder, and saved sessions made directly in the store.

make_session is the one place the tests call Session(...) for "a session"; tests about the
constructor itself still build one by hand.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chatcli.app import policy_of
from chatcli.config.settings import Config
from chatcli.core.session import Session
from chatcli.llm.client import ChatClient
from tests.support.keys import TEST_KEY
from tests.support.server import ChatServer
from tests.support.tokens import tokenizer

CLOSED_PORT_URL = "http://127.0.0.1:9/v1"  # refuses at once: a client that never reaches a server
_UNSET: Any = object()


def make_session(srv: ChatServer | None = None, *, config: Config | None = None, client: Any = _UNSET,
                 model: str = "gpt-4o-mini", **fields: Any) -> Session:
    """A Session whose client talks to srv with the test key and no retries (or to a closed port).

    config: the client's Config instead, whose policy (redaction, profile) the session takes, as
    app.py gives it; client: this client (None for none); any other Session field is passed as given.
    """
    if client is _UNSET:
        if config is None:
            config = Config(base_url=srv.base_url if srv else CLOSED_PORT_URL, api_key=TEST_KEY, max_retries=0)
        client = ChatClient(config)
    if config is not None:
        fields.setdefault("policy", policy_of(config))
    return Session(client=client, model=model, **fields)


def default_db(home: Path) -> Path:
    return home / "data" / "chatcli" / "chatcli.db"


def seed(home: Path, *conversations: tuple[str, list[tuple[str, str]]], system: str | None = None) -> list[int]:
    """Saved sessions made directly in the store, for tests of the sessions commands.

    Each conversation is (title, [(question, answer), ...]); autosave itself is
    tested through real asks elsewhere in this file.
    """
    from chatcli.store.db import Store, StoredMessage

    store = Store.open(default_db(home))
    ids = []
    try:
        for title, exchanges in conversations:
            sid = store.create_session(model="gpt-4o-mini", system=system, params={}, title=title)
            for question, answer in exchanges:
                store.add_message(sid, StoredMessage(id=0, role="user", content=question, created_at=time.time()))
                usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                store.add_message(
                    sid,
                    StoredMessage(id=0, role="assistant", content=answer, created_at=time.time(), status="complete",
                                  finish_reason="stop", model="gpt-4o-mini", usage=usage),
                )
            ids.append(sid)
    finally:
        store.close()
    return ids


def priced_session(srv, journal=None, **budget) -> Session:
    """A session on "test-model" at $0.01 a token, with these budget limits."""
    from chatcli.config.table import Price
    from chatcli.core.budget import Budget
    from chatcli.core.journal import Journal
    from chatcli.llm.pricing import Pricing

    return make_session(
        srv, model="test-model", tokenizer=tokenizer(output=10), journal=journal or Journal(),
        pricing=Pricing({"test-model": Price(10_000.0, 10_000.0, 10_000.0)}),  # $0.01 a token
        budget=Budget(**budget),
    )
