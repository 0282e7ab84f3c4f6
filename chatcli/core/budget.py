"""Spending caps ([budget] daily_usd, monthly_usd, daily_tokens), checked before each request.

The spend so far comes from the usage ledger, across every session (kept even
with --no-save while a budget is set). A ledger that cannot be read (or written)
refuses the request: a cap that cannot be checked does not hold. A request that
would pass a cap is refused with a sentence that says how to raise it. At 80% of
a cap chatcli warns once per period, across processes: the ledger records that
the warning was given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

WARN_AT = 0.8


class LedgerUnreadable(Exception):
    """The usage ledger cannot be read (or written); the message says why, in words."""


@dataclass(frozen=True)
class Budget:
    daily_usd: float | None = None
    monthly_usd: float | None = None
    daily_tokens: int | None = None
    where: str = "your config file"  # named in a refusal: where to raise the cap

    @property
    def capped(self) -> bool:
        """Whether any cap is set: without one, nothing needs counting."""
        return self.daily_usd is not None or self.monthly_usd is not None or self.daily_tokens is not None


def period_starts(now: float | None = None) -> tuple[float, float]:
    """The start of today and of this month, in local time."""
    t = time.localtime(now)
    day = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    month = time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    return day, month


@dataclass(frozen=True)
class Spending:
    """What was spent since a time: USD at known prices, all tokens, and the models with no price."""

    usd: float = 0.0
    tokens: int = 0
    unpriced: tuple[str, ...] = ()  # USD caps cannot count what was spent on these


@dataclass
class BudgetGuard:
    budget: Budget
    spend_since: Callable[[float], Spending]
    # Records that a warning was given this period, so it is given once, not once per process;
    # returns False if it was given already, None if there is nowhere to record it.
    claim: Callable[[str, float], bool | None] = lambda name, since: None
    _warned: set[tuple[str, float]] = field(default_factory=set)

    def check(self, *, cost: float | None, tokens: int, model: str,
              what: str = "This request") -> tuple[str | None, str | None]:
        """(refusal, warning) for a request to `model` that would cost about `cost` USD (None: no price) and `tokens`
        tokens; `what` names it in the refusal (a batch names itself and its figures)."""
        b = self.budget
        if not b.capped:
            return None, None
        day, month = period_starts()
        caps = [
            ("daily_usd", b.daily_usd, day, "today's", "tomorrow"),
            ("monthly_usd", b.monthly_usd, month, "this month's", "next month"),
            ("daily_tokens", b.daily_tokens, day, "today's", "tomorrow"),
        ]
        warnings: list[tuple[str, float, str]] = []  # (notice, period start, sentence)
        unpriced = {model} if cost is None else set()
        for name, cap, since, period, next_period in caps:
            if cap is None:
                continue
            try:
                spent = self.spend_since(since)
            except LedgerUnreadable as exc:
                return (f"{what} was not sent, because a [budget] cap is set and the usage ledger cannot be used: "
                        f"{exc}."), None
            is_tokens = name == "daily_tokens"
            if not is_tokens:
                unpriced.update(spent.unpriced)
            after = spent.tokens + tokens if is_tokens else spent.usd + (cost or 0.0)
            show = (lambda v: f"{v:,.0f} tokens") if is_tokens else (lambda v: f"${v:,.{_places(after, cap)}f}")
            if after > cap:
                return (
                    f"{what} would take {period} spending to {show(after)}, past the {name} budget of "
                    f"{show(cap)}; raise [budget] {name} in {b.where}, or wait until {next_period}.",
                    None,
                )
            if cap > 0 and after >= WARN_AT * cap:  # a cap of 0 refuses anything billed; nothing to warn of
                sentence = (
                    f"with this request {period} spending comes to {show(after)}, "
                    f"{100 * after / cap:.0f}% of the {name} budget of {show(cap)}"
                )
                warnings.append((f"{name} {cap}", since, sentence))  # a raised cap gets its own warning
        if unpriced and (b.daily_usd is not None or b.monthly_usd is not None):
            names = ", ".join(sorted(unpriced))
            first = sorted(unpriced)[0]
            warnings.append((
                "unpriced",
                day,
                f"the USD budgets cannot count spending on models with no price ({names}); "
                f'add [prices."{first}"] in {b.where} to count it (0 is fine for a free model)',
            ))
        told = [sentence for name, since, sentence in warnings if self._first_time(name, since)]
        return None, "; ".join(told) or None

    def _first_time(self, name: str, since: float) -> bool:
        """Whether to give this warning: not yet given by this process, nor recorded as given this period."""
        if (name, since) in self._warned:
            return False
        self._warned.add((name, since))
        return self.claim(name, since) is not False


def _places(spent: float, cap: float) -> int:
    """Decimal places that show the cap as written and tell spending apart from it: $2.01 of $2.00, $0.0029 of $0.0035."""
    places = 2
    while places < 6 and (f"{spent:.{places}f}" == f"{cap:.{places}f}" or float(f"{cap:.{places}f}") != cap):
        places += 1
    return places
