"""/tools: which tools the model may call, and turning them on, off, or allowed without asking."""

from __future__ import annotations

from chatcli.base.text import strip_controls
from chatcli.commands.registry import Result, command
from chatcli.core.session import Session
from chatcli.tools.box import ALWAYS_ASKS

USAGE = "Use /tools to list them, /tools on NAME, /tools off NAME, or /tools allow NAME."


@command("tools", args="[on|off|allow NAME]", help="List the tools with their state; turn one on or off, or let it run without asking.")
def tools_command(session: Session, arg: str) -> Result:
    """The table of tools (on or off, whether it asks, allowed this session), or a change to one.
    A change lasts the session; the config's `tools` says what is on at start."""
    loop = session.toolloop
    if loop is None:
        return Result("Tools are not available in this session.", error=True)
    box = loop.box
    box.take_later()  # the MCP servers' tools too (this waits for a server still starting)
    words = arg.split()
    if not words:
        rows = [[strip_controls(name), "on" if name in box.enabled else "off",
                 "allowed" if name in box.allowed else "asks" if box.asks(tool) else "auto",
                 strip_controls(tool.description)]
                for name, tool in sorted(box.tools.items())]
        return Result("No tools are on; /tools on NAME turns one on." if not box.enabled else "",
                      headers=["tool", "state", "approval", "what it does"], rows=rows)
    if len(words) != 2 or words[0] not in ("on", "off", "allow"):
        return Result(f"/tools takes on, off or allow and a tool's name. {USAGE}", error=True)
    action, name = words
    if name not in box.tools:
        known = ", ".join(sorted(box.tools)) or "none"
        return Result(f"There is no tool named {strip_controls(name)!r}; known: {strip_controls(known)}.", error=True)
    if action == "on":
        box.enabled.add(name)
        return Result(f"{name} is on: the model may call it from the next message.")
    if action == "off":
        box.enabled.discard(name)
        return Result(f"{name} is off.")
    if name in ALWAYS_ASKS:
        return Result(f"{name} always asks; answer [a]lways to run one exact command without asking again.", error=True)
    box.allowed.add(name)
    return Result(f"{name} runs without asking for the rest of this session.")
