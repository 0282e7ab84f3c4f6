"""Saved sessions in the REPL: autosave, /sessions, /resume, /new, /title, /export, /undo, /retry.

The REPL runs in-process over a real prompt-toolkit session with pipe input
(as in test_repl.py), with a real Journal on a SQLite file built as cli.py
builds it. Each test asserts on what the server received, what the REPL
printed, and what the database holds (read back with sqlite3 directly).
"""

from __future__ import annotations

import _thread
import json
import sqlite3
import threading
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chatcli.base.images import image_of_bytes
from chatcli.config.settings import Config
from chatcli.core.journal import Journal
from chatcli.core.resume import load_session
from chatcli.core.turn import Turn
from chatcli.llm.client import ChatClient
from tests.support.images import png
from tests.support.keys import TEST_KEY
from tests.support.repl import CTRL_C, ENTER, Chat, flat, lines_with, piped_chat, user_messages
from tests.support.server import Echo, Error, Reply, compute_usage
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(30)

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def query(db_path: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as dicts, read with a connection of our own (as another program would)."""
    with closing(sqlite3.connect(db_path)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, args)]


def messages(db_path: Path, session_id: int | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM messages" + (" WHERE session_id = ?" if session_id is not None else "") + " ORDER BY id"
    return query(db_path, sql, *(() if session_id is None else (session_id,)))


def pairs(db_path: Path, session_id: int | None = None) -> list[tuple[str, str]]:
    """(role, content) of every saved message, in order."""
    return [(m["role"], m["content"]) for m in messages(db_path, session_id)]


def sessions(db_path: Path) -> list[dict[str, Any]]:
    return query(db_path, "SELECT * FROM sessions ORDER BY id")


def session_rows(out: str) -> list[list[str]]:
    """The rows of the /sessions table, split into words."""
    return [line.split() for line in out.splitlines() if line[:1].isdigit() and "gpt-" in line]


def convo(*texts: str) -> list[dict[str, str]]:
    """user, assistant, user, ... messages as the API receives them."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


@dataclass(frozen=True, kw_only=True)
class DbSnapshotEcho(Echo):
    """Echo, but first read the database the moment the request reaches the server."""

    db_path: Path
    seen: list = field(default_factory=list)

    def to_reply(self, request: dict[str, Any]) -> Reply:
        self.seen.append(pairs(self.db_path))
        return super().to_reply(request)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chatcli.db"


@pytest.fixture
def chat(srv, tmp_path: Path, db_path: Path):
    """A Repl over a pipe whose Session saves to db_path, as cli.py builds it.

    resume=ID loads that saved session first, as `chatcli --resume ID` does.
    """
    with ExitStack() as stack:

        def make(
            *,
            system: str | None = None,
            params: dict | None = None,
            model: str = "gpt-4o-mini",
            markdown: bool = True,
            resume: int | None = None,
        ) -> Chat:
            config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
            client = ChatClient(config)
            journal = Journal.open(db_path)
            assert journal.saving, journal.take_warning()
            stack.callback(lambda: journal.store and journal.store.close())
            if resume is not None:
                session = load_session(journal, resume, client=client)
            else:
                session = make_session(
                    client=client, model=model, system=system, params=dict(params or {}), journal=journal
                )
            return piped_chat(stack, session, markdown=markdown, history=tmp_path / "history")

        yield make


# --------------------------------------------------------------------------- #
# Autosave: the user's message first, the reply when it ends
# --------------------------------------------------------------------------- #


def test_the_users_message_is_in_the_database_before_the_request_reaches_the_server(srv, chat, db_path):
    peek = DbSnapshotEcho(db_path=db_path)
    srv.script(peek, peek)
    chat().run("first question", ENTER, "second question", ENTER)
    # What another program could read from the file when each request arrived:
    assert peek.seen == [
        [("user", "first question")],
        [
            ("user", "first question"),
            ("assistant", "echo: first question"),
            ("user", "second question"),
        ],
    ]
    assert pairs(db_path)[-1] == ("assistant", "echo: second question")


def test_a_failed_reply_is_saved_with_status_error_after_the_users_message(srv, chat, db_path):
    srv.script(Error(500, "boom"))
    out = chat().run("please answer", ENTER, CTRL_C)  # Ctrl-C clears the message put back at the prompt
    assert "HTTP 500" in out
    user, reply = messages(db_path)
    assert (user["role"], user["content"], user["status"]) == ("user", "please answer", None)
    assert reply["role"] == "assistant"
    assert reply["status"] == "error"
    assert reply["content"] == ""
    assert "HTTP 500" in reply["error"]
    assert reply["finish_reason"] is None
    assert reply["first_token_ms"] is None  # no token ever came
    assert reply["total_ms"] is not None and reply["total_ms"] >= 0
    assert reply["prompt_tokens"] is None


def test_a_complete_reply_row_has_finish_reason_model_params_usage_and_latency(srv, chat, db_path):
    text = "alpha beta gamma delta epsilon"
    srv.script(Reply(text, chunk_size=5, first_delay=0.3, delay=0.05))  # 6 chunks: >= 0.25 s after the first
    chat(params={"temperature": 0.5, "max_tokens": 80}).run("count", ENTER)
    _, reply = messages(db_path)
    body = srv.chat_requests[0].body
    assert reply["status"] == "complete"
    assert reply["content"] == text
    assert reply["finish_reason"] == "stop"
    assert reply["model"] == "gpt-4o-mini"
    assert json.loads(reply["params"]) == {"temperature": 0.5, "max_tokens": 80}
    usage = compute_usage(body, text)
    assert {k: reply[k] for k in USAGE_KEYS} == {k: usage[k] for k in USAGE_KEYS}
    assert reply["first_token_ms"] >= 280
    assert reply["total_ms"] >= reply["first_token_ms"] + 200
    assert reply["total_ms"] < 10_000


def test_truncated_and_length_limited_replies_are_saved_as_such(srv, chat, db_path):
    srv.script(
        Reply("half an answer", finish_reason=None),
        Reply("ran out of", finish_reason="length"),
        Reply("alpha beta gamma delta", chunk_size=6, disconnect_after=2),
    )
    chat(model="gpt-4o").run("one", ENTER, "two", ENTER, "three", ENTER)
    replies = [m for m in messages(db_path) if m["role"] == "assistant"]
    assert [(m["content"], m["status"], m["finish_reason"]) for m in replies] == [
        ("half an answer", "truncated", None),
        ("ran out of", "complete", "length"),
        ("alpha beta g", "error", None),  # broke off: the partial text is kept
    ]
    assert all(m["model"] == "gpt-4o" for m in replies)
    assert replies[0]["total_tokens"] is not None  # usage came even without a finish
    assert "broke off" in replies[2]["error"]
    assert replies[2]["first_token_ms"] is not None


def test_an_interrupted_reply_is_saved_with_its_partial_text(srv, chat, db_path):
    full = "word " * 400
    srv.script(Reply(full, chunk_size=5, delay=0.01))  # about 4 s in full

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 10
        while not srv.chat_requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.4)  # some of the reply has arrived, most has not
        _thread.interrupt_main()  # what Ctrl-C does: SIGINT's handler runs in the main thread

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    out = chat(markdown=False).run("talk a lot", ENTER)
    assert "[interrupted (partial reply kept)]" in out
    user, reply = messages(db_path)
    assert user["content"] == "talk a lot"
    assert reply["status"] == "interrupted"
    assert reply["finish_reason"] is None
    assert reply["content"].startswith("word word word") and len(reply["content"]) < len(full)
    assert reply["content"] in out  # what was shown is what was saved
    assert reply["first_token_ms"] is not None and reply["total_ms"] >= reply["first_token_ms"]


# --------------------------------------------------------------------------- #
# /title, /sessions, /new, /resume
# --------------------------------------------------------------------------- #


def test_a_session_is_titled_from_its_first_message(srv, chat, db_path):
    chat().run("\x1b[200~\n  what   is the\ncapital of France?\x1b[201~", ENTER)  # pasted: blank line first
    assert user_messages(srv) == ["\n  what   is the\ncapital of France?"]
    chat().run("x" * 300, ENTER)
    assert [s["title"] for s in sessions(db_path)][0] == "what is the"
    long = sessions(db_path)[1]["title"]
    assert long.startswith("x" * 20) and long.endswith("…") and len(long) < 100


def test_title_before_the_first_message_names_the_session(srv, chat, db_path):
    out = chat().run("/title   My   project ", ENTER, "hello there", ENTER, "/title", ENTER)
    assert "Title set to 'My project'." in out
    assert "Title: My project" in out
    (row,) = sessions(db_path)
    assert row["title"] == "My project"


def test_title_renames_a_saved_session(srv, chat, db_path):
    out = chat().run("hello there", ENTER, "/title Greetings", ENTER, "/sessions", ENTER)
    assert sessions(db_path)[0]["title"] == "Greetings"
    assert "Title set to 'Greetings'." in out
    (row,) = session_rows(out)
    assert row[:4] == ["1", "*", "Greetings", "gpt-4o-mini"]


def test_sessions_lists_them_with_the_current_one_marked_and_new_starts_another(srv, chat, db_path):
    out = chat().run("first topic", ENTER, "/new", ENTER, "second topic", ENTER, "/sessions", ENTER)
    assert "Started a new session." in out
    # The new session's first request has none of the earlier turns.
    assert srv.chat_requests[1].body["messages"] == convo("second topic")
    assert [(s["id"], s["title"]) for s in sessions(db_path)] == [(1, "first topic"), (2, "second topic")]
    assert pairs(db_path, 1) == [("user", "first topic"), ("assistant", "echo: first topic")]
    assert pairs(db_path, 2) == [("user", "second topic"), ("assistant", "echo: second topic")]
    assert session_rows(out) == [
        ["2", "*", "second", "topic", "gpt-4o-mini", "1", "just", "now"],  # newest first, the current one marked
        ["1", "first", "topic", "gpt-4o-mini", "1", "just", "now"],
    ]


def test_sessions_before_anything_is_saved(srv, chat):
    out = chat().run("/sessions", ENTER)
    assert "No saved sessions yet." in out


def test_resume_switches_back_to_a_session_with_a_recap_and_its_turns(srv, chat, db_path):
    out = chat().run(
        "first topic", ENTER,
        "/new", ENTER,
        "second topic", ENTER,
        "/resume 1", ENTER,
        "more on the first", ENTER,
    )  # fmt: skip
    assert "Resumed session 1: first topic." in out
    assert "Session 1: first topic · 1 turn" in out
    recap = out[out.index("Session 1: first topic") :]
    assert "› first topic" in recap and "echo: first topic" in recap
    assert "second topic" not in recap.split("more on the first")[0]
    assert srv.chat_requests[-1].body["messages"] == convo("first topic", "echo: first topic", "more on the first")
    assert pairs(db_path, 1) == [
        ("user", "first topic"),
        ("assistant", "echo: first topic"),
        ("user", "more on the first"),
        ("assistant", "echo: more on the first"),
    ]
    assert len(pairs(db_path, 2)) == 2  # the other session is untouched


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("999", "There is no saved session 999"),
        ("abc", "Give the id of a session to resume"),
        ("", "Give the id of a session to resume"),
    ],
    ids=["unknown", "not-a-number", "missing"],
)
def test_resume_with_a_bad_id_says_so_in_one_line_and_the_session_goes_on(srv, chat, db_path, arg, expected):
    out = chat().run("hello", ENTER, f"/resume {arg}", ENTER, "again", ENTER)
    (line,) = lines_with(out, expected)
    assert line == " ".join(line.split()) and line.endswith(".")
    assert "Traceback" not in out
    assert srv.chat_requests[-1].body["messages"] == convo("hello", "echo: hello", "again")
    assert len(sessions(db_path)) == 1


# --------------------------------------------------------------------------- #
# /undo and /retry
# --------------------------------------------------------------------------- #


def test_undo_puts_the_message_back_and_enter_sends_it_again(srv, chat, db_path):
    out = chat().run("one", ENTER, "two", ENTER, "/undo", ENTER, ENTER)
    assert "Dropped the last exchange; its message is back at the prompt." in out
    assert user_messages(srv) == ["one", "two", "two"]
    assert srv.chat_requests[2].body["messages"] == convo("one", "echo: one", "two")
    assert pairs(db_path) == [("user", "one"), ("assistant", "echo: one"), ("user", "two"), ("assistant", "echo: two")]


def test_undo_drops_the_exchange_from_what_is_sent_and_from_the_database(srv, chat, db_path):
    out = chat().run("one", ENTER, "two", ENTER, "/undo", ENTER, CTRL_C, "three", ENTER)
    assert srv.chat_requests[-1].body["messages"] == convo("one", "echo: one", "three")
    assert pairs(db_path) == [("user", "one"), ("assistant", "echo: one"), ("user", "three"), ("assistant", "echo: three")]
    assert "echo: two" in out


def test_undo_of_a_resumed_session_removes_the_saved_turn(srv, chat, db_path):
    chat().run("one", ENTER, "two", ENTER)
    chat(resume=1).run("/undo", ENTER, CTRL_C, "/undo", ENTER, CTRL_C, "/undo", ENTER)
    assert pairs(db_path) == []
    chat(resume=1).run("fresh", ENTER)
    assert srv.chat_requests[-1].body["messages"] == convo("fresh")
    assert pairs(db_path, 1) == [("user", "fresh"), ("assistant", "echo: fresh")]


def test_undo_with_nothing_to_undo_says_so(srv, chat, db_path):
    out = chat().run("/undo", ENTER, "/retry", ENTER, "hello", ENTER)
    (line,) = lines_with(out, "Nothing to undo.")
    assert line.strip() == "Nothing to undo."
    assert "Nothing to retry." in out
    assert user_messages(srv) == ["hello"]


def test_retry_sends_the_last_message_again_and_replaces_the_reply(srv, chat, db_path):
    srv.script(Reply("zero answer"), Reply("first answer"), Reply("better answer"))
    out = chat().run("warm up", ENTER, "question", ENTER, "/retry", ENTER, "follow up", ENTER)
    assert "first answer" in out and "better answer" in out
    assert user_messages(srv) == ["warm up", "question", "question", "follow up"]
    assert srv.chat_requests[2].body["messages"] == srv.chat_requests[1].body["messages"]
    assert srv.chat_requests[3].body["messages"] == convo(
        "warm up", "zero answer", "question", "better answer", "follow up"
    )
    assert pairs(db_path) == [
        ("user", "warm up"),
        ("assistant", "zero answer"),
        ("user", "question"),
        ("assistant", "better answer"),
        ("user", "follow up"),
        ("assistant", "echo: follow up"),
    ]


def test_retry_after_a_failure_keeps_one_pair_with_the_new_reply(srv, chat, db_path):
    srv.script(Error(500, "boom"), Reply("finally"))
    chat().run("question", ENTER, CTRL_C, "/retry", ENTER)
    assert user_messages(srv) == ["question", "question"]
    rows = messages(db_path)
    assert [(m["role"], m["content"], m["status"]) for m in rows] == [
        ("user", "question", None),
        ("assistant", "finally", "complete"),
    ]


def test_a_retry_that_fails_keeps_the_earlier_reply(srv, chat, db_path):
    srv.script(Reply("good answer"), Error(500, "boom"))
    out = chat().run("question", ENTER, "/retry", ENTER, "next", ENTER)
    assert "The earlier reply is kept." in out
    assert srv.chat_requests[-1].body["messages"] == convo("question", "good answer", "next")
    assert pairs(db_path) == [
        ("user", "question"),
        ("assistant", "good answer"),
        ("user", "next"),
        ("assistant", "echo: next"),
    ]


# --------------------------------------------------------------------------- #
# /export
# --------------------------------------------------------------------------- #


def test_export_writes_markdown_and_json_with_every_message(srv, chat, db_path, tmp_path):
    srv.script(Reply("alpha answer"), Error(500, "boom"))
    md, js, txt = tmp_path / "chat.md", tmp_path / "chat.json", tmp_path / "chat.txt"
    out = chat(system="Be brief.").run(
        "alpha", ENTER,
        "beta", ENTER, CTRL_C,
        f"/export {md}", ENTER,
        f"/export {js}", ENTER,
        f"/export {txt}", ENTER,
    )  # fmt: skip
    assert flat(out).count("Exported 2 turns to") == 2

    text = md.read_text()
    for piece in ("## System", "Be brief.", "alpha", "alpha answer", "beta", "*[error"):
        assert piece in text

    record = json.loads(js.read_text())
    assert record["system"] == "Be brief."
    saved = messages(db_path)
    assert [(m["role"], m["content"]) for m in record["messages"]] == [(m["role"], m["content"]) for m in saved]
    assert [m.get("status") for m in record["messages"]] == [None, "complete", None, "error"]
    first_reply = record["messages"][1]
    assert {k: first_reply["usage"][k] for k in USAGE_KEYS} == {k: saved[1][k] for k in USAGE_KEYS}
    assert first_reply["finish_reason"] == "stop"
    assert "HTTP 500" in record["messages"][3]["error"]

    (line,) = lines_with(out, "chat.txt")
    assert line.strip() == "Export to a .md or .json file, not 'chat.txt'."
    assert not txt.exists()


# --------------------------------------------------------------------------- #
# State changes and /clear survive a resume
# --------------------------------------------------------------------------- #


def test_system_model_and_temperature_changes_are_saved(srv, chat, db_path):
    chat(params={"temperature": 0.2, "max_tokens": 50}).run(
        "/model gpt-4o", ENTER,  # before the first message
        "hello", ENTER,
        "/system You are a pirate.", ENTER,
        "/temp 0.7", ENTER,
    )  # fmt: skip
    with closing(Journal.open(db_path).store) as store:  # type: ignore[arg-type]
        restored = load_session(Journal(store), 1, client=None)
        assert (restored.system, restored.model, restored.params) == (
            "You are a pirate.",
            "gpt-4o",
            {"temperature": 0.7, "max_tokens": 50},
        )

    # Unsetting a parameter is saved as well.
    chat(system="Be brief.", params={"temperature": 0.3, "max_tokens": 50}).run("x", ENTER, "/temp default", ENTER)
    with closing(Journal.open(db_path).store) as store:  # type: ignore[arg-type]
        restored = load_session(Journal(store), 2, client=None)
        assert (restored.system, restored.model, restored.params) == ("Be brief.", "gpt-4o-mini", {"max_tokens": 50})

    # So is removing the system prompt: the resumed session sends none.
    chat(resume=2).run("/system none", ENTER, "after", ENTER)
    assert srv.chat_requests[-1].body["messages"][0] == {"role": "user", "content": "x"}
    with closing(Journal.open(db_path).store) as store:  # type: ignore[arg-type]
        assert load_session(Journal(store), 2, client=None).system is None

    # And the resumed session sends with them.
    chat(resume=1).run("ahoy", ENTER)
    body = srv.chat_requests[-1].body
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 0.7 and body["max_tokens"] == 50
    assert body["messages"] == [{"role": "system", "content": "You are a pirate."}, *convo("hello", "echo: hello", "ahoy")]


def test_clear_is_saved_a_resumed_session_does_not_send_cleared_turns_but_usage_counts_them(srv, chat, db_path):
    chat().run("one", ENTER, "two", ENTER, "/clear", ENTER, "three", ENTER)
    usages = [compute_usage(r.body, "echo: " + r.body["messages"][-1]["content"]) for r in srv.chat_requests]
    c = chat(resume=1, markdown=False)
    out = c.run("four", ENTER, "/usage", ENTER)
    assert "Session 1: one · 1 turn (2 cleared before these)" in out
    assert srv.chat_requests[-1].body["messages"] == convo("three", "echo: three", "four")
    usages.append(compute_usage(srv.chat_requests[-1].body, "echo: four"))
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"], ["4"], ["session"])]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "session"]
    assert rows[-1][3] == f"{sum(u['total_tokens'] for u in usages):,}"
    assert len(pairs(db_path)) == 8  # nothing was deleted


def test_clear_still_holds_after_rows_of_another_session_are_deleted(srv, chat, db_path):
    chat().run(
        "one", ENTER,             # session 1: ids 1, 2
        "/new", ENTER,
        "other", ENTER,           # session 2: ids 3, 4
        "/resume 1", ENTER,
        "/clear", ENTER,          # session 1 context starts after id 4
        "/resume 2", ENTER,
        "/undo", ENTER, CTRL_C,   # ids 3, 4 deleted
        "/resume 1", ENTER,
        "three", ENTER,           # saved as ids 3, 4 again
    )  # fmt: skip
    assert srv.chat_requests[-1].body["messages"] == convo("three")
    chat(resume=1).run("four", ENTER)
    assert srv.chat_requests[-1].body["messages"] == convo("three", "echo: three", "four")


# --------------------------------------------------------------------------- #
# A resumed session whose last message got no reply (the program died)
# --------------------------------------------------------------------------- #


def _session_with_an_unanswered_message(db_path: Path) -> None:
    """What a killed chatcli leaves: a complete exchange, then a user message with no reply."""
    journal = Journal.open(db_path)
    session = make_session(client=None, model="gpt-4o-mini", journal=journal)
    done = Turn(user="earlier", model="gpt-4o-mini", params={}, reply="earlier answer", status="complete")
    journal.user_message(session.state(), done)
    journal.reply(done)
    journal.user_message(session.state(), Turn(user="lost question", model="gpt-4o-mini", params={}))
    journal.store.close()


def test_an_unanswered_last_message_is_back_at_the_prompt_and_enter_sends_it_once(srv, chat, db_path):
    _session_with_an_unanswered_message(db_path)
    out = chat(resume=1).run(ENTER, "/usage", ENTER)
    assert "› lost question" in out and "(no reply)" in out
    assert "Your last message got no reply; it is back at the prompt: press Enter to send it." in flat(out)
    assert srv.chat_requests[-1].body["messages"] == convo("earlier", "earlier answer", "lost question")
    assert pairs(db_path) == [
        ("user", "earlier"),
        ("assistant", "earlier answer"),
        ("user", "lost question"),
        ("assistant", "echo: lost question"),
    ]
    assert "no reply, no usage" not in out  # the orphan was replaced, not kept beside the answer


def test_an_unanswered_message_not_sent_again_stays_saved_and_is_not_sent(srv, chat, db_path):
    _session_with_an_unanswered_message(db_path)
    chat(resume=1).run(CTRL_C, "something else", ENTER)
    assert srv.chat_requests[-1].body["messages"] == convo("earlier", "earlier answer", "something else")
    assert [content for role, content in pairs(db_path) if role == "user"] == ["earlier", "lost question", "something else"]


def test_sessions_list_counts_the_tokens_usage_counts(srv, chat, db_path, run_chatcli):
    # A reply replaced by /retry was billed, and a server may report no usage (then chatcli estimates):
    # `chatcli sessions list` used to add up only the usage reported for the replies still there.
    srv.script(Reply("first answer"), Reply("first again"), Reply("a reply the server gave no usage for", usage=False))
    chat(markdown=False).run("one", ENTER, "/retry", ENTER, "two", ENTER)
    out = chat(resume=1, markdown=False).run("/usage", ENTER)
    [total] = [line.split() for line in out.splitlines() if line.split()[:1] == ["session"]]

    listed = run_chatcli("--db", str(db_path), "sessions", "list")

    assert listed.returncode == 0, listed.stderr
    header, row = [line.split("\t") for line in listed.stdout.splitlines()]
    assert row[header.index("tokens")] == total[3] and total[3].startswith("≈"), (row, total)
    reported = sum(compute_usage(r.body, text)["total_tokens"]
                   for r, text in zip(srv.chat_requests, ["first answer", "first again"]))
    assert int(total[3].strip("≈").replace(",", "")) > reported  # the estimate for the third reply counts


# --------------------------------------------------------------------------- #
# A message back at the prompt takes its images with it (issue 16)
# --------------------------------------------------------------------------- #


def _image_urls(body: dict) -> list[str]:
    return [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]


def test_a_failed_message_back_at_the_prompt_sends_its_images_again(srv, chat):
    shot = image_of_bytes("shot.png", png(8, 8))
    srv.script(Error(400, "try again later"), Reply("I see a square"))
    repl = chat(markdown=False)
    repl.session.images.append(shot)

    out = repl.run("what is this?", ENTER, ENTER)  # it fails; Enter sends it again

    assert "Your message is back at the prompt" in flat(out)
    assert [_image_urls(r.body) for r in srv.chat_requests] == [[shot.location], [shot.location]]
    assert repl.session.images == []  # sent: nothing waits any more


def test_an_unanswered_message_of_a_resumed_session_goes_again_with_its_images(srv, chat, db_path):
    shot = image_of_bytes("shot.png", png(8, 8))
    journal = Journal.open(db_path)
    session = make_session(client=None, model="gpt-4o-mini", journal=journal)
    journal.user_message(session.state(), Turn(user="what is this?", model="gpt-4o-mini", params={}, images=[shot]))
    journal.store.close()

    out = chat(resume=1, markdown=False).run(ENTER)

    assert "› what is this? [shot.png 8×8]" in out  # the recap names the message's images
    assert "· 1 turn\n" in out
    assert _image_urls(srv.chat_requests[-1].body) == [shot.location]
    assert srv.chat_requests[-1].body["messages"][-1]["content"][0] == {"type": "text", "text": "what is this?"}
