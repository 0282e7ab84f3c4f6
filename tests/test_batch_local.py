"""chatcli batch run --via local, end to end against the test server: results in input order with their
ledger rows, failed rows, the dry run that sends nothing, the budget's refusal and its stop mid-run,
-j concurrency as the server sees it, the rate limits held to, and a run killed with SIGKILL, or
stopped with Ctrl-C, then run again without redoing a row.

The server answers each row by its prompt (ByPrompt), so rows sent at once, in any order, get
their own answers, and the requests can be counted per row.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chatcli.base.format import format_cost
from tests.support.flavors import content_text
from tests.support.running import CHATCLI
from tests.support.server import Behaviour, Echo, Error, Reply, rate_limit_headers
from tests.support.tokens import TEST_ENCODING

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True, kw_only=True)
class ByPrompt(Echo):
    """The server's answer to each request by its last user message: `answers` maps a prompt to a
    behaviour (an echo, as Echo, for any other), with every reply's `first_delay`. Each request's
    arrival notes how many requests the server was handling then (`in_flight`)."""

    answers: dict[str, Behaviour] = field(default_factory=dict)
    first_delay: float = 0.0
    server: Any = None
    in_flight: list[int] = field(default_factory=list)

    def to_reply(self, request: dict[str, Any]) -> Any:
        if self.server is not None:
            self.in_flight.append(self.server._in_flight)
        found = self.answers.get(last_prompt(request))
        if found is None:
            return Reply(super().to_reply(request).text, first_delay=self.first_delay)
        return found


def last_prompt(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    return content_text(users[-1].get("content")) if users else ""


def asked(srv) -> Counter:
    """How many times the server was asked each prompt (a request whose body a kill cut off is no ask)."""
    return Counter(last_prompt(r.body) for r in srv.chat_requests if isinstance(r.body, dict))


def config(text: str = "") -> None:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def results(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def query(db: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def stderr_lines(result) -> list[str]:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("chatcli: ") for line in lines), result.stderr
    return [line.removeprefix("chatcli: ") for line in lines]


# Counts are exact (one token a byte) and a token costs $0.01 in and out.
PRICED = (f'[models."gpt-4o-mini"]\nencoding = "{TEST_ENCODING}"\n'
          '[prices."gpt-4o-mini"]\ninput = 10000.0\noutput = 10000.0\n')


@pytest.fixture(autouse=True)
def no_batch_api(srv):
    """A server without a Batch API (as llama.cpp, Ollama and vLLM are), so `batch run` runs here by default."""
    srv.batch_api.enabled = False


@pytest.fixture
def priced(byte_encoding):
    config(PRICED)


def test_a_dry_run_prints_the_count_the_estimate_and_the_first_request_and_sends_nothing(
        srv, run_chatcli, tmp_path, priced):
    prompts = ["why is the sky blue", "and the sea"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    db = tmp_path / "b.db"
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--dry-run", "-s", "terse", "-t", "0.5",
                         "--max-tokens", "10", "-o", "seed", "7", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert srv.requests == [] and not db.exists()  # nothing sent, nothing kept
    text = result.stdout
    # Per request: each message's bytes + 3, and 3 for the reply's priming; replies at max_tokens each.
    tokens_in = sum(len("terse") + 3 + len(p) + 3 + 3 for p in prompts)
    assert f"requests: 2 to gpt-4o-mini\ntokens in: {tokens_in}\n" in text
    assert "tokens out: 20 (at most 10 tokens a reply (max_tokens))\n" in text
    assert f"cost: up to {format_cost((tokens_in + 20) * 0.01)} at list prices\n" in text
    first = json.loads(text.split("first request (id 1):\n", 1)[1].rsplit("\nnothing was sent", 1)[0])
    assert first == {"model": "gpt-4o-mini", "temperature": 0.5, "max_tokens": 10, "seed": 7,
                     "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": prompts[0]}]}
    assert text.endswith("nothing was sent (--dry-run)\n")


def test_without_max_tokens_the_estimate_says_what_it_assumed_for_the_replies(srv, run_chatcli, tmp_path, priced):
    (tmp_path / "p.txt").write_text("one\n")
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--dry-run")
    assert "tokens out: 256 (256 tokens a reply, assumed: set --max-tokens to bound them)" in result.stdout
    assert "cost: about $" in result.stdout
    # No model configured: a run would ask the server for its own; the dry run asks nothing, and says so.
    assert "model: gpt-4o-mini is chatcli's default; a run takes the server's own instead" in result.stdout
    assert srv.requests == []


def test_a_txt_run_writes_every_result_in_input_order_and_books_each_row_in_the_ledger(
        srv, run_chatcli, tmp_path, priced):
    # The first row answers last: results still come in input order.
    srv.default = ByPrompt(answers={"alpha one": Reply("slow alpha", first_delay=0.4)})
    (tmp_path / "p.txt").write_text("alpha one\n\nbeta two\ngamma three\n")
    db = tmp_path / "b.db"
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = results(result.stdout)
    assert [(r["id"], r["status"], r["reply"], r["error"]) for r in lines] == [
        ("1", "ok", "slow alpha", None), ("3", "ok", "echo: beta two", None), ("4", "ok", "echo: gamma three", None)]
    # The server's usage: words + 4 in, the reply's words out; $0.01 a token.
    for line, (words_in, words_out) in zip(lines, [(2, 2), (2, 3), (2, 3)]):
        assert line["usage"]["prompt_tokens"] == words_in + 4 and line["usage"]["completion_tokens"] == words_out
        assert line["cost_usd"] == pytest.approx((words_in + 4 + words_out) * 0.01)
    ledger = query(db, "SELECT kind, total_tokens, cost_usd, cost_source FROM usage_ledger ORDER BY total_tokens")
    assert sorted(ledger) == sorted(("batch", r["usage"]["total_tokens"], pytest.approx(r["cost_usd"]), "list")
                                    for r in lines)
    # No --via: the server was asked whether it has a Batch API; it has none, which the opening says.
    assert stderr_lines(result) == [f"Batch job 1: running 3 rows here, 3 at a time ({srv.base_url} has no Batch API).",
                                    "All 3 rows succeeded."]


def test_jsonl_rows_and_csv_rows_run_in_input_order_to_an_output_file(srv, run_chatcli, tmp_path):
    srv.default = ByPrompt(answers={"Say hi": Reply("hi!", first_delay=0.3)})
    rows = [{"id": "a", "prompt": "Say hi"},
            {"id": "b", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say bye"}]},
            {"prompt": "third"}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    result = run_chatcli("batch", "run", str(tmp_path / "r.jsonl"), "--output", str(out), "-j", "3")
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert [(r["id"], r["reply"]) for r in results(out.read_text())] == [
        ("a", "hi!"), ("b", "echo: Say bye"), ("3", "echo: third")]
    sent = {last_prompt(r.body): r.body["messages"] for r in srv.chat_requests}
    assert sent["Say bye"] == rows[1]["messages"]  # a row's own messages go as they are

    (tmp_path / "d.csv").write_text('id,city\nc1,Paris\nc2,"Oslo, Norway"\n')
    (tmp_path / "n.csv").write_text("city\nLima\nRome\n")
    for name, ids, cities in (("d.csv", ["c1", "c2"], ["Paris", "Oslo, Norway"]), ("n.csv", ["1", "2"], ["Lima", "Rome"])):
        result = run_chatcli("batch", "run", str(tmp_path / name), "--prompt-template", "Where is {{city}}?")
        assert result.returncode == 0, result.stderr
        assert [(r["id"], r["reply"]) for r in results(result.stdout)] == [
            (i, f"echo: Where is {c}?") for i, c in zip(ids, cities)]


def test_failed_rows_are_recorded_with_the_clients_sentence_exit_1_and_run_again_next_time(
        srv, run_chatcli, tmp_path):
    config("max_retries = 0\n")
    srv.default = ByPrompt(answers={"bad request": Error(400, "messages are odd"), "server down": Error(500, "boom")})
    (tmp_path / "p.txt").write_text("fine one\nbad request\nserver down\nfine two\n")
    db = tmp_path / "b.db"
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--db", str(db))
    assert result.returncode == 1
    lines = results(result.stdout)
    assert [r["status"] for r in lines] == ["ok", "failed", "failed", "ok"]
    assert lines[1]["error"].startswith("The server rejected the request (400: messages are odd)")
    assert "500" in lines[2]["error"] and lines[2]["reply"] is None and lines[2]["usage"] is None
    assert stderr_lines(result)[-1] == "2 of 4 rows succeeded; 2 failed."
    assert query(db, "SELECT COUNT(*) FROM usage_ledger") == [(2,)]  # the failed rows were not billed

    srv.default = ByPrompt()  # the server mends: the rerun sends the failed rows alone
    again = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert asked(srv) == {"fine one": 1, "fine two": 1, "bad request": 2, "server down": 2}
    assert stderr_lines(again) == ["Batch job 1: 2 of 4 rows are done already; running the other 2 here, 2 at a time "
                                   f"({srv.base_url} has no Batch API).",
                                   "All 4 rows succeeded."]


def test_a_job_that_would_pass_a_budget_cap_is_refused_with_its_figures_before_anything_is_sent(
        srv, run_chatcli, tmp_path, byte_encoding):
    config(PRICED + "[budget]\ndaily_usd = 0.30\n")
    (tmp_path / "p.txt").write_text("one\ntwo\nthree\n")
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--max-tokens", "5", "-m", "gpt-4o-mini")
    assert result.returncode == 1  # as a one-shot ask refused by a cap
    assert srv.chat_requests == []
    tokens_in = sum(len(p) + 3 + 3 for p in ("one", "two", "three"))
    (line,) = stderr_lines(result)
    assert line.startswith(f"This batch (3 requests, {tokens_in} tokens in and 15 out (at most 5 tokens a reply "
                           f"(max_tokens)), up to {format_cost((tokens_in + 15) * 0.01)} at list prices) would take "
                           f"today's spending to ${(tokens_in + 15) * 0.01:.2f}, past the daily_usd budget of $0.30; "
                           "raise [budget] daily_usd in ")
    assert line.endswith(", or wait until tomorrow.")


def test_the_runner_stops_starting_rows_when_a_cap_is_reached_and_says_how_many_are_left(
        srv, run_chatcli, tmp_path, byte_encoding):
    # Estimated at max_tokens 1, each row costs $0.12 (11 tokens in, 1 out); the server's replies
    # run long, so each costs $0.46 (6 in, 40 out): the job passes the check, and the cap stops it.
    config(PRICED + "[budget]\ndaily_usd = 1.0\n")
    srv.default = Reply("word " * 40)
    (tmp_path / "p.txt").write_text("".join(f"row {n}\n" for n in range(1, 6)))
    db = tmp_path / "b.db"
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--max-tokens", "1", "-j", "1", "--db", str(db))
    assert result.returncode == 1
    assert len(srv.chat_requests) == 2
    assert [r["status"] for r in results(result.stdout)] == ["ok", "ok", "pending", "pending", "pending"]
    said = stderr_lines(result)
    assert said[1].startswith("The next row would take today's spending to $1.04, past the daily_usd budget of $1.00")
    assert said[2:] == ["3 rows were not started; run the same command again once the budget allows.",
                        "2 of 5 rows succeeded; 3 pending."]
    assert query(db, "SELECT COUNT(*), ROUND(SUM(cost_usd), 2) FROM usage_ledger WHERE kind = 'batch'") == [(2, 0.92)]


def test_j_runs_that_many_requests_at_once_and_no_more(srv, run_chatcli, tmp_path):
    srv.default = ByPrompt(first_delay=0.8, server=srv)
    (tmp_path / "p.txt").write_text("".join(f"row {n}\n" for n in range(8)))
    started = time.monotonic()
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "-j", "4", "-m", "gpt-4o-mini")
    assert result.returncode == 0, result.stderr
    assert max(srv.default.in_flight) == 4  # the server was handling four at once, never five
    assert time.monotonic() - started < 8 * 0.8  # not one after another


def test_j_out_of_range_is_one_sentence(run_chatcli, tmp_path):
    (tmp_path / "p.txt").write_text("x\n")
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "-j", "0")
    assert result.returncode == 2
    assert result.stderr == ("chatcli: argument -j/--jobs: must be a whole number from 1 to 256, not '0'; "
                             "see chatcli batch --help.\n")


def test_a_used_up_rate_limit_holds_the_next_row_until_it_resets(srv, run_chatcli, tmp_path):
    held = rate_limit_headers(requests=(100, 0), reset_requests="1s")
    srv.default = ByPrompt(answers={"first": Reply("one", headers=held)})
    (tmp_path / "p.txt").write_text("first\nsecond\n")
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "-j", "1", "-m", "gpt-4o-mini")
    assert result.returncode == 0, result.stderr
    first, second = srv.chat_requests
    assert second.at - first.at >= 0.9
    assert "The server's requests rate limit is used up; no more rows start for " in result.stderr


SLOW_ROWS = 12


def start_slow_run(chat_env: dict[str, str], input_path: Path, db: Path) -> subprocess.Popen:
    """The installed chatcli running SLOW_ROWS rows, 2 at a time, each answered in about 0.3s."""
    return subprocess.Popen([str(CHATCLI), "batch", "run", str(input_path), "-j", "2", "--db", str(db),
                             "-m", "gpt-4o-mini"],
                            env=chat_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(db: Path, done: int, process: subprocess.Popen) -> set[str]:
    """The ids of the rows committed once at least `done` are."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if db.exists():
            try:
                ok = {cid for (cid,) in query(db, "SELECT custom_id FROM batch_rows WHERE status = 'ok'")}
            except sqlite3.OperationalError:  # the tables are not made yet
                ok = set()
            if len(ok) >= done:
                return ok
        time.sleep(0.05)
    raise AssertionError("the run committed too few rows in time")


def test_a_run_killed_with_sigkill_and_run_again_asks_no_committed_row_twice(srv, run_chatcli, chat_env, tmp_path):
    srv.default = ByPrompt(first_delay=0.3)
    prompts = [f"row {n:02d}" for n in range(1, SLOW_ROWS + 1)]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    db = tmp_path / "b.db"
    process = start_slow_run(chat_env, tmp_path / "p.txt", db)
    wait_for_rows(db, 4, process)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    committed = {cid for (cid,) in query(db, "SELECT custom_id FROM batch_rows WHERE status = 'ok'")}
    assert 4 <= len(committed) < SLOW_ROWS
    before = asked(srv)

    srv.default = ByPrompt()
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "-j", "2", "--db", str(db), "-m", "gpt-4o-mini")
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["reply"]) for r in results(result.stdout)] == [
        (str(n), f"echo: {p}") for n, p in enumerate(prompts, start=1)]
    total = asked(srv)
    assert set(total) == set(prompts) and all(total[p] >= 1 for p in prompts)
    for n, prompt in enumerate(prompts, start=1):
        if str(n) in committed:
            assert total[prompt] == 1, prompt  # committed before the kill: never asked again
    twice = [p for p in prompts if total[p] == 2]
    assert all(before[p] == 1 for p in twice) and len(twice) <= 2  # only those in flight at the kill
    assert max(total.values()) <= 2
    assert stderr_lines(result)[0].startswith(f"Batch job 1: {len(committed)} of {SLOW_ROWS} rows are done already")
    # Each row booked once, when it was committed (a reply the kill cut off was never kept, nor booked).
    assert query(db, "SELECT COUNT(*) FROM usage_ledger WHERE kind = 'batch'") == [(SLOW_ROWS,)]


def test_ctrl_c_lets_the_rows_in_flight_finish_commits_them_and_says_how_to_go_on(srv, chat_env, tmp_path):
    srv.default = ByPrompt(first_delay=0.3)
    (tmp_path / "p.txt").write_text("".join(f"row {n:02d}\n" for n in range(1, SLOW_ROWS + 1)))
    db = tmp_path / "b.db"
    process = start_slow_run(chat_env, tmp_path / "p.txt", db)
    wait_for_rows(db, 2, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    assert stdout == ""  # the results are written when the job is done
    sent = len(srv.chat_requests)
    done = query(db, "SELECT COUNT(*) FROM batch_rows WHERE status = 'ok'")[0][0]
    assert done == sent < SLOW_ROWS  # every row sent finished and was kept
    said = [line.removeprefix("chatcli: ") for line in stderr.splitlines()]
    assert said[-1] == (f"Stopped: {done} of {SLOW_ROWS} rows are done and saved; run the same command again "
                        f"to do the other {SLOW_ROWS - done}.")
    assert "Traceback" not in stderr


def test_with_a_schema_each_row_asks_for_it_and_a_reply_that_does_not_match_is_a_failed_row(
        srv, run_chatcli, tmp_path):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
              "additionalProperties": False}
    (tmp_path / "person.json").write_text(json.dumps(schema))
    srv.default = ByPrompt(answers={"good": Reply('{"name": "Ada"}'), "bad": Reply("no JSON here")})
    (tmp_path / "p.txt").write_text("good\nbad\n")
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--schema", str(tmp_path / "person.json"))
    assert result.returncode == 1
    good, bad = results(result.stdout)
    assert (good["status"], good["parsed"], good["error"]) == ("ok", {"name": "Ada"}, None)
    assert bad["status"] == "failed" and bad["parsed"] is None and bad["error"]
    assert all(r.body["response_format"]["json_schema"]["schema"] == schema for r in srv.chat_requests)
    assert stderr_lines(result)[-1] == "1 of 2 rows succeeded; 1 failed."
    # The row that did not match is a failed row in the job: the same command sends it, and it alone, again.
    srv.default = ByPrompt(answers={"good": Reply('{"name": "Ada"}'), "bad": Reply('{"name": "Bea"}')})
    again = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--schema", str(tmp_path / "person.json"))
    assert again.returncode == 0 and asked(srv) == Counter({"good": 1, "bad": 2})
    assert [r["parsed"] for r in results(again.stdout)] == [{"name": "Ada"}, {"name": "Bea"}]


def test_the_bar_says_done_failed_rate_time_left_and_cost():
    from chatcli.ui.progress import figures

    # 30 rows finished in this run's 10 seconds (10 were done before it): 3.2 a second, 58 to go.
    assert figures(total=100, done=40, failed=2, before=10, cost=0.0123, note=None, elapsed=10.0) == \
        "40/100 done · 2 failed · 3.2 rows/s · 18s left · $0.0123"
    assert figures(total=100, done=10, failed=0, before=10, cost=None, note="waiting for the requests limit",
                   elapsed=1.0) == "10/100 done · cost unknown · waiting for the requests limit"


def test_with_cache_rows_answered_before_are_not_asked_again_and_cost_nothing(srv, run_chatcli, tmp_path, priced):
    db = tmp_path / "b.db"
    (tmp_path / "first.txt").write_text("alpha\nbeta\n")
    first = run_chatcli("batch", "run", str(tmp_path / "first.txt"), "--cache", "-t", "0", "--db", str(db))
    assert first.returncode == 0, first.stderr
    assert all("cached" not in r for r in results(first.stdout))  # asked, and kept
    # Another file (another job) with the same two prompts and a new one: only the new one is asked.
    (tmp_path / "second.txt").write_text("beta\ngamma\nalpha\n")
    second = run_chatcli("batch", "run", str(tmp_path / "second.txt"), "--cache", "-t", "0", "--db", str(db))
    assert second.returncode == 0, second.stderr
    assert asked(srv) == Counter({"alpha": 1, "beta": 1, "gamma": 1})
    lines = results(second.stdout)
    assert [(r["id"], r["reply"], r.get("cached", False)) for r in lines] == [
        ("1", "echo: beta", True), ("2", "echo: gamma", False), ("3", "echo: alpha", True)]
    assert lines[0]["cost_usd"] == 0 and lines[1]["cost_usd"] > 0
    assert query(db, "SELECT COUNT(*) FROM usage_ledger") == [(3,)]  # a hit books nothing
    # Not temperature 0 and no seed: not cached by default, so asked again.
    third = run_chatcli("batch", "run", str(tmp_path / "second.txt"), "--cache", "-t", "0.7", "--db", str(db))
    assert third.returncode == 0 and all("cached" not in r for r in results(third.stdout))
    assert asked(srv)["beta"] == 2


def test_with_redact_no_row_sends_or_keeps_the_personal_data(srv, run_chatcli, tmp_path):
    config('redact = ["email"]\n')
    (tmp_path / "p.txt").write_text("write to ada@example.com\n")
    db = tmp_path / "b.db"
    result = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert [last_prompt(r.body) for r in srv.chat_requests] == ["write to [EMAIL_REDACTED]"]
    assert all("ada@example.com" not in request for (request,) in query(db, "SELECT request FROM batch_rows"))


def test_with_save_false_a_cached_batch_keeps_nothing_in_the_cache(srv, run_chatcli, tmp_path):
    config("save = false\ncache = true\n")
    db = tmp_path / "b.db"
    for name in ("a.txt", "b.txt"):  # two jobs, the same request: only the cache could answer the second
        (tmp_path / name).write_text("alpha\n")
        assert run_chatcli("batch", "run", str(tmp_path / name), "-t", "0", "--db", str(db)).returncode == 0
    assert query(db, "SELECT COUNT(*) FROM response_cache") == [(0,)]
    assert asked(srv) == Counter({"alpha": 2})
