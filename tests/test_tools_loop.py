"""Tool calling (issue 17): the streamed tool_calls assembled, the Toolbox, and the loop against
the test server, which streams calls as OpenAI does and records the results it is sent."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from chatcli.base.events import Finish, TextDelta, ToolCall, ToolShown
from chatcli.config.settings import Config
from chatcli.core.toolloop import ToolLoop
from chatcli.core.turn import COMPLETE, INTERRUPTED
from chatcli.llm.client import ChatClient
from chatcli.llm.sse import completion_events, parse_sse
from chatcli.tools.base import (
    CANCELLED,
    DENIED,
    DENIED_BY_POLICY,
    FAILED,
    OK,
    TIMED_OUT,
    Approval,
    ToolFailed,
)
from chatcli.tools.box import Toolbox, wire_name
from chatcli.tools.now import Now
from tests.support.keys import TEST_KEY
from tests.support.server import Error, Reply
from tests.support.sessions import make_session


class Echo:
    """A read-only tool that says back what it was given."""

    name = "echo"
    description = "Says the text back."
    parameters: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}},
                                  "required": ["text"], "additionalProperties": False}
    asks = False

    def __init__(self) -> None:
        self.ran: list[dict[str, Any]] = []

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        self.ran.append(arguments)
        return f"echoed {arguments['text']}"


class Slow(Echo):
    """Waits for its stop event (the timeout or Ctrl-C sets it), up to 10 s."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.stopped = threading.Event()

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        self.ran.append(arguments)
        if stop.wait(10):
            self.stopped.set()
        return "late"


class Writes(Echo):
    """A tool with side effects: it asks."""

    name = "files.write"
    asks = True


class Fails(Echo):
    name = "fails"

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        raise ToolFailed(f"There is no file named {arguments['text']}.")


def sse(*chunks: dict) -> list[str]:
    lines = []
    for chunk in chunks:
        lines += [f"data: {json.dumps(chunk)}", ""]
    return [*lines, "data: [DONE]", ""]


def delta(**d) -> dict:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


# --------------------------------------------------------------------------- the wire


def test_split_and_interleaved_tool_call_deltas_become_whole_calls_before_the_finish():
    lines = sse(
        delta(role="assistant", content=None),
        delta(tool_calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "echo", "arguments": ""}}]),
        delta(tool_calls=[{"index": 1, "id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"te'}}]),
        delta(tool_calls=[{"index": 1, "function": {"arguments": "{}"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": 'xt": "hi"}'}}]),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )
    events = list(parse_sse(lines))
    assert events == [ToolCall("call_a", "echo", '{"text": "hi"}'), ToolCall("call_b", "now", "{}"),
                      Finish("tool_calls")]


def test_a_whole_completion_with_tool_calls_gives_the_same_events():
    body = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": '{"text": "x"}'}}]}}]}
    assert completion_events(json.dumps(body), None) == [
        TextDelta("Let me look."), ToolCall("c1", "echo", '{"text": "x"}'), Finish("tool_calls")]


# --------------------------------------------------------------------------- the Toolbox


def box(*tools, ask=(), timeout=5.0, tokens=4000) -> Toolbox:
    return Toolbox(list(tools), enabled={t.name for t in tools}, ask=set(ask), result_tokens=tokens, timeout=timeout)


def test_specs_list_only_the_enabled_tools_under_wire_names():
    tools = Toolbox([Echo(), Now(), Writes()], enabled={"now", "files.write"}, result_tokens=100, timeout=1)
    names = [spec["function"]["name"] for spec in tools.specs()]
    assert names == ["files__write", "now"]
    assert tools.specs()[0] == {"type": "function", "function": {
        "name": "files__write", "description": "Says the text back.", "parameters": Writes.parameters}}
    assert tools.by_wire("files__write").name == "files.write"
    assert wire_name("a.b c") == "a__b_c"


@pytest.mark.parametrize(("arguments", "said"), [
    ('{"text": ', "not valid JSON"),
    ('["hi"]', "must be a JSON object"),
    ('{"text": 3}', "3 is not of type 'string'"),
    ('{}', "'text' is a required property"),
])
def test_bad_arguments_are_an_error_for_the_model_and_nothing_runs(arguments, said):
    echo = Echo()
    result = box(echo).run(ToolCall("c", "echo", arguments), None)
    assert result.status == FAILED and said in result.content
    assert echo.ran == []


def test_what_asks_is_refused_by_policy_when_nobody_can_be_asked():
    writes = Writes()
    result = box(writes).run(ToolCall("c", "files__write", '{"text": "x"}'), None)
    assert (result.status, result.content, writes.ran) == (DENIED, DENIED_BY_POLICY, [])
    assert "files.write was not run: it asks before running, and there is no terminal" in result.notes[0]


def test_tool_ask_makes_a_read_only_tool_ask_and_allow_lets_it_run():
    echo = Echo()
    tools = box(echo, ask={"echo"})
    assert tools.run(ToolCall("c", "echo", '{"text": "x"}'), None).status == DENIED
    tools.allowed.add("echo")
    assert tools.run(ToolCall("c", "echo", '{"text": "x"}'), None).status == OK


def test_always_allows_that_exact_call_only():
    writes, asked = Writes(), []

    def approver(call, tool, arguments):
        asked.append(arguments)
        return Approval("always")

    tools = box(writes)
    for text in ("a", "a", "b"):
        assert tools.run(ToolCall("c", "files.write", json.dumps({"text": text})), approver).status == OK
    assert asked == [{"text": "a"}, {"text": "b"}]
    assert tools.run(ToolCall("c", "files.write", '{"text":"a"}'), None).status == OK  # the same call, spaced otherwise


def test_no_is_denied_and_an_edited_call_runs_as_edited():
    writes = Writes()
    tools = box(writes)
    assert tools.run(ToolCall("c", "files.write", '{"text": "rm"}'), lambda *a: Approval("no")).status == DENIED
    result = tools.run(ToolCall("c", "files.write", '{"text": "rm"}'), lambda *a: Approval("yes", {"text": "ls"}))
    assert result.status == OK and writes.ran == [{"text": "ls"}] and json.loads(result.call.arguments) == {"text": "ls"}


def test_a_slow_tool_times_out_and_is_told_to_stop():
    slow = Slow()
    started = time.monotonic()
    result = box(slow, timeout=0.3).run(ToolCall("c", "slow", '{"text": "x"}'), None)
    assert result.status == TIMED_OUT and "0.3 seconds" in result.content
    assert time.monotonic() - started < 2 and slow.stopped.wait(2)


def test_a_failing_tool_is_a_failed_result_with_its_sentence():
    result = box(Fails()).run(ToolCall("c", "fails", '{"text": "a.txt"}'), None)
    assert (result.status, result.content) == (FAILED, "There is no file named a.txt.")


def test_a_long_result_is_cut_to_the_budget_and_says_so():
    result = box(Echo(), tokens=10).run(ToolCall("c", "echo", json.dumps({"text": "x" * 500})), None)
    assert result.truncated and result.content.startswith("echoed " + "x" * 33)
    assert "only the first 40 are shown" in result.content


def test_an_unknown_or_disabled_tool_is_an_error():
    tools = Toolbox([Echo(), Now()], enabled={"now"}, result_tokens=100, timeout=1)
    assert tools.run(ToolCall("c", "echo", '{"text": "x"}'), None).status == FAILED


def test_now_says_the_date_and_zone():
    text = Now().run({}, threading.Event())
    assert time.strftime("%Y-%m-%d") in text and "UTC" in text


# --------------------------------------------------------------------------- the loop, against the server


@pytest.fixture
def session(srv):
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    return make_session(client=client, model="gpt-4o-mini")


def with_tools(session, *tools, approver=None, rounds=8, timeout=5.0):
    session.toolloop = ToolLoop(box(*tools, timeout=timeout), approver=approver, max_rounds=rounds)
    return session


def test_one_call_then_an_answer(srv, session):
    echo = Echo()
    with_tools(session, echo)
    srv.script(Reply("Let me check.", tool_calls=(("echo", {"text": "hi"}),)), Reply("It said hi."))
    shown = []
    turn = session.send("what does echo say?", on_event=lambda e: shown.append(str(e)) if isinstance(e, ToolShown) else None)
    assert turn.status == COMPLETE and turn.reply == "It said hi."
    assert echo.ran == [{"text": "hi"}]
    assert shown[0] == '⚙ echo text="hi"' and shown[1].startswith("✓ echo 9 characters (")
    first, second = srv.chat_requests
    assert [t["function"]["name"] for t in first.body["tools"]] == ["echo"]
    call_id = second.body["messages"][-2]["tool_calls"][0]["id"]
    assert second.body["messages"][-2:] == [
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "echo", "arguments": '{"text": "hi"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "echoed hi"},
    ]
    assert turn.usage.completion_tokens == 3 + 3  # both rounds counted ("Let me check." and "It said hi.")


def test_parallel_calls_each_get_their_result_in_order(srv, session):
    echo = Echo()
    with_tools(session, echo)
    srv.script(Reply("", tool_calls=(("echo", {"text": "one"}), ("echo", {"text": "two"}))), Reply("done"))
    turn = session.send("both")
    assert turn.reply == "done" and echo.ran == [{"text": "one"}, {"text": "two"}]
    assert [m["content"] for m in srv.tool_messages()] == ["echoed one", "echoed two"]
    assert srv.chat_requests[-1].body["messages"][-3]["content"] is None


def test_bad_arguments_go_back_to_the_model_as_an_error(srv, session):
    echo = Echo()
    with_tools(session, echo)
    srv.script(Reply("", tool_calls=(("echo", '{"text": "unfinished'),)), Reply("sorry"))
    assert session.send("q").reply == "sorry"
    assert echo.ran == [] and "not valid JSON" in srv.tool_messages()[0]["content"]


def test_the_rounds_stop_at_max_tool_rounds(srv, session):
    echo = Echo()
    with_tools(session, echo, rounds=2)
    srv.script(*[Reply("", tool_calls=(("echo", {"text": str(k)}),)) for k in range(3)])
    turn = session.send("loop forever")
    assert len(echo.ran) == 2 and len(srv.chat_requests) == 3
    assert "stopped after 2 rounds of tool calls (max_tool_rounds)" in turn.notice


def test_a_tool_that_times_out_tells_the_model(srv, session):
    with_tools(session, Slow(), timeout=0.2)
    srv.script(Reply("", tool_calls=(("slow", {"text": "x"}),)), Reply("it was slow"))
    assert session.send("q").reply == "it was slow"
    assert "did not finish within 0.2 seconds" in srv.tool_messages()[0]["content"]


def test_what_asks_in_a_pipe_is_denied_and_the_model_told(srv, session):
    writes = Writes()
    with_tools(session, writes, approver=None)
    srv.script(Reply("", tool_calls=(("files.write", {"text": "x"}),)), Reply("ok, I won't"))
    shown = []
    session.send("write it", on_event=lambda e: shown.append(str(e)) if isinstance(e, ToolShown) else None)
    assert writes.ran == [] and srv.tool_messages()[0]["content"] == DENIED_BY_POLICY
    assert srv.chat_requests[0].body["tools"][0]["function"]["name"] == "files__write"
    assert any("files.write was not run: it asks before running" in line for line in shown)


def test_ctrl_c_during_a_tool_cancels_it_and_ends_the_turn_keeping_the_steps(srv, session):
    slow = Slow()
    with_tools(session, slow)
    srv.script(Reply("Looking.", tool_calls=(("slow", {"text": "a"}), ("echo", {"text": "b"}))))

    def interrupt(event):
        if isinstance(event, ToolShown) and event.text.startswith("⚙ slow"):
            threading.Timer(0.2, lambda: __import__("_thread").interrupt_main()).start()

    turn = session.send("q", on_event=interrupt)
    assert turn.status == INTERRUPTED and slow.stopped.wait(2)
    assert [s.get("_shown", {}).get("status") for s in turn.steps] == [None, CANCELLED, CANCELLED]
    assert len(srv.chat_requests) == 1
    srv.script(Reply("next"))
    session.send("again")  # the words said before the calls are sent once, in their step
    assert [m["role"] for m in srv.chat_requests[-1].body["messages"]] == ["user", "assistant", "tool", "tool", "user"]


def test_later_turns_send_the_steps_again_and_undo_drops_them(srv, session):
    with_tools(session, Echo())
    srv.script(Reply("", tool_calls=(("echo", {"text": "hi"}),)), Reply("first"), Reply("second"), Reply("third"))
    session.send("one")
    session.send("two")
    roles = [m["role"] for m in srv.chat_requests[-1].body["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    session.undo()
    session.undo()
    session.send("three")
    assert [m["role"] for m in srv.chat_requests[-1].body["messages"]] == ["user"]


def test_a_server_that_refuses_tools_is_learned_once(srv, session):
    with_tools(session, Echo())
    srv.script(Error(400, "tools param requires --jinja flag"), Reply("plain"), Reply("again"))
    notes = []
    turn = session.send("q", on_event=lambda e: notes.append(str(e)) if type(e).__name__ == "Adjusted" else None)
    assert turn.reply == "plain"
    assert notes == ["gpt-4o-mini refused tools, so from now on its requests go without them (the tools are off for it)"]
    assert "tools" not in srv.chat_requests[-1].body
    session.send("q2", on_event=lambda e: notes.append(str(e)) if type(e).__name__ == "Adjusted" else None)
    assert "tools" not in srv.chat_requests[-1].body and len(notes) == 1


# --------------------------------------------------------------------------- the command line


def test_oneshot_shows_each_call_on_stderr_and_the_answer_on_stdout(srv, run_chatcli):
    srv.script(Reply("", tool_calls=(("now", {}),)), Reply("It is late."))
    result = run_chatcli("--tools", "now", "what time is it?")
    assert result.returncode == 0 and result.stdout == "It is late.\n"
    assert "⚙ now\n" in result.stderr and "✓ now " in result.stderr
    assert srv.tool_messages()[0]["content"].startswith(time.strftime("%A"))


def test_a_tool_that_asks_is_refused_in_a_pipe_and_the_model_told(srv, run_chatcli):
    from tests.support.profiles import write_config

    write_config('tool_ask = ["now"]\n')
    srv.script(Reply("", tool_calls=(("now", {}),)), Reply("I could not look."))
    result = run_chatcli("--tools", "now", "what time is it?", input="")
    assert result.returncode == 0 and result.stdout == "I could not look.\n"
    assert ("chatcli: now was not run: it asks before running, and there is no terminal to ask on "
            "(use --yes to allow it).") in result.stderr
    assert srv.tool_messages()[0]["content"] == DENIED_BY_POLICY


def test_yes_lets_what_asks_run_and_says_so_once(srv, run_chatcli):
    from tests.support.profiles import write_config

    write_config('tool_ask = "all"\n')
    srv.script(Reply("", tool_calls=(("now", {}),)), Reply("", tool_calls=(("now", {}),)), Reply("Twice."))
    result = run_chatcli("--tools", "now", "--yes", "time, twice")
    assert result.stdout == "Twice.\n"
    assert result.stderr.count("--yes: tool calls that would ask (now) run without asking.") == 1
    assert [m["content"] != DENIED_BY_POLICY for m in srv.tool_messages()] == [True, True]


def test_json_lists_the_tool_calls(srv, run_chatcli):
    srv.script(Reply("", tool_calls=(("now", {}), ("now", "{oops"))), Reply("Done."))
    record = json.loads(run_chatcli("--json", "--tools", "now", "time").stdout)
    assert record["reply"] == "Done."
    assert [(c["name"], c["arguments"], c["status"]) for c in record["tool_calls"]] == [
        ("now", "{}", OK), ("now", "{oops", FAILED)]
    assert all(isinstance(c["seconds"], float) for c in record["tool_calls"])


def test_tools_are_off_by_default_and_an_unknown_name_is_said(srv, run_chatcli):
    srv.script(Reply("plain"), Reply("plain"))
    run_chatcli("hello")
    assert "tools" not in srv.chat_requests[-1].body
    result = run_chatcli("--tools", "now,nosuch", "hello")
    assert "There is no tool named 'nosuch', so it stays off; known: now, read_file, list_dir, grep, fetch_url, shell." in result.stderr
    assert [t["function"]["name"] for t in srv.chat_requests[-1].body["tools"]] == ["now"]


# --------------------------------------------------------------------------- saved, resumed, exported


def test_resume_restores_the_steps_and_sends_them_again_exactly(srv, run_chatcli):
    srv.script(Reply("Looking.", tool_calls=(("now", {}),)), Reply("It is noon."), Reply("Yes."))
    assert run_chatcli("--tools", "now", "what time?").returncode == 0
    sent = srv.chat_requests[-1].body["messages"]  # the second round: user, assistant tool_calls, tool
    run_chatcli("--resume", "--tools", "now", "sure?")
    again = srv.chat_requests[-1].body["messages"]
    assert again[: len(sent)] == sent
    assert again[len(sent):] == [{"role": "assistant", "content": "It is noon."}, {"role": "user", "content": "sure?"}]


def test_exports_show_the_calls_and_results(srv, session, tmp_path):
    from chatcli.core.export import to_json, to_markdown

    with_tools(session, Echo())
    srv.script(Reply("Let me see.", tool_calls=(("echo", {"text": "a ``` fence"}),)), Reply("Done."))
    session.send("q")
    assistant, tool = json.loads(to_json(session))["messages"][1]["steps"]
    assert (assistant["role"], assistant["content"], assistant["tool_calls"][0]["function"]["name"]) == (
        "assistant", "Let me see.", "echo")
    assert (tool["role"], tool["name"], tool["arguments"], tool["status"], tool["content"]) == (
        "tool", "echo", '{"text": "a ``` fence"}', OK, "echoed a ``` fence")
    assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"] and isinstance(tool["seconds"], float)
    text = to_markdown(session)
    assert '## Assistant\n\nLet me see.\n\n**Tool** `echo` {"text": "a ``` fence"} (ok, ' in text
    assert "\n````\nechoed a ``` fence\n````\n\nDone.\n" in text


def test_undo_drops_the_saved_exchange_with_its_steps(srv, session, tmp_path):
    from chatcli.core.journal import Journal

    journal = Journal.open(tmp_path / "chat.db")
    session.conversation.journal = journal
    with_tools(session, Echo())
    srv.script(Reply("", tool_calls=(("echo", {"text": "x"}),)), Reply("Done."), Reply("Other."))
    session.send("q")
    saved = journal.load(session.id)[1]
    assert [len(m.steps) for m in saved] == [0, 2] and saved[1].steps[1]["content"] == "echoed x"
    session.undo()
    assert journal.load(session.id)[1] == []


# --------------------------------------------------------------------------- /tools and /tokens


def test_slash_tools_lists_and_changes_the_tools(srv, session):
    from chatcli.commands import REGISTRY

    with_tools(session, Echo(), Writes())
    session.toolloop.box.enabled = {"echo"}
    listed = REGISTRY.dispatch(session, "/tools")
    assert listed.rows == [["echo", "on", "auto", "Says the text back."], ["files.write", "off", "asks", "Says the text back."]]
    assert not REGISTRY.dispatch(session, "/tools on files.write").error
    assert REGISTRY.dispatch(session, "/tools allow files.write").text.startswith("files.write runs without asking")
    assert REGISTRY.dispatch(session, "/tools").rows[1][1:3] == ["on", "allowed"]
    REGISTRY.dispatch(session, "/tools off echo")
    srv.script(Reply("ok"))
    session.send("q")
    assert [t["function"]["name"] for t in srv.chat_requests[-1].body["tools"]] == ["files__write"]
    assert REGISTRY.dispatch(session, "/tools on nosuch").error
    assert REGISTRY.dispatch(session, "/tools sideways echo").error


def test_slash_tools_allow_never_lets_shell_run_unasked(session):
    from chatcli.commands import REGISTRY

    class Shell(Writes):
        name = "shell"
        asks = True

    with_tools(session, Shell())
    assert REGISTRY.dispatch(session, "/tools allow shell").error
    session.toolloop.box.allowed.add("shell")  # even if it got there
    assert session.toolloop.box.run(ToolCall("c", "shell", '{"text": "rm"}'), None).status == DENIED


def test_slash_tokens_shows_the_schemas_on_a_line_of_their_own_and_fitting_counts_them(session):
    from chatcli.commands import REGISTRY

    before = session.plan().tokens.tokens
    assert not any(row[0].startswith("tool schemas") for row in REGISTRY.dispatch(session, "/tokens").rows)
    with_tools(session, Echo(), Now())
    rows = {row[0]: row[1] for row in REGISTRY.dispatch(session, "/tokens").rows}
    schemas = int(rows["tool schemas (each request)"].lstrip("≈").replace(",", ""))
    assert schemas > 20
    assert session.plan().tokens.tokens == before + schemas


def test_tool_call_arguments_streaming_slowly_are_no_silence(srv):
    """Arguments that take longer than read_timeout to stream, piece by piece, still arrive."""
    from chatcli.core.toolloop import ToolLoop as Loop

    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=0.5))
    session = make_session(client=client, model="gpt-4o-mini")
    echo = Echo()
    session.toolloop = Loop(box(echo), approver=None)
    srv.script(Reply("", tool_calls=(("echo", {"text": "x" * 40}),), args_chunk=4, delay=0.1), Reply("ok"))
    assert session.send("q").reply == "ok" and echo.ran == [{"text": "x" * 40}]


def test_a_resumed_sessions_recap_shows_each_call(srv, session):
    import io

    from rich.console import Console

    from chatcli.ui.views import show_recap

    with_tools(session, Echo())
    srv.script(Reply("", tool_calls=(("echo", {"text": "hi"}), ("echo", "{bad"))), Reply("Done."))
    session.send("q")
    out = io.StringIO()
    show_recap(Console(file=out, width=100, color_system=None), session)
    assert '  ✓ echo {"text": "hi"} (ok)\n  ✗ echo {bad (error)\n  Done.\n' in out.getvalue()


def test_an_overflow_in_a_later_round_sends_the_users_message_once(srv, session):
    with_tools(session, Echo())
    srv.script(Reply("first"), Reply("", tool_calls=(("echo", {"text": "hi"}),)),
               Error(400, "This model's maximum context length is 1000 tokens. However, your messages resulted in "
                          "1200 tokens.", code="context_length_exceeded"), Reply("Done."))
    session.send("old")
    assert session.send("new").reply == "Done."
    users = [m["content"] for m in srv.chat_requests[-1].body["messages"] if m["role"] == "user"]
    assert users == ["new"]


def test_the_repl_asks_with_the_replys_live_region_stopped_and_draws_on_after(srv, tmp_path):
    from contextlib import ExitStack

    from tests.support.repl import ENTER, flat, piped_chat

    config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
    session = make_session(config=config, model="gpt-4o-mini")
    live_while_asked = []

    def approver(call, tool, arguments):
        live_while_asked.append(list(chat.repl.console._live_stack))
        return Approval("yes")

    writes = Writes()
    with_tools(session, writes, approver=approver)
    srv.script(Reply("Writing now.", tool_calls=(("files.write", {"text": "x"}),)), Reply("Written."))
    with ExitStack() as stack:
        chat = piped_chat(stack, session, markdown=True, history=tmp_path / "history")
        out = chat.run("write it" + ENTER)
    assert writes.ran == [{"text": "x"}] and live_while_asked == [[]]
    assert session.toolloop.approver is approver  # put back after the turn
    assert "Writing now." in flat(out) and "✓ files.write 8 characters" in flat(out) and "Written." in flat(out)


def test_a_profile_turns_tools_on_and_a_bad_list_is_one_sentence(srv, run_chatcli):
    from tests.support.profiles import write_config

    write_config(f'[profiles.tooled]\nbase_url = "{srv.base_url}"\ntools = ["now"]\nmax_tool_rounds = 1\n')
    srv.script(Reply("", tool_calls=(("now", {}),)), Reply("", tool_calls=(("now", {}),)))
    result = run_chatcli("-p", "tooled", "time?")
    assert [t["function"]["name"] for t in srv.chat_requests[-1].body["tools"]] == ["now"]
    assert "stopped after 1 round of tool calls (max_tool_rounds); the model's last call was not run." in result.stderr
    write_config("tools = \"now\"\n")
    result = run_chatcli("time?")
    assert result.returncode != 0 and "'tools' in " in result.stderr
    assert 'must be a list of tool names, as in ["read_file", "grep"].' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_turns_summed_usage_over_tool_rounds_does_not_skew_the_token_estimates(srv):
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    session = make_session(client=client, model="some-local-model")  # estimated counts, corrected by usage
    with_tools(session, Echo())
    srv.script(*[Reply("", tool_calls=(("echo", {"text": "x" * 200}),)) for _ in range(3)], Reply("Done."))
    session.send("q")
    assert session.tokenizer.factor("some-local-model") is None
    assert session.turns[-1].notice is None  # nor is a cut by the server claimed


def test_sigterm_while_asking_saves_the_turn_with_every_call_answered(srv, session):
    from chatcli.base.errors import Terminated

    def approver(call, tool, arguments):
        raise Terminated(15)

    with_tools(session, Writes(), approver=approver)
    srv.script(Reply("", tool_calls=(("files.write", {"text": "a"}), ("files.write", {"text": "b"}))))
    with pytest.raises(Terminated):
        session.send("q")
    turn = session.turns[-1]
    assert turn.status == INTERRUPTED
    assert [(s["role"], s.get("_shown", {}).get("status")) for s in turn.steps] == [
        ("assistant", None), ("tool", CANCELLED), ("tool", CANCELLED)]


def test_config_show_says_which_tools_are_on(run_chatcli):
    from tests.support.profiles import write_config

    write_config('tools = ["now"]\ntool_ask = "all"\nmax_tool_rounds = 3\n')
    shown = run_chatcli("config", "show").stdout
    assert 'tools = ["now"]\n' in shown and 'tool_ask = "all"\n' in shown and "max_tool_rounds = 3\n" in shown


def test_a_later_round_that_would_pass_a_budget_is_not_sent(srv):
    from chatcli.core.budget import Budget
    from chatcli.core.turn import ERROR

    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=5))
    session = make_session(client=client, model="gpt-4o-mini", budget=Budget(daily_tokens=52_000),
                           params={"max_tokens": 50_000})
    echo = Echo()
    with_tools(session, echo)
    # The first request fits the cap; the second would carry a big result and room for the reply.
    srv.script(Reply("", tool_calls=(("echo", {"text": "x" * 15_000}),)), Reply("never"))
    session.toolloop.box.result_tokens = 100_000
    turn = session.send("q")
    assert echo.ran and len(srv.chat_requests) == 1
    assert turn.status == ERROR and "daily_tokens" in turn.error.message
