"""/compact on a conversation too long for one summary request, and estimates that survive a resume.

Counts are in the byte-level test encoding from test_tokens: a message costs
its UTF-8 bytes plus the chat overhead, so the sizes below are exact.
"""

from __future__ import annotations

import pytest

from chatcli.commands import REGISTRY
from chatcli.core.journal import Journal
from chatcli.core.resume import load_session
from chatcli.core.session import Session
from chatcli.llm.tokens import MESSAGE_OVERHEAD, REPLY_PRIMING
from tests.support.server import Reply
from tests.support.sessions import make_session
from tests.support.tokens import tokenizer

pytestmark = pytest.mark.usefixtures("byte_encoding")  # one token a byte, registered for the module

WINDOW, OUTPUT = 1000, 100


def bytes_sent(messages: list[dict[str, str]]) -> int:
    return REPLY_PRIMING + sum(len(m["content"].encode()) + MESSAGE_OVERHEAD for m in messages)


def long_session(srv, tmp_path, turns: int) -> Session:
    session = make_session(
        srv, model="test-model", system="Be brief.", journal=Journal.open(tmp_path / "chatcli.db"),
        tokenizer=tokenizer(window=WINDOW, output=OUTPUT),
    )
    for i in range(turns):
        session.send(f"question {i}: " + "tell me about the schema " * 4)  # about 230 tokens a turn, echoed
    srv.reset()
    return session


def test_compact_summarises_in_parts_that_each_fit_the_window(srv, tmp_path):
    session = long_session(srv, tmp_path, 12)
    srv.script(*(Reply(f"Notes part {k}.") for k in range(1, 20)))
    result = REGISTRY.dispatch(session, "/compact 2")
    assert not result.error, result.text

    requests = [r.body["messages"] for r in srv.chat_requests]
    assert len(requests) > 1 and f"in {len(requests)} requests" in result.text
    assert all(bytes_sent(m) + OUTPUT <= WINDOW for m in requests)  # each part fits, with room for the summary
    assert all(r.body["max_tokens"] == OUTPUT for r in srv.chat_requests)  # and the summary is held to that room
    # Every older turn went into exactly one part, in order, and the summary so far went along with the next.
    carried = [m[1]["content"] for m in requests]
    seen = [i for i in range(12) if any(f"question {i}:" in c for c in carried)]
    assert seen == list(range(10))
    assert all(f"Notes part {k}." in carried[k] for k in range(1, len(requests)))
    assert "Notes part" not in carried[0]

    session.send("next")
    sent = srv.chat_requests[-1].body["messages"]
    assert f"Notes part {len(requests)}." in sent[1]["content"]
    assert [m["content"].split(":")[0] for m in sent if m["role"] == "user"] == ["question 10", "question 11", "next"]


def test_a_turn_too_long_for_a_summary_request_has_its_middle_cut(srv, tmp_path):
    session = long_session(srv, tmp_path, 0)
    session.send("start " + "a" * 600 + " end")  # fits when sent; with its echoed reply, too big to summarise at once
    session.send("short one")
    srv.reset()
    srv.script(Reply("Notes."))
    result = REGISTRY.dispatch(session, "/compact 1")
    assert not result.error, result.text
    assert "1 turn was too long for a request and had its middle cut" in result.text
    (request,) = [r.body["messages"] for r in srv.chat_requests]
    assert bytes_sent(request) + OUTPUT <= WINDOW
    text = request[1]["content"]
    assert text.startswith("User: start aaa") and "characters cut here to fit the context window" in text


def test_a_resumed_session_keeps_its_estimates(srv, tmp_path):
    session = long_session(srv, tmp_path, 0)
    session.send("reported")
    srv.script(Reply("not reported", usage=False))
    session.send("unreported")
    before = REGISTRY.dispatch(session, "/usage").rows
    # Our count of the second request: priming, "Be brief.", "reported", "echo: reported", "unreported";
    # and of its reply, "not reported", without the message overhead.
    prompt = REPLY_PRIMING + sum(n + MESSAGE_OVERHEAD for n in (9, 8, 14, 10))
    assert before[1][:5] == ["2", "test-model", f"≈{prompt}", "≈12", f"≈{prompt + 12}"]

    resumed = load_session(session.journal, session.id, client=session.client)
    resumed.tokenizer = tokenizer(window=WINDOW, output=OUTPUT)
    after = REGISTRY.dispatch(resumed, "/usage").rows
    assert after == before


def test_a_window_too_small_to_summarise_in_parts_says_so_before_spending_anything(srv, tmp_path):
    session = long_session(srv, tmp_path, 6)
    session.tokenizer = tokenizer(window=WINDOW, output=400)  # the summary so far would leave no room beside it
    before = session.messages("next")
    result = REGISTRY.dispatch(session, "/compact 1")
    assert result.error and "leaves no room to summarise" in result.text and "lower max_tokens" in result.text
    assert srv.chat_requests == [] and session.messages("next") == before


def test_a_resumed_session_still_counts_what_it_spent_on_undone_replies_and_summaries(srv, tmp_path):
    session = long_session(srv, tmp_path, 4)
    session.retry()
    session.undo()
    srv.script(Reply("Notes."))
    assert not REGISTRY.dispatch(session, "/compact 1").error
    before = REGISTRY.dispatch(session, "/usage").rows
    assert [r[0] for r in before] == ["1", "2", "3", "undone or replaced", "undone or replaced", "/compact", "session"]

    resumed = load_session(session.journal, session.id, client=session.client)
    resumed.tokenizer = tokenizer(window=WINDOW, output=OUTPUT)
    assert REGISTRY.dispatch(resumed, "/usage").rows == before
    ledger = session.journal.store.ledger()
    assert before[-1][4] == f"{sum(s.total_tokens for s in ledger):,}"  # the session's total is what the ledger holds


def test_a_new_session_starts_with_nothing_spent(srv, tmp_path):
    from chatcli.ui.prompt import make_toolbar

    session = long_session(srv, tmp_path, 3)
    srv.script(Reply("Notes."))
    assert not REGISTRY.dispatch(session, "/compact 1").error
    assert not REGISTRY.dispatch(session, "/new").error
    toolbar = "".join(text for _, text in make_toolbar(session)())
    assert "/compact" not in str(REGISTRY.dispatch(session, "/usage").rows)
    assert " 0 tokens " in toolbar, toolbar


def test_a_reply_given_an_undone_replys_id_does_not_hide_the_undone_spending_on_resume(srv, tmp_path):
    # SQLite gives a deleted row's id to the next row: the ledger must not take the new reply for the old one.
    session = long_session(srv, tmp_path, 2)
    session.undo()
    session.send("after the undo")
    before = REGISTRY.dispatch(session, "/usage").rows
    assert [r[0] for r in before] == ["1", "2", "undone or replaced", "session"]
    resumed = load_session(session.journal, session.id, client=session.client)
    resumed.tokenizer = tokenizer(window=WINDOW, output=OUTPUT)
    assert REGISTRY.dispatch(resumed, "/usage").rows == before


def test_a_new_session_given_a_deleted_sessions_id_does_not_inherit_its_spending(srv, tmp_path):
    first = long_session(srv, tmp_path, 2)
    first.journal.store.delete_session(first.id)
    second = make_session(client=first.client, model="test-model", journal=first.journal.fork(), tokenizer=first.tokenizer)
    second.send("a new start")
    assert second.id == first.id  # the id was reused...
    resumed = load_session(second.journal, second.id, client=second.client)
    resumed.tokenizer = tokenizer(window=WINDOW, output=OUTPUT)
    assert [r[0] for r in REGISTRY.dispatch(resumed, "/usage").rows] == ["1", "session"]  # ...the spending was not


def test_a_budget_warning_brought_by_compact_is_shown_with_its_result(srv, tmp_path):
    import re

    from chatcli.core.budget import Budget

    session = long_session(srv, tmp_path, 4)
    session.accounts.budget, session.accounts._guard = Budget(daily_tokens=1), None
    refused = REGISTRY.dispatch(session, "/compact 1")  # refused, so nothing is spent: it says what it would come to
    after = int(re.search(r"spending to ([\d,]+) tokens", refused.text)[1].replace(",", ""))
    session.accounts.budget, session.accounts._guard = Budget(daily_tokens=int(after / 0.9)), None  # the summary request passes 80%
    srv.script(Reply("Notes."))
    result = REGISTRY.dispatch(session, "/compact 1")
    assert not result.error and "90% of the daily_tokens budget" in result.text, result.text


def test_reasoning_cut_short_before_the_answer_is_still_counted(srv, tmp_path):
    session = long_session(srv, tmp_path, 0)
    srv.script(Reply("", reasoning="thinking hard " * 50, usage=False))
    turn = session.send("a hard question")
    row = session.accounts.cost_of(turn)
    assert turn.reply == "" and row.usage is not None and row.usage.completion_tokens >= 700 and not row.exact
