"""Every server's way of saying that a request overflowed the model's context window.

OpenAI says it with a code, llama.cpp with a type and the sizes as fields, and
vLLM, Ollama, LM Studio and TGI only in a sentence, each its own. Whatever the
form, the answer is the same: leave older turns out and send again. The sizes,
where a server names them, are kept, so the window it enforces is known from then on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Types and codes that mean nothing but an overflow.
KINDS = ("context_length_exceeded", "exceed_context_size_error", "context_window_exceeded")

# Sentences that mean an overflow, lower-cased. Each real server's wording is here, with a
# test in tests/test_overflow.py for it.
PHRASES = (
    "maximum context length",  # OpenAI, vLLM, Mistral
    "exceeds the available context size",  # llama.cpp
    "context size has been exceeded",  # llama.cpp, older
    "maximum model length",  # vLLM: "the decoder prompt (length N) is longer than the maximum model length of M"
    "context length of only",  # LM Studio: "... the model is loaded with context length of only N tokens"
    "when context the overflows",  # LM Studio, its own grammar
    "exceeds maximum context length",  # Ollama
    "exceeds the context length",  # Ollama
    "input length exceeds",  # Ollama
    "prompt is too long",  # Anthropic-compatible proxies
    "too large for model with",  # Mistral
    "`max_new_tokens` must be",  # TGI: "`inputs` tokens + `max_new_tokens` must be <= N"
    "context window",  # "exceeds the context window" and the like (checked with a verb below)
)
VERBS = ("exceed", "too long", "too large", "overflow", "longer than", "not enough")

# Where a server puts the window in its sentence, and where the size of the request.
WINDOW_PATTERNS = (
    r"maximum context length is (\d+)",
    r"available context size \((\d+) tokens?\)",
    r"maximum model length of (\d+)",
    r"context length of only (\d+)",
    r"model with (\d+) maximum context length",
    r"must be <= (\d+)",
    r"context (?:length|window|size) (?:of|is) (\d+)",
)
REQUESTED_PATTERNS = (
    r"request \((\d+) tokens?\)",
    r"resulted in (\d+) tokens",
    r"you requested (\d+) tokens",
    r"your request has (\d+) input tokens",
    r"prompt \(length (\d+)\)",
    r"keep the first (\d+) tokens",
    r"prompt contains (\d+) tokens",
    r"prompt is too long: (\d+) tokens",
)


@dataclass(frozen=True)
class Overflow:
    """The server's word that the request did not fit; the sizes it named, where it named them."""

    window: int | None = None
    requested: int | None = None


def error_fields(body: Any) -> dict[str, Any]:
    """The error object of a body in any of the shapes servers use: {"error": {...}} (OpenAI,
    llama.cpp, newer vLLM), {"error": "text"} (LM Studio, Ollama's native API), or the fields
    at the top level ({"object": "error", "message": ...}: older vLLM)."""
    if isinstance(body, str):  # the SDK hands over a string "error" as the body itself
        return {"message": body}
    if not isinstance(body, dict):
        return {}
    error = body.get("error", body)
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else {}


def context_overflow(body: Any, message: str = "") -> Overflow | None:
    """An Overflow when the error body (or, failing that, the message) says the window was exceeded."""
    error = error_fields(body)
    text = str(error.get("message") or message or "")
    lowered = text.lower()
    labels = f"{error.get('type') or ''} {error.get('code') or ''}".lower()
    named = any(kind in labels for kind in KINDS)
    if not named:
        said = [p for p in PHRASES if p in lowered]
        if not said or (said == ["context window"] and not any(v in lowered for v in VERBS)):
            return None
    return Overflow(
        window=_number(error.get("n_ctx")) or _first(WINDOW_PATTERNS, lowered),
        requested=_number(error.get("n_prompt_tokens")) or _first(REQUESTED_PATTERNS, lowered),
    )


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 40 else None


def _first(patterns: tuple[str, ...], text: str) -> int | None:
    for pattern in patterns:
        found = re.search(pattern, text)
        if found:
            return _number(int(found.group(1)[:13]))
    return None
