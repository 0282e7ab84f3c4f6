"""The built-in tools by name: one line each, so adding a tool is adding a line.

A factory takes the tool settings as plain values, so tools/ needs nothing of config/: app.py's
tool_settings gives every config key named tool_* or fetch_* (tool_roots, fetch_allow_private, ...),
and "cwd", the directory chatcli started in. MCP servers' tools come from tools/mcp.py, not from here.
"""

from __future__ import annotations

from typing import Any, Callable

from chatcli.tools.base import Tool
from chatcli.tools.now import Now

# name -> factory(settings) -> Tool
BUILTINS: dict[str, Callable[[dict[str, Any]], Tool]] = {
    "now": lambda settings: Now(),
}


def builtin_tools(settings: dict[str, Any] | None = None) -> list[Tool]:
    """Every built-in tool, made with the session's tool settings."""
    return [make(settings or {}) for make in BUILTINS.values()]


def unknown_tools(names: list[str] | tuple[str, ...], known: list[str]) -> list[str]:
    """The names in --tools or `tools` that name no tool (an MCP server's NAME.tool and NAME.* pass:
    its tools are known only once it has started)."""
    return [n for n in names if n not in known and n != "all" and "." not in n]
