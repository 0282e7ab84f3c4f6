"""What a failed request means, in one sentence that says what to do: an HTTP status, a
timeout, a broken connection, a body that is not a chat stream or cannot be read.
"""

from __future__ import annotations

import math
import re
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chatcli.base.errors import (
    BadRequest,
    ChatError,
    ConfigError,
    ContextLengthError,
    NetworkError,
    RefusedParameter,
    one_line,
)
from chatcli.base.pii import hide_password, redact_secrets
from chatcli.base.ratelimits import duration
from chatcli.llm.capabilities import refused_parameter
from chatcli.llm.overflow import Overflow, context_overflow, error_fields
from chatcli.llm.ratelimits import read_rate_limits

if TYPE_CHECKING:
    from chatcli.config.settings import Config

# How getaddrinfo's "no such host" reads on Linux, macOS and Windows.
DNS_FAILURES = ("Name or service not known", "nodename nor servname", "getaddrinfo failed",
                "Temporary failure in name resolution", "No address associated with hostname")


def timeout_error(config: Config, *, mid_reply: bool = False, keepalives: int = 0, tries: int = 1) -> NetworkError:
    """No text within read_timeout: before the reply (`tries` of them), or in its middle; keep-alives named."""
    url, wait = config.shown_url, f"{config.read_timeout:g}s"
    sent = "sent only keep-alives, no text," if keepalives else "sent no text"
    if mid_reply:
        if keepalives:
            return NetworkError(f"The server at {url} {sent} for more than {wait} in the middle of the reply; "
                                "try again, or raise read_timeout in your config.")
        return NetworkError(f"The server at {url} went silent for more than {wait} in the middle of the reply; "
                            "try again, or raise read_timeout in your config.")
    each = "" if tries == 1 else f" on each of {tries} tries"
    return NetworkError(
        f"The server at {url} {sent} for more than {wait}{each}: it may still be reading a long prompt, "
        "or has not started; try again, or raise read_timeout in your config."
    )


def reply_timeout_error(config: Config, *, began: bool, why: str = "") -> ChatError:
    """reply_timeout ran out: a network failure if nothing had come, an incomplete reply if some had."""
    limit = f"reply_timeout ({config.reply_timeout:g}s{'; ' + why if why else ''})"
    if began:
        return ChatError(f"The reply from {config.shown_url} took longer than {limit}, so it stopped there; "
                         "raise reply_timeout in your config to let long replies finish.")
    return NetworkError(f"The server at {config.shown_url} had not begun the reply within {limit}; "
                        "try again, or raise reply_timeout in your config.")


def undecodable(config: Config, *, began: bool) -> ChatError:
    """A body whose Content-Encoding (gzip, deflate, br) does not decode: garbage, or damaged on the way."""
    url = config.shown_url
    if began:
        return ChatError(f"The rest of the reply from {url} could not be read: its compressed encoding is damaged; "
                         "try again.")
    return ChatError(f"The server at {url} answered with a compressed body that does not decompress, not a chat "
                     "stream; try again, and check the base URL and any proxy in between.")


def connect_timeout_error(config: Config) -> NetworkError:
    return NetworkError(
        f"Could not connect to {config.shown_url} within {config.connect_timeout:g}s; "
        "check the base URL and your network."
    )


def connection_error(config: Config, cause: BaseException, *, proxy: str | None, began: bool = True,
                     kind: str | None = None) -> ChatError:
    """One sentence for a connection that failed; `kind` is the transport's word for it ("proxy": the
    proxy refused to pass it on, "broke": it broke off), which the client reads from the exception."""
    url = config.shown_url
    if kind == "proxy":
        return NetworkError(f"The proxy would not pass the request on to {url} ({one_line(str(cause))}); check proxy, HTTPS_PROXY and HTTP_PROXY.")
    if "CERTIFICATE_VERIFY_FAILED" in str(cause):
        return ConfigError(f"The certificate of {url} could not be verified; if your own authority signed it, "
                           "set ca_bundle (or SSL_CERT_FILE) to its PEM file.")
    if kind == "broke":
        where = "in the middle of the reply" if began else "before the reply began"
        return NetworkError(f"The connection to {url} broke off {where}; try again.")
    if proxy:
        return NetworkError(f"Could not connect to {url} through the proxy {hide_password(proxy)}; check proxy in your config.")
    if any(words in str(cause) for words in DNS_FAILURES):
        host = urlsplit(config.base_url).hostname
        return NetworkError(f"Could not find the host {host} for {url} (the DNS lookup failed); check the base URL and your network.")
    return NetworkError(f"Could not connect to {url}; check the base URL and that the server is running.")


def not_a_chat_stream(config: Config, what: str) -> ChatError:
    """A body that is no chat stream: `what` names it ("HTML, not a chat stream")."""
    return ChatError(f"The server at {config.shown_url} answered with {what}; check the base URL, which usually ends in /v1.")


class UnknownModel(ChatError):
    """A 404 for the model: worth a look at the names the server does have."""


class NoImages(BadRequest):
    """The model does not take images: the session remembers it for the rest of the run."""

    def __init__(self, model: str) -> None:
        super().__init__(no_images(model))
        self.model = model


def no_images(model: str, *, history: bool = False) -> str:
    """The sentence for a model that takes no images: the message's own, or (`history`) those of
    earlier messages, which go with every request until /clear."""
    if history:
        return (f"{one_line(model, 100)} does not take images, and earlier messages of this conversation carry "
                "some; /clear stops sending them, or choose a vision model with /model.")
    return (f"{one_line(model, 100)} does not take images; leave them out, or choose a vision model "
            "(--model, or /model in a chat).")


# How servers refuse an image for a model without vision: OpenAI, llama.cpp without a
# projector (--mmproj), vLLM, Ollama (a 400, or a 500 from its runner).
_NO_IMAGES = re.compile(r"image_url is only supported by certain models|image input is not supported|"
                        r"is not a multimodal model|does not support image|missing data required for image input",
                        re.IGNORECASE)


def says_no_images(text: str) -> bool:
    """Whether a server's error says the model takes no images."""
    return _NO_IMAGES.search(text) is not None


def describe_status_error(exc: Any, *, config: Config, model: str) -> ChatError:
    """One sentence per HTTP failure, saying what to check. `exc` is the SDK's APIStatusError, read
    for its status_code, body, message and response headers (the SDK is client.py's alone)."""
    status = exc.status_code
    error = error_fields(exc.body)
    code = f"{error.get('code') or ''} {error.get('type') or ''}".strip()
    detail = one_line(redact_secrets(str(error.get("message") or exc.message or ""), config.api_key))
    url = config.shown_url
    if status == 401:
        if config.api_key_env:
            where = config.api_key_env
        elif config.profile:
            where = f"api_key_env or api_key_cmd in [profiles.{config.profile}]"
        else:
            where = "OPENAI_API_KEY, or api_key or api_key_cmd in your config"
        if not config.api_key:
            return ConfigError(f"The server at {url} wants an API key (401); set {where}.")
        return ConfigError(f"The server at {url} rejected the API key (401); check {where}.")
    if status == 403:
        return ConfigError(
            f"The API key may not use this (403: {detail or 'forbidden'}); check the key's project and permissions."
        )
    if status == 404:
        if "model" in code or "model" in detail.lower():
            return UnknownModel(f"The model '{one_line(model, 100)}' was not found at {url} (404); pick another with /model or --model.")
        return ChatError(f"Nothing answers at {url} (404); check the base URL, which usually ends in /v1.")
    if status == 429:
        if "insufficient_quota" in code or "quota" in detail.lower():
            return ChatError("The account is out of credit (429 insufficient_quota); check your plan and billing.")
        limits = read_rate_limits(exc.response.headers)
        binding = limits.binding() if limits is not None else None
        if binding is not None:  # the x-ratelimit-reset-* headers said when
            return rate_limit_reached(*binding)
        wait = _asked_wait(exc.response.headers)
        if wait is not None and wait > SDK_MAX_RETRY_WAIT:  # too long to wait for here: say how long it asks
            return ChatError(
                f"The server is rate limiting requests (429) and asks to wait {_duration(wait)}; try again then."
            )
        return ChatError(
            f"The server is rate limiting requests (429){_after_retries(config)}; wait a moment and try again."
        )
    overflow = context_overflow(exc.body, str(exc.message or "")) if status in (400, 413, 422, 500) else None
    if overflow is not None:
        return ContextLengthError(
            f"The conversation is too long for the model's context window{_sizes(overflow)} (HTTP {status}), even "
            "with the oldest turns left out; shorten the message, or in a session use /clear or /compact.",
            window=overflow.window, requested=overflow.requested,
        )
    if status in (400, 422, 500) and says_no_images(detail):
        return NoImages(model)
    if status == 400:
        said = f"The server rejected the request (400: {detail or 'bad request'}); check the settings sent."
        refused = refused_parameter(error)
        return RefusedParameter(said, param=refused[0], code=refused[1]) if refused else BadRequest(said)
    if status >= 500:
        return ChatError(f"The server failed (HTTP {status}){_after_retries(config)}; try again later.")
    return ChatError(f"The server answered HTTP {status}: {detail or 'no details'}.")


def rate_limit_reached(name: str | None, seconds: float) -> ChatError:
    """A 429 whose headers said when the limit (`name`, if one was exhausted) resets."""
    which = f" for {name}" if name else ""
    fewer = ", or lower max_tokens" if name == "tokens" else ""
    return ChatError(f"The server's rate limit{which} was reached (429); it resets in {duration(seconds)}, "
                     f"so wait until then and try again{fewer}.")


def _sizes(overflow: Overflow) -> str:
    if overflow.window and overflow.requested:
        return f" ({overflow.requested:,} tokens sent, {overflow.window:,} fit)"
    return f" of {overflow.window:,} tokens" if overflow.window else ""


# The SDK waits as a Retry-After header asks up to this long, and does not retry a longer wait.
SDK_MAX_RETRY_WAIT = 120.0


def _asked_wait(headers) -> float | None:
    """The seconds a retry-after-ms or Retry-After header (seconds or an HTTP date) asks to wait."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            seconds = float(ms) / 1000
        elif (value := headers.get("retry-after")) is None:
            return None
        elif value.strip().replace(".", "", 1).isdigit():
            seconds = float(value)
        else:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) else None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _after_retries(config: Config) -> str:
    n = config.max_retries
    return f" even after {n} {'retry' if n == 1 else 'retries'}" if n else ""
