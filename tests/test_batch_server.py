"""The test server's Batch API (tests/support/batch_api.py), driven by the real openai SDK: what chatcli's
--via api tests stand on must be what OpenAI's /v1/files and /v1/batches answer."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.support.batch_api import EXPIRED_MESSAGE, Timing
from tests.support.flavors import prompt_tokens
from tests.support.keys import TEST_KEY
from tests.support.server import ChatServer, Error, Reply, compute_usage

FAST = Timing(validating=0.05, in_progress=0.3, finalizing=0.05, cancelling=0.05)


def lines_for(n: int, *, model: str = "gpt-4o-mini") -> bytes:
    return "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]}})
                   + "\n" for i in range(1, n + 1)).encode()


@pytest.fixture
def sdk(srv: ChatServer) -> openai.OpenAI:
    srv.batch_api.timing = FAST
    return openai.OpenAI(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0)


def started(sdk: openai.OpenAI, data: bytes):
    file = sdk.files.create(file=("in.jsonl", data), purpose="batch")
    return sdk.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")


def until_ended(sdk: openai.OpenAI, batch_id: str, seen: list[str] | None = None, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        if seen is not None and (not seen or seen[-1] != batch.status):
            seen.append(batch.status)
        if batch.status in ("completed", "expired", "cancelled", "failed"):
            return batch
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def jsonl(sdk: openai.OpenAI, file_id: str | None) -> list[dict]:
    assert file_id is not None
    return [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]


def test_a_batch_moves_through_its_states_and_its_output_file_holds_a_completion_per_row(srv, sdk):
    srv.batch_api.timing = Timing(validating=0.05, in_progress=0.6, finalizing=0.05)
    data = lines_for(6)
    file = sdk.files.create(file=("in.jsonl", data), purpose="batch")
    assert (file.object, file.purpose, file.bytes, file.filename) == ("file", "batch", len(data), "in.jsonl")
    assert sdk.files.retrieve(file.id).id == file.id
    assert sdk.files.content(file.id).content == data

    batch = sdk.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata={"chatcli_job": "7"})
    assert (batch.status, batch.metadata, batch.request_counts.total) == ("validating", {"chatcli_job": "7"}, 6)
    seen: list[str] = []
    counts = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = sdk.batches.retrieve(batch.id)
        if not seen or seen[-1] != now.status:
            seen.append(now.status)
        counts.append(now.request_counts.completed)
        if now.status == "completed":
            break
        time.sleep(0.02)
    assert seen[0] == "validating" and seen[-1] == "completed" and "in_progress" in seen
    assert seen == [s for s in ("validating", "in_progress", "finalizing", "completed") if s in seen]
    assert counts == sorted(counts) and len(set(counts)) > 2  # the counts climb while it runs
    assert now.error_file_id is None and now.completed_at is not None and now.in_progress_at is not None
    assert sdk.files.retrieve(now.output_file_id).purpose == "batch_output"

    lines = jsonl(sdk, now.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == [f"r{i}" for i in range(1, 7)]
    assert [line["custom_id"] for line in lines] != [f"r{i}" for i in range(1, 7)]  # in no set order
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        completion = line["response"]["body"]
        assert completion["object"] == "chat.completion"
        number = line["custom_id"][1:]
        text = completion["choices"][0]["message"]["content"]
        assert text == f"echo: question {number}"
        request = {"messages": [{"role": "user", "content": f"question {number}"}]}
        assert completion["usage"]["prompt_tokens"] == prompt_tokens(request["messages"])
        assert completion["usage"] == compute_usage(request, text)


def test_failed_rows_go_to_the_error_file_with_their_answer(srv, sdk):
    srv.batch_api.fail = {"r2": Error(400, "row two is wrong", code="invalid_value")}
    srv.script(Reply("first"), Error(500, "the model crashed"))  # rows r1 and r3 take these, in input order
    batch = until_ended(sdk, started(sdk, lines_for(4)).id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)
    errors = {line["custom_id"]: line["response"] for line in jsonl(sdk, batch.error_file_id)}
    assert errors["r2"]["status_code"] == 400 and errors["r2"]["body"]["error"]["message"] == "row two is wrong"
    assert errors["r3"]["status_code"] == 500 and errors["r3"]["body"]["error"]["message"] == "the model crashed"
    done = {line["custom_id"]: line["response"]["body"] for line in jsonl(sdk, batch.output_file_id)}
    assert done["r1"]["choices"][0]["message"]["content"] == "first"
    assert done["r4"]["choices"][0]["message"]["content"] == "echo: question 4"


def test_an_expired_batch_lists_the_rows_it_did_not_run_as_batch_expired(srv, sdk):
    srv.batch_api.expire_after = 2
    batch = until_ended(sdk, started(sdk, lines_for(5)).id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert sorted(line["custom_id"] for line in jsonl(sdk, batch.output_file_id)) == ["r1", "r2"]
    expired = jsonl(sdk, batch.error_file_id)
    assert sorted(line["custom_id"] for line in expired) == ["r3", "r4", "r5"]
    assert all(line["response"] is None and line["error"] == {"code": "batch_expired", "message": EXPIRED_MESSAGE}
               for line in expired)


def test_a_cancelled_batch_keeps_what_it_did_and_a_finished_one_cannot_be_cancelled(srv, sdk):
    srv.batch_api.timing = Timing(validating=0.0, in_progress=2.0, finalizing=0.05, cancelling=0.1)
    batch = started(sdk, lines_for(10))
    until = time.monotonic() + 5
    while sdk.batches.retrieve(batch.id).request_counts.completed < 2 and time.monotonic() < until:
        time.sleep(0.02)
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    ended = until_ended(sdk, batch.id)
    assert ended.status == "cancelled"
    done = [line["custom_id"] for line in jsonl(sdk, ended.output_file_id)]
    assert 2 <= len(done) < 10 and ended.request_counts.completed == len(done)
    assert ended.error_file_id is None  # OpenAI lists no line for a request it never ran
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status 'cancelled'"):
        sdk.batches.cancel(batch.id)


def test_batches_are_listed_newest_first_a_page_at_a_time(srv, sdk):
    made = [started(sdk, lines_for(1)).id for _ in range(5)]
    page = sdk.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
    assert [b.id for b in sdk.batches.list(limit=2)] == made[::-1]  # the SDK follows `after` through the pages
    assert [b.id for b in sdk.batches.list(limit=2, after=made[2]).data] == made[1::-1]


def test_an_input_file_that_is_not_valid_fails_the_batch_at_validation(srv, sdk):
    good = lines_for(2).decode().splitlines()
    batch = until_ended(sdk, started(sdk, f"{good[0]}\n{good[0]}\nnot json\n".encode()).id)
    assert batch.status == "failed" and batch.failed_at is not None and batch.output_file_id is None
    assert [(e.line, e.message) for e in batch.errors.data] == [
        (2, "The custom_id 'r1' is used more than once."), (3, "This line is not parseable as valid JSON.")]
    srv.batch_api.reject = "Enqueued token limit reached for gpt-4o-mini."
    batch = until_ended(sdk, started(sdk, lines_for(1)).id)
    assert batch.status == "failed" and batch.errors.data[0].message == srv.batch_api.reject


def test_the_batch_api_wants_the_key_and_is_absent_where_the_server_has_none(srv, sdk):
    srv.api_key = "another-key"
    with pytest.raises(openai.AuthenticationError):
        sdk.batches.list()
    srv.api_key = None
    srv.batch_api.enabled = False
    with pytest.raises(openai.NotFoundError):
        sdk.batches.list()
    srv.batch_api.enabled = True
    srv.flavor = "ollama"  # Ollama, llama.cpp, vLLM, LM Studio, OpenRouter: no Batch API
    with pytest.raises(openai.NotFoundError):
        sdk.files.create(file=("in.jsonl", lines_for(1)), purpose="batch")


def test_bad_requests_are_refused_as_openai_refuses_them(srv, sdk):
    with pytest.raises(openai.BadRequestError, match="purpose"):
        sdk.files.create(file=("in.jsonl", lines_for(1)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="No such file"):
        sdk.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        sdk.files.content("file-nope")
