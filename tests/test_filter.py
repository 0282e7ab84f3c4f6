"""The content filter against the test server: a reply that holds a blocked word never reaches
stdout (a pipe), --json, an export or a recap; it is saved whole and marked; what is sent is
never changed; /show-filtered and /copy obey show_filtered. The REPL in a pty is in
tests/pty/test_filter_pty.py."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_NETWORK, EXIT_OK
from chatcli.base.events import WITHHELD, Finish, TextDelta, Withheld
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.journal import Journal
from tests.support.keys import TEST_KEY
from tests.support.server import ChatServer, Reply
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(30)

BLOCKED = "The password is swordfish, and 这是禁止的词."
CLEAN = "Nothing to see here: a plain answer."
WORDS = 'block_words = ["swordfish", "禁止"]\n'


def configure(text: str = WORDS) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_unseen(*streams: str) -> None:
    for stream in streams:
        assert "swordfish" not in stream and "禁止" not in stream, stream


def db_rows(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "data" / "chatcli" / "chatcli.db") as db:
        return db.execute("SELECT role, content, filtered FROM messages ORDER BY id").fetchall()


# --------------------------------------------------------------------------- #
# one-shot mode: a pipe
# --------------------------------------------------------------------------- #


def test_a_blocked_word_split_across_chunks_never_reaches_a_pipe(srv: ChatServer, run_chatcli) -> None:
    configure()
    srv.script(Reply(BLOCKED, chunk_size=2))
    result = run_chatcli("what is the password")
    assert result.stdout == ""
    assert result.stderr == f"chatcli: {WITHHELD}\n"
    assert result.returncode == EXIT_FAILURE
    assert_unseen(result.stdout, result.stderr)


def test_a_reply_without_a_blocked_word_is_printed_as_ever(srv: ChatServer, run_chatcli) -> None:
    configure()
    srv.script(Reply(CLEAN, chunk_size=2))
    result = run_chatcli("anything")
    assert (result.returncode, result.stdout, result.stderr) == (EXIT_OK, CLEAN + "\n", "")


def test_the_stats_line_still_shows_for_a_withheld_reply(srv: ChatServer, run_chatcli) -> None:
    configure(WORDS + "stats = true\n")
    srv.script(Reply(BLOCKED))
    result = run_chatcli("what is the password")
    assert result.stdout == "" and result.returncode == EXIT_FAILURE
    lines = result.stderr.splitlines()
    assert lines[0] == f"chatcli: {WITHHELD}" and lines[1].startswith("chatcli: first token ")


def test_json_gives_no_reply_and_says_it_was_filtered(srv: ChatServer, run_chatcli) -> None:
    configure()
    srv.script(Reply(BLOCKED, chunk_size=3))
    result = run_chatcli("--json", "what is the password")
    assert_unseen(result.stdout, result.stderr)
    record = json.loads(result.stdout)
    assert record["reply"] is None and record["filtered"] is True and record["status"] == "complete"
    assert result.returncode == EXIT_FAILURE and WITHHELD in result.stderr
    srv.script(Reply(CLEAN))
    clean = run_chatcli("--json", "-c", "and now?")
    assert json.loads(clean.stdout)["reply"] == CLEAN and json.loads(clean.stdout)["filtered"] is False
    assert clean.returncode == EXIT_OK


def test_a_schema_checks_no_withheld_reply_and_prints_none_of_it(srv: ChatServer, run_chatcli, tmp_path) -> None:
    configure()
    schema = tmp_path / "secret.json"
    schema.write_text('{"type": "object"}', encoding="utf-8")
    srv.script(Reply('{"password": "swordfish"}'))
    result = run_chatcli("--schema", str(schema), "what is the password")
    assert result.stdout == "" and result.returncode == EXIT_FAILURE
    assert_unseen(result.stdout, result.stderr)


def test_a_reply_that_breaks_off_is_checked_before_any_of_it_is_shown(srv: ChatServer, run_chatcli) -> None:
    configure()
    srv.script(Reply("Here: swordfish and more words after it", chunk_size=4, disconnect_after=4))
    broken = run_chatcli("what is the password")
    assert broken.stdout == "" and broken.returncode == EXIT_NETWORK  # the failure's own code
    assert broken.stderr.splitlines()[0] == f"chatcli: {WITHHELD}" and "broke off" in broken.stderr
    assert_unseen(broken.stdout, broken.stderr)
    srv.script(Reply("A clean start, then the line drops", chunk_size=4, disconnect_after=3))
    partial = run_chatcli("tell me")
    assert partial.stdout == "A clean star\n" and partial.returncode == EXIT_NETWORK  # what came, checked


def test_a_withheld_reply_is_saved_whole_and_marked(srv: ChatServer, run_chatcli, isolated_env: Path) -> None:
    configure()
    srv.script(Reply(BLOCKED), Reply(CLEAN))
    run_chatcli("what is the password")
    run_chatcli("-c", "and now?")
    assert db_rows(isolated_env) == [("user", "what is the password", 0), ("assistant", BLOCKED, 1),
                                     ("user", "and now?", 0), ("assistant", CLEAN, 0)]


def test_without_block_words_nothing_is_held_or_marked(srv: ChatServer, run_chatcli, isolated_env: Path) -> None:
    srv.script(Reply(BLOCKED))
    result = run_chatcli("--json", "what is the password")
    record = json.loads(result.stdout)
    assert record["reply"] == BLOCKED and "filtered" not in record and result.returncode == EXIT_OK
    assert db_rows(isolated_env)[-1] == ("assistant", BLOCKED, 0)


# --------------------------------------------------------------------------- #
# the session: what is drawn, and what is sent
# --------------------------------------------------------------------------- #


def session_with(srv: ChatServer, tmp_path: Path, **config):
    settings = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, **config)
    return make_session(srv, config=settings, journal=Journal.open(tmp_path / "chatcli.db"))


def test_with_the_filter_on_the_text_comes_once_at_the_end_and_off_as_it_streams(srv: ChatServer, tmp_path) -> None:
    heard: list = []
    srv.script(Reply(CLEAN, chunk_size=4))
    session_with(srv, tmp_path, block_words=("swordfish",)).send("hi", on_event=heard.append)
    texts = [e for e in heard if isinstance(e, TextDelta)]
    assert texts == [TextDelta(CLEAN)] and heard.index(texts[0]) == heard.index(Finish("stop")) - 1

    heard.clear()
    srv.script(Reply(CLEAN, chunk_size=4))
    session_with(srv, tmp_path).send("hi", on_event=heard.append)
    assert len([e for e in heard if isinstance(e, TextDelta)]) == -(-len(CLEAN) // 4)  # each chunk as it came


def test_the_filter_never_changes_what_is_sent(srv: ChatServer, tmp_path) -> None:
    session = session_with(srv, tmp_path, block_words=("swordfish",))
    heard: list = []
    srv.script(Reply(BLOCKED), Reply(CLEAN))
    first = session.send("is swordfish the password?", on_event=heard.append)
    assert first.filtered and first.reply == BLOCKED and Withheld() in heard
    session.send("and now?")
    assert srv.chat_requests[0].body["messages"][-1] == {"role": "user", "content": "is swordfish the password?"}
    assert srv.chat_requests[1].body["messages"][-3:] == [
        {"role": "user", "content": "is swordfish the password?"},
        {"role": "assistant", "content": BLOCKED},  # the model wrote it: it stays in the context
        {"role": "user", "content": "and now?"},
    ]


def test_show_filtered_and_copy_obey_the_config(srv: ChatServer, tmp_path) -> None:
    session = session_with(srv, tmp_path, block_words=("swordfish",))
    assert REGISTRY.dispatch(session, "/show-filtered").text.startswith("Filtered replies can't be shown")
    srv.script(Reply(BLOCKED))
    session.send("what is the password")
    refused = REGISTRY.dispatch(session, "/show-filtered")
    assert refused.error and refused.text == ("Filtered replies can't be shown: set show_filtered = true in the "
                                              "config to allow /show-filtered.")
    copied = REGISTRY.dispatch(session, "/copy")
    assert copied.error and copied.clipboard is None and "withheld" in copied.text
    assert_unseen(refused.text, copied.text)

    allowed = session_with(srv, tmp_path, block_words=("swordfish",), show_filtered=True)
    assert REGISTRY.dispatch(allowed, "/show-filtered").text == "No reply in this session was withheld."
    srv.script(Reply(BLOCKED), Reply(CLEAN))
    allowed.send("what is the password")
    allowed.send("and now?")
    assert REGISTRY.dispatch(allowed, "/show-filtered").text.endswith("\n" + BLOCKED)  # the last withheld one
    assert REGISTRY.dispatch(allowed, "/copy").clipboard == CLEAN


# --------------------------------------------------------------------------- #
# where a saved reply shows again
# --------------------------------------------------------------------------- #


def test_sessions_show_search_and_export_withhold_it_unless_allowed(srv: ChatServer, run_chatcli, tmp_path) -> None:
    configure()
    srv.script(Reply(BLOCKED))
    run_chatcli("what is the password")
    shown = run_chatcli("sessions", "show", "1")
    assert WITHHELD in shown.stdout and shown.returncode == EXIT_OK
    found = run_chatcli("sessions", "search", "swordfish")
    assert WITHHELD in found.stdout
    markdown = run_chatcli("sessions", "export", "1")
    as_json = json.loads(run_chatcli("sessions", "export", "1", "--format", "json").stdout)
    assert WITHHELD in markdown.stdout
    assert as_json["messages"][1]["content"] is None and as_json["messages"][1]["filtered"] is True
    run_chatcli("sessions", "export", "1", "-o", str(tmp_path / "chat.md"))
    assert WITHHELD in (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert_unseen(shown.stdout, found.stdout, markdown.stdout, json.dumps(as_json, ensure_ascii=False),
                  (tmp_path / "chat.md").read_text(encoding="utf-8"))

    configure(WORDS + "show_filtered = true\n")
    assert BLOCKED in run_chatcli("sessions", "show", "1").stdout
    assert json.loads(run_chatcli("sessions", "export", "1", "--format", "json").stdout)["messages"][1]["content"] \
        == BLOCKED


def test_config_check_says_a_missing_block_words_file_in_one_sentence(run_chatcli) -> None:
    configure(WORDS + 'block_words_file = "nowhere.txt"\n')
    result = run_chatcli("config", "check")
    assert result.returncode == EXIT_CONFIG and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "block_words_file" in result.stderr and "nowhere.txt" in result.stderr
    configure(WORDS)
    checked = run_chatcli("config", "check")
    assert checked.returncode == EXIT_OK and checked.stdout.startswith("ok: ")
    shown = run_chatcli("config", "show")
    assert "# block_words: 2 words or phrases" in shown.stdout and "show_filtered = false" in shown.stdout
    assert_unseen(shown.stdout)  # counted, not listed
