"""A server's rate limits as its last response stated them, and how they are said.

The client reads them (llm/ratelimits.py), the session keeps the latest, and /usage,
the toolbar, the -v log and a 429's sentence say them: the type lives here, below all
of those. Only numbers are kept, never header text, so what is shown cannot carry a
control sequence from the server. Resets are absolute wall-clock times, taken when
the headers were read, so "resets in 40s" is still right a minute later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Below this share left, the toolbar warns.
LOW = 0.10


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit (requests or tokens): any of its figures may be missing."""

    limit: int | None = None
    remaining: int | None = None
    resets_at: float | None = None  # time.time() when it resets

    @property
    def left(self) -> float | None:
        """The share of the limit left, if both figures are known."""
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return min(self.remaining, self.limit) / self.limit

    def exhausted(self) -> bool:
        return self.remaining == 0

    def reset_passed(self, now: float) -> bool:
        return self.resets_at is not None and self.resets_at <= now

    def counts(self, *, grouped: bool = True) -> str:
        """'4,990 of 5,000 left', or what of it is known."""
        n = (lambda x: f"{x:,}") if grouped else str
        if self.remaining is not None and self.limit is not None:
            return f"{n(self.remaining)} of {n(self.limit)} left" if grouped else f"{n(self.remaining)}/{n(self.limit)}"
        if self.remaining is not None:
            return f"{n(self.remaining)} left"
        if self.limit is not None:
            return f"limit {n(self.limit)}"
        return "no figures"


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The x-ratelimit-* figures of one response; a limit the server did not state is None."""

    requests: Limit | None = None
    tokens: Limit | None = None
    read_at: float = 0.0  # time.time() when the headers were read

    def named(self) -> list[tuple[str, Limit]]:
        return [(name, limit) for name, limit in (("requests", self.requests), ("tokens", self.tokens))
                if limit is not None]

    def summary(self, now: float | None = None) -> str:
        """For /usage: 'requests 4,990 of 5,000 left (resets in 12s); tokens ..., as of 3s ago'."""
        now = time.time() if now is None else now
        parts = [f"{name} {limit.counts()}{_resets(limit, now)}" for name, limit in self.named()]
        ago = now - self.read_at
        return "; ".join(parts) + (f", as of {duration(ago)} ago" if ago >= 1 else ", as of just now")

    def log_line(self) -> str:
        """For -v: 'rate limits: requests 4990/5000 (reset 12ms), tokens 149000/150000 (reset 6m0s)'."""
        parts = []
        for name, limit in self.named():
            reset = f" (reset {duration(max(0.0, limit.resets_at - self.read_at))})" if limit.resets_at is not None else ""
            parts.append(f"{name} {limit.counts(grouped=False)}{reset}")
        return "rate limits: " + ", ".join(parts)

    def warning(self, now: float | None = None) -> str | None:
        """For the toolbar: 'tokens 4% left, resets in 12s' when a limit is under LOW, until it resets."""
        now = time.time() if now is None else now
        low = [(name, limit) for name, limit in self.named()
               if limit.left is not None and limit.left < LOW and not limit.reset_passed(now)]
        if not low:
            return None
        name, limit = min(low, key=lambda pair: pair[1].left or 0.0)
        share = limit.left or 0.0
        shown = "0%" if limit.remaining == 0 else ("<1%" if share < 0.01 else f"{share * 100:.0f}%")
        return f"{name} {shown} left{_resets(limit, now, bare=True)}"

    def binding(self, now: float | None = None) -> tuple[str | None, float] | None:
        """What a 429 most likely hit, and the seconds until it resets: the limit with nothing left
        (of two, the later to reset), else no limit named and the later reset; None when no
        reset is known, or all have passed."""
        now = time.time() if now is None else now
        known = [(name, limit) for name, limit in self.named() if limit.resets_at is not None]
        exhausted = [(name, limit) for name, limit in known if limit.exhausted()]
        if not known:
            return None
        name, limit = max(exhausted or known, key=lambda pair: pair[1].resets_at or 0.0)
        wait = (limit.resets_at or 0.0) - now
        if wait <= 0:
            return None
        return (name if exhausted else None), wait


def _resets(limit: Limit, now: float, *, bare: bool = False) -> str:
    if limit.resets_at is None:
        return ""
    wait = limit.resets_at - now
    said = f"resets in {duration(wait)}" if wait > 0 else "has reset since"
    return f", {said}" if bare else f" ({said})"


def duration(seconds: float) -> str:
    """A wait as OpenAI writes one: 20ms, 12s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s"
