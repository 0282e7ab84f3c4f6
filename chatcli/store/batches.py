"""Batch jobs and their rows, as the database keeps them (migration 14).

A row is committed the moment its result is known, in its own transaction, with its ledger
entry: a run killed with -9 loses at most the rows in flight, and a rerun skips the rest.
One lock serialises the writes (`Batches.lock`: the response cache of a batch's rows takes it too), so
the runner's threads may share one Store.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from chatcli.store.db import Spend, Store

PENDING, OK, FAILED, EXPIRED, CANCELLED = "pending", "ok", "failed", "expired", "cancelled"
ROW_STATUSES = (PENDING, OK, FAILED, EXPIRED, CANCELLED)


@dataclass(frozen=True)
class Job:
    id: int
    created_at: float
    updated_at: float
    via: str  # "api" or "local"
    key: str
    input_name: str
    server: str
    model: str
    spec: dict[str, Any]
    status: str
    total: int
    remote: Any  # JSON the --via api side keeps: the provider's batches; None for a local job


@dataclass(frozen=True)
class RowState:
    position: int
    custom_id: str
    request: dict[str, Any]
    request_sha256: str
    status: str = PENDING
    reply: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    cost_source: str | None = None
    error: str | None = None
    remote_batch: str | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class RowResult:
    """What became of a row: written by finish()."""

    custom_id: str
    status: str
    reply: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    cost_source: str | None = None
    error: str | None = None
    spend: Spend | None = None  # its ledger entry, written in the same transaction


_JOB_COLUMNS = "id, created_at, updated_at, via, job_key, input_name, server, model, spec, status, total, remote"
_ROW_COLUMNS = ("position, custom_id, request, request_sha256, status, reply, finish_reason, usage, cost_usd, "
                "cost_source, error, remote_batch, finished_at")


class Batches:
    """The batch tables of one Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()

    # --- jobs ---

    def create_job(self, *, via: str, key: str, input_name: str, server: str, model: str, spec: dict[str, Any],
                   rows: Iterable[tuple[str, dict[str, Any], str]], status: str = "created") -> Job:
        """A new job and its rows (custom_id, body, body sha256), in input order, in one transaction."""
        now = time.time()
        rows = list(rows)
        with self.lock, self.store._write() as db:
            job_id = db.execute(
                """INSERT INTO batch_jobs (created_at, updated_at, via, job_key, input_name, server, model, spec,
                       status, total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (now, now, via, key, input_name, server, model, json.dumps(spec), status, len(rows)),
            ).lastrowid
            db.executemany(
                "INSERT INTO batch_rows (job_id, position, custom_id, request, request_sha256) VALUES (?, ?, ?, ?, ?)",
                [(job_id, i, cid, json.dumps(body, ensure_ascii=False), sha) for i, (cid, body, sha) in enumerate(rows)],
            )
        job = self.job(job_id)
        assert job is not None
        return job

    def sync_rows(self, job_id: int, rows: Iterable[tuple[str, dict[str, Any], str]]) -> int:
        """Make the job's rows these (an input run again, perhaps edited): a row whose id and request
        are unchanged keeps its result; any other starts anew. Returns how many rows kept a result."""
        rows = list(rows)
        with self.lock, self.store._write() as db:
            done = {cid: sha for cid, sha in db.execute(
                "SELECT custom_id, request_sha256 FROM batch_rows WHERE job_id = ? AND status = ?", (job_id, OK))}
            kept = {cid for cid, _, sha in rows if done.get(cid) == sha}
            db.execute(f"DELETE FROM batch_rows WHERE job_id = ? AND custom_id NOT IN ({','.join('?' * len(kept))})",
                       (job_id, *kept))
            db.execute("UPDATE batch_rows SET position = -1 - position WHERE job_id = ?", (job_id,))  # free positions
            for position, (cid, body, sha) in enumerate(rows):
                if cid in kept:
                    db.execute("UPDATE batch_rows SET position = ? WHERE job_id = ? AND custom_id = ?",
                               (position, job_id, cid))
                else:
                    db.execute("INSERT INTO batch_rows (job_id, position, custom_id, request, request_sha256) "
                               "VALUES (?, ?, ?, ?, ?)", (job_id, position, cid, json.dumps(body, ensure_ascii=False), sha))
            db.execute("UPDATE batch_jobs SET total = ?, updated_at = ? WHERE id = ?", (len(rows), time.time(), job_id))
        return len(kept)

    def update_job(self, job_id: int, *, status: str | None = None, remote: Any = None) -> None:
        with self.lock, self.store._write() as db:
            if status is not None:
                db.execute("UPDATE batch_jobs SET status = ?, updated_at = ? WHERE id = ?", (status, time.time(), job_id))
            if remote is not None:
                db.execute("UPDATE batch_jobs SET remote = ?, updated_at = ? WHERE id = ?",
                           (json.dumps(remote), time.time(), job_id))

    def job(self, job_id: int) -> Job | None:
        row = self.store.db.execute(f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def find_job(self, key: str, *, via: str) -> Job | None:
        """The newest job made from this key (server, spec, input) and way of running."""
        row = self.store.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE job_key = ? AND via = ? ORDER BY id DESC LIMIT 1", (key, via),
        ).fetchone()
        return _job(row) if row else None

    def jobs(self, *, limit: int | None = None) -> list[Job]:
        """The jobs, newest first."""
        rows = self.store.db.execute(f"SELECT {_JOB_COLUMNS} FROM batch_jobs ORDER BY id DESC LIMIT ?",
                                     (-1 if limit is None else limit,)).fetchall()
        return [_job(r) for r in rows]

    # --- rows ---

    def rows(self, job_id: int, *, status: str | None = None) -> list[RowState]:
        """The job's rows in input order (only those with `status`, if given)."""
        where, args = ("AND status = ?", (job_id, status)) if status else ("", (job_id,))
        rows = self.store.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM batch_rows WHERE job_id = ? {where} ORDER BY position", args,
        ).fetchall()
        return [_row(r) for r in rows]

    def counts(self, job_id: int) -> dict[str, int]:
        """How many of the job's rows have each status (every status named, 0 when none)."""
        found = dict(self.store.db.execute(
            "SELECT status, COUNT(*) FROM batch_rows WHERE job_id = ? GROUP BY status", (job_id,)).fetchall())
        return {status: found.get(status, 0) for status in ROW_STATUSES}

    def mark_sent(self, job_id: int, custom_ids: Iterable[str], remote_batch: str) -> None:
        """Rows handed to the provider's batch `remote_batch` (--via api); they are pending until fetched,
        a row sent again (batch retry --failed) with its earlier result cleared. A row already ok is left."""
        with self.lock, self.store._write() as db:
            db.executemany(
                """UPDATE batch_rows SET remote_batch = ?, status = ?, reply = NULL, finish_reason = NULL, usage = NULL,
                       cost_usd = NULL, cost_source = NULL, error = NULL, finished_at = NULL
                   WHERE job_id = ? AND custom_id = ? AND status != ?""",
                [(remote_batch, PENDING, job_id, cid, OK) for cid in custom_ids])

    def finish(self, job_id: int, results: Iterable[RowResult]) -> int:
        """Write results (and their ledger entries) in one transaction; a row already ok is left as it
        is, so fetching twice books nothing twice. Returns how many rows changed."""
        now = time.time()
        changed = 0
        with self.lock, self.store._write() as db:
            for r in results:
                cursor = db.execute(
                    """UPDATE batch_rows SET status = ?, reply = ?, finish_reason = ?, usage = ?, cost_usd = ?,
                           cost_source = ?, error = ?, finished_at = ?
                       WHERE job_id = ? AND custom_id = ? AND status != ?""",
                    (r.status, r.reply, r.finish_reason, None if r.usage is None else json.dumps(r.usage), r.cost_usd,
                     r.cost_source, r.error, now, job_id, r.custom_id, OK),
                )
                if cursor.rowcount and r.spend is not None:
                    self.store.add_spend(r.spend)  # joins this transaction
                changed += cursor.rowcount
            db.execute("UPDATE batch_jobs SET updated_at = ? WHERE id = ?", (now, job_id))
        return changed


def _job(row: tuple) -> Job:
    (job_id, created, updated, via, key, input_name, server, model, spec, status, total, remote) = row
    return Job(job_id, created, updated, via, key, input_name, server, model, json.loads(spec), status, total,
               None if remote is None else json.loads(remote))


def _row(row: tuple) -> RowState:
    (position, cid, request, sha, status, reply, finish, usage, cost, source, error, remote, finished) = row
    return RowState(position, cid, json.loads(request), sha, status, reply, finish,
                    None if usage is None else json.loads(usage), cost, source, error, remote, finished)
