"""Batch jobs through the Batch API (--via api), end to end: chatcli's handlers against the test server's
/v1/files and /v1/batches over the real openai SDK, with the jobs in a real SQLite database.

The commands run as `chatcli batch ...` (cli/main.py's main, in this process, or a process of its own).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatcli.base.errors import UsageError
from chatcli.base.events import Usage
from chatcli.batch.api import Limits, Poll, job_key, request_line, split
from chatcli.batch.requests import Spec
from chatcli.cli.main import main
from chatcli.config.settings import load_config
from chatcli.llm.batches import has_batch_api
from chatcli.llm.pricing import Pricing
from chatcli.store.db import Store
from tests.support.batch_api import Timing
from tests.support.keys import OUTPUTS
from tests.support.running import error_line, free_port, make_env
from tests.support.server import Error, Reply

REPO = Path(__file__).resolve().parent.parent
FAST = Timing(validating=0.05, in_progress=0.15, finalizing=0.05, cancelling=0.05)


@pytest.fixture
def environ(srv, chat_env) -> dict[str, str]:
    srv.batch_api.timing = FAST
    return {**chat_env, "CHATCLI_BATCH_POLL": "0.02", "PYTHONPATH": str(REPO)}


def chatcli_argv(argv: tuple[str, ...] | list[str]) -> tuple[list[str], dict[str, str]]:
    """`submit INPUT [--split N] ...` as `chatcli batch run INPUT --via api ...` (--split N: at most N
    requests a file, CHATCLI_BATCH_FILE_REQUESTS); any other action as `chatcli batch ACTION ...`."""
    words, env = list(argv), {}
    if "--split" in words:
        at = words.index("--split")
        env["CHATCLI_BATCH_FILE_REQUESTS"] = words[at + 1]
        del words[at:at + 2]
    if words[0] == "submit":
        words = ["run", words[1], "--via", "api", *words[2:]]
    return ["batch", *words], env


@pytest.fixture
def batch(environ):
    """Run `chatcli batch ARGS` in this process; a CompletedProcess."""

    def run(*argv: str, tty: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        words, split = chatcli_argv(argv)
        streams = make_env(environ={**environ, **split, **(env or {})}, stdout_isatty=tty)
        code = main(words, env=streams)
        result = subprocess.CompletedProcess(argv, code, streams.stdout.getvalue(), streams.stderr.getvalue())
        OUTPUTS.append(result)
        assert "Traceback" not in result.stderr
        return result

    return run


def prompts(n: int, name: str = "prompts.txt") -> str:
    Path(name).write_text("".join(f"prompt {i}\n" for i in range(1, n + 1)))
    return name


def results(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def status_of(batch, job: int = 1) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in batch("status", str(job)).stdout.splitlines())


def ledger(environ: dict[str, str]) -> list:
    store = Store.open(Path(environ["XDG_DATA_HOME"]) / "chatcli" / "chatcli.db")
    try:
        return [s for s in store.ledger() if s.kind == "batch"]
    finally:
        store.close()


def uploaded_ids(srv, index: int = -1) -> list[str]:
    """The custom_ids of a request file chatcli uploaded (the last, by default)."""
    inputs = [f for f in srv.batch_api.files.values() if f.purpose == "batch"]
    return [json.loads(line)["custom_id"] for line in inputs[index].data.decode().splitlines()]


def test_a_job_is_sent_followed_through_its_states_and_fetched_in_input_order_at_batch_prices(srv, batch, environ):
    srv.batch_api.timing = Timing(validating=60, in_progress=60, finalizing=0.05)  # each held until let go
    sent = batch("submit", prompts(5))
    assert (sent.returncode, sent.stdout) == (0, "1\n")  # in a pipe, the job id alone, for JOB=$(...)
    assert "chatcli batch wait 1" in sent.stderr and "1 batch," in sent.stderr
    assert uploaded_ids(srv) == ["1", "2", "3", "4", "5"]
    assert srv.chat_requests == []  # nothing went the ordinary way

    assert status_of(batch)["status"] == "validating"
    srv.batch_api.retime(validating=0)
    now = status_of(batch)
    assert (now["status"], now["pending"], now["server_done"], now["server_total"]) == ("in_progress", "5", "0", "5")
    srv.batch_api.retime(in_progress=0)
    seen = [status_of(batch)["status"]]
    deadline = time.monotonic() + 5
    while seen[-1] != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
        seen.append(status_of(batch)["status"])
    assert set(seen) <= {"finalizing", "completed"} and seen[-1] == "completed"
    now = status_of(batch)
    assert (now["pending"], now["ok"], now["server_done"], now["server_total"]) == ("5", "0", "5", "5")

    assert batch("wait", "1").returncode == 0
    fetched = batch("fetch", "1")
    assert fetched.returncode == 0 and fetched.stderr.startswith("All 5 rows succeeded.")
    lines = results(fetched)
    assert [line["id"] for line in lines] == ["1", "2", "3", "4", "5"]  # the server's output file is shuffled
    assert [line["reply"] for line in lines] == [f"echo: prompt {i}" for i in range(1, 6)]
    assert all(line["status"] == "ok" and line["error"] is None for line in lines)

    booked = ledger(environ)
    assert len(booked) == 5 and all(s.model == "gpt-4o-mini" and s.cost_source == "list" for s in booked)
    for line, spend in zip(lines, booked):
        usage = Usage(line["usage"]["prompt_tokens"], line["usage"]["completion_tokens"], line["usage"]["total_tokens"])
        assert spend.prompt_tokens == usage.prompt_tokens and spend.completion_tokens == usage.completion_tokens
        assert line["cost_usd"] == pytest.approx(spend.cost_usd)
        assert spend.cost_usd == pytest.approx(Pricing().cost("gpt-4o-mini", usage) / 2)  # OpenAI's Batch API: half

    again = batch("fetch", "1", "--output", "out.jsonl")  # fetching again books nothing again
    assert again.returncode == 0 and again.stdout == "" and "out.jsonl" in again.stderr
    assert Path("out.jsonl").read_text() == fetched.stdout
    assert len(ledger(environ)) == 5


def test_status_and_list_speak_in_sentences_on_a_terminal_and_in_plain_lines_in_a_pipe(srv, batch):
    batch("submit", prompts(3))
    on_terminal = batch("status", "1", tty=True).stdout
    assert on_terminal.startswith("Job 1: ") and "3 pending, 0 ok, 0 failed, 0 expired, 0 cancelled" in on_terminal
    assert "chatcli batch wait 1" in on_terminal
    batch("wait", "1")
    assert "chatcli batch fetch 1" in batch("status", "1", tty=True).stdout
    listed = batch("list").stdout.splitlines()
    assert listed[0].split("\t") == ["id", "via", "status", "ok", "rows", "model", "input", "created"]
    assert listed[1].split("\t")[:5] == ["1", "api", "completed", "0", "3"]
    assert "completed" in batch("list", tty=True).stdout


def test_failed_and_expired_rows_are_said_and_retry_sends_only_those(srv, batch, environ):
    srv.batch_api.fail = {"2": Error(400, "row two \x1b]0;owned\x07 is wrong")}
    srv.batch_api.expire_after = 4  # rows 5 and 6 are never run
    batch("submit", prompts(6))
    assert batch("wait", "1").returncode == 0
    fetched = batch("fetch", "1")
    assert fetched.returncode == 1
    assert fetched.stderr.startswith("3 of 6 rows succeeded; 2 expired, 1 failed.")
    lines = results(fetched)
    assert [line["status"] for line in lines] == ["ok", "failed", "ok", "ok", "expired", "expired"]
    assert lines[1]["error"].startswith("The server refused this request (HTTP 400: row two")
    assert "24-hour window ran out" in lines[4]["error"]
    assert "\x1b" not in fetched.stdout + fetched.stderr and "\x07" not in fetched.stdout + fetched.stderr
    assert len(ledger(environ)) == 3

    srv.batch_api.fail, srv.batch_api.expire_after = {}, None
    retried = batch("retry", "1", "--failed")
    assert retried.returncode == 0 and "sent 3 rows again" in retried.stdout
    assert uploaded_ids(srv) == ["2", "5", "6"]
    assert len(srv.batch_api.batches) == 2
    assert batch("wait", "1").returncode == 0
    refetched = batch("fetch", "1")
    assert refetched.returncode == 0 and refetched.stderr.startswith("All 6 rows succeeded.")
    assert [line["reply"] for line in results(refetched)] == [f"echo: prompt {i}" for i in range(1, 7)]
    assert results(refetched)[0] == lines[0]  # a row done before is as it was
    assert len(ledger(environ)) == 6  # each row booked once
    assert "nothing was sent" in batch("retry", "1", "--failed").stdout


def test_a_job_split_at_a_small_limit_goes_as_two_batches_and_joins_back_in_order(srv, batch):
    sent = batch("submit", prompts(5), "--split", "3")
    assert "as 2 batches" in sent.stderr
    assert [uploaded_ids(srv, 0), uploaded_ids(srv, 1)] == [["1", "2", "3"], ["4", "5"]]
    assert status_of(batch)["batches"] == "2"
    batch("wait", "1")
    fetched = batch("fetch", "1")
    assert [(line["id"], line["reply"]) for line in results(fetched)] == [(str(i), f"echo: prompt {i}") for i in range(1, 6)]


def test_run_with_wait_waits_and_writes_only_the_result_lines_to_stdout(srv, batch, environ):
    done = batch("submit", prompts(3), "--wait")
    assert done.returncode == 0
    assert [(line["id"], line["reply"]) for line in results(done)] == [(str(i), f"echo: prompt {i}") for i in range(1, 4)]
    said = done.stderr.splitlines()
    assert said[0].startswith("Job 1: sent 3 requests") and "Ctrl-C stops the waiting, not the job" in said[0]
    assert any(line.startswith("Job 1: completed, 3 of 3 requests done") for line in said)
    assert "Job 1 has ended (completed): the server did 3 of 3 requests." in said
    assert said[-1].startswith("All 3 rows succeeded.")
    assert len(ledger(environ)) == 3
    again = batch("submit", "prompts.txt", "--wait", "--output", "again.jsonl")  # done already: written again
    assert again.returncode == 0 and again.stdout == "" and Path("again.jsonl").read_text() == done.stdout
    assert len(srv.batch_api.batches) == 1 and len(ledger(environ)) == 3


def test_a_thousand_prompts_go_through_the_batch_api_with_one_command(srv, batch, environ):
    srv.batch_api.timing = Timing(validating=0.05, in_progress=0.3, finalizing=0.05)
    done = batch("submit", prompts(1000), "--wait", "--output", "results.jsonl")
    assert done.returncode == 0 and "All 1,000 rows succeeded." in done.stderr
    lines = [json.loads(line) for line in Path("results.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [str(i) for i in range(1, 1001)]
    assert all(line["reply"] == f"echo: prompt {line['id']}" for line in lines)
    booked = ledger(environ)
    listed = sum(Pricing().cost("gpt-4o-mini", Usage(s.prompt_tokens, s.completion_tokens, s.total_tokens)) for s in booked)
    assert len(booked) == 1000 and sum(s.cost_usd for s in booked) == pytest.approx(listed / 2)


def test_a_job_cancelled_midway_keeps_what_the_server_finished(srv, batch):
    srv.batch_api.timing = Timing(validating=0.0, in_progress=2.0, finalizing=0.05, cancelling=0.1)
    batch("submit", prompts(10))
    deadline = time.monotonic() + 5
    while int(status_of(batch)["server_done"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = batch("cancel", "1")
    assert cancelled.returncode == 0 and "the server is cancelling 1 batch" in cancelled.stdout
    assert status_of(batch)["status"] in ("cancelling", "cancelled")
    assert batch("wait", "1").returncode == 0
    fetched = batch("fetch", "1")
    statuses = [line["status"] for line in results(fetched)]
    done = statuses.count("ok")
    assert 2 <= done < 10 and statuses == ["ok"] * done + ["cancelled"] * (10 - done)  # rows run in input order
    assert fetched.returncode == 1 and f"{done} of 10 rows succeeded; {10 - done} cancelled." in fetched.stderr
    assert "nothing to cancel" in batch("cancel", "1").stdout


def test_a_batch_the_server_refuses_whole_fails_each_row_with_its_reason(srv, batch):
    srv.batch_api.reject = "Enqueued token limit reached for gpt-4o-mini."
    batch("submit", prompts(2))
    waited = batch("wait", "1")
    assert waited.returncode == 1 and "(failed)" in waited.stderr
    fetched = batch("fetch", "1")
    lines = results(fetched)
    assert [line["status"] for line in lines] == ["failed", "failed"]
    assert lines[0]["error"] == "The server refused the whole batch (Enqueued token limit reached for gpt-4o-mini)."
    assert fetched.returncode == 1 and fetched.stderr == "0 of 2 rows succeeded; 2 failed.\n"
    assert "chatcli batch fetch 1 writes its results" in batch("wait", "1").stderr  # nothing left to wait for

    run = batch("submit", prompts(1, "one.txt"), "--wait")  # run --wait: the results all the same
    assert run.returncode == 1 and results(run)[0]["status"] == "failed" and "0 of 1 rows succeeded" in run.stderr


def test_ctrl_c_stops_only_the_waiting_and_a_killed_run_leaves_a_job_to_fetch_later(srv, environ, batch):
    srv.batch_api.timing = Timing(validating=0.05, in_progress=60, finalizing=0.05)  # held until let go
    prompts(4)

    def started(*argv: str) -> subprocess.Popen:
        words, split = chatcli_argv(argv)
        child = subprocess.Popen([sys.executable, "-m", "chatcli", *words], env={**environ, **split}, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while "requests done" not in (line := child.stderr.readline()):  # waiting now
            assert line, child.communicate()
        return child

    run = started("submit", "prompts.txt", "--wait")  # batch run --via api --wait, killed as it waits
    run.kill()
    run.wait()
    waiting = started("wait", "1")
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=20)
    OUTPUTS.append(subprocess.CompletedProcess([], waiting.returncode, out, err))
    assert waiting.returncode == 130 and err.endswith("chatcli: stopped waiting; job 1 goes on: chatcli batch wait 1\n")
    assert "Traceback" not in err and srv.batch_api.batches[next(iter(srv.batch_api.batches))].status == "in_progress"

    srv.batch_api.retime(in_progress=0.1)
    assert batch("wait", "1").returncode == 0
    fetched = batch("fetch", "1")
    assert fetched.returncode == 0 and [line["id"] for line in results(fetched)] == ["1", "2", "3", "4"]
    assert len(srv.batch_api.batches) == 1  # one job, sent once


def test_the_same_input_sent_again_reuses_its_job(srv, batch):
    batch("submit", prompts(3))
    refused = batch("submit", "prompts.txt")
    assert re.fullmatch(r"chatcli: Job 1 is already sending this input \((validating|in progress|finalizing)\); "
                        r"follow it with chatcli batch wait 1\.", error_line(refused, 1))
    batch("wait", "1")
    again = batch("submit", "prompts.txt")
    assert again.returncode == 0 and again.stderr == "All 3 rows of job 1 have their results already; chatcli batch fetch 1 writes them.\n"
    assert len(srv.batch_api.batches) == 1
    Path("prompts.txt").write_text("prompt 1\nprompt 2, changed\nprompt 3\nprompt 4\n")
    batch("submit", "prompts.txt")
    assert uploaded_ids(srv) == ["2", "4"]  # rows 1 and 3 keep their results


def test_failures_are_one_sentence(srv, batch, environ):
    srv.batch_api.enabled = False
    line = error_line(batch("submit", prompts(2)), 1)  # --via api named, on a server without one
    assert line == (f"chatcli: The server at {srv.base_url} has no Batch API (HTTP 404 when asked to list its "
                    "batches); run the batch here with --via local.")
    assert batch("list").stdout == "No batch jobs yet.\n"  # refused before a job was made
    srv.batch_api.enabled = True
    assert batch("submit", prompts(2)).returncode == 0  # job 1

    srv.api_key = "not-the-test-key"
    assert "rejected the API key (401)" in error_line(batch("retry", "1", "--failed"), 3)
    srv.api_key = None
    assert error_line(batch("status", "9"), 2) == "chatcli: There is no batch job 9; chatcli batch list shows them."
    listed = subprocess.run([sys.executable, "-m", "chatcli", "batch", "list", "-n", "0"], env=environ, text=True,
                            capture_output=True)  # argparse's own exit: a process of its own
    assert listed.returncode == 2 and "-n/--limit: must be a whole number of jobs, 1 or more, not '0'" in listed.stderr

    batch("retry", "1", "--failed")
    elsewhere = f"http://127.0.0.1:{free_port()}/v1"
    line = error_line(batch("wait", "1", env={"OPENAI_BASE_URL": elsewhere}), 3)
    assert line == f"chatcli: Job 1 was sent to {srv.base_url}, and this command talks to {elsewhere}; " \
                   f"run it with --base-url {srv.base_url}."
    unreachable = batch("submit", prompts(2, "other.txt"), env={"OPENAI_BASE_URL": elsewhere, "CHATCLI_MAX_RETRIES": "0"})
    assert error_line(unreachable, 4).startswith(f"chatcli: Could not connect to {elsewhere};")


def test_the_probe_finds_a_batch_api_only_where_there_is_one(srv, environ):
    config = load_config(make_env(environ=environ))
    assert has_batch_api(config)
    srv.batch_api.enabled = False
    assert not has_batch_api(config)
    srv.batch_api.enabled = True
    srv.flavor = "llamacpp"
    assert not has_batch_api(config)
    srv.flavor = "openai"
    srv.api_key = "not-the-test-key"
    assert not has_batch_api(config)


# --- the pieces, without a server ---


def test_request_files_split_at_the_request_and_byte_limits():
    lines = [(str(i), request_line(str(i), {"model": "m", "messages": [{"role": "user", "content": "x" * i}]}))
             for i in range(1, 8)]
    assert json.loads(lines[0][1]) == {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
                                       "body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}
    by_count = split(lines, Limits(requests=3))
    assert [[cid for cid, _ in part] for part in by_count] == [["1", "2", "3"], ["4", "5", "6"], ["7"]]
    limit = sum(len(line) for _, line in lines[:3]) - 1  # room for the first two, not the third
    by_bytes = split(lines, Limits(bytes=limit))
    assert [cid for part in by_bytes for cid, _ in part] == [str(i) for i in range(1, 8)]
    sizes = [sum(len(line) for _, line in part) for part in by_bytes]
    assert [cid for cid, _ in by_bytes[0]] == ["1", "2"] and max(sizes) <= limit
    assert all(size + len(after[0][1]) > limit for size, after in zip(sizes, by_bytes[1:]))  # each part as full as it goes
    with pytest.raises(UsageError, match="more than a Batch API file may hold"):
        split(lines, Limits(bytes=len(lines[0][1])))


def test_wait_asks_after_one_second_doubling_to_thirty():
    waits = Poll().waits()
    assert [next(waits) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_job_is_found_again_by_its_server_spec_and_input():
    spec = Spec(model="gpt-4o-mini", system="terse")
    assert job_key("http://a/v1", spec, "in.txt") == job_key("http://a/v1", Spec(model="gpt-4o-mini", system="terse"), "in.txt")
    assert len({job_key("http://a/v1", spec, "in.txt"), job_key("http://b/v1", spec, "in.txt"),
                job_key("http://a/v1", Spec(model="gpt-4o"), "in.txt"), job_key("http://a/v1", spec, "other.txt")}) == 4


def test_batch_prices_are_half_the_list_price_unless_the_config_gives_them(tmp_path):
    usage = Usage(prompt_tokens=1000, completion_tokens=500, total_tokens=1500, cached_tokens=200)
    listed = Pricing().cost("gpt-4o", usage)
    assert Pricing().cost("gpt-4o", usage, batch=True) == pytest.approx(listed / 2)
    assert Pricing().cost("gpt-4o-2024-08-06", usage, batch=True) == pytest.approx(listed / 2)
    assert Pricing().cost("gpt-4o", Usage(10, 10, 20, cost=0.5), batch=True) == 0.5  # the provider's figure wins
    assert Pricing().cost("no-such-model", usage, batch=True) is None

    config = tmp_path / "config.toml"
    config.write_text('[prices."mine"]\ninput = 2.0\noutput = 8.0\nbatch_input = 1.5\nbatch_output = 3.0\n'
                      '[prices."other"]\ninput = 2.0\noutput = 8.0\n')
    prices = load_config(make_env(), config_path=str(config)).prices
    plain = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, total_tokens=2_000_000)
    assert Pricing(prices).cost("mine", plain, batch=True) == pytest.approx(1.5 + 3.0)
    assert Pricing(prices).cost("mine", plain) == pytest.approx(2.0 + 8.0)
    assert Pricing(prices).cost("other", plain, batch=True) == pytest.approx(1.0 + 4.0)
    config.write_text('[prices."mine"]\ninput = 2.0\noutput = 8.0\nbatch_price = 1\n')
    with pytest.raises(Exception, match="may have cached_input, batch_input and batch_output"):
        load_config(make_env(), config_path=str(config))


def test_the_poll_override_is_checked():
    from chatcli.cli.batch_api import poll_of

    assert poll_of(make_env(environ={})) == Poll()
    assert poll_of(make_env(environ={"CHATCLI_BATCH_POLL": "0.5,4"})) == Poll(0.5, 4)
    with pytest.raises(UsageError, match="CHATCLI_BATCH_POLL must be seconds"):
        poll_of(make_env(environ={"CHATCLI_BATCH_POLL": "soon"}))


def test_run_without_via_goes_through_the_batch_api_where_the_server_has_one(srv, batch):
    sent = batch("run", prompts(3))
    assert (sent.returncode, sent.stdout) == (0, "1\n"), sent.stderr
    assert uploaded_ids(srv) == ["1", "2", "3"] and srv.chat_requests == []
    assert "sent 3 requests to the Batch API" in sent.stderr


def test_a_job_past_a_budget_cap_at_batch_prices_is_refused_before_anything_is_uploaded(srv, batch, environ):
    config = Path(environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # $10,000 a million tokens in and out, $5,000 at batch prices: about 14 tokens a row with 5 out.
    config.write_text('[prices."gpt-4o-mini"]\ninput = 10000.0\noutput = 10000.0\n[budget]\ndaily_usd = 0.2\n')
    refused = batch("submit", prompts(3), "--max-tokens", "5")
    assert refused.returncode == 1 and srv.batch_api.files == {} and srv.chat_requests == []
    line = error_line(refused, 1)
    assert line.startswith("chatcli: This batch (3 requests, ") and "at batch prices) would take today's spending" in line
    assert "past the daily_usd budget of $0.20" in line


def test_with_redact_the_uploaded_request_file_holds_no_personal_data(srv, batch, environ):
    config = Path(environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('redact = ["email"]\n')
    Path("p.txt").write_text("write to ada@example.com\nsay hi\n")
    assert batch("submit", "p.txt").returncode == 0
    (uploaded,) = [f for f in srv.batch_api.files.values() if f.purpose == "batch"]
    text = uploaded.data.decode()
    assert "ada@example.com" not in text and "[EMAIL_REDACTED]" in text


def test_a_reply_that_does_not_match_the_schema_is_a_failed_row_that_retry_sends_again(srv, batch):
    Path("person.json").write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}},
                                               "required": ["name"], "additionalProperties": False}))
    srv.script(Reply('{"name": "Ada"}'), Reply("no JSON here"))
    done = batch("submit", prompts(2), "--schema", "person.json", "--wait")
    assert done.returncode == 1
    assert [(r["status"], r["parsed"]) for r in results(done)] == [("ok", {"name": "Ada"}), ("failed", None)]
    assert status_of(batch)["failed"] == "1"  # the job knows it failed, as the results say
    srv.script(Reply('{"name": "Bea"}'))
    assert batch("retry", "1", "--failed").returncode == 0
    assert uploaded_ids(srv, 1) == ["2"]
    assert batch("wait", "1").returncode == 0
    fetched = batch("fetch", "1")
    assert [r["parsed"] for r in results(fetched)] == [{"name": "Ada"}, {"name": "Bea"}]  # parsed without --schema


def test_a_key_in_a_reply_is_hidden_through_the_batch_api_as_here(srv, batch, environ):
    srv.script(Reply(f"the key is {environ['OPENAI_API_KEY']}"))  # a server that quotes the request's header
    done = batch("submit", prompts(1), "--wait")
    assert done.returncode == 0 and environ["OPENAI_API_KEY"] not in done.stdout
    assert results(done)[0]["reply"].startswith("the key is ")  # and the database: the harness reads every file
