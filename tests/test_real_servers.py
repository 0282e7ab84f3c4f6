"""chatcli against the test server speaking as llama.cpp, vLLM, Ollama and LM Studio do (issue 13).

Each server states its window in its own place and says "too long" in its own words; Ollama
says nothing and cuts. These run in the fast suite; tests/test_realserver.py runs a real
llama-server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chatcli.app import make_tokenizer
from chatcli.config.settings import Config
from chatcli.core.session import Session
from chatcli.llm.client import ChatClient
from chatcli.llm.overflow import context_overflow
from chatcli.llm.server_facts import ServerFacts
from chatcli.llm.tokens import Tokenizer, estimate
from tests.support.server import Error, Reply
from tests.support.sessions import make_session

MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def session_for(srv, *, model: str = MODEL, chosen: bool = True, **settings) -> Session:
    config = Config(base_url=srv.base_url, model=model, max_retries=0, **settings)
    return make_session(config=config, model=model, tokenizer=make_tokenizer(config), model_chosen=chosen)


def write_config(text: str) -> None:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- the window, from wherever the server states it ------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "model", "source"),
    [
        ("llamacpp", MODEL, "llama.cpp reports in /props"),
        ("vllm", "Qwen/Qwen2.5-7B-Instruct", "vLLM reports (max_model_len)"),
        ("ollama", "llama3.2:latest", "Ollama reports for the loaded model (/api/ps)"),
        ("lmstudio", "qwen2.5-7b-instruct", "LM Studio reports (loaded_context_length)"),
    ],
)
def test_the_window_is_the_one_the_server_states(srv, flavor, model, source):
    srv.flavor, srv.n_ctx, srv.models = flavor, 3000, [model]
    session = session_for(srv, model=model)
    session.settle(wait=5)
    window = session.tokenizer.window(model)
    assert (window.tokens, window.source) == (3000, source)
    assert session.plan().window == 3000


def test_ollama_num_ctx_in_the_modelfile_wins_over_the_trained_maximum(srv):
    srv.flavor, srv.n_ctx, srv.models, srv.ollama_num_ctx_param = "ollama", 6144, ["llama3.2:latest"], True
    session = session_for(srv, model="llama3.2:latest")
    session.settle(wait=5)
    assert session.tokenizer.window("llama3.2:latest").tokens == 6144  # not model_info's 131072


def test_a_config_window_wins_but_a_larger_one_is_said_once(srv):
    srv.flavor, srv.n_ctx = "llamacpp", 2048
    config = Config(base_url=srv.base_url, model=MODEL, max_retries=0, models={MODEL: {"context_window": 8192}})
    session = make_session(config=config, model=MODEL, tokenizer=make_tokenizer(config))
    session.settle(wait=5)  # as the REPL's toolbar does, at once
    said = []
    session.send("hello", on_event=lambda e: said.append(str(e)) if type(e).__name__ == "Note" else None)
    session.send("again", on_event=lambda e: said.append(str(e)) if type(e).__name__ == "Note" else None)
    assert len(said) == 1 and "8,192" in said[0] and "2,048" in said[0] and "larger" in said[0]
    assert session.tokenizer.window(MODEL).tokens == 8192


def test_the_server_is_asked_once_and_the_prompt_never_waits(srv):
    srv.flavor, srv.n_ctx = "llamacpp", 2048
    session = session_for(srv)
    session.settle()  # returns at once: the toolbar calls this on every redraw
    for _ in range(3):
        session.send("hi")
    paths = [r.path for r in srv.requests if r.method == "GET"]
    assert paths.count("/v1/models") == 1 and paths.count("/props") == 1


def test_openai_is_not_asked_about_windows():
    facts = ServerFacts(ChatClient(Config(base_url="https://api.openai.com/v1")), Tokenizer())
    assert not facts.enabled and facts.start("gpt-4o") is None


# -- overflow, in every server's words -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "window", "requested"),
    [
        ({"error": {"code": 400, "type": "exceed_context_size_error", "message": "request (2131 tokens) exceeds the available "
                    "context size (2048 tokens), try increasing it", "n_prompt_tokens": 2131, "n_ctx": 2048}}, 2048, 2131),
        ({"object": "error", "message": "This model's maximum context length is 2048 tokens. However, you requested 2100 "
          "tokens (1100 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
          "type": "BadRequestError", "param": None, "code": 400}, 2048, 2100),
        ({"error": {"message": "The decoder prompt (length 4000) is longer than the maximum model length of 2048. Make sure "
                    "that `max_model_len` is no smaller than the number of text tokens.", "type": "BadRequestError"}}, 2048, 4000),
        ({"error": "Trying to keep the first 2131 tokens when context the overflows. However, the model is loaded with "
                   "context length of only 2048 tokens, which is not enough."}, 2048, 2131),
        ({"error": {"message": "the input length exceeds the context length", "type": "api_error"}}, None, None),
        ({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                    "130000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}, 128000, 130000),
    ],
    ids=["llama.cpp", "vLLM", "vLLM-decoder", "LM Studio", "Ollama", "OpenAI"],
)
def test_every_servers_overflow_is_recognised_with_its_sizes(body, window, requested):
    found = context_overflow(body)
    assert found is not None and (found.window, found.requested) == (window, requested)


def test_other_errors_are_not_taken_for_an_overflow():
    assert context_overflow({"error": {"message": "Invalid value for 'temperature'", "code": 400}}) is None
    assert context_overflow({"error": {"message": "the context window is fine; model not found"}}) is None


@pytest.mark.parametrize("flavor", ["llamacpp", "vllm", "lmstudio", "openai"])
def test_an_overflow_leaves_older_turns_out_and_goes_again(srv, flavor):
    """Our window is too large (the config says so): the server refuses, chatcli fits to its word."""
    srv.flavor, srv.n_ctx = flavor, 400
    srv.models = [MODEL]
    session = session_for(srv, models={MODEL: {"context_window": 100_000}})
    for i in range(6):
        turn = session.send(f"turn {i} " + "word " * 60)
        assert turn.status == "complete", turn.error
    assert turn.left_out > 0
    refused = [r for r in srv.chat_requests if len(r.body["messages"]) > 2]
    assert len(srv.chat_requests) > 6  # some were refused, and went again
    if flavor != "openai":  # OpenAI does not name the window in a way that differs from ours
        assert session.tokenizer.window(MODEL).tokens == 400
    assert refused


def test_a_message_too_big_even_alone_names_both_sizes(srv, run_chatcli):
    srv.flavor, srv.n_ctx = "llamacpp", 300
    result = run_chatcli("-m", MODEL, "word " * 2000)
    assert result.returncode == 1
    assert "too long" in result.stderr or "window" in result.stderr
    assert "300" in result.stderr and "check the settings sent" not in result.stderr


# -- counts --------------------------------------------------------------------------------


def test_an_openai_encoding_is_never_used_for_another_model():
    t = Tokenizer()
    assert t.is_openai("gpt-4o-mini") and not t.is_openai(MODEL)
    assert t.limits(MODEL).encoding == ""
    assert not t.message(MODEL, "user", "hello there").exact


def test_estimates_do_not_fall_far_short_for_digits_json_and_cjk():
    """bytes/4 counted a tenth of these; the per-character estimate errs high instead."""
    digits = " ".join(str(n) for n in range(10_000_000, 10_000_100))
    assert estimate(digits) >= len(digits.replace(" ", "")) + 99
    assert estimate(json.dumps({"a": [1, 2, 3], "b": {"c": None}})) >= 20
    assert estimate("人工智能是计算机科学的一个分支") >= 2 * 15


def test_estimates_are_corrected_by_what_the_server_counted(srv):
    srv.flavor, srv.n_ctx = "vllm", 100_000
    srv.models = [MODEL]
    session = session_for(srv)
    session.send("{" + ", ".join(f'"k{i}": {i}' for i in range(50)) + "}")
    factor = session.tokenizer.factor(MODEL)
    assert factor is not None and factor < 1  # the server counts words; our estimate counts braces and digits
    turn = session.send("[" + ", ".join(f'"v{i}"' for i in range(50)) + "]")
    assert turn.sent is not None and not turn.sent.exact
    assert abs(turn.sent.tokens - turn.usage.prompt_tokens) < abs(turn.estimated - turn.usage.prompt_tokens)


def test_llama_cpp_counts_exactly_near_the_window(srv):
    srv.flavor, srv.n_ctx = "llamacpp", 600
    session = session_for(srv)
    session.settle(wait=5)  # as the REPL does as it starts (a one-shot ask this short does not wait)
    for i in range(8):
        turn = session.send(f"question {i} " + "lorem ipsum dolor " * 25)
        assert turn.status == "complete", turn.error
        if turn.sent.exact:
            assert turn.sent.tokens == turn.usage.prompt_tokens  # /tokenize and /apply-template agree with the server
    assert any(r.path == "/tokenize" for r in srv.requests)


# -- Ollama's silent cut -------------------------------------------------------------------


def test_ollamas_silent_cut_is_said_once_and_fitted_to(srv):
    srv.flavor, srv.n_ctx, srv.models = "ollama", 2048, ["llama3.2:latest"]
    srv.loaded = []  # not loaded yet: /api/ps does not say the window, so chatcli assumes its default
    session = session_for(srv, model="llama3.2:latest")
    notices = []
    for i in range(8):
        turn = session.send(f"part {i}: " + "tell me about the history of the river and its towns " * 30)
        assert turn.status == "complete"
        if turn.notice:
            notices.append(turn.notice)
    assert len(notices) == 1
    assert "cut the start of the conversation" in notices[0]
    assert "OLLAMA_CONTEXT_LENGTH" in notices[0] and "num_ctx" in notices[0]
    assert session.tokenizer.window("llama3.2:latest").tokens == 2048
    last = srv.chat_requests[-1]
    assert sum(len(m["content"].split()) + 4 for m in last.body["messages"]) <= 2048  # fitted: nothing is cut now


# -- the model, as the server names it -----------------------------------------------------


def test_with_no_model_configured_the_servers_model_is_used_and_cost_is_unknown(srv, run_chatcli):
    srv.flavor, srv.n_ctx, srv.models = "llamacpp", 2048, [MODEL]
    result = run_chatcli("--json", "hello")
    record = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert srv.chat_requests[0].body["model"] == MODEL
    assert record["model"] == MODEL and record["cost_usd"] is None


def test_the_model_the_server_names_is_recorded_and_priced(srv, run_chatcli):
    srv.served_model = "qwen2.5:7b"  # a proxy that answers for gpt-4o with another model
    result = run_chatcli("--json", "-m", "gpt-4o", "hello")
    record = json.loads(result.stdout)
    assert record["model"] == "qwen2.5:7b" and record["cost_usd"] is None
    usage = run_chatcli("usage", "--by", "model")
    assert "qwen2.5:7b" in usage.stdout and "gpt-4o " not in usage.stdout


def test_a_failed_request_to_an_unpriced_model_costs_unknown_not_zero(srv, run_chatcli):
    srv.script(Error(500, "boom"))
    result = run_chatcli("--json", "-m", "my-local-model", "hello")
    assert json.loads(result.stdout)["cost_usd"] is None


def test_an_unpriced_model_is_cost_unknown_before_its_first_reply(srv):
    session = session_for(srv, model="my-local-model")
    _, total = session.accounts.accounting()
    assert total.cost is None


def test_model_name_the_server_does_not_list_is_said(srv):
    from chatcli.commands import REGISTRY

    srv.models = ["gpt-4o-mini", "gpt-4o", "my-local-model"]
    session = session_for(srv, model="gpt-4o-mini")
    said = REGISTRY.dispatch(session, "/model gpt-4o-mimi").text
    assert "does not list it" in said and "gpt-4o-mini" in said
    assert session.model == "gpt-4o-mimi"  # switched all the same: a server may answer names it does not list
    assert "no price" in REGISTRY.dispatch(session, "/model my-local-model").text


# -- words ---------------------------------------------------------------------------------


def test_a_reply_that_fills_the_window_says_so(srv, run_chatcli):
    srv.flavor, srv.n_ctx, srv.models = "llamacpp", 200, [MODEL]
    srv.script(Reply("word " * 400))
    result = run_chatcli("hello")
    assert result.returncode == 0, result.stderr
    assert "filled the model's 200-token context window" in result.stderr
    assert "max_tokens" not in result.stderr


def test_tokens_shows_the_window_and_where_it_came_from(srv):
    from chatcli.commands import REGISTRY

    srv.flavor, srv.n_ctx = "llamacpp", 2048
    session = session_for(srv)
    result = REGISTRY.dispatch(session, "/tokens")
    rows = {row[0]: row[1] for row in result.rows}
    assert rows["context window"] == "2,048 (llama.cpp reports in /props)"


def test_chatcli_models_shows_each_window_and_its_source(srv, run_chatcli):
    srv.flavor, srv.n_ctx, srv.models = "vllm", 32768, ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B"]
    result = run_chatcli("models")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [f"{m}  window 32,768 (vLLM reports (max_model_len))" for m in sorted(srv.models)]


def test_no_cut_is_claimed_when_the_server_read_everything(srv):
    """Mixed kinds of text, each estimated differently, on a server that reads it all: no false alarm.

    The test server counts a token per word, so each text is one whose words a real tokenizer
    would count about as many tokens as (CJK with a space between characters, JSON indented)."""
    srv.flavor, srv.n_ctx, srv.models = "ollama", 100_000, ["llama3.2:latest"]
    session = session_for(srv, model="llama3.2:latest")
    texts = [
        "tell me about the history of the river and its towns " * 40,
        json.dumps([{"name": f"item {i}", "tags": ["a", "b"], "ok": True} for i in range(60)], indent=1),
        "def f(x):\n    return [y * 2 for y in x if y]\n" * 30,
        " ".join("人工智能是计算机科学的一个分支" * 20),
    ]
    for text in texts * 2:
        turn = session.send(text)
        assert turn.status == "complete" and not turn.notice, turn.notice
    assert session.tokenizer.window("llama3.2:latest").source != "the server read no more (it cut a longer prompt)"


# -- servers that answer oddly (from a review of this work) --------------------------------


def test_an_odd_api_ps_answer_is_nothing_said_not_a_crash(srv, run_chatcli):
    srv.flavor, srv.models = "ollama", ["llama3:8b"]
    srv.overrides = {"/api/ps": (200, {"models": [{"name": ["llama3:8b"], "context_length": "4096"}]}),
                     "/api/show": (200, {"parameters": 7, "model_info": []})}
    listed = run_chatcli("models")
    asked = run_chatcli("-m", "llama3:8b", "word " * 700)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "llama3:8b\n", "")
    assert asked.returncode == 0 and "Traceback" not in asked.stderr and "internal error" not in asked.stderr


def test_a_model_id_with_control_characters_is_never_the_default_nor_shown_raw(srv, run_chatcli):
    evil = "evil\x1b]0;PWN\x07\x1b[31m"
    srv.models = [evil, "plain-model"]
    asked = run_chatcli("--json", "hello")
    listed = run_chatcli("models")
    assert srv.chat_requests[0].body["model"] == "plain-model"
    assert json.loads(asked.stdout)["model"] == "plain-model"
    assert "\x1b" not in listed.stdout and "evil" in listed.stdout


def test_a_server_still_loading_its_model_is_asked_again(srv, monkeypatch):
    import time

    import chatcli.llm.server_facts

    monkeypatch.setattr(chatcli.llm.server_facts, "RETRY_S", 0.2)
    srv.flavor, srv.n_ctx, srv.served_model = "llamacpp", 2048, MODEL
    loading = (503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
    srv.overrides = {"/v1/models": loading, "/props": loading}
    session = session_for(srv, model="gpt-4o-mini", chosen=False)
    session.settle(wait=5)
    assert not session.model_chosen  # nothing to choose from yet: keep asking
    srv.overrides = {}
    time.sleep(0.3)
    session.settle(wait=5)
    session.settle(wait=5)
    assert session.model == MODEL and session.tokenizer.window(MODEL).tokens == 2048


def test_a_server_that_leaves_cached_tokens_out_of_prompt_tokens_is_not_said_to_cut(srv):
    """Some Ollama versions reported only the tokens they had to read, not the cached prefix."""
    srv.flavor, srv.n_ctx, srv.models, srv.ollama_num_ctx_param = "ollama", 8192, ["llama3.2:latest"], True
    session = session_for(srv, model="llama3.2:latest")
    session.settle(wait=5)
    first = session.send("tell me about the river " * 120)
    srv.script(Reply("ok", usage={"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41,
                                  "prompt_tokens_details": {"cached_tokens": first.usage.prompt_tokens + 20}}))
    second = session.send("and its towns " * 120)
    third = session.send("and its bridges")
    assert not second.notice and third.status == "complete"
    assert session.tokenizer.window("llama3.2:latest").tokens == 8192


def test_an_openai_name_answered_by_another_model_is_not_counted_with_tiktoken(srv):
    """llama-server answers a request for gpt-4o-mini with the model it loaded: tiktoken is not its tokenizer."""
    srv.served_model = MODEL
    session = session_for(srv, model="gpt-4o-mini")
    assert session.tokenizer.is_openai("gpt-4o-mini")
    session.send("hello")
    assert session.turns[-1].model == MODEL and session.turns[-1].asked == "gpt-4o-mini"
    assert not session.tokenizer.is_openai("gpt-4o-mini")
    assert session.tokenizer.limits("gpt-4o-mini").encoding == ""
    assert not session.plan("next").tokens.exact
