"""Slash commands: one registry feeds dispatch, /help and completion.

Handlers change the session and return a Result; they never print and never touch the
terminal, so they can be tested without one. The REPL draws the Result.
"""

# Each module registers its commands as it is imported; /help lists them in this order.
from chatcli.commands import conversation, history, images, params  # noqa: E402, F401, I001
from chatcli.commands import filtered  # noqa: E402, F401, I001
from chatcli.commands import tools  # noqa: E402, F401, I001
from chatcli.commands.registry import (
    REGISTRY,
    UNSET,
    Command,
    Registry,
    Result,
    command,
)

__all__ = ["REGISTRY", "UNSET", "Command", "Registry", "Result", "command"]
