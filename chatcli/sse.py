"""The chat-completions stream: SSE lines and JSON chunks into events.

Chunks are read with json, not as the SDK's pydantic objects: several times
cheaper, and it shows what a typed stream hides (a malformed chunk, an in-band
error, a stream that stops without a finish_reason).
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from chatcli.errors import ChatError, ContextLengthError, one_line
from chatcli.events import Event, Finish, ReasoningDelta, Served, TextDelta, Usage
from chatcli.overflow import context_overflow
from chatcli.pii import redact_secrets


def parse_sse(lines: Iterable[str], *, secret: str | None = None) -> Iterator[Event]:
    """Turn the SSE lines of a chat-completions stream into events.

    Data lines are gathered until a blank line, as the SSE format says, so a
    server that splits one event over several `data:` lines still works.
    """
    data: list[str] = []
    named = False  # the first chunk that names a model says which one answered
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line or not data:
            continue  # comments (":keep-alive"), `event:` and `id:` lines
        payload = "\n".join(data)
        data = []
        if payload == "[DONE]":
            return
        events = chunk_events(payload, secret, name_model=not named)
        named = named or bool(events and isinstance(events[0], Served))
        yield from events
    if data and data != ["[DONE]"]:
        yield from chunk_events("\n".join(data), secret, name_model=not named)


MALFORMED = "The server sent a malformed chunk, so the reply stopped there; try again."


def chunk_events(payload: str, secret: str | None, *, name_model: bool = True) -> list[Event]:
    """The events in one chunk; a chunk of the wrong shape is a ChatError, not a crash.

    `name_model`: start with a Served event when the chunk names its model."""
    try:
        chunk = json.loads(payload)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nesting deeper than json can follow
        raise ChatError(MALFORMED) from None
    if not isinstance(chunk, dict):
        raise ChatError(MALFORMED)
    if name_model and isinstance(chunk.get("model"), str) and chunk["model"].strip():
        return [Served(one_line(chunk["model"], 200)), *chunk_events(payload, secret, name_model=False)]
    # Nearly every chunk is one choice carrying a piece of text and nothing else: take it directly.
    choices = chunk.get("choices")
    if type(choices) is list and len(choices) == 1 and not chunk.get("usage") and not chunk.get("error"):
        choice = choices[0]
        delta = choice.get("delta") if type(choice) is dict else None
        if type(delta) is dict and len(delta) <= 2 and not choice.get("finish_reason"):
            content = delta.get("content")
            if type(content) is str and set(delta) <= {"content", "role"}:
                return [TextDelta(content)] if content else []
    error = chunk.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        detail = one_line(redact_secrets(str(message or "no details"), secret))
        if (overflow := context_overflow(chunk, str(message or ""))) is not None:
            raise ContextLengthError(f"The conversation is too long for the model's context window ({detail}).",
                                     window=overflow.window, requested=overflow.requested)
        raise ChatError(f"The server reported an error mid-reply ({detail}); try again.")
    try:
        return list(_events_of(chunk))
    except (AttributeError, TypeError, ValueError, OverflowError):  # OverflowError: a token count of Infinity
        raise ChatError(MALFORMED) from None


def _events_of(chunk: dict) -> Iterator[Event]:
    for choice in chunk.get("choices") or ():
        # `delta` in a stream; `message` in a whole completion from a server that ignored stream=true
        delta = choice.get("delta") or choice.get("message") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            yield ReasoningDelta(_text(reasoning))
        content = delta.get("content")
        if content:
            yield TextDelta(_text(content))
        if choice.get("finish_reason"):
            yield Finish(_text(choice["finish_reason"]))
    usage = chunk.get("usage")
    if usage:
        yield Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            reasoning_tokens=int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0),
        )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value
