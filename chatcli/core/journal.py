"""Keeps a session on disk as it happens, and never lets the disk stop a chat.

The session row is created with the first message, in one transaction (so
opening chatcli and quitting leaves nothing behind, and a failure leaves no
session without its message); the user's message is committed before the
request goes out, and the reply when it ends. If the database cannot take a
write, the Journal says why once and the conversation goes on: a full disk or
a lock holds the writes back until they can be made (backlog.py); damage stops
saving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatcli.base.errors import ChatError
from chatcli.store.backlog import Backlog
from chatcli.store.db import Spend, Spent, Store, StoredMessage, StoreError

if TYPE_CHECKING:
    from chatcli.core.turn import Turn

TITLE_LENGTH = 60


def make_title(text: str) -> str:
    """A title from the first user message: its first line, cut short."""
    line = next((part for part in text.splitlines() if part.strip()), "").strip()
    line = " ".join(line.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


@dataclass(frozen=True)
class SessionState:
    """What the journal saves of a session besides its turns: enough to resume it as it was."""

    model: str
    system: str | None
    params: dict[str, Any]
    profile: str | None
    title: str | None = None


class Journal:
    """A session's writer; with keep_text=False (incognito with a budget) it keeps only the usage ledger.

    Every write is a function of the store, run now or, while the database cannot take it,
    later and in order: so each reads the session's id and a turn's rows when it runs.
    """

    def __init__(self, store: Store | None = None, *, keep_text: bool = True, backlog: Backlog | None = None) -> None:
        self.backlog = backlog or (Backlog(store.path, store, keep_text=keep_text) if store is not None else None)
        self.keep_text = keep_text
        self.session_id: int | None = None
        self._starting = False  # the session's row is written, or held back to be
        self._notice: str | None = None  # a sentence about what was read back (images gone), said once

    @classmethod
    def open(cls, path: Path, *, keep_text: bool = True) -> Journal:
        try:
            store, failure = Store.open(path), None
        except StoreError as exc:
            store, failure = None, exc
        return cls(keep_text=keep_text, backlog=Backlog(path, store, keep_text=keep_text, failure=failure))

    @property
    def store(self) -> Store | None:
        return self.backlog.store if self.backlog is not None else None

    def fork(self) -> Journal:
        """A journal for another session in the same store (what is held back stays in line)."""
        return Journal(keep_text=self.keep_text, backlog=self.backlog)

    def list_sessions(self, *, limit: int | None = None):
        """Saved sessions, newest first; None when history is not being saved."""
        return self._read(lambda s: s.list_sessions(limit=limit))

    def load(self, session_id: int):
        """(SessionInfo, messages, what it spent) of a saved session, or None if there is no such session."""

        def read(store: Store):
            info = store.session(session_id)
            return (info, store.messages(session_id), store.ledger(session_id=session_id)) if info else None

        return self._read(read)

    def profile_of(self, session_id: int | None) -> str | None:
        """The config profile a saved session was last held with, if any."""
        info = self._read(lambda s: s.session(session_id)) if session_id is not None else None
        return info.profile if info else None

    def last_session_id(self) -> int | None:
        return self._read(lambda s: s.last_session_id())

    @property
    def saving(self) -> bool:
        """Whether conversations are saved (the usage ledger may be kept even when not)."""
        return self.backlog is not None and not self.backlog.stopped and self.keep_text

    @property
    def begun(self) -> bool:
        """Whether the session has a row, written or held back to be."""
        return self.session_id is not None or self._starting

    def _read(self, action) -> object:
        """action(store); None when history is not being saved; ChatError when it cannot be read."""
        if not self.saving:
            return None
        try:
            return self.backlog.read(action)
        except StoreError as exc:
            raise ChatError(f"The saved sessions could not be read: {exc}.") from None

    def _write(self, write, *, spend: Spend | None = None) -> None:
        if self.backlog is not None:
            self.backlog.write(write, spend=spend)

    def take_warning(self) -> str | None:
        """The one-time sentence about history not being saved (or saved again), if there is one to show."""
        said = [self.backlog.take_warning() if self.backlog is not None else None, self._notice]
        self._notice = None
        return " ".join(sentence for sentence in said if sentence) or None

    def notice(self, sentence: str) -> None:
        """A sentence for the next take_warning: something read back is not as it was saved."""
        self._notice = sentence

    def settle(self) -> None:
        """At the end of a run: one last try at writes held back; take_warning says if they are lost."""
        if self.backlog is not None:
            self.backlog.settle()

    def user_message(self, session: SessionState, turn: Turn) -> None:
        """Commit the user's words, and the images sent with them, before anything is sent; the first one
        creates the session's row. Held back (a full disk, a lock), the images wait with the words."""
        if not self.keep_text:
            return
        message = StoredMessage(
            id=0, role="user", content=turn.user, created_at=turn.created_at,
            sent_tokens=turn.sent.tokens if turn.sent else None, sent_exact=turn.sent.exact if turn.sent else True,
            images=tuple(turn.images),
        )
        if self.begun:
            self._write(lambda s: turn.ids.append(s.add_message(self.session_id, message)))
            return
        self._starting = True
        row = dict(
            model=session.model, system=session.system, params=dict(session.params),
            title=session.title or make_title(turn.user), profile=session.profile,
        )

        def start(s: Store) -> None:
            self.session_id, first = s.start_session(message, **row)
            turn.ids.append(first)

        self._write(start)

    def spend(self, spend: Spend, *, reply_of: Turn | None = None) -> None:
        """Add a request's tokens and cost to the usage ledger, with this session's id and the reply it paid for."""

        def write(s: Store) -> None:
            reply = reply_of.ids[-1] if reply_of is not None and len(reply_of.ids) > 1 else spend.message_id
            s.add_spend(replace(spend, session_id=self.session_id, message_id=reply))

        self._write(write, spend=spend)

    def spend_since(self, since: float) -> Spent | None:
        """What every session spent since a time, what is held back included; None when there is no ledger.
        Raises StoreError when there is one and it cannot be read."""
        if self.backlog is None:
            return None
        if not self.backlog.writable:  # a ledger that can be read but not written would count nothing more
            self.backlog.read(lambda s: s.check_writable())
            self.backlog.writable = True
        saved = self.backlog.read(lambda s: s.spend_since(since))
        held = [spend for spend in self.backlog.held_spends() if spend.created_at >= since]
        return Spent(
            saved.usd + sum(spend.cost_usd or 0.0 for spend in held),
            saved.tokens + sum(spend.total_tokens for spend in held),
            saved.unpriced + [spend for spend in held if spend.cost_usd is None],
        )

    def claim_notice(self, name: str, period_start: float) -> bool | None:
        """True if this budget notice has not been given this period (and now counts as given); None: no ledger."""
        if self.backlog is None:
            return None
        try:
            return self.backlog.read(lambda s: s.claim_notice(name, period_start))
        except StoreError:
            return None

    def reply(self, turn: Turn) -> None:
        """Commit the reply as it ended: complete, interrupted, error or truncated."""
        if not self.begun:
            return
        usage = turn.usage.counts() if turn.usage is not None else None
        message = StoredMessage(
            id=0,
            role="assistant",
            content=turn.reply,
            created_at=time.time(),
            status=turn.status,
            finish_reason=turn.finish_reason,
            model=turn.model,
            params=turn.params,
            usage=usage,
            error=turn.error.message if turn.error else None,
            first_token_ms=_ms(turn.first_token_s),
            total_ms=_ms(turn.total_s),
            reasoning=turn.reasoning or None,
            filtered=turn.filtered,
            steps=tuple(turn.steps),
            cached=turn.cached,
        )
        self._write(lambda s: turn.ids.append(s.add_message(self.session_id, message)))

    def state_changed(self, session: SessionState, what: str) -> None:
        """Record a new system prompt, model, parameters or profile, so a resumed session has them."""
        if not self.begun:
            return  # nothing saved yet: the row is created with the current state
        state = dict(model=session.model, system=session.system, params=dict(session.params), profile=session.profile)
        self._write(lambda s: s.update_session(self.session_id, event=what, **state))

    def cleared(self) -> None:
        if not self.begun:
            return
        self._write(
            lambda s: s.update_session(
                self.session_id, event="clear", context_from=s.clear_boundary(self.session_id), summary=None
            )
        )

    def compacted(self, summary: str, first_kept: Turn | None) -> None:
        """Save a /compact: the summary, and where the turns sent verbatim begin."""
        if not self.begun:
            return

        def save(s: Store) -> None:
            start = first_kept.ids[0] if first_kept and first_kept.ids else s.clear_boundary(self.session_id)
            s.update_session(self.session_id, event="compact", context_from=start, summary=summary)

        self._write(save)

    def retitle(self, title: str) -> None:
        """A new title; before the first message, the session's title is used when the row is made."""
        if self.begun:
            self._write(lambda s: s.update_session(self.session_id, event="title", title=title))

    def forget(self, turn: Turn) -> None:
        """Delete a turn's messages (/undo, /retry), once they are written if they are held back."""

        def delete(s: Store) -> None:
            ids = list(turn.ids)
            s.delete_messages(ids)
            del turn.ids[: len(ids)]

        self._write(delete)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)
