"""The environment both benchmarks run chatcli in: a home of its own, and no settings from yours."""

from __future__ import annotations

import os


def isolated_env(home: str, **extra: str) -> dict[str, str]:
    """This process's environment without OPENAI_* and CHATCLI_*, with HOME and XDG under `home`."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATCLI_"))
    } | {
        "HOME": home,
        "XDG_CONFIG_HOME": f"{home}/config",
        "XDG_DATA_HOME": f"{home}/data",
        "XDG_STATE_HOME": f"{home}/state",
        "TERM": "xterm-256color",
    } | extra
