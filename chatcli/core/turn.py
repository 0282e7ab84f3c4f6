"""One exchange, the user's message and the reply however far it got, and what its end means."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chatcli.base.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, ChatError
from chatcli.base.events import Event, Finish, FromCache, ReasoningDelta, Served, TextDelta, ToolCall, Usage
from chatcli.base.images import Image
from chatcli.llm.tokens import Count

PENDING = "pending"  # no reply recorded (yet, or ever: the program was killed)
COMPLETE = "complete"
INTERRUPTED = "interrupted"
ERROR = "error"
TRUNCATED = "truncated"
SUMMARY_HEADING = "Summary of the earlier conversation:\n"


# Seconds without a token, mid-reply, after which the reply has stalled: the renderers say so, and
# the time past this is not generation time (a llama-server sent SIGTERM stops mid-reply and holds
# the connection open for 30 s).
STALL_S = 3.0


def left_out_notice(turn: Turn) -> str | None:
    if not turn.left_out:
        return None
    n = turn.left_out
    return f"left out the {'oldest turn' if n == 1 else f'{n} oldest turns'} to fit the context window (still in the history)"


def finish_notice(turn: Turn) -> str | None:
    """What a complete reply's finish_reason means for the reader, when it is not a plain stop.

    A length finish with no max_tokens set is the context window filling up: the
    server stops when prompt and reply together reach it.
    """
    if turn.finish_reason == "length" and not turn.params.get("max_tokens"):
        used = turn.usage.prompt_tokens + turn.usage.completion_tokens if turn.usage else 0
        if turn.window and used >= 0.9 * turn.window:
            return (f"the reply filled the model's {turn.window:,}-token context window, so it is cut short; "
                    "/compact or /clear frees room")
        return "the reply reached the server's limit on its length (max_tokens), so it may be cut short"
    return {
        "length": "the reply reached the max_tokens limit, so it may be cut short",
        "content_filter": "the server's content filter stopped the reply, so it may be cut short",
    }.get(turn.finish_reason or "")


@dataclass
class Turn:
    """One exchange: the user's message and the reply, however far it got."""

    user: str
    model: str
    params: dict[str, Any]
    reply: str = ""
    reasoning: str = ""  # what a reasoning model streamed before its answer; kept, never sent back
    status: str = PENDING
    finish_reason: str | None = None
    usage: Usage | None = None
    error: ChatError | None = None
    first_token_s: float | None = None
    total_s: float | None = None
    stalled_s: float = 0.0  # of total_s, the time past STALL_S in each wait for a token mid-reply
    created_at: float = field(default_factory=time.time)
    ids: list[int] = field(default_factory=list)  # its rows in the store
    left_out: int = 0  # the oldest turns not sent with it, to fit the context window
    sent: Count | None = None  # our count of what was sent, for an estimate when the server reports no usage
    notice: str | None = None  # something to tell the user about this turn (a budget nearly used up)
    window: int | None = None  # the context window it was fitted to
    asked: str | None = None  # the model asked for, when the server named another (`model` is the server's)
    estimated: int = 0  # our uncorrected estimate of what was sent, which the server's count corrects
    images: list[Image] = field(default_factory=list)  # sent with the user's message, after its text
    filtered: bool = False  # the reply holds a blocked word (config block_words): saved, never shown as it is
    cached: bool = False  # answered from the response cache (core/cache.py): no request made, nothing billed
    # Tool calling (core/toolloop.py): the calls the latest round of the reply ended with, still to run,
    # and the exchange's steps so far, as wire messages (the assistant's tool_calls, one `tool` message
    # per call with its `_shown` record: name, arguments, status, seconds), sent again with later turns.
    calls: list[ToolCall] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def sent_steps(self) -> list[dict[str, Any]]:
        """The steps as the API takes them: without what is kept for the user (`_shown`)."""
        return [{k: v for k, v in step.items() if not k.startswith("_")} for step in self.steps]

    @property
    def partial(self) -> bool:
        return self.status != COMPLETE

    @property
    def in_context(self) -> bool:
        """Sent again with later turns: anything the model said, even partly.

        A turn that failed before any text arrived is left out, so that sending
        the same message again does not repeat it in the conversation.
        """
        return bool(self.reply or self.steps)


KEPT = " (partial reply kept)"  # said of a turn that ended early with some reply


@dataclass(frozen=True)
class Sentence:
    """One thing to tell the user about a turn: a notice, or an error (a whole sentence already)."""

    text: str
    error: bool = False

    @property
    def line(self) -> str:
        """As a line on its own (one-shot mode's stderr): a notice ends with a full stop."""
        return self.text if self.error else self.text + "."


@dataclass(frozen=True)
class Outcome:
    """A finished turn's end as data: what to tell the user, and the exit code one-shot mode ends with.

    Both front ends take it from outcome_of, so they say the same words for the same end; the
    REPL draws each sentence on the screen, one-shot mode writes each as a line on stderr.
    """

    status: str
    notes: tuple[Sentence, ...]  # about the turn, whatever its end: turns left out, a budget, estimates
    end: Sentence | None  # how it ended, when that is worth saying (a plain complete reply is not)
    partial: bool  # the reply is not whole; what arrived is kept
    exit_code: int

    @property
    def sentences(self) -> tuple[Sentence, ...]:
        return self.notes if self.end is None else (*self.notes, self.end)


def outcome_of(turn: Turn, *, estimates: str | None = None) -> Outcome:
    """What a finished turn means for the user: the one place its end is put into words.

    `estimates`: why token counts are estimates, when that is to be said (-v).
    """
    notes = [Sentence(text) for text in (left_out_notice(turn), turn.notice) if text]
    if estimates:
        notes.append(Sentence(f"token counts are estimates (≈): {estimates}"))
    end, code = _end_of(turn)
    if turn.filtered and code == EXIT_OK:  # the reply was withheld: a script gets no answer
        code = EXIT_FAILURE
    return Outcome(turn.status, tuple(notes), end, turn.partial, code)


def _end_of(turn: Turn) -> tuple[Sentence | None, int]:
    """The sentence about how the turn ended, and its exit code."""
    if turn.status == COMPLETE:
        if turn.finish_reason == "length" and not turn.reply.strip():  # a script must not take this for an answer
            spent = " on reasoning" if turn.reasoning else ""
            return Sentence(f"The model used its whole max_tokens limit{spent} before it wrote any answer; raise it "
                            "with --max-tokens or /set max_tokens (reasoning models need room to think), and ask "
                            "again.", error=True), EXIT_FAILURE
        notice = finish_notice(turn)
        return (Sentence(notice) if notice else None), EXIT_OK
    if turn.status == INTERRUPTED:
        return Sentence("interrupted" + (KEPT if turn.reply else "")), EXIT_INTERRUPTED
    if turn.status == ERROR and turn.error is not None:
        return Sentence(_kept(turn.error.message, turn), error=True), turn.error.exit_code
    return Sentence(_kept("The reply stopped before the server said it was finished, so it may be cut short; "
                          "try again.", turn), error=True), EXIT_FAILURE


def _kept(sentence: str, turn: Turn) -> str:
    """A failure's sentence, saying inside it that the reply so far is kept, when some came."""
    return sentence.removesuffix(".") + KEPT + "." if turn.reply else sentence


class ReplyIn:
    """A reply as it arrives: its text and reasoning, when its first token came, how long it stalled."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.started = time.monotonic()
        self.pieces: list[str] = []
        self.thoughts: list[str] = []
        self.last_token: float | None = None

    def take(self, event: Event) -> None:
        turn = self.turn
        if isinstance(event, (TextDelta, ReasoningDelta)):
            now = time.monotonic()
            if self.last_token is not None:
                turn.stalled_s += max(0.0, now - self.last_token - STALL_S)
            self.last_token = now
            if turn.first_token_s is None:  # a reasoning model's first token is its first thought
                turn.first_token_s = now - self.started
            (self.pieces if isinstance(event, TextDelta) else self.thoughts).append(event.text)
        elif isinstance(event, Usage):
            turn.usage = event
        elif isinstance(event, Finish):
            turn.finish_reason = event.reason
        elif isinstance(event, ToolCall):
            turn.calls.append(event)
        elif isinstance(event, Served) and event.model != turn.model:
            turn.asked, turn.model = turn.model, event.model
        elif isinstance(event, FromCache):
            turn.cached = True

    def end(self, held: str, held_thoughts: str) -> None:
        """The reply as it stands when the stream ends, however it ended."""
        turn = self.turn
        turn.reply = "".join(self.pieces) + held
        turn.reasoning = "".join(self.thoughts) + held_thoughts
        turn.total_s = time.monotonic() - self.started
        if self.last_token is not None:  # a stall that ended the reply (its end, or a Ctrl-C) counts too
            turn.stalled_s += max(0.0, time.monotonic() - self.last_token - STALL_S)
