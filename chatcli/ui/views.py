"""Views: what chatcli draws besides a reply itself: a command's Result, errors and notices, the
stats line after a reply, a resumed session's recap.

Everything shown here may hold untrusted text (what the user typed, what was saved, what a
server said), so it goes through the terminal's gate (terminal.shown: no control sequence, no
configured secret, invisible characters made visible) and is never read as rich markup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chatcli.base.images import label
from chatcli.base.text import shown, strip_controls
from chatcli.core.filtered import visible_reply
from chatcli.core.turn import PENDING

if TYPE_CHECKING:
    from rich.console import Console

    from chatcli.commands import Result
    from chatcli.core.session import Session
    from chatcli.core.turn import Outcome


def show_result(console: Console, result: Result) -> None:
    """Draw a slash command's Result."""
    from rich.table import Table  # lazy: keeps rich off the startup path
    from rich.text import Text  # lazy: keeps rich off the startup path

    # Results echo what the user typed and what was saved: untrusted text too.
    if result.text:
        console.print(Text(shown(result.text), style="red" if result.error else "cyan"))
    if result.rows:
        table = Table(*result.headers, show_edge=False, box=None, pad_edge=False, header_style="bold")
        for row in result.rows:
            table.add_row(*(Text(shown(cell)) for cell in row))
        console.print(table)


def show_error(console: Console, message: str) -> None:
    from rich.text import Text  # lazy: keeps rich off the startup path

    console.print(Text(shown(message), style="bold red"))


def stats_line(session: Session, turn) -> str | None:
    """Time to first token, the reply's tokens and their rate: what the turn recorded, ≈ where estimated.

    The rate is over the time tokens were flowing: a stall mid-reply (past STALL_S) is not
    generation time, and is said apart."""
    if turn.cached:
        return "from the response cache: no request, no cost"
    row = session.accounts.cost_of(turn)
    if turn.first_token_s is None or turn.total_s is None or row.usage is None:
        return None
    mark, tokens = ("" if row.exact else "≈"), row.usage.completion_tokens
    flowing = turn.total_s - turn.first_token_s - turn.stalled_s
    rate = f" · {mark}{tokens / flowing:,.0f} tokens/s" if flowing > 0.05 else ""
    stalled = f" · stalled {turn.stalled_s:.1f}s" if turn.stalled_s >= 0.05 else ""
    thought = f" ({row.usage.reasoning_tokens:,} reasoning)" if row.usage.reasoning_tokens else ""
    cached = f" · {row.usage.cached_tokens:,} prompt tokens cached" if row.usage.cached_tokens else ""
    return (f"first token {turn.first_token_s:.2f}s · {mark}{tokens:,} tokens{thought} in {turn.total_s:.1f}s"
            f"{rate}{stalled}{cached}")


def show_stats(console: Console, session: Session, turn) -> None:
    """The stats line, dimmed, after a reply drawn on a terminal."""
    from rich.text import Text  # lazy: keeps rich off the startup path

    line = stats_line(session, turn)
    if line is not None:
        console.print(Text(line, style="dim"))


def show_notice(console: Console, message: str) -> None:
    from rich.text import Text  # lazy: keeps rich off the startup path

    console.print(Text(shown(message), style="dim"))


def show_outcome(console: Console, outcome: Outcome) -> None:
    """A turn's end on the screen: the words one-shot mode writes on stderr, a notice [in brackets]
    and dimmed, an error in red."""
    for sentence in outcome.sentences:
        if sentence.error:
            show_error(console, sentence.text)
        else:
            show_notice(console, f"[{sentence.text}]")


def show_recap(console: Console, session: Session, *, last: int = 20) -> None:
    """A resumed session's history, briefly: a line or two per turn."""
    from rich.text import Text  # lazy: keeps rich off the startup path

    turns = session.context_turns
    header = f"Session {session.id}: {session.title or 'untitled'} · {len(turns)} {'turn' if len(turns) == 1 else 'turns'}"
    if session.context_start:
        header += f" ({session.context_start} cleared before these)"
    console.print(Text(shown(header), style="bold"))
    if len(turns) > last:
        console.print(Text(f"  … {len(turns) - last} earlier turns", style="dim"))
    for turn in turns[-last:]:
        asked = Text("› " + _one_line(turn.user), style="bold cyan")
        if turn.images:  # named, as the chips named them while they waited
            asked.append(" [" + ", ".join(_one_line(label(image), 60) for image in turn.images) + "]", style="cyan")
        console.print(asked)
        if turn.status == PENDING:
            console.print(Text("  (no reply)", style="dim italic"))
            continue
        for step in turn.steps:  # the exchange's tool calls: a line each, as they were shown when made
            if "_shown" in step:
                call = step["_shown"]
                mark = "✓" if call["status"] == "ok" else "✗"
                console.print(Text(f"  {mark} {_one_line(call['name'] + ' ' + call['arguments'], 100)} "
                                   f"({call['status']})", style="dim"))
        reply = Text("  " + _one_line(visible_reply(turn, session.policy), 200), style="dim")
        if turn.partial:
            reply.append(f" [{turn.status}]", style="yellow")
        console.print(reply)


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(shown(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_search_hit(console: Console, session_id: int, title: str | None, role: str, snippet: str, *,
                    terminal: bool) -> None:
    """One line of `chatcli sessions search`: the session, its title, and the snippet, whose matches
    (marked with \\x02 and \\x03) are bold on a terminal and in [brackets] in a pipe."""
    from rich.text import Text  # lazy: keeps rich off the startup path

    line = Text(f"{session_id:>4}  {strip_controls(title or 'untitled')}  ({role}): ", style="bold")
    for n, part in enumerate(re.split(r"[\x02\x03]", snippet)):
        part = " ".join(strip_controls(part).split("\n"))
        if n % 2 and not terminal:
            part = f"[{part}]"
        line.append(part, style="bold yellow" if n % 2 else "")
    console.print(line, soft_wrap=not terminal)
