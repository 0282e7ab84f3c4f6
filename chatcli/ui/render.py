"""Drawing replies: live markdown for a terminal, plain text for pipes.

Model text is always data: it is never parsed as rich markup, and the
ControlFilter takes every terminal control sequence out of it before it is
drawn. The markdown renderer prints each finished block once to the normal
scrollback and keeps only the unfinished tail in a small live region, so a
reply costs time linear in its length and nothing is repeated or cut. A block
past the size where markdown helps (a line of many screens, a table of
thousands of rows) is drawn as the plain text it is, as it comes, and said
once (fallback.py). What model text looks like as markdown is markdown.py's.
Everything else chatcli draws (results, notices, the stats line) is in views.py.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Iterator, TextIO

from chatcli.base.blocks import BlockSplitter, LineBuffer
from chatcli.base.events import NOTICES, Event, Held, LogLine, ReasoningDelta, TextDelta, ToolShown, Withheld
from chatcli.base.text import ControlFilter
from chatcli.core.turn import STALL_S
from chatcli.ui.fallback import PlainBlock, long_line, too_big, unfinished_too_big
from chatcli.ui.markdown import code_text, ends_with_spacing, markdown
from chatcli.ui.stall import StallNotice
from chatcli.ui.terminal import InterruptGuard

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions


class Renderer:
    """What both renderers share: control sequences filtered out, Ctrl-C held while drawing."""

    def __init__(self) -> None:
        self._filter = ControlFilter()
        self._guard = InterruptGuard()

    def __enter__(self) -> Renderer:
        self._guard.install()
        self._start()
        return self

    def handle(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            text = self._filter.feed(event.text)
            if text:
                self._draw(text)

    def __exit__(self, *exc: object) -> None:
        try:
            # The reply is over; a Ctrl-C now only cuts short the drawing of it.
            with self._guard.hold(deliver=False):
                rest = self._filter.flush()  # a joiner the reply ended with, shown
                if rest:
                    self._draw(rest)
                self._finish()
        finally:
            self._guard.uninstall()

    def _start(self) -> None:
        pass

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing drawn meanwhile: a question is asked on the terminal (a tool call's approval)."""
        yield

    def _draw(self, text: str) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass


class PlainRenderer(Renderer):
    """Writes the reply as it streams, as plain text: for pipes, files and --plain.

    `stalls`: a terminal on which to say, live, that no token has come for a while mid-reply
    (stderr in one-shot mode, the terminal itself in the REPL); `after_text` when the reply is
    drawn on that terminal too, so the notice goes at the end of its line.
    """

    def __init__(self, out: TextIO, *, notices: TextIO | None = None, stalls: TextIO | None = None,
                 after_text: bool = False) -> None:
        super().__init__()
        self._out = out
        self._notices = notices  # where a retry is said (stderr in one-shot mode); None: not said
        self._last = "\n"
        self._stall = None
        if stalls is not None:
            self._stall = StallNotice(stalls, after_text=after_text)

    def _start(self) -> None:
        if self._stall is not None:
            self._stall.start()

    def _quiet(self):
        """The terminal to write on, with the stall notice erased."""
        return self._stall.clear() if self._stall is not None else nullcontext()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The stall notice erased, and held off, while a question is asked on the terminal."""
        with self._quiet():
            yield

    def handle(self, event: Event) -> None:
        if isinstance(event, (TextDelta, ReasoningDelta, Held)) and self._stall is not None:
            self._stall.token()
        if isinstance(event, (*NOTICES, Withheld)):
            if self._notices is not None:
                line = str(event) if isinstance(event, (LogLine, ToolShown)) else f"chatcli: {event}."
                if isinstance(event, Withheld):  # in the reply's place: on the terminal, or stderr beside a pipe
                    line = str(event) if self._notices is self._out else f"chatcli: {event}"
                with self._quiet():
                    if self._notices is self._out and self._last != "\n":
                        line = "\n" + line  # not glued to the end of a line of the reply
                        self._last = "\n"
                        if self._stall is not None:
                            self._stall.wrote("\n")
                    self._notices.write(line + "\n")
                    self._notices.flush()
            return
        super().handle(event)

    def _draw(self, text: str) -> None:
        with self._guard.hold(), self._quiet():  # a Ctrl-C waits until the text is out
            self._last = text[-1]
            self._out.write(text)
            self._out.flush()
            if self._stall is not None:
                self._stall.wrote(text)

    def _finish(self) -> None:
        if self._stall is not None:
            self._stall.stop()
        if self._last != "\n":
            self._out.write("\n")
        self._out.flush()


class MarkdownRenderer(Renderer):
    """Live markdown: finished blocks go to scrollback once; the tail is redrawn ~12 times a second.

    Reasoning that a model streams before its answer is drawn dimmed, behind a
    gutter, line by line, and set apart from the answer; with show_reasoning
    off, a spinner says the model is thinking instead.
    """

    def __init__(self, console: Console, *, code_theme: str = "monokai", show_reasoning: bool = True) -> None:
        super().__init__()
        self._console = console
        self._code_theme = code_theme
        self._splitter = BlockSplitter()
        self._newline_before_next = False
        self._width = console.width  # for the limits on blocks; taken once, as the console may ask the terminal
        self.plain = PlainBlock()  # the unfinished block when it is too big for markdown
        self._said_plain = False
        self.blocks = 0  # the blocks finished so far: the live region knows a new one from a grown one
        self._live = None
        self._show_reasoning = show_reasoning
        self._reasoning_filter = ControlFilter()
        self._reasoning_line = LineBuffer()  # the reasoning line still being written
        self._reasoning_shown = False  # reasoning lines went to scrollback, and no answer yet
        self.thinking = False  # reasoning is arriving (the tail says so when it is hidden)
        self.held = False  # the reply is arriving, held back to be checked when it ends (block_words)
        self.printing = False  # a block is going to scrollback: the tail waits for the next frame
        self.started = time.monotonic()
        self.last_token: float | None = None  # when the last token (text or reasoning) came

    def stalled_for(self) -> float | None:
        """Seconds since the last token, once the reply has begun and STALL_S have passed without one."""
        last = self.last_token
        if last is None or time.monotonic() - last < STALL_S:
            return None
        return time.monotonic() - last

    def handle(self, event: Event) -> None:
        if isinstance(event, (TextDelta, ReasoningDelta, Held)):
            self.last_token = time.monotonic()
        if isinstance(event, Held):  # the reply is coming, held back until it ends (the content filter)
            self.held = True
            return
        if isinstance(event, ReasoningDelta):
            self.thinking = True
            text = self._reasoning_filter.feed(event.text)
            if text and self._show_reasoning:
                self._draw_reasoning(text)
            return
        if isinstance(event, TextDelta):
            if self.thinking:
                self.thinking = False
                self._end_reasoning()
        elif isinstance(event, (*NOTICES, Withheld)):
            from rich.text import Text  # lazy: keeps rich off the startup path

            self._print(Text(str(event), style="dim" if isinstance(event, (LogLine, ToolShown)) else "yellow"))
            return
        super().handle(event)

    def _draw_reasoning(self, text: str) -> None:
        *complete, last = text.split("\n")
        for piece in complete:
            # Taken first: the live region redraws as the line is printed.
            line = self._reasoning_line.take() + piece if self._reasoning_line else piece
            self._print_reasoning(line)
        if last:
            self._reasoning_line.add(last)

    def _print_reasoning(self, line: str) -> None:
        if len(line) > long_line(self._width):
            # Not wrapped by rich, which takes more than linear time over it: the terminal wraps it.
            from rich.segment import Segment, Segments  # lazy: keeps rich off the startup path
            from rich.style import Style  # lazy: keeps rich off the startup path

            dim = Style(dim=True)
            self._print(Segments([Segment("│ ", dim), Segment(line, dim + Style(italic=True)), Segment.line()]))
        else:
            self._print(reasoning_text(line))
        self._reasoning_shown = True

    def _end_reasoning(self) -> None:
        """The answer begins: the rest of the reasoning goes out, then a blank line sets them apart."""
        if self._reasoning_line:
            self._print_reasoning(self._reasoning_line.take())
        if self._reasoning_shown:
            self._print("")
            self._reasoning_shown = False

    def reasoning_tail(self, length: int) -> str:
        """The last `length` characters of the reasoning line being written, if reasoning is shown."""
        return self._reasoning_line.end(length) if self._show_reasoning else ""

    def _start(self) -> None:
        from rich.live import Live  # lazy: keeps rich off the startup path

        self._live = Live(
            _Tail(self),
            console=self._console,
            auto_refresh=True,
            refresh_per_second=12,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._live.start()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The live region erased and stopped while a question is asked on the terminal, then drawn again."""
        live = self._live
        if live is None or not live.is_started:
            yield
            return
        self.printing = True
        try:
            live.stop()
        finally:
            self.printing = False
        try:
            yield
        finally:
            self._start()

    def _draw(self, text: str) -> None:
        splitter = self._splitter
        for block in splitter.feed(text):
            self._block_done(block)
        if not self.plain.active and unfinished_too_big(splitter, self._width):
            # A long line may be the start of a block of its own: the one before it is not too big.
            block = splitter.cut_before_line()
            if block is not None:
                self._block_done(block)
            if why := unfinished_too_big(splitter, self._width):
                self._fall_back(why)
        if self.plain.active and self.plain.add(splitter.take_lines()):
            self._print_plain(self.plain.take())

    def _finish(self) -> None:
        if self._live is not None:
            # The live region is erased as it stops: rendering the tail once more would be wasted.
            self.printing = True
            try:
                self._live.stop()
            finally:
                self.printing = False
        self._end_reasoning()
        rest = self._splitter.take_rest()
        if self.plain.active or rest.strip():
            self._block_done(rest, count=False)

    def _block_done(self, block: str, *, count: bool = True) -> None:
        self.blocks += count
        if not self.plain.active and (why := too_big(block, self._width)):
            self._fall_back(why)
        if self.plain.active:  # the block drawn as plain text has ended
            self._print_plain(self.plain.take(block, ended=True))
            self._newline_before_next = True
        else:
            self._print_block(block)

    def _fall_back(self, why: str) -> None:
        """The unfinished block is too big for markdown: from here to its end it is drawn as plain text."""
        from rich.text import Text  # lazy: keeps rich off the startup path

        self.plain.active = True
        if self._newline_before_next:
            self._print("")
        if not self._said_plain:
            self._said_plain = True
            self._print(Text(f"{why} is too long to format as markdown; it is shown as plain text", style="dim"))
        self._newline_before_next = False

    def _print_plain(self, text: str) -> None:
        """Print text as it is, without rich's wrapping or styles: its control sequences are filtered
        out already, and the terminal wraps a long line, so a copy gives it back as written."""
        from rich.segment import Segment, Segments  # lazy: keeps rich off the startup path

        if text:
            self._print(Segments([Segment(text), Segment.line()]))

    def plain_rows(self, width: int, height: int) -> list[str]:
        return self.plain.rows(self._splitter, width, height)

    def _markdown(self, text: str):
        return markdown(text, code_theme=self._code_theme)

    def _print_block(self, text: str) -> None:
        from rich.segment import Segment, Segments  # lazy: keeps rich off the startup path

        md = self._markdown(text)
        top = [token for token in md.parsed if token.level == 0]
        if not top and text.strip():
            # Only link reference definitions ([id]: url). Streamed, the links that use them were
            # drawn before they arrived, as written; the definitions are shown so the URLs are not lost.
            from rich.text import Text  # lazy: keeps rich off the startup path

            self._print_apart(Text(text.strip(), style="dim"))
            return
        if len(top) == 1 and top[0].type in ("fence", "code_block"):
            # Code goes out line for line, never wrapped by us: the terminal wraps a long
            # line, and copying it back gives the code as written.
            info = top[0].info.partition(" ")[0] if top[0].type == "fence" else ""
            self._print_apart(code_text(top[0].content.rstrip(), info or "text", self._code_theme), soft_wrap=True)
            return
        lines = self._console.render_lines(md, pad=False)
        # rich gives some blocks (lists, quotes, tables) their own leading blank
        # line; add the separator only where the block does not bring one.
        if self._newline_before_next and lines and any(seg.text for seg in lines[0]):
            lines.insert(0, [])
        self._print(Segments([seg for line in lines for seg in (*line, Segment.line())]))
        self._newline_before_next = ends_with_spacing(md)

    def _print_apart(self, renderable, *, soft_wrap: bool = False) -> None:
        """Print a block chatcli draws itself (not rich's Markdown), with a blank line before and after."""
        if self._newline_before_next:
            self._print("")
        self._print(renderable, soft_wrap=soft_wrap)
        self._newline_before_next = True

    def _print(self, renderable, *, soft_wrap: bool = False) -> None:
        """Print to scrollback, above the live region, once."""
        with self._guard.hold():
            if self._live is not None and self._live.is_started:
                # rich's Live positions the cursor under its lock but draws after
                # releasing it; holding the lock keeps the refresh thread from
                # drawing in between, which would overwrite lines of scrollback.
                with self._live._lock:
                    # rich redraws the live region under everything printed; the tail is
                    # left empty here and drawn by the next frame, so that a burst of
                    # finished blocks does not render the tail once for each.
                    self.printing = True
                    try:
                        self._console.print(renderable, soft_wrap=soft_wrap, crop=False)
                    finally:
                        self.printing = False
            else:
                self._console.print(renderable, soft_wrap=soft_wrap, crop=False)

    def tail(self) -> str:
        """The unfinished block, or the end of a long code block (the live region shows only its end)."""
        if self._splitter.in_code and self._splitter.lines > 2 * TAIL_ROWS:
            return self._splitter.code_excerpt(TAIL_ROWS)
        return self._splitter.text


SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def reasoning_text(line: str):
    """A line of a model's reasoning: dimmed, behind a gutter that sets it apart from the answer."""
    from rich.text import Text  # lazy: keeps rich off the startup path

    return Text.assemble(("│ ", "dim"), (line, "dim italic"))


TAIL_ROWS = 8  # the most rows the live region takes
TAIL_SHARE = 4  # a frame renders the tail again no sooner than this many times what the last render took


def _unpadded(line: list) -> list:
    """A rendered line without the spaces rich pads it with to the full width."""
    from rich.segment import Segment  # lazy: keeps rich off the startup path

    line = list(line)
    while line and not line[-1].control and not line[-1].text.strip() and not (line[-1].style and line[-1].style.bgcolor):
        line.pop()
    if line and not line[-1].control and not (line[-1].style and line[-1].style.bgcolor):
        last = line[-1]
        line[-1] = Segment(last.text.rstrip(" "), last.style)
    return line


class _Tail:
    """The live region: the unfinished block, cropped to its last screenful."""

    def __init__(self, renderer: MarkdownRenderer) -> None:
        self._renderer = renderer
        self._drawn: tuple[tuple[str, int, int], list] | None = None  # the last frame, and what it showed
        self._block = -1  # which block the last frame showed
        self._next = 0.0  # when the tail may be rendered again

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator:
        from rich.segment import Segment  # lazy: keeps rich off the startup path
        from rich.text import Text  # lazy: keeps rich off the startup path

        if self._renderer.printing:
            return
        # A few rows, never a screenful: a window shrunk below the live region's height pushes
        # its top rows into the scrollback, where they can no longer be erased.
        height = max(1, min(TAIL_ROWS, (options.max_height or console.height) - 1))
        stalled = self._renderer.stalled_for()
        notice = None
        if stalled is not None:  # mid-reply, no token for a while: said under the tail, counting up
            frame = SPINNER[int(stalled * 12) % len(SPINNER)]
            notice = Text(f"{frame} no tokens for {int(stalled)}s (Ctrl-C stops the reply)", style="yellow")
            height = max(1, height - 1)
        if self._renderer.plain.active:  # rows as they will be printed: a frame costs what the screen holds
            for row in self._renderer.plain_rows(options.max_width, height):
                yield Segment(row)
                yield Segment.line()
            if notice is not None:
                yield notice
            return
        text = self._renderer.tail()
        if not text.strip():
            # One long line of reasoning wraps: keep it to the tail's rows too.
            reasoning = self._renderer.reasoning_tail(height * max(1, options.max_width - 2))
            if reasoning:
                yield reasoning_text(reasoning)
            if notice is not None:
                yield notice
            elif not reasoning:
                elapsed = time.monotonic() - self._renderer.started
                frame = SPINNER[int(elapsed * 12) % len(SPINNER)]
                doing = "thinking" if self._renderer.thinking else "waiting for the reply"
                if self._renderer.held:
                    doing = "receiving the reply, shown when it ends"
                yield Text(f"{frame} {doing}… {elapsed:.1f}s", style="dim")
            return
        key = (text, options.max_width, height)
        block, now = self._renderer.blocks, time.monotonic()
        # rich redraws the live region on every print and every frame; the tail often has not
        # changed since the last one, and rendering it again would cost a parse. A block that
        # grew but is slow to render waits a few frames: the live region takes a small share of
        # the time, whatever a block costs (it is bounded: a larger one is drawn as plain text).
        # A new block, or a new size of window, is rendered at once.
        drawn = self._drawn
        if drawn is None or drawn[0] != key and (block != self._block or now >= self._next or drawn[0][1:] != key[1:]):
            lines = console.render_lines(self._renderer._markdown(text), options, pad=False)
            # Without the padding to the full width, a window narrowed mid-reply does not wrap
            # every row in two, which would leave rows behind that the next redraw cannot count.
            self._drawn = (key, [_unpadded(line) for line in lines[-height:]])
            self._block, self._next = block, now + TAIL_SHARE * (time.monotonic() - now)
        for line in self._drawn[1]:
            yield from line
            yield Segment.line()
        if notice is not None:
            yield notice


def make_console(out: TextIO, *, color: bool = True, force_terminal: bool | None = None, width: int | None = None):
    """A rich Console that never reads markup in what it prints."""
    from rich.console import Console  # lazy: keeps rich off the startup path

    return Console(
        file=out,
        no_color=not color,
        markup=False,
        emoji=False,
        highlight=False,
        force_terminal=force_terminal,
        width=width,
    )


