"""The user's answer to "run this tool call?", as a leaf type.

It lives in base/ because both sides need it and may not import each other: the Toolbox
(tools/) acts on it, and the question is drawn in ui/approval.py, which may not import tools/.
tools/base.py re-exports it, so `from chatcli.tools.base import Approval` still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Answer = Literal["yes", "no", "always"]


@dataclass(frozen=True)
class Approval:
    """The user's answer to "run this?": yes, no, or always (this exact call, for the session);
    `arguments` when they edited the call (shell's command) before saying yes."""

    answer: Answer
    arguments: dict[str, Any] | None = None
