"""The Toolbox: the tools a session has, which are on, and running one call of the model's.

Everything between "the model asked for this" and "this text goes back to it" is here, so the
loop in core stays a loop: the arguments parsed and checked against the tool's schema, whether
to ask first, the approver's answer, the run in a worker thread with a timeout, and the result
cut to a token budget. Every way a call can end is a ToolResult; none raises.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Callable

from chatcli.base.errors import Terminated
from chatcli.base.events import ToolCall
from chatcli.tools.base import (
    CANCELLED,
    DENIED,
    DENIED_BY_POLICY,
    FAILED,
    OK,
    TIMED_OUT,
    Approver,
    Tool,
    ToolFailed,
    ToolResult,
)

# OpenAI's rule for a function's name; an MCP tool's NAME.tool goes on the wire as NAME__tool.
WIRE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Tools that ask every time: neither tool_ask nor /tools allow can let them run unasked, only
# "always this exact command" and --yes.
ALWAYS_ASKS = frozenset({"shell"})
# Characters per token when cutting a result: tools/ may not count with tiktoken, and a result
# a little over its budget does no harm.
CHARS_PER_TOKEN = 4


def wire_name(name: str) -> str:
    """The name a tool goes under in a request: NAME.tool (an MCP server's) as NAME__tool."""
    wired = name.replace(".", "__")
    return wired if WIRE_NAME.fullmatch(wired) else re.sub(r"[^a-zA-Z0-9_-]", "_", wired)[:64]


def truncated(text: str, tokens: int) -> tuple[str, bool]:
    """The text cut to about `tokens` tokens, saying so inside it for the model."""
    limit = max(tokens, 1) * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text, False
    return (text[:limit] + f"\n[cut: the result was {len(text):,} characters; only the first {limit:,} are "
            "shown (tool_result_tokens)]"), True


class Toolbox:
    """The session's tools: all it knows (`tools`, by name), those on (`enabled`), those that ask
    although read-only (`ask`, or "all"), and what the user allowed for the session."""

    def __init__(self, tools: list[Tool] | Callable[[], list[Tool]], *, enabled: set[str],
                 ask: set[str] | None = None, result_tokens: int = 4000, timeout: float = 30.0,
                 later: Callable[[], list[Tool]] | None = None) -> None:
        # A callable: the tools are made when first needed (/tools, a tool turned on), not at start.
        self._make = tools if callable(tools) else None
        self._tools: dict[str, Tool] = {} if callable(tools) else {tool.name: tool for tool in tools}
        self.enabled = {name for name in enabled if name in self.tools} if enabled else set()
        # Tools known only once their MCP servers answer: taken in when first needed (a request's
        # specs, a call), so the prompt never waits for a server; NAME.* takes all of NAME's.
        self._later, self.wanted = later, set(enabled)
        self.ask = set(ask or ())
        self.allowed: set[str] = set()  # /tools allow NAME: runs without asking this session
        self.allowed_calls: set[tuple[str, str]] = set()  # "always": this exact call, this session
        self.result_tokens = result_tokens
        self.timeout = timeout

    @property
    def tools(self) -> dict[str, Tool]:
        """Every tool the box knows, by name."""
        if self._make is not None:
            make, self._make = self._make, None
            self._tools.update({tool.name: tool for tool in make()})
        return self._tools

    def take_later(self) -> None:
        """Take in the tools of the MCP servers (waiting for those still starting), once."""
        if self._later is None:
            return
        later, self._later = self._later, None
        arrived = later()
        self.tools.update({tool.name: tool for tool in arrived})
        names = [tool.name for tool in arrived]
        servers = {name[:-2] for name in self.wanted if name.endswith(".*")}
        self.enabled |= {n for n in names if n in self.wanted or n.split(".", 1)[0] in servers}

    def by_wire(self, name: str) -> Tool | None:
        """The enabled tool a call names, by its wire name or its own."""
        self.take_later()
        for tool_name in self.enabled:
            if name in (tool_name, wire_name(tool_name)):
                return self.tools[tool_name]
        return None

    def specs(self) -> list[dict[str, Any]]:
        """The request's `tools`: the enabled ones, in a stable order (not those of an MCP server that
        could not start or stopped)."""
        self.take_later()
        return [{"type": "function", "function": {"name": wire_name(tool.name), "description": tool.description,
                                                  "parameters": tool.parameters}}
                for tool in (self.tools[name] for name in sorted(self.enabled))
                if getattr(tool, "available", True)]

    def asks(self, tool: Tool) -> bool:
        """Whether a call of the tool asks before it runs (before any "always" answer)."""
        if tool.name in ALWAYS_ASKS:
            return True
        if tool.name in self.allowed:
            return False
        return tool.asks or tool.name in self.ask or "all" in self.ask

    def run(self, call: ToolCall, approver: Approver, stop: threading.Event | None = None) -> ToolResult:
        """Run one call as the model made it; every end (bad arguments, a refusal, a timeout,
        Ctrl-C, the tool's own failure) is a result to send back. SIGTERM is raised."""
        stop = stop or threading.Event()
        tool = self.by_wire(call.name)
        if tool is None:
            return ToolResult(call, FAILED, f"There is no tool named {call.name!r}; use only the tools given.")
        shown = ToolCall(call.id, tool.name, call.arguments)  # users always see NAME.tool
        arguments, problem = parse_arguments(call.arguments, tool.parameters)
        if problem is not None:
            return ToolResult(shown, FAILED, problem)
        key = (tool.name, canonical(arguments))
        if self.asks(tool) and key not in self.allowed_calls:
            if approver is None:
                note = (f"{tool.name} was not run: it asks before running, and there is no terminal to ask on "
                        "(use --yes to allow it).")
                return ToolResult(shown, DENIED, DENIED_BY_POLICY, notes=[note])
            try:
                approval = approver(shown, tool, arguments)
            except Terminated:
                raise
            except KeyboardInterrupt:
                return ToolResult(shown, DENIED, "denied by the user")
            if approval.answer == "no":
                return ToolResult(shown, DENIED, "denied by the user")
            if approval.arguments is not None:  # edited: checked again, and shown as run
                arguments, problem = parse_arguments(json.dumps(approval.arguments), tool.parameters)
                if problem is not None:
                    return ToolResult(shown, FAILED, problem)
                shown = ToolCall(call.id, tool.name, json.dumps(arguments, ensure_ascii=False))
            if approval.answer == "always":
                self.allowed_calls.add((tool.name, canonical(arguments)))
        return self._run(shown, tool, arguments, stop)

    def _run(self, call: ToolCall, tool: Tool, arguments: dict[str, Any], stop: threading.Event) -> ToolResult:
        """The tool run in a worker thread, waited for in short steps so Ctrl-C is heard at once."""
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["text"] = tool.run(arguments, stop)
            except ToolFailed as exc:
                outcome["failed"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a tool's bug is the model's error result, not a crash
                outcome["failed"] = f"The tool {tool.name} failed ({type(exc).__name__})."

        started = time.monotonic()
        worker = threading.Thread(target=work, name=f"tool {tool.name}", daemon=True)
        worker.start()
        try:
            while worker.is_alive() and time.monotonic() - started < self.timeout:
                worker.join(min(0.05, max(self.timeout - (time.monotonic() - started), 0.001)))
        except Terminated:
            stop.set()
            raise
        except KeyboardInterrupt:
            stop.set()
            return ToolResult(call, CANCELLED, "cancelled by the user (Ctrl-C)", time.monotonic() - started)
        seconds = time.monotonic() - started
        if worker.is_alive():
            stop.set()
            return ToolResult(call, TIMED_OUT, f"The tool did not finish within {self.timeout:g} seconds, so it "
                              "was stopped.", seconds)
        if "failed" in outcome:
            return ToolResult(call, FAILED, outcome["failed"], seconds)
        text, cut = truncated(str(outcome.get("text", "")), self.result_tokens)
        return ToolResult(call, OK, text, seconds, truncated=cut)


def canonical(arguments: dict[str, Any]) -> str:
    """Arguments as one string, the same for the same call however the model spaced them."""
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def parse_arguments(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The arguments as the model wrote them, parsed and checked: (them, None) or ({}, the problem,
    as a sentence for the model to correct)."""
    from jsonschema import Draft202012Validator  # lazy: off the startup path

    try:
        arguments = json.loads(text) if text.strip() else {}
    except (json.JSONDecodeError, RecursionError) as exc:
        return {}, f"The arguments are not valid JSON ({exc.msg if hasattr(exc, 'msg') else 'too deep'}); send a JSON object."
    if not isinstance(arguments, dict):
        return {}, "The arguments must be a JSON object."
    error = next(iter(sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.path)
        return {}, f"The arguments do not match the tool's schema{f' at {where}' if where else ''}: {error.message}."
    return arguments, None
