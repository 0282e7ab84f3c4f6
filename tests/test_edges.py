"""Bad input at the edge: one sentence and an exit code, never the internal-error path.

Bytes that are not UTF-8 arrive from argv and the environment as lone surrogates (Python's
surrogateescape); ids past what SQLite holds, or digits int() refuses ('²'); proxy and
base-URL variables httpx2 cannot use. Each is said in one sentence that names where it came
from, and nothing reaches the server, the database or crash.log.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.test_oneshot import error_line

NOT_UTF8 = "a\udcffb"  # b"a\xffb" as Python decodes it from argv or the environment


def no_crash(result, home: Path) -> None:
    assert "internal error" not in result.stderr
    assert not (home / "state" / "chatcli" / "crash.log").exists()


@pytest.mark.parametrize(
    "args, env, named",
    [
        (["q" + NOT_UTF8], {}, "The question"),
        (["-s", NOT_UTF8, "q"], {}, "-s/--system"),
        (["-m", NOT_UTF8, "q"], {}, "-m/--model"),
        (["-o", "stop", NOT_UTF8, "q"], {}, "-o stop"),
        (["-f", NOT_UTF8, "q"], {}, "The file name given to -f/--file"),
        (["q"], {"CHATCLI_SYSTEM": NOT_UTF8}, "CHATCLI_SYSTEM"),
        (["q"], {"CHATCLI_MODEL": NOT_UTF8}, "CHATCLI_MODEL"),
        (["sessions", "search", NOT_UTF8], {}, "The search text"),
        (["sessions", "rename", "1", NOT_UTF8], {}, "The title"),
    ],
    ids=["question", "-s", "-m", "-o stop", "-f", "CHATCLI_SYSTEM", "CHATCLI_MODEL", "search", "rename"],
)
def test_bytes_that_are_not_utf8_are_one_sentence_naming_where_and_exit_2(srv, run_chatcli, isolated_env, args, env, named):
    if "-f" in args:
        Path(NOT_UTF8).write_text("a file whose name is not UTF-8\n")  # it exists: only its name is wrong
    result = run_chatcli(*args, env=env)
    line = error_line(result, 2)
    assert named in line and "not UTF-8" in line, line
    no_crash(result, isolated_env)
    assert srv.chat_requests == []


def test_a_path_that_is_not_utf8_is_still_a_path(srv, run_chatcli, isolated_env, tmp_path):
    """File names are bytes to the file system: --db and the XDG directories take any."""
    result = run_chatcli("--db", str(tmp_path / f"{NOT_UTF8}.db"), "hello",
                         env={"XDG_STATE_HOME": str(tmp_path / NOT_UTF8)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"
    assert (tmp_path / f"{NOT_UTF8}.db").exists()


BAD_IDS = ["²", str(2**63), "9" * 20, "0"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    "command",
    [["--resume", "{}", "q"], ["sessions", "show", "{}"], ["sessions", "delete", "{}"], ["sessions", "export", "{}"],
     ["sessions", "rename", "{}", "title"]],
    ids=["--resume", "show", "delete", "export", "rename"],
)
def test_an_id_no_session_can_have_is_one_sentence_and_exit_2(srv, run_chatcli, isolated_env, command, bad):
    result = run_chatcli(*[word.format(bad) for word in command])
    line = error_line(result, 2)
    assert "session id" in line, line
    no_crash(result, isolated_env)


def test_the_largest_id_sqlite_holds_is_an_id(srv, run_chatcli, isolated_env):
    result = run_chatcli("sessions", "show", str(2**63 - 1))
    assert f"There is no saved session {2**63 - 1}" in error_line(result, 1)


def test_a_list_limit_past_any_integer_is_one_sentence(srv, run_chatcli, isolated_env):
    result = run_chatcli("sessions", "list", "-n", "9" * 20)
    assert "-n/--limit" in error_line(result, 2)
    no_crash(result, isolated_env)
    assert run_chatcli("sessions", "list", "-n", "3").returncode == 0


# --------------------------------------------------------------------------- #
# Proxy and base-URL variables
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"])
def test_a_proxy_variable_httpx_cannot_parse_is_named(srv, run_chatcli, isolated_env, monkeypatch, name):
    """Each is read by httpx2 from the process environment, and each breaks even an http:// server."""
    monkeypatch.setenv(name, "::nope::")
    result = run_chatcli("hello")  # the test server is http://127.0.0.1
    line = error_line(result, 3)
    assert f"The proxy in {name} ('::nope::')" in line, line
    no_crash(result, isolated_env)
    assert srv.chat_requests == []


@pytest.mark.parametrize("value, why", [("ftp://proxy:21", "scheme"), ("http://1.2.3.999:8080", "host")])
def test_a_proxy_of_another_scheme_or_a_bad_address_is_named(srv, run_chatcli, isolated_env, monkeypatch, value, why):
    monkeypatch.setenv("HTTPS_PROXY", value)
    line = error_line(run_chatcli("models"), 3)
    assert "HTTPS_PROXY" in line and why in line, line


def test_the_lower_case_proxy_variable_is_the_one_used_as_httpx_reads_them(srv, run_chatcli, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "::nope::")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a good proxy, not needed for the test server
    result = run_chatcli("hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"


def test_a_socks_proxy_without_socksio_says_how_to_install_it(srv, run_chatcli, isolated_env, monkeypatch):
    try:
        import socksio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("socksio is installed here: a SOCKS proxy is usable")
    monkeypatch.setenv("ALL_PROXY", "socks5://user:secret@127.0.0.1:1080")
    result = run_chatcli("hello")
    line = error_line(result, 3)
    assert "ALL_PROXY" in line and "pip install 'chatcli[socks]'" in line, line
    assert "secret" not in result.stderr
    no_crash(result, isolated_env)
    # The extra it names exists, and brings socksio (through httpx2's own socks extra).
    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.replace(" ", "").startswith("httpx2[socks]") for req in extras["socks"])


@pytest.mark.parametrize("name", ["OPENAI_BASE_URL", "CHATCLI_BASE_URL", "OPENAI_API_BASE"])
def test_an_escape_in_the_base_url_is_named_and_never_printed_raw(srv, run_chatcli, isolated_env, name):
    result = run_chatcli("hello", env={"OPENAI_BASE_URL": "", name: srv.base_url + "\x1b[2J"})
    line = error_line(result, 3)  # error_line also checks that the line holds no control character
    assert f"({name} in the environment)" in line and "control character" in line, line
    no_crash(result, isolated_env)
    assert srv.chat_requests == []
