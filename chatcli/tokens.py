"""Token counts in the model's encoding, context windows, and fitting a conversation into one.

tiktoken downloads its BPE files on first use, and with no network that fails
or hangs (its download has no timeout). Encodings are therefore loaded in a
background thread; until one is loaded, or if it cannot be, counts are
estimates and say so (Count.exact is False, shown with a ≈). Counts are cached
per message, so a turn costs work in proportion to its new text.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

# Chat formatting overhead, as OpenAI documents it for its chat models: each
# message costs 3 tokens beyond its content, and every reply is primed with 3.
MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3


@dataclass(frozen=True)
class ModelLimits:
    context_window: int
    max_output_tokens: int
    encoding: str


# Families, matched by the longest prefix of the model name (gpt-4o-2024-08-06 is gpt-4o).
KNOWN_MODELS: dict[str, ModelLimits] = {
    "gpt-5": ModelLimits(400_000, 128_000, "o200k_base"),
    "gpt-4.1": ModelLimits(1_047_576, 32_768, "o200k_base"),
    "gpt-4o": ModelLimits(128_000, 16_384, "o200k_base"),
    "o1": ModelLimits(200_000, 100_000, "o200k_base"),
    "o3": ModelLimits(200_000, 100_000, "o200k_base"),
    "o4-mini": ModelLimits(200_000, 100_000, "o200k_base"),
    "gpt-4-turbo": ModelLimits(128_000, 4_096, "cl100k_base"),
    "gpt-4-0125-preview": ModelLimits(128_000, 4_096, "cl100k_base"),
    "gpt-4-1106-preview": ModelLimits(128_000, 4_096, "cl100k_base"),
    "gpt-4-32k": ModelLimits(32_768, 32_768, "cl100k_base"),
    "o1-mini": ModelLimits(128_000, 65_536, "o200k_base"),
    "gpt-4": ModelLimits(8_192, 8_192, "cl100k_base"),
    "gpt-3.5-turbo": ModelLimits(16_385, 4_096, "cl100k_base"),
}


def family_of(model: str, table: Mapping[str, Any]) -> str | None:
    """The entry of a built-in per-model table a model belongs to: its own name, or the longest
    name it extends (gpt-4o-2024-08-06 and gpt-4o-audio are gpt-4o; gpt-4o-mini has its own;
    a point release, gpt-5.1, is gpt-5 unless the table has it). A provider's prefix, as
    OpenRouter names models (openai/o3-mini), is looked past."""
    name = model.rsplit("/", 1)[-1]
    if name in table:
        return name
    return max((n for n in table if name.startswith((n + "-", n + "."))), key=len, default=None)


def override_for(model: str, overrides: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """A config [models."NAME"] table for the model, or {}.

    It applies to the model's dated snapshots too (gpt-4o to gpt-4o-2024-08-06), but not
    to another model that shares its prefix (gpt-4o-mini): the user named one model.
    """
    named = [n for n in overrides if model == n or (model.startswith(n + "-") and model[len(n) + 1 :][:1].isdigit())]
    return overrides[max(named, key=len)] if named else {}


@dataclass(frozen=True)
class Count:
    tokens: int
    exact: bool = True

    def __add__(self, other: Count) -> Count:
        return Count(self.tokens + other.tokens, self.exact and other.exact)

    def __str__(self) -> str:
        return f"{'' if self.exact else '≈'}{self.tokens:,}"


def estimate(text: str) -> int:
    """About 4 bytes of UTF-8 per token: close for English and code, not too low for CJK."""
    return math.ceil(len(text.encode("utf-8")) / 4)


class Encodings:
    """tiktoken encodings, loaded in the background; never blocks a caller that does not wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}
        self._failed: dict[str, str] = {}
        self._loading: dict[str, threading.Thread] = {}
        self._waited: set[str] = set()

    def get(self, name: str, *, wait: float = 0.0) -> Any | None:
        """The encoding if it is loaded, else None.

        `wait` seconds are spent at most once per encoding: a network that
        hangs delays the first request a little, never every request.
        """
        with self._lock:
            if name in self._loaded or name in self._failed:
                return self._loaded.get(name)
            thread = self._loading.get(name)
            if thread is None:
                thread = threading.Thread(target=self._load, args=(name,), daemon=True, name=f"tiktoken-{name}")
                self._loading[name] = thread
                thread.start()
        if wait > 0 and name not in self._waited:
            self._waited.add(name)
            thread.join(wait)
        return self._loaded.get(name)

    def peek(self, name: str) -> Any | None:
        """The encoding if it is loaded, else None; unlike get, this never starts loading it."""
        return self._loaded.get(name)

    def problem(self, name: str) -> str | None:
        """Why counts in this encoding are estimates, once that is known; None if it was never wanted."""
        if name in self._failed:
            return self._failed[name]
        if name not in self._loaded and name in self._loading:
            return f"the {name} encoding is still loading"
        return None

    def _load(self, name: str) -> None:
        try:
            import tiktoken

            encoding = tiktoken.get_encoding(name)
        except Exception as exc:  # noqa: BLE001 - any failure means: estimate instead
            reason = f"tiktoken could not load {name} ({type(exc).__name__}); it downloads its files on first use"
            with self._lock:
                self._failed[name] = reason
            return
        with self._lock:
            self._loaded[name] = encoding


@dataclass
class Tokenizer:
    """Counting and limits per model, from config overrides over the built-in table."""

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default: ModelLimits = ModelLimits(8_192, 4_096, "o200k_base")
    encodings: Encodings = field(default_factory=Encodings)
    _cache: dict[tuple[str, str, str, bool], int] = field(default_factory=dict, repr=False)
    _told: set[str] = field(default_factory=set, repr=False)
    _limits: dict[str, ModelLimits] = field(default_factory=dict, repr=False)

    def limits(self, model: str) -> ModelLimits:
        """The model's figures; computed once per model (every message count asks)."""
        found = self._limits.get(model)
        if found is None:
            found = self._limits[model] = self._find_limits(model)
        return found

    def _find_limits(self, model: str) -> ModelLimits:
        family = family_of(model, KNOWN_MODELS)
        base = KNOWN_MODELS[family] if family is not None else self.default
        override = override_for(model, self.overrides)
        return ModelLimits(
            context_window=override.get("context_window", base.context_window),
            max_output_tokens=override.get("max_output_tokens", base.max_output_tokens),
            encoding=override.get("encoding", base.encoding),
        )

    def preload(self, model: str, *, wait: float = 0.0) -> None:
        """Start loading the model's encoding (in the background), waiting for it up to `wait` seconds."""
        self.encodings.get(self.limits(model).encoding, wait=wait)

    def problem(self, model: str) -> str | None:
        return self.encodings.problem(self.limits(model).encoding)

    def take_problem(self, model: str) -> str | None:
        """Why this model's counts are estimates (failed, or still loading), the first time; then None."""
        name = self.limits(model).encoding
        problem = self.encodings.problem(name)
        if problem is None or name in self._told:
            return None
        self._told.add(name)
        return problem

    def message(self, model: str, role: str, content: str) -> Count:
        """One chat message, with its overhead; cached by its text. Exact once the encoding is preloaded."""
        name = self.limits(model).encoding
        encoding = self.encodings.peek(name)
        key = (name, role, content, encoding is not None)
        tokens = self._cache.get(key)
        if tokens is None:
            body = len(encoding.encode(content, disallowed_special=())) if encoding else estimate(content)
            tokens = self._cache[key] = body + MESSAGE_OVERHEAD
        return Count(tokens, encoding is not None)

    def messages(self, model: str, messages: list[dict[str, str]]) -> Count:
        total = Count(REPLY_PRIMING, True)
        for m in messages:
            total = total + self.message(model, m["role"], m["content"])
        return total


@dataclass(frozen=True)
class Fit:
    """What fitting decided: how many of the oldest turns to leave out, and the sizes."""

    left_out: int
    tokens: Count  # what will be sent, reply priming included
    window: int
    reserve: int
    fits: bool  # False: even the system prompt and the latest message alone do not fit


def fit(*, head: list[Count], turns: list[Count], latest: Count, window: int, reserve: int) -> Fit:
    """Leave out the oldest turns until the rest plus the reply's reserve fits the window.

    `head` (system prompt, priming) and `latest` (the new user message) are never left out.
    """
    fixed = latest
    for count in head:
        fixed = fixed + count
    budget = window - reserve
    total = fixed
    for count in turns:
        total = total + count
    left_out = 0
    while total.tokens > budget and left_out < len(turns):
        total = Count(total.tokens - turns[left_out].tokens, total.exact)
        left_out += 1
    return Fit(left_out=left_out, tokens=total, window=window, reserve=reserve, fits=total.tokens <= budget)
