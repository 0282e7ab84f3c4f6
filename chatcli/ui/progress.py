"""A batch run's progress bar on stderr, when stderr is a terminal: rows done and failed, the rate,
the time left and the cost so far, on one line drawn over itself.

Not a terminal (a pipe, a file, a CI log): nothing at all, not even a line at the end, so a
log holds only what the run said. Updates come as each row is committed, hundreds a second
at high -j; the line is drawn at most REDRAW_S apart (and once more at the end), so an update
costs a few attribute writes, not a render.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from chatcli.base.format import format_cost
from chatcli.base.ratelimits import duration
from chatcli.ui.render import make_console

REDRAW_S = 0.1
BAR_WIDTH = 30


class ProgressBar:
    """The bar, drawn with rich's Live (transient: erased when the run ends, for the closing count)."""

    def __init__(self, out: TextIO, *, color: bool = True) -> None:
        self._console = make_console(out, color=color, force_terminal=True)
        self._live: Any = None
        self._started = time.monotonic()
        self._drawn = 0.0
        self._figures: tuple[int, int, int, int, float | None, str | None] = (0, 0, 0, 0, 0.0, None)

    def __enter__(self) -> ProgressBar:
        from rich.live import Live  # lazy: keeps rich off the startup path

        self._started = time.monotonic()
        self._live = Live(self._line(), console=self._console, auto_refresh=False, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, *, total: int, done: int, failed: int, before: int, cost: float | None,
               note: str | None = None) -> None:
        """The run's figures; drawn now if the last drawing is REDRAW_S old, or the run is over."""
        self._figures = (total, done, failed, before, cost, note)
        now = time.monotonic()
        if self._live is not None and (now - self._drawn >= REDRAW_S or done + failed >= total):
            self._drawn = now
            self._live.update(self._line(), refresh=True)

    def say(self, line: str) -> None:
        """A line of text above the bar (already through the terminal's gate)."""
        self._console.print(line, soft_wrap=True)

    def _line(self):
        from rich.progress_bar import ProgressBar as Bar  # lazy: keeps rich off the startup path
        from rich.table import Table  # lazy: keeps rich off the startup path

        total, done, failed, before, cost, note = self._figures
        grid = Table.grid(padding=(0, 1))
        grid.add_row(Bar(total=max(total, 1), completed=done + failed, width=BAR_WIDTH),
                     figures(total=total, done=done, failed=failed, before=before, cost=cost, note=note,
                             elapsed=time.monotonic() - self._started))
        return grid


def figures(*, total: int, done: int, failed: int, before: int, cost: float | None, note: str | None,
            elapsed: float) -> str:
    """'40/100 done · 2 failed · 3.2 rows/s · 19s left · $0.0123': the words beside the bar."""
    parts = [f"{done:,}/{total:,} done"]
    if failed:
        parts.append(f"{failed:,} failed")
    finished = done - before + failed
    rate = finished / elapsed if elapsed > 0 and finished else 0.0
    left = total - done - failed
    if rate:
        parts.append(f"{rate:,.1f} rows/s")
        if left:
            parts.append(f"{duration(left / rate)} left")
    parts.append(format_cost(cost))
    if note:
        parts.append(note)
    return " · ".join(parts)
