"""What a batch will cost before anything is sent, and whether [budget] lets it run.

The requests' tokens are counted as a one-shot ask counts them (exact where the model's
encoding is at hand, ≈ where not); a reply's tokens cannot be known beforehand, so each is
taken as max_tokens when that is set (the most it may be), or else as ASSUMED_REPLY_TOKENS,
and the figures say which. Spending so far comes from the same usage ledger the sessions'
caps read, so a batch and the REPL share one budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from chatcli.base.events import Usage
from chatcli.base.format import format_cost
from chatcli.core.accounts import ledger_spending
from chatcli.core.budget import Budget, BudgetGuard, LedgerUnreadable, Spending
from chatcli.llm.pricing import Pricing
from chatcli.llm.tokens import Count, Tokenizer
from chatcli.store.db import Store, StoreError, describe, is_store_error

# A reply's tokens when no max_tokens bounds them: said wherever an estimate leans on it.
ASSUMED_REPLY_TOKENS = 256
# Seconds to wait, once, for the model's encoding, so a count can be exact (as near a window in a one-shot ask).
COUNT_WAIT_S = 2.0


@dataclass(frozen=True)
class Estimate:
    """A job's requests, their tokens and their cost at list prices, before any is sent."""

    model: str
    requests: int
    prompt: Count  # the requests' tokens, summed
    reply_each: int  # tokens taken for each reply
    reply_bounded: bool  # True: max_tokens, the most a reply may take; False: ASSUMED_REPLY_TOKENS
    cost: float | None  # None: the model has no price
    per_row: dict[str, Usage]  # custom_id -> its request's tokens and its reply's, for the runner's checks
    batch: bool = False  # priced at the Batch API's prices, not the list prices

    @property
    def prices(self) -> str:
        return "batch prices" if self.batch else "list prices"

    @property
    def reply_tokens(self) -> int:
        return self.reply_each * self.requests

    @property
    def tokens(self) -> int:
        return self.prompt.tokens + self.reply_tokens

    def assumption(self) -> str:
        """What the reply figures rest on, in words."""
        if self.reply_bounded:
            return f"at most {self.reply_each:,} tokens a reply (max_tokens)"
        return f"{self.reply_each:,} tokens a reply, assumed: set --max-tokens to bound them"

    def bound(self) -> str:
        """'up to' a cost when the replies are counted at max_tokens, 'about' one when assumed."""
        return "up to" if self.reply_bounded else "about"

    def figures(self) -> str:
        """'100 requests, 12,345 tokens in and 25,600 out (...), about $0.0123 at list prices'."""
        n = f"{self.requests:,} request{'s' if self.requests != 1 else ''}"
        cost = (f"{self.bound()} {format_cost(self.cost)} at {self.prices}" if self.cost is not None
                else f"cost unknown (no price for {self.model})")
        return f"{n}, {self.prompt} tokens in and {self.reply_tokens:,} out ({self.assumption()}), {cost}"

    def lines(self) -> list[str]:
        """--dry-run's report, before the first request."""
        # ≈ says the count is an estimate; "about" would say it again
        bound = f"{self.bound()} " if self.reply_bounded or self.prompt.exact else ""
        cost = (f"{bound}{format_cost(self.cost, exact=self.prompt.exact)} at {self.prices}" if self.cost is not None
                else f'unknown: chatcli has no price for {self.model}; add [prices."{self.model}"] to the config')
        return [
            f"requests: {self.requests:,} to {self.model}",
            f"tokens in: {self.prompt}" + ("" if self.prompt.exact else " (estimated: no tokenizer for this model at hand)"),
            f"tokens out: {self.reply_tokens:,} ({self.assumption()})",
            f"cost: {cost}",
        ]


def estimate(bodies: Iterable[tuple[str, dict[str, Any]]], *, tokenizer: Tokenizer, pricing: Pricing,
             model: str, batch: bool = False) -> Estimate:
    """The estimate for these rows' bodies (custom_id, body), all to `model`; at the Batch API's prices with `batch`."""
    tokenizer.preload(model, wait=COUNT_WAIT_S)
    rows = list(bodies)
    params = rows[0][1] if rows else {}
    bound = params.get("max_tokens") or params.get("max_completion_tokens")
    reply = bound if isinstance(bound, int) and bound > 0 else ASSUMED_REPLY_TOKENS
    total, per_row, cost = Count(0), {}, 0.0
    for custom_id, body in rows:
        count = tokenizer.messages(model, body["messages"])
        total = total + count
        usage = Usage(count.tokens, reply, count.tokens + reply)
        per_row[custom_id] = usage
        row_cost = pricing.cost(model, usage, batch=batch)
        cost = None if row_cost is None or cost is None else cost + row_cost
    return Estimate(model, len(rows), total, reply, bound is not None, cost, per_row, batch)


def ledger_reader(store: Store, pricing: Pricing) -> Callable[[float], Spending]:
    """Spending since a time, from the ledger every session and batch writes to, as the caps count it."""

    def spend_since(since: float) -> Spending:
        try:
            return ledger_spending(store.spend_since(since), pricing)
        except Exception as exc:
            if not is_store_error(exc):
                raise
            raise LedgerUnreadable(str(exc) if isinstance(exc, StoreError) else describe(exc, store.path)) from None

    return spend_since


def budget_guard(store: Store, budget: Budget, pricing: Pricing,
                 *, in_flight: Callable[[], Spending] | None = None) -> BudgetGuard:
    """The caps over the ledger's spending, plus (for a run under way) what its requests in flight may spend."""
    read = ledger_reader(store, pricing)

    def spend_since(since: float) -> Spending:
        spent = read(since)
        if in_flight is None:
            return spent
        more = in_flight()
        return Spending(spent.usd + more.usd, spent.tokens + more.tokens, spent.unpriced)

    def claim(name: str, since: float) -> bool | None:
        try:
            return store.claim_notice(name, since)
        except Exception:  # noqa: BLE001 - nowhere to record it: the warning is given, perhaps again
            return None

    return BudgetGuard(budget, spend_since, claim)


def check_job(guard: BudgetGuard, job: Estimate) -> tuple[str | None, str | None]:
    """(refusal, warning) for running the whole job now: one sentence with its figures and the cap's."""
    return guard.check(cost=job.cost, tokens=job.tokens, model=job.model, what=f"This batch ({job.figures()})")
