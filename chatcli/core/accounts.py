"""What a session cost: tokens and USD per turn and in all, the usage ledger, and the budget's guard.

One source for /usage, the toolbar, `--json`, `chatcli sessions list` and the budget caps.
A turn is priced as the model the server named for it; a model with no known price
costs "unknown" (None), never a made-up figure, from before its first reply on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chatcli.base.events import Usage
from chatcli.core.budget import Budget, BudgetGuard, LedgerUnreadable, Spending
from chatcli.core.cache import CACHE
from chatcli.llm.pricing import Pricing
from chatcli.llm.tokens import MESSAGE_OVERHEAD
from chatcli.store.db import Spend, Spent, StoreError

if TYPE_CHECKING:
    from chatcli.core.journal import Journal
    from chatcli.core.turn import Turn
    from chatcli.llm.tokens import Tokenizer


class Books(Protocol):
    """What the accounts read of the session that holds them (they write only the ledger)."""

    model: str
    turns: list[Turn]
    spent_elsewhere: list[OtherCost]
    journal: Journal
    tokenizer: Tokenizer

    @property
    def shown_model(self) -> str: ...


@dataclass
class Accounts:
    """A session's cost, ledger and budget: the prices and caps it was built with (by app.py),
    over the turns of the session it is bound to (`books`), whichever conversation that holds."""

    pricing: Pricing = field(default_factory=Pricing)
    budget: Budget = field(default_factory=Budget)
    books: Books | None = field(default=None, repr=False)  # set by the session that holds these
    _guard: BudgetGuard | None = field(default=None, repr=False)
    asks_for_cost: bool = False  # requests ask the server for their cost (OpenRouter's usage accounting)
    # Models whose server reported its own cost this run: their spending is counted from that, list price or not.
    _provider_priced: set[str] = field(default_factory=set, repr=False)

    @property
    def _books(self) -> Books:
        assert self.books is not None, "accounts are read through the session that holds them"
        return self.books

    def count_request(self, usage: Usage) -> None:
        """A billed request that is not a turn (a /compact summary): /usage, the toolbar and the ledger count it."""
        model = self._books.model
        cost = self.pricing.cost(model, usage)
        self._books.spent_elsewhere.append(OtherCost(COMPACTION, model, usage, cost))
        self._ledger(model, usage, cost, kind="compact")

    def _ledger(self, model: str, usage: Usage, cost: float | None, *, reply_of: Turn | None = None,
                estimated: bool = False, **how: Any) -> None:
        """Write one request to the usage ledger (the journal adds this session's id and the reply's)."""
        u = usage
        if u.cost is not None:
            self._provider_priced.add(model)
        self._books.journal.spend(
            Spend.of(model, u, cost, source=cost_source(u, cost, exact=not estimated), estimated=estimated, **how),
            reply_of=reply_of,
        )

    def keep_spend(self, turn: Turn) -> None:
        """What a turn that is no longer one (undone, replaced) cost: still counted."""
        row = self.cost_of(turn)
        if row.usage is not None and row.usage.total_tokens:
            self._books.spent_elsewhere.append(OtherCost(UNDONE, turn.model, row.usage, row.cost, row.exact))

    def guard(self) -> BudgetGuard:
        if self._guard is None:
            self._guard = BudgetGuard(
                self.budget, self._spend_since, lambda name, since: self._books.journal.claim_notice(name, since)
            )
        return self._guard

    def check_budget(self, model: str, usage: Usage) -> tuple[str | None, str | None]:
        """(refusal, warning) for a request to `model` that would use about `usage`.

        A model with no list price whose server reports (or is asked for) its own cost is no model the
        USD caps cannot count: what it spends goes into the ledger at the provider's figure. Its next
        request is taken as free until it is billed (nothing says beforehand what the provider will
        charge); a reply that comes back with no cost after all is counted unpriced, and said so."""
        cost = self.pricing.cost(model, usage)
        if cost is None and (self.asks_for_cost or model in self._provider_priced):
            cost = 0.0
        return self.guard().check(cost=cost, tokens=usage.total_tokens, model=model)

    def _spend_since(self, since: float) -> Spending:
        """Spending across every session from the ledger, or this session's alone when there is none
        (no ledger was opened: no budget was set when the run began)."""
        try:
            saved = self._books.journal.spend_since(since)
        except StoreError as exc:
            self._books.journal.take_warning()  # the refusal says why, naming the same file: said once is enough
            raise LedgerUnreadable(str(exc)) from None
        if saved is None:
            rows, _ = self.accounting()
            rows = [r for r in rows if r.usage and r.turn.created_at >= since]
            return Spending(
                usd=sum(r.cost or 0.0 for r in rows),
                tokens=sum(r.usage.total_tokens for r in rows),
                unpriced=tuple(sorted({r.turn.model for r in rows if r.cost is None})),
            )
        return ledger_spending(saved, self.pricing)

    def record_spend(self, turn: Turn) -> None:
        """A turn's cost, written to the ledger as it ends (a reply from the response cache cost nothing)."""
        row = self.cost_of(turn)
        if row.usage is not None and row.usage.total_tokens:
            self._ledger(turn.model, row.usage, row.cost, estimated=not row.exact, reply_of=turn)

    def cost_of(self, turn: Turn) -> TurnCost:
        """A turn's tokens and cost: the server's usage, or for a reply that got somewhere, our estimate.
        A reply from the response cache was billed nothing: no tokens, $0 (its usage is the original's)."""
        return turn_cost(turn, self._books.tokenizer, self.pricing)

    def accounting(self) -> tuple[list[TurnCost], TurnCost]:
        """Tokens and cost per turn and for the session: one source for /usage, the toolbar and budgets.

        The server's usage where it reported one; otherwise, for a reply that got
        somewhere (billed, though unreported), an estimate from our own counts.
        """
        books = self._books
        rows = [self.cost_of(turn) for turn in books.turns]
        # Before anything is billed, a model without a price costs "unknown", not $0.
        priced = rows or books.spent_elsewhere or self.pricing.price_for(books.shown_model) is not None
        total_usage, total_cost, exact = Usage(), 0.0 if priced else None, True
        for row in rows + books.spent_elsewhere:
            if row.usage is not None:
                total_usage = total_usage + row.usage
                exact = exact and row.exact
            total_cost = None if row.cost is None or total_cost is None else total_cost + row.cost
        return rows, TurnCost(None, total_usage, total_cost, exact)

    @property
    def usage(self) -> Usage:
        return sum((turn.usage for turn in self._books.turns if turn.usage), Usage())


def turn_cost(turn: Turn, tokenizer: Any, pricing: Pricing) -> TurnCost:
    """A turn's tokens and cost: the server's usage, or for a reply that got somewhere, our estimate
    (`turn.sent`, and the reply counted with `tokenizer`). A reply from the response cache was billed
    nothing: no tokens, $0 (its usage is the original's)."""
    if turn.cached:
        return TurnCost(turn, None, 0.0, True, cached=True)
    usage, exact = turn.usage, True
    if usage is None and (turn.reply or turn.reasoning) and turn.sent is not None:
        # Reasoning is billed as output too, even when the reply was cut short before the answer.
        said = turn.reasoning + turn.reply
        completion = tokenizer.message(turn.model, "assistant", said).tokens - MESSAGE_OVERHEAD
        usage = Usage(turn.sent.tokens, completion, turn.sent.tokens + completion)
        exact = False
    if usage is None:  # nothing billed: free, if the model has a price at all
        return TurnCost(turn, None, 0.0 if pricing.price_for(turn.model) else None, exact)
    return TurnCost(turn, usage, pricing.cost(turn.model, usage), exact)


def ledger_spending(saved: Spent, pricing: Pricing) -> Spending:
    """What the ledger says was spent, as the caps count it: rows it holds with no price (a model
    priced since, rows from before the ledger kept costs) are priced now where the table knows the model."""
    usd, unpriced = saved.usd, []
    for row in saved.unpriced:
        usage = Usage(row.prompt_tokens, row.completion_tokens, row.total_tokens, row.cached_tokens)
        cost = pricing.cost(row.model, usage)
        if cost is None:
            unpriced.append(row.model or "unnamed model")
        else:
            usd += cost
    return Spending(usd=usd, tokens=saved.tokens, unpriced=tuple(unpriced))


@dataclass(frozen=True)
class TurnCost:
    """What one turn cost, or (turn None) a session's total."""

    turn: Turn | None
    usage: Usage | None  # None: nothing was billed, or nothing is known
    cost: float | None  # None: the model's price is unknown
    exact: bool  # False: estimated from our own counts
    cached: bool = False  # a reply from the response cache: no request, no cost

    @property
    def source(self) -> str | None:
        """Where the cost comes from: "provider", "list", "estimate", "cache" (no request was made), or
        None with no cost."""
        return CACHE if self.cached else cost_source(self.usage, self.cost, exact=self.exact)


@dataclass(frozen=True)
class OtherCost:
    """A billed request that is no longer one of the session's turns: undone, replaced, or a /compact summary."""

    what: str
    model: str
    usage: Usage
    cost: float | None
    exact: bool = True


def cost_source(usage: Usage | None, cost: float | None, *, exact: bool) -> str | None:
    """"provider" (the server reported what the request cost), "list" (list prices over the server's
    usage), "estimate" (list prices over chatcli's own count, where the server reported none), or
    None when there is no cost, or nothing was billed (a request that failed before its reply)."""
    if cost is None or usage is None:
        return None
    if usage is not None and usage.cost is not None:
        return "provider"
    return "list" if exact else "estimate"


UNDONE = "undone or replaced"


COMPACTION = "/compact"
