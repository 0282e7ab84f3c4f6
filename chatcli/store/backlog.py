"""Writes the history database could not take yet, held in order until it can.

A full disk, or another program holding the database's lock past the busy
timeout, stops a write but not the chat: the write waits here, in memory, with
every write after it, and a background thread tries them again every RETRY_S
seconds. Once they are all written, the next sentence the journal gives says
that history is being saved again. Damage, and a file that cannot be written,
do not pass by themselves: those stop saving for the rest of the run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import chatcli.store.db as store_module
from chatcli.store.db import (
    FULL,
    PASSING,
    Spend,
    Store,
    StoreError,
    describe,
    is_store_error,
)

RETRY_S = 2.0  # between tries of what is held back
RETRY_WAIT_MS = 250  # how long a try in the background waits for a lock: short, so reads do not queue behind it


@dataclass
class Held:
    """One write waiting for the database; a spend counts against budgets while it waits."""

    write: Callable[[Store], object]
    spend: Spend | None = None


class Backlog:
    """The store a run writes to, shared by the journals of its sessions (/new, /resume), and
    the writes it could not take yet.

    Two locks: `_use` for every use of the store (a write, a read, a try in the background), and
    `_state` for what is held and why, which a write while the database is failing only appends
    to: the chat never waits on a try in the background. `_use` is always taken first.
    """

    def __init__(self, path: Path, store: Store | None, *, keep_text: bool = True,
                 failure: StoreError | None = None) -> None:
        self.path = path
        self.store = store
        self.keep_text = keep_text
        self.held: list[Held] = []
        self.reason: str | None = None  # why writes are held back, or stopped
        self.stopped = False  # the database will not heal by itself: nothing more is written or read
        self.warning: str | None = None  # the sentence to say next, once
        self.writable = False  # a write is known to work here (budgets check, once, before counting on it)
        self._use = threading.RLock()
        self._state = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if failure is not None:
            self._failed(failure.kind, str(failure))

    def write(self, write: Callable[[Store], object], *, spend: Spend | None = None) -> None:
        """Write now, or after what is held back already (in the background, once it can be)."""
        with self._state:
            if self.stopped:
                return
            self.held.append(Held(write, spend))
            if self.reason is not None:
                self._retry_later()
                return
        with self._use:
            self._flush()

    def read(self, action: Callable[[Store], object]) -> object:
        """action(store) now; StoreError, with a sentence's reason, when the database cannot do it."""
        with self._use:
            if not self.stopped and self.store is None:
                self._open()
            if self.stopped or self.store is None:
                raise StoreError(self.reason or f"{self.path} cannot be opened")
            try:
                return action(self.store)
            except Exception as exc:  # noqa: BLE001 - only database failures are expected here
                if not is_store_error(exc):
                    raise
                kind = self.store.kind_of(exc)
                reason = describe(exc, self.path, kind)
                if kind not in PASSING:
                    self._failed(kind, reason)  # damage found by a read stops the writes too
                raise StoreError(reason, kind=kind) from None

    def held_spends(self) -> list[Spend]:
        with self._state:
            return [held.spend for held in self.held if held.spend is not None]

    def take_warning(self) -> str | None:
        with self._state:
            warning, self.warning = self.warning, None
            return warning

    def settle(self) -> None:
        """At the end of a run: one last try at what is held back, and if it fails, say it is lost."""
        self._stop.set()
        with self._use:
            if self.stopped or not self.held:
                return
            self._flush()
            with self._state:
                if self.held:
                    lost = ("The turns held back were not saved" if self.keep_text
                            else "The spending held back was not recorded")
                    self.warning = f"{lost}: {self.reason}."

    # --- with _use held ---

    def _open(self) -> bool:
        try:
            self.store = Store.open(self.path)
            return True
        except StoreError as exc:
            self._failed(exc.kind, str(exc))
            return False

    def _flush(self) -> bool:
        """Write what is held, in order, until it is all written (True) or a write fails."""
        if self.store is None and not self._open():
            return False
        while True:
            with self._state:
                if not self.held:
                    self._recovered()
                    return True
                head = self.held[0]
            try:
                head.write(self.store)
            except Exception as exc:  # noqa: BLE001 - only database failures are expected here
                if not is_store_error(exc):
                    self._done_with(head)
                    raise
                kind = self.store.kind_of(exc)
                self._failed(kind, describe(exc, self.path, kind))
                return False
            self._done_with(head)

    def _done_with(self, head: Held) -> None:
        with self._state:
            if self.held and self.held[0] is head:
                self.held.pop(0)

    def _failed(self, kind: str, reason: str) -> None:
        """A full disk or a lock: hold writes back and retry. Anything else: stop, and say why."""
        not_saved = "History is not being saved" if self.keep_text else "Spending is not being recorded for budgets"
        with self._state:
            if kind in PASSING:
                if self.reason is None:
                    what = "the turns held back are saved" if self.keep_text else "the spending held back is recorded"
                    self.warning = (f"{not_saved} for now: {reason}, and {what} then." if kind == FULL
                                    else f"{not_saved} for now: {reason}; {what} once it is free.")
                self.reason = reason
                self._retry_later()
                return
            self.stopped, self.reason, self.warning = True, reason, f"{not_saved}: {reason}."
            self.held.clear()
        if self.store is not None:
            try:
                self.store.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass
            self.store = None

    # --- with _state held ---

    def _recovered(self) -> None:
        if self.reason is None:
            return
        # Said only to someone told it was not: a failure not yet said has nothing left to say.
        told = self.warning is None
        self.reason, self.warning = None, None
        if told:
            self.warning = (
                "History is being saved again, and the turns held back are saved" if self.keep_text
                else "Spending is being recorded for budgets again, and what was held back is recorded"
            ) + "."

    def _retry_later(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._retry, name="chatcli-backlog", daemon=True)
            self._thread.start()

    # --- the background thread ---

    def _retry(self) -> None:
        done = False
        while not done and not self._stop.wait(RETRY_S):
            with self._use:
                try:
                    if self.store is not None:  # wait briefly for a lock here, and try again soon
                        self.store.db.execute(f"PRAGMA busy_timeout = {min(RETRY_WAIT_MS, store_module.BUSY_TIMEOUT_MS)}")
                    done = self.stopped or self._flush()
                except Exception:  # noqa: BLE001 - a bug in a write, not the database: leave it be
                    done = True
                finally:
                    if self.store is not None:
                        try:
                            self.store.db.execute(f"PRAGMA busy_timeout = {store_module.BUSY_TIMEOUT_MS}")
                        except Exception:  # noqa: BLE001 - the next use says what is wrong
                            pass
        with self._state:
            self._thread = None
            if self.held and self.reason is not None:
                self._retry_later()  # the database failed again as this thread was ending
