"""`chatcli config check`, beyond what loading the config checks: that each [models."NAME"]
table names a model.

A table applies only to a model of that name (and its dated snapshots), so a
misspelt name, or a name the server spells otherwise (llama3.2 where Ollama
lists llama3.2:latest), leaves its figures unused without a word. A name is
fine when one of chatcli's own per-model tables knows it, matched as they match
names, or when it applies to a model the server lists.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import Path

from chatcli.base.env import Env
from chatcli.base.errors import ChatError
from chatcli.config.settings import Config, load_config, read_config_file, require_api_key
from chatcli.llm.capabilities import KNOWN_CAPABILITIES
from chatcli.llm.client import ChatClient
from chatcli.llm.pricing import PRICES
from chatcli.llm.tokens import KNOWN_MODELS, family_of, override_for


@dataclass(frozen=True)
class _Table:
    header: str  # as the file writes it: [models."NAME"] or [profiles.X.models."NAME"]
    name: str
    profile: str | None


def _known_tables() -> list[dict]:
    return [KNOWN_MODELS, KNOWN_CAPABILITIES, PRICES]


def is_known(name: str) -> bool:
    """Whether a built-in per-model table (context windows, capabilities, prices) has the model."""
    return any(family_of(name, table) is not None for table in _known_tables())


def applies_to(name: str, model: str) -> bool:
    """Whether a [models."NAME"] table applies to the model, as the config's tables are matched."""
    return bool(override_for(model, {name: {"applies": True}}))


def cache_warnings(config: Config) -> list[str]:
    """A sentence when the response cache is asked for where it cannot work: nothing is written without saving."""
    if config.cache and not config.save:
        return ["cache = true does nothing while save = false: nothing is written then, the cache included."]
    return []


def model_table_warnings(env: Env, config: Config, *, config_path: str | None) -> list[str]:
    """A sentence for each [models."NAME"] table (at the top of the file and in profiles) that names no
    model chatcli knows and none the server lists; and one if the server could not be asked."""
    path = config.config_path
    if path is None or not path.is_file():
        return []
    data = read_config_file(path)
    tables = [_Table(f'[models."{name}"]', name, None) for name in data.get("models", {})]
    for profile, settings in data.get("profiles", {}).items():
        tables += [_Table(f'[profiles.{profile}.models."{name}"]', name, profile) for name in settings.get("models", {})]
    unknown = [t for t in tables if not is_known(t.name)]
    if not unknown:
        return []  # nothing to ask the server
    said: list[str] = []
    listed: dict[str, list[str] | None] = {}  # by server; None: it could not be asked
    for table in unknown:
        server = config if table.profile is None else _profile_config(env, config_path, table.profile, said)
        key = server.base_url if server is not None else f"profile {table.profile}"
        if key not in listed:
            listed[key] = _listed(server, path, table.profile, said) if server is not None else None
        names = listed[key]
        if names is not None and any(applies_to(table.name, model) for model in names):
            continue
        candidates = [*(names or ()), *(n for t in _known_tables() for n in t)]
        near = difflib.get_close_matches(table.name, list(dict.fromkeys(candidates)), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else "."
        if names is not None:
            said.append(f"{table.header} in {path} names no model chatcli knows or the server at {server.shown_url} "
                        f"lists, so it applies to none (only to a model of that name and its dated versions){hint}")
        else:
            said.append(f"{table.header} in {path} names no model chatcli knows (the server could not be asked), "
                        f"so it may apply to none{hint}")
    return said


def _profile_config(env: Env, config_path: str | None, profile: str, said: list[str]) -> Config | None:
    try:
        return load_config(env, config_path=config_path, flags={"profile": profile})
    except ChatError as exc:
        said.append(f"the [models] names of [profiles.{profile}] could not be checked against its server "
                    f"({exc.message.rstrip('.')}); they were checked against chatcli's own tables only.")
        return None


def _listed(config: Config, path: Path, profile: str | None, said: list[str]) -> list[str] | None:
    """The models the config's server lists, asked once, without retries; None, said, if it cannot say."""

    whose = f"of [profiles.{profile}] " if profile else ""
    try:
        require_api_key(config)
        quick = replace(config, max_retries=0, connect_timeout=min(config.connect_timeout, 5.0),
                        read_timeout=min(config.read_timeout, 15.0))
        return ChatClient(quick).models()
    except ChatError as exc:
        said.append(f"the [models] names {whose}in {path} could not be checked against the server at "
                    f"{config.shown_url} ({exc.message.rstrip('.')}); they were checked against chatcli's own "
                    "tables only.")
        return None
