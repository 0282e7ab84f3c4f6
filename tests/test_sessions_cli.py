"""Saved sessions through the installed `chatcli`: autosave, resume, the
`chatcli sessions` commands, incognito, other databases and bad states.

Every run is a real subprocess (run_chatcli) against tests/support/server.py; the
database is read back with plain sqlite3, as any other program would.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.keys import TEST_KEY
from tests.support.running import ok
from tests.support.server import Error, Reply, compute_usage
from tests.support.sessions import default_db, seed

pytestmark = pytest.mark.timeout(60)

DAY = 86400


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


def one_line_error(result, code: int | None = None) -> str:
    """A failure says one line on stderr and nothing on stdout."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    if code is not None:
        assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def sql(path: Path, statement: str, *args):
    db = sqlite3.connect(path)
    try:
        with db:
            return db.execute(statement, args).fetchall()
    finally:
        db.close()


def list_rows(run, *extra: str) -> list[list[str]]:
    """`chatcli sessions list` in a pipe: a header, then one tab-separated line per session."""
    out = ok(run("sessions", *extra, "list")).stdout
    lines = out.splitlines()
    assert lines[0].split("\t") == ["id", "title", "model", "turns", "tokens", "updated"], out
    return [line.split("\t") for line in lines[1:]]


def export_json(run, session_id: int, *extra: str) -> dict:
    return json.loads(ok(run("sessions", *extra, "export", str(session_id), "--format", "json")).stdout)


def sent(srv, n: int = -1) -> dict:
    """The body of a chat request the server received."""
    return srv.chat_requests[n].body


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --------------------------------------------------------------------------- #
# Autosave and the list
# --------------------------------------------------------------------------- #


def test_every_one_shot_ask_is_saved_and_listed_with_a_short_title(srv, run_chatcli):
    first_line = "Please explain in detail how PostgreSQL connection pooling works with pgbouncer in production"
    question = f"{first_line}\nand also the second line, which is not part of the title\n\nthird"
    srv.script(Reply("Pooling reuses connections."), Reply("Puffins dive."))
    assert ok(run_chatcli(question)).stdout == "Pooling reuses connections.\n"
    tokens = compute_usage(sent(srv), "Pooling reuses connections.")["total_tokens"]

    [row] = list_rows(run_chatcli)
    session_id, title, model, turns, listed_tokens, updated = row
    assert session_id == "1"
    assert 0 < len(title) <= 60
    assert title != first_line and first_line.startswith(title.rstrip("…").rstrip())
    assert len(title.rstrip("…")) >= 40  # cut short, not cut to nothing
    assert "second" not in title
    assert (model, turns, listed_tokens, updated) == ("gpt-4o-mini", "1", str(tokens), "just now")
    assert export_json(run_chatcli, 1)["title"] == title

    ok(run_chatcli("--model", "gpt-4o", "Tell me about puffins"))
    rows = list_rows(run_chatcli)
    assert [r[:4] for r in rows] == [["2", "Tell me about puffins", "gpt-4o", "1"], ["1", title, "gpt-4o-mini", "1"]]


def test_in_a_pipe_sessions_list_gives_each_session_one_line(run_chatcli, home):
    seed(home, ("Please explain in detail how PostgreSQL connection pooling wo…", [("q", "a")]), ("short one", [("q", "a")]))
    out = ok(run_chatcli("sessions", "list", env={"COLUMNS": "", "LINES": ""})).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 3, out  # the header and one line per session
    assert all(re.match(r"\s*\d+\s", line) for line in lines[1:]), out


def test_no_saved_sessions_yet_is_said_plainly(run_chatcli):
    assert ok(run_chatcli("sessions", "list")).stdout == "No saved sessions yet.\n"


# --------------------------------------------------------------------------- #
# Resume
# --------------------------------------------------------------------------- #


def test_continue_sends_the_earlier_turns_of_the_last_session(srv, run_chatcli):
    srv.script(Reply("first answer"), Reply("second answer"))
    ok(run_chatcli("first question"))
    assert ok(run_chatcli("-c", "follow-up")).stdout == "second answer\n"
    assert sent(srv)["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "follow-up"},
    ]
    [row] = list_rows(run_chatcli)
    assert row[0] == "1" and row[3] == "2"  # one session, two turns


def test_resume_id_continues_the_named_session_and_it_becomes_the_last(srv, run_chatcli):
    ok(run_chatcli("alpha question"))  # echo: alpha question
    ok(run_chatcli("beta question"))
    ok(run_chatcli("-r", "1", "alpha more"))
    assert sent(srv)["messages"] == [
        {"role": "user", "content": "alpha question"},
        {"role": "assistant", "content": "echo: alpha question"},
        {"role": "user", "content": "alpha more"},
    ]
    ok(run_chatcli("-c", "still alpha"))  # session 1 is now the most recently updated
    assert [m["content"] for m in sent(srv)["messages"] if m["role"] == "user"] == [
        "alpha question", "alpha more", "still alpha"
    ]
    assert {r[0]: r[3] for r in list_rows(run_chatcli)} == {"1": "3", "2": "1"}


def test_resume_of_an_unknown_session_is_a_one_line_error_and_sends_nothing(srv, run_chatcli, home):
    seed(home, ("something", [("something", "echo: something")]))
    line = one_line_error(run_chatcli("--resume", "999", "hello"))
    assert "999" in line
    assert srv.chat_requests == []
    assert [r[0] for r in list_rows(run_chatcli)] == ["1"]
    line = one_line_error(run_chatcli("--resume", "abc", "hello"), code=2)
    assert "abc" in line


def test_continue_with_no_saved_session_is_a_one_line_error(srv, run_chatcli):
    line = one_line_error(run_chatcli("-c", "hello"))
    assert "session" in line.lower()
    assert srv.chat_requests == []


def test_a_resumed_session_keeps_its_system_prompt_model_and_temperature(srv, run_chatcli, home):
    ok(run_chatcli("--system", "You are terse.", "--model", "gpt-4o", "--temperature", "0.3", "first"))
    # Config defaults must not override what the session had.
    config = home / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('model = "config-model"\ntemperature = 1.5\nsystem = "Config persona."\n')

    ok(run_chatcli("-c", "x"))
    body = sent(srv)
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 0.3
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [m["content"] for m in body["messages"][1:]] == ["first", "echo: first", "x"]

    ok(run_chatcli("-c", "--model", "other-model", "y"))
    assert (sent(srv)["model"], sent(srv)["temperature"]) == ("other-model", 0.3)
    assert sent(srv)["messages"][0] == {"role": "system", "content": "You are terse."}

    ok(run_chatcli("-c", "z"))  # the switch was saved
    assert (sent(srv)["model"], sent(srv)["temperature"]) == ("other-model", 0.3)
    assert list_rows(run_chatcli)[0][2] == "other-model"


# --------------------------------------------------------------------------- #
# show, search, export, rename, delete, prune
# --------------------------------------------------------------------------- #


def test_sessions_show_prints_the_conversation(run_chatcli, home):
    seed(home, ("How do lighthouse lenses rotate?", [("How do lighthouse lenses rotate?",
                                                       "Lighthouse lenses float on mercury.")]), system="Be brief.")
    out = ok(run_chatcli("sessions", "show", "1")).stdout
    assert out.startswith("# How do lighthouse lenses rotate?\n")  # the title
    body = out.split("\n", 1)[1]
    assert body.index("Be brief.") < body.index("How do lighthouse lenses rotate?") < body.index(
        "Lighthouse lenses float on mercury."
    )
    line = one_line_error(run_chatcli("sessions", "show", "42"))
    assert "42" in line


def test_sessions_search_finds_words_and_marks_them_in_a_pipe(run_chatcli, home):
    seed(
        home,
        ("How do lighthouse lenses rotate?", [("How do lighthouse lenses rotate?", "They float on a bath of mercury.")]),
        ("Tell me about puffins", [("Tell me about puffins", "Puffins dive for fish.")]),
    )

    out = ok(run_chatcli("sessions", "search", "mercury")).stdout
    [line] = out.splitlines()
    assert "[mercury]" in line and "bath of" in line
    assert line.split()[0] == "1" and "How do lighthouse lenses rotate?" in line  # session id and title

    out = ok(run_chatcli("sessions", "search", "puffins")).stdout
    lines = out.splitlines()
    assert len(lines) == 2  # the question and the answer
    assert all(line.split()[0] == "2" for line in lines)
    assert all("[puffins]" in line.lower() for line in lines)
    assert "lighthouse" not in out.lower()

    assert ok(run_chatcli("sessions", "search", "albatross")).stdout == "No matches.\n"
    for text in ('"mercury OR (puffins*', "-mercury NEAR("):
        result = run_chatcli("sessions", "search", "--", text)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (text, result.stderr)
    assert "[mercury]" in ok(run_chatcli("sessions", "search", '"mercury"')).stdout


def test_sessions_export_markdown_and_json_to_stdout_and_to_files(run_chatcli, home):
    seed(home, ("How do lighthouse lenses rotate?", [("How do lighthouse lenses rotate?", "Mercury, mostly.")]),
         system="Be brief.")

    md = ok(run_chatcli("sessions", "export", "1", "--format", "md")).stdout
    assert md.startswith("# How do lighthouse lenses rotate?\n")
    body = md.split("\n", 1)[1]
    assert body.index("Be brief.") < body.index("How do lighthouse lenses rotate?") < body.index("Mercury, mostly.")

    record = export_json(run_chatcli, 1)
    assert (record["id"], record["model"], record["system"]) == (1, "gpt-4o-mini", "Be brief.")
    assert [(m["role"], m["content"]) for m in record["messages"]] == [
        ("user", "How do lighthouse lenses rotate?"),
        ("assistant", "Mercury, mostly."),
    ]

    result = ok(run_chatcli("sessions", "export", "1", "-o", "chat.json"))
    assert result.stdout == ""
    assert json.loads(Path("chat.json").read_text()) == record  # the format comes from the extension
    ok(run_chatcli("sessions", "export", "1", "-o", "chat.md"))
    assert Path("chat.md").read_text() == md
    ok(run_chatcli("sessions", "export", "1", "--format", "json", "-o", "forced.md"))
    assert json.loads(Path("forced.md").read_text()) == record  # an explicit --format wins

    line = one_line_error(run_chatcli("sessions", "export", "1", "-o", "chat.txt"))
    assert "chat.txt" in line
    assert not Path("chat.txt").exists()
    one_line_error(run_chatcli("sessions", "export", "7", "--format", "json"))
    line = one_line_error(run_chatcli("sessions", "export", "1", "-o", "~no-such-user-here/chat.md"), code=2)
    assert "no home directory for '~no-such-user-here'" in line and "internal error" not in line


def test_sessions_rename_changes_the_title_everywhere(srv, run_chatcli, home):
    seed(home, ("original words", [("original words", "echo: original words")]))
    ok(run_chatcli("sessions", "rename", "1", "Postgres", "tuning"))
    assert list_rows(run_chatcli)[0][:2] == ["1", "Postgres tuning"]
    assert export_json(run_chatcli, 1)["title"] == "Postgres tuning"
    assert ok(run_chatcli("sessions", "show", "1")).stdout.startswith("# Postgres tuning")
    ok(run_chatcli("-c", "more words"))  # a new turn keeps the new title
    assert list_rows(run_chatcli)[0][:2] == ["1", "Postgres tuning"]
    one_line_error(run_chatcli("sessions", "rename", "9", "nope"))


def test_sessions_delete_removes_the_session_and_its_messages(srv, run_chatcli, home):
    seed(home, ("delete me please", [("delete me please", "echo: delete me please")]),
         ("keep me please", [("keep me please", "echo: keep me please")]))
    ok(run_chatcli("sessions", "delete", "1"))
    one_line_error(run_chatcli("sessions", "show", "1"))
    assert [r[0] for r in list_rows(run_chatcli)] == ["2"]
    assert sql(default_db(home), "SELECT session_id, content FROM messages ORDER BY id") == [
        (2, "keep me please"), (2, "echo: keep me please")
    ]
    assert ok(run_chatcli("sessions", "search", "delete")).stdout == "No matches.\n"
    one_line_error(run_chatcli("sessions", "delete", "1"))
    one_line_error(run_chatcli("--resume", "1", "x"))


def test_sessions_prune_deletes_only_sessions_older_than_asked(srv, run_chatcli, home):
    seed(home, *((f"{word} words", [(f"{word} words", "fine")]) for word in ("ancient", "old", "recent", "today")))
    now = time.time()
    for session_id, days in ((1, 400), (2, 31), (3, 29)):
        sql(default_db(home), "UPDATE sessions SET updated_at = ? WHERE id = ?", now - days * DAY, session_id)
    assert [r[5] for r in list_rows(run_chatcli)] == ["just now", "29d ago", "31d ago", "400d ago"]

    for bad in ("30", "thirty days", "-5d", ""):
        line = one_line_error(run_chatcli("sessions", "prune", "--older-than", bad), code=2)
        assert "older-than" in line, bad
    assert len(list_rows(run_chatcli)) == 4  # nothing was deleted by a bad command

    out = ok(run_chatcli("sessions", "prune", "--older-than", "30d")).stdout
    assert "2" in out
    assert [r[1] for r in list_rows(run_chatcli)] == ["today words", "recent words"]
    assert sql(default_db(home), "SELECT DISTINCT session_id FROM messages ORDER BY 1") == [(3,), (4,)]
    ok(run_chatcli("sessions", "prune", "--older-than", "2w"))
    assert [r[1] for r in list_rows(run_chatcli)] == ["today words"]


def test_export_round_trips_every_message_with_role_status_and_usage(srv, run_chatcli, home):
    complete = "A full answer,\n\nwith *markdown*, ünïcode ✓ and trailing spaces   "
    srv.script(
        Reply(complete),
        Reply("abcdefgh", chunk_size=4, disconnect_after=1),  # breaks off after "abcd"
        Reply("half a reply", finish_reason=None),  # ends without saying it is finished
    )
    assert ok(run_chatcli("first question")).stdout == complete + "\n"
    complete_usage = compute_usage(sent(srv), complete)
    broken = run_chatcli("-c", "second question")
    assert broken.returncode != 0 and broken.stdout.startswith("abcd")
    truncated = run_chatcli("-c", "third question")
    assert truncated.returncode == 1 and truncated.stdout.startswith("half a reply")
    truncated_usage = compute_usage(sent(srv), "half a reply")

    record = export_json(run_chatcli, 1)
    messages = record["messages"]
    rows = sql(
        default_db(home),
        "SELECT role, content, status, finish_reason, prompt_tokens, completion_tokens, total_tokens "
        "FROM messages WHERE session_id = 1 ORDER BY id",
    )
    assert len(messages) == len(rows) == 6
    assert [(m["role"], m["content"]) for m in messages] == [(r[0], r[1]) for r in rows] == [
        ("user", "first question"),
        ("assistant", complete),
        ("user", "second question"),
        ("assistant", "abcd"),
        ("user", "third question"),
        ("assistant", "half a reply"),
    ]
    replies = [m for m in messages if m["role"] == "assistant"]
    assert [(m["status"], m["finish_reason"]) for m in replies] == [
        ("complete", "stop"), ("error", None), ("truncated", None)
    ]
    assert [(r[2], r[3]) for r in rows if r[0] == "assistant"] == [("complete", "stop"), ("error", None), ("truncated", None)]
    assert replies[1]["error"]  # why it broke off is kept
    for reply, expected in ((replies[0], complete_usage), (replies[2], truncated_usage)):
        assert reply["usage"] is not None
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert reply["usage"][key] == expected[key], key
    assert replies[1]["usage"] is None  # the stream broke before the usage chunk
    assert all(m["model"] == "gpt-4o-mini" for m in replies)


# --------------------------------------------------------------------------- #
# Incognito and other databases
# --------------------------------------------------------------------------- #


def test_no_save_writes_nothing_and_still_answers(srv, run_chatcli, home, tmp_path):
    before = files_under(tmp_path)
    result = ok(run_chatcli("--no-save", "secret question"))
    assert result.stdout == "echo: secret question\n"
    assert result.stderr == ""
    assert files_under(tmp_path) == before
    # The control: without the flag the same ask is saved.
    ok(run_chatcli("saved question"))
    assert default_db(home).exists()


def test_config_save_false_writes_nothing_and_still_answers(srv, run_chatcli, home, tmp_path):
    config = home / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("save = false\n")
    before = files_under(tmp_path)
    assert ok(run_chatcli("secret question")).stdout == "echo: secret question\n"
    assert files_under(tmp_path) == before
    line = one_line_error(run_chatcli("-c", "more"))
    assert "not being saved" in line.lower()


def repl_one_message(spawn_chatcli, *args: str) -> None:
    import pexpect

    child = spawn_chatcli(*args)
    child.expect(r"\x1b\[\?2004h.*?>", timeout=10)
    child.send("incognito words\r")
    child.expect_exact("echo: incognito words", timeout=10)
    child.expect(r"\x1b\[\?2004h.*?>", timeout=10)
    child.sendcontrol("d")
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus == 0


def test_no_save_in_the_repl_keeps_no_input_history_either(srv, spawn_chatcli, home, tmp_path):
    before = files_under(tmp_path)
    repl_one_message(spawn_chatcli, "--no-save")
    assert files_under(tmp_path) == before
    # The control: a saving REPL writes the database and the input history.
    repl_one_message(spawn_chatcli)
    new = files_under(tmp_path) - before
    history = [name for name in new if name.startswith("home/state/") and Path(tmp_path, name).is_file()]
    assert history, new
    assert "incognito words" in Path(tmp_path, history[0]).read_text()
    assert default_db(home).exists()


def test_db_flag_and_db_setting_choose_the_database(srv, run_chatcli, home):
    ok(run_chatcli("--db", "elsewhere/my.db", "flag question"))
    elsewhere = Path("elsewhere/my.db")
    assert elsewhere.is_file()
    assert not default_db(home).exists()
    assert sql(elsewhere, "SELECT content FROM messages WHERE role = 'user'") == [("flag question",)]
    assert [r[1] for r in list_rows(run_chatcli, "--db", "elsewhere/my.db")] == ["flag question"]
    ok(run_chatcli("--db", "elsewhere/my.db", "-c", "more"))
    assert [m["content"] for m in sent(srv)["messages"]][:2] == ["flag question", "echo: flag question"]

    config = home / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True)
    configured = home / "chats" / "configured.db"
    config.write_text(f"db = {json.dumps(str(configured))}\n")
    ok(run_chatcli("config question"))
    assert sql(configured, "SELECT content FROM messages WHERE role = 'user'") == [("config question",)]
    assert [r[1] for r in list_rows(run_chatcli)] == ["config question"]
    assert not default_db(home).exists()


# --------------------------------------------------------------------------- #
# Bad states and secrets
# --------------------------------------------------------------------------- #


def test_a_corrupt_database_does_not_stop_a_one_shot_ask(srv, run_chatcli, home):
    path = default_db(home)
    path.parent.mkdir(parents=True)
    garbage = b"this is not a database, just notes someone saved\n" * 20
    path.write_bytes(garbage)
    srv.script(Reply("still answering"))
    result = run_chatcli("hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still answering\n"
    [line] = result.stderr.splitlines()
    assert "history is not being saved" in line.lower()
    assert str(path) in line and re.search(r"damaged|not a database", line)
    assert path.read_bytes() == garbage  # the file is left for the user to look at
    line = one_line_error(run_chatcli("sessions", "list"))
    assert str(path) in line


def test_the_api_key_is_never_printed_saved_or_exported(srv, run_chatcli, home, tmp_path):
    srv.script(Reply("a fine answer"), Error(400, "bad request, sorry"), Reply("later answer"))
    results = [
        run_chatcli("first question", process=True),
        run_chatcli("-c", "second question", process=True),
        run_chatcli("-c", "third question", process=True),
        run_chatcli("sessions", "list", process=True),
        run_chatcli("sessions", "show", "1", process=True),
        run_chatcli("sessions", "search", "question", process=True),
        run_chatcli("sessions", "export", "1", "--format", "json", process=True),
        run_chatcli("sessions", "export", "1", "--format", "md", process=True),
        run_chatcli("sessions", "export", "1", "-o", "out.json", process=True),
        run_chatcli("sessions", "export", "1", "-o", "out.md", process=True),
        run_chatcli("--resume", "999", "x", process=True),
    ]
    # The key really was used, so there was something to leak.
    assert srv.chat_requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
    assert results[1].returncode != 0 and "bad request" in results[1].stderr
    assert json.loads(results[6].stdout)["messages"][3]["status"] == "error"
    for result in results:
        assert TEST_KEY not in result.stdout and TEST_KEY not in result.stderr, result.args
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert default_db(home) in written and Path("out.json").resolve() in written
    for path in written:
        assert TEST_KEY.encode() not in path.read_bytes(), path
