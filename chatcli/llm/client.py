"""The openai SDK: building the client, streaming a chat into events, retrying what is safe to retry.

This is the only module that imports openai, and it does so lazily: neither
`chatcli --help` nor the path to the first prompt pays for that import.

Streaming goes through `with_streaming_response`, which keeps the SDK's base
URL handling, auth, retries and status errors, but hands the SSE lines to
sse.py instead of building a pydantic object per chunk. Each failure becomes a sentence
in failures.py; a reply's deadlines are deadline.py's.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

from chatcli.base.errors import ChatError, ConfigError, RefusedParameter, one_line
from chatcli.base.events import (
    Event,
    Finish,
    RateLimits,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCall,
    Usage,
)
from chatcli.base.pii import hide_password
from chatcli.config.settings import Config
from chatcli.llm.capabilities import USAGE_ACCOUNTING, Adapter
from chatcli.llm.deadline import IDLE, Deadline
from chatcli.llm.failures import (
    UnknownModel,
    connect_timeout_error,
    connection_error,
    describe_status_error,
    not_a_chat_stream,
    reply_timeout_error,
    timeout_error,
    undecodable,
)
from chatcli.llm.proxies import proxy_problem
from chatcli.llm.ratelimits import stated_limits
from chatcli.llm.retries import RetryLater, sdk_class
from chatcli.llm.sse import NotAChatStream, completion_events, parse_sse

if TYPE_CHECKING:
    import openai

log = logging.getLogger("chatcli")

# Sent when no key is configured: local servers ignore it, and the SDK insists on one.
PLACEHOLDER_KEY = "no-key"

# What keeps a reply's read_timeout from running out: keep-alive comments do not.
CONTENT = (TextDelta, ReasoningDelta, Finish, Usage, ToolCall)


class _Expired(Exception):
    """The response's lines ended at a deadline (Deadline.expired says which)."""


class _Unanswered(Exception):
    """The headers came, then a drop or a stall before any content: worth another try."""

    def __init__(self, error: ChatError, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


class ChatClient:
    """Streams chat completions from one OpenAI-compatible endpoint."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._sdk: openai.OpenAI | None = None
        self._lock = threading.Lock()
        self._known_models: list[str] | None = None  # the server's list, once fetched (for completion)
        self.listing: list[dict[str, Any]] | None = None  # its entries as sent, once models() has fetched them
        self._fetching: threading.Thread | None = None
        self.rate_limits: RateLimits | None = None  # as the server's latest response stated them (/usage, the toolbar)
        # The streaming thread's own: its reply's Deadline, and the retries taken for it.
        self._local = threading.local()
        # What each model takes (max_completion_tokens, no temperature, ...): every request is fitted.
        self.adapter = Adapter(config.models, default_effort=config.reasoning_effort, usage_accounting=asks_for_cost(config))
        # The proxy from the config, unless NO_PROXY names the server (as it would for HTTPS_PROXY).
        self.proxy = config.proxy if config.proxy and not _no_proxy_for(config.base_url) else None
        if self.proxy is None:  # httpx2 follows the proxy variables (of os.environ): one it cannot use is said now

            problem = proxy_problem(os.environ)
            if problem:
                raise ConfigError(problem)

    def warm_up(self) -> None:
        """Import openai and build the SDK client; safe to call from a background thread."""
        self._client()

    def sdk(self) -> openai.OpenAI:
        """The SDK client, built once (proxy, certificates, Azure, retries as configured): for llm/batches.py,
        whose Batch API calls go over the same connection."""
        return self._client()

    def _client(self) -> openai.OpenAI:
        with self._lock:
            if self._sdk is None:
                self._sdk = self._built()
            return self._sdk

    def _built(self) -> openai.OpenAI:
        """_build, with what httpx2 refuses in the base URL or a proxy variable said as a sentence
        (config.py and proxies.py check both first; this catches what they cannot foresee)."""
        import httpx2  # lazy: keeps httpx2 off the startup path

        try:
            return self._build()
        except (httpx2.InvalidURL, ValueError, ImportError) as exc:
            raise ConfigError(f"Could not set up the connection to {self.config.shown_url} ({one_line(hide_password(str(exc)), 120)}); "
                              "check the base URL, and HTTPS_PROXY, HTTP_PROXY and ALL_PROXY.") from None

    def _build(self) -> openai.OpenAI:
        """The SDK client the config asks for: OpenAI's or Azure's, through a proxy or not."""
        import httpx2  # lazy: keeps httpx2 off the startup path
        import openai  # lazy: keeps openai off the startup path

        c = self.config
        # Ours, not the SDK's 600 s: `read` is the longest silence allowed between bytes,
        # which is the wait for the next token.
        timeout = httpx2.Timeout(connect=c.connect_timeout, read=c.read_timeout, write=c.read_timeout, pool=c.connect_timeout)
        options: dict[str, Any] = dict(max_retries=c.max_retries, timeout=timeout, default_headers=dict(c.headers) or None)
        if self.proxy or c.ca_bundle:
            # Without these, httpx2 follows HTTPS_PROXY, HTTP_PROXY, NO_PROXY and SSL_CERT_FILE itself.
            import ssl

            verify = ssl.create_default_context(cafile=c.ca_bundle) if c.ca_bundle else True
            options["http_client"] = openai.DefaultHttpxClient(proxy=self.proxy, verify=verify, timeout=timeout)
        if c.api_type == "azure":
            # The SDK's Azure client: the deployment in the path, ?api-version=, and an api-key header.
            return sdk_class(self, openai.AzureOpenAI)(
                azure_endpoint=c.base_url, azure_deployment=c.azure_deployment or None, api_version=c.api_version,
                api_key=c.api_key or PLACEHOLDER_KEY, **options,
            )
        return sdk_class(self, openai.OpenAI)(api_key=c.api_key or PLACEHOLDER_KEY, base_url=c.base_url, **options)

    def stream(self, *, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Iterator[Event]:
        """Yield the events of one streamed reply; raise ChatError on failure.

        The caller decides what a missing Finish means (a truncated reply).
        """
        return self._heard(self._fitted(model, self._scrubbed(messages), params))

    def _scrubbed(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages with the personal data the config names scrubbed. Every request passes here:
        the system prompt, old turns of a resumed session and /compact's summaries are scrubbed too,
        not only the message being sent."""
        if not self.config.redact:
            return messages
        from chatcli.base.pii import scrub_content

        return [{**m, "content": scrub_content(m.get("content"), self.config.redact)} for m in messages]

    @property
    def server(self) -> str:
        """Which server answers, as the response cache tells servers apart: the base URL as shown
        (a password in it hidden, never the key), and Azure's deployment, which the URL leaves out."""
        c = self.config
        return f"{c.shown_url} deployment {c.azure_deployment}" if c.api_type == "azure" and c.azure_deployment \
            else c.shown_url

    def answers(self, *, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> bool:
        """Whether this request would be answered without reaching the server: never, by the client
        itself (a response cache in front of it says otherwise, core/cache.py)."""
        return False

    def request_body(self, *, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """The chat body stream() would send now, without its streaming options: the messages
        scrubbed, the parameters fitted to the model (nothing said of the fitting: the request says it)."""
        body, _ = self.adapter.fit(model, params, say=False)
        return {"model": model, "messages": self._scrubbed(messages), **body}

    def _heard(self, events: Iterator[Event]) -> Iterator[Event]:
        """The events, with the latest rate limits the server stated kept on the client: they are its server's state."""
        for event in events:
            if type(event) is RateLimits:
                self.rate_limits = event
            yield event

    def _fitted(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Iterator[Event]:
        """The reply to a request fitted to what the model takes (capabilities.py).

        A 400 refusing a parameter comes before any text, so sending the request again
        without it (or under its other name) loses nothing; each refusal must teach
        something new, so this ends.
        """
        while True:
            body, notices = self.adapter.fit(model, params)
            yield from notices
            try:
                yield from self._request(model, messages, body)
                return
            except RefusedParameter as exc:
                learned = self.adapter.learn(model, exc.param, exc.code, body)
                if learned is None:
                    raise
                yield learned

    def _request(self, model: str, messages: list[dict[str, Any]], body: dict[str, Any]) -> Iterator[Event]:
        if not log.isEnabledFor(logging.INFO):
            return self._stream(model, messages, body)
        size = len(json.dumps(messages, ensure_ascii=False).encode())
        settings = "".join(f", {k} {v}" for k, v in body.items() if k not in ("response_format", "tools"))
        if body.get("tools"):  # the schemas are too much for one log line: their names
            settings += f", tools {', '.join(t['function']['name'] for t in body['tools'])}"
        if isinstance(body.get("response_format"), dict):  # a whole schema is too much for one log line
            settings += f", response_format {body['response_format'].get('type')}"
        c = self.config
        where = (f"/openai/deployments/{c.azure_deployment or model}/chat/completions?api-version={c.api_version}"
                 if c.api_type == "azure" else "/chat/completions")  # as the SDK's Azure client builds it
        log.info("POST %s%s: model %s, %d message%s, %d bytes%s", c.shown_url, where, model, len(messages),
                 "" if len(messages) == 1 else "s", size, settings)
        return _logged(self._stream(model, messages, body), time.monotonic())

    def _stream(self, model: str, messages: list[dict[str, Any]], body: dict[str, Any]) -> Iterator[Event]:
        """The reply, with a drop or a stall after the headers but before any content retried.

        Nothing has been shown then, so another try loses nothing, as when the connection
        fails before the headers (which the SDK retries); each retry is said, and both
        kinds share max_retries. Once content has come, nothing is retried.
        """
        c = self.config
        local = self._local
        local.retries = 0  # counted by the SDK's retry hook too
        local.backoff = 0  # the SDK's retries since the last request made anew: its backoff grows with these
        started = time.monotonic()
        sdk = self._client()
        while True:
            deadline = Deadline(idle=c.read_timeout, total=c.reply_timeout or None, started=started)
            local.deadline = deadline
            try:
                yield from self._attempt(sdk, model, messages, body, deadline)
                return
            except RetryLater as later:  # the SDK's retry (a 429, a 5xx, a failed connection), waited here
                if later.limits is not None:
                    yield later.limits
                yield later.retrying
                time.sleep(later.retrying.seconds)
                sdk = self._client().with_options(max_retries=c.max_retries - local.retries)
            except _Unanswered as failed:
                seconds = min(0.5 * 2**local.retries, 8.0)
                left = deadline.remaining()
                if local.retries >= c.max_retries or (left is not None and left <= seconds):
                    raise failed.error from None
                local.retries += 1
                local.backoff = 0
                retrying = Retrying(failed.reason, seconds, local.retries, c.max_retries)
                log.info("%s", retrying)
                yield retrying
                time.sleep(seconds)
                sdk = self._client().with_options(max_retries=c.max_retries - local.retries)
            finally:
                deadline.stop()
                local.deadline = None

    def _attempt(self, sdk: openai.OpenAI, model: str, messages: list[dict[str, Any]], body: dict[str, Any],
                 deadline: Deadline) -> Iterator[Event]:
        import httpx2  # lazy: keeps httpx2 off the startup path
        import openai  # lazy: keeps openai off the startup path

        started = time.monotonic()
        # Fields the SDK has no argument for go in the body as they are.
        extra = {k: v for k, v in body.items() if k in USAGE_ACCOUNTING}
        body = {k: v for k, v in body.items() if k not in extra}
        answered = False  # the response began: a timeout now is not the SDK's to retry
        texted = False  # text arrived: a timeout now is a stall in the middle of the reply
        try:
            with sdk.chat.completions.with_streaming_response.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
                extra_body=extra or None,
                **body,
            ) as response:
                answered = True
                deadline.start(response.http_response)
                kind = response.headers.get("content-type", "")
                log.info("HTTP %d, %s, after %.3fs; request id %s", response.status_code, kind.split(";")[0] or "no type",
                         time.monotonic() - started, response.headers.get("x-request-id") or "none")
                if (limits := stated_limits(response.headers)) is not None:
                    with deadline.held():
                        yield limits
                try:
                    if "event-stream" in kind:
                        for event in parse_sse(deadline.lines(response.iter_lines()), secret=self.config.api_key,
                                               heard=deadline.content):
                            if isinstance(event, CONTENT):
                                texted = texted or isinstance(event, (TextDelta, ReasoningDelta))  # not a role-only chunk
                                deadline.content(finish=isinstance(event, Finish))
                            with deadline.held():
                                yield event
                    elif "json" in kind:  # a whole completion: the server ignored stream=true
                        text = "".join(deadline.chunks(response.iter_text()))
                        deadline.stop()  # all of it came: drawing it is no wait for the server
                        if deadline.expired is None:
                            yield from completion_events(text, self.config.api_key)
                    else:
                        raise not_a_chat_stream(self.config, f"{kind.split(';')[0] or 'no content type'}, not a chat stream")
                finally:
                    deadline.stop()
                if deadline.expired is not None:  # the lines ended at a deadline (no socket to shut)
                    raise _Expired
        except openai.APIStatusError as exc:
            if (limits := stated_limits(exc.response.headers)) is not None:  # a 429's say when it resets
                yield limits
            error = describe_status_error(exc, config=self.config, model=model)
            if isinstance(error, UnknownModel):
                error = self._near_models(error, model)
            raise error from None
        except (_Expired, NotAChatStream, openai.APIConnectionError, httpx2.TransportError, httpx2.DecodingError) as exc:
            failure = self._failure(exc, deadline, answered=answered, texted=texted)
            if failure is not None:
                raise failure from None

    def _failure(self, exc: Exception, deadline: Deadline, *, answered: bool, texted: bool) -> Exception | None:
        """What a failed attempt means: an error to say, _Unanswered to retry, or None, a reply
        that finished on a connection the server left open."""
        import httpx2  # lazy: keeps httpx2 off the startup path

        if deadline.finished:  # the finish reason came, then a silence or a drop instead of [DONE]
            return None
        if deadline.overdue:
            return reply_timeout_error(self.config, began=deadline.content_seen)
        if isinstance(exc, NotAChatStream) and deadline.expired is None:
            return not_a_chat_stream(self.config, exc.what)
        # The SDK wraps what httpx2 raised; the cause tells a connect timeout from a read timeout.
        cause = exc.__cause__ if isinstance(exc.__cause__, httpx2.HTTPError) else exc
        if isinstance(cause, httpx2.DecodingError):
            return undecodable(self.config, began=deadline.content_seen)
        if isinstance(cause, httpx2.ConnectTimeout):
            return connect_timeout_error(self.config)
        unanswered = answered and not deadline.content_seen  # headers came, and nothing after them
        if deadline.expired == IDLE or isinstance(cause, httpx2.TimeoutException):
            error = timeout_error(self.config, mid_reply=texted, keepalives=deadline.keepalives, tries=self._local.retries + 1)
            if unanswered:
                wait = f"{self.config.read_timeout:g}s"
                reason = f"only keep-alives for {wait}" if deadline.keepalives else f"no text for {wait}"
                return _Unanswered(error, f"the server sent {reason}")
            return error
        error = connection_error(self.config, cause, proxy=self.proxy, began=deadline.content_seen, kind=_kind_of(cause))
        if unanswered and isinstance(cause, (httpx2.RemoteProtocolError, httpx2.ReadError)):
            return _Unanswered(error, "the connection broke off before the reply began")
        return error

    def models(self) -> list[str]:
        """The model ids the server lists (GET /models), sorted; ChatError when it cannot say."""
        import httpx2  # lazy: keeps httpx2 off the startup path
        import openai  # lazy: keeps openai off the startup path

        try:
            data = self._client().models.list().data
            names = sorted({m.id for m in data if isinstance(getattr(m, "id", None), str)})
        except openai.APIStatusError as exc:
            raise describe_status_error(exc, config=self.config, model="") from None
        except (openai.APITimeoutError, httpx2.TimeoutException):
            raise timeout_error(self.config, tries=self.config.max_retries + 1) from None
        except openai.APIConnectionError as exc:
            raise connection_error(self.config, exc.__cause__ or exc, proxy=self.proxy, kind=_kind_of(exc.__cause__ or exc)) from None
        except (openai.APIError, ValueError, TypeError):  # a body that is not a model list
            raise ChatError(f"The server at {self.config.shown_url} did not list its models.") from None
        self._known_models = names
        # As the server sent them, with the fields OpenAI's list lacks (llama.cpp's meta, vLLM's
        # max_model_len): server_facts reads the windows from these without asking again.
        self.listing = [m.model_dump() for m in data if isinstance(getattr(m, "id", None), str)]
        return names

    def peek_models(self) -> list[str] | None:
        """The server's list if already fetched, without fetching it."""
        return self._known_models

    def remember_models(self, names: list[str]) -> None:
        """The server's list, learned elsewhere (server_facts), for completion."""
        if names:
            self._known_models = sorted(set(names))

    def fetch_json(self, url: str, *, body: Any = None, timeout: float = 5.0) -> Any:
        """A JSON document from the server (GET, or POST with a body), or None if it has none to give.

        For what a server says about itself (server_facts.py): one try, a short timeout, and
        any failure, a 404 from a server without the endpoint included, means "not said".
        """
        import httpx2  # lazy: keeps httpx2 off the startup path
        import openai  # lazy: keeps openai off the startup path

        options: Any = {"timeout": timeout, "max_retries": 0}
        try:
            sdk = self._client()
            if body is None:
                return sdk.get(url, cast_to=object, options=options)
            return sdk.post(url, body=body, cast_to=object, options=options)
        except (openai.APIError, httpx2.HTTPError, ValueError, TypeError, RecursionError) as exc:
            log.info("%s: nothing (%s)", url, type(exc).__name__)
            return None

    def known_models(self) -> list[str] | None:
        """The server's models if already fetched; otherwise fetch them in the background and say None.

        For completion, which must never wait on the network.
        """
        if self._known_models is None and self._fetching is None:

            def fetch() -> None:
                try:
                    self.models()
                except ChatError:
                    self._known_models = []

            self._fetching = threading.Thread(target=fetch, daemon=True)
            self._fetching.start()
        return self._known_models

    def _near_models(self, error: ChatError, model: str) -> ChatError:
        """A 404 for a model, with the names the server does have that look like it."""

        try:
            near = difflib.get_close_matches(model, self.models(), n=3, cutoff=0.6)
        except ChatError:
            return error
        if not near:
            return error
        return ChatError(error.message.rstrip(".") + f"; close matches: {', '.join(one_line(n, 100) for n in near)}.")


def asks_for_cost(config: Config) -> bool:
    """Whether requests ask for their cost in the usage (`usage: {include: true}`): as the config says,
    or else only of OpenRouter, which takes it; OpenAI refuses a field it does not know."""
    if config.usage_accounting is not None:
        return config.usage_accounting
    host = (urlsplit(config.base_url).hostname or "").lower()
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def _no_proxy_for(url: str) -> bool:
    """NO_PROXY names the server: a proxy from the config is passed by, as one from HTTPS_PROXY is."""

    return bool(urllib.request.proxy_bypass_environment(urlsplit(url).hostname or ""))


def _logged(events: Iterator[Event], started: float) -> Iterator[Event]:
    """The events, passed on unchanged, with the reply's timings and end written to the log."""
    first = None
    text = reasoning = 0
    finish, usage = "none", "none"
    try:
        for event in events:
            if first is None and isinstance(event, (TextDelta, ReasoningDelta)):
                first = time.monotonic() - started
                log.info("first token after %.3fs", first)
            if isinstance(event, TextDelta):
                text += len(event.text)
            elif isinstance(event, ReasoningDelta):
                reasoning += len(event.text)
            elif isinstance(event, Finish):
                finish = event.reason
            elif isinstance(event, Usage):
                usage = f"{event.prompt_tokens}+{event.completion_tokens} tokens"
            yield event
    except ChatError as exc:
        log.info("failed after %.3fs: %s", time.monotonic() - started, exc.message)
        raise
    except BaseException as exc:  # Ctrl-C, SIGTERM, or the reader closing the stream early
        why = "closed by its reader" if isinstance(exc, GeneratorExit) else f"interrupted ({type(exc).__name__})"
        log.info("stopped after %.3fs, %d characters in: %s", time.monotonic() - started, text, why)
        raise
    finally:
        events.close()  # type: ignore[attr-defined]
    log.info("reply ended after %.3fs: %d characters (%d of reasoning), finish %s, usage %s",
             time.monotonic() - started, text, reasoning, finish, usage)


def _kind_of(cause: BaseException) -> str | None:
    """The transport's word for a failed connection, for failures.connection_error."""
    import httpx2  # loaded with openai, off the startup path

    if isinstance(cause, httpx2.ProxyError):
        return "proxy"
    if isinstance(cause, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        return "broke"
    return None
