"""Every key chatcli reads, in tables: the settings (type, default, range, help), and the keys of
[models], [prices], [budget], [headers], [profiles], [mcp], redact and block_words, each read and checked here.

One table says every key's type, default, range and help; loading, validation, error messages
and config.example.toml all follow from it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from chatcli.base.errors import ConfigError
from chatcli.base.parse import duration_seconds
from chatcli.base.pii import KINDS

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
    duration: bool = False  # a string that must be a duration: a whole number and s, m, h, d or w (7d)

    @property
    def env_var(self) -> str:
        return "CHATCLI_" + self.key.upper()

    def allowed(self) -> str:
        """What is allowed, in words, for error messages."""
        if self.choices:
            return " or ".join(f'"{c}"' for c in self.choices)
        if self.duration:
            return 'a duration: a whole number and s, m, h, d or w, as in "7d" or "12h"'
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
        if ok and self.duration and duration_seconds(value) is None:
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
    Setting("usage_accounting", bool, None, "Ask the server for what each request cost (OpenRouter's usage accounting, sent as usage.include) and count that rather than list prices; unset means only for openrouter.ai.", optional=True, example=True),
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
    Setting("block_words_file", str, None, "A UTF-8 file of blocked words, one word or phrase a line (# comments), added to block_words: a reply holding one is withheld.", optional=True, example="~/.config/chatcli/blocked.txt"),
    Setting("show_filtered", bool, False, "Allow /show-filtered (and exports, recaps, /copy) to show a withheld reply's original."),
    Setting("image_max_mb", float, 20.0, "Largest image that /image, /paste and -i attach, in MB (OpenAI's limit is 20).", 0.001, 1000),
    Setting("max_tool_rounds", int, 8, "Rounds of tool calls one reply may take (tools, --tools); past them chatcli stops and says so.", 1, 100),
    Setting("tool_timeout", float, 30.0, "Longest a tool call may run, in seconds; then it is stopped and the model told.", 0.1, 3600),
    Setting("tool_result_tokens", int, 4000, "Longest tool result sent to the model, in tokens (about 4 characters each); a longer one is cut, saying so.", 50, 1_000_000),
    Setting("cache", bool, False, "Answer one-shot asks from the response cache where it may (--cache): only requests with temperature 0 or a seed, unless cache_any; never with --no-save."),
    Setting("cache_ttl", str, "7d", "How long a cached reply is served, as a duration; older ones are dropped.", duration=True),
    Setting("cache_any", bool, False, "With the cache on, cache any request, not only those with temperature 0 or a seed (whose answers repeat)."),
    Setting("save", bool, True, "Save sessions and input history; false is incognito (with a [budget], only tokens and cost are recorded)."),
    Setting("db", str, None, "Session database; default $XDG_DATA_HOME/chatcli/chatcli.db.", optional=True, example="~/chats/chatcli.db"),
    Setting("fetch_allow_private", bool, False, "Let the fetch_url tool reach loopback, private and link-local addresses (your LAN, localhost, a cloud's metadata service); not settable from a project's .env."),
    Setting("fetch_max_kb", int, 1024, "Most the fetch_url tool reads of a page, in KB; the rest is cut, and the model is told.", 1, 100_000),
)


SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}


RENAMED = {"markdown": 'render = "markdown" or render = "plain"'}  # keys of earlier versions


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


PRICE_KEYS = ("input", "cached_input", "output", "batch_input", "batch_output")


def read_prices_table(table: Any, path: Path | str) -> dict[str, Any]:
    """[prices."NAME"] tables: USD per million input, cached input and output tokens, and through the
    Batch API (batch_input, batch_output; unset, half the others, as OpenAI's Batch API charges)."""

    example = '[prices."my-model"] input = 0.5, output = 1.5 (USD per million tokens)'
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{path}: 'prices' must hold tables, as in {example}.")
    prices = {}
    number = Setting("price", float, None, "", 0)
    for name, entry in table.items():
        unknown = set(entry) - set(PRICE_KEYS)
        if unknown or "input" not in entry or "output" not in entry:
            raise ConfigError(f"{path}: the price of {name!r} needs input and output (and may have cached_input, "
                              f"batch_input and batch_output), as in {example}.")
        values = {k: number.check(v, f"'{k}' of the price of {name!r} in {path}") for k, v in entry.items()}
        prices[name] = Price(values["input"], values.get("cached_input", values["input"]), values["output"],
                             values.get("batch_input"), values.get("batch_output"))
    return prices


MCP_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # NAME.tool must stay a valid function name on the wire
MCP_EXAMPLE = '[mcp.files] command = "npx", args = ["-y", "@modelcontextprotocol/server-filesystem", "."]'


def read_mcp_table(table: Any, where: str, config_dir: Path) -> dict[str, dict[str, Any]]:
    """[mcp.NAME] tables: an MCP server started over stdio (tools/mcp.py): command, and optionally
    args, env, cwd (beside the config file when relative), timeout (seconds a call may take) and
    start_timeout (seconds it may take to start)."""
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{where}: 'mcp' must hold tables, as in {MCP_EXAMPLE}.")
    servers: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        at = f"[mcp.{name}] in {where}"
        if not MCP_NAME.fullmatch(name):
            raise ConfigError(f"{where}: the MCP server name {name!r} must be letters, digits, '-' and '_' (at most 32).")
        unknown = set(entry) - {"command", "args", "env", "cwd", "timeout", "start_timeout"}
        if unknown:
            raise ConfigError(f"{at}: unknown key '{sorted(unknown)[0]}'; "
                              "known: command, args, env, cwd, timeout, start_timeout.")
        server: dict[str, Any] = {"command": Setting("command", str, None, "").check(entry.get("command"), f"'command' of {at}")}
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"'args' of {at} must be a list of strings, as in args = [\"--root\", \".\"].")
        server["args"] = tuple(args)
        env = entry.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigError(f"'env' of {at} must be a table of strings, as in env = {{ \"TOKEN\" = \"...\" }}.")
        server["env"] = dict(env)
        if "cwd" in entry:
            cwd = Setting("cwd", str, None, "").check(entry["cwd"], f"'cwd' of {at}")
            server["cwd"] = str(config_dir / Path(cwd).expanduser())  # an absolute path stays as it is
        for key in ("timeout", "start_timeout"):
            if key in entry:
                server[key] = Setting(key, float, None, "", 0.1, 3600).check(entry[key], f"'{key}' of {at}")
        servers[name] = server
    return servers


def read_kinds(value: object, where: str) -> tuple[str, ...]:
    """Config's redact = ["email", "phone", ...], checked: the kinds to scrub, each once."""
    example = 'redact = ["email", "phone"]'
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of kinds, as in {example}; known: {', '.join(KINDS)}.")
    for kind in value:
        if kind not in KINDS:
            near = difflib.get_close_matches(kind, KINDS, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{where}: unknown kind {kind!r}; known: {', '.join(KINDS)}.{hint}")
    return tuple(dict.fromkeys(value))


def read_tool_names(value: object, where: str) -> tuple[str, ...]:
    """tools = ["read_file", "grep", "files.*"] and tool_ask = [...] (or "all"): tool names, each once.
    Which names exist is known only when the tools are made (an MCP server's once it has started)."""
    if value == "all":
        return ("all",)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f'{where} must be a list of tool names, as in ["read_file", "grep"].')
    return tuple(dict.fromkeys(v.strip() for v in value))


def read_block_words_file(path_text: str) -> tuple[str, ...]:
    """block_words_file's words: one word or phrase a line, `#` comments, UTF-8; read once, at start."""
    from chatcli.base.blocklist import read_words  # lazy: off the path of chatcli --help

    path = Path(path_text).expanduser()
    try:
        if path.exists() and not path.is_file():  # a directory, or /dev/zero, which would be read forever
            raise ConfigError(f"The block_words_file {path} is not a file; set it to a text file, one word a line.")
        return tuple(read_words(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"The block_words_file {path} does not exist; create it (one word a line) or unset "
                          "block_words_file.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The block_words_file {path} is not UTF-8 text; save it as UTF-8.") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        why = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
        raise ConfigError(f"The block_words_file {path} could not be read{why}; check the path and its "
                          "permissions.") from None


def read_tool_roots(value: object, where: str) -> tuple[str, ...]:
    """Config's tool_roots = ["~/notes", "."]: the directories the file tools may read under;
    relative ones start at the directory chatcli runs in, as the default (the working directory) does."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and "\x00" not in v for v in value):
        raise ConfigError(f'{where} must be a list of directories, as in tool_roots = [".", "~/notes"].')
    return tuple(dict.fromkeys(value))


def read_block_words(value: object, where: str) -> tuple[str, ...]:
    """Config's block_words = ["...", ...]: the content filter's words or phrases, each once."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f'{where} must be a list of words or phrases, as in block_words = ["word", "two words"].')
    return tuple(dict.fromkeys(v.strip() for v in value))


SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


# What a request can go without when its model refuses it: the sampling parameters, and
# two more that some models refuse (o3 and o4-mini refuse stop sequences).
DROPPABLE = (*SAMPLING, "seed", "stop")


EFFORTS = ("minimal", "low", "medium", "high")


MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")


# The keys of a config [models."NAME"] table that say what the model takes (config.py
# checks the others: context_window, max_output_tokens, encoding).
CAPABILITY_KEYS: dict[str, Setting] = {
    "max_tokens_param": Setting("max_tokens_param", str, None, "", choices=MAX_TOKENS_PARAMS),
    "reasoning_effort": Setting("reasoning_effort", str, None, "", choices=EFFORTS),
    "vision": Setting("vision", bool, None, ""),  # false: the model takes no images
}


LIST_KEYS: dict[str, tuple[str, ...]] = {"unsupported": DROPPABLE, "efforts": EFFORTS}  # lists drawn from these


def read_models_table(table: Any, path: Path | str) -> dict[str, dict[str, Any]]:
    """[models."NAME"] tables: a model's figures (config.MODEL_KEYS) and what it takes (above), checked."""
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{path}: 'models' must hold tables, as in [models.\"llama3.2\"] context_window = 131072.")
    known = [*MODEL_KEYS, *CAPABILITY_KEYS, *LIST_KEYS]
    models: dict[str, dict[str, Any]] = {}
    for name, settings in table.items():
        models[name] = {}
        for key, value in settings.items():
            where = f"'{key}' of model {name!r} in {path}"
            if key not in known:
                raise ConfigError(f"{path}: unknown key '{key}' for model {name!r}; known: {', '.join(known)}.")
            setting = MODEL_KEYS.get(key) or CAPABILITY_KEYS.get(key)
            models[name][key] = setting.check(value, where) if setting else _read_list(key, value, where)
    return models


def _read_list(key: str, value: Any, where: str) -> tuple[str, ...]:
    allowed = LIST_KEYS[key]
    bad = value if not isinstance(value, list) else next((v for v in value if v not in allowed), None)
    if bad is not None:
        listed = ", ".join(f'"{c}"' for c in allowed)
        raise ConfigError(f"{where} must be a list drawn from {listed} (or []), not {bad!r}.")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class Price:
    """USD per million tokens: the standard list price, and the Batch API's (its own column, or half)."""

    input: float
    cached_input: float
    output: float
    batch_input: float | None = None  # None: half of input, as OpenAI's Batch API is 50% off
    batch_output: float | None = None  # None: half of output

    def batch(self) -> Price:
        """The price through the Batch API: its column where given, else half the list price; cached input
        at half its list price (no more than batch input)."""
        batch_input = self.input / 2 if self.batch_input is None else self.batch_input
        batch_output = self.output / 2 if self.batch_output is None else self.batch_output
        return Price(batch_input, min(self.cached_input / 2, batch_input), batch_output, batch_input, batch_output)


def read_table(data: Mapping[str, Any], path: Path, *, profile: str | None = None) -> dict[str, Any]:
    """Validate the keys of the config file, or of one [profiles.NAME] table in it."""
    where = f"{path}" if profile is None else f"[profiles.{profile}] in {path}"
    values: dict[str, Any] = {}
    for key, value in data.items():
        if profile is not None and key in ("profile", "profiles", "db", "save", "budget"):  # one for all profiles
            raise ConfigError(f"{where}: '{key}' cannot be set in a profile; set it at the top of the file.")
        if key == "profiles":
            values["profiles"] = read_profiles(value, path)
        elif key == "headers":
            values["headers"] = read_headers(value, where)
        elif key == "models":
            values["models"] = read_models_table(value, where)
        elif key == "prices":
            values["prices"] = read_prices_table(value, where)
        elif key == "budget":
            values["budget"] = read_budget_table(value, path)
        elif key == "mcp":
            values["mcp"] = read_mcp_table(value, where, path.parent)
        elif key == "redact":
            values["redact"] = read_kinds(value, f"'redact' in {where}")
        elif key == "tool_roots":
            values["tool_roots"] = read_tool_roots(value, f"'tool_roots' in {where}")
        elif key == "block_words":  # with block_words_file's words, in whichever order the two come
            values["block_words"] = (*read_block_words(value, f"'block_words' in {where}"), *values.get("block_words", ()))
        elif key in ("tools", "tool_ask"):
            values[key] = read_tool_names(value, f"'{key}' in {where}")
        elif key in RENAMED:
            raise ConfigError(f"{where}: '{key}' is now {RENAMED[key]}.")
        elif (setting := SETTINGS_BY_KEY.get(key)) is None:
            near = difflib.get_close_matches(key, SETTINGS_BY_KEY, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else f" Known keys: {', '.join(SETTINGS_BY_KEY)}."
            raise ConfigError(f"{where}: unknown key '{key}'.{hint}")
        else:
            values[key] = setting.check(value, f"'{key}' in {where}")
            if key in ("ca_bundle", "block_words_file") and value and not value.startswith("~") and not Path(value).is_absolute():
                values[key] = str(path.parent / value)  # beside the config file, wherever chatcli runs
            if key == "block_words_file" and value:  # read now, so a profile's file adds to the top's
                values["block_words"] = (*values.get("block_words", ()), *read_block_words_file(values[key]))
    return values


def read_profiles(table: Any, path: Path) -> dict[str, dict[str, Any]]:
    """[profiles.NAME] tables: each a set of settings, checked as the top of the file is."""
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f'{path}: \'profiles\' must hold tables, as in [profiles.ollama] base_url = "http://localhost:11434/v1".')
    for name in table:
        if not PROFILE_NAME.fullmatch(name):
            raise ConfigError(f"{path}: the profile name {name!r} must be letters, digits, '-' and '_'.")
    return {name: read_table(settings, path, profile=name) for name, settings in table.items()}


PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
