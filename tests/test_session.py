"""The session manager: what each turn sends, and what it keeps when a reply fails."""

from __future__ import annotations

import pytest

from chatcli.base.events import TextDelta
from chatcli.config.settings import Config
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, ERROR, INTERRUPTED, TRUNCATED
from chatcli.llm.client import ChatClient
from tests.support.keys import TEST_KEY
from tests.support.server import Error, Reply
from tests.support.sessions import make_session


@pytest.fixture
def session(srv) -> Session:
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    return make_session(client=client, model="gpt-4o-mini", system="Be brief.", params={"temperature": 0.2})


def test_each_turn_sends_the_conversation_so_far(srv, session):
    srv.script(Reply("first answer"), Reply("second answer"))
    assert session.send("first question").status == COMPLETE
    assert session.send("second question").reply == "second answer"
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    assert srv.chat_requests[-1].body["temperature"] == 0.2
    assert srv.chat_requests[-1].body["model"] == "gpt-4o-mini"


def test_a_turn_records_usage_finish_reason_and_timing(srv, session):
    srv.script(Reply("one two three"))
    turn = session.send("count")
    assert turn.finish_reason == "stop"
    assert turn.usage is not None and turn.usage.completion_tokens == 3
    assert turn.first_token_s is not None and turn.total_s >= turn.first_token_s
    assert session.accounts.usage.total_tokens == turn.usage.total_tokens


def test_a_stream_without_finish_reason_is_truncated_not_complete(srv, session):
    srv.script(Reply("half a", finish_reason=None))
    turn = session.send("q")
    assert turn.status == TRUNCATED and turn.partial and turn.reply == "half a"


def test_a_broken_reply_is_kept_marked_and_sent_with_the_next_turn(srv, session):
    srv.script(Reply("abcdefgh", chunk_size=4, disconnect_after=1), Reply("ok"))
    turn = session.send("q1")
    assert turn.status == ERROR and turn.partial and turn.reply == "abcd"
    assert "broke off" in turn.error.message
    session.send("q2")
    assert {"role": "assistant", "content": "abcd"} in srv.chat_requests[-1].body["messages"]


def test_a_failed_turn_with_no_text_is_not_repeated_when_sent_again(srv, session):
    srv.script(Error(500, "boom"), Reply("fine"))
    failed = session.send("hello")
    assert failed.status == ERROR and failed.reply == ""
    assert session.turns[-1] is failed  # the words are kept
    session.send("hello")
    users = [m for m in srv.chat_requests[-1].body["messages"] if m["role"] == "user"]
    assert users == [{"role": "user", "content": "hello"}]


def test_ctrl_c_keeps_the_partial_reply_and_marks_it(srv, session):
    """A KeyboardInterrupt raised where the user's Ctrl-C lands: inside the event loop."""
    srv.script(Reply("word " * 200, chunk_size=5, delay=0.005))
    seen = []

    def on_event(event):
        if isinstance(event, TextDelta):
            seen.append(event.text)
            if len(seen) == 3:
                raise KeyboardInterrupt

    turn = session.send("long please", on_event=on_event)
    assert turn.status == INTERRUPTED
    assert turn.reply == "word " * 3
    # the session goes on
    srv.script(Reply("after"))
    assert session.send("next").status == COMPLETE


def test_clear_keeps_the_system_prompt(srv, session):
    session.send("one")
    session.clear()
    session.send("two")
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "two"},
    ]
