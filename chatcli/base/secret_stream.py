"""Configured secrets taken out of a stream: of text arriving in pieces, and of a reply's events."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Iterator

from chatcli.base.events import Finish, Note, ReasoningDelta, Served, TextDelta
from chatcli.base.pii import SHOWN_AS, hide_known


class SecretStream:
    """Takes configured secrets out of text that arrives in pieces (a streamed reply), a secret
    split across two pieces included.

    Only the end of a piece that could be the start of a secret is held back, until the next
    piece says whether it is; ordinary text passes at once.
    """

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets
        self._held = ""

    def feed(self, text: str) -> str:
        if not self._secrets:
            return text
        text = hide_known(self._held + text, self._secrets)
        cut = self._start_of_secret(text)
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """What is held at the end: text that turned out not to be a secret. A cut-off start of
        one, 8 characters or more, is hidden too: half a key is still too much of it."""
        held, self._held = self._held, ""
        return SHOWN_AS if len(held) >= 8 else held

    def _start_of_secret(self, text: str) -> int:
        """Where the longest end of text that begins some secret starts (len(text) if none does)."""
        cut = len(text)
        for secret in self._secrets:
            first = secret[0]
            start = max(0, len(text) - len(secret) + 1)
            while start < cut:
                start = text.find(first, start, cut)
                if start < 0:
                    break
                if secret.startswith(text[start:]):
                    cut = start
                    break
                start += 1
        return cut


class SecretFreeEvents:
    """A reply's events with the configured secrets taken out of all they carry that is shown or
    saved: its text and reasoning (streamed, so through a SecretStream each), the model the
    server names, and notes. A proxy that echoes the request's headers back cannot make the key
    reach the screen or the history.
    """

    def __init__(self, events: Iterator, secrets: tuple[str, ...]) -> None:
        self._events = events
        self._secrets = secrets
        self._text = SecretStream(secrets)
        self._reasoning = SecretStream(secrets)
        self._ready: deque = deque()

    def __iter__(self) -> SecretFreeEvents:
        return self

    def __next__(self):
        if not self._secrets:  # none configured (a keyless local server): the events as they come
            return next(self._events)
        while not self._ready:
            try:
                event = next(self._events)
            except StopIteration:
                self._ready.extend(self._flushed())
                if not self._ready:
                    raise
                break
            self._ready.extend(self._clean(event))
        return self._ready.popleft()

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def leftover(self) -> tuple[str, str]:
        """Text and reasoning still held when the stream ended early (Ctrl-C, an error)."""
        return self._text.flush(), self._reasoning.flush()

    def _clean(self, event) -> list:
        if isinstance(event, TextDelta):
            text = self._text.feed(event.text)
            return [TextDelta(text)] if text else []
        if isinstance(event, ReasoningDelta):
            text = self._reasoning.feed(event.text)
            return [ReasoningDelta(text)] if text else []
        if isinstance(event, Served):
            event = replace(event, model=hide_known(event.model, self._secrets))
        elif isinstance(event, Note):
            event = replace(event, text=hide_known(event.text, self._secrets))
        elif isinstance(event, Finish):
            return [*self._flushed(), event]  # the text is over: what was held was no secret
        return [event]

    def _flushed(self) -> list:
        text, reasoning = self.leftover()
        return [*([ReasoningDelta(reasoning)] if reasoning else []), *([TextDelta(text)] if text else [])]
