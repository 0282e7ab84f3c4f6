"""Settings, in process: layering, where files are looked for, and error messages.

The autouse fixture in conftest gives each test its own HOME, XDG directories
and working directory, and clears OPENAI_* and CHATCLI_* from os.environ, so
make_env() sees only what a test puts there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from chatcli.base.errors import EXIT_CONFIG, ConfigError
from chatcli.config.example import example_toml
from chatcli.config.settings import load_config, require_api_key
from chatcli.config.table import DEFAULT_BASE_URL, SETTINGS, SETTINGS_BY_KEY
from tests.support.keys import TEST_KEY
from tests.support.running import make_env

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def default_path() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"


def write_config(text: str, path: Path | None = None) -> Path:
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_dotenv(text: str) -> Path:
    path = Path.cwd() / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def load(*, config_path: str | None = None, flags: dict[str, Any] | None = None, **environ: str):
    """load_config with the isolated environment plus `environ`."""
    return load_config(make_env(environ={**os.environ, **environ}), config_path=config_path, flags=flags)


def load_error(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    assert info.value.exit_code == EXIT_CONFIG
    return str(info.value)


def toml(value: Any) -> str:
    """A TOML value: JSON strings and numbers are valid TOML for what we write."""
    return json.dumps(value)


def key_command(code: str) -> str:
    """An api_key_cmd that runs `code` in this Python."""
    return shlex.join([sys.executable, "-c", code])


# --------------------------------------------------------------------------- #
# layering: defaults < config file < .env < environment < flags
# --------------------------------------------------------------------------- #

# For each key: the value each layer sets, as (file, .env/environment text, flag).
LAYERS = {
    "model": ["model-file", "model-dotenv", "model-env", "model-flag"],
    "temperature": [0.5, 0.7, 0.9, 1.1],
    "max_tokens": [100, 200, 300, 400],
}
KEYS = list(LAYERS)


def test_defaults_when_nothing_is_set() -> None:
    config = load()

    for setting in SETTINGS:
        assert getattr(config, setting.key) == setting.default, setting.key
    assert config.base_url == DEFAULT_BASE_URL
    assert config.api_key is None
    assert config.config_path == default_path()


@pytest.mark.parametrize("key", KEYS)
def test_config_file_overrides_defaults(key: str) -> None:
    file_value = LAYERS[key][0]
    write_config(f"{key} = {toml(file_value)}\n")

    assert getattr(load(), key) == file_value


@pytest.mark.parametrize("key", KEYS)
def test_dotenv_overrides_config_file(key: str) -> None:
    file_value, dotenv_value = LAYERS[key][:2]
    write_config(f"{key} = {toml(file_value)}\n")
    write_dotenv(f"CHATCLI_{key.upper()}={dotenv_value}\n")

    assert getattr(load(), key) == dotenv_value


@pytest.mark.parametrize("key", KEYS)
def test_environment_overrides_dotenv(key: str) -> None:
    file_value, dotenv_value, env_value = LAYERS[key][:3]
    write_config(f"{key} = {toml(file_value)}\n")
    write_dotenv(f"CHATCLI_{key.upper()}={dotenv_value}\n")

    assert getattr(load(**{f"CHATCLI_{key.upper()}": str(env_value)}), key) == env_value


@pytest.mark.parametrize("key", KEYS)
def test_flags_override_environment(key: str) -> None:
    file_value, dotenv_value, env_value, flag_value = LAYERS[key]
    write_config(f"{key} = {toml(file_value)}\n")
    write_dotenv(f"CHATCLI_{key.upper()}={dotenv_value}\n")
    env = {f"CHATCLI_{key.upper()}": str(env_value)}

    assert getattr(load(flags={key: flag_value}, **env), key) == flag_value
    # A flag that was not given (None) leaves the lower layers alone.
    assert getattr(load(flags={key: None}, **env), key) == env_value


def test_environment_api_key_overrides_config_file() -> None:
    write_config('api_key = "sk-from-file-123456"\n')

    assert load().api_key == "sk-from-file-123456"
    assert load(OPENAI_API_KEY=TEST_KEY).api_key == TEST_KEY


def test_environment_base_url_overrides_config_file() -> None:
    write_config('base_url = "http://file.example/v1"\n')

    assert load().base_url == "http://file.example/v1"
    assert load(OPENAI_BASE_URL="http://env.example/v1").base_url == "http://env.example/v1"


def test_base_url_flag_overrides_environment() -> None:
    config = load(flags={"base_url": "http://flag.example/v1"}, OPENAI_BASE_URL="http://env.example/v1")
    assert config.base_url == "http://flag.example/v1"


# --------------------------------------------------------------------------- #
# .env
# --------------------------------------------------------------------------- #


def test_dotenv_in_the_working_directory_is_read(key_files: set[Path]) -> None:
    key_files.add(Path.cwd() / ".env")
    write_dotenv(
        "# my project's settings\n"
        f"OPENAI_API_KEY={TEST_KEY}\n"
        'OPENAI_BASE_URL="http://localhost:11434/v1"\n'
        "export CHATCLI_MODEL=llama3.2\n"
    )
    config = load()

    assert config.api_key == TEST_KEY
    assert config.base_url == "http://localhost:11434/v1"
    assert config.model == "llama3.2"


def test_dotenv_never_overrides_the_environment() -> None:
    write_dotenv("OPENAI_API_KEY=sk-from-dotenv-999999\nCHATCLI_MODEL=dotenv-model\nOPENAI_BASE_URL=http://dotenv/v1\n")
    config = load(OPENAI_API_KEY=TEST_KEY, CHATCLI_MODEL="env-model", OPENAI_BASE_URL="http://env/v1")

    assert config.api_key == TEST_KEY
    assert config.model == "env-model"
    assert config.base_url == "http://env/v1"


def test_dotenv_elsewhere_is_not_read(tmp_path: Path) -> None:
    # Only ./.env counts: not one in the home directory or a parent.
    (Path(os.environ["HOME"]) / ".env").write_text("CHATCLI_MODEL=home-model\n")
    (tmp_path / ".env").write_text("CHATCLI_MODEL=parent-model\n")
    assert Path.cwd().parent == tmp_path

    assert load().model == "gpt-4o-mini"


# --------------------------------------------------------------------------- #
# environment variables
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["OPENAI_BASE_URL", "OPENAI_API_BASE", "CHATCLI_BASE_URL"])
def test_base_url_variables(name: str) -> None:
    # A trailing slash is dropped, so paths join the same way either way.
    assert load(**{name: "http://localhost:8000/v1/"}).base_url == "http://localhost:8000/v1"


def test_base_url_variable_precedence() -> None:
    urls = {"OPENAI_API_BASE": "http://old/v1", "OPENAI_BASE_URL": "http://openai/v1"}
    assert load(**urls).base_url == "http://openai/v1"
    assert load(**urls, CHATCLI_BASE_URL="http://chatcli/v1").base_url == "http://chatcli/v1"


def test_openai_api_key() -> None:
    assert load(OPENAI_API_KEY=TEST_KEY).api_key == TEST_KEY


def test_chatcli_api_key_beats_openai_api_key() -> None:
    assert load(OPENAI_API_KEY="sk-openai-000000", CHATCLI_API_KEY=TEST_KEY).api_key == TEST_KEY


def test_empty_openai_api_key_counts_as_unset() -> None:
    assert load(OPENAI_API_KEY="").api_key is None


@pytest.mark.parametrize(
    "name, text, key, expected",
    [
        ("CHATCLI_TEMPERATURE", "0.3", "temperature", 0.3),
        ("CHATCLI_TEMPERATURE", "1", "temperature", 1.0),
        ("CHATCLI_MAX_TOKENS", " 512 ", "max_tokens", 512),
        ("CHATCLI_MAX_RETRIES", "0", "max_retries", 0),
        ("CHATCLI_READ_TIMEOUT", "2.5", "read_timeout", 2.5),
        ("CHATCLI_RENDER", "plain", "render", "plain"),
        ("CHATCLI_STATS", "YES", "stats", True),
        ("CHATCLI_MODEL", "gpt-4o", "model", "gpt-4o"),
        ("CHATCLI_SYSTEM", "Be terse.", "system", "Be terse."),
        ("CHATCLI_MAX_TOKENS", "", "max_tokens", None),
    ],
)
def test_chatcli_variables_are_parsed(name: str, text: str, key: str, expected: Any) -> None:
    value = getattr(load(**{name: text}), key)
    assert value == expected
    assert type(value) is type(expected)


# --------------------------------------------------------------------------- #
# which config file
# --------------------------------------------------------------------------- #


def test_xdg_config_file_is_used_by_default() -> None:
    path = write_config('model = "from-xdg"\n')
    config = load()

    assert config.model == "from-xdg"
    assert config.config_path == path


@pytest.mark.parametrize("xdg", [None, "relative/dir"], ids=["unset", "relative-is-ignored"])
def test_without_a_usable_xdg_config_home_the_file_is_under_home(xdg: str | None) -> None:
    path = write_config('model = "from-home"\n', Path(os.environ["HOME"]) / ".config" / "chatcli" / "config.toml")
    environ = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    if xdg is not None:
        environ["XDG_CONFIG_HOME"] = xdg
    config = load_config(make_env(environ=environ))

    assert config.model == "from-home"
    assert config.config_path == path


def test_config_flag_chooses_another_file(tmp_path: Path) -> None:
    write_config('model = "from-xdg"\n')
    other = write_config('model = "from-flag-file"\n', tmp_path / "other.toml")
    config = load(config_path=str(other))

    assert config.model == "from-flag-file"
    assert config.config_path == other


def test_config_flag_expands_the_home_directory() -> None:
    other = write_config('model = "from-home-file"\n', Path(os.environ["HOME"]) / "mine.toml")
    config = load(config_path="~/mine.toml")

    assert config.model == "from-home-file"
    assert config.config_path == other


def test_chatcli_config_chooses_another_file(tmp_path: Path) -> None:
    write_config('model = "from-xdg"\n')
    other = write_config('model = "from-variable-file"\n', tmp_path / "other.toml")
    config = load(CHATCLI_CONFIG=str(other))

    assert config.model == "from-variable-file"
    assert config.config_path == other


def test_config_flag_beats_chatcli_config(tmp_path: Path) -> None:
    by_flag = write_config('model = "by-flag"\n', tmp_path / "flag.toml")
    by_variable = write_config('model = "by-variable"\n', tmp_path / "variable.toml")

    assert load(config_path=str(by_flag), CHATCLI_CONFIG=str(by_variable)).model == "by-flag"


def test_missing_config_flag_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = load_error(config_path=str(missing))

    assert str(missing) in message
    assert "--config" in message


def test_missing_chatcli_config_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = load_error(CHATCLI_CONFIG=str(missing))

    assert str(missing) in message
    assert "CHATCLI_CONFIG" in message


def test_missing_default_config_file_is_fine() -> None:
    assert not default_path().exists()
    assert load().model == "gpt-4o-mini"


# --------------------------------------------------------------------------- #
# errors name the file, the key and what is allowed
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "text, words",
    [
        ("temprature = 0.5\n", ["'temprature'", "did you mean 'temperature'"]),
        ("max_token = 10\n", ["'max_token'", "did you mean 'max_tokens'"]),
        ("colour_scheme = 'dark'\n", ["'colour_scheme'", "known keys", "temperature", "max_tokens"]),
        ('temperature = "hot"\n', ["'temperature'", "a number from 0 to 2", "hot"]),
        ("temperature = 3\n", ["'temperature'", "a number from 0 to 2", "3"]),
        ("temperature = -0.1\n", ["'temperature'", "a number from 0 to 2", "-0.1"]),
        ("max_tokens = 0\n", ["'max_tokens'", "a whole number of at least 1", "0"]),
        ("max_tokens = 1.5\n", ["'max_tokens'", "a whole number", "1.5"]),
        ("max_tokens = true\n", ["'max_tokens'", "a whole number"]),
        ("max_retries = 11\n", ["'max_retries'", "from 0 to 10", "11"]),
        ('render = "fancy"\n', ["'render'", '"markdown" or "plain"']),
        ('markdown = false\n', ["'markdown' is now render"]),
        ('model = ""\n', ["'model'", "a non-empty string"]),
        ("model = 4\n", ["'model'", "a non-empty string"]),
    ],
    ids=[
        "unknown-near", "unknown-near-2", "unknown-far", "wrong-type", "above-range", "below-range",
        "max-tokens-0", "int-given-float", "int-given-bool", "max-retries-11", "not-a-choice", "renamed-key",
        "empty-model", "model-number",
    ],
)
def test_bad_config_file_errors(text: str, words: list[str]) -> None:
    path = write_config(text)
    message = load_error()

    assert str(path) in message
    for word in words:
        assert word in message.lower(), message


def test_invalid_toml_names_the_file_line_and_column() -> None:
    path = write_config('model = "gpt-4o"\ntemperature = = 0.5\n')
    message = load_error()

    assert str(path) in message
    assert "TOML" in message
    assert "line 2, column 15" in message


def test_an_unreadable_dotenv_is_a_config_error_naming_it() -> None:
    path = Path.cwd() / ".env"
    path.mkdir()  # a directory where the file should be: unreadable, even for root
    message = load_error()
    assert message.startswith(f"{path} could not be read (") and message.endswith(").")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file, whatever its mode")
def test_a_dotenv_without_read_permission_is_a_config_error() -> None:
    path = Path.cwd() / ".env"
    path.write_text("CHATCLI_MODEL=x\n")
    path.chmod(0)
    assert load_error() == f"{path} could not be read (Permission denied)."


def test_a_bad_value_in_a_file_from_config_flag_names_that_file(tmp_path: Path) -> None:
    write_config('model = "fine"\n')
    other = write_config("temperature = 9\n", tmp_path / "other.toml")
    message = load_error(config_path=str(other))

    assert str(other) in message and "'temperature'" in message


@pytest.mark.parametrize(
    "name, text, allowed",
    [
        ("CHATCLI_TEMPERATURE", "hot", "a number from 0 to 2"),
        ("CHATCLI_TEMPERATURE", "2.5", "a number from 0 to 2"),
        ("CHATCLI_MAX_TOKENS", "lots", "a whole number of at least 1"),
        ("CHATCLI_MAX_RETRIES", "1.0", "a whole number from 0 to 10"),
        ("CHATCLI_STATS", "maybe", "true or false"),
        ("CHATCLI_RENDER", "rich", "\"markdown\" or \"plain\""),
        ("CHATCLI_READ_TIMEOUT", "0", "a number from 0.1 to 3600"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, text: str, allowed: str) -> None:
    message = load_error(**{name: text})

    assert name in message
    assert allowed in message
    assert repr(text) in message


def test_bad_value_in_dotenv_names_the_variable() -> None:
    write_dotenv("CHATCLI_TEMPERATURE=hot\n")
    message = load_error()

    assert "CHATCLI_TEMPERATURE" in message and "a number from 0 to 2" in message


@pytest.mark.parametrize("where", ["file", "environment"])
def test_nan_is_out_of_range(where: str) -> None:
    if where == "file":
        write_config("temperature = nan\n")
        message = load_error()
    else:
        message = load_error(CHATCLI_TEMPERATURE="nan")
    assert "a number from 0 to 2" in message


def test_base_url_must_be_http() -> None:
    message = load_error(OPENAI_BASE_URL="localhost:11434/v1")
    assert "localhost:11434/v1" in message and "http://" in message


# --------------------------------------------------------------------------- #
# api_key_cmd
# --------------------------------------------------------------------------- #


@pytest.mark.server
def test_api_key_cmd_gives_the_key() -> None:
    write_config(f"api_key_cmd = {toml(key_command('print(' + repr('sk-from-cmd') + ')'))}\n")

    assert load().api_key == "sk-from-cmd"


@pytest.mark.server
def test_api_key_cmd_from_the_environment() -> None:
    assert load(CHATCLI_API_KEY_CMD=key_command("print('  sk-padded-cmd  ')")).api_key == "sk-padded-cmd"


@pytest.mark.server
@pytest.mark.parametrize(
    "code, reason",
    [
        ("import sys; print('sk-leaked-from-stdout'); print('sk-leaked-from-stderr', file=sys.stderr); sys.exit(1)",
         "status 1"),
        ("import sys; print('sk-leaked-from-stderr', file=sys.stderr)", "status 0"),
    ],
    ids=["non-zero-exit", "prints-nothing"],
)
def test_failing_api_key_cmd_is_an_error_that_hides_its_output(code: str, reason: str) -> None:
    write_config(f"api_key_cmd = {toml(key_command(code))}\n")
    message = load_error()

    assert "api_key_cmd" in message
    assert reason in message
    assert "leaked" not in message and "sk-" not in message


@pytest.mark.server
@pytest.mark.parametrize(
    "command", ["/nonexistent/pass show openai", "pass show 'unterminated"], ids=["not-found", "bad-quoting"]
)
def test_api_key_cmd_that_cannot_run_is_an_error(command: str) -> None:
    write_config(f"api_key_cmd = {toml(command)}\n")
    message = load_error()

    assert "api_key_cmd" in message and "could not be run" in message


@pytest.mark.server
def test_api_key_cmd_is_not_run_when_a_key_is_set(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x'); print('sk-from-cmd')"
    write_config(f"api_key_cmd = {toml(key_command(code))}\n")

    assert load(OPENAI_API_KEY=TEST_KEY).api_key == TEST_KEY
    assert not marker.exists()
    # The same command does run, and leaves its marker, when no key is set.
    assert load().api_key == "sk-from-cmd"
    assert marker.exists()


def test_api_key_cmd_is_not_run_when_the_file_has_a_key(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x'); print('sk-from-cmd')"
    write_config(f'api_key = "sk-in-file-123456"\napi_key_cmd = {toml(key_command(code))}\n')

    assert load().api_key == "sk-in-file-123456"
    assert not marker.exists()


# --------------------------------------------------------------------------- #
# the key stays secret; require_api_key
# --------------------------------------------------------------------------- #


def test_repr_hides_the_key() -> None:
    config = load(OPENAI_API_KEY=TEST_KEY)

    assert config.api_key == TEST_KEY
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        assert TEST_KEY not in text
        assert TEST_KEY[-10:] not in text
    assert "gpt-4o-mini" in repr(config)  # still useful for debugging


def test_require_api_key_fails_for_openai_without_a_key() -> None:
    config = load()
    assert config.base_url == DEFAULT_BASE_URL

    with pytest.raises(ConfigError) as info:
        require_api_key(config)
    message = str(info.value)
    assert info.value.exit_code == EXIT_CONFIG
    assert "OPENAI_API_KEY" in message and ".env" in message
    assert "api_key_cmd" in message and str(default_path()) in message


def test_require_api_key_passes_for_openai_with_a_key() -> None:
    require_api_key(load(OPENAI_API_KEY=TEST_KEY))


@pytest.mark.parametrize("url", ["http://localhost:11434/v1", "http://127.0.0.1:8000/v1"])
def test_require_api_key_passes_for_a_local_server_without_a_key(url: str) -> None:
    config = load(OPENAI_BASE_URL=url)
    assert config.api_key is None

    require_api_key(config)


# --------------------------------------------------------------------------- #
# config.example.toml
# --------------------------------------------------------------------------- #

EXAMPLE = REPO / "config.example.toml"
COMMENTED = re.compile(r"^# (\w+) = (.+?)\s+\(default: unset\)$", re.M)


def test_example_config_sets_every_key_to_its_default() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    profiles = data.pop("profiles")

    assert data == {s.key: s.default for s in SETTINGS if s.default is not None}
    assert set(profiles) == {"openai", "azure", "openrouter", "ollama", "vllm", "lmstudio"}
    for key, value in data.items():
        assert type(value) is SETTINGS_BY_KEY[key].kind, key


def test_example_config_comments_out_the_unset_keys() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    commented = dict(COMMENTED.findall(text))

    assert set(commented) == {s.key for s in SETTINGS if s.default is None}
    for key, value in commented.items():
        # Uncommenting the example line gives a valid setting.
        example = tomllib.loads(f"{key} = {value}")[key]
        SETTINGS_BY_KEY[key].check(example, key)


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert setting.help in text, setting.key
        assert setting.env_var in text, setting.key
        assert setting.allowed() in text, setting.key


def test_example_config_is_what_example_toml_generates() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == example_toml() + "\n"


def test_example_config_copied_into_place_loads_as_the_defaults() -> None:
    write_config(EXAMPLE.read_text(encoding="utf-8"))
    config = load()

    for setting in SETTINGS:
        assert getattr(config, setting.key) == setting.default, setting.key


# --------------------------------------------------------------------------- #
# what a .env may not do, and files and keys that are not what they should be
# --------------------------------------------------------------------------- #


def test_dotenv_cannot_run_a_command_or_point_at_another_config(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "key.py"
    script.write_text(f"open({str(marker)!r}, 'w'); print('sk-from-dotenv-cmd')\n")
    other = write_config('model = "from-dotenv-config"\n', tmp_path / "other.toml")
    write_dotenv(f'CHATCLI_API_KEY_CMD="{sys.executable} {script}"\nCHATCLI_CONFIG={other}\nCHATCLI_MODEL=dotenv-model\n')
    config = load()
    assert not marker.exists()
    assert config.api_key is None
    assert config.model == "dotenv-model"  # ordinary keys still apply


def test_a_config_file_that_is_not_utf8_is_a_config_error() -> None:
    path = default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes('system = "caf\xe9"\n'.encode("latin-1"))
    assert "UTF-8" in load_error() and str(path) in load_error()


def test_a_dotenv_that_is_not_utf8_or_not_key_value_is_a_config_error() -> None:
    path = Path.cwd() / ".env"
    path.write_bytes("CHATCLI_SYSTEM=caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in load_error()
    write_dotenv("CHATCLI_MODEL=ok\nthis line is not an assignment\n")
    message = load_error()
    assert ".env line 2" in message and "KEY=value" in message


def test_whitespace_around_a_key_is_stripped() -> None:
    assert load(OPENAI_API_KEY=f"  {TEST_KEY}\n").api_key == TEST_KEY


def test_a_key_http_cannot_carry_is_a_config_error_that_does_not_show_it() -> None:
    message = load_error(OPENAI_API_KEY="sk-abc\u00e9def")
    assert "API key" in message and "sk-abc" not in message


def test_a_wrongly_typed_key_in_the_config_is_reported_without_its_value() -> None:
    write_config('api_key = ["sk-proj-verysecret123"]\n')
    message = load_error()
    assert "'api_key'" in message and "verysecret" not in message


@pytest.mark.parametrize("url", ["http://[::1", "http://", "http://host:notaport/v1", "localhost:11434/v1"])
def test_a_base_url_that_is_not_a_full_url_is_a_config_error(url: str) -> None:
    assert "base URL" in load_error(OPENAI_BASE_URL=url)


def test_a_key_in_a_file_others_can_read_gets_a_warning(tmp_path: Path) -> None:
    config = write_config('api_key = "sk-from-file-123456"\n')
    config.chmod(0o644)
    (Path.cwd() / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv-999999\n")
    (Path.cwd() / ".env").chmod(0o640)
    warnings = load().warnings
    assert len(warnings) == 2 and all("other users can read it" in w and "chmod 600" in w for w in warnings)
    assert "sk-from" not in " ".join(warnings)  # the warning names the file, never the key

    config.chmod(0o600)
    (Path.cwd() / ".env").chmod(0o600)
    assert load().warnings == ()
    config.write_text('model = "gpt-4o"\n')  # no key in it: its mode is nobody's business
    config.chmod(0o644)
    (Path.cwd() / ".env").write_text("CHATCLI_MODEL=x\n")
    (Path.cwd() / ".env").chmod(0o644)
    assert load().warnings == ()


def test_the_warning_is_said_once_on_stderr_and_the_ask_goes_on(srv, run_chatcli) -> None:
    config = write_config('api_key = "sk-from-file-123456"\n')
    config.chmod(0o644)
    result = run_chatcli("hello", env={"OPENAI_API_KEY": ""})
    assert result.returncode == 0 and result.stdout == "echo: hello\n"
    assert result.stderr == f"chatcli: warning: {config} holds an API key and other users can read it; run chmod 600 {config}, or use api_key_cmd.\n"
