"""Budgets that hold: across runs, in incognito, and for spending the price table cannot see.

The in-process tests use the byte-level test encoding from test_tokens, and
a price of $0.01 a token so that a few short requests reach a cap.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from pathlib import Path

import pytest

import chatcli.store.db
from chatcli.core.budget import Budget, period_starts
from chatcli.core.journal import Journal
from chatcli.core.turn import COMPLETE, ERROR
from chatcli.llm.pricing import Pricing
from chatcli.store.db import Spend, Store, StoredMessage
from tests.support.sessions import priced_session
from tests.support.store import lock_held, read_only

pytestmark = pytest.mark.usefixtures("byte_encoding")  # one token a byte, registered for the module


def write_config(text: str) -> Path:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# Each one-shot ask: 6 prompt + 3 completion tokens reported by the server, at $0.01 a token: $0.09.
PRICED = '[models."gpt-4o-mini"]\nmax_output_tokens = 1\n[prices."gpt-4o-mini"]\ninput = 10000.0\noutput = 10000.0\n'


def test_incognito_with_a_budget_records_spending_but_no_words(srv, run_chatcli, tmp_path):
    write_config(PRICED + "[budget]\ndaily_usd = 0.12\n")
    db = tmp_path / "ledger.db"
    first = run_chatcli("--no-save", "--db", str(db), "zq1 ask")
    assert first.returncode == 0, first.stderr
    refused = run_chatcli("--no-save", "--db", str(db), "zq2 ask")
    assert refused.returncode == 1 and "spending to $0.18, past the daily_usd budget of $0.12" in refused.stderr
    assert len(srv.chat_requests) == 1  # incognito did not get round the cap

    assert count(db, "usage_ledger") == 1
    assert count(db, "sessions") == 0 and count(db, "messages") == 0
    assert b"zq1" not in db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists() else b"")


def test_incognito_without_a_budget_writes_nothing(srv, run_chatcli, tmp_path):
    write_config(PRICED)
    result = run_chatcli("--no-save", "hello")
    assert result.returncode == 0, result.stderr
    data = Path(os.environ["XDG_DATA_HOME"])
    assert list(data.rglob("*")) == []


def test_the_80_percent_warning_is_given_once_across_one_shot_runs(srv, run_chatcli):
    # 70 tokens spent already today, then about 9 a run against 100: two or three runs land
    # between 80% and the cap before one is refused.
    write_config(PRICED + "[budget]\ndaily_tokens = 100\n")
    store = Store.open(Path(os.environ["XDG_DATA_HOME"]) / "chatcli" / "chatcli.db")
    store.add_spend(Spend(time.time(), "gpt-4o-mini", 50, 20, 70, 0.7))
    store.close()
    runs = []
    while not runs or runs[-1].returncode == 0:
        runs.append(run_chatcli(f"ask {len(runs)}"))
        assert len(runs) < 20
    assert "past the daily_tokens budget" in runs[-1].stderr
    warned = [i for i, r in enumerate(runs) if "of the daily_tokens budget of 100 tokens" in r.stderr and r.returncode == 0]
    assert len(warned) == 1, [r.stderr for r in runs]
    assert warned[0] < len(runs) - 2  # at least one later run, also past 80%, ran without a second warning


def test_a_usd_cap_says_once_that_it_cannot_see_a_model_with_no_price(srv, tmp_path):
    journal = Journal.open(tmp_path / "chatcli.db")
    session = priced_session(srv, journal=journal, daily_usd=5.0)
    session.accounts.pricing = Pricing({})  # test-model has no price
    first, second = session.send("hello"), session.send("hello again")
    assert first.status == COMPLETE and second.status == COMPLETE
    assert "cannot count spending on models with no price (test-model)" in first.notice
    assert 'add [prices."test-model"]' in first.notice
    assert second.notice is None

    later = priced_session(srv, journal=journal.fork(), daily_usd=5.0)  # another run, the same day
    later.accounts.pricing = Pricing({})
    assert later.send("hello").notice is None


def test_ledger_rows_with_no_cost_are_priced_now_when_the_model_has_a_price(srv, tmp_path):
    # Rows from before the ledger kept costs (migration 4 copied tokens only) still count against USD caps.
    store = Store.open(tmp_path / "chatcli.db")
    store.add_spend(Spend(time.time(), "test-model", 60, 40, 100, None))  # $1.00 at $0.01 a token
    store.close()
    session = priced_session(srv, journal=Journal.open(tmp_path / "chatcli.db"), daily_usd=1.05)
    turn = session.send("hello")
    assert turn.status == ERROR and "past the daily_usd budget of $1.05" in turn.error.message
    assert srv.chat_requests == []


def test_the_ledger_is_used_for_budgets_when_history_cannot_be_saved_but_the_session_still_counts(srv):
    session = priced_session(srv, daily_tokens=60)  # no ledger at all: the session's own spending counts
    turns = [session.send("hello") for _ in range(5)]
    assert turns[0].status == COMPLETE and turns[-1].status == ERROR
    assert "daily_tokens budget of 60 tokens" in turns[-1].error.message


def test_a_new_session_does_not_repeat_a_warning_already_given_today(srv, tmp_path):
    journal = Journal.open(tmp_path / "chatcli.db")
    session = priced_session(srv, journal=journal, daily_tokens=1000)
    notices = []
    while not any(notices):
        notices.append(session.send("message").notice)
    assert "of the daily_tokens budget of 1,000 tokens" in notices[-1]
    while journal.spend_since(period_starts()[0]).tokens < 800:  # until what is spent is past 80% alone
        assert session.send("message").notice is None
    again = priced_session(srv, journal=journal.fork(), daily_tokens=1000)  # another run, the same day
    turn = again.send("message")
    assert turn.status == COMPLETE and turn.notice is None


def test_a_refusal_shows_enough_places_to_tell_spending_from_a_small_cap():
    from chatcli.core.budget import BudgetGuard, Spending

    guard = BudgetGuard(Budget(daily_usd=0.0009), lambda since: Spending(usd=0.0008))
    refusal, _ = guard.check(cost=0.00012, tokens=10, model="m")
    assert "spending to $0.00092, past the daily_usd budget of $0.00090" in refusal
    _, warning = BudgetGuard(Budget(daily_usd=0.0035), lambda since: Spending(usd=0.0028)).check(cost=0.00007, tokens=1, model="m")
    assert "comes to $0.0029, 82% of the daily_usd budget of $0.0035" in warning


def test_a_raised_cap_warns_again_at_80_percent_of_the_new_cap():
    from chatcli.core.budget import BudgetGuard, Spending

    given: set[tuple[str, float]] = set()

    def claim(name: str, since: float) -> bool:  # as the ledger records it: once per name and period
        if (name, since) in given:
            return False
        given.add((name, since))
        return True

    spent = Spending(tokens=850)
    assert "85% of the daily_tokens budget" in BudgetGuard(Budget(daily_tokens=1000), lambda s: spent, claim).check(cost=0, tokens=0, model="m")[1]
    assert BudgetGuard(Budget(daily_tokens=1000), lambda s: spent, claim).check(cost=0, tokens=0, model="m")[1] is None
    raised = BudgetGuard(Budget(daily_tokens=1050), lambda s: spent, claim)
    assert "81% of the daily_tokens budget of 1,050 tokens" in raised.check(cost=0, tokens=0, model="m")[1]


def test_a_cap_of_zero_refuses_what_costs_and_lets_free_requests_through_without_a_crash():
    from chatcli.core.budget import BudgetGuard, Spending

    guard = BudgetGuard(Budget(daily_usd=0.0), lambda since: Spending())
    assert guard.check(cost=0.0, tokens=5, model="free") == (None, None)
    refusal, _ = guard.check(cost=0.001, tokens=5, model="paid")
    assert "past the daily_usd budget" in refusal


# --------------------------------------------------------------------------- #
# A ledger that cannot be used: the cap fails closed
# --------------------------------------------------------------------------- #


@contextlib.contextmanager
def unusable(db: Path, how: str):
    """The ledger at db made unusable as it can be in life; yields the path to give chatcli."""
    if how == "locked":  # another program holds it, reads too, past the busy timeout
        with lock_held(db, "all"):
            yield db
    elif how == "read-only":
        with read_only(db):
            yield db
    elif how == "damaged":
        data = bytearray(db.read_bytes())
        data[4096:] = b"\xa5" * (len(data) - 4096)  # the header page stays; what follows is garbage
        db.write_bytes(bytes(data))
        yield db
    else:  # a bad path: its directory is a file
        (db.parent / "a-file").write_text("not a directory\n")
        yield db.parent / "a-file" / "ledger.db"


WHY = {
    "locked": r"stayed locked by another program for more than 0\.2s",
    "read-only": r"cannot be written .*; check its permissions",
    "damaged": r"is damaged; run `chatcli sessions check`",
    "bad path": r"a-file/ledger\.db could not be created",
}


@pytest.mark.parametrize("how", list(WHY))
def test_a_cap_that_cannot_be_checked_refuses_the_request_and_says_why(srv, run_chatcli, tmp_path, monkeypatch, how):
    monkeypatch.setattr(chatcli.store.db, "BUSY_TIMEOUT_MS", 200)  # a seam for speed; the lock is real
    write_config(PRICED + "[budget]\ndaily_tokens = 100\n")
    db = tmp_path / "ledger.db"
    store = Store.open(db)
    store.add_spend(Spend(time.time(), "gpt-4o-mini", 60, 24, 84, 0.84))  # 84 of the 100 tokens spent today
    sid = store.create_session(model="gpt-4o-mini", system=None, params={})
    for n in range(40):  # pages enough that the ledger's are among the damaged ones
        store.add_message(sid, StoredMessage(0, "user", f"message {n} " + "words " * 100, time.time()))
    store.close()
    with unusable(db, how) as given:
        result = run_chatcli("--db", str(given), "one more question")
    assert result.returncode == 1 and srv.chat_requests == []
    [line] = result.stderr.splitlines()  # one sentence: the history's own warning would say the same again
    assert line.startswith("chatcli: This request was not sent, because a [budget] cap is set and the usage ledger "
                           "cannot be used: "), line
    assert re.search(WHY[how], line), line
    assert "%" not in line  # never "84% of the daily_tokens budget": it could not be counted
