"""Prices per million tokens, the cost of a reported usage, and the rows that say what a session cost.

A model we have no price for has an unknown cost (None), never a made-up one. A cost the
provider reported with the usage is the cost, whatever the table says.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Mapping

from chatcli.base.events import Usage
from chatcli.config.table import Price

# OpenAI's published list prices, USD per 1M tokens, standard tier, as of 2025-08. Through the Batch API
# each costs half (Price.batch), unless a [prices."MODEL"] entry gives batch_input and batch_output.
PRICES_AS_OF = "2025-08"


PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 0.125, 10.00),
    "gpt-5-mini": Price(0.25, 0.025, 2.00),
    "gpt-5-nano": Price(0.05, 0.005, 0.40),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.025, 0.40),
    "gpt-4o": Price(2.50, 1.25, 10.00),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    "o1": Price(15.00, 7.50, 60.00),
    "o1-pro": Price(150.00, 150.00, 600.00),
    "o1-mini": Price(1.10, 0.55, 4.40),
    "o3-pro": Price(20.00, 20.00, 80.00),
    "o3": Price(2.00, 0.50, 8.00),
    "o3-mini": Price(1.10, 0.55, 4.40),
    "o4-mini": Price(1.10, 0.275, 4.40),
    "gpt-4-turbo": Price(10.00, 10.00, 30.00),
    "gpt-4-0125-preview": Price(10.00, 10.00, 30.00),
    "gpt-4-1106-preview": Price(10.00, 10.00, 30.00),
    "gpt-4-32k": Price(60.00, 60.00, 120.00),
    "gpt-4": Price(30.00, 30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 0.50, 1.50),
}


@dataclass(frozen=True)
class Pricing:
    """The built-in table, under the user's [prices."MODEL"] overrides and additions."""

    overrides: Mapping[str, Price] = field(default_factory=dict)

    @functools.cached_property
    def table(self) -> dict[str, Price]:
        return {**PRICES, **self.overrides}

    def price_for(self, model: str) -> Price | None:
        """The price of a model, matching dated snapshots (gpt-4o-2024-08-06) to their family."""
        table = self.table
        if model in table:
            return table[model]
        family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
        return table[family] if family else None

    def cost(self, model: str, usage: Usage, *, batch: bool = False) -> float | None:
        """USD for one usage: what the provider said it cost, where it said (OpenRouter's usage.cost),
        or else the list price (`batch`: the Batch API's, Price.batch); None when neither is known.
        Cached prompt tokens go at the cached price."""
        if usage.cost is not None:
            return usage.cost
        price = self.price_for(model)
        if price is None:
            return None
        if batch:
            price = price.batch()
        fresh = usage.prompt_tokens - usage.cached_tokens
        return (fresh * price.input + usage.cached_tokens * price.cached_input + usage.completion_tokens * price.output) / 1e6


def price_for(model: str) -> Price | None:
    return Pricing().price_for(model)


def cost(model: str, usage: Usage) -> float | None:
    return Pricing().cost(model, usage)


