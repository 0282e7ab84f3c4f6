"""A scriptable OpenAI-compatible HTTP server for tests.

Real HTTP (not mocked transports) lets the tests exercise what the openai SDK
and httpx2 actually do with streams, retries, keep-alive and broken
connections.  Only the stdlib is used so the server has no moving parts of its
own.

    with ChatServer() as srv:
        srv.script(Reply("hello"), Error(429, headers={"Retry-After": "0"}))
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test")

Each POST to ``.../chat/completions`` takes the next scripted behaviour; when
the script is empty ``srv.default`` (initially :class:`Echo`) is used.

``ChatServer(flavor="llamacpp")`` (or vllm, ollama, lmstudio, openrouter) speaks like that server
instead of like OpenAI: its /v1/models, its discovery endpoints, and with ``n_ctx`` set its
answer to a prompt that does not fit (tests/support/flavors.py); openrouter reports the cost of
a request that asks for it.
"""

from __future__ import annotations

import errno
import itertools
import json
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import KW_ONLY, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.batch_api import BatchApi
from tests.support.flavors import FLAVORS, NO_IMAGES, Flavor, Verdict, content_text, image_parts, prompt_tokens

__all__ = [
    "Behaviour",
    "Body",
    "ChatServer",
    "Echo",
    "EchoHeaders",
    "Error",
    "Recorded",
    "Reply",
    "DEFAULT_MODELS",
    "FLAVORS",
    "compute_usage",
    "rate_limit_headers",
]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o")

# Errors a client can cause by going away; they are expected, never reported.
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


# --------------------------------------------------------------------------- #
# Behaviours
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Reply:
    """A successful completion; the fault options inject stream failures.

    The ``*_after`` options count *content* chunks (reasoning and role chunks
    are not counted) and are clamped to the number of content chunks, so a
    fault always fires: with ``disconnect_after=99`` on a short reply the
    socket is closed after all content and before the finish chunk.  For a
    non-streamed request any fault option applies to the whole response:
    stall → sleep before answering, disconnect → close without a response,
    malformed → a truncated JSON body, error_event → HTTP 500 error body.

    ``ping_every`` fills the stall (and ``hold_open``) with SSE keep-alive comments
    (``: ping``), bytes that carry no content. ``hold_open`` keeps the connection open
    that long after the last event (after ``[DONE]``, or in its place with ``done=False``).
    """

    text: str
    _: KW_ONLY
    chunk_size: int = 4
    delay: float = 0.0
    first_delay: float = 0.0
    finish_reason: str | None = "stop"
    usage: bool | dict[str, Any] = True
    done: bool = True
    stall_after: int | None = None
    stall_seconds: float = 5.0
    disconnect_after: int | None = None
    malformed_after: int | None = None
    error_event_after: int | None = None
    error_message: str = "server error"
    reasoning: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ping_every: float | None = None
    hold_open: float = 0.0
    # Tool calls the reply ends with, as (name, arguments): a dict is sent as its JSON, a string as it is
    # (malformed JSON on purpose). Streamed as OpenAI streams them: the first delta of each with its
    # index, id, type and name and arguments "", then the arguments in `args_chunk`-character pieces,
    # parallel calls interleaved (with `interleave`); finish_reason "tool_calls".
    tool_calls: tuple[tuple[str, Any], ...] = ()
    args_chunk: int = 7
    interleave: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.tool_calls and self.finish_reason == "stop":
            object.__setattr__(self, "finish_reason", "tool_calls")

    def calls(self, first_id: str = "call_") -> list[dict[str, Any]]:
        """The tool calls as a whole completion's message has them."""
        return [{"id": f"{first_id}{k}", "type": "function",
                 "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                for k, (name, args) in enumerate(self.tool_calls)]


@dataclass(frozen=True)
class Error:
    """An HTTP error with an OpenAI-style body, e.g. to drive SDK retries."""

    status: int
    message: str = "error"
    _: KW_ONLY
    type: str | None = None
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0

    def payload(self) -> bytes:
        """The response body: the raw override or the OpenAI error envelope."""
        if self.body is not None:
            return self.body
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


def rate_limit_headers(*, requests: tuple[int, int] | None = None, tokens: tuple[int, int] | None = None,
                       reset_requests: str | None = "1s", reset_tokens: str | None = "6m0s",
                       openrouter: tuple[int, int, float] | None = None) -> dict[str, str]:
    """Rate-limit headers for ``Reply(headers=...)`` or ``Error(429, headers=...)``: ``requests`` and
    ``tokens`` are (limit, remaining), with OpenAI's names and its Go-duration resets ("12ms",
    "6m0s"); ``openrouter`` is (limit, remaining, seconds until reset), as OpenRouter sends it,
    unsuffixed, with the reset a Unix time in milliseconds."""
    headers: dict[str, str] = {}
    for kind, figures, reset in (("requests", requests, reset_requests), ("tokens", tokens, reset_tokens)):
        if figures is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(figures[0])
            headers[f"x-ratelimit-remaining-{kind}"] = str(figures[1])
            if reset is not None:
                headers[f"x-ratelimit-reset-{kind}"] = reset
    if openrouter is not None:
        limit, remaining, seconds = openrouter
        headers.update({"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                        "X-RateLimit-Reset": str(int((time.time() + seconds) * 1000))})
    return headers


@dataclass(frozen=True)
class Body:
    """A body sent as it is, whatever it holds: HTML labelled text/event-stream, JSON that is no
    completion, garbage, a gzip that is not (``headers={"Content-Encoding": "gzip"}``)."""

    payload: bytes
    _: KW_ONLY
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Echo:
    """Reply with ``prefix`` + the last user message, so tests see what was sent."""

    prefix: str = "echo: "
    chunk_size: int = 4
    delay: float = 0.0

    def to_reply(self, request: dict[str, Any]) -> Reply:
        """The concrete Reply for one request body."""
        last = ""
        for message in request.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "user":
                last = content_text(message.get("content"))
        return Reply(self.prefix + last, chunk_size=self.chunk_size, delay=self.delay)


@dataclass(frozen=True, kw_only=True)
class EchoHeaders:
    """A misbehaving proxy that quotes the request's headers back, the key among them: as the
    reply, streamed in small chunks (so a key is split across them), or, with ``status``, as
    an error's message."""

    status: int = 200
    chunk_size: int = 5
    names: tuple[str, ...] | None = None  # the headers to quote (None: all)

    def to_behaviour(self, headers: Any) -> Reply | Error:
        names = [name for name in headers.keys() if self.names is None or name.lower() in map(str.lower, self.names)]
        text = "You sent: " + "; ".join(f"{name}: {headers[name]}" for name in names)
        return Reply(text, chunk_size=self.chunk_size) if self.status == 200 else Error(self.status, text)


Behaviour = Reply | Error | Echo | EchoHeaders | Body


@dataclass
class Recorded:
    """One request as the server saw it; ``headers`` names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float = field(default_factory=time.monotonic)  # when the request arrived, to measure retry waits


def compute_usage(request: dict[str, Any], text: str) -> dict[str, Any]:
    """Deterministic fake token counts, so tests can assert exact numbers.

    prompt_tokens = sum over request messages of (len(content.split()) + 4);
    completion_tokens = max(1, len(text.split())); total = their sum.
    List-of-parts content counts its text parts; None counts as empty.
    """
    prompt = prompt_tokens(request.get("messages"))  # the one tokenizer every flavor shares
    completion = max(1, len(text.split()))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _leading_alike(a: list[Any], b: list[Any]) -> int:
    """How many messages two prompts begin with alike."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _within(reply: Reply, request: dict[str, Any], verdict: Verdict) -> Reply:
    """The reply as the flavor's window lets it out: cut at the window, usage capped."""
    budget = verdict.completion_budget
    words = list(re.finditer(r"\S+", reply.text))
    if budget is not None and len(words) > budget:  # generation stopped when the window filled
        reply = replace(reply, text=reply.text[: words[budget - 1].end()] if budget > 0 else "",
                        finish_reason="length")
    if verdict.prompt_cap is not None and reply.usage is True:
        usage = compute_usage(request, reply.text)
        usage["prompt_tokens"] = min(usage["prompt_tokens"], verdict.prompt_cap)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        reply = replace(reply, usage=usage)
    return reply


def _call_deltas(reply: Reply, prefix: str) -> list[dict[str, Any]]:
    """The tool_calls deltas of a reply, in the order OpenAI sends them (or interleaved)."""
    per_call = []
    for k, call in enumerate(reply.calls(prefix)):
        first = {"index": k, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}
        rest = [{"index": k, "function": {"arguments": piece}}
                for piece in _pieces(call["function"]["arguments"], reply.args_chunk)]
        per_call.append([first, *rest])
    if not reply.interleave:
        return [d for deltas in per_call for d in deltas]
    return [d for step in itertools.zip_longest(*per_call) for d in step if d is not None]


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(message: str, type_: str | None, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --------------------------------------------------------------------------- #
# HTTP plumbing
# --------------------------------------------------------------------------- #


class _Abort(Exception):
    """Raised inside a handler to drop the connection without another byte."""


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that never blocks on its handler threads."""

    daemon_threads = True
    block_on_close = False  # server_close() must not wait for a stalled handler
    request_queue_size = 64

    def __init__(self, chat: ChatServer, port: int = 0) -> None:
        self.chat = chat
        super().__init__(("127.0.0.1", port), _Handler)
        if chat.tls is not None:  # HTTPS, with the certificate the test made
            self.socket = chat.tls.wrap_socket(self.socket, server_side=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can hang on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Swallow client disconnects; report real bugs once, briefly."""
        exc = sys.exc_info()[1]
        if isinstance(exc, _CLIENT_GONE) or self.chat.stopping:
            return
        if isinstance(exc, OSError) and exc.errno in (errno.EBADF, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            return
        self.chat.errors.append(exc)  # type: ignore[arg-type]
        sys.stderr.write("tests.support.server: handler error:\n" + traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    """Speaks just enough of the OpenAI REST API for chatcli and the SDK."""

    protocol_version = "HTTP/1.1"  # keep-alive, chunked streaming
    disable_nagle_algorithm = True  # each SSE event leaves at once
    server: _HTTPServer

    # -- lifecycle --------------------------------------------------------- #

    def setup(self) -> None:
        super().setup()
        self.server.chat._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.chat._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the per-request access log: it is noise in test output."""

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    # -- request handling -------------------------------------------------- #

    def _dispatch(self) -> None:
        chat = self.server.chat
        chat._busy(+1)
        try:
            raw = self._read_body()
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            chat._record(Recorded(self.command, self.path, headers, body, raw))
            self._route(body, raw)
        except _Abort:
            self._drop()
        except _CLIENT_GONE:
            self.close_connection = True
        except OSError:
            if not chat.stopping:
                raise
            self.close_connection = True
        finally:
            chat._busy(-1)

    def _route(self, body: Any, raw: bytes) -> None:
        route = self.path.split("?", 1)[0].rstrip("/")
        method = self.command
        flavor = self.server.chat._flavor
        override = self.server.chat.overrides.get(route)
        if override is not None:
            self._json(*override)
            return
        extra = flavor.route(method, route)  # /props, /api/show ...: before /models, which /api/v0/models ends with
        if extra is not None:
            if route in flavor.public or self._authorized():
                self._json(*extra(self.server.chat, body))
        elif method == "POST" and route.endswith("/chat/completions"):
            if self._authorized():
                self._chat(body, raw)
        elif method == "GET" and route.endswith("/models"):
            if self._authorized():
                self._models()
        elif method == "GET" and "/models/" in route and flavor.retrieves:
            if self._authorized():
                self._json(*flavor.model(self.server.chat, route.rsplit("/models/", 1)[1]))
        elif self.server.chat.batch_api.serves(route):  # /v1/files and /v1/batches (tests/support/batch_api.py)
            if self._authorized():
                self.server.chat.batch_api.answer(self, body, raw)
        else:
            message = (
                f"Unknown request URL: {method} {route}. Please check the URL for typos, "
                "or see the docs at https://platform.openai.com/docs/api-reference/."
            )
            self._json(404, _error_body(message, "invalid_request_error", "unknown_url"))

    def _authorized(self) -> bool:
        key = self.server.chat.api_key
        # OpenAI's Authorization: Bearer, or Azure OpenAI's api-key header.
        if key is None or self.headers.get("Authorization") == f"Bearer {key}" or self.headers.get("api-key") == key:
            return True
        body = _error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        self._json(401, body)
        return False

    def _models(self) -> None:
        self._json(*self.server.chat._flavor.models(self.server.chat))

    def _chat(self, body: Any, raw: bytes) -> None:
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"
            self._json(400, _error_body(message, "invalid_request_error", None))
            return
        if self._refuses_images(body):
            return
        verdict = self.server.chat._flavor.chat(self.server.chat, body)
        if verdict.refusal is not None:  # refused before any reply: the script is left as it was
            self._json(*verdict.refusal)
            return
        if verdict.messages is not None:  # what the model gets to see, as the server cut it
            body = {**body, "messages": verdict.messages}
        behaviour = self.server.chat._next_behaviour()
        if isinstance(behaviour, Echo):
            behaviour = behaviour.to_reply(body)
        elif isinstance(behaviour, EchoHeaders):
            behaviour = behaviour.to_behaviour(self.headers)
        if isinstance(behaviour, Error):
            self._sleep(behaviour.delay)
            self._send(behaviour.status, behaviour.payload(), "application/json", behaviour.headers)
            return
        if isinstance(behaviour, Body):
            self._send(behaviour.status, behaviour.payload, behaviour.content_type, behaviour.headers)
            return
        behaviour = _within(behaviour, body, verdict)
        if body.get("stream") is True:
            self._stream(behaviour, body)
        else:
            self._complete(behaviour, body)

    def _refuses_images(self, body: dict[str, Any]) -> bool:
        """A model in ``blind`` sent an image: refused as the flavor's server refuses it (the script is left as it was)."""
        chat = self.server.chat
        model = str(body.get("model"))
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        if model not in chat.blind or not any(image_parts(m.get("content")) for m in messages if isinstance(m, dict)):
            return False
        status, message, type_ = NO_IMAGES[chat.flavor]
        self._json(status, _error_body(message.format(model=model), type_, None, "messages.[0].content.[1].type"))
        return True

    def _complete(self, reply: Reply, request: dict[str, Any]) -> None:
        """Non-streamed ``chat.completion``; fault options act on the whole response."""
        self._sleep(reply.first_delay)
        if reply.stall_after is not None:
            self._sleep(reply.stall_seconds)
        if reply.disconnect_after is not None:
            raise _Abort
        if reply.malformed_after is not None:
            self.close_connection = True
            self._send(200, b'{"choices": [', "application/json", reply.headers)
            return
        if reply.error_event_after is not None:
            body = _error_body(reply.error_message, "server_error", None)
            self._send(500, json.dumps(body).encode(), "application/json", reply.headers)
            return
        self._send(200, json.dumps(self.server.chat.completion(reply, request)).encode(), "application/json", reply.headers)

    def _stream(self, reply: Reply, request: dict[str, Any]) -> None:
        """Server-sent ``chat.completion.chunk`` events, one HTTP chunk each."""
        self._sleep(reply.first_delay)
        self.send_response(200)
        self._emit_headers({"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                       "Transfer-Encoding": "chunked"}, reply.headers)

        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        cid, created = self.server.chat._new_id(), int(time.time())
        model = self.server.chat.served_model or request.get("model", "")  # llama-server names its -m path

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            if include_usage:
                out["usage"] = None  # as OpenAI does on every chunk but the last
            return out

        self._event(chunk({"role": "assistant", "content": ""}))
        first = True
        for piece in _pieces(reply.reasoning or "", reply.chunk_size):
            if not first:
                self._sleep(reply.delay)
            first = False
            self._event(chunk({"reasoning_content": piece}))

        pieces = _pieces(reply.text, reply.chunk_size)
        for k in range(len(pieces) + 1):
            if self._fault(reply, k, len(pieces)):
                return
            if k == len(pieces):
                break
            if not first:
                self._sleep(reply.delay)
            first = False
            self._event(chunk({"content": pieces[k]}))

        for delta in _call_deltas(reply, f"call_{cid[-6:]}_"):
            self._sleep(reply.delay)
            self._event(chunk({"tool_calls": [delta]}))
        if reply.finish_reason is not None:
            self._event(chunk({}, reply.finish_reason))
        if include_usage and reply.usage is not False:
            usage = self.server.chat._usage(request, reply)
            final = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": usage}
            self._event(final)
        if reply.done:
            self._write_chunk(b"data: [DONE]\n\n")
        self._wait(reply.hold_open, reply.ping_every)
        self._write_chunk(b"")

    def _fault(self, reply: Reply, k: int, n: int) -> bool:
        """Inject the faults due after ``k`` content chunks; True ends the stream."""

        def due(after: int | None) -> bool:
            return after is not None and k == min(max(after, 0), n)

        if due(reply.stall_after):
            self._wait(reply.stall_seconds, reply.ping_every)
        if due(reply.disconnect_after):
            raise _Abort
        if due(reply.malformed_after):
            self._write_chunk(b'data: {"choices": [\n\n')
            self._write_chunk(b"")
            self.close_connection = True
            return True
        if due(reply.error_event_after):
            self._event(_error_body(reply.error_message, "server_error", None))
            self._write_chunk(b"")
            self.close_connection = True
            return True
        return False

    # -- output helpers ---------------------------------------------------- #

    def _sleep(self, seconds: float) -> None:
        """Sleep unless the server stops meanwhile; then drop the connection."""
        if seconds > 0 and self.server.chat._stopping.wait(seconds):
            raise _Abort

    def _wait(self, seconds: float, ping_every: float | None) -> None:
        """Sleep, or with ping_every send an SSE comment that often meanwhile, as keep-alives do."""
        if not ping_every:
            self._sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._sleep(min(ping_every, left))
            self._write_chunk(b": ping\n\n")

    def _emit_headers(self, defaults: dict[str, str], extra: dict[str, str]) -> None:
        merged = {k.lower(): (k, v) for k, v in defaults.items()}
        merged.setdefault("x-request-id", ("x-request-id", self.server.chat._new_request_id()))
        merged.update({k.lower(): (k, v) for k, v in extra.items()})
        for name, value in merged.values():
            self.send_header(name, str(value))
        self.end_headers()

    def _send(self, status: int, payload: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self._emit_headers({"Content-Type": content_type, "Content-Length": str(len(payload))}, extra)
        self.wfile.write(payload)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", {})

    def _event(self, obj: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk in a single write (wfile is unbuffered); b"" ends the body."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _drop(self) -> None:
        """Close abruptly: FIN (not RST) so bytes already sent still arrive."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


# --------------------------------------------------------------------------- #
# Public server
# --------------------------------------------------------------------------- #


class ChatServer:
    """Threaded OpenAI-compatible server on 127.0.0.1 with an ephemeral port.

    Configuration attributes may be changed at any time; each request reads them
    when it arrives:

    - ``default``, ``api_key``, ``models``: the reply when the script is empty, the key
      to demand (None: any), the model ids served.
    - ``flavor``: which server to be, one of :data:`FLAVORS` ("openai", "llamacpp",
      "vllm", "ollama", "lmstudio", "openrouter"); see tests/support/flavors.py.
    - ``n_ctx``: the window the server enforces, in :func:`compute_usage`'s tokens;
      None enforces none (and discovery endpoints report 4096).
    - ``served_model``: the ``model`` every chunk and completion names, whatever the
      request asked for (llama-server names its ``-m`` path); None echoes the request's.
    - ``loaded``: the models Ollama's /api/ps and LM Studio's /api/v0 report as loaded
      (None: all of ``models``).
    - ``ollama_num_ctx_param``: Ollama's /api/show lists ``num_ctx`` (the Modelfile sets it).
    - ``vllm_nested_errors``: vLLM's newer ``{"error": {...}}`` instead of its top-level body.
    - ``prompt_cache``: report as ``prompt_tokens_details.cached_tokens`` the tokens of the leading
      messages an earlier request had too, as a provider's prompt cache would read them.
    - ``blind``: models that take no images; a request with an image_url part is refused with
      the flavor's words (OpenAI: "Invalid content type. image_url is only supported by certain models.").
    - ``batch_api``: OpenAI's ``/v1/files`` and ``/v1/batches`` (OpenAI's flavor only): its ``timing``, failed
      and expired rows; ``batch_api.enabled = False`` answers 404, as a server without it (tests/support/batch_api.py).
    """

    def __init__(self, *, port: int = 0, tls: ssl.SSLContext | None = None, flavor: str = "openai",
                 n_ctx: int | None = None, served_model: str | None = None) -> None:
        self._port = port  # 0: any free port
        self.tls = tls
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._script: deque[Behaviour] = deque()
        self._requests: list[Recorded] = []
        self.errors: list[BaseException] = []
        self.default: Behaviour = Echo()
        self.api_key: str | None = None
        self.models: list[str] = list(DEFAULT_MODELS)
        self._initial = (flavor, n_ctx, served_model)
        self.flavor = flavor
        self.n_ctx: int | None = n_ctx
        self.served_model: str | None = served_model
        # path -> (status, JSON body): answered before anything else, for a server that answers
        # a discovery endpoint oddly (a 503 while it loads, a field of the wrong type).
        self.overrides: dict[str, tuple[int, Any]] = {}
        self.loaded: list[str] | None = None
        self.ollama_num_ctx_param = False
        self.vllm_nested_errors = False
        self.prompt_cache = False
        self._prompts: list[list[Any]] = []
        self.blind: set[str] = set()  # models that take no images: a request with one is refused, as its server would
        self.batch_api = BatchApi(self)  # OpenAI's Batch API: its timing, failed and expired rows (batch_api.py)

    @property
    def flavor(self) -> str:
        return self._flavor.name

    @flavor.setter
    def flavor(self, name: str) -> None:
        if name not in FLAVORS:
            raise ValueError(f"unknown flavor {name!r}; one of {', '.join(FLAVORS)}")
        self._flavor: Flavor = FLAVORS[name]

    # -- lifecycle --------------------------------------------------------- #

    def start(self) -> ChatServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("ChatServer already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self, self._port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="ChatServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: never waits for handlers, and wakes any that sleep or stall."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # unblock keep-alive readers and stalled writers
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- addresses --------------------------------------------------------- #

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, or https (raises if not started)."""
        if self._httpd is None:
            raise RuntimeError("ChatServer is not running")
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._httpd.server_port}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for openai.OpenAI: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    # -- scripting and inspection ------------------------------------------ #

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each chat request consumes one, in order."""
        for b in behaviours:
            if not isinstance(b, (Reply, Error, Echo, EchoHeaders, Body)):
                raise TypeError(f"not a behaviour: {b!r}")
        with self._lock:
            self._script.extend(behaviours)

    @property
    def pending(self) -> int:
        """How many scripted behaviours have not been used yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def tool_messages(self, request: int = -1) -> list[dict[str, Any]]:
        """The `tool` messages (the results of tool calls) one chat request sent, the last by default."""
        body = self.chat_requests[request].body
        return [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "tool"]

    @property
    def chat_requests(self) -> list[Recorded]:
        """Only the ``POST .../chat/completions`` requests."""
        return [
            r for r in self.requests
            if r.method == "POST" and r.path.split("?", 1)[0].rstrip("/").endswith("/chat/completions")
        ]

    def reset(self) -> None:
        """Back to the state it started in (the constructor's flavor, n_ctx, served_model), for sharing."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self.errors.clear()
            self.default = Echo()
            self.api_key = None
            self.models = list(DEFAULT_MODELS)
            self.flavor, self.n_ctx, self.served_model = self._initial
            self.loaded = None
            self.ollama_num_ctx_param = False
            self.vllm_nested_errors = False
            self.overrides = {}
            self.prompt_cache = False
            self._prompts = []
            self.blind = set()
            self.batch_api = BatchApi(self)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no request is being handled (e.g. a dropped stream noticed it)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- used by the handler ----------------------------------------------- #

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def completion(self, reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
        """A whole ``chat.completion`` for a reply (non-streamed requests, and the Batch API's rows)."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = reply.calls(f"call_{self._new_id()[-6:]}_")
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        completion: dict[str, Any] = {
            "id": self._new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_model or request.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
        }
        if reply.usage is not False:
            completion["usage"] = self._usage(request, reply)
        return completion

    def _usage(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The usage a reply reports: computed (with the prompt cache's share) or scripted, as the flavor has it."""
        if reply.usage is True:
            usage = compute_usage(request, reply.text)
            if self.prompt_cache:
                usage["prompt_tokens_details"] = {"cached_tokens": self._cached_tokens(request.get("messages"))}
        else:
            usage = dict(reply.usage)
        return self._flavor.account(self, request, usage)

    def _cached_tokens(self, messages: Any) -> int:
        """prompt_cache: the tokens of the longest run of leading messages an earlier request began with,
        as a provider's prompt cache reads them (which it then remembers this request's for)."""
        messages = list(messages or [])
        with self._lock:
            same = max((_leading_alike(earlier, messages) for earlier in self._prompts), default=0)
            self._prompts.append(messages)
        return prompt_tokens(messages[:same])

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self._requests.append(rec)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _busy(self, delta: int) -> None:
        with self._idle:
            self._in_flight += delta
            if not self._in_flight:
                self._idle.notify_all()

    def _new_id(self) -> str:
        return f"chatcmpl-test{next(self._ids):08d}"

    def _new_request_id(self) -> str:
        return f"req_test{next(self._ids):08d}"


def main() -> None:
    """Serve by hand, to try chatcli against it: python -m tests.support.server [--port N] [--reply FILE] [--flavor F]."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description="A local chat-completions server for trying chatcli.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reply", type=Path, help="stream this file's text as every reply (default: echo)")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between 4-character chunks")
    parser.add_argument("--flavor", choices=list(FLAVORS), default="openai", help="which server to speak like")
    parser.add_argument("--n-ctx", type=int, help="the window to enforce, in words + 4 per message")
    args = parser.parse_args()
    server = ChatServer(port=args.port, flavor=args.flavor, n_ctx=args.n_ctx).start()
    if args.reply:
        server.default = Reply(args.reply.read_text(), delay=args.delay)
    else:
        server.default = Echo(delay=args.delay)
    print(f"serving on {server.base_url}; try: OPENAI_BASE_URL={server.base_url} chatcli", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    # Run as tests.support.server, not as __main__: the Batch API's module imports this one, and two
    # copies of it would have two Echo classes (isinstance would tell them apart).
    from tests.support.server import main as served

    served()
