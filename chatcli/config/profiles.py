"""Profiles: named sets of settings in the config file, one per server or way of working.

`[profiles.NAME]` takes the keys the top of the config file takes (base_url,
api_key_env, model, headers, [models], ...). Chosen with --profile, CHATCLI_PROFILE
or `profile = "NAME"`, a profile goes over the file, .env and the environment, and
under flags. /profile switches a running session to another one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from chatcli.base.errors import ConfigError
from chatcli.config.table import SETTINGS_BY_KEY

# Who the server is and how to talk to it: a profile with a server of its own takes none of
# these from the layers below, so a key meant for one provider never goes to another.
KEY_SOURCES = ("api_key", "api_key_env", "api_key_cmd")
CONNECTION = ("api_key", "api_key_env", "api_key_cmd", "headers", "api_type", "api_version", "azure_deployment")


def with_profile(values: dict[str, Any], profiles: Mapping[str, dict[str, Any]], name: str, path: Path) -> dict[str, Any]:
    """The settings with a profile's over them: over the file, .env and the environment; under flags."""
    if not path.is_file():
        raise ConfigError(f"There is no profile '{name}': there is no config file at {path}; add [profiles.{name}] there.")
    if name not in profiles:
        known = f"the file has {', '.join(profiles)}" if profiles else "the file has none"
        raise ConfigError(f"There is no profile '{name}' in {path} ({known}); check --profile, CHATCLI_PROFILE or 'profile'.")
    chosen = profiles[name]
    values = dict(values)
    if "base_url" in chosen and _server(chosen["base_url"]) != _server(values["base_url"]):
        for key in CONNECTION:
            values[key] = SETTINGS_BY_KEY[key].default if key in SETTINGS_BY_KEY else {}
    if any(key in chosen for key in KEY_SOURCES):  # the profile's own way to the key, not one from below
        values.update(dict.fromkeys(KEY_SOURCES))
    for key, value in chosen.items():
        if key == "models":  # a profile's figures for a model add to, or correct, the file's
            value = {model: {**values.get("models", {}).get(model, {}), **figures} for model, figures in value.items()}
            value = {**values.get("models", {}), **value}
        elif key in ("prices", "headers", "mcp"):  # a profile's MCP servers add to the file's
            value = {**values.get(key, {}), **value}
        elif key in ("redact", "block_words"):  # a profile adds to what is scrubbed and blocked, never takes away
            value = tuple(dict.fromkeys((*values.get(key, ()), *value)))
        values[key] = value
    values["profile"] = name
    return values


def _server(url: str) -> tuple | None:
    """The endpoint a base URL names; one host may front several providers (/openai/v1, /groq/v1)."""

    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.hostname, parts.port, parts.path.rstrip("/")
    except ValueError:
        return None


