"""The REPL, driven through a real prompt-toolkit session in-process.

Keys go in through a pipe (create_pipe_input) and the screen is a DummyOutput;
replies come from tests/support/server.py over real HTTP. Each test asserts on what
the server received and on what the REPL printed, as a user would see it.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.session import Session
from chatcli.llm.client import ChatClient
from chatcli.ui.prompt import SlashCompleter, make_toolbar
from tests.support.keys import TEST_KEY
from tests.support.repl import (
    CTRL_C,
    CTRL_D,
    ENTER,
    ESC_ENTER,
    TAB,
    UP,
    Chat,
    flat,
    lines_with,
    piped_chat,
    user_messages,
)
from tests.support.server import Error, Reply, compute_usage
from tests.support.sessions import make_session

# gpt-4o-mini's list price, USD per 1M tokens (input, output).
MINI_PRICE = (0.15, 0.60)


@pytest.fixture
def chat(srv, tmp_path: Path):
    """Build a Session and Repl as cli.py does, reading keys from a pipe."""
    with ExitStack() as stack:

        def make(
            *,
            model: str = "gpt-4o-mini",
            system: str | None = None,
            params: dict | None = None,
            markdown: bool = True,
            history: Path | None = None,
            **prompt: bool,
        ) -> Chat:
            config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
            session = make_session(config=config, model=model, system=system, params=dict(params or {}))
            return piped_chat(stack, session, markdown=markdown, history=history or tmp_path / "history", **prompt)

        yield make


# --------------------------------------------------------------------------- #
# Sending messages
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("markdown", [True, False], ids=["markdown", "plain"])
def test_enter_sends_the_message_and_the_reply_is_printed(srv, chat, markdown):
    srv.script(Reply("Hello **world**, nice to meet you."))
    out = chat(markdown=markdown).run("hi there", ENTER)
    assert user_messages(srv) == ["hi there"]
    if markdown:
        assert "Hello world, nice to meet you." in out
        assert "**" not in out
    else:
        assert "Hello **world**, nice to meet you." in out


def test_each_turn_sends_the_conversation_so_far(srv, chat):
    srv.script(Reply("first answer"), Reply("second answer"))
    out = chat(system="Be brief.").run("first question", ENTER, "second question", ENTER)
    assert "first answer" in out and "second answer" in out
    assert len(srv.chat_requests) == 2
    assert srv.chat_requests[1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]


def test_esc_enter_inserts_a_newline_instead_of_sending(srv, chat):
    chat().run("line one", ESC_ENTER, "line two", ENTER)
    assert user_messages(srv) == ["line one\nline two"]


@pytest.mark.parametrize("typed", ["\x1b[31m", "\x1b[1;31m", "\x1b[0;1;31m"])
def test_a_colour_code_typed_at_the_prompt_is_text_not_a_broken_mouse_report(srv, chat, typed):
    # prompt-toolkit reads ESC [ digits m as a mouse report; its handler failed on these with
    # "Unhandled exception in event loop" and "Press ENTER to continue".
    out = chat().run("red ", typed, "text", ENTER)
    assert "Unhandled exception" not in out and "Press ENTER" not in out
    assert user_messages(srv) == [f"red {typed[1:]}text"]


def test_a_real_mouse_report_is_still_a_mouse_event_not_text(srv, chat):
    chat().run("a", "\x1b[<0;5;5M", "\x1b[<0;5;5m", "b", ENTER)
    [message] = user_messages(srv)
    assert sorted(message) == ["a", "b"]  # the click may move the cursor; nothing of the report is typed


def test_pasted_lines_arrive_as_one_message(srv, chat):
    chat().run("\x1b[200~line1\nline2\nline3\x1b[201~", ENTER)
    assert user_messages(srv) == ["line1\nline2\nline3"]


def test_a_message_may_start_with_a_slash_when_doubled(srv, chat):
    chat().run("//usr/bin is a path", ENTER)
    assert user_messages(srv) == ["/usr/bin is a path"]


def test_blank_lines_send_nothing(srv, chat):
    chat().run(ENTER, "   ", ENTER, "real", ENTER)
    assert user_messages(srv) == ["real"]


# --------------------------------------------------------------------------- #
# Ctrl-C, Ctrl-D, /exit
# --------------------------------------------------------------------------- #


def test_ctrl_c_at_the_prompt_clears_the_line_and_does_not_quit(srv, chat):
    chat().run("abc", CTRL_C, "xyz", ENTER)
    assert user_messages(srv) == ["xyz"]


def test_ctrl_d_quits(srv, chat):
    c = chat()
    c.pipe.send_text("first" + ENTER + CTRL_D + "after ctrl-d" + ENTER)
    assert c.repl.run() == 0
    assert user_messages(srv) == ["first"]


@pytest.mark.parametrize("command", ["/exit", "/quit", "/q"])
def test_exit_command_quits(srv, chat, command):
    c = chat()
    out = c.run("first", ENTER, command, ENTER, "after exit", ENTER)
    assert user_messages(srv) == ["first"]
    assert "after exit" not in out


# --------------------------------------------------------------------------- #
# Input history
# --------------------------------------------------------------------------- #


def test_input_history_persists_across_runs(srv, chat, tmp_path):
    history = tmp_path / "state" / "history"
    chat(history=history).run("remember me", ENTER)
    assert history.exists() and history.stat().st_mode & 0o077 == 0  # only the user can read it
    chat(history=history).run(UP, ENTER, pause=0.2)
    assert user_messages(srv) == ["remember me", "remember me"]
    # A fresh session: the second request is the recalled message alone.
    assert srv.chat_requests[1].body["messages"] == [{"role": "user", "content": "remember me"}]


# --------------------------------------------------------------------------- #
# Slash commands
# --------------------------------------------------------------------------- #


def test_help_lists_every_command(srv, chat):
    out = chat().run("/help", ENTER)
    for name, command in REGISTRY.commands.items():
        assert f"/{name}" in out, f"/help does not list /{name}"
        for alias in command.aliases:
            assert f"/{alias}" in out
    assert "Ctrl-D" in out and "Alt-Enter" in out
    assert srv.chat_requests == []


def test_clear_forgets_the_history_but_keeps_the_system_prompt(srv, chat):
    out = chat(system="Be brief.").run("one", ENTER, "two", ENTER, "/clear", ENTER, "three", ENTER)
    assert "Forgot 2 exchanges" in out
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "three"},
    ]


def test_system_shows_and_sets_the_system_prompt_keeping_the_history(srv, chat):
    out = chat(system="Be brief.").run(
        "/system", ENTER, "one", ENTER, "/system You are a pirate.", ENTER, "/system", ENTER, "two", ENTER
    )
    assert "System prompt: Be brief." in out
    assert "System prompt: You are a pirate." in out
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
    ]


def test_system_without_a_prompt_says_none_is_set_and_can_set_one(srv, chat):
    out = chat().run("/system", ENTER, "/system Speak French.", ENTER, "bonjour", ENTER)
    assert "No system prompt is set." in out
    assert srv.chat_requests[-1].body["messages"][0] == {"role": "system", "content": "Speak French."}


def test_temp_shows_sets_and_rejects_bad_values(srv, chat):
    out = chat().run(
        "/temp", ENTER,
        "a", ENTER,
        "/temp 0.7", ENTER,
        "b", ENTER,
        "/temp 3", ENTER,
        "/temp abc", ENTER,
        "/temp", ENTER,
        "c", ENTER,
    )  # fmt: skip
    first, second, third = (r.body for r in srv.chat_requests)
    assert "temperature" not in first
    assert second["temperature"] == 0.7
    assert third["temperature"] == 0.7  # the rejected values changed nothing
    assert "Temperature: the server's default." in out
    assert "Temperature set to 0.7." in out
    assert "Temperature: 0.7" in out
    # Each bad value gets one line saying what is allowed, and the session goes on.
    for bad in ("'3'", "'abc'"):
        (line,) = lines_with(out, bad)
        assert "0 to 2" in line
    assert len(lines_with(out, "must be")) == 2
    assert "Traceback" not in out


def test_temp_rejects_nan(srv, chat):
    out = chat().run("/temp nan", ENTER, "hello", ENTER)
    (line,) = lines_with(out, "'nan'")
    assert "0 to 2" in line
    assert user_messages(srv) == ["hello"]
    assert "temperature" not in srv.chat_requests[0].body


def test_model_lists_the_servers_models_and_switches(srv, chat):
    srv.models = ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    out = chat().run("/model", ENTER, "a", ENTER, "/model gpt-4o", ENTER, "/model", ENTER, "b", ENTER)
    first, second = out.split("Model set to gpt-4o.")
    assert "Model: gpt-4o-mini; the server has 3 (/model NAME switches):" in first

    def listed(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip().lstrip("* ") in srv.models]

    assert listed(first) == ["gpt-4o", "* gpt-4o-mini", "o3-mini"]  # the current one marked
    assert listed(second) == ["* gpt-4o", "gpt-4o-mini", "o3-mini"]
    assert [r.body["model"] for r in srv.chat_requests] == ["gpt-4o-mini", "gpt-4o"]
    # Once as the session starts (the server's models and windows), then afresh for each /model.
    assert [r.path for r in srv.requests if r.method == "GET"] == ["/v1/models"] * 3


def test_model_without_a_server_list_still_says_the_model(chat):
    from chatcli.config.settings import Config

    c = chat()
    c.session.client = ChatClient(Config(base_url="http://127.0.0.1:9/v1", max_retries=0))
    out = c.run("/model", ENTER)
    assert "Model: gpt-4o-mini. The server's list could not be had: Could not connect to http://127.0.0.1:9/v1" in flat(out)


def _usage_row(out: str, first_cell: str) -> list[str]:
    """The cells of the last /usage table row that starts with `first_cell`."""
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [first_cell]]
    assert rows, f"no /usage row {first_cell!r} in:\n{out}"
    return rows[-1]


def _mini_cost(usage: dict) -> str:
    dollars = (usage["prompt_tokens"] * MINI_PRICE[0] + usage["completion_tokens"] * MINI_PRICE[1]) / 1e6
    return f"${dollars:.4f}"


def test_usage_shows_tokens_per_turn_and_a_session_cost(srv, chat):
    long_reply = "word " * 500
    srv.script(Reply(long_reply, chunk_size=200), Reply("short answer"))
    out = chat(markdown=False).run("first", ENTER, "second", ENTER, "/usage", ENTER)
    u1 = compute_usage(srv.chat_requests[0].body, long_reply)
    u2 = compute_usage(srv.chat_requests[1].body, "short answer")
    assert _usage_row(out, "1") == [
        "1", "gpt-4o-mini", str(u1["prompt_tokens"]), str(u1["completion_tokens"]), str(u1["total_tokens"]),
        _mini_cost(u1),
    ]  # fmt: skip
    assert _usage_row(out, "2")[:5] == [
        "2", "gpt-4o-mini", str(u2["prompt_tokens"]), str(u2["completion_tokens"]), str(u2["total_tokens"]),
    ]  # fmt: skip
    total = {k: u1[k] + u2[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert total["total_tokens"] >= 1000  # shown with a thousands separator
    session_row = _usage_row(out, "session")
    assert session_row[1:4] == [f"{total['prompt_tokens']:,}", f"{total['completion_tokens']:,}", f"{total['total_tokens']:,}"]
    assert session_row[4] == _mini_cost(total)
    assert session_row[4] != "$0.0000"  # 500 output tokens of gpt-4o-mini cost something


def test_usage_says_cost_unknown_for_an_unpriced_model(srv, chat):
    out = chat(markdown=False).run(
        "first", ENTER, "/model my-local-model", ENTER, "second", ENTER, "/usage", ENTER
    )
    u2 = compute_usage(srv.chat_requests[1].body, "echo: second")
    row = _usage_row(out, "2")
    assert row[:5] == ["2", "my-local-model", str(u2["prompt_tokens"]), str(u2["completion_tokens"]), str(u2["total_tokens"])]
    assert " ".join(row[5:]) == "cost unknown"
    assert "$" in _usage_row(out, "1")[-1] and "unknown" not in _usage_row(out, "1")[-1]  # the priced turn keeps its cost
    assert " ".join(_usage_row(out, "session")[-2:]) == "cost unknown"


def test_usage_before_any_turn(srv, chat):
    out = chat().run("/usage", ENTER)
    assert "No turns yet." in out


def test_unknown_command_suggests_the_nearest(srv, chat):
    out = chat().run("/tmep 0.5", ENTER, "hello", ENTER)
    (line,) = lines_with(out, "/tmep")
    assert "Did you mean /temp?" in line
    assert user_messages(srv) == ["hello"]  # the typo was not sent as a message
    assert "temperature" not in srv.chat_requests[0].body


# --------------------------------------------------------------------------- #
# Completion and toolbar
# --------------------------------------------------------------------------- #


def test_tab_completes_a_slash_command(srv, chat):
    out = chat().run("hello", ENTER, "/us", TAB, ENTER, pause=0.15)
    assert "Unknown command" not in out
    assert "Tokens as reported by the server" in out  # /usage ran


def _completions(text: str) -> list[str]:
    completer = SlashCompleter(REGISTRY)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


def test_slash_completer_offers_commands_at_the_start_of_the_line():
    assert _completions("/us") == ["/usage"]
    assert _completions("/TE") == ["/temp", "/temperature"]
    assert _completions("/") == REGISTRY.names()
    assert {f"/{name}" for name in REGISTRY.commands} <= set(_completions("/"))
    assert _completions("hello") == []
    assert _completions("say /us") == []
    assert _completions("/temp 0") == []  # no completion once the argument starts
    (usage,) = SlashCompleter(REGISTRY).get_completions(Document("/us"), CompleteEvent())
    assert usage.start_position == -3  # replaces what was typed
    assert usage.display_meta_text == REGISTRY.commands["usage"].help


def _toolbar_text(session: Session) -> str:
    return "".join(text for _style, text in make_toolbar(session)())


def test_toolbar_shows_model_temperature_and_tokens_and_follows_changes(srv, chat):
    c = chat(params={"temperature": 0.5})
    toolbar = _toolbar_text(c.session)
    assert "gpt-4o-mini" in toolbar and "temp 0.5" in toolbar and " 0 tokens" in toolbar
    c.run("hello", ENTER, "/model gpt-4o", ENTER, "/temp default", ENTER)
    tokens = compute_usage(srv.chat_requests[0].body, "echo: hello")["total_tokens"]
    toolbar = _toolbar_text(c.session)
    assert "gpt-4o " in toolbar and "gpt-4o-mini" not in toolbar
    assert "temp default" in toolbar
    assert f" {tokens} tokens" in toolbar


# --------------------------------------------------------------------------- #
# Failures
# --------------------------------------------------------------------------- #


def test_a_failed_send_keeps_the_message_at_the_prompt_for_a_retry(srv, chat):
    srv.script(Error(500, "boom"))
    out = chat(system="Be brief.").run("please answer", ENTER, ENTER)
    assert user_messages(srv) == ["please answer", "please answer"]
    # The failed turn is not repeated in the retry's conversation.
    assert srv.chat_requests[1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "please answer"},
    ]
    (error,) = lines_with(out, "HTTP 500")
    assert error.startswith("The server failed") and error.endswith("try again later.")
    assert "press Enter to send it again" in out
    assert "echo: please answer" in out
    assert "Traceback" not in out


def test_ctrl_c_clears_a_message_put_back_after_a_failure(srv, chat):
    srv.script(Error(500, "boom"))
    chat().run("please answer", ENTER, CTRL_C, "something else", ENTER)
    assert user_messages(srv) == ["please answer", "something else"]


def test_a_reply_that_breaks_off_is_kept_and_marked(srv, chat):
    srv.script(Reply("alpha beta gamma delta", chunk_size=6, disconnect_after=2))
    out = chat().run("tell me", ENTER, "go on", ENTER)
    partial = "alpha beta g"
    assert partial in out
    assert f"The connection to {srv.base_url} broke off in the middle of the reply; try again (partial reply kept)." in flat(out)
    assert flat(out).count("broke off") == 1
    assert "gamma delta" not in out
    # Not put back at the prompt: the next Enter sent the next message, with the partial reply.
    assert user_messages(srv) == ["tell me", "go on"]
    assert srv.chat_requests[1].body["messages"] == [
        {"role": "user", "content": "tell me"},
        {"role": "assistant", "content": partial},
        {"role": "user", "content": "go on"},
    ]


def test_a_reply_without_a_finish_is_marked_as_possibly_cut(srv, chat):
    srv.script(Reply("half an answer", finish_reason=None))
    out = chat().run("q", ENTER)
    assert "half an answer" in out
    assert ("The reply stopped before the server said it was finished, so it may be cut short; try again "
            "(partial reply kept).") in flat(out)


def test_a_reply_cut_by_max_tokens_says_so(srv, chat):
    srv.script(Reply("a reply that ran out of", finish_reason="length"))
    out = chat(params={"max_tokens": 6}).run("q", ENTER)
    assert srv.chat_requests[0].body["max_tokens"] == 6
    assert "a reply that ran out of" in out
    assert "[the reply reached the max_tokens limit, so it may be cut short]" in out


def test_model_names_complete_after_slash_model_once_the_server_has_listed_them(srv):
    import time as _time


    srv.models = ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    completer = SlashCompleter(REGISTRY, {"model": client.known_models})

    def names(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]

    assert names("/model gpt") == []  # not known yet: asked for in the background, never waited on
    deadline = _time.monotonic() + 10
    while client.known_models() is None and _time.monotonic() < deadline:
        _time.sleep(0.02)
    assert names("/model gpt-4o") == ["gpt-4o", "gpt-4o-mini"]
    assert names("/model ") == ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    assert names("/temp 0") == [] and names("/model gpt-4o extra") == []
    assert [r.path for r in srv.requests] == ["/v1/models"]  # fetched once


# --------------------------------------------------------------------------- #
# Input ergonomics: multiline, vi, suggestions from history, $EDITOR
# --------------------------------------------------------------------------- #

RIGHT = "\x1b[C"


def test_multiline_mode_makes_enter_a_new_line_and_alt_enter_send(srv, chat):
    chat(multiline=True).run("line one", ENTER, "line two", ESC_ENTER)
    assert user_messages(srv) == ["line one\nline two"]


def test_vi_mode_edits_with_vi_keys(srv, chat):
    # Type, Esc to normal mode, 0 to the start, i to insert there.
    chat(vi=True).run("world", "\x1b", "0", "i", "hello ", ENTER, pause=0.1)
    assert user_messages(srv) == ["hello world"]


def test_ctrl_r_searches_the_input_history(srv, chat, tmp_path):
    chat().run("the first question", ENTER, "something else", ENTER)
    chat(history=tmp_path / "history").run("\x12", "first", ENTER + ENTER, pause=0.15)  # Ctrl-R, type, take, send
    assert user_messages(srv) == ["the first question", "something else", "the first question"]


def test_history_is_suggested_as_you_type_and_the_right_arrow_takes_it(srv, chat, tmp_path):
    chat().run("tell me a joke about databases", ENTER)
    second = chat(history=tmp_path / "history")
    # The history loads and the suggestion is found in the background: Right takes it once it is there.
    suggested = second.waits_for(lambda buffer: buffer.text == "tell" and buffer.suggestion is not None)
    second.run("tell", suggested, RIGHT, ENTER, pause=0)
    assert user_messages(srv) == ["tell me a joke about databases"] * 2


def test_slash_edit_writes_the_message_in_the_editor_and_puts_it_at_the_prompt(srv, chat, tmp_path, monkeypatch):
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\np = sys.argv[1]\ntext = open(p).read()\nopen(p, 'w').write(text + 'written in the editor\\n')\n")
    monkeypatch.setenv("VISUAL", f"{sys.executable} {editor}")
    out = chat().run("/edit Dear model,", ENTER, ENTER, pause=0.1)
    assert "Your message is at the prompt: press Enter to send it." in out
    assert user_messages(srv) == ["Dear model,written in the editor"]


def test_slash_edit_with_an_editor_that_fails_puts_nothing_at_the_prompt(srv, chat, monkeypatch):
    monkeypatch.setenv("VISUAL", "false")
    out = chat().run("/edit", ENTER, "plain", ENTER, pause=0.1)
    assert "The editor exited with status 1; nothing was put at the prompt." in out
    assert user_messages(srv) == ["plain"]
