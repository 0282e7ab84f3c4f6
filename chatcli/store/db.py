"""SQLite: schema, migrations, and saving and loading sessions, turns and usage.

The only module that imports sqlite3. Every write is its own short
transaction, opened with BEGIN IMMEDIATE so that a second chatcli process
waits for the lock (busy_timeout) instead of failing at once; WAL with
synchronous=FULL makes each committed turn survive a crash or `kill -9`.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from chatcli.base.errors import ChatError
from chatcli.base.events import Usage
from chatcli.base.images import Image
from chatcli.store.images import drop_unused_images, images_of, link_images
from chatcli.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 5000

# What a database failure is, for what to do about it: a full disk and another program's lock
# pass (what could not be written is held back and tried again); damage and a file that cannot
# be written do not.
FULL, LOCKED, DAMAGED, READ_ONLY, OTHER = "full", "locked", "damaged", "read-only", "other"
PASSING = (FULL, LOCKED)
FREE_SPACE_FULL = 1 << 20  # under this many bytes free, an I/O error writing is the disk being full


class StoreError(Exception):
    """The database cannot be used; the message says why, in words, and `kind` what kind of failure it is."""

    def __init__(self, message: str, *, kind: str = OTHER) -> None:
        super().__init__(message)
        self.kind = kind


class _RolledBack(Exception):
    """Ends a write transaction that was only a test of writing."""


@dataclass(frozen=True)
class SessionInfo:
    id: int
    title: str | None
    model: str
    system: str | None
    params: dict[str, Any]
    created_at: float
    updated_at: float
    turns: int = 0  # tokens: Accounts.accounting, the one count /usage and sessions list give
    context_from: int = 0
    summary: str | None = None
    profile: str | None = None  # the config profile it was held with


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str
    content: str
    created_at: float
    status: str | None = None
    finish_reason: str | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    error: str | None = None
    first_token_ms: int | None = None
    total_ms: int | None = None
    sent_tokens: int | None = None  # a user message: our count of the request it went out in
    sent_exact: bool = True
    reasoning: str | None = None  # a reply: the reasoning streamed before it
    images: tuple[Image, ...] = ()  # a user message: the images sent with it, in order
    missing_images: tuple[str, ...] = ()  # read back: the names of its images whose bytes are no longer stored
    filtered: bool = False  # a reply that held a blocked word: shown withheld
    steps: tuple[dict[str, Any], ...] = ()  # a reply: its tool calls and results, as sent (core/toolloop.py)
    cached: bool = False  # a reply answered from the response cache: no request was made, nothing was billed


@dataclass(frozen=True)
class Spend:
    """One reply's tokens and cost, as the usage ledger keeps it."""

    created_at: float
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None  # None: the model's price was unknown
    estimated: bool = False
    session_id: int | None = None  # None: not saved with a session (incognito, or before migration 6)
    message_id: int | None = None  # the reply it paid for; None for a request that is not a turn (/compact)
    kind: str = "turn"  # "turn", "undone" (the turn was undone or replaced) or "compact"
    cached_tokens: int = 0  # of prompt_tokens, those read from the server's prompt cache (0 before migration 11)
    reasoning_tokens: int = 0  # of completion_tokens, those a reasoning model thought in
    cost_source: str | None = None  # "provider", "list" or "estimate"; None: no cost, or from before migration 11

    @classmethod
    def of(cls, model: str, usage: Usage, cost: float | None, *, source: str | None, estimated: bool = False,
           **how: Any) -> Spend:
        """A request's entry, now: its model, the usage the server reported (or chatcli counted) and its cost."""
        return cls(time.time(), model, usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, cost,
                   estimated, cached_tokens=usage.cached_tokens, reasoning_tokens=usage.reasoning_tokens,
                   cost_source=source, **how)


@dataclass(frozen=True)
class Spent:
    """What the ledger holds since a time: priced USD and all tokens, plus the rows with no price."""

    usd: float
    tokens: int
    unpriced: list[Spend] = field(default_factory=list)  # one per model, summed; cost_usd is None


@dataclass(frozen=True)
class SearchHit:
    session_id: int
    title: str | None
    role: str
    snippet: str
    updated_at: float
    filtered: bool = False  # a reply withheld for a blocked word: its snippet is not to be shown


def default_db_path(data_dir: Path) -> Path:
    return data_dir / "chatcli.db"


def db_path(named: str | None, data_dir: Path) -> Path:
    """The database a config names (--db, db), or the default one in the data directory."""
    return Path(named).expanduser() if named else default_db_path(data_dir)


class Store:
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._in_write = False  # inside _write: a nested one joins its transaction

    @classmethod
    def open(cls, path: Path, *, migrations: list[Callable[[sqlite3.Connection], None]] | None = None) -> Store:
        """Open (creating, mode 0600) and migrate the database; raise StoreError with a reason."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        except OSError as exc:
            kind = FULL if exc.errno == errno.ENOSPC else OTHER
            raise StoreError(describe(exc, path, kind) if kind == FULL else f"{path} could not be created ({exc.strerror})",
                             kind=kind) from None
        except sqlite3.Error as exc:
            raise StoreError(describe(exc, path), kind=kind_of(exc, path)) from None
        store = cls(db, path)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(db)
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            store._migrate(MIGRATIONS if migrations is None else migrations)
        except (sqlite3.Error, StoreError) as exc:
            kind = exc.kind if isinstance(exc, StoreError) else store.kind_of(exc)
            db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(describe(exc, path, kind), kind=kind) from None
        return store

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; BEGIN IMMEDIATE takes the lock before reading.

        SQLite may have rolled the transaction back itself (a damaged page, a full disk): the
        error that did it is the one raised, not "cannot rollback - no transaction is active".
        """
        if self._in_write:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._in_write = True
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise
        finally:
            self._in_write = False

    def kind_of(self, exc: BaseException) -> str:
        """What kind of failure exc is; an error SQLite gives no clear name for is damage if the file
        fails a quick check (a damaged full-text index fails as "vtable constructor failed")."""
        kind = kind_of(exc, self.path)
        if kind == OTHER and isinstance(exc, sqlite3.Error):
            try:
                if self.db.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                    return DAMAGED
            except sqlite3.Error as again:
                return DAMAGED if kind_of(again, self.path) == DAMAGED else kind
        return kind

    def _migrate(self, migrations: list[Callable[[sqlite3.Connection], None]]) -> None:
        # Reading the version takes no lock in WAL mode: a database already up to date is not
        # locked at all here, so many chatcli processes starting at once do not queue for it.
        if self.db.execute("PRAGMA user_version").fetchone()[0] == len(migrations):
            return
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.path} was written by a newer chatcli (schema {version}); upgrade chatcli")
            for number, migration in enumerate(migrations[version:], start=version + 1):
                migration(db)
                db.execute(f"PRAGMA user_version = {number}")

    # --- writing ---

    def create_session(self, *, model: str, system: str | None, params: dict[str, Any], title: str | None = None,
                       profile: str | None = None) -> int:
        now = time.time()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO sessions (title, created_at, updated_at, model, system, params, profile) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, now, now, model, system, json.dumps(params), profile),
            )
            return int(cursor.lastrowid)

    def start_session(self, first: StoredMessage, **session: Any) -> tuple[int, int]:
        """Create a session with its first message, in one transaction: (session id, message id).

        Either both are written or neither is, so a failure leaves no session without its message.
        """
        with self._write():
            session_id = self.create_session(**session)
            return session_id, self.add_message(session_id, first)

    def add_message(self, session_id: int, message: StoredMessage) -> int:
        usage = message.usage or {}
        with self._write() as db:
            cursor = db.execute(
                """INSERT INTO messages (session_id, role, content, status, finish_reason, model, params,
                       prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
                       error, first_token_ms, total_ms, created_at, sent_tokens, sent_exact, reasoning, filtered,
                       steps, cached)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    session_id, message.role, message.content, message.status, message.finish_reason,
                    message.model, json.dumps(message.params) if message.params else None,
                    usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens"),
                    usage.get("cached_tokens"), usage.get("reasoning_tokens"),
                    message.error, message.first_token_ms, message.total_ms, message.created_at,
                    message.sent_tokens, None if message.sent_tokens is None else int(message.sent_exact),
                    message.reasoning, int(message.filtered),
                    json.dumps(list(message.steps), ensure_ascii=False) if message.steps else None,
                    int(message.cached),
                ),
            )
            message_id = int(cursor.lastrowid)
            link_images(db, message_id, message.images)
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time(), session_id))
            return message_id

    def add_spend(self, spend: Spend) -> None:
        with self._write() as db:
            db.execute(
                """INSERT INTO usage_ledger (created_at, model, prompt_tokens, completion_tokens, total_tokens, cost_usd,
                       estimated, session_id, message_id, kind, cached_tokens, reasoning_tokens, cost_source)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (spend.created_at, spend.model, spend.prompt_tokens, spend.completion_tokens, spend.total_tokens,
                 spend.cost_usd, int(spend.estimated), spend.session_id, spend.message_id, spend.kind,
                 spend.cached_tokens, spend.reasoning_tokens, spend.cost_source),
            )

    def spend_since(self, since: float) -> Spent:
        """USD (priced rows) and tokens spent since a time, and the unpriced rows summed by model."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(total_tokens), 0) FROM usage_ledger WHERE created_at >= ?",
            (since,),
        ).fetchone()
        unpriced = self.db.execute(
            """SELECT MIN(created_at), model, SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens),
                      MAX(estimated), SUM(cached_tokens), SUM(reasoning_tokens)
               FROM usage_ledger WHERE created_at >= ? AND cost_usd IS NULL GROUP BY model ORDER BY model""",
            (since,),
        ).fetchall()
        return Spent(float(row[0]), int(row[1]), [Spend(r[0], r[1], r[2], r[3], r[4], None, bool(r[5]),
                                                        cached_tokens=r[6], reasoning_tokens=r[7]) for r in unpriced])

    def check_writable(self) -> None:
        """Raise sqlite3.Error if a write would fail (a read-only file opens, and reads, without complaint):
        a write is begun and rolled back, so nothing changes."""
        with suppress(_RolledBack), self._write() as db:
            db.execute(f"PRAGMA user_version = {db.execute('PRAGMA user_version').fetchone()[0]}")
            raise _RolledBack

    def claim_notice(self, name: str, period_start: float) -> bool:
        """True the first time anyone asks for this notice in this period: the caller gives it."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO budget_notices (name, period_start, created_at) VALUES (?, ?, ?)",
                (name, period_start, time.time()),
            )
            return cursor.rowcount == 1

    def ledger(self, since: float = 0.0, *, session_id: int | None = None) -> list[Spend]:
        """The ledger's rows since a time, oldest first; only one session's, if given."""
        where, args = "created_at >= ?", [since]
        if session_id is not None:
            where, args = where + " AND session_id = ?", [since, session_id]
        rows = self.db.execute(
            f"""SELECT created_at, model, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated,
                       session_id, message_id, kind, cached_tokens, reasoning_tokens, cost_source
                FROM usage_ledger WHERE {where} ORDER BY created_at, id""",
            args,
        ).fetchall()
        return [Spend(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10], r[11], r[12]) for r in rows]

    def update_session(self, session_id: int, *, event: str | None = None, **columns: Any) -> None:
        """Change session columns (model, system, params, title, context_from) and log the change."""
        allowed = {"model", "system", "params", "title", "context_from", "summary", "profile"}
        assert set(columns) <= allowed, columns
        values = {k: json.dumps(v) if k == "params" else v for k, v in columns.items()}
        with self._write() as db:
            sets = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE sessions SET {sets}, updated_at = ? WHERE id = ?", (*values.values(), time.time(), session_id))
            if event:
                db.execute(
                    "INSERT INTO session_events (session_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
                    (session_id, event, json.dumps(columns), time.time()),
                )

    def clear_boundary(self, session_id: int) -> int:
        """The id from which this session's messages are sent again after /clear.

        Taken from the session's own rows: SQLite reuses the table's highest ids
        once they are deleted, but every later message of this session is still
        above its own last one.
        """
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0])

    def delete_messages(self, ids: list[int]) -> None:
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self._write() as db:
            db.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
            # What was paid for them stays spent: it now counts as undone (SQLite may give the ids to new rows).
            db.execute(f"UPDATE usage_ledger SET kind = 'undone' WHERE kind = 'turn' AND message_id IN ({marks})", ids)
            drop_unused_images(db)

    def delete_session(self, session_id: int) -> bool:
        with self._write() as db:
            db.execute("UPDATE usage_ledger SET session_id = NULL WHERE session_id = ?", (session_id,))  # spent all the same
            deleted = db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0
            drop_unused_images(db)
            return deleted

    def prune(self, *, older_than_s: float) -> int:
        """Delete sessions not updated for older_than_s seconds; return how many."""
        with self._write() as db:
            pruned = db.execute("DELETE FROM sessions WHERE updated_at < ?", (time.time() - older_than_s,)).rowcount
            db.execute("UPDATE usage_ledger SET session_id = NULL WHERE session_id NOT IN (SELECT id FROM sessions)")
            drop_unused_images(db)
            return pruned

    # --- reading ---

    _INFO = """SELECT s.id, s.title, s.model, s.system, s.params, s.created_at, s.updated_at,
                      (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'user'),
                      s.context_from, s.summary, s.profile
               FROM sessions s"""

    @staticmethod
    def _info(row: tuple) -> SessionInfo:
        return SessionInfo(
            id=row[0], title=row[1], model=row[2], system=row[3], params=json.loads(row[4] or "{}"),
            created_at=row[5], updated_at=row[6], turns=row[7], context_from=row[8], summary=row[9], profile=row[10],
        )

    def list_sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        sql = self._INFO + " ORDER BY s.updated_at DESC, s.id DESC"
        rows = self.db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [self._info(row) for row in rows]

    def session(self, session_id: int) -> SessionInfo | None:
        row = self.db.execute(self._INFO + " WHERE s.id = ?", (session_id,)).fetchone()
        return self._info(row) if row else None

    def last_session_id(self) -> int | None:
        row = self.db.execute("SELECT id FROM sessions ORDER BY updated_at DESC, id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def messages(self, session_id: int, *, images: bool = True) -> list[StoredMessage]:
        """A session's messages, oldest first; images=False leaves their images unread (a listing
        that needs only counts need not read every screenshot ever sent)."""
        rows = self.db.execute(
            """SELECT id, role, content, created_at, status, finish_reason, model, params, prompt_tokens,
                      completion_tokens, total_tokens, cached_tokens, reasoning_tokens, error,
                      first_token_ms, total_ms, sent_tokens, sent_exact, reasoning, filtered, steps, cached
               FROM messages WHERE session_id = ? ORDER BY id""",
            (session_id,),
        ).fetchall()
        found, missing = images_of(self.db, session_id) if images else ({}, {})
        out = []
        for r in rows:
            usage = None
            if r[10] is not None:
                usage = {
                    "prompt_tokens": r[8] or 0, "completion_tokens": r[9] or 0, "total_tokens": r[10] or 0,
                    "cached_tokens": r[11] or 0, "reasoning_tokens": r[12] or 0,
                }
            out.append(
                StoredMessage(
                    id=r[0], role=r[1], content=r[2], created_at=r[3], status=r[4], finish_reason=r[5],
                    model=r[6], params=json.loads(r[7]) if r[7] else {}, usage=usage, error=r[13],
                    first_token_ms=r[14], total_ms=r[15], sent_tokens=r[16], sent_exact=bool(r[17]),
                    reasoning=r[18], filtered=bool(r[19]), images=tuple(found.get(r[0], ())),
                    missing_images=tuple(missing.get(r[0], ())), steps=tuple(_steps(r[20])), cached=bool(r[21]),
                )
            )
        return out

    def search(self, text: str, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search; the text is matched as words, whatever characters it holds."""
        terms = [t for t in text.split() if t]
        if not terms:
            return []
        query = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
        rows = self.db.execute(
            """SELECT m.session_id, s.title, m.role,
                      snippet(messages_fts, 0, char(2), char(3), '…', 12), s.updated_at, m.filtered
               FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid JOIN sessions s ON s.id = m.session_id
               WHERE messages_fts MATCH ? ORDER BY s.updated_at DESC, m.id LIMIT ?""",
            (query, limit),
        ).fetchall()
        return [SearchHit(*row) for row in rows]

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out another process's lock as a write would.

    Changing the journal mode of a new file needs the lock, and SQLite's busy
    handler does not wait for it here: two chatcli processes starting together
    on first use would otherwise see "database is locked" at once.
    """
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        # Already: asking again needs a lock that SQLite's busy handler does not wait for, and
        # under many writers at once (chatcli run by xargs -P) it can stay out of reach.
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def kind_of(exc: BaseException, path: Path) -> str:
    """FULL, LOCKED, DAMAGED, READ_ONLY or OTHER: what kind of database failure exc is.

    A full disk is SQLITE_FULL, or an I/O error (SQLite cannot make its -shm file: "disk I/O
    error") on a filesystem with next to no space left.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return FULL
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        return FULL if _free_bytes(path) < FREE_SPACE_FULL else OTHER
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "not a database" in text or "malformed" in text:
        return DAMAGED
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or "readonly" in text \
            or "read-only" in text or "unable to open" in text:
        return READ_ONLY
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return LOCKED
    return OTHER


def _free_bytes(path: Path) -> int:
    """Bytes free to us on the filesystem that holds path; a great many when it cannot be told."""
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return 1 << 62
    return stat.f_bavail * stat.f_frsize


def describe(exc: BaseException, path: Path, kind: str | None = None) -> str:
    """Why the database cannot be used, in words a user can act on."""
    kind = kind or kind_of(exc, path)
    if kind == FULL:
        return f"the disk that holds {path} is full; free some space on it"
    if kind == DAMAGED:
        return f"the history database {path} is damaged; run `chatcli sessions check` to recover what it holds"
    if kind == READ_ONLY:
        return f"{path} cannot be written ({exc}); check its permissions"
    if kind == LOCKED:
        return f"{path} stayed locked by another program for more than {BUSY_TIMEOUT_MS / 1000:g}s"
    return f"{path} failed ({exc})"


def is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, (sqlite3.Error, StoreError))


@contextmanager
def opened(path: Path, *, failing: str, then: str = "") -> Iterator[Store]:
    """The database at `path` for one command, closed after. Failing to open or use it is one
    sentence, `failing` and the reason (and `then`, what to do): "Cannot read saved sessions: ...". """
    try:
        store = Store.open(path)
    except StoreError as exc:
        raise ChatError(f"{failing}: {exc}{then}.") from None
    try:
        yield store
    except Exception as exc:
        if not is_store_error(exc):
            raise
        reason = exc if isinstance(exc, StoreError) else describe(exc, path)
        raise ChatError(f"{failing}: {reason}{then}.") from None
    finally:
        store.close()


def _steps(text: str | None) -> list[dict[str, Any]]:
    """A reply's saved tool steps; a column that does not hold a list of objects reads as none."""
    try:
        steps = json.loads(text) if text else []
    except (json.JSONDecodeError, RecursionError):
        return []
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
