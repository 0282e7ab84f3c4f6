"""The session as a conversation: retries reach the user through the event stream, /compact's too,
and app.py gives a session its conversation, its policy and its accounts.

Against the real test server (tests/support/server.py) over real HTTP, and the REPL through a pipe.
"""

from __future__ import annotations

import io
from pathlib import Path

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatcli.app import build_session, new_conversation
from chatcli.base.events import Retrying, TextDelta
from chatcli.cli.repl import Repl
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.conversation import Conversation
from chatcli.core.journal import Journal
from tests.support.keys import TEST_KEY
from tests.support.server import Error, Reply

ENTER, CTRL_D = "\r", "\x04"
LONG = "a long answer about the schema, with every table and column named " * 6
RETRY = "rate limited, retrying in 0.1s (attempt 1/2)"


def session_on(srv, tmp_path: Path, **settings):
    """A session as app.py builds one for `chatcli`: from a Config, with a journal of its own."""
    config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=2, read_timeout=10, **settings)
    conversation = Conversation(model="gpt-4o-mini", journal=Journal.open(tmp_path / "chatcli.db"))
    return build_session(config, conversation)


def run_repl(session, tmp_path: Path, *keys: str) -> str:
    """Type `keys` into the REPL on `session`, then Ctrl-D; what it printed."""
    out = io.StringIO()
    with create_pipe_input() as pipe:
        repl = Repl(session, out=out, markdown=False, color=False, history_path=tmp_path / "history",
                    input=pipe, output=DummyOutput(), warm_up=False)
        pipe.send_text("".join(keys) + CTRL_D)
        assert repl.run() == 0
    return out.getvalue()


def test_a_retry_during_compact_is_an_event_compact_reports_as_it_happens(srv, tmp_path):
    session = session_on(srv, tmp_path)
    srv.script(Reply(LONG), Reply(LONG))
    session.send("first question")
    session.send("second question")
    srv.script(Error(429, "slow down", headers={"retry-after-ms": "50"}), Reply("Notes."))
    heard = []
    result = REGISTRY.dispatch(session, "/compact 1", on_event=heard.append)
    assert not result.error, result.text
    assert [str(e) for e in heard if isinstance(e, Retrying)] == [RETRY]
    assert len(srv.chat_requests) == 4 and session.summary == "Notes."


def test_the_repl_says_a_retry_during_compact_before_the_result(srv, tmp_path):
    session = session_on(srv, tmp_path)
    srv.script(Reply(LONG), Reply(LONG), Error(429, "slow down", headers={"retry-after-ms": "50"}), Reply("Notes."))
    out = run_repl(session, tmp_path, "first question", ENTER, "second question", ENTER, "/compact 1", ENTER)
    said = " ".join(out.split())
    assert f"[{RETRY}]" in said, out
    assert said.index(RETRY) < said.index("Compacted 1 turn")


def test_a_retry_while_sending_comes_in_the_turns_event_stream(srv, tmp_path):
    session = session_on(srv, tmp_path)
    srv.script(Error(503, "overloaded", headers={"retry-after-ms": "50"}), Reply("made it"))
    heard = []
    turn = session.send("hello", on_event=heard.append)
    kinds = [type(e) for e in heard if isinstance(e, (Retrying, TextDelta))]
    assert turn.reply == "made it" and kinds[0] is Retrying and TextDelta in kinds
    assert [str(e) for e in heard if isinstance(e, Retrying)] == [
        "the server failed (HTTP 503), retrying in 0.1s (attempt 1/2)"
    ]


def test_a_new_conversation_is_swapped_in_whole_and_the_accounts_count_it(srv, tmp_path):
    session = session_on(srv, tmp_path)
    srv.script(Reply("one"), Reply("two"))
    session.send("first")
    first = session.id
    spent = session.accounts.accounting()[1].usage.total_tokens
    assert spent > 0
    new_conversation(session)
    assert session.turns == [] and session.id is None and session.accounts.accounting()[1].usage.total_tokens == 0
    session.send("second")
    assert session.id not in (None, first)
    assert REGISTRY.dispatch(session, "/resume " + str(first)).text.startswith(f"Resumed session {first}")
    assert [t.user for t in session.turns] == ["first"]
    assert session.accounts.accounting()[1].usage.total_tokens == spent


def test_the_session_scrubs_and_names_its_profile_by_the_policy_app_gave_it(srv, tmp_path):
    session = session_on(srv, tmp_path, redact=("email",), profile="work")
    srv.script(Reply("ok"))
    turn = session.send("write to carol@corp.example.com")
    assert "carol@corp" not in turn.user and "carol@corp" not in str(srv.chat_requests[-1].body)
    assert session.state().profile == "work"
