"""Property tests: whatever a user types or writes, chatcli answers with its own errors.

Two doors take untrusted input: the slash-command line in the REPL, and the
settings (config.toml, ./.env, the environment). Hypothesis throws arbitrary
text and bytes at both; the only exceptions allowed out are chatcli's own
(chatcli.base.errors.ChatError and its subclasses), which the edge turns into a
sentence. Everything else that comes out must be usable: a Result the REPL can
draw, a session still fit for the next turn, a Config whose fields have the
types and ranges SETTINGS declares.

Hypothesis runs many examples inside one test call, so function-scoped
fixtures do not reset between them: every example builds its own Session, and
the config properties write into a fresh tempfile directory per example.
Nothing here runs a command from random data: api_key_cmd only ever holds
`true` or `echo sk-fuzz-key`, and CHATCLI_API_KEY_CMD and CHATCLI_CONFIG are
never drawn as environment variables.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from chatcli.base.env import Env
from chatcli.base.errors import ChatError, ConfigError
from chatcli.base.events import Usage
from chatcli.base.pii import KINDS
from chatcli.commands import REGISTRY, Result
from chatcli.commands.params import PARAMS
from chatcli.config.settings import (
    UNTRUSTED_IN_DOTENV,
    Config,
    load_config,
    read_config_file,
)
from chatcli.config.table import (
    BUDGET_KEYS,
    CAPABILITY_KEYS,
    LIST_KEYS,
    MODEL_KEYS,
    PRICE_KEYS,
    RENAMED,
    SETTINGS,
    SETTINGS_BY_KEY,
    Price,
)
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, ERROR, INTERRUPTED, PENDING, TRUNCATED, Turn
from chatcli.llm.client import ChatClient
from chatcli.llm.tokens import Tokenizer
from chatcli.ui.render import make_console
from chatcli.ui.terminal import Clipboard
from chatcli.ui.views import show_result
from tests.support.sessions import make_session
from tests.support.strategies import HARMLESS_COMMANDS, TRICKY, any_text, as_env_text, digit_runs, valid_value

# Examples are cheap (no network: port 9 refuses at once), but a slow 2-core machine
# and the first openai import make timings uneven, so no per-example deadline. No example
# database in the repository; in CI the examples are the same every run, so main stays
# green on what was already explored, while a local run explores afresh each time.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="chatcli-hypothesis-"))  # not .hypothesis/ in the repository


@pytest.fixture(autouse=True)
def no_real_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    """/edit starts $VISUAL: here `true`, which leaves the text as it was, never an editor waiting on a terminal."""
    monkeypatch.setenv("VISUAL", "true")


FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=bool(os.environ.get("CI")))

# --------------------------------------------------------------------------- #
# 1. Slash commands, dispatched the way the REPL does
# --------------------------------------------------------------------------- #

# One client and one tokenizer for every example: the client only connects when a
# request goes out (to a closed port: a NetworkError at once), and one tokenizer
# means one background attempt per encoding instead of a thread per example.
CLIENT = ChatClient(Config(base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_retries=0))
TOKENIZER = Tokenizer()
CLIPBOARD = Clipboard.detect(isatty=True, environ={"TERM": "xterm-256color"})

REPLIES = st.one_of(
    st.sampled_from([
        "Plain answer.",
        "Here:\n```python\nprint(1)\n```\nand\n~~~\n~~~\nthen\n  ```sh\n  ls\n  ```\n",
        "```\nan unclosed block",
        "",
        "x" * 80_000,  # too big for OSC 52
    ]),
    st.text(max_size=200),
)

turns = st.builds(
    lambda user, reply, status, usage: Turn(
        user=user, model="gpt-4o-mini", params={}, reply=reply, status=status, usage=usage,
        error=ChatError("boom") if status == ERROR else None,
    ),
    user=st.text(max_size=40),
    reply=REPLIES,
    status=st.sampled_from([COMPLETE, ERROR, INTERRUPTED, TRUNCATED, PENDING]),
    usage=st.none() | st.builds(Usage, *[st.integers(min_value=0, max_value=10**9)] * 3),
)

sessions = st.builds(
    lambda model, system, temperature, history, cleared: _session(model, system, temperature, history, cleared),
    model=st.sampled_from(["gpt-4o-mini", "gpt-4", "llama3.2"]),
    system=st.none() | st.text(min_size=1, max_size=40).filter(str.strip),
    temperature=st.none() | st.floats(min_value=0, max_value=2),
    history=st.lists(turns, max_size=4),
    cleared=st.integers(min_value=0, max_value=4),
)


def _session(model: str, system: str | None, temperature: float | None, history: list[Turn], cleared: int) -> Session:
    """A session as a user might have it mid-chat, with no store (history is not saved)."""
    params = {} if temperature is None else {"temperature": temperature}
    return make_session(client=CLIENT, model=model, system=system, params=params, turns=history,
                   context_start=min(cleared, len(history)), tokenizer=TOKENIZER)


COMMAND_NAMES = REGISTRY.names()  # with the slash, aliases included

# Arguments: anything; digits alone (what /copy, /compact and /resume take); anything shaped like a file name (/export).
arguments = any_text | digit_runs | st.tuples(
    st.sampled_from(["", "~", "~root", "-", ".", " ", "\x00"]), any_text, st.sampled_from([".md", ".json", ".MD", ".txt", ""])
).map("".join)
command_lines = st.builds(
    lambda name, upper, sep, arg: (name.upper() if upper else name) + sep + arg,
    name=st.sampled_from(COMMAND_NAMES),
    upper=st.booleans(),
    sep=st.sampled_from([" ", "  ", "\t", " \n ", "", "\u3000"]),
    arg=arguments,
)
# A line that begins with "//" is a message, not a command: the REPL sends it.
raw_lines = st.text().filter(lambda t: not t.startswith("/")).map(lambda t: "/" + t)
slash_lines = command_lines | raw_lines


def command_of(line: str) -> str | None:
    """The command a line dispatches to, parsed as Registry.dispatch does."""
    name = (line.strip().removeprefix("/").split(None, 1) + [""])[0]
    cmd = REGISTRY.command_for(name) if name else None
    return cmd.name if cmd else None


def safe(line: str) -> bool:
    """/export writes where it is told, and tests run as root here: only bare file names
    (written to the test's tmp working directory) are fuzzed, never a path elsewhere."""
    if command_of(line) != "export":
        return True
    arg = (line.strip().removeprefix("/").split(None, 1) + ["", ""])[1]
    return "/" not in arg


def run_line(session: Session, line: str) -> Result:
    """What repl.Repl._loop does with a slash line, minus the prompt and the screen."""
    result = REGISTRY.dispatch(session, line)
    session.tokenizer.preload(session.model)
    if result.clipboard is not None:
        CLIPBOARD.sequence(result.clipboard)
    show_result(make_console(io.StringIO(), color=True, width=80), result)
    if result.retry:
        session.retry()  # to the closed port: a turn that ended in a NetworkError
    return result


def assert_printable(result: Result) -> None:
    assert isinstance(result, Result)
    assert isinstance(result.text, str)
    assert all(isinstance(h, str) for h in result.headers)
    assert all(isinstance(cell, str) for row in result.rows for cell in row)
    assert result.prefill is None or isinstance(result.prefill, str)
    assert result.clipboard is None or isinstance(result.clipboard, str)


def assert_session_valid(session: Session) -> None:
    """What the commands may change, still fit for the next request."""
    assert isinstance(session.model, str) and session.model and not any(ch.isspace() for ch in session.model)
    temperature = session.params.get("temperature")
    assert temperature is None or (isinstance(temperature, float) and math.isfinite(temperature) and 0 <= temperature <= 2)
    assert set(session.params) <= {*PARAMS, "stop"}
    for name, value in session.params.items():
        if name == "stop":
            assert isinstance(value, list) and 1 <= len(value) <= 4 and all(isinstance(v, str) and v for v in value)
        else:
            assert PARAMS[name].check(value, name) == value  # of the declared type, within its range
    assert session.system is None or (isinstance(session.system, str) and session.system.strip())
    assert session.title is None or isinstance(session.title, str)
    assert 0 <= session.context_start <= len(session.turns)
    assert all(isinstance(turn, Turn) for turn in session.turns)
    assert session.summary is None or isinstance(session.summary, str)
    assert isinstance(session.show_reasoning, bool)
    assert session.client is CLIENT
    session.plan()  # the next request can still be counted and fitted
    session.accounts.accounting()  # and /usage and the toolbar can still count


@settings(FUZZ, max_examples=90)
@given(session=sessions, lines=st.lists(slash_lines, min_size=1, max_size=4))
@example(session=_session("gpt-4o-mini", None, None, [], 0), lines=["/temp nan", "/temp 1e309", "/temp -0"])
def test_slash_commands_answer_with_a_result_or_a_chatcli_error(session: Session, lines: list[str]) -> None:
    """Any line after a slash: a Result the REPL can draw, and a session still valid afterwards."""
    assume(all(safe(line) for line in lines))
    for line in lines:
        try:
            result = run_line(session, line)
        except ChatError:
            event("a ChatError")  # allowed: the REPL shows its sentence
        else:
            assert_printable(result)
            event("an error Result" if result.error else "a Result")
        assert_session_valid(session)


@pytest.mark.parametrize("name", sorted(REGISTRY.commands))
@settings(FUZZ, max_examples=50)
@given(session=sessions, arg=arguments)
def test_every_command_takes_any_argument(name: str, session: Session, arg: str) -> None:
    """Each registered command on its own, with any argument at all, so that none is left to chance."""
    line = f"/{name} {arg}"
    assume(safe(line))
    try:
        assert_printable(run_line(session, line))
    except ChatError:
        pass
    assert_session_valid(session)


# Regressions the properties found, kept as plain tests.


@pytest.mark.parametrize("line", ["/resume " + "9" * 5000, "/compact " + "9" * 5000, "/copy " + "9" * 5000])
def test_a_number_too_long_for_python_is_a_usage_error_not_a_crash(line: str) -> None:
    turn = Turn(user="q", model="gpt-4o-mini", params={}, reply="```\ncode\n```\n", status=COMPLETE)
    session = _session("gpt-4o-mini", None, None, [turn, turn, turn], 0)
    result = REGISTRY.dispatch(session, line)
    assert result.error and "\n" not in result.text


def test_resume_of_an_id_sqlite_cannot_hold_is_a_usage_error(tmp_path: Path) -> None:
    from chatcli.core.journal import Journal

    session = make_session(client=CLIENT, model="gpt-4o-mini", journal=Journal.open(tmp_path / "chatcli.db"), tokenizer=TOKENIZER)
    for line in ("/resume 99999999999999999999", "/resume " + "9" * 4000):
        result = REGISTRY.dispatch(session, line)
        assert result.error and "/resume 12" in result.text
    assert "no saved session 12" in REGISTRY.dispatch(session, "/resume 12").text


@pytest.mark.parametrize("name", ["a\x00b.md", "~no-such-user-here.md"])
def test_export_to_an_impossible_name_is_a_sentence(name: str) -> None:
    session = _session("gpt-4o-mini", None, None, [], 0)
    result = REGISTRY.dispatch(session, f"/export {name}")
    assert result.error and "\n" not in result.text


# --------------------------------------------------------------------------- #
# 2. Settings: config.toml, ./.env and the environment
# --------------------------------------------------------------------------- #


@contextmanager
def fresh_env(environ: dict[str, str] | None = None) -> Iterator[tuple[Env, Path]]:
    """An Env in a new tmp directory of its own: (env, path of its default config.toml)."""
    with tempfile.TemporaryDirectory(prefix="chatcli-fuzz-") as root:
        home, cwd = Path(root) / "home", Path(root) / "work"
        (home / "config" / "chatcli").mkdir(parents=True)
        cwd.mkdir()
        env = Env(
            stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), stdin_isatty=False, stdout_isatty=False,
            environ={"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), **(environ or {})}, cwd=cwd,
        )
        yield env, home / "config" / "chatcli" / "config.toml"


def assert_valid_config(config: Config) -> None:
    """Every field has the type and range SETTINGS (and the table readers) declare."""
    assert isinstance(config, Config)
    for s in SETTINGS:
        value = getattr(config, s.key)
        if value is None:
            assert s.optional, s.key
            continue
        assert type(value) is s.kind, (s.key, value)
        if s.kind is str and not s.optional:
            assert value.strip(), s.key
        if s.choices:
            assert value in s.choices
        if s.kind is float:
            assert math.isfinite(value), s.key
        if s.minimum is not None:
            assert value >= s.minimum, s.key
        if s.maximum is not None:
            assert value <= s.maximum, s.key
    assert config.base_url.startswith(("http://", "https://")) and not config.base_url.endswith("/")
    key = config.api_key
    assert key is None or (key and key.isascii() and key.isprintable() and not any(ch.isspace() for ch in key))
    for name, figures in config.models.items():
        assert isinstance(name, str) and set(figures) <= {*MODEL_KEYS, *CAPABILITY_KEYS, *LIST_KEYS}
        for k, v in figures.items():
            if k in LIST_KEYS:
                assert isinstance(v, tuple) and set(v) <= set(LIST_KEYS[k])
            else:
                assert type(v) is {**MODEL_KEYS, **CAPABILITY_KEYS}[k].kind
    for name, price in config.prices.items():
        assert isinstance(name, str) and isinstance(price, Price)
        assert all(isinstance(x, float) and math.isfinite(x) and x >= 0 for x in (price.input, price.cached_input, price.output))
    for k, v in config.budget.items():
        assert k in BUDGET_KEYS and type(v) is BUDGET_KEYS[k].kind and v >= BUDGET_KEYS[k].minimum
        assert isinstance(v, int) or math.isfinite(v)  # daily_tokens has no upper limit: a huge int is allowed
    assert isinstance(config.redact, tuple) and set(config.redact) <= set(KINDS)
    assert all(isinstance(w, str) for w in config.warnings)


def load_or_config_error(env: Env) -> Config | None:
    try:
        config = load_config(env)
    except ConfigError as exc:
        assert exc.message.strip()
        event("ConfigError")  # --hypothesis-show-statistics: how often each way out was taken
        return None
    assert_valid_config(config)
    event("a valid Config")
    return config


# ---- TOML documents, built from values of every TOML type ------------------ #


def toml_string(text: str) -> str:
    escaped = []
    for ch in text:
        if ch in '"\\':
            escaped.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\u{ord(ch):04X}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def toml_value(value: Any) -> str:
    """A tiny TOML serializer (tomli_w is not installed; this adds no dependency)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in data.items())


OFFSETS = [None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))]
toml_scalars = st.one_of(
    st.text(max_size=30),
    st.sampled_from(TRICKY[:-1]),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),  # past a float; tomllib takes up to 4,300 digits
    st.sampled_from([0, -1, 1, 2, 255, 256, 10**19, -(2**63), 2**64]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.1, 2.0, 1e308, 5e-324]),
    st.booleans(),
    st.datetimes(timezones=st.sampled_from(OFFSETS)),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

setting_keys = [s.key for s in SETTINGS if s.key != "api_key_cmd"]
random_keys = st.sampled_from([*setting_keys, "markdown", *RENAMED]) | st.text(max_size=20).filter(lambda k: k != "api_key_cmd")


def value_for(key: str) -> st.SearchStrategy[Any]:
    """Values a key might get: one it accepts, one of its own kind anywhere, or anything."""
    s = SETTINGS_BY_KEY[key]
    if key == "api_key_cmd":
        return HARMLESS_COMMANDS | toml_values.filter(lambda v: not isinstance(v, str))
    own = {
        str: st.text(max_size=30) | st.sampled_from(["markdown", "plain", "http://localhost:11434/v1", "sk-abc", "https://[::1"]),
        int: st.integers() | st.integers(min_value=-(10**400), max_value=10**400),
        float: st.floats() | st.integers() | st.integers(min_value=-(10**400), max_value=10**400),
        bool: st.booleans(),
    }[s.kind]
    return valid_value(s) | own | toml_values


def table_of(keys: list[str]) -> st.SearchStrategy[Any]:
    """A [models."x"] or [prices."x"] table, keys mostly real ones, or not a table at all."""
    entry = st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), toml_values | st.floats() | st.integers(), max_size=4)
    return st.dictionaries(st.sampled_from(["gpt-4o", "llama3.2", ""]) | st.text(max_size=10), entry | toml_values, max_size=3) | toml_values


def settings_dict(value: Any, *, max_size: int = 6) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the real keys, each with a value from value(setting)."""
    return st.lists(st.sampled_from(SETTINGS), unique=True, max_size=max_size).flatmap(
        lambda chosen: st.fixed_dictionaries({s.key: value(s) for s in chosen})
    )


# Tables a loader accepts, to get past the first error and check what comes out.
valid_tables = st.fixed_dictionaries(
    {},
    optional={
        "models": st.dictionaries(st.text(max_size=10), st.fixed_dictionaries(
            {}, optional={**{k: valid_value(setting) for k, setting in {**MODEL_KEYS, **CAPABILITY_KEYS}.items()},
                          **{k: st.lists(st.sampled_from(allowed), max_size=4) for k, allowed in LIST_KEYS.items()}}),
            max_size=3),
        "prices": st.dictionaries(st.text(max_size=10), st.fixed_dictionaries(
            {"input": st.floats(min_value=0, allow_infinity=False), "output": st.integers(min_value=0)},
            optional={"cached_input": st.floats(min_value=0, max_value=1e300)}), max_size=3),
        "budget": st.fixed_dictionaries({}, optional={k: valid_value(setting) for k, setting in BUDGET_KEYS.items()}),
        "redact": st.lists(st.sampled_from(KINDS), max_size=6),
    },
)
any_tables = st.fixed_dictionaries(
    {},
    optional={
        "models": table_of([*MODEL_KEYS, *CAPABILITY_KEYS, *LIST_KEYS]),
        "prices": table_of(list(PRICE_KEYS)),
        "budget": st.dictionaries(st.sampled_from(list(BUDGET_KEYS)) | st.text(max_size=8),
                                  toml_values | st.floats() | st.integers(min_value=-(10**400), max_value=10**400),
                                  max_size=3) | toml_values,
        "redact": st.lists(st.sampled_from(KINDS) | st.text(max_size=8), max_size=4) | toml_values,
    },
)
toml_data = st.one_of(
    # Real keys with values they accept: the Config that comes out is checked field by field.
    st.builds(lambda known, tables: {**known, **tables}, settings_dict(valid_value), valid_tables),
    # Anything: unknown keys, every TOML type for every key, tables that are not tables.
    st.builds(
        lambda base, known, tables: {**base, **known, **tables},
        st.dictionaries(random_keys, toml_values, max_size=4),
        settings_dict(lambda s: value_for(s.key)),
        any_tables,
    ),
)


@pytest.mark.server
@FUZZ
@given(data=toml_data)
@example(data={"temperature": 10**400})
def test_any_toml_document_gives_a_valid_config_or_a_config_error(data: dict[str, Any]) -> None:
    text = toml_document(data)
    assert tomllib.loads(text).keys() == data.keys()  # the serializer writes valid TOML
    with fresh_env() as (env, path):
        path.write_text(text, encoding="utf-8")
        try:
            assert isinstance(read_config_file(path), dict)
        except ConfigError:
            pass
        load_or_config_error(env)


# ---- Arbitrary bytes as config.toml ---------------------------------------- #

TOML_PIECES = [
    "=", " = ", '"', "'", '"""', "'''", "[", "]", "[[", "]]", "{", "}", ",", ".", "\n", "\r\n", "#", "\\", "\\u",
    "\\U0010FFFF", "\\ud800", "temperature", "model", "models", '[models."x"]', "[prices.x]", "[budget]", "redact",
    "1e309", "nan", "inf", "-0", "0x", "0o8", "1__0", "1979-05-27T07:32:00Z", "2021-02-30", "24:00:00", "9" * 30,
]


def mutate(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    for at, new in edits:
        at %= len(data) + 1
        data = data[:at] + new + data[at + len(new) // 2 :]
    return data


nested = st.builds(
    lambda key, opener, depth: f"{key} = {opener[0] * depth}1{opener[1] * depth}\n".encode(),
    key=st.sampled_from(["temperature", "models", "x"]),
    opener=st.sampled_from([("[", "]"), ("{a = ", "}")]),
    depth=st.integers(min_value=1, max_value=2000),
)
long_numbers = st.builds(
    lambda key, digits, sign: f"{key} = {sign}{'9' * digits}\n".encode(),
    key=st.sampled_from(["temperature", "max_tokens", "x"]),
    digits=st.integers(min_value=1, max_value=6000),
    sign=st.sampled_from(["", "-", "+"]),
)
config_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(TOML_PIECES) | st.text(max_size=4), max_size=40).map(lambda parts: "".join(parts).encode()),
    st.tuples(toml_data.map(lambda d: toml_document(d).encode()), st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=4)), max_size=4)).map(lambda t: mutate(*t)),
    nested,
    long_numbers,
)


@pytest.mark.server
@FUZZ
@given(content=config_bytes)
@example(content=b"temperature = " + b"9" * 5000 + b"\n")
@example(content=b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n")
def test_any_bytes_as_config_toml_are_read_or_refused_with_a_config_error(content: bytes) -> None:
    with fresh_env() as (env, path):
        path.write_bytes(content)
        try:
            assert isinstance(read_config_file(path), dict)
        except ConfigError:
            pass
        load_or_config_error(env)


@pytest.mark.parametrize(
    "content",
    [b"temperature = " + b"9" * 5000, b"x = " + b"[" * 3000 + b"]" * 3000, b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000],
    ids=["number-over-4300-digits", "arrays-nested-3000-deep", "tables-nested-2000-deep"],
)
def test_toml_that_python_cannot_parse_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="config file"):
        read_config_file(path)


def test_an_integer_too_large_for_a_float_is_out_of_range() -> None:
    with fresh_env() as (env, path):
        path.write_text(f"temperature = {10**400}\n[budget]\ndaily_usd = {10**309}\n")
        with pytest.raises(ConfigError, match="temperature.* must be a number from 0 to 2"):
            load_config(env)


# ---- The environment -------------------------------------------------------- #

# CHATCLI_API_KEY_CMD would run its value, and CHATCLI_CONFIG would read any path
# (/dev/zero never ends): neither is drawn. Every other variable chatcli reads is.
ENV_NAMES = [s.env_var for s in SETTINGS if s.key != "api_key_cmd"] + [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "CHATCLI_REDACT",
]
redact_lists = st.lists(st.sampled_from([*KINDS, "", " ", "emial", "EMAIL"]) | st.text(max_size=6), max_size=4).map(",".join)
env_values = st.one_of(
    any_text, redact_lists, st.sampled_from(["true", "off", "plain", "markdown", "http://localhost:1/v1", "sk-abc"])
)


# Each variable set to what it accepts, written as text (often with spaces around), or to anything.
environments = st.one_of(
    settings_dict(lambda s: st.tuples(st.sampled_from(["", " ", "\t"]), valid_value(s).map(as_env_text)).map("".join)).map(
        lambda values: {SETTINGS_BY_KEY[k].env_var: v for k, v in values.items() if k != "api_key_cmd"}
    ),
    st.dictionaries(st.sampled_from(ENV_NAMES), env_values, max_size=6),
)


@FUZZ
@given(environ=environments)
def test_any_environment_gives_a_valid_config_or_a_config_error(environ: dict[str, str]) -> None:
    with fresh_env(environ) as (env, _):
        config = load_or_config_error(env)
    if config is not None:
        assert config.api_key_cmd is None


# ---- ./.env ----------------------------------------------------------------- #

DOTENV_NAMES = [*ENV_NAMES, *UNTRUSTED_IN_DOTENV]
dotenv_lines = st.builds(
    lambda export, name, value, quote: f"{export}{name}={quote}{'true' if name in UNTRUSTED_IN_DOTENV else value}{quote}",
    export=st.sampled_from(["", "export ", " "]),
    name=st.sampled_from(DOTENV_NAMES) | st.text(max_size=8),
    value=env_values | st.sampled_from(["${HOME}", "${", "$", "\\", "'", '"', "# comment"]),
    quote=st.sampled_from(["", "'", '"']),
)
dotenv_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(dotenv_lines | st.text(max_size=20), max_size=6).map(lambda ls: "\n".join(ls).encode()),
)


@FUZZ
@given(content=dotenv_bytes)
def test_any_bytes_as_dotenv_give_a_valid_config_or_a_config_error(content: bytes) -> None:
    with fresh_env() as (env, _):
        (env.cwd / ".env").write_bytes(content)
        config = load_or_config_error(env)
    if config is not None:
        assert config.api_key_cmd is None  # a .env may not name a command to run
