"""A conversation and the turn runner, shared by the REPL and one-shot mode.

A Session holds the system prompt, the turns so far, the model and the
sampling parameters. `send` runs one turn: it records the user's message
before anything goes out, streams the reply through the client, and keeps
whatever arrived, marked, when the reply is interrupted or breaks off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from chatcli.errors import ChatError
from chatcli.events import Event, Finish, TextDelta, Usage

if TYPE_CHECKING:
    from chatcli.client import ChatClient

COMPLETE = "complete"
INTERRUPTED = "interrupted"
ERROR = "error"
TRUNCATED = "truncated"


@dataclass
class Turn:
    """One exchange: the user's message and the reply, however far it got."""

    user: str
    model: str
    params: dict[str, Any]
    reply: str = ""
    status: str = "pending"
    finish_reason: str | None = None
    usage: Usage | None = None
    error: ChatError | None = None
    first_token_s: float | None = None
    total_s: float | None = None

    @property
    def partial(self) -> bool:
        return self.status != COMPLETE

    @property
    def in_context(self) -> bool:
        """Sent again with later turns: anything the model said, even partly.

        A turn that failed before any text arrived is left out, so that sending
        the same message again does not repeat it in the conversation.
        """
        return bool(self.reply)


@dataclass
class Session:
    client: ChatClient
    model: str
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)  # every turn, also those /clear left behind
    context_start: int = 0  # turns before this index are no longer sent

    @property
    def temperature(self) -> float | None:
        return self.params.get("temperature")

    def messages(self, pending: str | None = None) -> list[dict[str, str]]:
        """The conversation as the API wants it, optionally with a new user message."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        for turn in self.context_turns:
            if turn.in_context:
                out.append({"role": "user", "content": turn.user})
                out.append({"role": "assistant", "content": turn.reply})
        if pending is not None:
            out.append({"role": "user", "content": pending})
        return out

    @property
    def context_turns(self) -> list[Turn]:
        """The turns the next request builds on."""
        return self.turns[self.context_start :]

    def clear(self) -> None:
        """Stop sending the history; the system prompt, model and parameters stay.

        The turns themselves are kept: their tokens were spent, and /usage counts them.
        """
        self.context_start = len(self.turns)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for turn in self.turns:
            if turn.usage:
                total = total + turn.usage
        return total

    def send(self, text: str, *, on_event: Callable[[Event], None] | None = None) -> Turn:
        """Run one turn. Ctrl-C and errors end it early; what arrived is kept and marked."""
        messages = self.messages(pending=text)
        turn = Turn(user=text, model=self.model, params=dict(self.params))
        self.turns.append(turn)
        started = time.monotonic()
        pieces: list[str] = []
        events = self.client.stream(model=self.model, messages=messages, params=turn.params)
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    if turn.first_token_s is None:
                        turn.first_token_s = time.monotonic() - started
                    pieces.append(event.text)
                elif isinstance(event, Usage):
                    turn.usage = event
                elif isinstance(event, Finish):
                    turn.finish_reason = event.reason
                if on_event is not None:
                    on_event(event)
            turn.status = COMPLETE if turn.finish_reason else TRUNCATED
        except KeyboardInterrupt:
            turn.status = INTERRUPTED
        except ChatError as exc:
            turn.status = ERROR
            turn.error = exc
        finally:
            events.close()  # type: ignore[attr-defined]
            turn.reply = "".join(pieces)
            turn.total_s = time.monotonic() - started
        return turn
