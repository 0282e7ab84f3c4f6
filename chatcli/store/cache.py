"""The response cache's table (migration 15): replies kept by the hash of their request, served
until they expire, with what they cost when they were made.

Only rows and figures here; core/cache.py decides what is kept and when one may answer. Each
method is one short transaction, and an SQLite failure is a StoreError with a reason: a cache
that cannot be read or written is a miss, never a stopped chat. A lock serialises the writes, so
threads may share one Store (the batch runner passes the lock its other writers hold).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator

from chatcli.store.db import Store, StoreError, describe


@dataclass(frozen=True)
class CacheEntry:
    """One kept reply, as the table holds it."""

    key: str
    model: str
    reply: str
    reasoning: str | None
    finish_reason: str
    usage: dict[str, Any] | None  # as the ledger keeps a usage: prompt_tokens, completion_tokens, ...
    cost_usd: float | None
    created_at: float
    expires_at: float
    hits: int = 0
    last_hit_at: float | None = None


@dataclass(frozen=True)
class CacheStats:
    """What `chatcli cache stats` says."""

    entries: int
    expired: int  # of entries, those past their time: never served, dropped when next met or by clear
    size_bytes: int  # the text the entries hold (replies, reasoning, usage), not the file's pages
    hits: int
    saved_tokens: int  # the tokens the hits would have cost: each entry's total_tokens times its hits
    saved_usd: float  # the same in USD, over the entries whose cost was known
    unpriced_hits: int  # hits on entries whose cost was unknown, not in saved_usd
    oldest: float | None  # created_at of the oldest entry, and the newest
    newest: float | None


_COLUMNS = "key, model, reply, reasoning, finish_reason, usage, cost_usd, created_at, expires_at, hits, last_hit_at"


class Responses:
    """The response_cache table of one Store."""

    def __init__(self, store: Store, *, lock: threading.Lock | threading.RLock | None = None) -> None:
        self.store = store
        self._lock = lock or threading.Lock()

    @contextmanager
    def _failing_as_store_error(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            kind = self.store.kind_of(exc)
            raise StoreError(describe(exc, self.store.path, kind), kind=kind) from None

    def find(self, key: str, *, now: float, newer_than: float = 0.0) -> CacheEntry | None:
        """The entry under `key` if it may answer now, counted as a hit; an expired one is dropped.

        `newer_than`: an entry made before this time is not served (the TTL was shortened since it
        was kept), though it stays until it expires or a fresh reply takes its place."""
        with self._failing_as_store_error(), self._lock, self.store._write() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM response_cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            entry = _entry(row)
            if entry.expires_at <= now:
                db.execute("DELETE FROM response_cache WHERE key = ?", (key,))
                return None
            if entry.created_at < newer_than:
                return None
            db.execute("UPDATE response_cache SET hits = hits + 1, last_hit_at = ? WHERE key = ?", (now, key))
            return replace(entry, hits=entry.hits + 1, last_hit_at=now)

    def holds(self, key: str, *, now: float, newer_than: float = 0.0) -> bool:
        """Whether find() would serve `key` now; reads only (not a hit, nothing dropped)."""
        with self._failing_as_store_error():
            row = self.store.db.execute("SELECT expires_at, created_at FROM response_cache WHERE key = ?",
                                        (key,)).fetchone()
        return row is not None and row[0] > now and row[1] >= newer_than

    def put(self, entry: CacheEntry) -> None:
        """Keep a reply under its key, in place of any entry there (which a lookup did not serve)."""
        with self._failing_as_store_error(), self._lock, self.store._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO response_cache ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.key, entry.model, entry.reply, entry.reasoning, entry.finish_reason,
                 None if entry.usage is None else json.dumps(entry.usage), entry.cost_usd, entry.created_at,
                 entry.expires_at, entry.hits, entry.last_hit_at),
            )

    def clear(self, *, expired_before: float | None = None) -> int:
        """Remove every entry, or only those expired by `expired_before`; how many were removed."""
        with self._failing_as_store_error(), self._lock, self.store._write() as db:
            if expired_before is None:
                return db.execute("DELETE FROM response_cache").rowcount
            return db.execute("DELETE FROM response_cache WHERE expires_at <= ?", (expired_before,)).rowcount

    def stats(self, *, now: float) -> CacheStats:
        with self._failing_as_store_error():
            row = self.store.db.execute(
                """SELECT COUNT(*),
                          COALESCE(SUM(expires_at <= ?), 0),
                          COALESCE(SUM(length(CAST(reply AS BLOB)) + COALESCE(length(CAST(reasoning AS BLOB)), 0)
                                       + COALESCE(length(CAST(usage AS BLOB)), 0)), 0),
                          COALESCE(SUM(hits), 0),
                          COALESCE(SUM(hits * COALESCE(json_extract(usage, '$.total_tokens'), 0)), 0),
                          COALESCE(SUM(hits * cost_usd), 0),
                          COALESCE(SUM(CASE WHEN cost_usd IS NULL THEN hits ELSE 0 END), 0),
                          MIN(created_at), MAX(created_at)
                   FROM response_cache""",
                (now,),
            ).fetchone()
        return CacheStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), float(row[5]), int(row[6]),
                          row[7], row[8])


def _entry(row: tuple) -> CacheEntry:
    (key, model, reply, reasoning, finish, usage, cost, created, expires, hits, last_hit) = row
    return CacheEntry(key, model, reply, reasoning, finish, _usage(usage), cost, created, expires, hits, last_hit)


def _usage(text: str | None) -> dict[str, Any] | None:
    """A kept usage; a column that does not hold a JSON object reads as none."""
    try:
        usage = json.loads(text) if text else None
    except (json.JSONDecodeError, RecursionError):
        return None
    return usage if isinstance(usage, dict) else None
