"""An MCP server written with the official SDK (MCPServer, the SDK's FastMCP), for the tests of
chatcli/tools/mcp.py: run as `python -m tests.support.mcp_server`, it speaks MCP over stdio.

Its tools cover what a client meets: text, a failure with the server's own message, a slow call
(to cancel or time out), and a way to die mid-session. `--exit N` exits at once, before any
handshake; `--mute` never answers the handshake; `--pidfile PATH` writes its pid, so a test can
kill it from outside and check that closing leaves no process behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("chatcli-test")


@server.tool(description="Echo the text back, with a prefix.\nA second line the client should not show.")
def echo(text: str, times: int = 1) -> str:
    return " ".join(f"echo: {text}" for _ in range(times))


@server.tool(description="Add two numbers.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Always fails, with a message of its own.")
def broken(reason: str) -> str:
    raise ToolError(f"broken on purpose: {reason}")


@server.tool(description="Sleeps for the given seconds, then says so.")
async def slow(seconds: float) -> str:
    try:
        await anyio.sleep(seconds)  # async, so a cancelled call ends here too
    except anyio.get_cancelled_exc_class():
        print(f"slow({seconds}) was cancelled by the client", file=sys.stderr, flush=True)
        raise
    return f"slept {seconds}"


@server.tool(description="Writes to stderr, then answers with a control sequence in its text.")
def noisy() -> str:
    print("a line on the server's stderr", file=sys.stderr, flush=True)
    return "\x1b[31mred\x1b[0m and \x1b]0;title\x07 done"


@server.tool(description="\x1b[31mRed\x1b[0m and \x1b[1mbold\x1b[0m.")
def styled() -> str:
    return "styled"


@server.tool(description="The value of an environment variable, also written to stderr.")
def environment(name: str) -> str:
    value = os.environ.get(name, "(unset)")
    print(f"{name}={value}", file=sys.stderr, flush=True)
    return value


@server.tool(description="Exits the server with the given code, mid-call.")
def die(code: int) -> str:
    sys.stdout.flush()
    os._exit(code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--mute", action="store_true")
    parser.add_argument("--pidfile", default=None)
    options = parser.parse_args()
    if options.pidfile:
        with open(options.pidfile, "w") as f:
            f.write(str(os.getpid()))
    if options.exit is not None:
        print("cannot start: told to exit", file=sys.stderr, flush=True)
        sys.exit(options.exit)
    if options.mute:
        time.sleep(600)
        return
    server.run("stdio")


if __name__ == "__main__":
    main()
