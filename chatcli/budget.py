"""Spending caps ([budget] daily_usd, monthly_usd, daily_tokens), checked before each request.

The spend so far comes from the usage ledger, across every session, or from
the current session alone when nothing is saved. A request that would pass a
cap is refused with a sentence that says how to raise it; at 80% of a cap,
chatcli warns once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

WARN_AT = 0.8


@dataclass(frozen=True)
class Budget:
    daily_usd: float | None = None
    monthly_usd: float | None = None
    daily_tokens: int | None = None
    where: str = "your config file"  # named in a refusal: where to raise the cap


def period_starts(now: float | None = None) -> tuple[float, float]:
    """The start of today and of this month, in local time."""
    t = time.localtime(now)
    day = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    month = time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    return day, month


@dataclass
class BudgetGuard:
    budget: Budget
    spend_since: Callable[[float], tuple[float, int]]  # (USD, tokens) spent since a time
    _warned: set[str] = field(default_factory=set)

    def check(self, *, cost: float | None, tokens: int) -> tuple[str | None, str | None]:
        """(refusal, warning) for a request that would cost about `cost` USD and `tokens` tokens."""
        b = self.budget
        if b.daily_usd is None and b.monthly_usd is None and b.daily_tokens is None:
            return None, None
        day, month = period_starts()
        caps = [
            ("daily_usd", b.daily_usd, day, "today's", "tomorrow"),
            ("monthly_usd", b.monthly_usd, month, "this month's", "next month"),
            ("daily_tokens", b.daily_tokens, day, "today's", "tomorrow"),
        ]
        warning = None
        for name, cap, since, period, next_period in caps:
            if cap is None:
                continue
            usd, used_tokens = self.spend_since(since)
            is_tokens = name == "daily_tokens"
            spent = used_tokens if is_tokens else usd
            after = spent + (tokens if is_tokens else (cost or 0.0))
            show = (lambda v: f"{v:,.0f} tokens") if is_tokens else (lambda v: f"${v:.2f}")
            if after > cap:
                return (
                    f"This request would take {period} spending to {show(after)}, past the {name} budget of "
                    f"{show(cap)}; raise [budget] {name} in {b.where}, or wait until {next_period}.",
                    None,
                )
            if after >= WARN_AT * cap and name not in self._warned and warning is None:
                self._warned.add(name)
                warning = (
                    f"with this request {period} spending comes to {show(after)}, "
                    f"{100 * after / cap:.0f}% of the {name} budget of {show(cap)}"
                )
        return None, warning
