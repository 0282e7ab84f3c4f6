"""The client against the test server: real openai SDK, real HTTP, real SSE."""

from __future__ import annotations

import json
import socket
import time

import pytest

from chatcli.base.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_NETWORK, ChatError
from chatcli.base.events import Finish, ReasoningDelta, Served, TextDelta, Usage
from chatcli.config.settings import Config
from chatcli.llm.client import ChatClient
from chatcli.llm.sse import parse_sse
from tests.support.server import Error, Reply

KEY = "sk-client-test-123456"


def make_client(srv, **overrides) -> ChatClient:
    settings = dict(base_url=srv.base_url, api_key=KEY, max_retries=0, read_timeout=5.0)
    settings.update(overrides)
    return ChatClient(Config(**settings))


def collect(client: ChatClient, text: str = "hi", **params):
    return list(client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], params=params))


def test_streams_text_usage_and_finish(srv):
    srv.script(Reply("Hello there, friend.", chunk_size=3))
    events = collect(make_client(srv))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there, friend."
    assert [e for e in events if isinstance(e, Finish)] == [Finish("stop")]
    usage = [e for e in events if isinstance(e, Usage)]
    assert len(usage) == 1 and usage[0].completion_tokens == 3 and usage[0].total_tokens > 3
    body = srv.chat_requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert srv.chat_requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_sends_only_the_parameters_that_are_set(srv):
    collect(make_client(srv), temperature=0.3, max_tokens=None)
    body = srv.chat_requests[-1].body
    assert body["temperature"] == 0.3 and "max_tokens" not in body


def test_reasoning_deltas_are_separate_from_text(srv):
    srv.script(Reply("answer", reasoning="thinking hard"))
    events = collect(make_client(srv))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "thinking hard"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "answer"


def test_a_stream_without_finish_reason_yields_no_finish(srv):
    srv.script(Reply("cut off here", finish_reason=None))
    events = collect(make_client(srv))
    assert not any(isinstance(e, Finish) for e in events)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "cut off here"


def test_local_server_without_key_sends_a_placeholder(srv):
    collect(make_client(srv, api_key=None))
    assert srv.chat_requests[-1].headers["authorization"].startswith("Bearer ")


@pytest.mark.parametrize(
    "error, exit_code, words",
    [
        (Error(401, "Incorrect API key provided: sk-clien*****3456", code="invalid_api_key"), EXIT_CONFIG, "rejected the API key"),
        (Error(403, f"Project of key {KEY} does not have access"), EXIT_CONFIG, "403"),
        (Error(404, "The model `gpt-9` does not exist", code="model_not_found"), EXIT_FAILURE, "model 'gpt-4o-mini' was not found"),
        (Error(404, "no route", code="unknown_url"), EXIT_FAILURE, "check the base URL"),
        (Error(429, "Rate limit reached"), EXIT_FAILURE, "rate limiting"),
        (Error(429, "You exceeded your current quota", code="insufficient_quota"), EXIT_FAILURE, "out of credit"),
        (Error(400, "maximum context length is 8192 tokens", code="context_length_exceeded"), EXIT_FAILURE, "context window"),
        (Error(400, "Invalid 'temperature'"), EXIT_FAILURE, "Invalid 'temperature'"),
        (Error(503, "overloaded"), EXIT_FAILURE, "HTTP 503"),
    ],
)
def test_http_errors_become_one_sentence(srv, error, exit_code, words):
    srv.script(error)
    with pytest.raises(ChatError) as caught:
        collect(make_client(srv))
    message = caught.value.message
    assert words in message
    assert caught.value.exit_code == exit_code
    assert "\n" not in message and KEY not in message and "sk-clien" not in message


def test_401_without_a_key_says_how_to_set_one(srv):
    srv.script(Error(401, "auth required"))
    with pytest.raises(ChatError, match="OPENAI_API_KEY"):
        collect(make_client(srv, api_key=None))


def test_retries_rate_limits_and_server_errors_then_succeeds(srv):
    srv.script(Error(429, "slow", headers={"retry-after-ms": "1"}), Error(502, "bad gateway", headers={"retry-after-ms": "1"}), Reply("made it"))
    events = collect(make_client(srv, max_retries=2))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "made it"
    assert len(srv.chat_requests) == 3


def test_connection_refused_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(Config(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0))
    with pytest.raises(ChatError) as caught:
        list(client.stream(model="m", messages=[], params={}))
    assert caught.value.exit_code == EXIT_NETWORK
    assert f"127.0.0.1:{port}" in caught.value.message


def test_silence_longer_than_read_timeout_is_a_timeout(srv):
    srv.script(Reply("late", first_delay=2.0))
    started = time.monotonic()
    with pytest.raises(ChatError, match="sent no text for more than 0.3s") as caught:
        collect(make_client(srv, read_timeout=0.3))
    assert time.monotonic() - started < 1.5
    assert caught.value.exit_code == EXIT_NETWORK
    assert "reading a long prompt" in caught.value.message and "middle of the reply" not in caught.value.message


def test_silence_after_a_role_only_chunk_is_not_a_stall_in_the_middle_of_the_reply(srv):
    """llama-server sends the role chunk at once, then reads the prompt: no text has come yet."""
    srv.script(Reply("late text", stall_after=0, stall_seconds=2.0))
    with pytest.raises(ChatError) as caught:
        collect(make_client(srv, read_timeout=0.3))
    assert "sent no text for more than 0.3s" in caught.value.message
    assert "still be reading a long prompt, or has not started" in caught.value.message
    assert "middle of the reply" not in caught.value.message


def test_stall_mid_stream_keeps_what_arrived(srv):
    srv.script(Reply("abcdefgh", chunk_size=4, stall_after=1, stall_seconds=2.0))
    client = make_client(srv, read_timeout=0.3)
    got = []
    with pytest.raises(ChatError, match="went silent"):
        for event in client.stream(model="m", messages=[], params={}):
            got.append(event)
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == "abcd"


@pytest.mark.parametrize(
    "reply, words",
    [
        (Reply("abcdefgh", chunk_size=4, disconnect_after=1), "broke off"),
        (Reply("abcdefgh", chunk_size=4, malformed_after=1), "malformed"),
        (Reply("abcdefgh", chunk_size=4, error_event_after=1, error_message="model overloaded"), "model overloaded"),
    ],
)
def test_broken_streams_raise_after_the_text_that_arrived(srv, reply, words):
    srv.script(reply)
    got = []
    with pytest.raises(ChatError, match=words):
        for event in make_client(srv).stream(model="m", messages=[], params={}):
            got.append(event)
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == "abcd"


def test_sse_parser_handles_comments_multiline_data_and_missing_done():
    lines = [
        ": keep-alive",
        "",
        'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}',
        "",
        'data: {"choices":[{"delta":',
        'data: {"content":"b"},"finish_reason":"stop"}]}',
        "",
        'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}',
    ]
    assert list(parse_sse(lines)) == [TextDelta("a"), TextDelta("b"), Finish("stop"), Usage(3, 2, 5)]


def test_sse_parser_stops_at_done():
    lines = ['data: {"choices":[{"delta":{"content":"a"}}]}', "", "data: [DONE]", "", 'data: {"choices":[{"delta":{"content":"late"}}]}', ""]
    assert list(parse_sse(lines)) == [TextDelta("a")]


@pytest.mark.server
def test_openai_is_imported_only_when_used():
    import subprocess
    import sys

    code = (
        "import sys; from chatcli.llm.client import ChatClient; from chatcli.config.settings import Config;"
        "c = ChatClient(Config(base_url='http://127.0.0.1:9/v1'));"
        "print('openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    "chunk",
    [
        '{"choices":[{"delta":"oops"}]}',
        '{"choices":[{"delta":{"content":5}}]}',
        '{"choices":[{"delta":{"content":"a"}}],"usage":[1]}',
        '{"choices":"nope"}',
        "[1, 2]",
    ],
)
def test_chunks_of_the_wrong_shape_are_a_sentence_not_a_crash(chunk):
    with pytest.raises(ChatError, match="malformed"):
        list(parse_sse([f"data: {chunk}", ""]))


def test_a_whole_json_completion_instead_of_a_stream_is_still_the_reply(srv):
    completion = {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    srv.script(Error(200, body=json.dumps(completion).encode()))
    events = collect(make_client(srv))
    assert events == [Served("m"), TextDelta("whole answer"), Finish("stop"), Usage(3, 2, 5)]


def test_an_html_page_instead_of_a_stream_points_at_the_base_url(srv):
    srv.script(Error(200, body=b"<html><body>Welcome</body></html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(ChatError, match="text/html.*base URL"):
        collect(make_client(srv))


def test_a_timeout_after_retries_says_each_try_went_silent(srv):
    srv.script(Reply("late", first_delay=1.0), Reply("late", first_delay=1.0))
    with pytest.raises(ChatError, match=r"more than 0\.2s on each of 2 tries"):
        collect(make_client(srv, read_timeout=0.2, max_retries=1))


def test_chunks_of_absurd_shapes_are_malformed_not_crashes():
    from chatcli.base.errors import ChatError
    from chatcli.llm.sse import parse_sse

    for payload in ('{"usage": {"prompt_tokens": Infinity}}', "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ChatError, match="malformed"):
            list(parse_sse(iter([f"data: {payload}", ""])))


def test_each_retry_is_said_before_the_wait_with_its_reason_and_count(srv):
    from chatcli.base.events import Retrying

    srv.script(
        Error(429, "slow down", headers={"retry-after-ms": "300"}),
        Error(503, "overloaded", headers={"retry-after-ms": "100"}),
        Reply("made it"),
    )
    client = make_client(srv, max_retries=2)
    client.warm_up()  # importing openai is not part of what is timed
    said: list[tuple[Retrying, float]] = []
    started = time.monotonic()
    events = []
    for event in client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}):
        events.append(event)
        if isinstance(event, Retrying):  # in the reply's stream, as it happens
            said.append((event, time.monotonic()))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "made it"
    assert [str(event) for event, _ in said] == [
        "rate limited, retrying in 0.3s (attempt 1/2)",
        "the server failed (HTTP 503), retrying in 0.1s (attempt 2/2)",
    ]
    assert said[0][1] - started < 0.25 and time.monotonic() - started >= 0.4  # said first, then waited as asked


def test_an_account_out_of_credit_is_not_retried(srv):
    srv.script(*[Error(429, "You exceeded your current quota", code="insufficient_quota", headers={"retry-after-ms": "1"})] * 3)
    from chatcli.base.events import Retrying

    client = make_client(srv, max_retries=2)
    events = []
    with pytest.raises(ChatError, match="out of credit"):
        for event in client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}):
            events.append(event)
    assert not [e for e in events if isinstance(e, Retrying)], events  # never retried
    assert len(srv.chat_requests) == 1


def test_a_one_shot_ask_says_each_retry_on_stderr_and_the_reply_on_stdout(srv, run_chatcli):
    srv.script(Error(429, "slow down", headers={"retry-after-ms": "50"}), Reply("late but fine"))
    result = run_chatcli("hello", env={"CHATCLI_MAX_RETRIES": "2"})
    assert result.returncode == 0 and result.stdout == "late but fine\n"
    assert result.stderr == "chatcli: rate limited, retrying in 0.1s (attempt 1/2).\n"
