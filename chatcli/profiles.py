"""Profiles: named sets of settings in the config file, one per server or way of working.

`[profiles.NAME]` takes the keys the top of the config file takes (base_url,
api_key_env, model, headers, [models], ...). Chosen with --profile, CHATCLI_PROFILE
or `profile = "NAME"`, a profile goes over the file, .env and the environment, and
under flags. /profile switches a running session to another one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from chatcli.config import (
    SETTINGS_BY_KEY,
    Config,
    load_config,
    read_config_file,
    read_table,
)
from chatcli.env import Env
from chatcli.errors import ConfigError

if TYPE_CHECKING:
    from chatcli.session import Session
    from chatcli.tokens import Encodings, Tokenizer


def read_profiles(table: Any, path: Path) -> dict[str, dict[str, Any]]:
    """[profiles.NAME] tables: each a set of settings, checked as the top of the file is."""
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f'{path}: \'profiles\' must hold tables, as in [profiles.ollama] base_url = "http://localhost:11434/v1".')
    for name in table:
        if not PROFILE_NAME.fullmatch(name):
            raise ConfigError(f"{path}: the profile name {name!r} must be letters, digits, '-' and '_'.")
    return {name: read_table(settings, path, profile=name) for name, settings in table.items()}


PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
        elif key in ("prices", "headers"):
            value = {**values.get(key, {}), **value}
        elif key == "redact":
            value = tuple(dict.fromkeys((*values.get("redact", ()), *value)))
        values[key] = value
    values["profile"] = name
    return values


def _server(url: str) -> tuple | None:
    """The endpoint a base URL names; one host may front several providers (/openai/v1, /groq/v1)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.hostname, parts.port, parts.path.rstrip("/")
    except ValueError:
        return None


@dataclass(frozen=True)
class Profiles:
    """What /profile needs to load another profile: the environment and config file chatcli started with."""

    env: Env
    config_path: str | None = None

    def load(self, name: str) -> Config:
        """The settings with that profile chosen; ConfigError, with one sentence, if it cannot be used."""
        from chatcli.keys import require_api_key

        config = load_config(self.env, config_path=self.config_path, flags={"profile": name})
        require_api_key(config)
        return config

    def load_for_resume(self, name: str, session_id: int | None) -> Config:
        """The profile a resumed session was held with; if it cannot be used, chatcli stops rather than
        send the conversation to another server."""
        try:
            return self.load(name)
        except ConfigError as exc:
            raise ConfigError(f"Session {session_id} was held with the profile '{name}', which cannot be used now "
                              f"({exc.message.rstrip('.')}); choose where it goes on with -p NAME.") from None

    def tables(self, config: Config) -> dict[str, dict[str, Any]]:
        """The profiles as the file writes them, for listing; nothing is run or resolved."""
        if config.config_path is None or not config.config_path.is_file():
            return {}
        return read_config_file(config.config_path).get("profiles", {})


def switch(session: Session, config: Config) -> None:
    """Point the session at another profile's server and model; the conversation goes on there.

    The model, temperature and max_tokens become what `chatcli -p NAME` would start with (unset
    if it sets none), so nothing of the last profile lingers; a system prompt the profile gives
    replaces the session's. Parameters only /set sets (top_p, seed, stop, ...) stay.
    """
    use(session, config)
    session.set_model(config.model)
    for key in ("temperature", "max_tokens"):
        session.set_param(key, getattr(config, key))
    if config.system and config.system != session.system:
        session.set_system(config.system)
    session.journal.state_changed(session, "profile")  # so resuming it comes back here
    from chatcli.log import know

    know(config)


def use(session: Session, config: Config) -> None:
    """The session talks to the config's server, counts and prices with its figures; nothing else changes."""
    from chatcli.client import ChatClient
    from chatcli.pricing import Pricing

    session.client = ChatClient(config)
    session.tokenizer = make_tokenizer(config, encodings=session.tokenizer.encodings)
    session.pricing = Pricing(config.prices)


def make_tokenizer(config: Config, *, encodings: Encodings | None = None) -> Tokenizer:
    """Counting and limits with the config's figures; encodings already loaded are kept."""
    from chatcli.tokens import Encodings, ModelLimits, Tokenizer

    default = ModelLimits(config.default_context_window, config.default_max_output_tokens, "o200k_base")
    return Tokenizer(overrides=config.models, default=default, encodings=encodings or Encodings())
