"""The chat-completions stream: SSE lines and JSON chunks into events.

Chunks are read with json, not as the SDK's pydantic objects: several times
cheaper, and it shows what a typed stream hides (a malformed chunk, an in-band
error, a stream that stops without a finish_reason).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from chatcli.base.errors import ChatError, ContextLengthError, one_line
from chatcli.base.events import Event, Finish, ReasoningDelta, Served, TextDelta, ToolCall, Usage
from chatcli.base.pii import redact_secrets
from chatcli.llm.overflow import context_overflow


class NotAChatStream(ChatError):
    """The body is no chat stream at all; `what` names what came instead ("HTML, not a chat stream")."""

    def __init__(self, what: str) -> None:
        super().__init__(f"The server answered with {what}.")
        self.what = what


# The fields an SSE line may carry; anything else before the first data line means the body is not SSE.
SSE_FIELDS = ("data", "event", "id", "retry")
# How much of a body that is not SSE but starts like JSON is read to see whether it is a whole completion.
JSON_BODY_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class CallPiece:
    """One streamed tool_calls delta: the call at `index` begun (its id and name), or its arguments
    continued. Never leaves this module: `assembled` joins the pieces into ToolCall events."""

    index: int
    id: str | None
    name: str | None
    arguments: str


def assembled(events: Iterable[Event | CallPiece], heard: Callable[[], None] | None = None) -> Iterator[Event]:
    """The events, with the streamed tool_calls deltas joined into one ToolCall per call (by index,
    parallel calls interleaved or not), said just before the Finish, or at the end without one.
    `heard` is told of each piece: arguments streaming for a while are content, not a silence."""
    calls: dict[int, list] = {}  # index -> [id, name, argument pieces]
    for event in events:
        if type(event) is CallPiece:
            if heard is not None:
                heard()
            call = calls.setdefault(event.index, [None, None, []])
            call[0] = call[0] or event.id
            call[1] = call[1] or event.name
            call[2].append(event.arguments)
            continue
        if type(event) is Finish and calls:
            yield from _calls(calls)
        yield event  # type: ignore[misc]
    yield from _calls(calls)


def _calls(calls: dict[int, list]) -> Iterator[ToolCall]:
    for index in sorted(calls):
        id_, name, pieces = calls[index]
        yield ToolCall(id_ or f"call_{index}", name or "", "".join(pieces))
    calls.clear()


def parse_sse(lines: Iterable[str], *, secret: str | None = None,
              heard: Callable[[], None] | None = None) -> Iterator[Event]:
    """The events of a chat-completions stream's SSE lines, tool calls assembled (`assembled`)."""
    return assembled(_parse_sse(lines, secret=secret), heard)


def _parse_sse(lines: Iterable[str], *, secret: str | None = None) -> Iterator[Event]:
    """Turn the SSE lines of a chat-completions stream into events.

    Data lines are gathered until a blank line, as the SSE format says, so a
    server that splits one event over several `data:` lines still works. A body
    that is not a chat stream (an HTML page, JSON, garbage, nothing) is a
    NotAChatStream naming what it is, said before anything of it is shown.
    """
    data: list[str] = []
    named = False  # the first chunk that names a model says which one answered
    chat = False  # a data line came, and its chunk was a chat chunk
    comments = 0
    lines = iter(lines)
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line.startswith(":"):
            comments += 1
            continue
        if line and not chat and not data and line.split(":", 1)[0] not in SSE_FIELDS:
            yield from _not_sse(line, lines, secret)
            return
        if line or not data:
            continue  # `event:` and `id:` lines
        payload = "\n".join(data)
        data = []
        if payload == "[DONE]":
            return
        if not chat:
            _check_chunk(payload)
            chat = True
        events = chunk_events(payload, secret, name_model=not named)
        named = named or bool(events and isinstance(events[0], Served))
        yield from events
    if data and data != ["[DONE]"]:
        if not chat:
            _check_chunk("\n".join(data))
            chat = True
        yield from chunk_events("\n".join(data), secret, name_model=not named)
    if not chat and not data:
        raise NotAChatStream("keep-alive comments and nothing else, not a chat stream" if comments
                             else "an empty body, not a chat stream")


def _check_chunk(payload: str) -> None:
    """The first chunk of a stream: a JSON object of another kind means the stream is not a chat's.

    Anything else that is not a chunk (not JSON, a list) is left to chunk_events, as malformed."""
    try:
        chunk = json.loads(payload)
    except (json.JSONDecodeError, RecursionError):
        return
    if isinstance(chunk, dict) and not CHAT_KEYS & chunk.keys():
        raise NotAChatStream("server-sent events that are not chat-completion chunks")


# A chat chunk or completion has at least one of these; an in-band error has the last.
CHAT_KEYS = {"choices", "usage", "error"}


def _not_sse(first: str, rest: Iterator[str], secret: str | None) -> Iterator[Event]:
    """A body labelled an event stream that is not one: a whole completion sent as JSON is still the
    reply (a server that ignored stream=true and mislabelled it); anything else is named."""
    if not first.lstrip("\ufeff \t").startswith(("{", "[")):
        raise NotAChatStream(describe(first, secret))
    body, size = [first], len(first)
    for line in rest:
        body.append(line)
        size += len(line) + 1
        if size > JSON_BODY_LIMIT:
            raise NotAChatStream(describe(first, secret))
    yield from completion_events("\n".join(body), secret)


def completion_events(body: str, secret: str | None) -> list[Event]:
    """The events of a whole completion (a server that ignored stream=true); a body that is not one is named."""
    try:
        chunk = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        if body.lstrip("\ufeff \t\r\n").startswith("{"):
            raise ChatError(MALFORMED) from None  # JSON cut short, most likely
        raise NotAChatStream(describe(body, secret)) from None
    if not isinstance(chunk, dict) or not CHAT_KEYS & chunk.keys():
        raise NotAChatStream("JSON that is not a chat completion")
    return list(assembled(chunk_events(body, secret)))


def describe(head: str, secret: str | None = None) -> str:
    """What a body that is not a chat stream is, from its first characters, for the sentence that says so."""
    text = head.lstrip("\ufeff \t\r\n")
    start = text[:200].lower()
    if not text:
        return "an empty body, not a chat stream"
    if start.startswith("<?xml"):
        return "XML, not a chat stream"
    if start.startswith("<"):
        return "HTML, not a chat stream"
    if start.startswith(("{", "[")):
        return "JSON that is not a chat completion"
    if any(ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\r\n") for ch in text[:200]):
        return "binary data, not a chat stream"
    return f"plain text ('{one_line(redact_secrets(text[:2000], secret), 60)}'), not a chat stream"


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
        for piece in delta.get("tool_calls") or ():
            yield _piece(piece)
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
            cost=provider_cost(usage),
        )


def _piece(delta: dict) -> CallPiece:
    """A tool_calls entry: a delta's (index, id and name first, then argument fragments) or a whole
    completion's (no index; all of it at once)."""
    function = delta.get("function") or {}
    index = delta.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(index)
    arguments = function.get("arguments")
    if isinstance(arguments, (dict, list)):  # a server that sends the arguments parsed
        arguments = json.dumps(arguments, ensure_ascii=False)
    return CallPiece(index, _text(delta["id"]) if delta.get("id") else None,
                     _text(function["name"]) if function.get("name") else None, _text(arguments or ""))


def provider_cost(usage: dict) -> float | None:
    """The USD the provider says the request cost (OpenRouter's `usage.cost`, in credits of a dollar),
    or None when it says none. With a key of the user's own (`is_byok`), OpenRouter's `cost` is only
    its fee; the upstream provider's bill (`cost_details.upstream_inference_cost`) is added. Without
    one, that figure is a breakdown of `cost` itself, and adding it would count the bill twice."""
    cost = _amount(usage.get("cost"))
    if cost is None:
        return None
    details = usage.get("cost_details")
    upstream = _amount(details.get("upstream_inference_cost")) if isinstance(details, dict) else None
    if usage.get("is_byok") is True and upstream is not None:
        cost += upstream
    return cost


def _amount(value: object) -> float | None:
    """A sum of money as a server wrote it: a finite number of at least 0, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value
