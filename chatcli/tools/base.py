"""The shape every tool has, and what a call of one comes to.

A Tool is a name, a one-line description, a JSON schema for its arguments, whether it asks
before it runs, and `run`. The Toolbox (tools/box.py) holds the tools a session has, which
of them are on, and which the user allowed for the session; core's loop asks it to run
each call the model makes, with an approver the front end gives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from chatcli.base.approval import Answer, Approval  # noqa: F401 - re-exported: ui/ makes them, tools/ reads them
from chatcli.base.events import ToolCall

# How a call ended: what the model is told, and what the user is shown.
OK = "ok"
FAILED = "error"  # the tool ran and failed, or the arguments were bad: the model is told why
DENIED = "denied"  # the user (or the policy, in a pipe) said no
TIMED_OUT = "timeout"
CANCELLED = "cancelled"  # Ctrl-C

DENIED_BY_POLICY = "denied by the user's policy"  # what the model is told when nobody could be asked


class ToolFailed(Exception):
    """A tool's own failure, as one sentence for the model and the user (a file not found, a
    path outside the roots, a refused address)."""


class Tool(Protocol):
    """One tool. `run` gets arguments already checked against `parameters`; it returns the text
    for the model (untrusted: the caller strips control sequences before showing it), raises
    ToolFailed with a sentence, and stops soon after `stop` is set (Ctrl-C or the timeout)."""

    name: str  # as the model calls it: read_file, or NAME.tool for an MCP server's
    description: str  # one line
    parameters: dict[str, Any]  # JSON schema of the arguments (an object)
    asks: bool  # asks before running unless allowed: side effects (shell, MCP tools); read-only tools do not

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str: ...


# The front end's question: (the call, its tool, its parsed arguments) -> the answer. None: no one
# can be asked (a pipe, one-shot mode with no terminal): what asks is refused.
Approver = Callable[[ToolCall, Tool, dict[str, Any]], Approval] | None


@dataclass
class ToolResult:
    """A call, run or not: what goes back to the model as the tool message, and how it ended."""

    call: ToolCall
    status: str  # OK, FAILED, DENIED, TIMED_OUT, CANCELLED
    content: str  # for the model (truncated to the tool budget); for a refusal, the reason
    seconds: float = 0.0
    truncated: bool = False
    notes: list[str] = field(default_factory=list)  # for the user only: "denied: no terminal to ask on"
