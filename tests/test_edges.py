"""Bad input at the edge: one sentence and an exit code, never the internal-error path.

Bytes that are not UTF-8 arrive from argv and the environment as lone surrogates (Python's
surrogateescape); ids past what SQLite holds, or digits int() refuses ('²'); proxy and
base-URL variables httpx2 cannot use. Each is said in one sentence that names where it came
from, and nothing reaches the server, the database or crash.log.
"""

from __future__ import annotations

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
