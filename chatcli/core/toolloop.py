"""The tool loop: a reply that ends with tool calls has them run, and the model is asked again.

Session.send streams the first reply; when it ends with calls, `ToolLoop.follow` shows each
call as it happens, runs it through the Toolbox with the front end's approver, keeps the
assistant's tool_calls message and one `tool` message per call as the turn's steps, and streams
the next reply into the same turn, up to max_tool_rounds. The steps belong to the turn: /undo
drops them with it, and later requests send them again.
"""

from __future__ import annotations

import json
import threading
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterator

from chatcli.base.errors import ChatError, Terminated
from chatcli.base.events import NO_USAGE, Event, ToolCall, ToolShown, Usage
from chatcli.core.turn import COMPLETE, ERROR, INTERRUPTED, Turn
from chatcli.tools.base import CANCELLED, DENIED, OK, TIMED_OUT, Approver, ToolResult
from chatcli.tools.box import Toolbox

SHOWN_ARGUMENTS = 200  # characters of a call's arguments shown on its line


def schema_tokens(tokenizer: Any, model: str, loop: ToolLoop | None) -> Any:
    """The tokens the enabled tools' schemas add to every request (a Count), or None with none on.
    Counted as the JSON sent: servers render them into the prompt each their own way, near that size."""
    specs = loop.box.specs() if loop is not None else []
    return tokenizer.message(model, "system", json.dumps(specs, ensure_ascii=False)) if specs else None


def steps_tokens(tokenizer: Any, model: str, turn: Turn) -> list[Any]:
    """The tokens of a turn's tool steps as they are sent again (a Count each), for fitting."""
    return [tokenizer.message(model, step["role"], json.dumps(step, ensure_ascii=False)) for step in turn.sent_steps()]


class ToolLoop:
    """A session's tools in use: the Toolbox, who approves what asks, and how many rounds a turn may take."""

    def __init__(self, box: Toolbox, *, approver: Approver, max_rounds: int = 8) -> None:
        self.box = box
        self.approver = approver
        self.max_rounds = max_rounds
        self.servers: Any = None  # the MCP servers its tools run on (tools.mcp.McpServers), closed by app
        self.say: Callable[[str], None] | None = None  # where news of those servers goes; None: to `news`
        self.news: list[str] = []  # that news, for the REPL to say between turns

    def take_news(self) -> list[str]:
        """What the MCP servers had to say since last asked (a server could not start, or stopped)."""
        news, self.news = self.news, []
        return news

    @contextmanager
    def asking_with(self, paused: Callable[[], AbstractContextManager]) -> Iterator[None]:
        """While the front end draws a reply: each question to the approver is asked inside `paused()`
        (the renderer's drawing stopped, so the question has the terminal to itself)."""
        asks = self.approver
        if asks is None:
            yield
            return

        def approve(call: ToolCall, tool: Any, arguments: dict[str, Any]) -> Any:
            with paused():
                return asks(call, tool, arguments)

        self.approver = approve
        try:
            yield
        finally:
            self.approver = asks

    def params(self) -> dict[str, Any]:
        """What a request carries for the tools: their specs, when any are on."""
        specs = self.box.specs()
        return {"tools": specs} if specs else {}

    def follow(self, session: Any, turn: Turn, plan: Any, say: Callable[[Event], None]) -> Terminated | None:
        """Run the calls the turn's reply ended with and stream the next reply, round after round.

        `session` is the Session (not imported: core's modules import one way). Returns the
        SIGTERM to raise once the turn is saved, as Session._stream does."""
        rounds = 0
        while turn.calls and turn.status == COMPLETE:
            if rounds >= self.max_rounds:
                n = len(turn.calls)
                said = (f"stopped after {rounds} round{'s' if rounds != 1 else ''} of tool calls (max_tool_rounds); "
                        f"the model's last {f'{n} calls were' if n > 1 else 'call was'} not run")
                turn.notice = f"{turn.notice}; {said}" if turn.notice else said
                turn.calls = []
                break
            rounds += 1
            try:
                ran = self._run_calls(turn, say)
            except Terminated as exc:  # SIGTERM or SIGHUP: saved as interrupted, then the program ends
                turn.status = INTERRUPTED
                return exc
            if not ran:
                turn.status = INTERRUPTED
                return None
            refusal = _over_budget(session, turn)
            if refusal is not None:  # the calls ran; the next request would pass a cap
                turn.status, turn.error, turn.reply = ERROR, ChatError(refusal), ""
                return None
            before = (turn.usage, turn.reasoning, turn.total_s, turn.first_token_s)
            turn.reply, turn.finish_reason = "", None
            stop = session._stream(turn, plan, session.messages(left_out=turn.left_out), say)
            _carry(turn, *before)
            if stop is not None:
                return stop
        return None

    def _run_calls(self, turn: Turn, say: Callable[[Event], None]) -> bool:
        """Run the turn's pending calls in order, keeping each as a step; False when Ctrl-C cancelled one
        (the calls after it are kept as not run, so every call has its answer)."""
        calls, turn.calls = turn.calls, []
        turn.steps.append({"role": "assistant", "content": turn.reply or None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]})
        turn.reply = ""  # said in the step: the reply is what comes after the calls
        cancelled, done = False, 0
        try:
            for call in calls:
                if cancelled:
                    result = ToolResult(call, CANCELLED, "not run: the user cancelled the tool calls (Ctrl-C)")
                else:
                    say(ToolShown(f"⚙ {_name(self.box, call)} {shown_arguments(call.arguments)}".rstrip()))
                    result = self.box.run(call, self.approver, threading.Event())
                    cancelled = result.status == CANCELLED
                    for line in ended(result):
                        say(ToolShown(line))
                _keep(turn, result)
                done += 1
        finally:  # however it ends (SIGTERM), every call has its answer: the steps are sent again as they are
            for call in calls[done:]:
                _keep(turn, ToolResult(call, CANCELLED, "not run: chatcli was stopped"))
        return not cancelled


def _over_budget(session: Any, turn: Turn) -> str | None:
    """The budget's refusal of the turn's next round, if it would pass a cap: what the rounds so far
    used (not yet in the ledger) and the next request at its worst (its prompt, and the reply's room)."""
    plan = session.plan()
    ahead = Usage(plan.tokens.tokens, plan.reserve, plan.tokens.tokens + plan.reserve)
    try:
        refusal, _ = session.accounts.check_budget(session.model, (turn.usage or NO_USAGE) + ahead)
    except ChatError as exc:  # the ledger cannot be read: no cap can be checked
        return exc.message
    return refusal


def _keep(turn: Turn, result: ToolResult) -> None:
    """A call's result as the turn's step: the `tool` message, and what the user is shown of it."""
    turn.steps.append({"role": "tool", "tool_call_id": result.call.id, "content": result.content, "_shown": {
        "name": result.call.name, "arguments": result.call.arguments, "status": result.status,
        "seconds": round(result.seconds, 3)}})


def _carry(turn: Turn, usage: Any, reasoning: str, total_s: float | None, first: float | None) -> None:
    """What the turn's rounds add up to: their usage, reasoning and time, the first token of the first."""
    if usage is not None:
        turn.usage = usage + (turn.usage or NO_USAGE)
    turn.reasoning = reasoning + turn.reasoning
    turn.total_s = (total_s or 0.0) + (turn.total_s or 0.0)
    turn.first_token_s = first if first is not None else turn.first_token_s


def _name(box: Toolbox, call: ToolCall) -> str:
    tool = box.by_wire(call.name)
    return tool.name if tool is not None else call.name


def shown_arguments(arguments: str) -> str:
    """A call's arguments on its line: key=value pairs (values as JSON), cut short."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except (json.JSONDecodeError, RecursionError):
        parsed = None
    text = (" ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in parsed.items())
            if isinstance(parsed, dict) else arguments)
    return text if len(text) <= SHOWN_ARGUMENTS else text[: SHOWN_ARGUMENTS - 1] + "…"


def ended(result: ToolResult) -> list[str]:
    """The lines that say how a call ended."""
    name, took = result.call.name, f"({result.seconds:.2f}s)"
    if result.status == OK:
        cut = ", cut to the tool_result_tokens budget" if result.truncated else ""
        return [f"✓ {name} {len(result.content):,} characters{cut} {took}"]
    if result.status == DENIED:
        return [f"✗ {name} denied: {result.content}", *(f"chatcli: {note}" for note in result.notes)]
    if result.status == TIMED_OUT:
        return [f"✗ {name} timed out {took}"]
    if result.status == CANCELLED:
        return [f"✗ {name} cancelled {took}"]
    return [f"✗ {name} failed: {result.content} {took}"]
