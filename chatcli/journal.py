"""Keeps a session on disk as it happens, and never lets the disk stop a chat.

The session row is created with the first message (so opening chatcli and
quitting leaves nothing behind); the user's message is committed before the
request goes out, and the reply when it ends. If the database fails, the
Journal says why once and stops saving, and the conversation goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from chatcli.store import (
    Spend,
    Spent,
    Store,
    StoredMessage,
    StoreError,
    describe,
    is_store_error,
)

if TYPE_CHECKING:
    from chatcli.session import Session, Turn

TITLE_LENGTH = 60


def make_title(text: str) -> str:
    """A title from the first user message: its first line, cut short."""
    line = next((part for part in text.splitlines() if part.strip()), "").strip()
    line = " ".join(line.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class Journal:
    """A session's writer; with keep_text=False (incognito with a budget) it keeps only the usage ledger."""

    def __init__(self, store: Store | None = None, *, problem: str | None = None, keep_text: bool = True) -> None:
        self.store = store
        self.keep_text = keep_text
        self.session_id: int | None = None
        self._warning = f"{self._not_saved}: {problem}." if problem else None

    @property
    def _not_saved(self) -> str:
        """The start of the sentence that says the database failed: what is no longer kept."""
        return "History is not being saved" if self.keep_text else "Spending is not being recorded for budgets"

    @classmethod
    def open(cls, path: Path, *, keep_text: bool = True) -> Journal:
        try:
            return cls(Store.open(path), keep_text=keep_text)
        except StoreError as exc:
            return cls(None, problem=str(exc), keep_text=keep_text)

    def fork(self) -> Journal:
        """A journal for another session in the same store."""
        journal = Journal(self.store, keep_text=self.keep_text)
        journal._warning = self._warning
        return journal

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
        return self.store is not None and self.keep_text

    def _read(self, action) -> object:
        return self._run(action) if self.keep_text else None

    def take_warning(self) -> str | None:
        """The one-time sentence about history not being saved, if there is one to show."""
        warning, self._warning = self._warning, None
        return warning

    def _run(self, action) -> object:
        if self.store is None:
            return None
        try:
            return action(self.store)
        except Exception as exc:  # noqa: BLE001 - only database failures are expected here
            if not is_store_error(exc):
                raise
            path = self.store.path
            self._warning = f"{self._not_saved}: {describe(exc, path)}."
            try:
                self.store.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass
            self.store = None
            return None

    def _ensure_session(self, session: Session, first_text: str) -> int | None:
        if self.session_id is None and self.keep_text:
            self.session_id = self._run(
                lambda s: s.create_session(
                    model=session.model,
                    system=session.system,
                    params=session.params,
                    title=session.title or make_title(first_text),
                    profile=session.client.config.profile if session.client is not None else None,
                )
            )
        return self.session_id

    def user_message(self, session: Session, turn: Turn) -> None:
        """Commit the user's words before anything is sent."""
        if self._ensure_session(session, turn.user) is None:
            return
        message = StoredMessage(
            id=0, role="user", content=turn.user, created_at=turn.created_at,
            sent_tokens=turn.sent.tokens if turn.sent else None, sent_exact=turn.sent.exact if turn.sent else True,
        )
        row = self._run(lambda s: s.add_message(self.session_id, message))
        if row:
            turn.ids.append(row)

    def spend(self, spend: Spend) -> None:
        """Add a reply's tokens and cost to the usage ledger."""
        self._run(lambda s: s.add_spend(spend))

    def spend_since(self, since: float) -> Spent | None:
        """What every session spent since a time; None when there is no ledger."""
        return self._run(lambda s: s.spend_since(since))

    def claim_notice(self, name: str, period_start: float) -> bool | None:
        """True if this budget notice has not been given this period (and now counts as given); None: no ledger."""
        return self._run(lambda s: s.claim_notice(name, period_start))

    def reply(self, turn: Turn) -> None:
        """Commit the reply as it ended: complete, interrupted, error or truncated."""
        if self.session_id is None:
            return
        usage = None
        if turn.usage is not None:
            u = turn.usage
            usage = {
                "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens, "cached_tokens": u.cached_tokens, "reasoning_tokens": u.reasoning_tokens,
            }
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
        )
        row = self._run(lambda s: s.add_message(self.session_id, message))
        if row:
            turn.ids.append(row)

    def state_changed(self, session: Session, what: str) -> None:
        """Record a new system prompt, model, parameters or profile, so a resumed session has them."""
        if self.session_id is None:
            return  # nothing saved yet: the row is created with the current state
        profile = session.client.config.profile if session.client is not None else None
        self._run(
            lambda s: s.update_session(
                self.session_id, event=what, model=session.model, system=session.system, params=session.params,
                profile=profile,
            )
        )

    def cleared(self) -> None:
        if self.session_id is None:
            return
        self._run(
            lambda s: s.update_session(
                self.session_id, event="clear", context_from=s.clear_boundary(self.session_id), summary=None
            )
        )

    def compacted(self, summary: str, first_kept: Turn | None) -> None:
        """Save a /compact: the summary, and where the turns sent verbatim begin."""
        if self.session_id is None:
            return

        def save(s: Store) -> None:
            start = first_kept.ids[0] if first_kept and first_kept.ids else s.clear_boundary(self.session_id)
            s.update_session(self.session_id, event="compact", context_from=start, summary=summary)

        self._run(save)

    def retitle(self, title: str) -> None:
        """A new title; before the first message, the session's title is used when the row is made."""
        if self.session_id is not None:
            self._run(lambda s: s.update_session(self.session_id, event="title", title=title))

    def forget(self, turn: Turn) -> None:
        """Delete a turn's messages (/undo, /retry)."""
        ids = list(turn.ids)
        turn.ids.clear()
        self._run(lambda s: s.delete_messages(ids))


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)
