"""Token counts in the model's encoding, context windows, and fitting a conversation into one.

Counts are exact only where the model's own tokenizer is at hand: tiktoken for
OpenAI's models, or a server that counts for us (llama.cpp's /tokenize). Any
other model's counts are estimates and say so (Count.exact is False, shown with
a ≈); a tiktoken encoding is never passed off as another model's tokenizer.
Estimates are made per kind of character (a digit or a brace costs a token where
an English word of four letters does), and corrected by what the server reported
for earlier turns of the same model.

tiktoken downloads its BPE files on first use, and with no network that fails
or hangs (its download has no timeout). Encodings are therefore loaded in a
background thread; until one is loaded, or if it cannot be, counts are
estimates. Counts are cached per message, so a turn costs work in proportion to
its new text.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from chatcli.base.images import size_of_location

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


# Images, as OpenAI counts them: a low-detail image is 85 tokens; a high-detail one is fitted
# into 2048×2048, then scaled down until its shorter side is 768, and costs 170 per 512-pixel
# tile plus 85. "auto" is counted as high (the larger). gpt-4o-mini's own multipliers
# (2833 and 5667) are not modelled: its images are counted as gpt-4o's.
LOW_DETAIL = 85
TILE = 170
UNKNOWN_IMAGE = 765  # an image of unknown size (a URL): a 1024×1024 one at high detail


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's count of one image of this size at this detail."""
    if detail == "low":
        return LOW_DETAIL
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        w, h = w * 2048 / max(w, h), h * 2048 / max(w, h)
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return TILE * math.ceil(w / 512) * math.ceil(h / 512) + LOW_DETAIL


def text_of(content: Any) -> str:
    """A message's text: the content itself, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass(frozen=True)
class Count:
    tokens: int
    exact: bool = True

    def __add__(self, other: Count) -> Count:
        return Count(self.tokens + other.tokens, self.exact and other.exact)

    def __str__(self) -> str:
        return f"{'' if self.exact else '≈'}{self.tokens:,}"


_PIECES = re.compile(r"[A-Za-z]+| ?[0-9]|\n|[ \t]+|[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]|[^\x00-\x7f]", re.ASCII)


def estimate(text: str) -> int:
    """Tokens a model's tokenizer is likely to make of the text, erring high.

    Bytes/4 is close for English but three to four times too low for digits,
    JSON, code and CJK with the small vocabularies local models have. So: a word
    costs one token per six letters, a digit, a newline, a run of spaces and a
    punctuation mark one each, and a character outside ASCII one per UTF-8 byte
    beyond the first. Corrected per model by Tokenizer.calibrate.
    """
    if text.isascii() and len(text) < 8:
        return max(1, len(text.split())) if text else 0
    tokens = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first.isalpha() and first.isascii():
            tokens += -(-len(piece) // 6)
        elif first == " " and len(piece) == 1:
            continue  # a single space joins the word after it
        elif first == " " and piece[-1].isdigit():
            tokens += 2  # a space before a number is a token of its own in most vocabularies
        elif first.isascii():
            tokens += 1
        else:
            tokens += max(1, len(first.encode("utf-8")) - 1)
    return tokens


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
            import tiktoken  # lazy: loaded with the first exact count, off the startup path

            encoding = tiktoken.get_encoding(name)
        except Exception as exc:  # noqa: BLE001 - any failure means: estimate instead
            reason = f"tiktoken could not load {name} ({type(exc).__name__}); it downloads its files on first use"
            with self._lock:
                self._failed[name] = reason
            return
        with self._lock:
            self._loaded[name] = encoding


class ServerCounter(Protocol):
    """A server that counts with the model's own tokenizer (llama.cpp's /tokenize and /apply-template)."""

    def count(self, text: str) -> int | None: ...

    def overhead(self) -> tuple[int, int] | None:
        """(tokens the chat template adds per message, tokens it adds once), or None."""


@dataclass(frozen=True)
class Window:
    """A model's context window and where the figure came from, for /tokens and `chatcli models`."""

    tokens: int
    source: str


# Where a window came from, strongest first: what the server enforced beats the config,
# which beats what the server reports, which beats the built-in table.
LEARNED, CONFIGURED, REPORTED, BUILT_IN, DEFAULT = range(5)
RECENT_RATIOS = 8  # the server's counts of this many recent turns correct the estimates
DEFAULT_SOURCE = "chatcli's default (default_context_window); the server did not say"


@dataclass
class Tokenizer:
    """Counting and limits per model: config overrides, then what the server says, then the built-in table."""

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default: ModelLimits = ModelLimits(8_192, 4_096, "o200k_base")
    encodings: Encodings = field(default_factory=Encodings)
    _cache: dict[tuple[str, str, str, bool], int] = field(default_factory=dict, repr=False)
    _told: set[str] = field(default_factory=set, repr=False)
    _limits: dict[str, ModelLimits] = field(default_factory=dict, repr=False)
    _windows: dict[str, dict[int, Window]] = field(default_factory=dict, repr=False)  # model -> rank -> window
    _factor: dict[str, float] = field(default_factory=dict, repr=False)  # model -> server's count / our estimate
    _ratios: dict[str, list[float]] = field(default_factory=dict, repr=False)  # model -> the last few of those
    _servers: dict[str, ServerCounter] = field(default_factory=dict, repr=False)
    _counted: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)  # (model, text) -> server's count
    _counted_models: set[str] = field(default_factory=set, repr=False)
    _served: dict[str, str] = field(default_factory=dict, repr=False)  # model asked for -> model that answered
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def limits(self, model: str) -> ModelLimits:
        """The model's figures; computed once per model (every message count asks)."""
        found = self._limits.get(model)
        if found is None:
            with self._lock:  # not computed from a window the discovery thread is replacing
                found = self._limits[model] = self._find_limits(model)
        return found

    def is_openai(self, model: str) -> bool:
        """A model whose tokenizer tiktoken has: one of OpenAI's, or one the config names an encoding for.

        An OpenAI name the server answered as another model (llama-server answers any name with
        the one it loaded) is that other model, and tiktoken is not its tokenizer."""
        if "encoding" in override_for(model, self.overrides):
            return True
        served = self._served.get(model, model)
        return family_of(model, KNOWN_MODELS) is not None and family_of(served, KNOWN_MODELS) is not None

    def served_as(self, asked: str, served: str) -> None:
        """The server answered requests for `asked` as `served`: count `asked` as that model is counted."""
        if self._served.get(asked) != served:
            with self._lock:
                self._served[asked] = served
                self._limits.pop(asked, None)

    def _find_limits(self, model: str) -> ModelLimits:
        family = family_of(model, KNOWN_MODELS)
        base = KNOWN_MODELS[family] if family is not None else self.default
        override = override_for(model, self.overrides)
        return ModelLimits(
            context_window=self.window(model).tokens,
            max_output_tokens=override.get("max_output_tokens", base.max_output_tokens),
            encoding=override.get("encoding", base.encoding) if self.is_openai(model) else "",
        )

    def window(self, model: str) -> Window:
        """The context window to fit to, and where it came from."""
        found = dict(self._windows.get(model, {}))
        override = override_for(model, self.overrides)
        if "context_window" in override:
            found[CONFIGURED] = Window(override["context_window"], "set in the config")
        family = family_of(model, KNOWN_MODELS)
        if family is not None:
            found[BUILT_IN] = Window(KNOWN_MODELS[family].context_window, f"chatcli's table ({family})")
        found[DEFAULT] = Window(self.default.context_window, DEFAULT_SOURCE)
        return found[min(found)]

    def set_window(self, model: str, tokens: int, source: str, *, learned: bool = False) -> Window | None:
        """A window the server reported (or, learned, enforced); the config's figure, if larger, when it wins."""
        with self._lock:
            self._windows.setdefault(model, {})[LEARNED if learned else REPORTED] = Window(tokens, source)
            self._limits.pop(model, None)
        override = override_for(model, self.overrides).get("context_window")
        return Window(override, "set in the config") if override and override > tokens and not learned else None

    def known_window(self, model: str, rank: int) -> Window | None:
        return self._windows.get(model, {}).get(rank)

    def preload(self, model: str, *, wait: float = 0.0) -> None:
        """Start loading the model's encoding (in the background), waiting for it up to `wait` seconds."""
        if name := self.limits(model).encoding:
            self.encodings.get(name, wait=wait)

    def problem(self, model: str) -> str | None:
        name = self.limits(model).encoding
        if not name:
            if model in self._servers:
                return None
            return f"chatcli has no tokenizer for {model}; counts are estimates, corrected by what the server reports"
        return self.encodings.problem(name)

    def take_problem(self, model: str) -> str | None:
        """Why this model's counts are estimates (failed, or still loading), the first time; then None."""
        name = self.limits(model).encoding or model
        problem = self.problem(model)
        if problem is None or name in self._told:
            return None
        self._told.add(name)
        return problem

    # -- counting ------------------------------------------------------------

    def message(self, model: str, role: str, content: str) -> Count:
        """One chat message, with its overhead; cached by its text.

        Exact once the encoding is preloaded (OpenAI's models), or once the server has
        counted this text (count_on_server); otherwise a calibrated estimate.
        """
        counted = self._counted.get((model, content))
        if counted is not None:
            per_message = self._servers[model].overhead()
            return Count(counted + (per_message[0] if per_message else MESSAGE_OVERHEAD), True)
        name = self.limits(model).encoding
        encoding = self.encodings.peek(name) if name else None
        key = (name, role, content, encoding is not None)
        tokens = self._cache.get(key)
        if tokens is None:
            body = len(encoding.encode(content, disallowed_special=())) if encoding else estimate(content)
            tokens = self._cache[key] = body + MESSAGE_OVERHEAD
        if encoding is not None:
            return Count(tokens, True)
        return Count(math.ceil(tokens * self._factor.get(model, 1.0)), False)

    def image(self, model: str, width: int | None, height: int | None, detail: str) -> Count:
        """One image: OpenAI's tile formula for its models, where the size is known; else an estimate."""
        if width and height:
            return Count(image_tokens(width, height, detail), self.is_openai(model))
        return Count(LOW_DETAIL if detail == "low" else UNKNOWN_IMAGE, False)

    def _part(self, model: str, part: dict[str, Any]) -> Count:
        """An image_url content part, its size read from the start of the data URL (a URL's is not known)."""
        image = part.get("image_url") or {}
        size = size_of_location(str(image.get("url") or "")) or (0, 0)
        return self.image(model, size[0], size[1], str(image.get("detail") or "auto"))

    @staticmethod
    def raw_estimate(messages: list[dict[str, Any]]) -> int:
        """Our uncorrected estimate of a request, the base calibrate compares the server's count with.
        Images are left out: the server's count of them is no measure of how text was estimated."""
        return REPLY_PRIMING + sum(estimate(text_of(m["content"])) + MESSAGE_OVERHEAD for m in messages)

    def priming(self, model: str) -> Count:
        """What a request costs beyond its messages: the reply's priming, or the chat template's fixed part."""
        server = self._servers.get(model)
        # Only once this model's texts were counted there, which measured the template already:
        # the toolbar asks for this on every redraw and must never wait on the network.
        overhead = server.overhead() if server is not None and model in self._counted_models else None
        return Count(overhead[1], True) if overhead else Count(REPLY_PRIMING, True)

    def messages(self, model: str, messages: list[dict[str, Any]]) -> Count:
        total = self.priming(model) + self.image_parts(model, messages)
        for m in messages:
            total = total + self.message(model, m["role"], text_of(m["content"]))
        return total

    def image_parts(self, model: str, messages: list[dict[str, Any]]) -> Count:
        """The images of the messages' image_url parts."""
        total = Count(0)
        for m in messages:
            if isinstance(m["content"], list):
                for part in m["content"]:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        total = total + self._part(model, part)
        return total

    def calibrate(self, model: str, *, reported: int, estimated: int) -> None:
        """Learn from the prompt_tokens the server reported for a request we estimated.

        Only for models counted by estimate. The estimate errs differently for each kind of
        text (high for JSON and CJK, about right for digits), and the next message may be of
        any kind: so the correction is the largest of the last few ratios, which lowers the
        estimates only as far as the kind of text they erred least on allows. Never below
        0.25 or above 4.
        """
        if self.is_openai(model) or estimated <= 0 or reported <= 0:
            return
        ratio = min(max(reported / estimated, 0.25), 4.0)
        recent = self._ratios.setdefault(model, [])
        recent.append(ratio)
        del recent[:-RECENT_RATIOS]
        self._factor[model] = max(recent)

    def factor(self, model: str) -> float | None:
        return self._factor.get(model)

    def use_server(self, model: str, counter: ServerCounter) -> None:
        """A server that counts with this model's own tokenizer."""
        self._servers[model] = counter

    def counts_on_server(self, model: str) -> bool:
        return model in self._servers

    def count_on_server(self, model: str, texts: list[str]) -> bool:
        """Have the server count the texts not yet counted; True when every one of them is now exact."""
        server = self._servers.get(model)
        if server is None or server.overhead() is None:
            return False
        for text in texts:
            if (model, text) not in self._counted:
                tokens = server.count(text)
                if tokens is None:
                    return False
                self._counted[(model, text)] = tokens
        self._counted_models.add(model)
        return True


def margin(window: int) -> int:
    """Tokens kept free beyond the reply's reserve when counts are estimates: a tenth of the
    window, the most a corrected estimate was seen to fall short (tests/benchmarks/counts.py)."""
    return window // 10


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
    Where any count is an estimate, a tenth of the window is kept free besides, for
    what the estimate may have missed.
    """
    fixed = latest
    for count in head:
        fixed = fixed + count
    exact = fixed.exact and all(count.exact for count in turns)
    budget = window - reserve - (0 if exact else margin(window))
    total = fixed
    for count in turns:
        total = total + count
    left_out = 0
    while total.tokens > budget and left_out < len(turns):
        total = Count(total.tokens - turns[left_out].tokens, total.exact)
        left_out += 1
    return Fit(left_out=left_out, tokens=total, window=window, reserve=reserve, fits=total.tokens <= budget)


def too_big(plan: Fit, message: Count) -> str:
    """The sentence for a message that cannot fit the window even alone."""
    room = plan.window - plan.reserve - (plan.tokens.tokens - message.tokens)
    return (
        f"Your message is {message} tokens, but the model's {plan.window:,}-token window leaves room for "
        f"about {max(room, 0):,} once the system prompt and {plan.reserve:,} tokens for the reply are counted; "
        "shorten it, or use a model with a larger window."
    )
