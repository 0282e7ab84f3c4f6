"""What a session is about, and the rules it keeps, each as one value.

A Conversation is everything /new starts afresh and /resume loads: app.py swaps it
whole, so no list of its fields is kept anywhere else. A Policy is what the session
takes from the config it runs with; app.py builds it, and builds it anew on /profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chatcli.core.journal import Journal

if TYPE_CHECKING:
    from chatcli.base.blocklist import Blocklist
    from chatcli.core.accounts import OtherCost
    from chatcli.core.turn import Turn

T = TypeVar("T")


@dataclass
class Conversation:
    model: str
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)  # every turn, also those /clear left behind
    context_start: int = 0  # turns before this index are no longer sent
    journal: Journal = field(default_factory=Journal)
    title: str | None = None
    summary: str | None = None  # /compact: stands in for the turns before context_start
    # Requests that were billed but are no longer turns (undone, replaced, compaction), so that
    # /usage and the toolbar keep counting what the ledger counts.
    spent_elsewhere: list[OtherCost] = field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    """What a session reads of its config: the profile it is held with, what it scrubs and hides."""

    profile: str | None = None  # saved with the session, so that resuming it goes back there
    profiles: tuple[str, ...] = ()  # the config file's profiles (/profile, and Tab after it)
    config_path: Path | None = None  # the config file /profile lists them from
    redact: tuple[str, ...] = ()  # kinds of personal data scrubbed from what is counted, saved and shown
    secrets: tuple[str, ...] = ()  # the config's secrets: never shown, never saved, whoever sends them
    blocklist: Blocklist | None = None  # the content filter (block_words): replies holding one are withheld
    show_filtered: bool = False  # /show-filtered may show a withheld reply's original
    wait: float = 0.0  # how long a long request waits to hear the server's window (connect_timeout)
    image_max_mb: float = 20.0  # the largest image /image, /paste and -i attach


class Shared(Generic[T]):
    """A field of the session's Conversation, read and written as if it were the session's own."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, session: Any, owner: type | None = None) -> T:
        if session is None:
            return self  # type: ignore[return-value]
        return getattr(session.conversation, self.name)

    def __set__(self, session: Any, value: T) -> None:
        setattr(session.conversation, self.name, value)
