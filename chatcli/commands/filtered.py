"""/show-filtered: the original of the last reply the content filter withheld, when the config allows."""

from __future__ import annotations

from chatcli.commands.registry import Result, command
from chatcli.core.filtered import CANNOT_SHOW
from chatcli.core.session import Session


@command("show-filtered", help="Show the last reply withheld for a blocked word (only with show_filtered = true).")
def show_filtered_command(session: Session, arg: str) -> Result:
    """With block_words set, a reply that holds one is withheld, and saved whole. /show-filtered shows
    the last such reply as it came (as text, through the terminal's gate), but only when the config
    sets show_filtered = true; otherwise it says how to allow it."""
    if not session.policy.show_filtered:
        return Result(CANNOT_SHOW, error=True)
    turn = next((t for t in reversed(session.turns) if t.filtered), None)
    if turn is None:
        return Result("No reply in this session was withheld.")
    thought = f"(reasoning)\n{turn.reasoning}\n\n" if turn.reasoning else ""
    return Result(f"The withheld reply, as it came:\n{thought}{turn.reply}")
