"""The SDK's retries, made visible: each is a Retrying event in the reply's stream, said before its wait.

The SDK keeps its own retry policy; for a reply's request, the hook it calls before a
retry raises RetryLater instead of sleeping, and ChatClient._stream yields the event,
waits, and makes the request anew (openai is imported by client.py, never here).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chatcli.base.events import RateLimits, Retrying
from chatcli.llm.failures import reply_timeout_error, says_no_images
from chatcli.llm.ratelimits import read_rate_limits, stated_limits

log = logging.getLogger("chatcli")


class RetryLater(Exception):
    """The SDK would retry a reply's request: the wait is taken by ChatClient._stream, which first yields
    the Retrying event into the reply's stream, so that whoever reads the stream says it."""

    def __init__(self, retrying: Retrying, limits: RateLimits | None = None) -> None:
        super().__init__(str(retrying))
        self.retrying = retrying
        self.limits = limits  # what the response retried from said of the server's rate limits


class _Visible:
    """The SDK's hooks, mixed into its client class by sdk_class; `_owner` is the ChatClient."""

    _owner: Any

    def _should_retry(self, response) -> bool:
        if response.status_code == 429 and _resets_later(response.headers):
            return False  # the SDK's retries would all come before the limit resets: say when it does, now
        if response.status_code in (429, 500):
            try:
                body = response.read()
                if response.status_code == 429 and b"insufficient_quota" in body:
                    return False
                if response.status_code == 500 and says_no_images(body.decode("utf-8", "replace")):
                    return False  # llama.cpp without a projector: asking again cannot help
            except Exception:  # noqa: BLE001 - an unreadable body: the SDK decides
                pass
        return super()._should_retry(response)

    def _prepare_request(self, request) -> None:
        super()._prepare_request(request)
        # With reply_timeout, no wait for the headers may outlast what is left of it.
        deadline = getattr(self._owner._local, "deadline", None)
        left = deadline.remaining() if deadline is not None else None
        timeout = request.extensions.get("timeout")
        if left is not None and isinstance(timeout, dict):
            left = max(left, 0.01)
            request.extensions["timeout"] = {k: left if v is None else min(v, left) for k, v in timeout.items()}

    def _build_request(self, options, *, retries_taken: int = 0):
        # A reply's request made anew after the SDK's retry still says how many came before it.
        if getattr(self._owner._local, "deadline", None) is not None:
            retries_taken += self._owner._local.backoff
        return super()._build_request(options, retries_taken=retries_taken)

    def _sleep_for_retry(self, **kwargs) -> None:
        try:
            taken, most, response = kwargs["retries_taken"], kwargs["max_retries"], kwargs["response"]
            headers = response.headers if response is not None else None
            local = self._owner._local
            deadline = getattr(local, "deadline", None)
            # A reply's request is made anew for each retry: its backoff counts the retries before.
            taken += local.backoff if deadline is not None else 0
            seconds = self._calculate_retry_timeout(most - taken, kwargs["options"], headers)
        except (KeyError, AttributeError, TypeError):
            return super()._sleep_for_retry(**kwargs)
        if deadline is None:  # not a reply (the model list): logged, and waited here
            retrying = Retrying(_retry_reason(response), seconds, taken + 1, most)
            log.info("%s", retrying)
            time.sleep(seconds)
            return
        left = deadline.remaining()
        if left is not None and left <= seconds:  # the retry would begin past reply_timeout
            why = "" if deadline.overdue else _retry_reason(response)
            raise reply_timeout_error(self._owner.config, began=False, why=why)
        local.retries += 1  # a reply's retries after the headers count too
        local.backoff += 1
        retrying = Retrying(_retry_reason(response), seconds, local.retries, self._owner.config.max_retries)
        limits = stated_limits(headers) if headers is not None else None
        log.info("%s", retrying)
        raise RetryLater(retrying, limits)  # out of the SDK's loop: the reply's stream says it, then waits


# A 429 whose headers say an exhausted limit resets further off than this is not retried: the
# SDK's retries (seconds apart) would all be refused too.
RETRY_IS_FUTILE_S = 20.0


def _resets_later(headers: Any) -> bool:
    """Whether a 429's headers say the limit it hit resets later than the SDK's retries would come
    (and ask for no particular wait, which the SDK would honour)."""
    if headers is None or headers.get("retry-after") or headers.get("retry-after-ms"):
        return False
    limits = read_rate_limits(headers)
    binding = limits.binding() if limits is not None else None
    return binding is not None and binding[0] is not None and binding[1] > RETRY_IS_FUTILE_S


def sdk_class(owner: Any, base: type):  # owner: the ChatClient (its config, its thread-local reply state)
    """openai.OpenAI (or AzureOpenAI), with its retries made visible and no retry for an account out of credit.

    The SDK keeps its own retry policy (Retry-After, capped; exponential backoff with
    jitter); this subclass only says each retry out loud, as a Retrying event in the reply's
    stream (the wait is taken there, after the event), and stops a 429 insufficient_quota from
    being retried, since waiting cannot fix it.
    If a later SDK changes these private hooks, its own behaviour is kept, silently.
    """
    return type(base.__name__, (_Visible, base), {"_owner": owner})


def _retry_reason(response) -> str:
    if response is None:
        return "the connection failed"
    if response.status_code == 429:
        return "rate limited"
    if response.status_code >= 500:
        return f"the server failed (HTTP {response.status_code})"
    return f"the server answered HTTP {response.status_code}"
