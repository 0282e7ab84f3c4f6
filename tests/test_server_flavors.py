"""Tests for ChatServer's flavors: llama.cpp, vLLM, Ollama and LM Studio as a client meets them.

Chat requests go through the real openai SDK, so the error bodies are asserted as the SDK
hands them to chatcli (``APIStatusError.body``) as well as on the wire; discovery endpoints
are fetched over plain HTTP, as a client probing a server would.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.flavors import FLAVORS, prompt_tokens
from tests.support.server import ChatServer, Echo, Reply, compute_usage

pytestmark = pytest.mark.timeout(10)

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
PROMPT = prompt_tokens(MESSAGES)  # 12: (2 + 4) + (2 + 4)


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


@pytest.fixture
def srv(_shared_server: ChatServer) -> Iterator[ChatServer]:
    _shared_server.reset()
    yield _shared_server
    _shared_server.wait_idle(1.0)


@pytest.fixture
def client(srv: ChatServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
    yield c
    c.close()


def call(srv: ChatServer, method: str, path: str, body: Any = None, key: str | None = "sk-test") -> tuple[int, Any]:
    """One plain HTTP request; the status and the JSON body."""
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    status, payload = resp.status, json.loads(resp.read())
    conn.close()
    return status, payload


def refusal(client: openai.OpenAI, model: str = "m", messages: list[Any] = MESSAGES,
            **kwargs: Any) -> openai.APIStatusError:
    """The error a streamed chat request raises before any chunk."""
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=messages, stream=True, **kwargs)
    return info.value


def streamed(client: openai.OpenAI, model: str = "m", messages: list[Any] = MESSAGES, **kwargs: Any) -> list[Any]:
    return list(client.chat.completions.create(model=model, messages=messages, stream=True,
                                               stream_options={"include_usage": True}, **kwargs))


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_of(chunks: list[Any]) -> str | None:
    return next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)


def long_history(turns: int) -> list[dict[str, str]]:
    """A system prompt and `turns` exchanges of 10-word messages, ending on a user message."""
    words = " ".join(f"w{i}" for i in range(10))
    history = [{"role": "system", "content": "be brief"}]
    for k in range(turns):
        history += [{"role": "user", "content": f"q{k} {words}"}, {"role": "assistant", "content": words}]
    return history + [{"role": "user", "content": "last question"}]


# --------------------------------------------------------------------------- #
# The API and the default flavor
# --------------------------------------------------------------------------- #


def test_flavor_is_a_setting_checked_when_set(srv: ChatServer) -> None:
    assert srv.flavor == "openai" and srv.n_ctx is None and srv.served_model is None
    assert set(FLAVORS) == {"openai", "llamacpp", "vllm", "ollama", "lmstudio", "openrouter"}
    with pytest.raises(ValueError, match="unknown flavor 'tgi'"):
        srv.flavor = "tgi"
    srv.flavor = "ollama"
    assert srv.flavor == "ollama"
    with ChatServer(flavor="vllm", n_ctx=64, served_model="x") as other:
        other.flavor, other.n_ctx = "openai", None
        other.reset()  # back to what it was built as
        assert (other.flavor, other.n_ctx, other.served_model) == ("vllm", 64, "x")
    with pytest.raises(ValueError):
        ChatServer(flavor="llama.cpp")


def test_openai_overflow_only_with_a_window(srv: ChatServer, client: openai.OpenAI) -> None:
    assert text_of(streamed(client)) == "echo: hi there"  # no window: no limit, as before
    srv.n_ctx = PROMPT - 1
    srv.script(Reply("kept"))
    err = refusal(client)
    message = (f"This model's maximum context length is {PROMPT - 1} tokens. However, your messages resulted in "
               f"{PROMPT} tokens. Please reduce the length of the messages.")
    wire = {"message": message, "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}
    assert isinstance(err, openai.BadRequestError) and err.status_code == 400
    assert err.body == wire and err.response.json() == {"error": wire}
    assert err.code == "context_length_exceeded"
    assert srv.pending == 1  # a refused request leaves the script alone
    srv.n_ctx = PROMPT
    assert text_of(streamed(client)) == "kept"


@pytest.mark.parametrize("path", ["/props", "/api/show", "/api/ps", "/api/v0/models/x", "/tokenize"])
def test_other_servers_endpoints_are_unknown_to_openai(srv: ChatServer, path: str) -> None:
    status, body = call(srv, "POST" if path in ("/api/show", "/tokenize") else "GET", path)
    # /api/v0/models/x is read as OpenAI's GET /models/{id}, for a model it does not have
    assert status == 404 and body["error"]["code"] in ("unknown_url", "model_not_found")


def test_served_model_names_every_chunk(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.served_model = "models/x.gguf"
    chunks = streamed(client, model="whatever-was-asked")
    assert len(chunks) > 3 and {c.model for c in chunks} == {"models/x.gguf"}
    assert client.chat.completions.create(model="asked", messages=MESSAGES).model == "models/x.gguf"
    srv.served_model = None
    assert {c.model for c in streamed(client, model="asked")} == {"asked"}


# --------------------------------------------------------------------------- #
# llama.cpp
# --------------------------------------------------------------------------- #


def test_llamacpp_discovery(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx, srv.served_model = "llamacpp", 2048, "models/x.gguf"
    status, body = call(srv, "GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
    (entry,) = body["data"]
    assert entry["id"] == "models/x.gguf" and entry["owned_by"] == "llamacpp"
    assert entry["meta"] == {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_ctx": 2048,
                             "n_embd": 576, "n_params": 134515008, "size": 98000000}
    assert call(srv, "GET", "/models")[1] == body
    assert [m.id for m in client.models.list()] == ["models/x.gguf"]

    status, props = call(srv, "GET", "/props")
    assert status == 200
    assert props["default_generation_settings"]["n_ctx"] == 2048
    assert isinstance(props["default_generation_settings"]["params"], dict)
    assert props["total_slots"] == 1 and props["model_path"] == "models/x.gguf"
    assert props["chat_template"] and props["build_info"]
    assert call(srv, "GET", "/v1/props")[0] == 404  # /props lives at the root, not under /v1

    srv.n_ctx = None  # nothing enforced, a default window reported
    assert call(srv, "GET", "/props")[1]["default_generation_settings"]["n_ctx"] == 4096
    assert call(srv, "GET", "/v1/models")[1]["data"][0]["meta"]["n_ctx"] == 4096

    srv.api_key = "sk-right"
    assert call(srv, "GET", "/props")[0] == 401
    assert call(srv, "POST", "/tokenize", {"content": "a b"})[0] == 401
    assert call(srv, "GET", "/health", key=None) == (200, {"status": "ok"})  # public, as in llama-server
    assert call(srv, "GET", "/props", key="sk-right")[0] == 200
    probes = [r.path for r in srv.requests]
    assert probes.count("/props") == 4 and "/tokenize" in probes and "/health" in probes


@pytest.mark.parametrize("messages", [
    MESSAGES,
    [{"role": "user", "content": ""}],
    [{"role": "system", "content": "You are   terse.\n\nReally."},
     {"role": "user", "content": [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "x"}},
                                  {"type": "text", "text": "this picture"}]},
     {"role": "assistant", "content": None}, {"role": "user", "content": "<|im_end|> tricky <|im_start|>"}],
])
def test_llamacpp_template_and_tokenizer_agree_with_usage(srv: ChatServer, client: openai.OpenAI,
                                                          messages: list[Any]) -> None:
    srv.flavor = "llamacpp"
    status, rendered = call(srv, "POST", "/apply-template", {"messages": messages})
    assert status == 200 and isinstance(rendered["prompt"], str)
    status, tokens = call(srv, "POST", "/tokenize", {"content": rendered["prompt"], "add_special": True})
    assert status == 200 and all(isinstance(t, int) for t in tokens["tokens"])
    usage = streamed(client, messages=messages)[-1].usage
    assert len(tokens["tokens"]) == usage.prompt_tokens == compute_usage({"messages": messages}, "")["prompt_tokens"]


def test_llamacpp_tokenize_is_stable_and_has_pieces(srv: ChatServer) -> None:
    srv.flavor = "llamacpp"
    one = call(srv, "POST", "/tokenize", {"content": "the cat the"})[1]["tokens"]
    assert len(one) == 3 and one[0] == one[2] != one[1]
    pieces = call(srv, "POST", "/tokenize", {"content": "the cat", "with_pieces": True})[1]["tokens"]
    assert pieces == [{"id": one[0], "piece": "the"}, {"id": one[1], "piece": "cat"}]


def test_llamacpp_overflow_is_a_400_before_the_stream(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx = "llamacpp", PROMPT  # the prompt fills the window: nothing left to generate
    srv.script(Reply("never"))
    err = refusal(client)
    message = (f"request ({PROMPT} tokens) exceeds the available context size ({PROMPT} tokens), "
               "try increasing it")
    wire = {"code": 400, "type": "exceed_context_size_error", "message": message,
            "n_prompt_tokens": PROMPT, "n_ctx": PROMPT}
    assert isinstance(err, openai.BadRequestError) and err.status_code == 400
    assert err.body == wire and err.response.json() == {"error": wire}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert srv.pending == 1


def test_llamacpp_stops_with_length_when_the_window_fills(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx = "llamacpp", PROMPT + 3
    reply = "one two  three four five six"
    srv.script(Reply(reply, chunk_size=2), Reply(reply), Reply("one two three"))
    chunks = streamed(client, model="any-name-at-all")  # llama-server answers whatever model is asked
    assert text_of(chunks) == "one two  three" and finish_of(chunks) == "length"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (PROMPT, 3, PROMPT + 3)

    whole = client.chat.completions.create(model="m", messages=MESSAGES)
    assert whole.choices[0].message.content == "one two  three" and whole.choices[0].finish_reason == "length"
    assert whole.usage.total_tokens == srv.n_ctx

    exact = streamed(client)  # a reply that just fits ends as it was meant to
    assert text_of(exact) == "one two three" and finish_of(exact) == "stop"

    srv.n_ctx = PROMPT + 1
    assert text_of(streamed(client)) == "echo:"


# --------------------------------------------------------------------------- #
# vLLM
# --------------------------------------------------------------------------- #


def test_vllm_discovery(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx, srv.models = "vllm", 2048, ["Qwen/Qwen2.5-7B-Instruct"]
    status, body = call(srv, "GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
    (entry,) = body["data"]
    assert {k: entry[k] for k in ("id", "object", "created", "owned_by", "root", "parent", "max_model_len")} == {
        "id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "created": 0, "owned_by": "vllm",
        "root": "Qwen/Qwen2.5-7B-Instruct", "parent": None, "max_model_len": 2048}
    assert entry["permission"][0]["object"] == "model_permission"
    assert client.models.list().data[0].model_extra["max_model_len"] == 2048
    assert call(srv, "GET", "/v1/models/Qwen")[0] == 404  # vLLM serves only the list


def test_vllm_unknown_model(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.models = "vllm", ["served"]
    err = refusal(client, model="nope")
    wire = {"object": "error", "message": "The model `nope` does not exist.", "type": "NotFoundError",
            "param": None, "code": 404}
    assert isinstance(err, openai.NotFoundError) and err.body == wire and err.response.json() == wire
    assert text_of(streamed(client, model="served")) == "echo: hi there"


def test_vllm_overflow_bodies(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx, srv.models = "vllm", PROMPT + 10, ["m"]
    srv.script(Reply("kept"))
    err = refusal(client, max_tokens=11)
    message = (f"This model's maximum context length is {PROMPT + 10} tokens. However, you requested {PROMPT + 11} "
               f"tokens ({PROMPT} in the messages, 11 in the completion). Please reduce the length of the messages "
               "or completion.")
    wire = {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}
    assert isinstance(err, openai.BadRequestError) and err.body == wire and err.response.json() == wire
    assert refusal(client, max_completion_tokens=11).body == wire  # the newer name counts the same

    srv.n_ctx = PROMPT  # without max_tokens only the prompt counts, and must leave a token to spare
    err = refusal(client)
    assert err.body["message"] == (f"This model's maximum context length is {PROMPT} tokens. However, you requested "
                                   f"{PROMPT} tokens in the messages, Please reduce the length of the messages.")

    srv.vllm_nested_errors = True
    err = refusal(client)
    assert err.response.json() == {"error": {"message": err.body["message"], "type": "BadRequestError",
                                             "param": None, "code": 400}}
    assert err.body["type"] == "BadRequestError" and srv.pending == 1

    srv.n_ctx = PROMPT + 10
    assert text_of(streamed(client, max_tokens=10)) == "kept"


def test_vllm_fills_the_window_without_max_tokens(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx, srv.models = "vllm", PROMPT + 2, ["m"]
    srv.script(Reply("a b c d"))
    chunks = streamed(client)
    assert text_of(chunks) == "a b" and finish_of(chunks) == "length"
    assert chunks[-1].usage.total_tokens == PROMPT + 2


# --------------------------------------------------------------------------- #
# Ollama
# --------------------------------------------------------------------------- #


def test_ollama_discovery(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx, srv.models = "ollama", 8192, ["llama3.2:latest", "qwen2.5:7b"]
    assert call(srv, "GET", "/v1/models") == (200, {"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "created": 1700000000, "owned_by": "library"},
        {"id": "qwen2.5:7b", "object": "model", "created": 1700000000, "owned_by": "library"}]})
    assert client.models.retrieve("qwen2.5:7b").owned_by == "library"

    status, show = call(srv, "POST", "/api/show", {"model": "llama3.2"})  # no tag means :latest
    assert status == 200
    assert "num_ctx" not in show["parameters"] and 'stop                           "<|eot_id|>"' in show["parameters"]
    assert show["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                               "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}
    assert show["model_info"]["general.architecture"] == "llama"
    assert show["model_info"]["llama.context_length"] == 131072  # trained for, not the window it runs with
    assert show["template"] and show["modelfile"].startswith('# Modelfile generated by "ollama show"')

    srv.ollama_num_ctx_param = True
    show = call(srv, "POST", "/api/show", {"name": "llama3.2:latest"})[1]  # the older field name
    assert show["parameters"].splitlines()[0].split() == ["num_ctx", "8192"]
    assert "PARAMETER num_ctx 8192\n" in show["modelfile"]

    status, ps = call(srv, "GET", "/api/ps")
    assert status == 200 and [m["name"] for m in ps["models"]] == ["llama3.2:latest", "qwen2.5:7b"]
    assert {m["context_length"] for m in ps["models"]} == {8192}
    assert set(ps["models"][0]) >= {"name", "model", "size", "digest", "details", "expires_at", "size_vram"}
    srv.loaded = []  # nothing loaded yet: /api/ps is empty, the window unknown until the first chat
    assert call(srv, "GET", "/api/ps") == (200, {"models": []})
    assert [m["name"] for m in call(srv, "GET", "/api/tags")[1]["models"]] == ["llama3.2:latest", "qwen2.5:7b"]


def test_ollama_unknown_model(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.models = "ollama", ["llama3.2:latest"]
    assert call(srv, "POST", "/api/show", {"model": "mistral"}) == (404, {"error": "model 'mistral' not found"})
    err = refusal(client, model="mistral")
    wire = {"message": 'model "mistral" not found, try pulling it first', "type": "api_error",
            "param": None, "code": None}
    assert isinstance(err, openai.NotFoundError) and err.body == wire and err.response.json() == {"error": wire}
    assert text_of(streamed(client, model="llama3.2")) == "echo: hi there"
    status, body = call(srv, "GET", "/v1/models/mistral")
    assert status == 404 and body["error"]["message"] == "model 'mistral' not found"


def test_ollama_cuts_silently(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.models, srv.n_ctx = "ollama", ["llama3.2:latest"], 64
    history = long_history(5)  # 6 + 5 * (15 + 14) + 6 = 157 tokens in a 64-token window
    assert prompt_tokens(history) > 64
    chunks = streamed(client, model="llama3.2", messages=history)
    assert text_of(chunks) == "echo: last question" and finish_of(chunks) == "stop"
    usage = chunks[-1].usage
    # The oldest messages went; the system prompt and the newest that fit stayed: 6 + 14 + 15 + 14 + 6.
    assert usage.prompt_tokens == prompt_tokens(history[:1] + history[-4:]) == 55 <= 64
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert srv.chat_requests[-1].body["messages"] == history  # the client did send it all

    whole = client.chat.completions.create(model="llama3.2", messages=history)
    assert whole.usage.prompt_tokens == 55

    alone = [{"role": "user", "content": " ".join(["word"] * 100)}]  # one message longer than the window
    assert streamed(client, model="llama3.2", messages=alone)[-1].usage.prompt_tokens == 64

    srv.n_ctx = None
    assert streamed(client, model="llama3.2", messages=history)[-1].usage.prompt_tokens == 157


# --------------------------------------------------------------------------- #
# LM Studio
# --------------------------------------------------------------------------- #


def test_lmstudio_discovery(srv: ChatServer) -> None:
    srv.flavor, srv.n_ctx, srv.models = "lmstudio", 2048, ["qwen2.5-7b-instruct", "phi-3"]
    assert call(srv, "GET", "/v1/models") == (200, {"data": [
        {"id": "qwen2.5-7b-instruct", "object": "model", "owned_by": "organization_owner"},
        {"id": "phi-3", "object": "model", "owned_by": "organization_owner"}], "object": "list"})
    entry = {"id": "qwen2.5-7b-instruct", "object": "model", "type": "llm", "publisher": "lmstudio-community",
             "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
             "max_context_length": 32768, "loaded_context_length": 2048}
    status, body = call(srv, "GET", "/api/v0/models")
    assert status == 200 and body["object"] == "list" and body["data"][0] == entry
    assert call(srv, "GET", "/api/v0/models/qwen2.5-7b-instruct") == (200, entry)
    assert call(srv, "GET", "/api/v0/models/nope")[0] == 404

    srv.loaded = ["qwen2.5-7b-instruct"]
    phi = call(srv, "GET", "/api/v0/models/phi-3")[1]
    assert phi["state"] == "not-loaded" and "loaded_context_length" not in phi and phi["max_context_length"] == 32768


def test_lmstudio_overflow(srv: ChatServer, client: openai.OpenAI) -> None:
    srv.flavor, srv.n_ctx = "lmstudio", PROMPT - 2
    err = refusal(client)
    message = (f"Trying to keep the first {PROMPT} tokens when context the overflows. However, the model is loaded "
               f"with context length of only {PROMPT - 2} tokens, which is not enough. Try to load the model with a "
               "larger context length, or provide a shorter input")
    assert isinstance(err, openai.BadRequestError) and err.status_code == 400
    assert err.body == message and err.response.json() == {"error": message}
    srv.n_ctx = PROMPT + 1
    assert text_of(streamed(client)) == "echo: hi there"


def test_echo_and_scripts_are_unchanged_by_a_flavor(srv: ChatServer, client: openai.OpenAI) -> None:
    """A flavor without a window is the plain scripted server under another server's name."""
    for flavor in FLAVORS:
        srv.reset()
        srv.flavor, srv.models, srv.default = flavor, ["m"], Echo(prefix="> ")
        srv.script(Reply("scripted reply"))
        assert text_of(streamed(client)) == "scripted reply", flavor
        assert text_of(streamed(client)) == "> hi there", flavor
        assert streamed(client)[-1].usage.prompt_tokens == PROMPT, flavor
