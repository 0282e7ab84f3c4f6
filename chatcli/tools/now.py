"""The `now` tool: the date and time where the user is, which a model cannot know by itself."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any


class Now:
    """Read-only, no arguments: the local date, time and zone."""

    name = "now"
    description = "The current local date, time and time zone of the user."
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    asks = False

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        moment = datetime.now().astimezone()
        zone = moment.tzname() or time.strftime("%Z")
        return f"{moment.strftime('%A %Y-%m-%d %H:%M:%S')} {zone} (UTC{moment.strftime('%z')})"
