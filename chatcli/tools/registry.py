"""The built-in tools, made for a session.

A factory takes the tool settings as plain values, so tools/ needs nothing of config/: app.py's
tool_settings gives every config key named tool_* or fetch_* (tool_roots, fetch_allow_private, ...),
and "cwd", the directory chatcli started in. MCP servers' tools come from tools/mcp.py, not from here.
"""

from __future__ import annotations

from typing import Any

from chatcli.tools.base import Tool

# Their names, known without making them: making them imports http.client, ssl and more (80 ms),
# which a session that uses no tool never needs.
BUILTIN_NAMES = ("now", "read_file", "list_dir", "grep", "fetch_url", "shell")


def builtin_tools(settings: dict[str, Any] | None = None) -> list[Tool]:
    """Every built-in tool, made with the session's tool settings: now, and read_file, list_dir,
    grep, fetch_url and shell (tools/builtin.py)."""
    from chatcli.tools import builtin  # lazy: http.client, ssl and html.parser, off the startup path
    from chatcli.tools.now import Now  # lazy: with the others

    s = settings or {}
    made = builtin.builtin_tools(roots=s.get("tool_roots") or (), allow_private=bool(s.get("fetch_allow_private")),
                                 fetch_max_kb=int(s.get("fetch_max_kb") or 1024), timeout=s.get("tool_timeout"))
    return [Now(), *made.values()]


def unknown_tools(names: list[str] | tuple[str, ...], known: list[str]) -> list[str]:
    """The names in --tools or `tools` that name no tool (an MCP server's NAME.tool and NAME.* pass:
    its tools are known only once it has started)."""
    return [n for n in names if n not in known and n != "all" and "." not in n]
