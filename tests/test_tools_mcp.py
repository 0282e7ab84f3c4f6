"""MCP servers as tools (chatcli/tools/mcp.py), against a real MCP server written with the same
SDK (tests/support/mcp_server.py), started over stdio: its tools, calls, failures, a server that
cannot start or dies, and closing; and the [mcp.NAME] tables of the config.

The Toolbox and the loop are another branch's (issue 17): these tests work at the Tool level
(`run(arguments, stop)`), which is what the Toolbox calls.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from chatcli.base.errors import ConfigError
from chatcli.base.log import logging_to
from chatcli.base.secrets import know
from chatcli.config.settings import load_config
from chatcli.tools.base import ToolFailed
from chatcli.tools.mcp import McpServers, content_text, expand, named_servers
from tests.support.keys import TEST_KEY
from tests.support.running import make_env

REPO = Path(__file__).resolve().parent.parent


def server_table(*options: str, **extra: Any) -> dict[str, Any]:
    """An [mcp.NAME] table that runs the test server with this Python."""
    return {"command": sys.executable, "args": ["-m", "tests.support.mcp_server", *options],
            "env": {"PYTHONPATH": str(REPO)}, **extra}


class Said:
    """What the servers said to the user (the front end's notice), in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, line: str) -> None:
        with self.changed:
            self.lines.append(line)
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 10) -> str:
        with self.changed:
            self.changed.wait_for(lambda: any(text in line for line in self.lines), timeout)
        found = [line for line in self.lines if text in line]
        assert found, f"nothing said {text!r}; said: {self.lines}"
        return found[0]


def gone(pid: int) -> bool:
    """The process is gone and reaped: not even a zombie holds its pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_until(check, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[McpServers, Said]]:
    """One server for the tests that leave it running (a start costs a Python and the SDK's import)."""
    said = Said()
    with McpServers({"t": server_table()}, say=said) as servers:
        servers.start(["t.*"])
        yield servers, said


def tool(servers: McpServers, name: str):
    return {t.name: t for t in servers.tools(["t"])}[name]


NO_STOP = threading.Event()


# --------------------------------------------------------------------------- #
# a server that starts: its tools and their calls
# --------------------------------------------------------------------------- #


@pytest.mark.server
def test_a_servers_tools_are_listed_as_name_dot_tool_with_their_schemas_and_they_ask(shared) -> None:
    servers, said = shared
    tools = {t.name: t for t in servers.tools(["t"])}
    assert {"t.echo", "t.add", "t.broken", "t.slow", "t.noisy", "t.die", "t.styled", "t.environment"} <= set(tools)
    echo = tools["t.echo"]
    assert echo.description == "Echo the text back, with a prefix."  # its first line only
    assert echo.parameters["type"] == "object"
    assert echo.parameters["required"] == ["text"]
    assert echo.parameters["properties"]["times"]["type"] == "integer"
    assert all(t.asks for t in tools.values())  # an MCP tool asks by default
    assert tools["t.styled"].description == "Red and bold."  # a server's escape sequences are not passed on
    assert said.lines == []


@pytest.mark.server
def test_a_call_returns_the_tools_text(shared) -> None:
    servers, _ = shared
    assert tool(servers, "t.echo").run({"text": "hi", "times": 2}, NO_STOP) == "echo: hi echo: hi"
    assert tool(servers, "t.add").run({"a": 2, "b": 40}, NO_STOP) == "42"


@pytest.mark.server
def test_a_failing_tool_is_a_tool_failure_with_the_servers_message(shared) -> None:
    servers, said = shared
    with pytest.raises(ToolFailed) as failed:
        tool(servers, "t.broken").run({"reason": "the disk is full"}, NO_STOP)
    assert str(failed.value).startswith("t.broken failed: ")
    assert "broken on purpose: the disk is full" in str(failed.value)
    assert tool(servers, "t.add").run({"a": 1, "b": 1}, NO_STOP) == "2"  # and the server goes on
    assert said.lines == []


@pytest.mark.server
def test_a_servers_stderr_goes_to_the_log_not_the_terminal(shared, capfd, caplog) -> None:
    servers, _ = shared
    with caplog.at_level(logging.INFO, logger="chatcli.mcp"):
        text = tool(servers, "t.noisy").run({}, NO_STOP)
        assert wait_until(lambda: "a line on the server's stderr" in caplog.text, 5)
    assert text.startswith("\x1b[31mred")  # the model gets the text as it is; the caller gates what is shown
    out, err = capfd.readouterr()
    assert "server's stderr" not in out + err


@pytest.mark.server
def test_stop_cancels_a_running_call_at_once_and_the_server_is_told(shared, caplog) -> None:
    servers, _ = shared
    slow = tool(servers, "t.slow")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    with caplog.at_level(logging.INFO, logger="chatcli.mcp"):
        with pytest.raises(ToolFailed, match="t.slow was cancelled"):
            slow.run({"seconds": 30}, stop)
        assert time.monotonic() - began < 3
        assert wait_until(lambda: "slow(30.0) was cancelled by the client" in caplog.text, 5)
    assert tool(servers, "t.echo").run({"text": "still here"}, NO_STOP) == "echo: still here"


@pytest.mark.server
def test_a_call_past_the_servers_timeout_fails_with_a_sentence() -> None:
    said = Said()
    with McpServers({"t": server_table(timeout=2)}, say=said) as servers:
        servers.start(["t.slow"])
        slow = {t.name: t for t in servers.tools()}["t.slow"]
        began = time.monotonic()
        with pytest.raises(ToolFailed) as failed:
            slow.run({"seconds": 30}, NO_STOP)
        assert 1.9 < time.monotonic() - began < 6
        assert str(failed.value) == "t.slow did not answer within 2 seconds."
        assert said.lines == []


@pytest.mark.server
def test_starting_does_not_wait_for_the_server() -> None:
    with McpServers({"t": server_table(), "unused": server_table()}, say=Said()) as servers:
        began = time.monotonic()
        assert servers.start(["t.echo", "read_file"]) == ["t"]  # only the servers the tools name
        assert time.monotonic() - began < 0.2
        assert servers.servers["unused"].pid is None
        assert [t.name for t in servers.tools()] and servers.servers["unused"].pid is None


# --------------------------------------------------------------------------- #
# a server that cannot start, or stops
# --------------------------------------------------------------------------- #


@pytest.mark.server
def test_a_server_that_cannot_start_is_one_sentence_and_has_no_tools(capfd) -> None:
    said = Said()
    specs = {"nothing": {"command": "no-such-mcp-server-anywhere"},
             "quits": server_table("--exit", "3"),
             "mute": server_table("--mute", start_timeout=2)}
    with McpServers(specs, say=said) as servers:
        servers.start(["nothing.*", "quits.*", "mute.*"])
        assert servers.tools() == []
    assert sorted(said.lines) == sorted([
        "The MCP server 'nothing' could not start: there is no command 'no-such-mcp-server-anywhere' "
        "(check command in its [mcp] table); its tools are off.",
        "The MCP server 'quits' could not start: it exited with code 3 (run with -v to see its error output); "
        "its tools are off.",
        "The MCP server 'mute' could not start: it did not answer within 2 seconds; its tools are off.",
    ])
    out, err = capfd.readouterr()
    assert "told to exit" not in out + err and "Traceback" not in out + err  # its stderr went to the log


@pytest.mark.server
def test_a_server_killed_mid_session_is_said_once_and_its_next_call_fails_cleanly(tmp_path: Path, capfd) -> None:
    said = Said()
    pidfile = tmp_path / "pid"
    with McpServers({"t": server_table("--pidfile", str(pidfile))}, say=said) as servers:
        servers.start(["t.*"])
        echo = {t.name: t for t in servers.tools()}["t.echo"]
        assert echo.run({"text": "one"}, NO_STOP) == "echo: one"
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        sentence = said.wait_for("stopped")
        assert sentence == "The MCP server 't' stopped (signal 9); its tools are off."
        with pytest.raises(ToolFailed) as failed:
            echo.run({"text": "two"}, NO_STOP)
        assert str(failed.value) == sentence
        assert servers.tools() == []  # its tools are off
        assert said.lines == [sentence]  # said once
    assert gone(pid)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


@pytest.mark.server
def test_a_server_gets_its_env_but_not_the_api_key_and_its_secrets_stay_out_of_the_log(monkeypatch) -> None:
    token = "tok-3f9a8b7c6d5e4f30"
    write_config(f'[mcp.t]\ncommand = {json.dumps(sys.executable)}\nargs = ["-m", "tests.support.mcp_server"]\n'
                 f'env = {{ "PYTHONPATH" = {json.dumps(str(REPO))}, "SERVICE_TOKEN" = "{token}" }}\n')
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    config = load()
    know(config)
    log = io.StringIO()
    try:
        with logging_to(log, verbose=True, log_file=None, secret=config.api_key), \
                McpServers(config.mcp, say=Said()) as servers:
            servers.start(["t.environment"])
            environment = {t.name: t for t in servers.tools()}["t.environment"]
            assert environment.run({"name": "SERVICE_TOKEN"}, NO_STOP) == token
            assert environment.run({"name": "OPENAI_API_KEY"}, NO_STOP) == "(unset)"
            assert wait_until(lambda: "OPENAI_API_KEY=(unset)" in log.getvalue(), 5)
    finally:
        know(load_config(make_env(environ={})))
    assert "MCP server t: SERVICE_TOKEN=***" in log.getvalue()
    assert token not in log.getvalue()


@pytest.mark.server
def test_a_server_that_exits_during_a_call_says_its_exit_code() -> None:
    said = Said()
    with McpServers({"t": server_table()}, say=said) as servers:
        servers.start(["t.die"])
        die = {t.name: t for t in servers.tools()}["t.die"]
        with pytest.raises(ToolFailed) as failed:
            die.run({"code": 4}, NO_STOP)
        assert str(failed.value) == "The MCP server 't' stopped (exit code 4); its tools are off."
        assert said.lines == [str(failed.value)]


@pytest.mark.server
def test_closing_leaves_no_process_behind(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    said = Said()
    servers = McpServers({"closing": server_table("--pidfile", str(pidfile))}, say=said)
    servers.start(["closing.*"])
    assert servers.tools()
    pid = int(pidfile.read_text())
    assert not gone(pid)
    began = time.monotonic()
    servers.close()
    assert time.monotonic() - began < 5
    assert gone(pid)  # ended and reaped: no zombie
    assert not any(t.name.startswith("mcp-closing") for t in threading.enumerate())
    assert said.lines == []  # closing is not a server stopping


# --------------------------------------------------------------------------- #
# names, content, config
# --------------------------------------------------------------------------- #


@pytest.mark.unit
def test_the_enabled_names_reach_their_servers_and_a_star_becomes_its_tools() -> None:
    assert named_servers(["files.read", "git.*", "read_file", "web.x"], ["files", "git", "other"]) == ["files", "git"]
    assert expand({"files.*", "read_file", "git.log"}, ["files.read", "files.write", "git.log", "git.diff"]) == \
        {"files.read", "files.write", "read_file", "git.log"}


@pytest.mark.unit
def test_content_that_is_not_text_is_described_in_brackets() -> None:
    from mcp.types import BlobResourceContents, EmbeddedResource, ImageContent, TextContent, TextResourceContents

    content = [TextContent(type="text", text="a chart:"),
               ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
               EmbeddedResource(type="resource", resource=TextResourceContents(uri="file:///a.txt", text="inside")),
               EmbeddedResource(type="resource", resource=BlobResourceContents(uri="file:///b.bin", blob="AAAA",
                                                                               mime_type="application/zip"))]
    assert content_text(content) == \
        "a chart:\n[image, image/png, 8 bytes, not shown]\ninside\n[resource file:///b.bin, application/zip]"
    assert content_text([], {"temperature": 21}) == '{"temperature": 21}'


def write_config(text: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(**flags: Any):
    return load_config(make_env(environ=dict(os.environ)), flags=flags)


@pytest.mark.unit
def test_mcp_tables_are_read_with_cwd_beside_the_config_file() -> None:
    path = write_config('[mcp.files]\ncommand = "npx"\nargs = ["-y", "server-filesystem", "."]\n'
                        'env = { "TOKEN" = "s3cret-token" }\ncwd = "servers"\ntimeout = 5\nstart_timeout = 9\n\n'
                        '[mcp.git]\ncommand = "uvx"\n')
    config = load()
    assert config.mcp == {
        "files": {"command": "npx", "args": ("-y", "server-filesystem", "."), "env": {"TOKEN": "s3cret-token"},
                  "cwd": str(path.parent / "servers"), "timeout": 5.0, "start_timeout": 9.0},
        "git": {"command": "uvx", "args": (), "env": {}},
    }
    assert "s3cret-token" not in repr(config)  # a server's env may hold a credential


@pytest.mark.unit
@pytest.mark.parametrize("table, said", [
    ('[mcp."a.b"]\ncommand = "x"', "the MCP server name 'a.b' must be letters, digits, '-' and '_'"),
    ("[mcp.files]\nargs = []", "'command' of [mcp.files]"),
    ('[mcp.files]\ncommand = "x"\nargs = "--root ."', "'args' of [mcp.files]"),
    ('[mcp.files]\ncommand = "x"\nenv = { "N" = 1 }', "'env' of [mcp.files]"),
    ('[mcp.files]\ncommand = "x"\ntimeout = 0', "'timeout' of [mcp.files]"),
    ('[mcp.files]\ncommand = "x"\ncmd = "y"', "unknown key 'cmd'; known: command, args, env, cwd, timeout, start_timeout"),
    ('mcp = "files"', "'mcp' must hold tables"),
])
def test_a_bad_mcp_table_is_a_config_error_naming_it(table: str, said: str) -> None:
    write_config(table + "\n")
    with pytest.raises(ConfigError) as error:
        load()
    assert said in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.unit
def test_a_profiles_mcp_servers_add_to_the_files() -> None:
    write_config('[mcp.files]\ncommand = "a"\n\n[profiles.work.mcp.jira]\ncommand = "b"\n')
    assert set(load().mcp) == {"files"}
    assert set(load(profile="work").mcp) == {"files", "jira"}


@pytest.mark.server
def test_config_show_lists_the_servers_without_their_envs_values(run_chatcli) -> None:
    write_config('[mcp.files]\ncommand = "npx"\nargs = ["-y", "fs"]\nenv = { "TOKEN" = "s3cret-token" }\n')
    shown = run_chatcli("config", "show")
    assert shown.returncode == 0
    assert '[mcp.files] command = "npx", args = ["-y", "fs"], env = { "TOKEN" = "***" }' in shown.stdout
    assert "s3cret-token" not in shown.stdout + shown.stderr


@pytest.mark.server
def test_closing_a_server_still_starting_waits_for_it_and_leaves_no_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    said = Said()
    servers = McpServers({"early": server_table("--pidfile", str(pidfile))}, say=said)
    servers.start(["early.*"])
    servers.close()  # before it could answer
    assert wait_until(pidfile.exists, 5)
    assert gone(int(pidfile.read_text()))
    assert servers.tools() == [] and said.lines == []
