"""Tests for tests/support/server.py, driven by the real openai SDK over real HTTP.

The server is the foundation of the other tests, so these pin down that the
SDK sees exactly what it would see from OpenAI, including the failure modes.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import httpx2
import openai
import pytest

from tests.support.server import ChatServer, Echo, Error, Reply, compute_usage

pytestmark = [pytest.mark.timeout(10), pytest.mark.server]  # the test server itself, over real HTTP

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


@pytest.fixture
def srv(_shared_server: ChatServer) -> Iterator[ChatServer]:
    """One server per module (fast), reset before every test (isolated)."""
    _shared_server.reset()
    yield _shared_server
    _shared_server.wait_idle(1.0)


@pytest.fixture
def client(srv: ChatServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
    yield c
    c.close()


def stream(client: openai.OpenAI, **kwargs: object):  # noqa: ANN201
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs)


def test_stream_reassembles_text(srv: ChatServer, client: openai.OpenAI) -> None:
    text = "Hello, streaming world!"
    srv.script(Reply(text, chunk_size=3))
    chunks = list(stream(client))

    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert contents == [text[i : i + 3] for i in range(0, len(text), 3)]
    assert "".join(contents) == text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o-mini" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")

    (rec,) = srv.chat_requests
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.body["stream"] is True and rec.body["messages"] == MESSAGES
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert json.loads(rec.raw) == rec.body


def test_usage_chunk_only_with_include_usage(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("one two three"), Reply("one two three"))
    plain = list(stream(client))
    assert all(c.usage is None for c in plain)

    with_usage = list(stream(client, stream_options={"include_usage": True}))
    last = with_usage[-1]
    assert last.choices == []
    assert all(c.usage is None for c in with_usage[:-1])
    # (2 + 4) + (2 + 4) prompt, 3 completion: see compute_usage.
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (12, 3, 15)
    assert last.usage.prompt_tokens_details.cached_tokens == 0
    assert last.usage.completion_tokens_details.reasoning_tokens == 0


def test_usage_false_and_explicit(srv: ChatServer, client: openai.OpenAI) -> None:
    given = {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15}
    srv.script(Reply("x", usage=False), Reply("x", usage=given))
    assert all(c.usage is None for c in stream(client, stream_options={"include_usage": True}))
    last = list(stream(client, stream_options={"include_usage": True}))[-1]
    assert last.usage.model_dump(exclude_none=True) == given


def test_finish_reason_none_and_no_done(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("abcdefgh", finish_reason=None, done=False))
    chunks = list(stream(client))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "abcdefgh"
    assert all(c.choices[0].finish_reason is None for c in chunks)


def test_reasoning_streams_first(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("answer", reasoning="let me think", chunk_size=5))
    deltas = [c.choices[0].delta for c in stream(client)]
    reasoning = [getattr(d, "reasoning_content", None) for d in deltas]
    assert "".join(r for r in reasoning if r) == "let me think"
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(r is None for r in reasoning[first_content:])


def test_error_404_raises_not_found(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Error(404, "The model `nope` does not exist", type="invalid_request_error", code="model_not_found"))
    with pytest.raises(openai.NotFoundError) as info:
        stream(client)
    assert info.value.code == "model_not_found"
    assert info.value.type == "invalid_request_error"
    assert "does not exist" in info.value.message


def test_429_then_success_with_retries(srv: ChatServer) -> None:
    srv.script(Error(429, "slow down", headers={"Retry-After": "0"}), Reply("made it"))
    with openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=2) as retrying:
        chunks = list(stream(retrying))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "made it"
    reqs = srv.chat_requests
    assert len(reqs) == 2
    assert [r.headers.get("x-stainless-retry-count") for r in reqs] == ["0", "1"]


def test_x_should_retry_false_is_obeyed(srv: ChatServer) -> None:
    srv.script(Error(500, "boom", headers={"x-should-retry": "false"}))
    with openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=2) as retrying:
        with pytest.raises(openai.InternalServerError):
            stream(retrying)
    assert len(srv.chat_requests) == 1


def test_api_key_enforced(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.api_key = "sk-right"
    srv.script(Reply("secret"))
    with pytest.raises(openai.AuthenticationError) as info:
        stream(client)
    assert info.value.code == "invalid_api_key"
    assert info.value.message.endswith("Incorrect API key provided.") or "Incorrect API key" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert srv.pending == 1  # a rejected request does not consume the script

    with openai.OpenAI(base_url=srv.base_url, api_key="sk-right", max_retries=0) as good:
        assert "".join(c.choices[0].delta.content or "" for c in stream(good)) == "secret"


def test_models_list(srv: ChatServer, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]
    srv.models = ["a", "b", "c"]
    models = list(client.models.list())
    assert [m.id for m in models] == ["a", "b", "c"]
    assert models[0].owned_by == "test"
    assert client.models.retrieve("b").id == "b"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("zzz")


def test_non_stream_completion(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("plain answer here", finish_reason="length"))
    resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert resp.object == "chat.completion" and resp.model == "gpt-4o"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "plain answer here"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.model_dump(exclude_none=True) == compute_usage({"messages": MESSAGES}, "plain answer here")


def test_echo_default(srv: ChatServer, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": [{"type": "text", "text": "last one"}]}]
    resp = client.chat.completions.create(model="m", messages=messages)
    assert resp.choices[0].message.content == "echo: last one"
    srv.default = Echo(prefix="> ")
    chunks = client.chat.completions.create(model="m", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "> last one"


def test_disconnect_mid_stream(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("abcdefghijkl", chunk_size=2, disconnect_after=3))
    got: list[str] = []
    with pytest.raises((openai.APIConnectionError, httpx2.TransportError)):
        for c in stream(client):
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "abcdef"
    # The dropped connection is not reused: the next request still works.
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "echo: hi there"


def test_malformed_chunk_raises_json_error(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("abcdefgh", malformed_after=1))
    got: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        for c in stream(client):
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "abcd"


def test_error_event_raises_api_error(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.script(Reply("abcdefgh", error_event_after=1, error_message="overloaded"))
    with pytest.raises(openai.APIError) as info:
        list(stream(client))
    assert info.value.message == "overloaded"


def test_first_delay_hits_client_timeout(srv: ChatServer) -> None:
    srv.script(Reply("late", first_delay=0.5))
    with openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0, timeout=0.1) as impatient:
        with pytest.raises(openai.APITimeoutError):
            stream(impatient)


def test_raw_http_details(srv: ChatServer) -> None:
    """Unknown paths, raw error bodies, pass-through headers and keep-alive."""
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)

    conn.request("GET", "/v1/nowhere")
    resp = conn.getresponse()
    assert resp.status == 404
    assert json.loads(resp.read())["error"]["code"] == "unknown_url"

    srv.script(Error(503, body=b"not json", headers={"retry-after-ms": "5"}), Reply("ok"))
    body = json.dumps({"model": "m", "messages": MESSAGES})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("retry-after-ms"), resp.read()) == (503, "5", b"not json")

    sock = conn.sock
    conn.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": MESSAGES, "stream": True}))
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    events = [e for e in resp.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert conn.sock is sock  # all three requests shared one keep-alive connection
    conn.close()


def test_abandoned_stream_is_quiet(srv: ChatServer, client: openai.OpenAI, capfd: pytest.CaptureFixture[str]) -> None:
    srv.script(Reply("x" * 400, chunk_size=1, delay=0.002))
    s = stream(client)
    next(s), next(s)
    s.close()
    assert srv.wait_idle(2.0)
    assert srv.errors == []
    assert capfd.readouterr().err == ""


def test_stop_is_prompt_during_stall() -> None:
    server = ChatServer().start()
    server.script(Reply("abcdefgh", stall_after=1, stall_seconds=30))
    first = threading.Event()
    outcome: list[BaseException | None] = []

    def consume() -> None:
        try:
            with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c:
                for chunk in stream(c):
                    if chunk.choices and chunk.choices[0].delta.content:
                        first.set()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported through `outcome`
            outcome.append(exc)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert first.wait(2.0), "first content chunk should arrive live, before the stall"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    t.join(2.0)
    assert not t.is_alive()
    assert isinstance(outcome[0], (openai.APIConnectionError, httpx2.TransportError))
