"""/compact: the model summarises the older turns into one message, sent in their place from then on.

The turns stay in the history and the store. A conversation too long for one
summary request is summarised in parts, each fitted to the model's window, and
the summary so far goes along with the next part. A single turn too long for a
request on its own is shortened, its middle cut, and the summary says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from chatcli.base.errors import ChatError
from chatcli.base.events import NOTICES, Adjusted, Event, Finish, TextDelta, Usage
from chatcli.base.pii import hide_known
from chatcli.core.session import Session
from chatcli.core.turn import SUMMARY_HEADING, Turn
from chatcli.llm.tokens import MESSAGE_OVERHEAD, Count

COMPACT_PROMPT = (
    "Summarise the conversation below for your own later use: keep every fact, decision, name, number, "
    "code identifier and open question; drop pleasantries. Write it as compact notes."
)
EARLIER = "Summary of what came before:\n"
SEPARATOR = "\n\n"
CUT = "\n[… {n:,} characters cut here to fit the context window …]\n"
MIN_ROOM = 64  # tokens of conversation a summary request must be able to carry


@dataclass(frozen=True)
class Compaction:
    turns: int  # how many turns the summary replaced
    before: Count  # the next request's tokens, before and after
    after: Count
    requests: int  # summary requests made: more than one when the turns did not fit one request
    shortened: int  # turns cut to fit a request on their own
    notice: str | None = None  # a budget warning one of the requests brought (given once, so shown here)


def compact(session: Session, *, keep: int = 2, on_event: Callable[[Event], None] | None = None) -> Compaction:
    """Have the model summarise all but the last `keep` turns. `on_event` hears what the summary
    requests say as it happens (a retry, before its wait); their changes to fit a model are told in the result."""
    turns = [t for t in session.context_turns if t.in_context]
    older, kept = (turns[:-keep], turns[-keep:]) if keep else (turns, [])
    if not older:
        raise ChatError(f"Nothing to compact: the conversation has {len(turns)} turns, and /compact keeps {keep}.")
    before = session.plan().tokens
    pieces = [f"User: {t.user}{_with_images(t)}\n\nAssistant: {t.reply}" for t in older]
    summary, requests, shortened, notices = session.summary, 0, 0, []
    while pieces:
        prefix = f"{EARLIER}{summary}{SEPARATOR}" if summary else ""
        room = _room(session, prefix)
        if room < MIN_ROOM:  # a summary longer than asked for (our count is an estimate, or the server ignored max_tokens)
            raise _no_room(session)
        chunk, taken = _take(session, pieces, room)
        if not taken:  # one turn alone is too long for a request: keep its start and end
            chunk, taken = _shorten(session, pieces[0], room), 1
            shortened += 1
        if taken < len(pieces) and _room(session, EARLIER + SEPARATOR) - session.reply_reserve() < MIN_ROOM:
            # More parts to come, each beside a summary of up to the reply's reserve (its max_tokens):
            # if that leaves no room, say so before spending anything.
            raise _no_room(session)
        del pieces[:taken]
        summary = _summarise(session, prefix + chunk, notices, on_event)
        requests += 1
    assert summary is not None
    t, model = session.tokenizer, session.model
    replaced = t.message(model, "system", SUMMARY_HEADING + session.summary).tokens if session.summary else 0
    replaced += sum(t.message(model, "user", x.user).tokens + t.message(model, "assistant", x.reply).tokens
                    + (session.image_tokens(x.images) or Count(0)).tokens for x in older)
    new = t.message(model, "system", SUMMARY_HEADING + summary).tokens
    if new >= replaced:
        raise ChatError(
            f"The summary came back no shorter than the {len(older)} turns it would replace "
            f"({new:,} tokens against {replaced:,}), so nothing was compacted."
        )
    session.summary = summary
    session.context_start = session.turns.index(kept[0]) if kept else len(session.turns)
    session.journal.compacted(summary, kept[0] if kept else None)
    return Compaction(len(older), before, session.plan().tokens, requests, shortened, "; ".join(notices) or None)


def _with_images(turn: Turn) -> str:
    """A summary is text: the images a turn carried are named in it, and not sent again."""
    if not turn.images:
        return ""
    return f"\n[{len(turn.images)} {'image' if len(turn.images) == 1 else 'images'} attached: " \
        f"{', '.join(i.name.rsplit('/', 1)[-1] for i in turn.images)}]"


def _no_room(session: Session) -> ChatError:
    window = session.tokenizer.limits(session.model).context_window
    return ChatError(
        f"The context window of {window:,} tokens leaves no room to summarise beside the summary so far, so nothing "
        f"was compacted; lower max_tokens, or set a larger context_window for {session.model} in the config file "
        "if the model has one."
    )


def _request(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": COMPACT_PROMPT}, {"role": "user", "content": text}]


def _tokens(session: Session, text: str) -> int:
    return session.tokenizer.messages(session.model, _request(text)).tokens


def _room(session: Session, prefix: str) -> int:
    """Tokens of conversation one summary request can carry after `prefix`, leaving room for the summary."""
    window = session.tokenizer.limits(session.model).context_window
    return window - session.reply_reserve() - _tokens(session, prefix)


def _take(session: Session, pieces: list[str], room: int) -> tuple[str, int]:
    """As many whole turns from the front as fit in `room` tokens, joined; and how many."""
    t, model = session.tokenizer, session.model
    used, taken = 0, 0
    for piece in pieces:
        # Counted one by one (cached), with a token to spare for each separator; checked whole below.
        size = t.message(model, "user", piece).tokens - MESSAGE_OVERHEAD + 1
        if used + size > room:
            break
        used, taken = used + size, taken + 1
    while taken:
        chunk = SEPARATOR.join(pieces[:taken])
        if _tokens(session, chunk) - _tokens(session, "") <= room:
            return chunk, taken
        taken -= 1
    return "", 0


def _shorten(session: Session, piece: str, room: int) -> str:
    """`piece` with its middle cut so that it fits in `room` tokens."""
    full = _tokens(session, piece) - _tokens(session, "")
    keep = int(len(piece) * room / full * 0.9)
    while True:
        half = keep // 2
        text = piece[:half] + CUT.format(n=len(piece) - 2 * half) + piece[len(piece) - half :]
        if _tokens(session, text) - _tokens(session, "") <= room or keep == 0:
            return text
        keep = int(keep * 0.9)


def _summarise(session: Session, text: str, notices: list[str], on_event: Callable[[Event], None] | None) -> str:
    """One summary request, checked against the budget and counted like any other request."""
    sending = _tokens(session, text)
    refusal, warning = session.accounts.check_budget(session.model, Usage(sending, 0, sending))
    if refusal:
        raise ChatError(refusal)
    if warning:
        notices.append(warning)
    pieces, usage, finish = [], None, None
    # The session's effort too: a reasoning model asked to summarise thinks as hard as it was told to.
    params = {"max_tokens": session.reply_reserve(), "reasoning_effort": session.params.get("reasoning_effort")}
    for event in session.sender.stream(model=session.model, messages=_request(text), params=params):
        if isinstance(event, TextDelta):
            pieces.append(event.text)
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Finish):
            finish = event.reason
        elif isinstance(event, Adjusted):
            notices.append(event.text)
        elif isinstance(event, NOTICES) and on_event is not None:
            on_event(event)  # a retry, said before its wait
    if usage is not None:
        session.accounts.count_request(usage)
    summary = hide_known("".join(pieces), session.policy.secrets).strip()
    if not summary:
        raise ChatError("The model returned an empty summary, so nothing was compacted.")
    if finish not in (None, "stop"):  # a summary cut short would stand in for turns it never reached
        raise ChatError(f"The summary was cut short (finish_reason {finish}), so nothing was compacted; "
                        "/set max_tokens higher, or /compact fewer turns.")
    return summary
