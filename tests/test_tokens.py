"""Token counting (exact and offline), context windows, and fitting a conversation.

tiktoken cannot download its real BPE files here, so the exact path uses a
small byte-level encoding built in the test: each UTF-8 byte is one token.
In-process it is registered in tiktoken's own registry under a test name,
and for the subprocess it comes from a `tiktoken_ext` plugin on PYTHONPATH,
the way tiktoken finds extra encodings; chatcli reaches it through config
(`[models."NAME"] encoding = ...`), as a user would for another server's model.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.resume import load_session
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, ERROR
from chatcli.llm.client import ChatClient
from chatcli.llm.tokens import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    Count,
    Tokenizer,
    estimate,
    fit,
)
from tests.support.keys import TEST_KEY
from tests.support.running import make_env
from tests.support.sessions import make_session, priced_session
from tests.support.tokens import PLUGIN, TEST_ENCODING, tokenizer

pytestmark = pytest.mark.usefixtures("byte_encoding")  # one token a byte, registered for the module


def test_exact_counts_in_the_models_encoding_with_chat_overhead():
    t = tokenizer()
    assert t.message("test-model", "user", "héllo") == Count(len("héllo".encode()) + MESSAGE_OVERHEAD, exact=True)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert t.messages("test-model", messages) == Count(REPLY_PRIMING + (8 + 3) + (2 + 3), exact=True)
    assert str(t.messages("test-model", messages)) == "19"  # exact: no ≈


def test_counts_are_cached_per_message(byte_encoding):
    t = tokenizer()
    calls = []

    class Counting:
        def encode(self, text, **kwargs):
            calls.append(text)
            return byte_encoding.encode(text, **kwargs)

    t.encodings._loaded[TEST_ENCODING] = Counting()
    history = [{"role": "user", "content": f"message {i}"} for i in range(50)]
    t.messages("test-model", history)
    t.messages("test-model", history + [{"role": "user", "content": "new"}])
    assert len(calls) == 51  # the second count encoded only the new message


def test_without_the_encoding_counts_are_marked_estimates_and_say_why():
    t = tokenizer(encoding="no-such-encoding")
    count = t.message("test-model", "user", "x" * 400)
    assert count == Count(estimate("x" * 400) + MESSAGE_OVERHEAD, exact=False)
    assert str(count).startswith("≈")
    assert "could not load no-such-encoding" in t.problem("test-model")  # failed, not merely still loading


def test_model_families_and_overrides():
    t = Tokenizer(overrides={"gpt-4o": {"context_window": 5000}})
    assert t.limits("gpt-4o-mini-2024-07-18").context_window == 128_000  # another model, same prefix
    assert t.limits("gpt-4o").context_window == 5000
    assert t.limits("gpt-4o-2024-08-06").context_window == 5000  # a dated snapshot of the overridden model
    assert t.limits("gpt-4-0125-preview").context_window == 128_000  # not gpt-4's 8k
    from chatcli.llm.pricing import price_for

    assert price_for("o1-pro").input == 150.0 and price_for("o3-pro-2025-06-10").input == 20.0
    assert t.limits("gpt-4-0613").encoding == "cl100k_base"
    assert t.limits("llama3.2").context_window == 8192  # the default for unknown models


def test_fit_drops_the_oldest_turns_and_never_the_head_or_latest():
    c = Count
    plan = fit(head=[c(10)], turns=[c(40), c(40), c(40)], latest=c(20), window=150, reserve=50)
    assert (plan.left_out, plan.tokens, plan.fits) == (2, c(70), True)
    assert fit(head=[c(10)], turns=[c(40)], latest=c(20), window=150, reserve=50).left_out == 0
    alone = fit(head=[c(10)], turns=[c(40)], latest=c(200), window=150, reserve=50)
    assert (alone.left_out, alone.fits) == (1, False)


@pytest.fixture
def small(srv) -> Session:
    """A session whose model has a 400-token window, 60 of them kept for the reply."""
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    return make_session(client=client, model="test-model", system="Be brief.", tokenizer=tokenizer(window=400, output=60))


def test_a_long_conversation_keeps_working_leaving_out_the_oldest_turns(srv, small):
    for i in range(12):
        turn = small.send(f"question number {i} " + "x" * 40)
        assert turn.status == COMPLETE
    last = srv.chat_requests[-1].body["messages"]
    assert last[0] == {"role": "system", "content": "Be brief."}
    assert last[-1]["content"].startswith("question number 11")
    assert turn.left_out > 0
    assert len(last) == 2 + 2 * (11 - turn.left_out)  # system, the turns that fit, the new message
    sent = Tokenizer.messages(small.tokenizer, "test-model", last)
    assert sent.tokens + 60 <= 400
    assert len(small.turns) == 12  # everything is still in the history


def test_a_message_too_big_for_the_window_is_refused_with_the_sizes_and_nothing_is_sent(srv, small):
    turn = small.send("y" * 2000)
    assert turn.status == ERROR and srv.chat_requests == []
    message = turn.error.message
    assert "2,003 tokens" in message and "400-token window" in message and "60 tokens for the reply" in message
    assert small.turns[-1].user == "y" * 2000  # the words are kept


def test_tokens_command_shows_what_the_next_request_carries(srv, small):
    for i in range(12):
        small.send(f"question number {i} " + "x" * 40)
    rows = dict((name, value) for name, value in REGISTRY.dispatch(small, "/tokens").rows)
    assert rows["system prompt"] == str(9 + MESSAGE_OVERHEAD)
    assert rows["context window"] == "400 (set in the config)" and rows["kept free for the reply"] == "60"
    assert int(rows["left out to fit"].split()[0]) > 0


def test_one_shot_piped_input_larger_than_the_window_is_a_clear_error(srv, run_chatcli, tmp_path):
    plugins = tmp_path / "plugins" / "tiktoken_ext"
    plugins.mkdir(parents=True)
    (plugins / "chatcli_test_encoding.py").write_text(textwrap.dedent(PLUGIN))
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'model = "test-model"\n[models."test-model"]\ncontext_window = 1000\nmax_output_tokens = 100\nencoding = "{TEST_ENCODING}"\n'
    )
    env = {"PYTHONPATH": str(tmp_path / "plugins")}
    result = run_chatcli("summarize this", input="z" * 5000, env=env)
    assert result.returncode == 1 and srv.chat_requests == []
    # "summarize this", a blank line, 5000 bytes, and 3 tokens of overhead: 14 + 2 + 5000 + 3
    assert result.stderr.count("\n") == 1 and "5,019 tokens" in result.stderr and "1,000-token window" in result.stderr

    ok = run_chatcli("short question", env=env)
    assert ok.returncode == 0 and ok.stdout == "echo: short question\n"


def test_the_repl_says_what_it_left_out_and_the_toolbar_shows_the_context_meter(srv, small):
    import io

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from chatcli.cli.repl import Repl
    from chatcli.ui.prompt import make_toolbar

    out = io.StringIO()
    with create_pipe_input() as keys:
        repl = Repl(small, out=out, markdown=False, color=False, input=keys, output=DummyOutput(), warm_up=False)
        keys.send_text("".join(f"question number {i} {'x' * 40}\r" for i in range(12)) + "\x04")
        repl.run()
    assert "oldest turns to fit the context window (still in the history)" in out.getvalue()
    toolbar = "".join(text for _, text in make_toolbar(small)())
    meter = re.search(r"context ([\d,]+)/400 \((\d+)%\)", toolbar)
    assert meter, toolbar
    # The meter is what the next request carries before your message. Send one byte and count,
    # in the byte-level encoding, what reached the server: priming, then each message's bytes and overhead.
    small.send("?")
    sent = srv.chat_requests[-1].body["messages"]
    carried = REPLY_PRIMING + sum(len(m["content"].encode()) + MESSAGE_OVERHEAD for m in sent) - len("?")
    assert (int(meter[1].replace(",", "")), int(meter[2])) == (carried, round(100 * carried / 400))


def test_a_context_length_error_fits_tighter_and_retries_once(srv, small):
    from tests.support.server import Error, Reply

    small.send("first " + "x" * 20)
    small.send("second " + "x" * 20)
    srv.script(Error(400, "This model's maximum context length is 300 tokens", code="context_length_exceeded"), Reply("fits now"))
    turn = small.send("third")
    assert turn.status == COMPLETE and turn.reply == "fits now"
    first_try, retry = srv.chat_requests[-2:]
    assert len(retry.body["messages"]) < len(first_try.body["messages"])
    assert retry.body["messages"][0]["role"] == "system" and retry.body["messages"][-1]["content"] == "third"
    assert turn.left_out >= 1


def test_a_second_context_length_error_is_one_sentence(srv, small):
    from tests.support.server import Error

    small.send("first " + "x" * 20)
    too_long = Error(400, "maximum context length exceeded", code="context_length_exceeded")
    srv.script(too_long, too_long)
    turn = small.send("second")
    assert turn.status == ERROR and "context window" in turn.error.message
    assert len(srv.chat_requests) == 3  # the first turn, then one try and one retry


def test_compact_summarises_older_turns_and_shrinks_what_is_sent(srv, isolated_env, tmp_path):
    from chatcli.core.journal import Journal
    from tests.support.server import Reply

    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    journal = Journal.open(tmp_path / "chatcli.db")
    session = make_session(client=client, model="test-model", system="Be brief.", journal=journal, tokenizer=tokenizer())
    for i in range(6):
        session.send(f"question {i} " + "about the schema " * 10)
    srv.script(Reply("Notes: six questions about the schema."))
    result = REGISTRY.dispatch(session, "/compact 2")
    assert not result.error, result.text
    after, before = [int(n.replace(",", "")) for n in re.search(r"carries ([\d,]+) tokens instead of ([\d,]+)", result.text).groups()]
    assert after < before

    summary_request = srv.chat_requests[-1].body["messages"]
    assert "question 0" in summary_request[1]["content"] and "question 4" not in summary_request[1]["content"]

    session.send("next")
    sent = srv.chat_requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1]["role"] == "system" and "six questions about the schema" in sent[1]["content"]
    assert [m["content"].split(" ")[0:2] for m in sent if m["role"] == "user"] == [["question", "4"], ["question", "5"], ["next"]]
    assert len(session.turns) == 7  # the originals stay in the history...

    rows = dict(REGISTRY.dispatch(session, "/tokens").rows)
    assert rows["summary of earlier turns (/compact)"] != "0"
    resumed = load_session(journal, session.id, client=client)  # ...and in the store, with the summary
    assert len(resumed.turns) == 7
    resumed.tokenizer = tokenizer()
    assert resumed.messages("again") == session.messages("again")


def test_compact_with_nothing_older_says_so(srv, small):
    small.send("only turn")
    result = REGISTRY.dispatch(small, "/compact")
    assert result.error and "Nothing to compact" in result.text


def test_prices_from_config_override_and_extend_the_table(tmp_path):
    from chatcli.base.events import Usage
    from chatcli.llm.pricing import Pricing

    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[prices."test-model"]\ninput = 2.0\noutput = 8.0\n[prices."gpt-4o"]\ninput = 1.0\ncached_input = 0.5\noutput = 4.0\n')
    from chatcli.config.settings import load_config

    pricing = Pricing(load_config(make_env()).prices)
    assert pricing.cost("test-model", Usage(1_000_000, 500_000, 1_500_000)) == pytest.approx(2.0 + 4.0)
    assert pricing.cost("gpt-4o-2024-08-06", Usage(1_000_000, 0, 1_000_000, cached_tokens=1_000_000)) == pytest.approx(0.5)
    assert pricing.cost("gpt-4o-mini", Usage(1_000_000, 0, 1_000_000)) == pytest.approx(0.15)  # the table, untouched
    assert pricing.cost("llama3.2", Usage(10, 10, 20)) is None


def test_bad_price_tables_name_the_model_and_what_is_needed():
    from chatcli.base.errors import ConfigError
    from chatcli.config.settings import load_config

    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    for body, words in [('[prices."m"]\ninput = 1.0\n', "needs input and output"), ('[prices."m"]\ninput = -1\noutput = 1\n', "'input' of the price of 'm'")]:
        config.write_text(body)
        with pytest.raises(ConfigError, match=words):
            load_config(make_env())


def test_usage_and_toolbar_agree_and_mark_estimates_where_the_server_reported_none(srv, small):
    from chatcli.config.table import Price
    from chatcli.llm.pricing import Pricing
    from chatcli.ui.prompt import make_toolbar
    from tests.support.server import Reply

    small.accounts.pricing = Pricing({"test-model": Price(1000.0, 1000.0, 1000.0)})  # $1000 per million: visible cents
    small.send("reported")
    srv.script(Reply("not reported", usage=False))
    small.send("unreported")
    rows = REGISTRY.dispatch(small, "/usage").rows
    assert not rows[0][-1].startswith("≈") and rows[1][-1].startswith("≈$")
    assert rows[-1][0] == "session" and rows[-1][-1].startswith("≈$")
    toolbar = "".join(text for _, text in make_toolbar(small)())
    assert f"{rows[-1][4]} tokens {rows[-1][-1]}" in toolbar  # the same totals, the same marks


# --------------------------------------------------------------------------- #
# budgets
# --------------------------------------------------------------------------- #


def test_a_daily_cap_refuses_the_request_that_would_pass_it_and_sends_nothing(srv):
    session = priced_session(srv, daily_usd=1.00)
    first = session.send("hello")  # about 14 prompt + 3 completion tokens: about $0.17
    assert first.status == COMPLETE
    for _ in range(10):
        turn = session.send("hello again")
        if turn.status == ERROR:
            break
    sent = len(srv.chat_requests)
    assert turn.status == ERROR and "past the daily_usd budget of $1.00" in turn.error.message
    assert "raise [budget] daily_usd" in turn.error.message
    assert session.turns[-1].user == "hello again"  # the words are kept
    session.send("still refused")
    assert len(srv.chat_requests) == sent  # nothing more went out


def test_at_80_percent_of_a_cap_it_warns_once(srv):
    session = priced_session(srv, daily_tokens=200)
    notices = [session.send(f"message {i}").notice for i in range(6)]
    warned = [n for n in notices if n]
    assert len(warned) == 1 and "daily_tokens budget of 200 tokens" in warned[0]


def test_the_ledger_keeps_spending_after_its_session_is_deleted(srv, tmp_path):
    from chatcli.core.budget import period_starts
    from chatcli.core.journal import Journal

    journal = Journal.open(tmp_path / "chatcli.db")
    session = priced_session(srv, journal=journal)
    session.send("hello")
    spent = journal.spend_since(period_starts()[0])
    assert spent.usd > 0 and spent.tokens > 0
    journal.store.delete_session(session.id)
    assert journal.spend_since(period_starts()[0]) == spent


def test_a_budget_cap_stops_the_next_one_shot_ask(srv, run_chatcli):
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        '[models."gpt-4o-mini"]\nmax_output_tokens = 1\n'  # the budget check counts the reply's reserve too
        '[prices."gpt-4o-mini"]\ninput = 10000.0\noutput = 10000.0\n[budget]\ndaily_usd = 0.12\n'
    )
    assert run_chatcli("first ask").returncode == 0  # 6 + 3 tokens reported by the server: $0.09
    refused = run_chatcli("second ask")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "daily_usd budget of $0.12" in refused.stderr
    assert len(srv.chat_requests) == 1


def test_usage_command_toolbar_and_chatcli_usage_agree(srv, run_chatcli, tmp_path):
    from chatcli.core.journal import Journal
    from chatcli.ui.prompt import make_toolbar

    db = tmp_path / "chatcli.db"
    session = priced_session(srv, journal=Journal.open(db))
    for text in ("one", "two two", "three three three"):
        session.send(text)
    session_row = REGISTRY.dispatch(session, "/usage").rows[-1]
    toolbar = "".join(text for _, text in make_toolbar(session)())
    assert f"{session_row[4]} tokens {session_row[5]}" in toolbar

    report = run_chatcli("usage", "--by", "model", "--db", str(db))
    assert report.returncode == 0, report.stderr
    total = next(line for line in report.stdout.splitlines() if line.startswith("total"))
    assert total.split() == ["total", session_row[4], session_row[5]]
    model = next(line for line in report.stdout.splitlines() if line.startswith("test-model"))
    assert "█" * 30 in model  # the only model has the longest bar


def test_verbose_says_once_why_counts_are_estimates(srv, run_chatcli):
    """Offline, tiktoken cannot fetch o200k_base: counts fall back to estimates, and --verbose says why."""
    # Offline for certain, even on a machine with a network: an empty cache, and a proxy that refuses.
    env = {"TIKTOKEN_CACHE_DIR": str(Path(os.environ["HOME"]) / "empty-tiktoken-cache"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    # A request near the model's window, where counting matters (far from it, chatcli does not load tiktoken).
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[models."gpt-4o-mini"]\ncontext_window = 2000\n')
    hello = ("hello " * 700).strip()
    quiet = run_chatcli(hello, env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_chatcli("-v", hello, env=env)
    assert loud.returncode == 0 and loud.stdout == f"echo: {hello}\n"
    said = [line for line in loud.stderr.splitlines() if line.startswith("chatcli: ")]  # not the request log
    assert len(said) == 1 and "token counts are estimates (≈): tiktoken could not load o200k_base" in said[0]


def test_a_refused_turn_claims_nothing_was_left_out(srv):
    from chatcli.core.budget import Budget

    session = priced_session(srv)
    session.tokenizer = tokenizer(window=200, output=20)
    for _ in range(6):
        session.send("a longer question " * 3)
    assert session.plan("next").left_out > 0  # this request would leave turns out...
    session.accounts.budget, session.accounts._guard = Budget(daily_tokens=1), None
    refused = session.send("next")
    assert refused.status == ERROR and "daily_tokens" in refused.error.message
    assert refused.left_out == 0  # ...but it was refused, so nothing was left out


def test_compact_refuses_a_summary_that_is_not_shorter(srv, small):
    for i in range(4):
        small.send(f"question {i}")
    before = small.messages("next")
    # The test server echoes by default: the "summary" is the whole transcript again.
    result = REGISTRY.dispatch(small, "/compact 1")
    assert result.error and "no shorter" in result.text
    assert small.messages("next") == before and small.summary is None


def test_compact_is_a_request_like_any_other_for_budgets(srv, tmp_path):
    from chatcli.core.budget import Budget, period_starts
    from chatcli.core.journal import Journal
    from tests.support.server import Reply

    journal = Journal.open(tmp_path / "chatcli.db")
    session = priced_session(srv, journal=journal)
    for i in range(4):
        session.send(f"question {i} " + "about the schema " * 10)
    spent_before = journal.spend_since(period_starts()[0])
    srv.script(Reply("Notes: schema questions."))
    assert not REGISTRY.dispatch(session, "/compact 1").error
    assert journal.spend_since(period_starts()[0]).tokens > spent_before.tokens  # the summary's tokens are in the ledger

    session.accounts.budget, session.accounts._guard = Budget(daily_tokens=1), None
    refused = REGISTRY.dispatch(session, "/compact 0")
    assert refused.error and "daily_tokens" in refused.text


def test_usage_keeps_counting_undone_retried_and_compaction_requests_as_the_ledger_does(srv, tmp_path):
    from chatcli.core.budget import period_starts
    from chatcli.core.journal import Journal
    from tests.support.server import Reply

    journal = Journal.open(tmp_path / "chatcli.db")
    session = priced_session(srv, journal=journal)
    for i in range(4):
        session.send(f"question {i} " + "about the schema " * 10)
    session.retry()
    session.undo()
    srv.script(Reply("Notes: schema."))
    assert not REGISTRY.dispatch(session, "/compact 1").error
    rows = REGISTRY.dispatch(session, "/usage").rows
    assert any(r[0] == "undone or replaced" for r in rows) and any(r[0] == "/compact" for r in rows)
    spent = journal.spend_since(period_starts()[0])
    assert rows[-1][4] == f"{spent.tokens:,}"
    from chatcli.base.format import format_cost

    assert rows[-1][5] == format_cost(spent.usd)


def test_chatcli_usage_marks_estimates_and_never_prices_an_unpriced_model(srv, run_chatcli, tmp_path):
    import time as _time

    from chatcli.store.db import Spend, Store

    db = tmp_path / "chatcli.db"
    store = Store.open(db)
    now = _time.time()
    store.add_spend(Spend(now, "priced-model", 10, 5, 15, 0.5, estimated=True))
    store.add_spend(Spend(now, "local-model", 20, 10, 30, None))
    store.close()
    out = run_chatcli("usage", "--by", "model", "--db", str(db)).stdout.splitlines()
    line = {row.split()[0]: row for row in out if row.split()}
    assert "≈15" in line["priced-model"] and "≈$0.5000" in line["priced-model"]
    assert "cost unknown" in line["local-model"] and "$0.0000" not in line["local-model"]
    assert "≈45" in line["total"] and "≈$0.5000 + cost unknown" in line["total"]


def test_a_request_far_from_the_window_does_not_load_tiktoken(srv):
    """Counting it exactly would cost more than it is worth: the estimate is used, and nothing is loaded."""
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    t = Tokenizer(overrides={"test-model": {"context_window": 10_000, "max_output_tokens": 100, "encoding": TEST_ENCODING}})
    session = make_session(client=client, model="test-model", tokenizer=t)
    session.send("a short question")
    assert t.encodings._loading == {} and session.turns[-1].sent.exact is False
    session.send("x" * 30_000)  # about 7,500 tokens by the estimate: near the window, so counted exactly
    assert session.turns[-1].sent.exact is True


def test_switching_model_in_the_repl_loads_the_new_models_encoding_for_the_toolbar(srv):
    import io

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from chatcli.cli.repl import Repl

    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    t = Tokenizer(overrides={"other-model": {"encoding": TEST_ENCODING}})
    session = make_session(client=client, model="test-model", tokenizer=t)
    with create_pipe_input() as keys:
        repl = Repl(session, out=io.StringIO(), markdown=False, color=False, input=keys, output=DummyOutput(), warm_up=False)
        keys.send_text("/model other-model\r\x04")
        repl.run()
    assert TEST_ENCODING in t.encodings._loading  # the switch started loading it...
    t.encodings._loading[TEST_ENCODING].join(5)
    assert t.message("other-model", "user", "abc").exact  # ...and the toolbar's counts are exact again
