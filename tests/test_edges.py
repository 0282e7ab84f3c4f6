"""Bad input at the edge: one sentence and an exit code, never the internal-error path.

Bytes that are not UTF-8 arrive from argv and the environment as lone surrogates (Python's
surrogateescape); ids past what SQLite holds, or digits int() refuses ('²'); proxy and
base-URL variables httpx2 cannot use. Each is said in one sentence that names where it came
from, and nothing reaches the server, the database or crash.log.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from tests.support.keys import TEST_KEY
from tests.support.profiles import write_config
from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d
from tests.support.repl import piped_chat
from tests.support.running import error_line
from tests.support.sessions import make_session

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


@pytest.mark.parametrize("action", ["path", "show"])
def test_config_prints_a_path_that_is_not_utf8_without_crashing(srv, run_chatcli, isolated_env, action, tmp_path):
    """A real stdout takes only UTF-8 (found by tests/test_fuzz_main.py): such bytes are shown as U+FFFD."""
    config = tmp_path / f"config{NOT_UTF8}.toml"
    config.write_text('model = "gpt-4o"\n')
    result = run_chatcli("config", action, "--config", str(config), env={"CHATCLI_DB": f"chat{NOT_UTF8}.db"}, process=True)
    assert result.returncode == 0, result.stderr
    assert ("configa\ufffdb.toml" if action == "path" else 'db = "chata\ufffdb.db"') in result.stdout
    no_crash(result, isolated_env)


def test_a_nul_in_the_configs_db_is_a_config_error(srv, run_chatcli, isolated_env):

    write_config('db = "chat\\u0000.db"\n')  # TOML can write a NUL; no file name holds one
    for args in (["hello"], ["sessions", "list"]):
        line = error_line(run_chatcli(*args), 3)
        assert "db names a file with a NUL character" in line, line
    assert not (isolated_env / "state" / "chatcli" / "crash.log").exists()


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


# --------------------------------------------------------------------------- #
# The REPL: bytes that are not UTF-8, and a paste past the window
# --------------------------------------------------------------------------- #


@pytest.fixture
def repl(srv, tmp_path: Path):
    """A Repl as cli.py builds it, reading from a pipe (prompt-toolkit's own parser, fed 1,024 bytes a read)."""
    from contextlib import ExitStack

    from chatcli.config.settings import Config

    with ExitStack() as stack:
        config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
        session = make_session(config=config, model="gpt-4o-mini")
        yield piped_chat(stack, session, markdown=False, history=tmp_path / "history")


def test_a_line_that_is_not_utf8_is_refused_at_the_prompt_and_the_repl_goes_on(srv, repl, tmp_path):
    repl.pipe.send_bytes(b"a\xffb\r\x03hello\r\x04")
    assert repl.repl.run() == 0
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["hello"]
    history = (tmp_path / "history").read_text(encoding="utf-8", errors="replace")
    assert "+hello" in history and "+a" not in history


def test_a_paste_past_the_window_is_refused_as_it_arrives_and_never_kept(srv, repl, tmp_path):
    import threading
    import time

    paste = "word " * 600_000  # 3 MB; gpt-4o-mini's 128k-token window holds nowhere near that
    keys = b"\x1b[200~" + paste.encode() + b"\x1b[201~" + b"hi\r\x04"
    typist = threading.Thread(target=repl.pipe.send_bytes, args=(keys,), daemon=True)  # a pipe holds 64 KB
    started = time.monotonic()
    typist.start()
    assert repl.repl.run() == 0
    took = time.monotonic() - started
    typist.join(timeout=5)
    out = " ".join(repl.out.getvalue().split())  # as one line, wherever the console wrapped it
    assert "That paste is 3,000,000 characters, far more than the model's 128,000-token window holds" in out
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["hi"]  # the paste never reached the prompt
    history = (tmp_path / "history").read_text()
    assert "+hi" in history and "word" not in history
    print(f"a 3 MB paste refused in {took:.2f}s")
    assert took < 10, f"a 3 MB paste took {took:.1f}s to refuse"


def test_a_paste_under_the_limit_arrives_whole_however_the_reads_split_it():
    """The end mark split across two reads, \\r\\n line endings, and keys typed after it."""
    from prompt_toolkit.keys import Keys

    from chatcli.ui.paste import PasteParser

    keys = []
    parser = PasteParser(keys.append, lambda: (1000, "the window"))
    stream = "x\x1b[200~line one\r\nline two\x1b[201~y"
    for at in range(0, len(stream), 3):
        parser.feed(stream[at:at + 3])
    parser.flush()
    assert [(k.key, k.data) for k in keys] == [("x", "x"), (Keys.BracketedPaste, "line one\r\nline two"), ("y", "y")]


def test_reading_a_paste_is_linear_in_its_size():
    """prompt-toolkit's parser scans the whole paste at each 1,024-byte read: 8 MB was about 32 GB of scanning."""
    import time

    from chatcli.ui.paste import PasteParser

    keys = []
    parser = PasteParser(keys.append, lambda: (10**8, "the window"))
    chunk = "word " * 205  # 1,025 characters, as a terminal's reads come
    started = time.monotonic()
    parser.feed("\x1b[200~")
    for _ in range(8 * 1024):
        parser.feed(chunk)
    parser.feed("\x1b[201~")
    took = time.monotonic() - started
    assert len(keys) == 1 and len(keys[0].data) == 8 * 1024 * len(chunk)
    assert took < 3, f"8 MB took {took:.1f}s to read"


def test_bytes_that_are_not_utf8_typed_in_a_terminal_get_a_sentence_and_the_session_goes_on(srv, spawn_chatcli, isolated_env):

    child = spawn_chatcli()
    expect_prompt(child)
    os.write(child.child_fd, b"caf\xe9?\r")  # Latin-1, from a terminal that is not set to UTF-8
    child.expect_exact("bytes that are not UTF-8 text", timeout=TIMEOUT)
    child.sendcontrol("c")
    child.send("hello\r")
    child.expect_exact("echo: hello", timeout=TIMEOUT)
    expect_prompt(child)
    quit_with_ctrl_d(child)
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["hello"]
    assert not (isolated_env / "state" / "chatcli" / "crash.log").exists()
