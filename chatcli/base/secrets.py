"""The secrets of the config in use, known to the whole process.

No message chatcli prints, no log line and no crash report may hold one, and these are
made where the config is not at hand. know() is the one setter: it is called wherever a
config comes into use (the start of a run, /profile).
"""

from __future__ import annotations

from chatcli.base.pii import configured_secrets

_api_key: str | None = None
_secrets: tuple[str, ...] = ()


def know(config) -> None:
    """Remember the secrets of the config now in use, in place of the last one's."""
    global _api_key, _secrets
    _api_key, _secrets = config.api_key, configured_secrets(config)


def known_api_key() -> str | None:
    """The API key in use: what a crash report must not hold."""
    return _api_key


def known_secrets() -> tuple[str, ...]:
    """Every secret the config in use holds (pii.configured_secrets)."""
    return _secrets
