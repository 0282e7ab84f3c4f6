"""Reading a response's rate-limit headers: x-ratelimit-{limit,remaining,reset}-{requests,tokens}.

OpenAI, Azure, Groq and others use these names; OpenRouter sends them without the suffix
(its request limit). A reset comes as a Go duration (OpenAI: `1s`, `6m0s`, `20ms`,
`1h2m3.5s`), as seconds (`12`, `0.5`), or as a Unix time in seconds or, as OpenRouter
sends it, milliseconds. A value that reads as none of these is left out, never a failure.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any, Mapping

from chatcli.base.ratelimits import Limit, RateLimits

log = logging.getLogger("chatcli")

# A Go duration: one or more number-unit pairs.
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

# A bare number this large is a point in time, not a wait: past 2001-09-09 in seconds, or in milliseconds.
EPOCH_SECONDS = 1e9
EPOCH_MS = 1e12

# No limit or reset stated in a header is believed past these.
MOST = 10**15
LONGEST_WAIT = 366 * 24 * 3600.0


def stated_limits(headers: Mapping[str, str] | Any) -> RateLimits | None:
    """The rate limits a response's headers state, logged (at -v) when they state any."""
    limits = read_rate_limits(headers)
    if limits is not None:
        log.info("%s", limits.log_line())
    return limits


def read_rate_limits(headers: Mapping[str, str] | Any, *, now: float | None = None) -> RateLimits | None:
    """The rate limits `headers` state, or None if they state none (or none that reads)."""
    now = time.time() if now is None else now
    try:
        named = {str(k).lower(): str(v) for k, v in headers.items()}
    except (AttributeError, TypeError, ValueError):
        return None
    found: dict[str, Limit] = {}
    for kind in ("requests", "tokens"):
        limit = _limit(named, f"-{kind}", now)
        if limit is not None:
            found[kind] = limit
    if "requests" not in found:  # OpenRouter: x-ratelimit-limit, -remaining, -reset (epoch ms)
        limit = _limit(named, "", now)
        if limit is not None:
            found["requests"] = limit
    if not found:
        return None
    return RateLimits(requests=found.get("requests"), tokens=found.get("tokens"), read_at=now)


def _limit(named: dict[str, str], suffix: str, now: float) -> Limit | None:
    limit = _count(named.get(f"x-ratelimit-limit{suffix}"))
    remaining = _count(named.get(f"x-ratelimit-remaining{suffix}"))
    reset = reset_time(named.get(f"x-ratelimit-reset{suffix}"), now=now)
    if limit is None and remaining is None and reset is None:
        return None
    return Limit(limit=limit, remaining=remaining, resets_at=reset)


def _count(value: str | None) -> int | None:
    """A whole number of requests or tokens, or None."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii():  # float() would read other scripts' digits
        return None
    if not text.isdigit():
        try:
            number = float(text)  # "5000.0" from a server that writes every number as a float
        except ValueError:
            return None
        if not math.isfinite(number) or number < 0 or number != int(number):
            return None
        text = str(int(number))
    number = int(text)
    return number if number <= MOST else None


def reset_time(value: str | None, *, now: float) -> float | None:
    """When a limit resets, as time.time() would say it, from a header's value; None if it does not read."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        if not text.isascii():  # float() would read other scripts' digits; Go's µs is no number
            raise ValueError(text)
        number = float(text)
    except ValueError:
        seconds = go_duration(text)
        return None if seconds is None or seconds > LONGEST_WAIT else now + seconds
    if not math.isfinite(number) or number < 0:
        return None
    if number >= EPOCH_MS:
        at = number / 1000
    elif number >= EPOCH_SECONDS:
        at = number
    else:
        return now + number if number <= LONGEST_WAIT else None
    return at if at - now <= LONGEST_WAIT else None


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration ("1h2m3.5s", "6m0s", "20ms"), or None if it is not one."""
    total, at = 0.0, 0
    while at < len(text):
        match = _PART.match(text, at)
        if match is None:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        at = match.end()
    return total if at and math.isfinite(total) else None
