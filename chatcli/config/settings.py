"""Layered settings: defaults < config file < .env < environment < flags.

One table (SETTINGS) says every key's type, default, range and help; loading,
validation, error messages and config.example.toml all follow from it.
"""

from __future__ import annotations

import io
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from chatcli.base.env import Env
from chatcli.base.errors import ConfigError, UsageError
from chatcli.base.parse import not_utf8, undecodable
from chatcli.base.pii import hide_password
from chatcli.config.keys import readable_by_others, resolve_key
from chatcli.config.table import (
    AZURE_API_VERSION,
    DEFAULT_BASE_URL,
    SETTINGS,
    SETTINGS_BY_KEY,
    read_block_words_file,
    read_kinds,
    read_table,
)


@dataclass(frozen=True)
class Config:
    model: str = "gpt-4o-mini"
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    api_key_cmd: str | None = None
    api_key_env: str | None = None
    profile: str | None = None
    api_type: str = "openai"
    api_version: str | None = None
    azure_deployment: str | None = None
    proxy: str | None = None
    ca_bundle: str | None = None
    usage_accounting: bool | None = None  # None: only for openrouter.ai (llm/client.py asks_for_cost)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    profiles: tuple[str, ...] = ()  # the names the config file defines
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    reply_timeout: float = 0.0  # 0: no limit
    max_retries: int = 2
    render: str = "markdown"
    show_reasoning: bool = True
    editing_mode: str = "emacs"
    multiline: bool = False
    stats: bool = False
    default_context_window: int = 8192
    default_max_output_tokens: int = 4096
    image_max_mb: float = 20.0
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prices: Mapping[str, Any] = field(default_factory=dict)
    budget: Mapping[str, Any] = field(default_factory=dict)
    mcp: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [mcp.NAME]: MCP servers (tools/mcp.py)
    cache: bool = False  # the response cache, for one-shot asks (core/cache.py)
    cache_ttl: str = "7d"  # a duration (base/parse.py duration_seconds)
    cache_any: bool = False  # cache any request, not only those with temperature 0 or a seed
    save: bool = True
    db: str | None = None
    redact: tuple[str, ...] = ()  # kinds of personal data scrubbed from what is sent (chatcli.pii)
    block_words: tuple[str, ...] = ()  # the content filter: block_words and block_words_file's lines
    block_words_file: str | None = None
    show_filtered: bool = False
    tools: tuple[str, ...] = ()  # tools on at start (--tools, or a profile's); off by default
    tool_ask: tuple[str, ...] = ()  # read-only tools that ask all the same ("all": every one)
    max_tool_rounds: int = 8
    tool_timeout: float = 30.0
    tool_result_tokens: int = 4000
    tool_roots: tuple[str, ...] = ()  # where the file tools may read; empty: the working directory
    fetch_allow_private: bool = False
    fetch_max_kb: int = 1024
    config_path: Path | None = None
    warnings: tuple[str, ...] = ()  # said once at start: a file holding the key that others can read
    model_set: bool = True  # False: no layer named a model, so the server's own may be the default

    def __repr__(self) -> str:
        # The key must never reach a log or a traceback through a repr.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        shown["api_key"] = "***" if self.api_key else None
        shown["headers"] = {name: "***" for name in self.headers}  # they may carry credentials
        shown["mcp"] = {name: {**server, "env": dict.fromkeys(server.get("env", {}), "***")}  # so may a server's env
                        for name, server in self.mcp.items()}
        return f"Config({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def shown_url(self) -> str:
        """base_url as said to the user or logged: any password in it replaced."""

        return hide_password(self.base_url)

    @property
    def is_openai(self) -> bool:
        return "api.openai.com" in self.base_url


def default_config_path(env: Env) -> Path:
    return env.config_dir / "config.toml"


# A .env comes with whatever directory chatcli runs in, a cloned repository
# included: it may set keys and options, but not a command to run or another
# config file to read.
# Nor say which variable holds the key, nor which proxy and authorities to trust: each would let
# a repository send a secret, or the key, where it likes.
# Nor turn the content filter's words off or its withheld replies on.
# Nor let the model's fetch_url reach this machine's own network.
UNTRUSTED_IN_DOTENV = ("CHATCLI_API_KEY_CMD", "CHATCLI_CONFIG", "CHATCLI_API_KEY_ENV", "CHATCLI_PROXY", "CHATCLI_CA_BUNDLE",
                       "CHATCLI_BLOCK_WORDS_FILE", "CHATCLI_SHOW_FILTERED", "CHATCLI_FETCH_ALLOW_PRIVATE")


def read_dotenv(env: Env) -> dict[str, str]:
    """./.env, if there is one: a layer under the environment, never over it."""
    from dotenv import dotenv_values  # lazy: off the path of chatcli --help
    from dotenv.parser import parse_stream  # lazy: off the path of chatcli --help

    path = env.cwd / ".env"
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{path} could not be read ({exc.strerror}).") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"{path} line {binding.original.line}: expected KEY=value, not {binding.original.string.strip()!r}.")
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None and k not in UNTRUSTED_IN_DOTENV}


def _variables_layer(variables: Mapping[str, str], source: str) -> dict[str, Any]:
    """The settings one set of variables gives; ours (CHATCLI_*) win over OPENAI_* within it."""
    values: dict[str, Any] = {}
    base_url = variables.get("OPENAI_BASE_URL") or variables.get("OPENAI_API_BASE")
    if base_url:
        values["base_url"] = base_url
    if variables.get("OPENAI_API_KEY"):
        values["api_key"] = variables["OPENAI_API_KEY"]
    for setting in SETTINGS:
        if setting.env_var in variables:
            values[setting.key] = setting.parse(variables[setting.env_var], f"{setting.env_var} {source}")
    if values.get("base_url"):  # checked here, where the sentence can name the variable
        name = next((n for n in ("CHATCLI_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_BASE") if variables.get(n)), "a variable")
        values["base_url"] = check_base_url(values["base_url"], where=f" ({name} {source})")
    kinds = [k.strip() for k in variables.get("CHATCLI_REDACT", "").split(",") if k.strip()]
    if kinds:
        values["redact"] = read_kinds(kinds, f"CHATCLI_REDACT {source}")
    return values


def load_config(env: Env, *, config_path: str | None = None, flags: Mapping[str, Any] | None = None) -> Config:
    """Build the Config from every layer; raise ConfigError naming the bad key."""
    dotenv = read_dotenv(env)
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    values["model"] = None  # to know afterwards whether any layer named one

    path_text = config_path or env.environ.get("CHATCLI_CONFIG")
    path = Path(path_text).expanduser() if path_text else default_config_path(env)
    if path_text and not path.is_file():
        raise ConfigError(f"The config file {path} does not exist; check --config or CHATCLI_CONFIG.")
    warnings = []
    profiles: dict[str, dict[str, Any]] = {}
    if path.is_file():
        from_file = read_config_file(path)
        profiles = from_file.pop("profiles", {})
        values.update(from_file)
        if from_file.get("api_key") or any(p.get("api_key") for p in profiles.values()):
            warnings += readable_by_others(path)
    if dotenv.get("OPENAI_API_KEY") or dotenv.get("CHATCLI_API_KEY"):
        warnings += readable_by_others(env.cwd / ".env")

    # A privacy setting only grows from layer to layer: a project's .env cannot turn off the
    # redaction a user's config asks for, and an empty CHATCLI_REDACT adds nothing.
    for layer in (_variables_layer(dotenv, f"in {env.cwd / '.env'}"), _variables_layer(env.environ, "in the environment")):
        layer["redact"] = tuple(dict.fromkeys((*values.get("redact", ()), *layer.get("redact", ()))))
        values.update(layer)

    chosen = (flags or {}).get("profile")
    name = chosen if chosen is not None else values.get("profile")  # -p "" chooses none
    if name:
        from chatcli.config.profiles import with_profile  # lazy: off the path of chatcli --help

        values = with_profile(values, profiles, name, path)
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value

    model_set = values["model"] is not None
    if not model_set:
        values["model"] = SETTINGS_BY_KEY["model"].default
    values["base_url"] = check_base_url(str(values["base_url"]))
    if values.get("proxy"):
        values["proxy"] = check_base_url(values["proxy"], what="proxy URL", example="such as http://proxy.example.com:3128")
    if values.get("ca_bundle"):
        values["ca_bundle"] = check_ca_bundle(values["ca_bundle"])
    if values.get("block_words_file"):  # the files of the file and its profiles were read with them; this adds CHATCLI_'s
        words = (*values.get("block_words", ()), *read_block_words_file(values["block_words_file"]))
        values["block_words"] = tuple(dict.fromkeys(words))
    if "\x00" in (values.get("db") or ""):  # TOML can write one ("\u0000"); no file name holds one
        raise ConfigError("db names a file with a NUL character in its name, which no file can have; "
                          "set db to the path of the session database.")
    values["api_key"] = resolve_key(values, variables=env.environ, dotenv=dotenv)
    if values.get("api_key_env") in dotenv and values["api_key_env"] not in env.environ:
        warnings += readable_by_others(env.cwd / ".env")
    if values["api_type"] == "azure":
        if values["base_url"] == DEFAULT_BASE_URL:
            raise ConfigError("Azure OpenAI needs base_url: your resource's endpoint, as in https://NAME.openai.azure.com.")
        values["api_version"] = values.get("api_version") or AZURE_API_VERSION
    return Config(**values, profiles=tuple(profiles), config_path=path, warnings=tuple(warnings), model_set=model_set)


def check_ca_bundle(path_text: str) -> str:
    """A file of certificates that ssl can load, checked now rather than at the first request."""
    import ssl  # lazy: off the path of chatcli --help

    try:
        path = Path(path_text).expanduser()
        if not path.exists():
            raise ConfigError(f"The CA bundle {path} does not exist; set ca_bundle to a PEM file of certificates.")
        if not path.is_file():  # not a directory, nor /dev/zero, which would be read forever
            raise OSError
        ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError, RuntimeError):  # ssl.SSLError is an OSError; a NUL is a ValueError
        path = path_text
        raise ConfigError(f"The CA bundle {path} could not be loaded; set ca_bundle to a PEM file of certificates.") from None
    return str(path)


def check_base_url(url: str, *, what: str = "base URL", example: str = "such as http://localhost:11434/v1",
                   where: str = "") -> str:
    """A full http(s) URL, without a trailing slash. `where` names the variable it came from."""
    from urllib.parse import urlsplit  # lazy: off the path of chatcli --help


    url = url.strip().rstrip("/")
    shown = f"{hide_password(url)!r}{where}"
    if not url.isprintable() or any(ch.isspace() for ch in url):  # httpx2 takes none of these; a terminal would obey an ESC
        raise ConfigError(f"The {what} {shown} holds a control character, a space or bytes that are not UTF-8; "
                          f"give one {example}.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"The {what} {shown} is not a valid URL; give one {example}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"The {what} {shown} must be a full http:// or https:// URL, {example}.")
    return url


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse and validate a TOML config file."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except UnicodeDecodeError:
        raise ConfigError(f"The config file {path} is not UTF-8 text; save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML ({exc}).") from None
    except (ValueError, RecursionError):  # tomllib lets these out for an integer over 4,300 digits, or deep nesting
        raise ConfigError(f"The config file {path} could not be read: it has a number too long or values nested too deep.") from None
    except OSError as exc:
        raise ConfigError(f"The config file {path} could not be read ({exc.strerror}).") from None
    return read_table(data, path)


PATH_VARIABLES = frozenset({"CHATCLI_CONFIG", "CHATCLI_DB", "CHATCLI_CA_BUNDLE"})


def check_environment(environ: Mapping[str, str]) -> None:
    """A UsageError naming the first variable chatcli reads that holds bytes that are not UTF-8."""
    names = {s.env_var for s in SETTINGS} | {"OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "CHATCLI_REDACT"}
    for name in sorted(names - PATH_VARIABLES):
        if undecodable(environ.get(name) or ""):
            raise UsageError(not_utf8(f"The environment variable {name}"))


@dataclass(frozen=True)
class Profiles:
    """What /profile needs to load another profile: the environment and config file chatcli started with."""

    env: Env
    config_path: str | None = None

    def load(self, name: str) -> Config:
        """The settings with that profile chosen; ConfigError, with one sentence, if it cannot be used."""

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

    def tables(self, config_path: Path | None) -> dict[str, dict[str, Any]]:
        """The profiles as the config file at `config_path` writes them, for listing; nothing is run or resolved."""
        if config_path is None or not config_path.is_file():
            return {}
        return read_config_file(config_path).get("profiles", {})


def require_api_key(config: Config) -> None:
    """OpenAI and Azure OpenAI need a key; local servers usually do not."""
    if config.api_key:
        return
    where = config.config_path or "~/.config/chatcli/config.toml"
    if config.api_type == "azure":
        profile = f"[profiles.{config.profile}]" if config.profile else where
        raise ConfigError(
            f"No API key is set for Azure OpenAI at {config.shown_url}: set api_key_env = \"AZURE_OPENAI_API_KEY\" "
            f"(or api_key_cmd) in {profile}, and export that variable."
        )
    if not config.is_openai:
        return
    raise ConfigError(
        "No API key is set: export OPENAI_API_KEY=sk-..., put OPENAI_API_KEY=sk-... in a .env file here, "
        f"or set api_key or api_key_cmd in {where}."
    )
