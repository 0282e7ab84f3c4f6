"""Reasoning models: what each model is sent, as the test server receives it.

o3-mini and gpt-5 get max_completion_tokens, no sampling parameters and a
reasoning_effort; ordinary models keep max_tokens and temperature. A config
[models."NAME"] table changes that, and a 400 refusing a parameter teaches it
for a model the table does not know. Each change is told to the user once.
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from chatcli.base.errors import ConfigError
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config, load_config
from chatcli.core.journal import Journal
from chatcli.core.resume import load_session
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, ERROR
from chatcli.llm.capabilities import refused_parameter
from tests.support.keys import TEST_KEY
from tests.support.repl import ENTER, piped_chat
from tests.support.running import make_env
from tests.support.server import Error, Reply, compute_usage
from tests.support.sessions import make_session as build_session

# OpenAI's own 400s for a reasoning model, as the API words them.
MAX_TOKENS_REFUSED = Error(
    400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    type="invalid_request_error", param="max_tokens", code="unsupported_parameter",
)
TEMPERATURE_REFUSED = Error(
    400, "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
    type="invalid_request_error", param="temperature", code="unsupported_value",
)
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "presence_penalty": 0.5, "frequency_penalty": 0.5}


def make_session(srv, model: str, *, params: dict | None = None, db: Path | None = None, **config) -> Session:
    settings = dict(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
    journal = Journal.open(db) if db is not None else Journal()
    return build_session(config=Config(**settings, **config), model=model, params=dict(params or {}),
                         journal=journal)


def sent(srv, index: int = -1) -> dict:
    """The request body the server received, without the parts every request has."""
    body = dict(srv.chat_requests[index].body)
    for key in ("model", "messages", "stream", "stream_options"):
        body.pop(key)
    return body


@pytest.fixture
def repl(srv, tmp_path: Path):
    """A REPL on a session that saves to a database, as cli.py builds it, typed into through a pipe."""
    with ExitStack() as stack:

        def make(model: str, *, params: dict | None = None, markdown: bool = True, **config):
            session = make_session(srv, model, params=params, db=tmp_path / "chat.db", **config)
            return piped_chat(stack, session, markdown=markdown, history=tmp_path / "history")

        yield make


# --------------------------------------------------------------------------- #
# The table: what each kind of model is sent
# --------------------------------------------------------------------------- #


def test_an_ordinary_model_keeps_max_tokens_and_every_sampling_parameter(srv):
    session = make_session(srv, "gpt-4o-mini", params={**SAMPLING, "max_tokens": 300}, reasoning_effort="high")
    notices = []
    turn = session.send("hi", on_event=notices.append)
    assert turn.status == COMPLETE
    assert sent(srv) == {**SAMPLING, "max_tokens": 300}  # no reasoning_effort: the config's is for models that take one
    assert not [n for n in notices if type(n).__name__ == "Adjusted"]  # and it is not said


@pytest.mark.parametrize("model, effort", [("o3-mini", "high"), ("o3-mini-2025-01-31", "low"),
                                           ("gpt-5", "minimal"), ("gpt-5-mini-2025-08-07", "medium")])
def test_reasoning_models_get_max_completion_tokens_no_sampling_and_the_effort(srv, model, effort):
    session = make_session(srv, model, params={**SAMPLING, "seed": 7, "max_tokens": 500, "reasoning_effort": effort})
    assert session.send("hi").status == COMPLETE
    assert sent(srv) == {"seed": 7, "max_completion_tokens": 500, "reasoning_effort": effort}


def test_o3_and_o4_mini_are_sent_no_stop_but_o3_mini_is(srv):
    for model, expected in (("o3", False), ("o4-mini", False), ("o3-mini", True)):
        make_session(srv, model, params={"stop": ["###"]}).send("hi")
        assert ("stop" in sent(srv)) is expected, model


def test_gpt_5_chat_is_not_a_reasoning_model(srv):
    make_session(srv, "gpt-5-chat-latest", params={"temperature": 0.4, "max_tokens": 100}, reasoning_effort="low").send("hi")
    assert sent(srv) == {"temperature": 0.4, "max_completion_tokens": 100}


def test_an_effort_the_model_does_not_take_is_left_out_and_said(srv):
    notices = []
    session = make_session(srv, "o3-mini", params={"reasoning_effort": "minimal"})
    session.send("hi", on_event=notices.append)
    assert "reasoning_effort" not in sent(srv)
    assert [str(n) for n in notices if type(n).__name__ == "Adjusted"] == [
        "o3-mini takes reasoning_effort low, medium or high, not minimal; none is sent, so the model's own default is used"
    ]


# --------------------------------------------------------------------------- #
# Told once, where the user reads
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("markdown", [True, False], ids=["markdown", "plain"])
def test_the_left_out_parameters_are_said_once_across_turns(srv, repl, markdown):
    chat = repl("o3-mini", params={"temperature": 0.7, "top_p": 0.5, "max_tokens": 200}, markdown=markdown)
    out = chat.run("first", ENTER, "second", ENTER)
    notice = "o3-mini does not take temperature or top_p; they are left out of its requests"
    assert " ".join(out.split()).count(notice) == 1, out
    assert "echo: first" in out and "echo: second" in out
    assert [sent(srv, i) for i in (0, 1)] == [{"max_completion_tokens": 200}] * 2


def test_one_shot_says_it_on_stderr_and_leaves_stdout_to_the_reply(srv, run_chatcli):
    srv.script(Reply("forty-two"))
    result = run_chatcli("--model", "o4-mini", "--temperature", "0.3", "--max-tokens", "64", "what is six times seven")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "forty-two\n"
    assert "chatcli: o4-mini does not take temperature; it is left out of its requests.\n" in result.stderr
    assert sent(srv) == {"max_completion_tokens": 64}


def test_an_effort_set_for_a_model_that_takes_none_is_said_once(srv, repl):
    chat = repl("gpt-4o-mini")
    out = chat.run("/effort high", ENTER, "one", ENTER, "two", ENTER)
    assert "gpt-4o-mini takes no reasoning_effort, so none is sent." in " ".join(out.split())
    assert " ".join(out.split()).count("gpt-4o-mini does not take reasoning_effort; it is left out of its requests") == 1
    assert [sent(srv, i) for i in (0, 1)] == [{}, {}]


# --------------------------------------------------------------------------- #
# The config's [models."NAME"] tables and reasoning_effort
# --------------------------------------------------------------------------- #


def write_config(text: str) -> None:
    path = Path.home() / "config" / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_config_makes_a_model_a_reasoning_model_and_another_an_ordinary_one(srv, run_chatcli):
    write_config(
        "temperature = 0.5\nmax_tokens = 300\nreasoning_effort = \"low\"\n"
        '[models."my-reasoner"]\nmax_tokens_param = "max_completion_tokens"\nunsupported = ["temperature"]\n'
        'reasoning_effort = "high"\n'
        '[models."o3-mini"]\nmax_tokens_param = "max_tokens"\nunsupported = []\nefforts = []\n'
    )
    assert run_chatcli("--model", "my-reasoner", "hi").returncode == 0
    assert sent(srv) == {"max_completion_tokens": 300, "reasoning_effort": "high"}  # its own effort beats the default
    assert run_chatcli("--model", "my-reasoner-2025-06-01", "hi").returncode == 0  # a dated snapshot of it too
    assert sent(srv) == {"max_completion_tokens": 300, "reasoning_effort": "high"}
    result = run_chatcli("--model", "o3-mini", "hi")
    assert sent(srv) == {"temperature": 0.5, "max_tokens": 300}  # back to an ordinary model
    assert "does not take" not in result.stderr  # the config's effort is not pressed on it
    assert run_chatcli("--model", "o3", "hi").returncode == 0  # the default effort goes where it is taken
    assert sent(srv) == {"max_completion_tokens": 300, "reasoning_effort": "low"}


def test_reasoning_effort_comes_from_the_environment_and_is_checked(srv, run_chatcli):
    assert run_chatcli("--model", "gpt-5", "hi", env={"CHATCLI_REASONING_EFFORT": "minimal"}).returncode == 0
    assert sent(srv)["reasoning_effort"] == "minimal"
    result = run_chatcli("hi", env={"CHATCLI_REASONING_EFFORT": "extreme"})
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "CHATCLI_REASONING_EFFORT" in result.stderr and '"minimal"' in result.stderr


@pytest.mark.parametrize("line, words", [
    ('max_tokens_param = "max_length"', "'max_tokens_param' of model 'x'"),
    ('unsupported = ["temperature", "temp"]', "not 'temp'"),
    ('unsupported = "temperature"', "must be a list"),
    ('efforts = ["extreme"]', "'efforts' of model 'x'"),
    ('reasoning_effort = "max"', "'reasoning_effort' of model 'x'"),
    ('thinks = true', "unknown key 'thinks'"),
])
def test_a_bad_capability_in_the_config_is_one_sentence_naming_it(tmp_path, line, words):
    path = tmp_path / "config.toml"
    path.write_text(f'[models."x"]\n{line}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(make_env(), config_path=str(path))
    message = caught.value.message
    assert words in message and str(path) in message and "\n" not in message and message.endswith(".")


# --------------------------------------------------------------------------- #
# Learning from a refusal
# --------------------------------------------------------------------------- #


def test_a_refused_parameter_is_left_out_the_request_sent_again_and_remembered(srv, repl, tmp_path):
    srv.script(TEMPERATURE_REFUSED, Reply("The answer is 42."))
    chat = repl("local-thinker", params={"temperature": 0.7, "max_tokens": 200})
    out = chat.run("what is six times seven", ENTER, "and again", ENTER)
    flat = " ".join(out.split())
    notice = "local-thinker refused temperature, so from now on it is left out of its requests"
    assert flat.count(notice) == 1 and "The answer is 42." in flat and "rejected" not in flat
    assert [sent(srv, i) for i in range(3)] == [{"temperature": 0.7, "max_tokens": 200},
                                               {"max_tokens": 200}, {"max_tokens": 200}]  # remembered for turn two
    with closing(sqlite3.connect(tmp_path / "chat.db")) as db:
        asked = db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id").fetchall()
        ledger = db.execute("SELECT prompt_tokens, completion_tokens FROM usage_ledger ORDER BY id").fetchall()
    assert asked == [("what is six times seven",), ("and again",)]  # the question saved once, not twice
    first = compute_usage(srv.chat_requests[1].body, "The answer is 42.")
    assert ledger[0] == (first["prompt_tokens"], first["completion_tokens"]) and len(ledger) == 2  # one billed request
    turn = chat.session.turns[0]
    assert turn.status == COMPLETE and turn.usage.total_tokens == first["total_tokens"]


def test_refused_max_tokens_and_then_temperature_are_both_learned(srv):
    srv.script(MAX_TOKENS_REFUSED, TEMPERATURE_REFUSED, Reply("ok"))
    notices = []
    session = make_session(srv, "new-model", params={"temperature": 0.7, "max_tokens": 100})
    turn = session.send("hi", on_event=notices.append)
    assert turn.status == COMPLETE and turn.reply == "ok"
    assert [sent(srv, i) for i in range(3)] == [{"temperature": 0.7, "max_tokens": 100},
                                               {"temperature": 0.7, "max_completion_tokens": 100},
                                               {"max_completion_tokens": 100}]
    assert [str(n) for n in notices if type(n).__name__ == "Adjusted"] == [
        "new-model refused max_tokens, so from now on it is sent as max_completion_tokens instead",
        "new-model refused temperature, so from now on it is left out of its requests",
    ]
    assert len(session.turns) == 1 and session.accounts.accounting()[1].usage.total_tokens == turn.usage.total_tokens


def test_a_refusal_that_teaches_nothing_stands(srv):
    srv.script(Error(400, "Unsupported parameter: 'logprobs' is not supported with this model.",
                     param="logprobs", code="unsupported_parameter"))
    turn = make_session(srv, "new-model", params={"temperature": 0.7}).send("hi")
    assert turn.status == ERROR and "rejected the request (400: Unsupported parameter: 'logprobs'" in turn.error.message
    assert len(srv.chat_requests) == 1  # not sent again: leaving nothing out would not help


def test_a_server_that_refuses_every_name_for_the_limit_is_not_asked_forever(srv):
    refuse_other = Error(400, "Unsupported parameter: 'max_completion_tokens'.", param="max_completion_tokens",
                         code="unsupported_parameter")
    srv.script(MAX_TOKENS_REFUSED, refuse_other, MAX_TOKENS_REFUSED)
    turn = make_session(srv, "odd-model", params={"max_tokens": 10}).send("hi")
    assert turn.status == ERROR and "max_tokens" in turn.error.message
    assert len(srv.chat_requests) == 3


def test_a_proxy_that_passes_on_only_the_message_is_understood():
    message = {"message": "litellm.BadRequestError: OpenAIException - Unsupported parameter: 'stop' is not supported"}
    assert refused_parameter(message) == ("stop", "unsupported_parameter")
    assert refused_parameter({"message": "Invalid 'temperature'"}) is None


# --------------------------------------------------------------------------- #
# /effort
# --------------------------------------------------------------------------- #


def test_effort_shows_sets_and_refuses_a_bad_value_in_one_sentence(srv):
    session = make_session(srv, "o3-mini")
    shown = REGISTRY.dispatch(session, "/effort")
    assert shown.text == "Reasoning effort: not set. o3-mini takes low, medium or high; the model's own default is used."
    bad = REGISTRY.dispatch(session, "/effort extreme")
    assert bad.error and "\n" not in bad.text and '"high"' in bad.text and "'extreme'" in bad.text
    assert "reasoning_effort" not in session.params
    assert REGISTRY.dispatch(session, "/effort HIGH").text == "Reasoning effort: high (from this session). o3-mini takes low, medium or high."
    session.set_model("gpt-5")
    assert "gpt-5 takes minimal, low, medium or high" in REGISTRY.dispatch(session, "/effort").text
    assert REGISTRY.dispatch(session, "/effort default").text.startswith("Reasoning effort: not set.")
    assert "reasoning_effort" not in session.params


def test_params_lists_the_effort(srv):
    session = make_session(srv, "o3-mini")
    REGISTRY.dispatch(session, "/effort low")
    row = next(r for r in REGISTRY.dispatch(session, "/params").rows if r[0] == "reasoning_effort")
    assert row[1] == "low" and '"minimal"' in row[2]


def test_effort_is_saved_with_the_session_and_sent_after_a_resume(srv, repl, tmp_path):
    repl("o3-mini").run("/effort medium", ENTER, "hello", ENTER)
    assert sent(srv)["reasoning_effort"] == "medium"
    with closing(Journal.open(tmp_path / "chat.db").store) as store:  # type: ignore[arg-type]
        restored = load_session(Journal(store), 1, client=None)
    assert restored.params == {"reasoning_effort": "medium"}
    resumed = make_session(srv, "o3-mini", db=tmp_path / "chat.db")
    from chatcli.app import resume

    resume(resumed, 1)  # /resume 1
    resumed.send("once more")
    assert sent(srv) == {"reasoning_effort": "medium"}


def test_params_shows_the_effort_the_config_gives_where_the_session_sets_none(srv):
    from chatcli.config.settings import Config

    session = build_session(config=Config(base_url=srv.base_url, reasoning_effort="high"), model="o3-mini")

    rows = {row[0]: row[1] for row in REGISTRY.dispatch(session, "/params").rows}
    REGISTRY.dispatch(session, "/effort low")
    after = {row[0]: row[1] for row in REGISTRY.dispatch(session, "/params").rows}

    assert rows["reasoning_effort"] == "high (from the config)"
    assert after["reasoning_effort"] == "low"


# --------------------------------------------------------------------------- #
# names past the table, one effort refused, and /compact (from a review)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("model", ["openai/o3-mini", "gpt-5.1", "gpt-5.1-2025-11-13"])
def test_a_providers_prefix_and_a_point_release_find_their_family(srv, model):
    session = make_session(srv, model, params={"temperature": 0.7, "max_tokens": 300})

    session.send("hi")

    assert sent(srv) == {"max_completion_tokens": 300}


def test_an_effort_chosen_for_a_model_chatcli_does_not_know_is_tried_and_a_refusal_taught(srv):
    session = make_session(srv, "my-local-reasoner")
    status = REGISTRY.dispatch(session, "/effort high").text
    srv.script(Error(400, "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                     param="reasoning_effort", code="unsupported_parameter"), Reply("ok"))
    notices: list = []

    turn = session.send("hi", on_event=notices.append)

    assert "does not know whether my-local-reasoner takes one" in status
    assert sent(srv, 0) == {"reasoning_effort": "high"} and sent(srv, 1) == {}
    assert turn.status == COMPLETE and turn.reply == "ok"
    assert [str(n) for n in notices if type(n).__name__ == "Adjusted"] == [
        "my-local-reasoner refused reasoning_effort, so from now on it is left out of its requests"]


def test_a_config_effort_is_not_sent_to_a_model_chatcli_does_not_know(srv):
    make_session(srv, "my-local-model", reasoning_effort="high").send("hi")

    assert sent(srv) == {}


def test_one_refused_effort_value_leaves_the_others(srv):
    session = make_session(srv, "gpt-5-pro")
    REGISTRY.dispatch(session, "/effort low")
    srv.script(Error(400, "Unsupported value: 'reasoning_effort' does not support 'low' with this model.",
                     param="reasoning_effort", code="unsupported_value"), Reply("ok"))
    notices: list = []

    session.send("first", on_event=notices.append)
    REGISTRY.dispatch(session, "/effort high")
    session.send("second")

    assert [sent(srv, i).get("reasoning_effort") for i in range(3)] == ["low", None, "high"]
    assert "gpt-5-pro refused reasoning_effort low, so from now on that value is not sent" in map(str, notices)


def test_compact_sends_the_sessions_effort_and_refuses_a_summary_cut_short(srv):
    session = make_session(srv, "o3-mini")
    for text in ("one", "two", "three"):
        session.send(text)
    REGISTRY.dispatch(session, "/effort low")
    srv.script(Reply("A summary that got cut", finish_reason="length"))

    result = REGISTRY.dispatch(session, "/compact 1")

    assert sent(srv)["reasoning_effort"] == "low"
    assert result.error and "The summary was cut short (finish_reason length), so nothing was compacted" in result.text
    assert session.summary is None and len(session.context_turns) == 3


def test_a_reply_that_is_all_reasoning_cut_by_the_limit_fails_in_one_shot(srv, run_chatcli):
    srv.script(Reply("", reasoning="thinking " * 20, finish_reason="length"))

    result = run_chatcli("-m", "o3-mini", "--max-tokens", "50", "hi")

    assert result.returncode == 1 and result.stdout.strip() == ""
    assert result.stderr == ("chatcli: The model used its whole max_tokens limit on reasoning before it wrote any answer; "
                             "raise it with --max-tokens or /set max_tokens (reasoning models need room to think), "
                             "and ask again.\n")
