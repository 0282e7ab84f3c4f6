"""Rebuilding a saved session from the store: its state, its turns, what /clear left out, what it spent.

Besides app.py, the one place that builds a Session: one to read (`chatcli sessions`, with no
client), and load_session's. app.py takes the conversation alone (load_conversation).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from chatcli.base.errors import ChatError, one_line
from chatcli.base.events import Usage
from chatcli.core.accounts import COMPACTION, UNDONE, OtherCost
from chatcli.core.conversation import Conversation
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, Turn
from chatcli.llm.tokens import Count

if TYPE_CHECKING:
    from chatcli.core.journal import Journal
    from chatcli.llm.client import ChatClient
    from chatcli.store.db import SessionInfo, Spend, StoredMessage


def load_session(journal: Journal, session_id: int, *, client: ChatClient | None) -> Session:
    """A saved session from the store, ready to go on."""
    return Session(client=client, conversation=load_conversation(journal, session_id))


def load_conversation(journal: Journal, session_id: int) -> Conversation:
    """A saved conversation from the store, ready to go on (app.py swaps it into a session)."""
    if not journal.saving:
        raise ChatError("History is not being saved, so there is no session to resume.")
    found = journal.load(session_id)
    if found is None:
        raise ChatError(f"There is no saved session {session_id}; `chatcli sessions list` shows them.")
    info, messages, spends = found
    return restore_conversation(info, messages, journal=journal.fork(), spends=spends)


def restore_session(
    info: SessionInfo, messages: list[StoredMessage], *, client: ChatClient | None, journal: Journal,
    spends: list[Spend] = (),
) -> Session:
    """Rebuild a saved session exactly: its state, its turns, what /clear left out, what it spent.

    With client None it is for reading (`chatcli sessions`): its accounts count as /usage does."""
    return Session(client=client, conversation=restore_conversation(info, messages, journal=journal, spends=spends))


def restore_conversation(
    info: SessionInfo, messages: list[StoredMessage], *, journal: Journal, spends: list[Spend] = (),
) -> Conversation:
    """A saved conversation as it was: its state, its turns, what /clear left out, what it spent."""
    conversation = Conversation(
        model=info.model, system=info.system, params=dict(info.params), title=info.title, summary=info.summary,
    )
    turn: Turn | None = None
    missing: list[str] = []
    for message in messages:
        if message.role == "user":
            turn = Turn(user=message.content, model=info.model, params={}, created_at=message.created_at,
                        images=list(message.images))
            missing += message.missing_images
            if message.sent_tokens is not None:
                turn.sent = Count(message.sent_tokens, message.sent_exact)
            # status stays "pending" unless a reply follows: the program stopped here
            turn.ids.append(message.id)
            conversation.turns.append(turn)
            if message.id < info.context_from:
                conversation.context_start = len(conversation.turns)
        elif turn is not None and len(turn.ids) == 1:
            turn.reply = message.content
            turn.reasoning = message.reasoning or ""
            turn.filtered = message.filtered
            turn.cached = message.cached  # answered from the response cache: it cost nothing
            turn.steps = [dict(step) for step in message.steps]  # its tool calls and results, sent again as they were
            turn.status = message.status or COMPLETE
            turn.finish_reason = message.finish_reason
            turn.model = message.model or info.model
            turn.params = message.params
            turn.usage = Usage(**message.usage) if message.usage else None
            turn.error = ChatError(message.error) if message.error else None
            turn.first_token_s = message.first_token_ms / 1000 if message.first_token_ms is not None else None
            turn.total_s = message.total_ms / 1000 if message.total_ms is not None else None
            turn.ids.append(message.id)
    journal.session_id = info.id
    conversation.journal = journal
    if missing:
        journal.notice(_missing_notice(info.id, missing))
    replies = {turn.ids[-1]: turn for turn in conversation.turns if len(turn.ids) > 1}
    for spend in spends:  # what was paid for replies no longer here, and for summaries
        if spend.kind == "turn" and spend.message_id in replies:
            # Counted with its turn; the provider's own cost of it is kept in the ledger alone.
            turn = replies[spend.message_id]
            if spend.cost_source == "provider" and turn.usage is not None:
                turn.usage = replace(turn.usage, cost=spend.cost_usd)
            continue
        usage = Usage(spend.prompt_tokens, spend.completion_tokens, spend.total_tokens, spend.cached_tokens,
                      spend.reasoning_tokens, spend.cost_usd if spend.cost_source == "provider" else None)
        what = COMPACTION if spend.kind == "compact" else UNDONE
        conversation.spent_elsewhere.append(OtherCost(what, spend.model, usage, spend.cost_usd, not spend.estimated))
    return conversation


def _missing_notice(session_id: int, names: list[str]) -> str:
    """One sentence for every image of a session that is no longer in the database."""
    shown = ", ".join(one_line(name, 60) for name in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    which = f"the image {shown} is" if len(names) == 1 else f"{len(names)} images ({shown}) are"
    return (f"In session {session_id}, {which} no longer in the history database; the session goes on without "
            f"{'it' if len(names) == 1 else 'them'}.")
