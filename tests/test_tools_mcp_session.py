"""An MCP server's tools in a chat (issue 17, item 6, end to end): the model calls NAME.tool, the
call runs on a real MCP server over stdio (tests/support/mcp_server.py, written with the official
SDK), the answer comes back, and the session, resumed, sends the whole exchange again and calls
the server anew."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.profiles import write_config
from tests.support.server import Reply

REPO = Path(__file__).resolve().parents[1]
SERVER = (f'[mcp.calc]\ncommand = {json.dumps(sys.executable)}\nargs = ["-m", "tests.support.mcp_server"]\n'
          f'env = {{ "PYTHONPATH" = {json.dumps(str(REPO))} }}\n')


def test_an_mcp_tool_answers_in_a_session_that_is_then_resumed(srv, run_chatcli):
    write_config(SERVER)
    srv.script(Reply("", tool_calls=(("calc__add", {"a": 2, "b": 3}),)), Reply("It is 5."))

    first = run_chatcli("--tools", "calc.add", "--yes", "what is 2+3?")

    assert first.returncode == 0, first.stderr
    assert first.stdout == "It is 5.\n"
    assert first.stderr.count("chatcli: --yes: tool calls that would ask (calc.add) run without asking.") == 1
    assert [m["content"] for m in srv.tool_messages()] == ["5"]  # the server's answer went back to the model
    assert [t["function"]["name"] for t in srv.chat_requests[0].body["tools"]] == ["calc__add"]

    srv.script(Reply("", tool_calls=(("calc__add", {"a": 5, "b": 1}),)), Reply("Now 6."))
    resumed = run_chatcli("-c", "--tools", "calc.add", "--yes", "and plus one?")

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "Now 6.\n"
    sent = srv.chat_requests[-1].body["messages"]
    calls = [m for m in sent if m["role"] == "assistant" and m.get("tool_calls")]
    assert [json.loads(c["tool_calls"][0]["function"]["arguments"]) for c in calls] == [{"a": 2, "b": 3}, {"a": 5, "b": 1}]
    assert [m["content"] for m in sent if m["role"] == "tool"] == ["5", "6"]  # the resumed exchange, then the new one
    assert [m["content"] for m in sent if m["role"] == "user"] == ["what is 2+3?", "and plus one?"]


def test_all_of_a_servers_tools_by_star_and_a_server_that_cannot_start_is_one_sentence(srv, run_chatcli):
    write_config(SERVER + '[mcp.gone]\ncommand = "no-such-mcp-server-anywhere"\n')
    srv.script(Reply("Fine."))

    result = run_chatcli("--tools", "calc.*,gone.thing", "--yes", "hello")

    assert result.returncode == 0 and result.stdout == "Fine.\n", result.stderr
    names = sorted(t["function"]["name"] for t in srv.chat_requests[0].body["tools"])
    assert "calc__add" in names and "calc__echo" in names and not any(n.startswith("gone") for n in names)
    assert result.stderr.count("The MCP server 'gone' could not start") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_tools_lists_an_mcp_servers_tools_before_any_request(srv):
    from chatcli.app import close_tools, equip_tools
    from chatcli.commands import REGISTRY
    from chatcli.config.settings import Config
    from tests.support.sessions import make_session

    session = make_session(srv)
    config = Config(base_url=srv.base_url, tools=("calc.add",),
                    mcp={"calc": {"command": sys.executable, "args": ["-m", "tests.support.mcp_server"],
                                  "env": {"PYTHONPATH": str(REPO)}}})
    try:
        assert equip_tools(session, config, None) == []
        rows = {row[0]: row[1:3] for row in REGISTRY.dispatch(session, "/tools").rows}
    finally:
        close_tools(session)

    assert rows["calc.add"] == ["on", "asks"] and rows["calc.echo"] == ["off", "asks"]
    assert len(srv.chat_requests) == 0  # listed before anything was sent
