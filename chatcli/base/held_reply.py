"""A reply's events held back until the reply ends, then let through or withheld (config `block_words`).

A blocked word may arrive split across any number of deltas, and once text is on a screen or
in a pipe it cannot be taken back: so while a filter is configured, nothing of the reply's
text or reasoning is let out until the reply has ended (finished, cut off, interrupted or
failed) and the whole of it is checked. Each delta held is said as a Held event, and everything
else (usage, notices, retries) passes at once, so the spinner and the stall view go on. The session records the reply from
the events before this gate: what is saved is the original.
"""

from __future__ import annotations

from chatcli.base.blocklist import Blocklist
from chatcli.base.events import HELD, Event, Finish, ReasoningDelta, TextDelta, Withheld


class HeldReply:
    """Takes a reply's events one by one; gives back those to draw now."""

    def __init__(self, blocklist: Blocklist) -> None:
        self._blocklist = blocklist
        self._text: list[str] = []
        self._thoughts: list[str] = []
        self.released = False
        self.withheld = False

    def feed(self, event: Event) -> list[Event]:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
            return [HELD]  # drawn as a token that came, not as text
        if isinstance(event, ReasoningDelta):
            self._thoughts.append(event.text)
            return [HELD]
        if isinstance(event, Finish):
            return [*self.release(), event]
        return [event]

    def release(self) -> list[Event]:
        """The reply's end (its Finish, or however else the stream stopped): the whole of what was
        held, checked; after the first call, nothing."""
        if self.released:
            return []
        self.released = True
        text, thoughts = "".join(self._text), "".join(self._thoughts)
        self._text, self._thoughts = [], []
        if self._blocklist.found(text) or self._blocklist.found(thoughts):
            self.withheld = True
            return [Withheld()]
        return [*([ReasoningDelta(thoughts)] if thoughts else []), *([TextDelta(text)] if text else [])]

    def holds_blocked(self, *texts: str) -> bool:
        """Whether the reply is to be kept from view: withheld here, or what the turn saved holds a
        blocked word (text a secret filter held back when the stream broke)."""
        return self.withheld or any(self._blocklist.found(text) for text in texts)
