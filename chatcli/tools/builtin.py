"""The built-in tools by name, made from plain config values: read_file, list_dir, grep, fetch_url, shell.

The loop's registry (tools/registry.py) takes these into its table of name -> tool; `now`
is the loop's own. Made here from plain values, so tools/ needs no Config.
"""

from __future__ import annotations

import os
from typing import Any

from chatcli.tools.fetch import FetchUrl
from chatcli.tools.files import file_tools
from chatcli.tools.shell import Shell


def builtin_tools(*, roots: list[str] | tuple[str, ...] = (), allow_private: bool = False,
                  fetch_max_kb: int = 1024, timeout: float | None = None) -> dict[str, Any]:
    """Every built-in tool, keyed by name. `roots` default to the working directory; the shell
    runs in the first root. `timeout` bounds a shell command and a fetch's every wait."""
    tools: list[Any] = [*file_tools(roots)]
    tools.append(FetchUrl(allow_private=allow_private, max_bytes=fetch_max_kb * 1024, timeout=min(timeout or 15.0, 60.0)))
    first = os.path.realpath(os.path.expanduser(roots[0])) if roots else None
    tools.append(Shell(cwd=first, timeout=timeout))
    return {tool.name: tool for tool in tools}
