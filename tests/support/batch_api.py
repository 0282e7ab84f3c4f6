"""OpenAI's Batch API for the test server: ``/v1/files`` and ``/v1/batches``, in its wire format.

    srv.batch_api.timing = Timing(validating=0.05, in_progress=0.2, finalizing=0.05)
    srv.batch_api.fail = {"3": Error(400, "bad row")}  # row "3" fails with this answer
    srv.batch_api.expire_after = 2  # each batch runs 2 rows, then expires

A batch moves ``validating`` → ``in_progress`` → ``finalizing`` → ``completed`` as time passes
(``timing``, in seconds; a test makes it short, or long and then ``retime``). Nothing runs in the background: each request
moves the batches on to where they would be by now. Rows are answered in input order while it
is ``in_progress``, spread over that time so ``request_counts`` climb, each with the server's
usual non-streamed reply (``srv.default``, ``Echo`` at first, or the next scripted behaviour;
an ``Error`` in the script is a failed row). The output file holds the rows that answered 200,
the error file the others, each file's lines shuffled, as OpenAI gives them in no set order.

``expire_after`` makes a batch expire after that many rows: the rest go in the error file with
code ``batch_expired``, as OpenAI does. ``cancel`` moves a batch to ``cancelling``, then (after
``timing.cancelling``) ``cancelled``, with the rows done so far in its files; OpenAI lists no
line for the rows it never ran, and neither does this. ``reject`` fails a batch at validation
(status ``failed``, with ``errors``), as a malformed input file does; a malformed file does too.

The settings are read when a batch is created, so a test may change them for the next one.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tests.support.server import ChatServer, Error

__all__ = ["BatchApi", "Timing", "ENDPOINT", "EXPIRED_MESSAGE"]

ENDPOINT = "/v1/chat/completions"  # the only endpoint this server runs batches for
MAX_REQUESTS = 50_000
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
OPEN = ("validating", "in_progress", "finalizing", "cancelling")
_ROUTE = re.compile(r"(?:/v1)?/(files|batches)(?:/([^/]+))?(?:/(content|cancel))?")


@dataclass
class Timing:
    """Seconds a batch spends in each state (OpenAI's take hours; a few seconds by default here)."""

    validating: float = 1.0
    in_progress: float = 2.0
    finalizing: float = 0.5
    cancelling: float = 0.5


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


@dataclass
class _Batch:
    id: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, Any] | None
    requests: list[dict[str, Any]]  # the input file's lines, parsed
    problems: list[dict[str, Any]]  # what validation will fail it for
    timing: Timing
    fail: dict[str, Error]
    expire_after: int | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating"
    since: float = field(default_factory=time.monotonic)  # when the current state began
    lines: list[dict[str, Any]] = field(default_factory=list)  # the result of each row run so far
    stamps: dict[str, int] = field(default_factory=dict)  # in_progress_at, completed_at, ...
    output_file_id: str | None = None
    error_file_id: str | None = None

    def record(self) -> dict[str, Any]:
        ok = sum(1 for line in self.lines if _succeeded(line))
        return {
            "id": self.id, "object": "batch", "endpoint": ENDPOINT, "errors": self._errors(),
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "expires_at": self.created_at + 86400,
            **{f"{name}_at": self.stamps.get(name) for name in
               ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")},
            "request_counts": {"total": len(self.requests), "completed": ok, "failed": len(self.lines) - ok},
            "metadata": self.metadata,
        }

    def _errors(self) -> dict[str, Any] | None:
        if self.status != "failed":
            return None
        return {"object": "list", "data": self.problems}


def _succeeded(line: dict[str, Any]) -> bool:
    response = line.get("response")
    return isinstance(response, dict) and response.get("status_code") == 200


def _error_body(message: str, code: str | None = None, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class BatchApi:
    """The files and batches one ChatServer holds, and the settings its next batches take."""

    def __init__(self, chat: ChatServer) -> None:
        self.chat = chat
        self.enabled = True  # False: a server without the Batch API (404, as llama.cpp or Ollama answer)
        self.timing = Timing()
        self.fail: dict[str, Error] = {}  # custom_id -> the answer that row gets (an Error: a failed row)
        self.expire_after: int | None = None  # each batch runs this many rows, then expires
        self.reject: str | None = None  # a message: each batch fails validation with it
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    def retime(self, **phases: float) -> None:
        """Change the time of these phases, for the batches to come and for those already running (a test
        holds a batch in a state with a long phase, then lets it go on)."""
        with self._lock:
            for timing in (self.timing, *(b.timing for b in self.batches.values())):
                for name, seconds in phases.items():
                    setattr(timing, name, seconds)

    # -- HTTP -------------------------------------------------------------- #

    def serves(self, route: str) -> bool:
        """Whether a path is this API's: OpenAI's flavor, with the API enabled."""
        return self.enabled and self.chat.flavor == "openai" and _ROUTE.fullmatch(route) is not None

    def answer(self, handler: Any, body: Any, raw: bytes) -> None:
        """Answer one request (the server's handler sends it)."""
        url = urlsplit(handler.path)
        match = _ROUTE.fullmatch(url.path.rstrip("/"))
        assert match is not None
        kind, name, action = match.groups()
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            now = time.monotonic()
            for batch in self.batches.values():
                self._advance(batch, now)
            if kind == "files" and name and action == "content" and handler.command == "GET":
                found = self.files.get(name)
                if found is None:
                    handler._json(404, _error_body(f"No such File object: {name}", "not_found"))
                else:
                    handler._send(200, found.data, "application/octet-stream", {})
                return
            status, answer = self._route(handler.command, kind, name, action, body, raw,
                                         handler.headers.get("Content-Type", ""), query)
        handler._json(status, answer)

    def _route(self, method: str, kind: str, name: str | None, action: str | None, body: Any, raw: bytes,
               content_type: str, query: dict[str, str]) -> tuple[int, Any]:
        if kind == "files" and method == "POST" and name is None:
            return self._upload(raw, content_type)
        if kind == "files" and method == "GET" and name and action is None:
            found = self.files.get(name)
            return (200, found.record()) if found else (404, _error_body(f"No such File object: {name}", "not_found"))
        if kind == "batches" and method == "POST" and name is None:
            return self._create(body)
        if kind == "batches" and method == "GET" and name is None:
            return self._list(query)
        if kind == "batches" and name and name in self.batches:
            batch = self.batches[name]
            if method == "GET" and action is None:
                return 200, batch.record()
            if method == "POST" and action == "cancel":
                return self._cancel(batch)
        if kind == "batches" and name and name not in self.batches:
            return 404, _error_body(f"No batch found with id '{name}'.", "not_found")
        return 404, _error_body(f"Unknown request URL: {method} /v1/{kind}.", "unknown_url")

    # -- files ------------------------------------------------------------- #

    def _upload(self, raw: bytes, content_type: str) -> tuple[int, Any]:
        if not content_type.startswith("multipart/form-data"):
            return 400, _error_body("The file upload must be multipart/form-data.")
        message = BytesParser(policy=policy.default).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or "purpose" not in fields:
            return 400, _error_body("'file' and 'purpose' are required.")
        purpose = fields["purpose"][1].decode()
        filename, data = fields["file"]
        if purpose != "batch":
            return 400, _error_body(f"'{purpose}' is not a purpose this server takes; it takes 'batch'.")
        if not (filename or "").endswith(".jsonl"):
            return 400, _error_body("The Batch API takes .jsonl files only.")
        return 200, self._new_file(filename or "upload.jsonl", "batch", data).record()

    def _new_file(self, filename: str, purpose: str, data: bytes) -> _File:
        file = _File(f"file-test{next(self._ids):06d}", filename, purpose, data, int(time.time()))
        self.files[file.id] = file
        return file

    # -- batches ----------------------------------------------------------- #

    def _create(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, _error_body("We could not parse the JSON body of your request.")
        file = self.files.get(str(body.get("input_file_id")))
        if file is None:
            return 400, _error_body(f"Invalid 'input_file_id': '{body.get('input_file_id')}'. No such file.")
        if body.get("endpoint") != ENDPOINT:
            return 400, _error_body(f"This server runs batches for {ENDPOINT} only.")
        if body.get("completion_window") != "24h":
            return 400, _error_body("Invalid 'completion_window': only '24h' is supported.")
        requests, problems = _parse_input(file.data)
        if self.reject:
            problems = [{"code": "invalid_request", "message": self.reject, "line": None, "param": None}]
        batch = _Batch(f"batch_test{next(self._ids):06d}", file.id, "24h", body.get("metadata"), requests, problems,
                       Timing(**vars(self.timing)), dict(self.fail), self.expire_after)
        self.batches[batch.id] = batch
        return 200, batch.record()

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        newest = sorted(self.batches.values(), key=lambda b: b.id, reverse=True)
        after = query.get("after")
        if after:
            newest = [b for b in newest if b.id < after]
        try:
            limit = min(max(int(query.get("limit", "20")), 1), 100)
        except ValueError:
            return 400, _error_body("Invalid 'limit': it must be a whole number from 1 to 100.")
        page = newest[:limit]
        return 200, {"object": "list", "data": [b.record() for b in page],
                     "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
                     "has_more": len(newest) > limit}

    def _cancel(self, batch: _Batch) -> tuple[int, Any]:
        if batch.status not in ("validating", "in_progress", "finalizing"):
            return 409, _error_body(f"Cannot cancel a batch with status '{batch.status}'.")
        self._enter(batch, "cancelling", time.monotonic())
        return 200, batch.record()

    def _enter(self, batch: _Batch, status: str, since: float) -> None:
        batch.status, batch.since = status, since
        batch.stamps[status] = int(time.time())

    def _advance(self, batch: _Batch, now: float) -> None:
        """Move a batch on to the state it would be in by now, running the rows due meanwhile."""
        timing = batch.timing
        while batch.status in OPEN:
            elapsed = now - batch.since
            if batch.status == "validating":
                if elapsed < timing.validating:
                    return
                if batch.problems:
                    self._enter(batch, "failed", batch.since + timing.validating)
                    return
                self._enter(batch, "in_progress", batch.since + timing.validating)
            elif batch.status == "in_progress":
                share = elapsed / timing.in_progress if timing.in_progress > 0 else 1.0
                due = min(len(batch.requests), int(len(batch.requests) * share))
                if batch.expire_after is not None:
                    due = min(due, batch.expire_after)
                for request in batch.requests[len(batch.lines):due]:
                    batch.lines.append(self._run(batch, request))
                if share < 1.0:
                    return
                if len(batch.lines) < len(batch.requests):  # expire_after stopped it: the window ran out
                    self._finish(batch, "expired")
                    return
                self._enter(batch, "finalizing", batch.since + timing.in_progress)
            elif batch.status == "finalizing":
                if elapsed < timing.finalizing:
                    return
                self._finish(batch, "completed")
            else:  # cancelling
                if elapsed < timing.cancelling:
                    return
                self._finish(batch, "cancelled")

    def _finish(self, batch: _Batch, status: str) -> None:
        """Write the output and error files, and end the batch."""
        lines = list(batch.lines)
        if status == "expired":
            lines += [{"id": f"batch_req_test{next(self._ids):06d}", "custom_id": r["custom_id"], "response": None,
                       "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE}}
                      for r in batch.requests[len(batch.lines):]]
        done = [line for line in lines if _succeeded(line)]
        failed = [line for line in lines if not _succeeded(line)]
        for name, chosen in (("output", done), ("error", failed)):
            if chosen:
                file = self._new_file(f"{batch.id}_{name}.jsonl", "batch_output", _shuffled(chosen, batch.id))
                setattr(batch, f"{name}_file_id", file.id)
        self._enter(batch, status, time.monotonic())

    def _run(self, batch: _Batch, request: dict[str, Any]) -> dict[str, Any]:
        """One row's line: the server's usual non-streamed reply to its body."""
        from tests.support.server import Body, Echo, EchoHeaders, Error, _within  # the server imports this module

        chat, body, custom_id = self.chat, request["body"], request["custom_id"]
        line_id = f"batch_req_test{next(self._ids):06d}"
        verdict = chat._flavor.chat(chat, body)
        behaviour = batch.fail.get(custom_id) or (None if verdict.refusal else chat._next_behaviour())
        if isinstance(behaviour, (Echo, EchoHeaders)):
            behaviour = (behaviour if isinstance(behaviour, Echo) else Echo()).to_reply(body)
        if verdict.refusal is not None and behaviour is None:
            status, answer = verdict.refusal
        elif isinstance(behaviour, Error):
            status, answer = behaviour.status, json.loads(behaviour.payload())
        elif isinstance(behaviour, Body):
            status, answer = behaviour.status, behaviour.payload.decode("utf-8", "replace")
        else:
            status, answer = 200, chat.completion(_within(behaviour, body, verdict), body)
        return {"id": line_id, "custom_id": custom_id,
                "response": {"status_code": status, "request_id": chat._new_request_id(), "body": answer},
                "error": None}


def _parse_input(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input file's requests, and what is wrong with it (OpenAI fails the batch at validation for these)."""
    requests: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()

    def problem(number: int, message: str, param: str | None = None) -> None:
        problems.append({"code": "invalid_request", "message": message, "line": number, "param": param})

    for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            problem(number, "This line is not parseable as valid JSON.")
            continue
        if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
            problem(number, "Each line needs a 'custom_id' string.", "custom_id")
        elif item["custom_id"] in seen:
            problem(number, f"The custom_id '{item['custom_id']}' is used more than once.", "custom_id")
        elif item.get("method") != "POST" or item.get("url") != ENDPOINT:
            problem(number, f"Each line must be a POST to {ENDPOINT}.", "url")
        elif not isinstance(item.get("body"), dict):
            problem(number, "Each line needs a 'body' object.", "body")
        else:
            seen.add(item["custom_id"])
            requests.append(item)
    if not requests and not problems:
        problem(0, "The input file is empty.")
    if len(requests) > MAX_REQUESTS:
        problem(0, f"A batch takes at most {MAX_REQUESTS:,} requests; this file has {len(requests):,}.")
    return requests, problems


def _shuffled(lines: list[dict[str, Any]], seed: str) -> bytes:
    """The lines as a JSONL file, in an order that is not the input's (when there are two or more)."""
    order = list(lines)
    random.Random(seed).shuffle(order)
    if len(order) > 1 and order == lines:
        order = order[1:] + order[:1]
    return b"".join(json.dumps(line).encode() + b"\n" for line in order)
