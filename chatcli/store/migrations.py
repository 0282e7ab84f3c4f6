"""The database's schema, as an ordered list of migrations.

Each migration is a named function, applied once, in order; `PRAGMA
user_version` counts those applied (store.py runs them in one transaction).
A database made by an older chatcli is brought up to date when it is opened.
This module and store.py are the only ones that touch sqlite3.
"""

from __future__ import annotations

import sqlite3
from typing import Callable


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: executescript would COMMIT the migration's transaction first."""
    statement = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    assert not statement.strip(), statement


def _m1_initial(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            title TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            model TEXT NOT NULL,
            system TEXT,
            params TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            status TEXT,
            finish_reason TEXT,
            model TEXT,
            params TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            error TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_by_session ON messages(session_id, id);
        """
    )


def _m2_latency_context_search_events(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        ALTER TABLE messages ADD COLUMN cached_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN reasoning_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN first_token_ms INTEGER;
        ALTER TABLE messages ADD COLUMN total_ms INTEGER;
        -- /clear: messages with a smaller id are kept but no longer sent
        ALTER TABLE sessions ADD COLUMN context_from INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX sessions_by_update ON sessions(updated_at);

        -- what changed the session's state, and when (system prompt, model, parameters)
        CREATE TABLE session_events (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            value TEXT,
            created_at REAL NOT NULL
        );

        CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id');
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
        """
    )


def _m3_summary(db: sqlite3.Connection) -> None:
    # /compact: the summary of the turns before context_from, sent in their place
    db.execute("ALTER TABLE sessions ADD COLUMN summary TEXT")


def _m4_usage_ledger(db: sqlite3.Connection) -> None:
    # Spending, kept apart from the sessions so deleting or pruning them does not reset a budget.
    _run_script(
        db,
        """
        CREATE TABLE usage_ledger (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            total_tokens INTEGER NOT NULL,
            cost_usd REAL,
            estimated INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX usage_ledger_by_time ON usage_ledger(created_at);
        INSERT INTO usage_ledger (created_at, model, prompt_tokens, completion_tokens, total_tokens)
            SELECT created_at, COALESCE(model, ''), COALESCE(prompt_tokens, 0), COALESCE(completion_tokens, 0), total_tokens
            FROM messages WHERE role = 'assistant' AND total_tokens IS NOT NULL;
        """,
    )


def _m5_sent_counts_budget_notices(db: sqlite3.Connection) -> None:
    # Our count of each request, so a resumed session keeps its ≈ estimates; and the
    # budget warnings already given, so each is given once per period, not once per process.
    _run_script(
        db,
        """
        ALTER TABLE messages ADD COLUMN sent_tokens INTEGER;
        ALTER TABLE messages ADD COLUMN sent_exact INTEGER;
        CREATE TABLE budget_notices (
            name TEXT NOT NULL,
            period_start REAL NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (name, period_start)
        );
        """,
    )


def _m6_ledger_sessions(db: sqlite3.Connection) -> None:
    # Which session and reply each request paid for, so a resumed session's /usage still counts
    # what it spent on replies since undone or replaced, and on /compact summaries.
    _run_script(
        db,
        """
        ALTER TABLE usage_ledger ADD COLUMN session_id INTEGER;
        ALTER TABLE usage_ledger ADD COLUMN message_id INTEGER;
        CREATE INDEX usage_ledger_by_session ON usage_ledger(session_id);
        """,
    )


def _m7_reasoning(db: sqlite3.Connection) -> None:
    # What a reasoning model streamed before its answer: kept with the reply, never sent back.
    db.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT")


def _m8_ledger_kinds(db: sqlite3.Connection) -> None:
    # What each ledger row paid for: a turn, a turn since undone or replaced, or a /compact summary.
    # Message and session ids are reused by SQLite once deleted, so a row's kind is kept in the
    # row itself rather than read from whether its message still exists.
    _run_script(
        db,
        """
        ALTER TABLE usage_ledger ADD COLUMN kind TEXT NOT NULL DEFAULT 'turn';
        UPDATE usage_ledger SET kind = 'compact' WHERE session_id IS NOT NULL AND message_id IS NULL;
        UPDATE usage_ledger SET kind = 'undone'
            WHERE message_id IS NOT NULL AND message_id NOT IN (SELECT id FROM messages);
        UPDATE usage_ledger SET session_id = NULL
            WHERE session_id IS NOT NULL AND session_id NOT IN (SELECT id FROM sessions);
        """,
    )


def _m9_session_profile(db: sqlite3.Connection) -> None:
    # The profile a session was held with, so that resuming it goes back to the same server:
    # a conversation kept on a local model is not sent to another provider by `chatcli -c`.
    db.execute("ALTER TABLE sessions ADD COLUMN profile TEXT")


def _m10_images(db: sqlite3.Connection) -> None:
    # Images sent with user messages. Each image's bytes are kept once, keyed by their sha256, however
    # many messages send it; a message names its images, in order, by that key. A URL image has no
    # bytes (the server fetches it): its link row keeps the URL, and its key is the URL's sha256.
    # Deleting a message deletes its links; the store then drops the images no link names.
    _run_script(
        db,
        """
        CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            mime TEXT NOT NULL,
            bytes BLOB NOT NULL,
            width INTEGER,
            height INTEGER,
            size INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE message_images (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            name TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT 'auto',
            url TEXT,
            PRIMARY KEY (message_id, position)
        );
        CREATE INDEX message_images_by_sha256 ON message_images(sha256);
        """,
    )


def _m11_ledger_details(db: sqlite3.Connection) -> None:
    # The ledger keeps what /usage shows of each request: the prompt tokens read from the server's cache
    # (priced lower), the reasoning tokens, and where its cost came from (the provider's own figure, list
    # prices, or list prices over an estimate). Rows from before read as 0, 0 and unknown (NULL).
    _run_script(
        db,
        """
        ALTER TABLE usage_ledger ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage_ledger ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage_ledger ADD COLUMN cost_source TEXT;
        """,
    )


def _m12_filtered(db: sqlite3.Connection) -> None:
    # A reply that held a blocked word (config block_words): kept whole, shown withheld.
    db.execute("ALTER TABLE messages ADD COLUMN filtered INTEGER NOT NULL DEFAULT 0")


def _m13_tool_steps(db: sqlite3.Connection) -> None:
    # A reply's tool calls and their results (issue 17), as the JSON list of wire messages the turn
    # sent between the user's message and the reply. A column of the reply's row, not rows of their
    # own: they are sent, resumed, exported and dropped (/undo) only ever with that reply, whole.
    db.execute("ALTER TABLE messages ADD COLUMN steps TEXT")


def _m14_batches(db: sqlite3.Connection) -> None:
    # Batch jobs (issue 18): a job is one input file sent with one spec, through the Batch API or run
    # here; each of its rows is committed the moment its result is known, so a run killed with -9 and
    # run again skips what is done, and `batch fetch` can join results to input order at any time.
    _run_script(
        db,
        """
        CREATE TABLE batch_jobs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            via TEXT NOT NULL,             -- 'api' (the provider's Batch API) or 'local' (run here, -j N)
            job_key TEXT NOT NULL,         -- sha256 of the server, the spec and the input's path: a rerun finds its job
            input_name TEXT NOT NULL,      -- the input file as it was named
            server TEXT NOT NULL,          -- the base URL, as shown (never a key)
            model TEXT NOT NULL,
            spec TEXT NOT NULL,            -- JSON: model, system, params, response_format (batch/requests.py Spec)
            status TEXT NOT NULL,          -- the job as a whole: the provider's word for it, or the local runner's
            total INTEGER NOT NULL,        -- rows
            remote TEXT                    -- JSON: the provider's batches (ids, files, status), for --via api
        );
        CREATE INDEX batch_jobs_by_key ON batch_jobs(job_key);
        CREATE TABLE batch_rows (
            job_id INTEGER NOT NULL REFERENCES batch_jobs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,     -- input order, from 0
            custom_id TEXT NOT NULL,       -- the row's id: the input's own, or its line number
            request TEXT NOT NULL,         -- JSON: the whole chat-completions body
            request_sha256 TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',  -- pending, ok, failed, expired, cancelled
            reply TEXT,
            finish_reason TEXT,
            usage TEXT,                    -- JSON, as the ledger keeps it
            cost_usd REAL,
            cost_source TEXT,
            error TEXT,
            remote_batch TEXT,             -- the provider's batch id it went in (--via api)
            finished_at REAL,
            PRIMARY KEY (job_id, position)
        );
        CREATE UNIQUE INDEX batch_rows_by_id ON batch_rows(job_id, custom_id);
        """,
    )


def _m15_response_cache(db: sqlite3.Connection) -> None:
    # The response cache (issue 18): a reply kept under its key, the sha256 of its server (the base URL
    # as shown, never a key) and request body, with the model the server named, the usage it reported
    # (JSON) and what it cost then (NULL: unknown), so asking the same again is answered without a
    # request and `chatcli cache stats` can say what the hits saved. Only complete replies are kept
    # (finish_reason stop or length); one past expires_at is never served. A reply answered from it
    # is marked in messages, so a resumed session counts it as free.
    _run_script(
        db,
        """
        CREATE TABLE response_cache (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            reply TEXT NOT NULL,
            reasoning TEXT,
            finish_reason TEXT NOT NULL,
            usage TEXT,
            cost_usd REAL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0,
            last_hit_at REAL
        );
        CREATE INDEX response_cache_by_expiry ON response_cache(expires_at);
        ALTER TABLE messages ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m1_initial,
    _m2_latency_context_search_events,
    _m3_summary,
    _m4_usage_ledger,
    _m5_sent_counts_budget_notices,
    _m6_ledger_sessions,
    _m7_reasoning,
    _m8_ledger_kinds,
    _m9_session_profile,
    _m10_images,
    _m11_ledger_details,
    _m12_filtered,
    _m13_tool_steps,
    _m14_batches,
    _m15_response_cache,
]


