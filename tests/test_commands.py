"""Slash-command handlers, called without a terminal: they return results, never print."""

from __future__ import annotations

import pytest

from chatcli.base.events import Usage
from chatcli.commands import REGISTRY
from chatcli.commands.params import PARAMS
from chatcli.config.settings import Config
from chatcli.core.resume import load_session
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, Turn
from chatcli.llm.pricing import cost, price_for
from tests.support.sessions import make_session


@pytest.fixture
def session() -> Session:
    return make_session(config=Config(base_url="http://127.0.0.1:9/v1"), model="gpt-4o-mini", system="Be kind.")


def finished_turn(model: str, prompt: int, completion: int) -> Turn:
    return Turn(user="q", model=model, params={}, reply="a", status=COMPLETE, usage=Usage(prompt, completion, prompt + completion))


def test_help_lists_every_command_from_the_registry(session):
    result = REGISTRY.dispatch(session, "/help")
    listed = " ".join(row[0] for row in result.rows)
    for name in REGISTRY.commands:
        assert f"/{name}" in listed


def test_unknown_command_suggests_the_nearest(session):
    result = REGISTRY.dispatch(session, "/tmep 0.5")
    assert result.error and "/temp" in result.text


def test_temp_validates_and_the_session_goes_on(session):
    assert "default" in REGISTRY.dispatch(session, "/temp").text
    for bad in ("3", "-1", "warm"):
        result = REGISTRY.dispatch(session, f"/temp {bad}")
        assert result.error and "0 to 2" in result.text and "\n" not in result.text
    assert "temperature" not in session.params
    assert not REGISTRY.dispatch(session, "/temp 0.7").error
    assert session.params["temperature"] == 0.7
    assert "0.7" in REGISTRY.dispatch(session, "/temp").text


def test_system_shows_and_sets_and_keeps_history(session):
    session.turns.append(finished_turn("gpt-4o-mini", 10, 5))
    assert "Be kind." in REGISTRY.dispatch(session, "/system").text
    REGISTRY.dispatch(session, "/system You are a pirate.\nSpeak so.")
    assert session.system == "You are a pirate.\nSpeak so."
    assert len(session.turns) == 1


@pytest.mark.parametrize("word", ["none", "default", "unset", "None"])
def test_system_none_or_default_removes_the_prompt_as_temp_default_unsets_the_temperature(session, word):
    session.turns.append(finished_turn("gpt-4o-mini", 10, 5))
    REGISTRY.dispatch(session, "/temp 0.5")
    REGISTRY.dispatch(session, "/temp default")

    result = REGISTRY.dispatch(session, f"/system {word}")

    assert not result.error and "removed" in result.text
    assert session.system is None and "temperature" not in session.params  # both back to the server's own
    assert session.messages("next")[0] == {"role": "user", "content": "q"}  # no system message is sent
    assert len(session.turns) == 1
    assert REGISTRY.dispatch(session, "/system").text == "No system prompt is set."
    assert REGISTRY.dispatch(session, "/system none").text == "No system prompt was set; none is sent."


def test_help_system_says_how_to_remove_it(session):
    text = REGISTRY.dispatch(session, "/help system").text
    assert text.startswith("/system [text|none]: ") and "/system none removes it" in text
    assert "/system default" in text


def test_clear_forgets_turns_but_keeps_system_and_spent_tokens(session):
    session.turns.append(finished_turn("gpt-4o-mini", 10, 5))
    REGISTRY.dispatch(session, "/clear")
    assert session.messages("next") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "next"},
    ]
    assert session.accounts.usage.total_tokens == 15  # spent tokens still count
    assert REGISTRY.dispatch(session, "/usage").rows[-1][4] == "15"


def test_model_shows_and_switches(session):
    assert "gpt-4o-mini" in REGISTRY.dispatch(session, "/model").text
    REGISTRY.dispatch(session, "/model gpt-4o")
    assert session.model == "gpt-4o"


def test_usage_per_turn_and_session_with_cost(session):
    session.turns += [finished_turn("gpt-4o-mini", 1_000_000, 0), finished_turn("gpt-4o-mini", 0, 1_000_000)]
    result = REGISTRY.dispatch(session, "/usage")
    assert result.rows[0][2:] == ["1,000,000", "0", "1,000,000", "$0.1500"]
    assert result.rows[1][2:] == ["0", "1,000,000", "1,000,000", "$0.6000"]
    assert result.rows[-1][0] == "session" and result.rows[-1][-1] == "$0.7500"


def test_usage_never_makes_up_a_price(session):
    session.turns.append(finished_turn("my-local-model", 100, 20))
    result = REGISTRY.dispatch(session, "/usage")
    assert result.rows[0][-1] == "cost unknown" and result.rows[-1][-1] == "cost unknown"


def test_dated_snapshots_use_their_family_price():
    assert price_for("gpt-4o-mini-2024-07-18") == price_for("gpt-4o-mini")
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")
    assert price_for("llama3.2") is None
    assert cost("gpt-4o", Usage(prompt_tokens=1000, cached_tokens=1000)) == pytest.approx(1000 * 1.25 / 1e6)


def test_exit_and_aliases(session):
    assert REGISTRY.dispatch(session, "/exit").exit
    assert REGISTRY.dispatch(session, "/quit").exit
    assert "/exit" in REGISTRY.names() and "/usage" in REGISTRY.names()


def test_usage_says_why_a_turn_has_no_usage_and_clear_counts_exchanges(session):
    from chatcli.base.errors import ChatError
    from chatcli.core.turn import ERROR

    session.turns.append(finished_turn("gpt-4o-mini", 10, 5))
    session.turns.append(Turn(user="q", model="gpt-4o-mini", params={}, status=ERROR, error=ChatError("boom")))
    result = REGISTRY.dispatch(session, "/usage")
    assert result.rows[1][-1] == "failed, no usage reported"
    assert REGISTRY.dispatch(session, "/clear").text.startswith("Forgot 1 exchange;")


@pytest.mark.parametrize("line", ["/", "/ ", "/  \t"])
def test_a_slash_alone_is_a_hint_not_a_crash(session, line):
    result = REGISTRY.dispatch(session, line)
    assert result.error and "/help" in result.text


# Every command with arguments it must refuse: one sentence each, and nothing changed.
BAD_ARGUMENTS = [
    ("/temp 3", "from 0 to 2"), ("/temp nan", "from 0 to 2"), ("/temp 1e309", "from 0 to 2"), ("/temp 0x1", "from 0 to 2"),
    ("/model a b", "no spaces"), ("/model gpt\x1b[31m", "control characters"),
    ("/resume abc", "/resume 12"), ("/resume -1", "/resume 12"), ("/resume " + "9" * 5000, "/resume 12"),
    ("/export notes.txt", ".md or .json"), ("/export", "give a file"),
    ("/copy x", "/copy 2"), ("/copy -1", "/copy 2"),
    ("/compact x", "/compact 2"), ("/compact 1.5", "/compact 2"),
    ("/reasoning maybe", "on or off"),
    ("/set top_p 2", "from 0 to 1"), ("/set topp 1", "did you mean top_p"), ("/set seed 1.5", "whole number"),
    ("/set frequency_penalty 3", "from -2 to 2"), ("/set stop", "give a value"), ('/set stop "a', "not closed"),
    ("/set stop a b c d e", "up to 4"), ("/set max_tokens 0", "at least 1"), ("/params x", "takes nothing"),
    *[(f"/{name} {arg}", "takes nothing after it")
      for name, arg in [("clear", "now"), ("undo", "3"), ("retry", "x"), ("usage", "all"), ("new", "x"),
                        ("sessions", "x"), ("tokens", "x"), ("exit", "now"), ("quit", "!")]],
    ("/help tmep", "did you mean /temp"),
]


@pytest.mark.parametrize("line, words", BAD_ARGUMENTS, ids=[repr(line[:24]) for line, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_sentence_and_change_nothing(session, line, words):
    session.turns.append(finished_turn("gpt-4o-mini", 10, 5))
    before = (session.model, dict(session.params), session.system, list(session.turns), session.show_reasoning)
    result = REGISTRY.dispatch(session, line)

    assert result.error and words in result.text.lower(), result.text
    assert "\n" not in result.text and result.text.endswith((".", "?")) and len(result.text) < 200
    assert not (result.exit or result.retry or result.prefill or result.recap or result.clipboard)
    assert (session.model, session.params, session.system, session.turns, session.show_reasoning) == before


@pytest.mark.parametrize("line", ["/help temp", "/help /temp", "/? temperature", "/HELP Temp"])
def test_help_with_a_command_says_how_it_is_used(session, line):
    result = REGISTRY.dispatch(session, line)
    assert not result.error
    first, details = result.text.split("\n\n")
    assert first == "/temp [value]: Show the temperature, or set it (0 to 2). Also: /temperature."
    assert "/temp default goes back to the server's own" in details


def test_help_for_every_command_gives_details_beyond_its_one_line(session):
    for name, command in REGISTRY.commands.items():
        text = REGISTRY.dispatch(session, f"/help {name}").text
        usage, _, details = text.partition("\n\n")
        assert usage.startswith(f"/{name}") and command.help in usage
        assert len(details) > len(command.help), f"/help {name} says no more than /help does"
        assert "\n" not in details  # one paragraph, wrapped by the terminal


def test_help_set_lists_each_parameter_with_its_range(session):
    details = REGISTRY.dispatch(session, "/help set").text.partition("\n\n")[2]
    for name in PARAMS:
        assert name in details, name
    assert "top_p (0 to 1)" in details and 'stop "###"' in details


def test_help_for_a_command_without_arguments_says_so(session):
    assert REGISTRY.dispatch(session, "/help undo").text.startswith("/undo (takes nothing after it): Drop the last")


def test_set_sends_each_parameter_until_it_is_unset_and_params_shows_them(srv, tmp_path):
    from chatcli.core.journal import Journal

    journal = Journal.open(tmp_path / "chatcli.db")
    session = make_session(srv, model="gpt-4o-mini", journal=journal)
    for line in ("/set top_p 0.9", "/set max_tokens 800", "/set presence_penalty 0.5", "/set frequency_penalty -0.25",
                 "/set seed 42", '/set stop "###" "END OF"', "/set temperature 0.3"):
        assert not REGISTRY.dispatch(session, line).error, line
    session.send("hello")
    sent = srv.chat_requests[-1].body
    assert {k: sent[k] for k in ("top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed", "stop",
                                  "temperature")} == {
        "top_p": 0.9, "max_tokens": 800, "presence_penalty": 0.5, "frequency_penalty": -0.25, "seed": 42,
        "stop": ["###", "END OF"], "temperature": 0.3,
    }
    shown = {row[0]: row[1] for row in REGISTRY.dispatch(session, "/params").rows}
    assert shown == {"temperature": "0.3", "top_p": "0.9", "max_tokens": "800", "presence_penalty": "0.5",
                     "frequency_penalty": "-0.25", "seed": "42", "reasoning_effort": "server default",
                     "image_detail": "server default",
                     "stop": "'###' 'END OF'"}

    # Saved with the session: a resumed session sends them too.
    resumed = load_session(journal, session.id, client=session.client)
    assert resumed.params == session.params

    assert REGISTRY.dispatch(session, "/set seed default").text == "seed reset to the server's default."
    session.send("again")
    assert "seed" not in srv.chat_requests[-1].body and srv.chat_requests[-1].body["top_p"] == 0.9
    journal.store.close()


def test_file_attaches_text_files_to_the_next_message_only(srv, tmp_path, monkeypatch):

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.md").write_text("# Notes\nship on Friday\n")
    (tmp_path / "odd name.py").write_text("print('```')\n")  # a fence inside: the attachment's fence is longer
    session = make_session(srv, model="gpt-4o-mini")
    result = REGISTRY.dispatch(session, "/file notes.md 'odd name.py'")
    assert not result.error and result.text.startswith("Attached notes.md, odd name.py (")
    assert result.text.endswith(" tokens); they go with your next message.")

    session.send("summarise these")
    session.send("and now?")
    first, second = (r.body["messages"] for r in srv.chat_requests)
    assert first[-1]["content"] == (
        "File notes.md:\n```\n# Notes\nship on Friday\n```\n\n"
        "File odd name.py:\n````\nprint('```')\n````\n\n"
        "summarise these"
    )
    assert second[-1]["content"] == "and now?"


def test_file_refuses_binary_missing_and_too_large_files_and_attaches_nothing(srv, tmp_path, monkeypatch):
    from chatcli.llm.tokens import Tokenizer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "big.txt").write_text("word " * 4000)
    (tmp_path / "ok.txt").write_text("fine")
    with open(tmp_path / "huge.log", "wb") as f:
        f.truncate(9_000_000)  # sparse: refused from its size, before a byte is read
    session = make_session(config=Config(base_url=srv.base_url, max_retries=0), model="small-model",
                      tokenizer=Tokenizer(overrides={"small-model": {"context_window": 1000, "max_output_tokens": 200}}))

    for line, words in [
        ("/file image.png", "image.png is an image, not a text file; attach it with /image"),
        ("/file ok.txt latin1.txt", "latin1.txt is not a text file"),
        ("/file nowhere.txt", "Could not read nowhere.txt (No such file or directory)"),
        ("/file .", ". is not a regular file"),
        ("/file /dev/zero", "/dev/zero is not a regular file"),
        ("/file huge.log", "huge.log is 9 MB, more than any context window holds"),
        ("/file big.txt", "big.txt is ≈"),
        ("/file", "Give a file to attach"),
        ("/file 'open", "A quote is not closed"),
    ]:
        result = REGISTRY.dispatch(session, line)
        assert result.error and words in result.text, (line, result.text)
        assert "\n" not in result.text
    assert session.attached == []
    too_big = REGISTRY.dispatch(session, "/file big.txt").text
    assert "tokens, but the model's 1,000-token window leaves room for about" in too_big
    assert too_big.endswith("nothing was attached: attach a smaller file or a part of it.")


def test_usage_shows_cached_and_reasoning_tokens_and_prices_cached_input_at_the_cached_price(session):
    turn = finished_turn("gpt-4o-mini", 2000, 300)
    turn.usage = Usage(2000, 300, 2300, cached_tokens=1536, reasoning_tokens=200)
    session.turns.append(turn)
    result = REGISTRY.dispatch(session, "/usage")
    assert result.rows[0][2:] == ["2,000 (1,536 cached)", "300 (200 reasoning)", "2,300", "$0.0004"]  # $0.0005 uncached
    # gpt-4o-mini: 464 fresh input tokens at $0.15, 1,536 cached at $0.075, 300 output at $0.60 per million
    assert session.accounts.cost_of(turn).cost == pytest.approx((464 * 0.15 + 1536 * 0.075 + 300 * 0.60) / 1e6)
    plain = finished_turn("gpt-4o-mini", 10, 5)
    session.turns.append(plain)
    assert REGISTRY.dispatch(session, "/usage").rows[1][2:4] == ["10", "5"]  # nothing said where nothing was reported


def test_the_stats_line_says_reasoning_and_cached_tokens_where_the_server_reported_them(session):
    from chatcli.ui.views import stats_line

    turn = finished_turn("gpt-4o-mini", 2000, 300)
    turn.usage = Usage(2000, 300, 2300, cached_tokens=1536, reasoning_tokens=200)
    turn.first_token_s, turn.total_s = 0.5, 2.5
    line = stats_line(session, turn)
    assert line == "first token 0.50s · 300 tokens (200 reasoning) in 2.5s · 150 tokens/s · 1,536 prompt tokens cached"
    turn.usage = Usage(2000, 300, 2300)
    assert stats_line(session, turn) == "first token 0.50s · 300 tokens in 2.5s · 150 tokens/s"
