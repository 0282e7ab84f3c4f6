"""Checking the history database, and recovering what a damaged one holds into a new file.

`chatcli sessions check` runs here. The check is SQLite's integrity_check, and the full-text
index's own. Recovery reads what can still be read, with the sqlite3 program's `.recover`
when there is one that works, or else row by row from Python, stepping past pages that cannot
be read. It writes a new database with chatcli's own schema beside the damaged one, then puts
it in the damaged one's place, which is kept under another name. Like store.py and
migrations.py, this module talks to sqlite3; nothing else does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import chatcli.store.db as store_module
from chatcli.store.db import DAMAGED, Store, StoreError, describe, kind_of

RECOVER_TIMEOUT_S = 600


@dataclass(frozen=True)
class Health:
    whole: bool
    problem: str = ""  # what is wrong, in SQLite's words, when not whole
    sessions: int = 0
    messages: int = 0


@dataclass(frozen=True)
class Recovery:
    path: Path  # the database, now the recovered one
    kept: Path  # the damaged file, under its new name
    sessions: int
    messages: int
    how: str  # "sqlite3 .recover" or "reading row by row"


def check(path: Path) -> Health:
    """Whether the database at path is whole: integrity_check, then the full-text index's check.
    Raises StoreError when it cannot be checked (locked by another program, unreadable)."""
    db = None
    try:
        # Read-write, though nothing is written: the full-text index checks itself with an INSERT.
        db = sqlite3.connect(path, isolation_level=None, timeout=store_module.BUSY_TIMEOUT_MS / 1000)
        problems = [row[0] for row in db.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            return Health(False, "; ".join(problems[:3]))
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'").fetchone():
            db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
        counts = [db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("sessions", "messages")]
        return Health(True, "", *counts)
    except sqlite3.Error as exc:
        kind = kind_of(exc, path)
        if kind != DAMAGED:  # a lock, or a file that cannot be opened, is not damage
            raise StoreError(describe(exc, path, kind), kind=kind) from None
        return Health(False, str(exc))
    finally:
        if db is not None:
            db.close()


def recover(path: Path) -> Recovery:
    """Recover what path holds into a new database, which takes its place; the damaged file is kept.

    Raises StoreError, and changes nothing, when nothing could be read or the new file cannot be written.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fresh = path.with_name(f"{path.name}.recovering-{stamp}")
    scratch = path.with_name(f"{path.name}.scratch-{stamp}")
    try:
        how = "sqlite3 .recover"
        source = scratch if _sqlite3_recover(path, scratch) else None
        if source is None:
            how, source = "reading row by row", path
        sessions, messages = _copy(source, fresh)
        if sessions == 0 and messages == 0:
            raise StoreError(f"nothing could be read from {path}")
        if not check(fresh).whole:
            raise StoreError(f"the database recovered from {path} did not pass its own check")
        kept = path.with_name(f"{path.name}.damaged-{stamp}")
        _move_aside(path, kept)
        os.replace(fresh, path)
        return Recovery(path, kept, sessions, messages, how)
    except sqlite3.Error as exc:  # writing the new file failed (a full disk, say): nothing has moved yet
        raise StoreError(describe(exc, fresh)) from None
    finally:
        for leftover in (fresh, scratch):
            for name in (leftover, Path(f"{leftover}-wal"), Path(f"{leftover}-shm"), Path(f"{leftover}-journal")):
                name.unlink(missing_ok=True)


def _sqlite3_recover(path: Path, scratch: Path) -> bool:
    """The sqlite3 program's `.recover`, loaded into a scratch database; False if there is no sqlite3
    program, or its .recover fails (builds without the sqlite_dbpage table, such as Debian's 3.40)."""
    program = shutil.which("sqlite3")
    if program is None:
        return False
    try:
        done = subprocess.run([program, "-readonly", str(path), ".recover"], capture_output=True,
                              timeout=RECOVER_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0 or b"CREATE TABLE" not in done.stdout:
        return False
    db = sqlite3.connect(scratch, isolation_level=None)
    try:
        db.executescript(done.stdout.decode("utf-8", "surrogateescape"))
        return True
    except sqlite3.Error:
        return False
    finally:
        db.close()


def _copy(source: Path, fresh: Path) -> tuple[int, int]:
    """Copy every row that can be read from source into a new database with chatcli's schema:
    (sessions, messages) copied. The columns both schemas have are copied, so an older schema's
    rows come over too; the full-text index is built by the new database's own triggers."""
    store = Store.open(fresh)
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        store.close()
        raise StoreError(f"{source} cannot be opened ({exc})") from None
    counts: dict[str, int] = {}
    try:
        tables = [row[0] for row in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE 'messages_fts%' ORDER BY rootpage")]
        for table in tables:  # in the order they were created: sessions before the rows that name them
            counts[table] = _copy_table(src, store.db, table, source)
    finally:
        src.close()
        store.close()
    return counts.get("sessions", 0), counts.get("messages", 0)


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, source: Path) -> int:
    """Copy a table's readable rows in rowid order, stepping past pages that cannot be read."""
    try:
        have = [row[1] for row in src.execute(f'PRAGMA table_info("{table}")')]
    except sqlite3.Error:
        return 0
    columns = [row[1] for row in dst.execute(f'PRAGMA table_info("{table}")') if row[1] in have]
    if not columns:
        return 0
    names = ", ".join(f'"{c}"' for c in columns)
    insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    select = f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid'
    copied, after = 0, -(1 << 63)
    dst.execute("BEGIN")
    try:
        while after is not None:
            try:
                for row in src.execute(select, (after,)):
                    after = row[0]
                    try:
                        copied += dst.execute(insert, row[1:]).rowcount
                    except sqlite3.IntegrityError:
                        pass  # a message whose session was lost, or a row that breaks a rule
                break
            except sqlite3.DatabaseError as exc:
                if kind_of(exc, source) != DAMAGED:
                    break
                after = _readable_after(src, select, after)
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    return copied


def _readable_after(src: sqlite3.Connection, select: str, failed: int) -> int | None:
    """The first rowid past `failed` from which rows can be read again (the start of the next page
    that can be), or None: steps of 1, 2, 4… find a place that reads, then halving finds the first."""

    def reads(after: int) -> bool:
        try:
            src.execute(select + " LIMIT 1", (after,)).fetchall()
            return True
        except sqlite3.DatabaseError:
            return False

    step, last = 1, (1 << 63) - 1
    while not reads(min(failed + step, last)):
        if failed + step >= last:
            return None
        step *= 2
    low, high = failed + step // 2, min(failed + step, last)  # reading after low failed; after high works
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reads(middle) else (middle, high)
    return high


def _move_aside(path: Path, kept: Path) -> None:
    """Rename the damaged file, and its write-ahead log with it (left behind, the log would be read
    into the new file); its shared-memory index is rebuilt from the log, so it goes."""
    os.replace(path, kept)
    wal = Path(f"{path}-wal")
    if wal.exists():
        os.replace(wal, Path(f"{kept}-wal"))
    Path(f"{path}-shm").unlink(missing_ok=True)
