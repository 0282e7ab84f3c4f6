"""A batch row as a request: the chat-completions body every row shares (model, system prompt,
parameters, --schema's response_format), with the row's messages in it.

The same body goes to the Batch API (a line of its request file) and to the local runner, so a
row costs and answers the same whichever way it runs, and its hash says whether a finished row
is the one being asked for again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from chatcli.base.digest import json_sha256
from chatcli.base.pii import scrub_content
from chatcli.batch.inputs import Row

# How a row's reply is checked (--schema): (reply, finish_reason) -> why it fails, or None when it passes.
ReplyCheck = Callable[[str, "str | None"], "str | None"]


@dataclass(frozen=True)
class Spec:
    """What every row of a job is sent with: as a one-shot ask would be, from the config, profile and flags."""

    model: str
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # wire parameters: temperature, max_tokens, -o NAME VALUE
    response_format: dict[str, Any] | None = None  # --schema's
    redact: tuple[str, ...] = ()  # config redact: the kinds of personal data scrubbed from every message

    def record(self) -> dict[str, Any]:
        """The spec as JSON, kept with the job."""
        return {"model": self.model, "system": self.system, "params": self.params,
                "response_format": self.response_format, **({"redact": list(self.redact)} if self.redact else {})}


def messages_of(row: Row, spec: Spec) -> list[dict[str, Any]]:
    """The row's messages: its own (the spec's system prompt first unless they have one), or its prompt;
    scrubbed of the spec's kinds of personal data, so what is kept, uploaded and sent is the same."""
    messages = _messages(row, spec)
    if not spec.redact:
        return messages
    return [{**m, "content": scrub_content(m.get("content"), spec.redact)} for m in messages]


def _messages(row: Row, spec: Spec) -> list[dict[str, Any]]:
    if row.messages:
        own = list(row.messages)
        has_system = any(m.get("role") in ("system", "developer") for m in own)
        return own if has_system or not spec.system else [{"role": "system", "content": spec.system}, *own]
    head = [{"role": "system", "content": spec.system}] if spec.system else []
    return [*head, {"role": "user", "content": row.prompt or ""}]


def body_of(row: Row, spec: Spec) -> dict[str, Any]:
    """The row's whole chat-completions body (not streamed: the Batch API takes no stream)."""
    body: dict[str, Any] = {"model": spec.model, "messages": messages_of(row, spec), **spec.params}
    if spec.response_format is not None:
        body["response_format"] = spec.response_format
    return body


def bodies_of(rows: list[Row], spec: Spec) -> list[tuple[str, dict[str, Any], str]]:
    """Each row as a job keeps it: its id, its body, and the body's hash (the same request, whatever
    order its keys were built in), which tells a finished row asked again from one whose request changed."""
    return [(row.id, body, json_sha256(body)) for row in rows for body in (body_of(row, spec),)]


def job_key(server: str, spec: Spec, input_name: str) -> str:
    """What finds a job again: the same server, spec and input file (by its real path) make the same job,
    to resume, whichever way it runs."""
    return json_sha256({"server": server, "spec": spec.record(), "input": os.path.realpath(input_name)})
