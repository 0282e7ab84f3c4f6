"""The typed events a streamed reply is made of.

client.py turns SSE chunks into these; session.py records them and render.py
draws them. None of the three needs to know how the others work.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatcli.base.pii import describe
from chatcli.base.ratelimits import RateLimits
from chatcli.base.text import strip_controls  # an event too: the client yields one per response that states them


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the server reported it, with the provider's own cost where it gave one."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # USD the provider charged (OpenRouter's usage.cost): wins over list prices

    def counts(self) -> dict[str, int]:
        """The token counts as JSON keeps them (--json, the saved reply, a batch row, the response cache)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "cached_tokens": self.cached_tokens,
                "reasoning_tokens": self.reasoning_tokens}

    def __add__(self, other: Usage) -> Usage:
        if other == NO_USAGE or self == NO_USAGE:  # sum() starts from Usage(): the other keeps its cost
            return self if other == NO_USAGE else other
        # A sum has the provider's cost only when both parts do: half a bill is no bill.
        cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            cost,
        )


NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made, assembled from its streamed tool_calls deltas: `arguments` is the
    JSON text as the model wrote it (checked against the tool's schema before it runs)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolShown:
    """A tool call as it happens, for the renderers: `⚙ read_file path="main.py"` as it starts,
    then `✓ read_file 1,204 characters (0.01s)` or `✗ read_file denied: ...` as it ends.
    Its text is the model's and the tool's: strip_controls'd here, so every renderer gets it safe."""

    text: str

    def __str__(self) -> str:
        return strip_controls(self.text)


@dataclass(frozen=True, slots=True)
class Served:
    """The model the server says answered (a chunk's `model`), which may not be the one asked for."""

    model: str


@dataclass(frozen=True, slots=True)
class FromCache:
    """The reply that follows comes from the response cache (core/cache.py), not the server: no
    request was made, and nothing is billed. Kept at `created_at`; served `hits` times, this one included."""

    created_at: float
    hits: int


@dataclass(frozen=True, slots=True)
class Note:
    """Something learned about the server to say once, above the reply: its window, a cut it made."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Retrying:
    """The request failed in a way worth another try: the SDK waits `seconds`, then makes retry `attempt` of `of`."""

    reason: str  # "rate limited", "the server failed (HTTP 503)", "the connection failed"
    seconds: float
    attempt: int
    of: int

    def __str__(self) -> str:
        wait = f"{self.seconds:.1f}s" if self.seconds < 10 else f"{self.seconds:.0f}s"
        return f"{self.reason}, retrying in {wait} (attempt {self.attempt}/{self.of})"


@dataclass(frozen=True, slots=True)
class Redacted:
    """Personal data was scrubbed from text about to be sent (config `redact`): counts by kind, and where."""

    counts: tuple[tuple[str, int], ...]
    where: str = "before sending"  # or "from the system prompt"

    def __str__(self) -> str:
        return f"redacted {describe(dict(self.counts))} {self.where}"


@dataclass(frozen=True, slots=True)
class Adjusted:
    """A request was changed to suit its model (capabilities.py): said once per model and change."""

    text: str  # "o3-mini does not take temperature; it is left out of its requests"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class LogLine:
    """A --verbose log line written while a reply is drawn: the REPL passes it to the renderer."""

    text: str

    def __str__(self) -> str:
        return self.text


WITHHELD = "[reply withheld: it contains a blocked word]"


@dataclass(frozen=True, slots=True)
class Withheld:
    """The reply (and its reasoning) holds a blocked word (config `block_words`): drawn in its place.
    Which word is never said: that would show it."""

    def __str__(self) -> str:
        return WITHHELD


@dataclass(frozen=True, slots=True)
class Held:
    """Reply text or reasoning came, and is held back until the reply ends (the content filter):
    a renderer counts it as a token, so its spinner and stall notice go on, and draws none of it."""


HELD = Held()


# Said above the reply as it happens, not part of it.
NOTICES = (Retrying, Redacted, Adjusted, LogLine, Note, ToolShown)

Event = (TextDelta | ReasoningDelta | Usage | Finish | Served | Retrying | Redacted | Adjusted | LogLine | Note
         | RateLimits | Withheld | Held | ToolCall | ToolShown | FromCache)
