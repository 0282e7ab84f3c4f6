"""The output strategy: how every reply of a run is drawn, chosen once from the terminal, NO_COLOR and the flags."""

from __future__ import annotations

import io
from functools import cached_property
from typing import TYPE_CHECKING, TextIO

from chatcli.base.env import Env
from chatcli.ui.render import MarkdownRenderer, PlainRenderer, Renderer, make_console

if TYPE_CHECKING:
    from rich.console import Console

MARKDOWN = "markdown"  # live markdown, on a terminal that wants decoration


PLAIN = "plain"  # plain text on a terminal: --plain, render = "plain", NO_COLOR


PIPE = "pipe"  # plain text to a pipe or a file (or held back, for --json and --schema)


class Output:
    """How every reply of a run is drawn: chosen once, by make_renderer, and handed down.

    Nothing downstream asks whether stdout is a terminal again: a front end asks this for a
    fresh renderer for each reply, and draws its notices on `console`.
    """

    def __init__(self, kind: str, *, out: TextIO, notices: TextIO | None = None, stalls: TextIO | None = None,
                 color: bool = True, held: bool = False) -> None:
        self.kind = kind
        self.out = out  # where the reply goes
        self.held = held  # `out` is a buffer: the reply goes out once, checked or inside JSON
        self.notices = notices  # where plain text says a retry or a log line; None: not said
        self.stalls = stalls  # a terminal on which plain text says a stall live; None: not said
        self.color = color

    @property
    def markdown(self) -> bool:
        return self.kind == MARKDOWN

    @cached_property
    def console(self) -> Console:
        """The rich Console on `out`, made when first drawn on (plain output to a pipe never needs rich)."""
        return make_console(self.out, color=self.color)

    def held_text(self) -> str:
        """The reply held back, as it came, filtered ("" when replies are not held)."""
        return self.out.getvalue() if self.held and isinstance(self.out, io.StringIO) else ""

    def renderer(self, *, show_reasoning: bool = True) -> Renderer:
        """A renderer for one reply (show_reasoning is read each time: /reasoning turns it on and off)."""
        if self.markdown:
            return MarkdownRenderer(self.console, show_reasoning=show_reasoning)  # says a stall in its live region
        # On a terminal (PLAIN), a stall notice shares the line with the reply's text: it goes after it.
        return PlainRenderer(self.out, notices=self.notices, stalls=self.stalls, after_text=self.kind == PLAIN)


def make_renderer(env: Env, *, markdown: bool, repl: bool, hold: bool = False) -> Output:
    """The output strategy, chosen once for the run, from the terminal, NO_COLOR and the flags.

    `markdown`: the settings ask for it (render = "markdown", no --plain); it is drawn only on
    a terminal, and not with NO_COLOR. `repl`: notices go on the terminal itself, not on stderr.
    `hold`: the reply is held back to go out once, checked or inside JSON (--schema, --json).
    """
    notices, notices_terminal = (env.stdout, env.stdout_isatty) if repl else (env.stderr, env.stderr_isatty)
    stalls = notices if notices_terminal else None
    color = not env.no_color
    if hold:
        return Output(PIPE, out=io.StringIO(), notices=notices, stalls=stalls, color=color, held=True)
    if not env.stdout_isatty:
        kind = PIPE
    else:
        kind = MARKDOWN if markdown and not env.no_color else PLAIN
    return Output(kind, out=env.stdout, notices=notices, stalls=stalls, color=color)


def warm_up_rendering() -> None:
    """Import what the first reply draws with (rich's markdown), in the REPL's background warm-up."""
    import rich.markdown  # noqa: F401  (off the startup path: the prompt comes first)
