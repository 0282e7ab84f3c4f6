"""Usage transparency and the provider's own cost (issue 16, items 2 and 3).

Cached prompt tokens are priced at the cached price on every path; where the server's usage
carries a cost (OpenRouter's usage accounting, asked for with `usage: {include: true}`), that
cost is the request's cost everywhere: /usage, the toolbar, --json, the ledger, `chatcli usage`
and the budget. The OpenRouter-shaped server is tests/support/flavors.py's OpenRouter.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from chatcli.base.events import Usage
from chatcli.base.format import format_cost
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.config.table import Price, read_prices_table
from chatcli.core.journal import Journal
from chatcli.llm.capabilities import Adapter, refused_parameter
from chatcli.llm.client import ChatClient, asks_for_cost
from chatcli.llm.pricing import PRICES, Pricing
from chatcli.llm.sse import chunk_events
from chatcli.store.db import Store
from chatcli.store.migrations import MIGRATIONS, _m11_ledger_details
from tests.support.flavors import OpenRouter, prompt_tokens
from tests.support.keys import TEST_KEY
from tests.support.server import ChatServer, Error, Reply, compute_usage
from tests.support.sessions import default_db, make_session

# --------------------------------------------------------------------------- #
# Reading the provider's cost, and pricing
# --------------------------------------------------------------------------- #


def _usage_of(usage: dict) -> Usage:
    (event,) = chunk_events(json.dumps({"choices": [], "usage": usage}), None)
    assert isinstance(event, Usage)
    return event


def test_the_providers_cost_is_read_from_the_usage_and_only_when_it_is_a_sum_of_money():
    base = {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196}
    assert _usage_of({**base, "cost": 0.0025}).cost == 0.0025
    assert _usage_of({**base, "cost": 0}).cost == 0.0  # a free model: $0, not unknown
    for odd in ("0.5", True, -1, None, [1]):
        assert _usage_of({**base, "cost": odd}).cost is None, odd
    assert _usage_of(base).cost is None


def test_a_byok_request_adds_the_upstream_bill_and_any_other_does_not_count_it_twice():
    base = {"prompt_tokens": 9171, "completion_tokens": 113, "total_tokens": 9284}
    # OpenRouter's own credits: the upstream figure breaks the same cost down.
    own = {**base, "cost": 0.00000285, "is_byok": False, "cost_details": {"upstream_inference_cost": 0.00000285}}
    assert _usage_of(own).cost == 0.00000285
    # The user's own key: OpenRouter's cost is its fee; the provider billed the key the rest.
    byok = {**base, "cost": 0.001, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.0360795}}
    assert _usage_of(byok).cost == pytest.approx(0.0370795)


def test_usages_added_keep_the_providers_cost_only_when_each_has_one():
    a, b = Usage(10, 2, 12, cost=0.5), Usage(20, 4, 24, cost=0.25)
    assert (a + b).cost == 0.75 and (a + b).total_tokens == 36
    assert (a + Usage(1, 1, 2)).cost is None  # half a bill is no bill
    assert sum((a, b), Usage()).cost == 0.75  # sum() starts from an empty usage


def test_the_providers_cost_wins_over_list_prices_and_cached_input_goes_at_the_cached_price(tmp_path: Path):
    pricing = Pricing()
    usage = Usage(2000, 300, 2300, cached_tokens=1536)
    price = PRICES["gpt-4o-mini"]
    assert pricing.cost("gpt-4o-mini", usage) == pytest.approx(
        (464 * price.input + 1536 * price.cached_input + 300 * price.output) / 1e6)
    assert pricing.cost("gpt-4o-mini", Usage(2000, 300, 2300, cached_tokens=1536, cost=0.42)) == 0.42
    assert pricing.cost("a-model-with-no-price", Usage(10, 1, 11, cost=0.01)) == 0.01
    # A [prices] entry with no cached_input: cached tokens cost what any input token costs.
    table = read_prices_table({"my-model": {"input": 1.0, "output": 2.0}}, tmp_path / "config.toml")
    assert Pricing(table).cost("my-model", Usage(1000, 0, 1000, cached_tokens=400)) == pytest.approx(1000 * 1.0 / 1e6)


def test_usage_accounting_is_asked_of_openrouter_alone_unless_the_config_says():
    assert asks_for_cost(Config(base_url="https://openrouter.ai/api/v1")) is True
    assert asks_for_cost(Config(base_url="https://OpenRouter.ai/api/v1")) is True
    assert asks_for_cost(Config(base_url="https://api.openai.com/v1")) is False
    assert asks_for_cost(Config(base_url="https://openrouter.ai.example.com/v1")) is False
    assert asks_for_cost(Config(base_url="http://localhost:4000/v1", usage_accounting=True)) is True  # a LiteLLM proxy
    assert asks_for_cost(Config(base_url="https://openrouter.ai/api/v1", usage_accounting=False)) is False


def test_a_server_that_refuses_the_usage_field_teaches_the_adapter_to_leave_it_out():
    adapter = Adapter(usage_accounting=True)
    body, _ = adapter.fit("some-model", {"temperature": 0.5})
    assert body == {"temperature": 0.5, "usage": {"include": True}}
    refused = refused_parameter({"message": "Unrecognized request argument supplied: usage", "code": None})
    assert refused == ("usage", "unsupported_parameter")
    said = adapter.learn("some-model", *refused, body)
    assert said is not None and "list prices" in str(said)
    assert adapter.fit("some-model", {"temperature": 0.5})[0] == {"temperature": 0.5}
    assert Adapter().fit("some-model", {})[0] == {}  # not asked for: not sent


# --------------------------------------------------------------------------- #
# Against the test server
# --------------------------------------------------------------------------- #


def _config_file(text: str) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)


def test_json_gives_the_providers_cost_where_the_server_reports_one(srv: ChatServer, run_chatcli):
    srv.flavor = "openrouter"
    result = run_chatcli("--json", "name three primes", env={"CHATCLI_USAGE_ACCOUNTING": "true"})
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    (request,) = srv.chat_requests
    assert request.body["usage"] == {"include": True}
    expected = compute_usage(request.body, record["reply"])
    assert record["cost_usd"] == pytest.approx(OpenRouter.cost_of(expected))
    assert record["cost_usd"] != pytest.approx(Pricing().cost("gpt-4o-mini", _usage_of(expected)))
    assert record["cost_source"] == "provider"


def test_usage_accounting_is_not_asked_of_a_server_that_is_not_openrouter(srv: ChatServer, run_chatcli):
    srv.flavor = "openrouter"  # it would answer with a cost, if asked
    record = json.loads(run_chatcli("--json", "name three primes").stdout)
    (request,) = srv.chat_requests
    assert "usage" not in request.body  # 127.0.0.1 is no openrouter.ai, and no setting says otherwise
    assert record["cost_source"] == "list"


def test_a_server_that_refuses_the_usage_field_is_asked_again_without_it(srv: ChatServer, run_chatcli):
    srv.script(Error(400, "Unrecognized request argument supplied: usage", type="invalid_request_error"))
    result = run_chatcli("--json", "name three primes", env={"CHATCLI_USAGE_ACCOUNTING": "true"})
    assert result.returncode == 0, result.stderr
    first, second = srv.chat_requests
    assert first.body["usage"] == {"include": True} and "usage" not in second.body
    assert json.loads(result.stdout)["cost_source"] == "list"
    assert "refused usage" in result.stderr and "list prices" in result.stderr


def test_usage_after_a_cached_prompt_shows_the_cached_tokens_at_the_cached_price(srv: ChatServer):
    srv.prompt_cache = True
    price = Price(10_000.0, 2_500.0, 20_000.0)  # USD per million: a cent a token, a quarter of that cached
    session = make_session(srv, model="test-model", pricing=Pricing({"test-model": price}))
    session.send("the first question")
    session.send("and a second one")
    first, second = srv.chat_requests
    cached = prompt_tokens(first.body["messages"])  # the second request begins with the first's messages
    usage = compute_usage(second.body, session.turns[-1].reply)
    assert 0 < cached < usage["prompt_tokens"]
    fresh, completion = usage["prompt_tokens"] - cached, usage["completion_tokens"]
    expected = (fresh * price.input + cached * price.cached_input + completion * price.output) / 1e6
    uncached = (usage["prompt_tokens"] * price.input + completion * price.output) / 1e6
    assert format_cost(expected) != format_cost(uncached)

    row = REGISTRY.dispatch(session, "/usage").rows[1]
    assert row[2] == f"{usage['prompt_tokens']:,} ({cached:,} cached)"
    assert row[5] == format_cost(expected)


def test_the_repl_shows_the_cached_tokens_and_their_price_in_usage(srv: ChatServer, tmp_path: Path):
    from contextlib import ExitStack

    from tests.support.repl import ENTER, piped_chat

    srv.prompt_cache = True
    price = Price(10_000.0, 2_500.0, 20_000.0)
    session = make_session(srv, model="test-model", pricing=Pricing({"test-model": price}))
    with ExitStack() as stack:
        out = piped_chat(stack, session, markdown=False, history=tmp_path / "history").run(
            "the first question" + ENTER, "and a second one" + ENTER, "/usage" + ENTER)
    first, second = srv.chat_requests
    cached = prompt_tokens(first.body["messages"])
    usage = compute_usage(second.body, session.turns[-1].reply)
    cost = ((usage["prompt_tokens"] - cached) * price.input + cached * price.cached_input
            + usage["completion_tokens"] * price.output) / 1e6
    line = next(line for line in out.splitlines() if line.split()[:2] == ["2", "test-model"])
    assert f"{usage['prompt_tokens']:,} ({cached:,} cached)" in line and line.split()[-1] == format_cost(cost)


def test_usage_toolbar_and_ledger_count_the_providers_cost(srv: ChatServer, tmp_path: Path):
    from chatcli.ui.prompt import make_toolbar

    srv.flavor = "openrouter"
    config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, usage_accounting=True)
    db = tmp_path / "chatcli.db"
    session = make_session(client=ChatClient(config), model="gpt-4o-mini", journal=Journal.open(db))
    session.send("one")
    session.send("two two")
    costs = [OpenRouter.cost_of(compute_usage(r.body, t.reply)) for r, t in zip(srv.chat_requests, session.turns)]

    usage = REGISTRY.dispatch(session, "/usage")
    assert "the provider's own" in usage.text
    assert [row[5] for row in usage.rows] == [format_cost(costs[0]), format_cost(costs[1]), format_cost(sum(costs))]
    toolbar = "".join(text for _, text in make_toolbar(session)())
    assert format_cost(sum(costs)) in toolbar
    store = Store.open(db)
    try:
        ledger = store.ledger()
    finally:
        store.close()
    assert [s.cost_usd for s in ledger] == pytest.approx(costs)
    assert {s.cost_source for s in ledger} == {"provider"}


def test_a_resumed_session_keeps_the_providers_cost(srv: ChatServer, run_chatcli):
    from chatcli.core.resume import load_session

    srv.flavor = "openrouter"
    assert run_chatcli("name three primes", env={"CHATCLI_USAGE_ACCOUNTING": "true"}).returncode == 0
    (request,) = srv.chat_requests
    journal = Journal.open(default_db(Path(os.environ["HOME"])))
    session = load_session(journal, journal.last_session_id(), client=None)
    (row,), total = session.accounts.accounting()
    expected = OpenRouter.cost_of(compute_usage(request.body, row.turn.reply))
    assert row.cost == pytest.approx(expected) and row.source == "provider" and total.cost == pytest.approx(expected)


def test_chatcli_usage_shows_cached_and_reasoning_tokens_and_the_providers_cost(srv: ChatServer, run_chatcli):
    srv.flavor = "openrouter"
    reported = {"prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
                "prompt_tokens_details": {"cached_tokens": 1536}, "completion_tokens_details": {"reasoning_tokens": 200}}
    srv.script(Reply("Seven.", usage=reported))
    assert run_chatcli("a prime?", env={"CHATCLI_USAGE_ACCOUNTING": "true"}).returncode == 0
    report = run_chatcli("usage", "--by", "model")
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert next(line for line in lines if line.startswith("model")).split() == ["model", "tokens", "cached", "reasoning", "cost"]
    cost = format_cost(OpenRouter.cost_of(reported))
    assert cost != format_cost(Pricing().cost("gpt-4o-mini", _usage_of(reported)))
    row = next(line for line in lines if line.startswith("gpt-4o-mini")).split()
    assert row[:5] == ["gpt-4o-mini", "2,300", "1,536", "200", cost]
    assert "Costs are the provider's own where it reported them" in " ".join(report.stdout.split())


def test_a_budget_cap_trips_on_the_providers_cost_where_list_prices_would_not(srv: ChatServer, run_chatcli):
    srv.flavor = "openrouter"
    cap = 0.001
    _config_file('usage_accounting = true\n[models."gpt-4o-mini"]\nmax_output_tokens = 1\n'
                 f'[budget]\ndaily_usd = {cap}\n')
    first = run_chatcli("first ask")
    assert first.returncode == 0, first.stderr
    (request,) = srv.chat_requests
    usage = compute_usage(request.body, first.stdout.strip())
    assert OpenRouter.cost_of(usage) > cap  # what the provider charged
    assert 2 * Pricing().cost("gpt-4o-mini", _usage_of(usage)) < cap  # list prices, for both asks: under it

    refused = run_chatcli("second ask")
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"daily_usd budget of ${cap}" in refused.stderr
    assert len(srv.chat_requests) == 1


def test_an_old_database_upgrades_through_m11_and_its_rows_read_as_unknown(tmp_path: Path, run_chatcli):
    db = tmp_path / "old.db"
    old = Store.open(db, migrations=MIGRATIONS[: MIGRATIONS.index(_m11_ledger_details)])
    old.db.execute("INSERT INTO usage_ledger (created_at, model, prompt_tokens, completion_tokens, total_tokens, cost_usd)"
                   " VALUES (?, 'gpt-4o', 100, 20, 120, 0.0005)", (time.time(),))
    old.close()
    store = Store.open(db)
    try:
        (spend,) = store.ledger()
        assert (spend.cached_tokens, spend.reasoning_tokens, spend.cost_source) == (0, 0, None)
        assert (spend.total_tokens, spend.cost_usd) == (120, 0.0005)
        assert store.spend_since(0).usd == 0.0005
    finally:
        store.close()
    report = run_chatcli("usage", "--by", "model", "--db", str(db))
    assert report.returncode == 0, report.stderr
    header = next(line for line in report.stdout.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "tokens", "cost"]  # nothing cached or reasoned to show


def test_a_model_with_no_list_price_is_counted_by_the_caps_at_the_providers_cost(srv: ChatServer, run_chatcli):
    srv.flavor = "openrouter"
    srv.models = ["vendor/new-model"]
    cap = 0.001
    _config_file('usage_accounting = true\n[models."vendor/new-model"]\nmax_output_tokens = 1\n'
                 f'[budget]\ndaily_usd = {cap}\n')
    first = run_chatcli("-m", "vendor/new-model", "first ask")
    assert first.returncode == 0 and first.stderr == ""  # no "cannot count spending on models with no price"
    (request,) = srv.chat_requests
    assert OpenRouter.cost_of(compute_usage(request.body, first.stdout.strip())) > cap
    refused = run_chatcli("-m", "vendor/new-model", "second ask")
    assert refused.returncode == 1 and f"daily_usd budget of ${cap}" in refused.stderr
    assert len(srv.chat_requests) == 1


def test_a_profile_can_ask_for_usage_accounting_for_a_proxy_in_front_of_openrouter(srv: ChatServer, run_chatcli):
    srv.flavor = "openrouter"
    _config_file(f'[profiles.proxy]\nbase_url = "{srv.base_url}"\nusage_accounting = true\n')
    with_cost = json.loads(run_chatcli("-p", "proxy", "--json", "one").stdout)
    without = json.loads(run_chatcli("--json", "two").stdout)  # the same server, outside the profile
    first, second = srv.chat_requests
    assert first.body["usage"] == {"include": True} and "usage" not in second.body
    assert (with_cost["cost_source"], without["cost_source"]) == ("provider", "list")
