"""How a saved reply may be shown when the content filter withheld it (config block_words).

A withheld reply is kept whole, in the session and the store, and stays in what is sent to
the model (the model wrote it); wherever it could be shown again (a recap, an export, /copy,
`sessions show`), it is shown withheld, unless the config's show_filtered allows the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatcli.base.events import WITHHELD

if TYPE_CHECKING:
    from chatcli.core.conversation import Policy
    from chatcli.core.turn import Turn

CANNOT_SHOW = "Filtered replies can't be shown: set show_filtered = true in the config to allow /show-filtered."


def kept_from_view(turn: Turn, policy: Policy) -> bool:
    """The turn's reply is withheld, and the config does not allow its original to be shown."""
    return turn.filtered and not policy.show_filtered


def visible_reply(turn: Turn, policy: Policy) -> str:
    """The reply as it may be shown: the withheld line in its place, unless show_filtered allows it."""
    return WITHHELD if kept_from_view(turn, policy) else turn.reply


def visible_reasoning(turn: Turn, policy: Policy) -> str:
    """The reasoning as it may be shown: none of a withheld reply's, unless show_filtered allows it."""
    return "" if kept_from_view(turn, policy) else turn.reasoning
