"""Where the API key comes from, and the checks on it.

The key is read from the variable api_key_env names, if it names one; otherwise
from api_key (or OPENAI_API_KEY / CHATCLI_API_KEY); failing both, from what
api_key_cmd prints. It is never shown: not in an error, not in a warning.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any, Mapping

from chatcli.base.errors import ConfigError


def resolve_key(values: Mapping[str, Any], *, variables: Mapping[str, str], dotenv: Mapping[str, str]) -> str | None:
    """The key the settings name: api_key_env's variable if it is set, else api_key, else what api_key_cmd prints.

    Where api_key_env names the variable, api_key is not used at all: it may hold an
    OPENAI_API_KEY exported for OpenAI, which must not go to another provider.
    """
    name = values.get("api_key_env")
    key = (variables.get(name) or dotenv.get(name)) if name else values.get("api_key")
    if not key and values.get("api_key_cmd"):
        key = run_key_command(values["api_key_cmd"])
    if not key and name:
        which = f"the profile '{values['profile']}'" if values.get("profile") else "api_key_env"
        raise ConfigError(
            f"No API key: {which} reads it from {name}, which is not set; export {name}=..., or put it in a .env file here."
        )
    return check_api_key(key)


def readable_by_others(path: Path) -> list[str]:
    """A warning if a file that holds the API key can be read by other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & 0o077 == 0:
        return []
    return [f"{path} holds an API key and other users can read it; run chmod 600 {path}, or use api_key_cmd."]


def check_api_key(key: str | None) -> str | None:
    """Strip the whitespace a copied key often carries; refuse what HTTP cannot send."""
    if key is None:
        return None
    key = key.strip()
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ConfigError(
            "The API key has characters an HTTP header cannot carry (spaces, or letters outside ASCII); "
            "copy it again from your provider."
        )
    return key or None


def run_key_command(command: str) -> str:
    """Run api_key_cmd and return what it prints; its output is never shown."""
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        reason = "it timed out" if isinstance(exc, subprocess.TimeoutExpired) else "it could not be run"
        raise ConfigError(f"api_key_cmd failed: {reason}; check the command in your config.") from None
    key = done.stdout.strip()
    if done.returncode != 0 or not key:
        raise ConfigError(
            f"api_key_cmd exited with status {done.returncode} and printed no key; check the command in your config."
        )
    return key


