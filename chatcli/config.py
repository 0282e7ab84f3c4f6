"""Layered settings: defaults < config file < .env < environment < flags.

One table (SETTINGS) says every key's type, default, range and help; loading,
validation, error messages and config.example.toml all follow from it.
"""

from __future__ import annotations

import difflib
import io
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from chatcli.env import Env
from chatcli.errors import ConfigError
from chatcli.keys import readable_by_others, resolve_key

DEFAULT_BASE_URL = "https://api.openai.com/v1"
AZURE_API_VERSION = "2024-10-21"  # Azure OpenAI's generally available chat API


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type  # str, int, float or bool
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False  # None (unset) is allowed
    example: Any = None  # shown, commented out, in config.example.toml when the default is unset
    secret: bool = False  # its value is never shown, not even in an error
    choices: tuple[str, ...] = ()  # a string that must be one of these

    @property
    def env_var(self) -> str:
        return "CHATCLI_" + self.key.upper()

    def allowed(self) -> str:
        """What is allowed, in words, for error messages."""
        if self.choices:
            return " or ".join(f'"{c}"' for c in self.choices)
        noun = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}[self.kind]
        if self.kind is str and not self.optional:
            noun = "a non-empty string"
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        if self.minimum is not None:
            return f"{noun} of at least {_fmt(self.minimum)}"
        return noun

    def check(self, value: Any, where: str, *, shown: str | None = None) -> Any:
        """Validate a typed value (from TOML or already parsed); return it, normalised.

        `where` names what was wrong ("'temperature' in /path/config.toml");
        `shown` is the value as the user typed it, when it was typed.
        """
        if value is None and self.optional:
            return None
        ok = isinstance(value, self.kind) and not (self.kind is not bool and isinstance(value, bool))
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:  # past 1.8e308: no float holds it, so it is out of any range
                pass
        if ok and self.kind is str and not value.strip() and not self.optional:
            ok = False
        if ok and self.choices and value not in self.choices:
            ok = False
        if ok and self.kind is float and not math.isfinite(value):
            ok = False
        if ok and self.kind in (int, float):
            if self.minimum is not None and value < self.minimum:
                ok = False
            if self.maximum is not None and value > self.maximum:
                ok = False
        if not ok:
            if self.secret:
                raise ConfigError(f"{where} must be {self.allowed()}.")
            raise ConfigError(f"{where} must be {self.allowed()}, not {shown if shown is not None else repr(value)}.")
        return value

    def parse(self, text: str, where: str) -> Any:
        """Validate a value given as text (environment variable or flag)."""
        text = text.strip()
        value: Any = text
        try:
            if self.kind is bool:
                lowered = text.lower()
                if lowered in ("1", "true", "yes", "on"):
                    value = True
                elif lowered in ("0", "false", "no", "off"):
                    value = False
            elif self.kind is int:
                value = int(text)
            elif self.kind is float:
                value = float(text)
        except ValueError:
            pass
        if self.optional and self.kind is not str and text == "":
            return None
        return self.check(value, where, shown=repr(text))


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


SETTINGS: tuple[Setting, ...] = (
    Setting("model", str, "gpt-4o-mini", "Model to chat with; unset, the server's own when it does not list gpt-4o-mini."),
    Setting("base_url", str, DEFAULT_BASE_URL, "Any OpenAI-compatible endpoint (Ollama, vLLM, LM Studio, ...)."),
    Setting("api_key", str, None, "The API key. Prefer OPENAI_API_KEY or api_key_cmd over storing it here.", optional=True, example="sk-...", secret=True),
    Setting("api_key_cmd", str, None, "A command that prints the API key; run only when no key is set elsewhere.", optional=True, example="pass show openai"),
    Setting("api_key_env", str, None, "The variable (in the environment or .env) that holds the API key, for a provider with a key of its own.", optional=True, example="OPENROUTER_API_KEY"),
    Setting("profile", str, None, "The profile ([profiles.NAME] below) used when --profile and CHATCLI_PROFILE name none.", optional=True, example="ollama"),
    Setting("api_type", str, "openai", "openai, or azure for Azure OpenAI (base_url is then the resource's endpoint).", choices=("openai", "azure")),
    Setting("api_version", str, None, f"Azure OpenAI's api-version; unset means {AZURE_API_VERSION}.", optional=True, example=AZURE_API_VERSION),
    Setting("azure_deployment", str, None, "Azure OpenAI's deployment; unset means the model's name.", optional=True, example="gpt-4o-mini"),
    Setting("proxy", str, None, "HTTP proxy for every request; unset means HTTPS_PROXY, HTTP_PROXY and NO_PROXY decide.", optional=True, example="http://proxy.example.com:3128"),
    Setting("ca_bundle", str, None, "PEM file of the certificate authorities to trust; unset means SSL_CERT_FILE, or the system's.", optional=True, example="~/corp-ca.pem"),
    Setting("system", str, None, "System prompt (persona) for new sessions.", optional=True, example="You are a terse SQL expert."),
    Setting("temperature", float, None, "Sampling temperature; unset means the server's default.", 0, 2, optional=True, example=0.7),
    Setting("max_tokens", int, None, "Longest reply in tokens; unset means the server's default.", 1, optional=True, example=1024),
    Setting("reasoning_effort", str, None, "How hard reasoning models (o-series, gpt-5) think before they answer, for the models that take it; /effort changes it.", optional=True, example="medium", choices=("minimal", "low", "medium", "high")),
    Setting("connect_timeout", float, 10.0, "Seconds to wait for a connection to the server.", 0.1, 600),
    Setting("read_timeout", float, 60.0, "Longest wait, in seconds, for the next token; keep-alives sent meanwhile do not count.", 0.1, 3600),
    Setting("reply_timeout", float, 0.0, "Longest a whole reply may take, in seconds, from sending the request to its end; 0 means no limit.", 0, 86400),
    Setting("max_retries", int, 2, "Retries for rate limits, server errors and dropped connections.", 0, 10),
    Setting("render", str, "markdown", "How replies are drawn in a terminal: markdown, or plain text as it streams. Pipes and NO_COLOR always get plain text.", choices=("markdown", "plain")),
    Setting("show_reasoning", bool, True, "Show the reasoning that some models stream before the answer (dimmed); /reasoning toggles it."),
    Setting("editing_mode", str, "emacs", "Key bindings at the prompt: emacs (Ctrl-A, Ctrl-E, ...) or vi.", choices=("emacs", "vi")),
    Setting("multiline", bool, False, "Enter adds a line and Alt-Enter sends, instead of the other way round."),
    Setting("stats", bool, False, "After each reply, a line with the time to first token, tokens per second and tokens."),
    Setting("default_context_window", int, 8192, "Context window, in tokens, for models chatcli has no figure for.", 256),
    Setting("default_max_output_tokens", int, 4096, "Tokens kept free for the reply, for models chatcli has no figure for.", 1),
    Setting("save", bool, True, "Save sessions and input history; false is incognito (with a [budget], only tokens and cost are recorded)."),
    Setting("db", str, None, "Session database; default $XDG_DATA_HOME/chatcli/chatcli.db.", optional=True, example="~/chats/chatcli.db"),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
RENAMED = {"markdown": 'render = "markdown" or render = "plain"'}  # keys of earlier versions


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
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prices: Mapping[str, Any] = field(default_factory=dict)
    budget: Mapping[str, Any] = field(default_factory=dict)
    save: bool = True
    db: str | None = None
    redact: tuple[str, ...] = ()  # kinds of personal data scrubbed from what is sent (chatcli.pii)
    config_path: Path | None = None
    warnings: tuple[str, ...] = ()  # said once at start: a file holding the key that others can read
    model_set: bool = True  # False: no layer named a model, so the server's own may be the default

    def __repr__(self) -> str:
        # The key must never reach a log or a traceback through a repr.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        shown["api_key"] = "***" if self.api_key else None
        shown["headers"] = {name: "***" for name in self.headers}  # they may carry credentials
        return f"Config({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def shown_url(self) -> str:
        """base_url as said to the user or logged: any password in it replaced."""
        from chatcli.pii import hide_password

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
UNTRUSTED_IN_DOTENV = ("CHATCLI_API_KEY_CMD", "CHATCLI_CONFIG", "CHATCLI_API_KEY_ENV", "CHATCLI_PROXY", "CHATCLI_CA_BUNDLE")


def read_dotenv(env: Env) -> dict[str, str]:
    """./.env, if there is one: a layer under the environment, never over it."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

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
        from chatcli.pii import read_kinds

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
        from chatcli.profiles import with_profile

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
    import ssl

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
    from urllib.parse import urlsplit

    from chatcli.pii import hide_password

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


def read_table(data: Mapping[str, Any], path: Path, *, profile: str | None = None) -> dict[str, Any]:
    """Validate the keys of the config file, or of one [profiles.NAME] table in it."""
    where = f"{path}" if profile is None else f"[profiles.{profile}] in {path}"
    values: dict[str, Any] = {}
    for key, value in data.items():
        if profile is not None and key in ("profile", "profiles", "db", "save", "budget"):  # one for all profiles
            raise ConfigError(f"{where}: '{key}' cannot be set in a profile; set it at the top of the file.")
        if key == "profiles":
            from chatcli.profiles import read_profiles

            values["profiles"] = read_profiles(value, path)
        elif key == "headers":
            values["headers"] = read_headers(value, where)
        elif key == "models":
            from chatcli.capabilities import read_models_table

            values["models"] = read_models_table(value, where)
        elif key == "prices":
            values["prices"] = read_prices_table(value, where)
        elif key == "budget":
            values["budget"] = read_budget_table(value, path)
        elif key == "redact":
            from chatcli.pii import read_kinds

            values["redact"] = read_kinds(value, f"'redact' in {where}")
        elif key in RENAMED:
            raise ConfigError(f"{where}: '{key}' is now {RENAMED[key]}.")
        elif (setting := SETTINGS_BY_KEY.get(key)) is None:
            near = difflib.get_close_matches(key, SETTINGS_BY_KEY, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else f" Known keys: {', '.join(SETTINGS_BY_KEY)}."
            raise ConfigError(f"{where}: unknown key '{key}'.{hint}")
        else:
            values[key] = setting.check(value, f"'{key}' in {where}")
            if key == "ca_bundle" and value and not value.startswith("~") and not Path(value).is_absolute():
                values[key] = str(path.parent / value)  # beside the config file, wherever chatcli runs
    return values


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def read_headers(table: Any, where: str) -> dict[str, str]:
    """[headers]: extra HTTP headers, such as OpenRouter's HTTP-Referer and X-Title."""
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: \'headers\' must be a table, as in headers = {{ "X-Title" = "chatcli" }}.')
    for name, value in table.items():
        if not HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {name!r} is not a valid HTTP header name.")
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            raise ConfigError(f"{where}: the header {name} is set by the HTTP client itself; leave it out.")
        if not isinstance(value, str) or not value.isascii() or not value.isprintable() or value != value.strip():
            raise ConfigError(f"{where}: the header {name} must be a string of printable ASCII characters, "
                              "without spaces at either end.")
    return dict(table)


# The figures a [models."NAME"] table may give; capabilities.py reads the table, and what else it may say.
MODEL_KEYS = {
    "context_window": Setting("context_window", int, None, "", 256),
    "max_output_tokens": Setting("max_output_tokens", int, None, "", 1),
    "encoding": Setting("encoding", str, None, ""),
}


BUDGET_KEYS = {
    "daily_usd": Setting("daily_usd", float, None, "", 0),
    "monthly_usd": Setting("monthly_usd", float, None, "", 0),
    "daily_tokens": Setting("daily_tokens", int, None, "", 1),
}


def read_budget_table(table: Any, path: Path) -> dict[str, Any]:
    """[budget] daily_usd, monthly_usd, daily_tokens."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'budget' must be a table, as in [budget] daily_usd = 2.0.")
    budget = {}
    for key, value in table.items():
        setting = BUDGET_KEYS.get(key)
        if setting is None:
            raise ConfigError(f"{path}: unknown key '{key}' in [budget]; known: {', '.join(BUDGET_KEYS)}.")
        budget[key] = setting.check(value, f"[budget] {key} in {path}")
    return budget


PRICE_KEYS = ("input", "cached_input", "output")


def read_prices_table(table: Any, path: Path | str) -> dict[str, Any]:
    """[prices."NAME"] tables: USD per million input, cached input and output tokens."""
    from chatcli.pricing import Price

    example = '[prices."my-model"] input = 0.5, output = 1.5 (USD per million tokens)'
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{path}: 'prices' must hold tables, as in {example}.")
    prices = {}
    number = Setting("price", float, None, "", 0)
    for name, entry in table.items():
        unknown = set(entry) - set(PRICE_KEYS)
        if unknown or "input" not in entry or "output" not in entry:
            raise ConfigError(f"{path}: the price of {name!r} needs input and output (and may have cached_input), as in {example}.")
        values = {k: number.check(v, f"'{k}' of the price of {name!r} in {path}") for k, v in entry.items()}
        prices[name] = Price(values["input"], values.get("cached_input", values["input"]), values["output"])
    return prices
