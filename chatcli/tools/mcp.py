"""MCP servers as tools: each [mcp.NAME] table starts a Model Context Protocol server over stdio
with the official SDK, and each tool it lists becomes a Tool named NAME.tool that asks before it
runs (a server's tools can do anything; nothing says which are read-only).

chatcli is synchronous and the SDK is asyncio: each server lives in a thread of its own, with its
own event loop, started in the background so the prompt does not wait for it; a call crosses
over with run_coroutine_threadsafe. A server that cannot start or stops is one sentence (`say`)
and its tools go off; the chat goes on. Its stderr goes to the -v log, never to the terminal.
This is the only module that imports `mcp` (an import-linter contract says so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from chatcli.base.text import strip_controls
from chatcli.tools.base import ToolFailed

log = logging.getLogger("chatcli.mcp")

START_TIMEOUT = 30.0  # seconds for a server to start and answer the handshake, unless its table says start_timeout
CALL_TIMEOUT = 60.0  # seconds for one call, unless its table says timeout; the Toolbox has its own too
CLOSE_TIMEOUT = 6.0  # the SDK closes stdin, waits 2 s, then SIGTERM and SIGKILL, 2 s each at most
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what survives the wire (OpenAI's function names) as NAME.tool
DESCRIPTION_CHARS = 300


@dataclass(frozen=True)
class ServerSpec:
    """One [mcp.NAME] table, checked (config/table.py read_mcp_table)."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # added to the few variables the SDK passes on
    cwd: str | None = None
    timeout: float = CALL_TIMEOUT  # for each call
    start_timeout: float = START_TIMEOUT  # to start and answer the handshake

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> ServerSpec:
        return cls(name, table["command"], tuple(table.get("args", ())), dict(table.get("env", {})),
                   table.get("cwd"), table.get("timeout", CALL_TIMEOUT), table.get("start_timeout", START_TIMEOUT))


def named_servers(enabled: Iterable[str], configured: Iterable[str]) -> list[str]:
    """The configured servers the enabled tool names reach: `files.read` and `files.*` name `files`."""
    wanted = {name.split(".", 1)[0] for name in enabled if "." in name}
    return [name for name in configured if name in wanted]


def expand(enabled: Iterable[str], tools: Iterable[str]) -> set[str]:
    """The enabled names with each `NAME.*` replaced by that server's tools, as listed."""
    enabled = set(enabled)
    servers = {name[:-2] for name in enabled if name.endswith(".*")}
    listed = {tool for tool in tools if tool.split(".", 1)[0] in servers}
    return {name for name in enabled if not name.endswith(".*")} | listed


@dataclass
class McpTool:
    """One of a server's tools, as chatcli's Tool: it asks by default, and runs on the server."""

    name: str  # NAME.tool, as the user sees it
    description: str
    parameters: dict[str, Any]
    server: McpServer
    remote: str  # the tool's own name on its server
    asks: bool = True

    @property
    def available(self) -> bool:
        """False once its server could not start or stopped: its tools are off."""
        return self.server.live

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        return self.server.call(self.remote, arguments, stop)


class McpServer:
    """One server: its thread and loop, its session once ready, and how it ended."""

    def __init__(self, spec: ServerSpec, *, say: Callable[[str], None]) -> None:
        self.spec = spec
        self.say = say
        self.tools: list[McpTool] = []
        self.failure: str | None = None  # the sentence, once it could not start or stopped
        self.pid: int | None = None
        self._ready = threading.Event()  # set once it answered (tools listed) or failed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._session: Any = None
        self._process: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._said = threading.Lock()

    @property
    def live(self) -> bool:
        return self._ready.is_set() and self.failure is None and not self._closed

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start in the background; `wait` is where someone first needs the answer."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=f"mcp-{self.spec.name}", daemon=True)
            self._thread.start()

    def wait(self, stop: threading.Event | None = None) -> list[McpTool]:
        """Its tools, once it answered (or none, if it could not start within its timeout, or
        `stop` was set first)."""
        self.start()
        timeout = self.spec.start_timeout
        deadline = time.monotonic() + timeout + 1.0  # the thread itself gives up at `timeout`
        while not self._ready.wait(0.05):
            if stop is not None and stop.is_set():
                return []
            if time.monotonic() > deadline:
                self._fail(f"it did not answer within {_seconds(timeout)}")
        return self.tools if self.live else []

    def call(self, tool: str, arguments: dict[str, Any], stop: threading.Event) -> str:
        """The tool's text, or ToolFailed with a sentence; returns soon after `stop` is set."""
        self.wait(stop)
        if stop.is_set():
            raise ToolFailed(f"{self.spec.name}.{tool} was cancelled.")
        loop, session = self._loop, self._session
        if not self.live or loop is None or session is None:
            raise ToolFailed(self.failure or f"The MCP server '{self.spec.name}' is closed.")
        future = asyncio.run_coroutine_threadsafe(session.call_tool(tool, arguments), loop)
        limit = self.spec.timeout
        deadline = time.monotonic() + limit
        while not future.done():
            if stop.is_set() or time.monotonic() > deadline:
                future.cancel()  # the SDK tells the server the request is cancelled
                if stop.is_set():
                    raise ToolFailed(f"{self.spec.name}.{tool} was cancelled.")
                raise ToolFailed(f"{self.spec.name}.{tool} did not answer within {_seconds(limit)}.")
            stop.wait(0.02)
        return self._result(tool, future)

    def close(self) -> None:
        """Stop the server (the SDK closes its stdin, then terminates its process group) and
        wait for the thread, so no process is left behind."""
        self._closed = True
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(closing.set)
            except RuntimeError:  # the loop ended in between
                pass
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)

    # -- the thread -------------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - the thread's edge: a sentence, never a traceback
            log.info("MCP server %s: %s: %s", self.spec.name, type(exc).__name__, exc)
            if self._ready.is_set():
                self._stopped(getattr(self._process, "returncode", None))
            else:
                self._fail(_start_reason(exc))
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        from mcp import ClientSession, StdioServerParameters, stdio_client  # lazy: the SDK takes ~0.5 s to import

        _route_sdk_log()
        self._closing = asyncio.Event()
        spec = self.spec
        params = StdioServerParameters(command=spec.command, args=list(spec.args), env=dict(spec.env) or None,
                                       cwd=spec.cwd)
        read_fd, write_fd = os.pipe()
        threading.Thread(target=_log_stderr, args=(spec.name, read_fd), name=f"mcp-{spec.name}-stderr",
                         daemon=True).start()
        errlog = os.fdopen(write_fd, "w")
        transport = stdio_client(params, errlog=errlog)
        try:
            streams = await transport.__aenter__()
        finally:
            errlog.close()  # the child has its copy; the reader sees EOF when the server is gone
        try:
            self._process = _process_of(transport)
            self.pid = getattr(self._process, "pid", None)
            async with ClientSession(*streams) as session:
                await self._handshake(session)
                if self.failure is None:
                    await self._watch()
        finally:
            await transport.__aexit__(None, None, None)

    async def _handshake(self, session: Any) -> None:
        timeout = self.spec.start_timeout
        try:
            await asyncio.wait_for(session.initialize(), timeout)
            listed = await asyncio.wait_for(_all_tools(session), timeout)
        except asyncio.TimeoutError:
            self._fail(f"it did not answer within {_seconds(timeout)}")
            return
        except Exception as exc:  # noqa: BLE001 - the SDK's errors vary: MCPError, a closed stream
            log.info("MCP server %s: handshake failed: %s: %s", self.spec.name, type(exc).__name__, exc)
            code = await self._exit_code()
            self._fail(f"it exited with code {code} (run with -v to see its error output)" if code is not None
                       else f"it did not complete the handshake ({_one_line(str(exc)) or type(exc).__name__})")
            return
        self.tools = [tool for tool in (self._tool(item) for item in listed) if tool is not None]
        self._session = session
        log.info("MCP server %s started (pid %s) with %d tools: %s", self.spec.name, self.pid, len(self.tools),
                 ", ".join(t.name for t in self.tools))
        self._ready.set()

    async def _watch(self) -> None:
        """Until chatcli closes it: a server that exits is said once, and its tools go off."""
        assert self._closing is not None
        while not (self._closing.is_set() or self._closed):  # closed before its loop could be told
            try:
                await asyncio.wait_for(self._closing.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
            code = getattr(self._process, "returncode", None)
            if code is not None and not self._closing.is_set():
                self._stopped(code)
                return

    def _stopped(self, code: int | None) -> None:
        """It stopped after it started: one sentence, said once (the watcher and a call may both see it)."""
        with self._said:
            if self.failure is not None or self._closed:
                return
            how = f" (exit code {code})" if code is not None and code >= 0 else \
                f" (signal {-code})" if code is not None else ""
            self.failure = f"The MCP server '{self.spec.name}' stopped{how}; its tools are off."
        log.info("%s", self.failure)
        self.say(self.failure)

    def _fail(self, reason: str) -> None:
        """It could not start: one sentence, said once."""
        with self._said:
            said = self.failure is None and not self._closed
            if said:
                self.failure = f"The MCP server '{self.spec.name}' could not start: {reason}; its tools are off."
        self._ready.set()
        if said:
            log.info("%s", self.failure)
            self.say(self.failure)

    async def _exit_code(self) -> int | None:
        """The exit code of a server that is ending, after a moment for the loop to see it."""
        for _ in range(100):
            code = getattr(self._process, "returncode", None)
            if code is not None or self._process is None:
                return code
            await asyncio.sleep(0.02)
        return None

    def _ended(self) -> int | None:
        """After a failed call: the exit code if the server is gone (a moment for the loop to see it)."""
        for _ in range(25 if self._process is not None else 0):
            if self._process.returncode is not None:
                return self._process.returncode
            time.sleep(0.02)
        return None

    def _tool(self, item: Any) -> McpTool | None:
        if not TOOL_NAME.fullmatch(item.name or ""):
            log.info("MCP server %s: tool %r skipped: its name is not letters, digits, '_' and '-'",
                     self.spec.name, item.name)
            return None
        schema = item.input_schema if isinstance(item.input_schema, dict) else {}
        schema = schema if schema.get("type") == "object" else {"type": "object", "properties": {}}
        return McpTool(f"{self.spec.name}.{item.name}", _one_line(item.description or item.title or ""), schema,
                       self, item.name)

    def _result(self, tool: str, future: Future) -> str:
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - MCPError, a closed connection, a cancelled future
            code = self._ended()
            if code is not None:
                self._stopped(code)
            if self.failure:
                raise ToolFailed(self.failure) from None
            raise ToolFailed(f"{self.spec.name}.{tool} failed: {_one_line(str(exc)) or type(exc).__name__}.") from None
        text = content_text(result.content, getattr(result, "structured_content", None))
        if result.is_error:
            raise ToolFailed(f"{self.spec.name}.{tool} failed: {strip_controls(text).strip() or 'no reason given'}")
        return text


def content_text(content: Iterable[Any], structured: Any = None) -> str:
    """A result's content as text for the model: text as it is, anything else described in brackets."""
    parts = []
    for item in content or ():
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind in ("image", "audio"):
            size = len(item.data) * 3 // 4 - item.data[-2:].count("=")  # base64
            parts.append(f"[{kind}, {item.mime_type}, {size:,} bytes, not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {item.uri}]")
        elif kind == "resource":
            resource = item.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {resource.uri}, {resource.mime_type or 'binary'}]")
        else:
            parts.append(f"[{kind or 'unknown'} content]")
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


class McpServers:
    """The configured servers: started when first named, their tools, and closing them all."""

    def __init__(self, specs: Mapping[str, Mapping[str, Any]], *, say: Callable[[str], None]) -> None:
        self.servers = {name: McpServer(ServerSpec.from_table(name, table), say=say) for name, table in specs.items()}

    def start(self, enabled: Iterable[str]) -> list[str]:
        """Start, in the background, the servers the enabled tool names reach; their names."""
        names = named_servers(enabled, self.servers)
        for name in names:
            self.servers[name].start()
        return names

    def tools(self, names: Iterable[str] | None = None) -> list[McpTool]:
        """The tools of the named (or all started) servers, waiting for those still starting."""
        chosen = [self.servers[n] for n in names] if names is not None else \
            [s for s in self.servers.values() if s.started]
        return [tool for server in chosen for tool in server.wait()]

    def close(self) -> None:
        for server in self.servers.values():
            server.close()

    def __enter__(self) -> McpServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _all_tools(session: Any) -> list[Any]:
    """Every page of tools/list."""
    from mcp.types import PaginatedRequestParams  # lazy: the SDK, only once a server is running

    listed, cursor = [], None
    while True:
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        listed.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return listed


def _process_of(transport: Any) -> Any:
    """The server's process, for its exit code: stdio_client does not hand it out, so it is read
    from the suspended generator's locals. Without it (another SDK version), a stop is still
    seen, through the next call, only without the code."""
    frame = getattr(getattr(transport, "gen", None), "ag_frame", None)
    return frame.f_locals.get("process") if frame is not None else None


def _log_stderr(name: str, fd: int) -> None:
    """The server's stderr, a line at a time, to the -v log (redacted there like every line)."""
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.strip():
                log.info("MCP server %s: %s", name, strip_controls(line.rstrip()))


class _ToChatcliLog(logging.Handler):
    """The SDK's own records, to chatcli's log: without a handler, Python's last resort would print
    its warnings (with tracebacks) on the terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        log.info("mcp SDK: %s", strip_controls(record.getMessage()))


def _route_sdk_log() -> None:
    sdk = logging.getLogger("mcp")
    if not any(isinstance(h, _ToChatcliLog) for h in sdk.handlers):
        sdk.addHandler(_ToChatcliLog())
        sdk.propagate = False


def _start_reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"there is no command {exc.filename or ''!r} (check command in its [mcp] table)".replace(" ''", "")
    if isinstance(exc, PermissionError):
        return f"the command {exc.filename or ''!r} cannot be run (permission denied)"
    if isinstance(exc, NotADirectoryError) or (isinstance(exc, OSError) and exc.errno == 2):
        return f"{exc.strerror or exc} (check command and cwd in its [mcp] table)"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    """The first non-empty line, without control characters, not too long."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = strip_controls(line)
    return line if len(line) <= DESCRIPTION_CHARS else line[: DESCRIPTION_CHARS - 1] + "…"


def _seconds(value: float) -> str:
    return f"{value:g} second{'s' if value != 1 else ''}"
