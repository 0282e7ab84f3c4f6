"""Figures as chatcli writes them: a cost, an age."""

from __future__ import annotations

import time


def format_cost(value: float | None, *, exact: bool = True) -> str:
    if value is None:
        return "cost unknown"
    mark = "" if exact else "≈"
    if 0 < value < 0.0001:
        return f"{mark}<$0.0001"
    return f"{mark}${value:.4f}" if value < 1 else f"{mark}${value:.2f}"


def age(timestamp: float) -> str:
    """How long ago, in the largest whole unit."""
    seconds = max(0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
