"""The fault matrix: every way the service can fail, in one-shot mode and in the REPL.

Each row scripts tests/support/server.py (or points at an address that cannot answer)
and is run twice:

- one-shot: the exit code, what was received on stdout, one sentence on stderr,
  the question and any partial reply in the sessions store, and a second run
  that succeeds once the server behaves;
- the REPL (a real prompt-toolkit session over a pipe, saving to a real
  database): the sentence, the partial reply kept, and `/retry` afterwards
  sending the conversation as it was and showing the new reply.
"""

from __future__ import annotations

import socket
import sqlite3
import statistics
import threading
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from chatcli.base.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_NETWORK, EXIT_OK
from chatcli.config.settings import Config
from chatcli.core.journal import Journal
from chatcli.llm.client import ChatClient
from tests.support.faults import FAST_RETRY, NOT_CHAT_STREAMS
from tests.support.keys import TEST_KEY
from tests.support.repl import CTRL_C, ENTER, flat, piped_chat
from tests.support.running import RETRY_LINE, assert_no_key, error_line, free_port
from tests.support.server import ChatServer, Error, Reply
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(40)

TEXT = "The quick brown fox jumps over the lazy dog."
RECOVERED = "All better now."


@dataclass(frozen=True)
class Row:
    """One fault: what the server does, and what chatcli must do about it."""

    script: tuple[Any, ...]  # behaviours for tests/support/server.py, one per request
    code: int  # the one-shot exit code
    words: tuple[str, ...]  # in the sentence, lower-cased
    partial: str = ""  # what was received before the fault: on stdout, and kept
    requests: int | None = 1  # requests the server sees; None where none can arrive
    settings: dict[str, Any] = field(default_factory=dict)  # config for this row (CHATCLI_* in one-shot)
    where: str = "server"  # server, refused, dns or blackhole: where the base URL points
    args: tuple[str, ...] = ()

    @property
    def succeeds(self) -> bool:
        return self.code == EXIT_OK


def row(id: str, *script: Any, **kw: Any):  # noqa: A002 - pytest's word
    return pytest.param(Row(script, **kw), id=id)


FAST = {"max_retries": 2}
NO_RETRY = {"max_retries": 0}


MATRIX = [
    # -- rate limits ----------------------------------------------------------------------------
    row("429-retry-after-then-ok", Error(429, "Rate limit reached", code="rate_limit_exceeded",
                                         headers={"retry-after": "0.2"}), Reply(TEXT),
        code=EXIT_OK, words=(), partial=TEXT, requests=2, settings=FAST),
    row("429-asks-too-long-a-wait", Error(429, "Rate limit reached", code="rate_limit_exceeded",
                                          headers={"retry-after": "600"}),
        code=EXIT_FAILURE, words=("429", "10 minutes"), settings=FAST),
    row("429-gives-up", *[Error(429, "Rate limit reached", code="rate_limit_exceeded", headers=FAST_RETRY)] * 3,
        code=EXIT_FAILURE, words=("rate limit", "2 retries"), requests=3, settings=FAST),
    row("429-insufficient-quota", *[Error(429, "You exceeded your current quota", type="insufficient_quota",
                                          code="insufficient_quota", headers=FAST_RETRY)] * 3,
        code=EXIT_FAILURE, words=("out of credit",), settings=FAST),
    # -- server errors --------------------------------------------------------------------------
    row("500-then-ok", Error(500, "boom", headers=FAST_RETRY), Reply(TEXT),
        code=EXIT_OK, words=(), partial=TEXT, requests=2, settings=FAST),
    *[row(f"{status}-gives-up", *[Error(status, "boom", headers=FAST_RETRY)] * 3,
          code=EXIT_FAILURE, words=(f"http {status}", "2 retries", "try again later"), requests=3, settings=FAST)
      for status in (500, 502, 503)],
    # -- the network ----------------------------------------------------------------------------
    row("connection-refused", code=EXIT_NETWORK, words=("could not connect", "{url}", "server is running"),
        requests=None, settings={"max_retries": 1}, where="refused"),
    row("dns-failure", code=EXIT_NETWORK, words=("could not find the host chatcli-no-such-host.invalid", "{url}", "dns"),
        requests=None, settings=NO_RETRY, where="dns"),
    row("connect-timeout", code=EXIT_NETWORK, words=("could not connect", "{url}", "within 0.3s"),
        requests=None, settings={"connect_timeout": 0.3, "max_retries": 0}, where="blackhole"),
    row("no-headers-within-read-timeout", Reply(TEXT, first_delay=3),
        code=EXIT_NETWORK, words=("sent no text for more than 0.3s", "reading a long prompt", "read_timeout"), settings={"read_timeout": 0.3, "max_retries": 0}),
    # -- broken streams -------------------------------------------------------------------------
    row("stall-mid-stream", Reply(TEXT, stall_after=3, stall_seconds=3),
        code=EXIT_NETWORK, words=("went silent for more than 0.3s in the middle of the reply",), partial=TEXT[:12],
        settings={"read_timeout": 0.3, "max_retries": 2}),  # a stall mid-reply is not retried, whatever max_retries says
    row("disconnect-mid-stream", Reply(TEXT, disconnect_after=3),
        code=EXIT_NETWORK, words=("broke off",), partial=TEXT[:12]),
    row("no-finish-reason", Reply(TEXT, finish_reason=None),
        code=EXIT_FAILURE, words=("cut short",), partial=TEXT),
    row("no-finish-reason-or-done", Reply(TEXT, finish_reason=None, done=False),
        code=EXIT_FAILURE, words=("cut short",), partial=TEXT),
    row("malformed-chunk", Reply(TEXT, malformed_after=3),
        code=EXIT_FAILURE, words=("malformed",), partial=TEXT[:12]),
    row("in-band-error", Reply(TEXT, error_event_after=3, error_message="Model overloaded \x1b[2J"),
        code=EXIT_FAILURE, words=("model overloaded",), partial=TEXT[:12]),
    row("in-band-error-echoing-the-key", Reply(TEXT, error_event_after=3, error_message=f"auth failed for {TEST_KEY}"),
        code=EXIT_FAILURE, words=("auth failed",), partial=TEXT[:12]),
    # -- streams that never end, or end wrongly (issue 14) ---------------------------------------
    row("keep-alives-forever-mid-stream", Reply(TEXT, stall_after=3, stall_seconds=30, ping_every=0.05),
        code=EXIT_NETWORK, words=("only keep-alives, no text, for more than 0.5s in the middle of the reply",),
        partial=TEXT[:12], settings={"read_timeout": 0.5}),
    row("keep-alives-forever-before-text", Reply(TEXT, stall_after=0, stall_seconds=30, ping_every=0.05),
        code=EXIT_NETWORK, words=("only keep-alives, no text, for more than 0.5s", "reading a long prompt"),
        settings={"read_timeout": 0.5, "max_retries": 0}),
    # (complete after the grace, FINISH_GRACE or half read_timeout: 1 s, not an error after 2 s; no [DONE] ever)
    row("finish-then-silence", Reply(TEXT, done=False, hold_open=30),
        code=EXIT_OK, words=(), partial=TEXT, settings={"read_timeout": 2}),
    row("finish-then-keep-alives", Reply(TEXT, done=False, hold_open=60, ping_every=0.05),
        code=EXIT_OK, words=(), partial=TEXT, settings={"read_timeout": 2}),
    row("finish-without-usage-then-silence", Reply(TEXT, usage=False, done=False, hold_open=30),
        code=EXIT_OK, words=(), partial=TEXT, settings={"read_timeout": 2}),
    row("reply-timeout-mid-reply", Reply(TEXT, stall_after=3, stall_seconds=30, ping_every=0.05),
        code=EXIT_FAILURE, words=("took longer than reply_timeout (1s)",), partial=TEXT[:12],
        settings={"reply_timeout": 1}),
    row("reply-timeout-before-the-headers", Reply(TEXT, first_delay=10),
        code=EXIT_NETWORK, words=("had not begun the reply within reply_timeout (0.5s)",),
        settings={"reply_timeout": 0.5}),
    *[row(f"not-a-chat-stream-{name}", body, code=EXIT_FAILURE, words=("{url} answered with", said), settings=NO_RETRY)
      for name, body, said in NOT_CHAT_STREAMS],
    # -- a drop or a stall after the headers, before any text: retried like a connection error -----
    row("drop-before-first-token-then-ok", Reply(TEXT, disconnect_after=0), Reply(TEXT),
        code=EXIT_OK, words=(), partial=TEXT, requests=2, settings=FAST),
    row("stall-before-first-token-then-ok", Reply(TEXT, stall_after=0, stall_seconds=5), Reply(TEXT),
        code=EXIT_OK, words=(), partial=TEXT, requests=2, settings={**FAST, "read_timeout": 0.5}),
    row("keep-alives-before-first-token-then-ok", Reply(TEXT, stall_after=0, stall_seconds=60, ping_every=0.05),
        Reply(TEXT), code=EXIT_OK, words=(), partial=TEXT, requests=2, settings={**FAST, "read_timeout": 0.5}),
    row("drop-before-first-token-gives-up", *[Reply(TEXT, disconnect_after=0)] * 3,
        code=EXIT_NETWORK, words=("broke off before the reply began",), requests=3, settings=FAST),
    # -- requests the server refuses ------------------------------------------------------------
    row("401", Error(401, "Incorrect API key provided: " + TEST_KEY, code="invalid_api_key"),
        code=EXIT_CONFIG, words=("401", "api key", "openai_api_key")),
    row("403", Error(403, f"Project lacks access for key {TEST_KEY}", code="unsupported_country_region_territory"),
        code=EXIT_CONFIG, words=("403", "permissions")),
    row("404-model", Error(404, "The model `no-such-model` does not exist", type="invalid_request_error",
                           code="model_not_found"),
        code=EXIT_FAILURE, words=("no-such-model", "not found", "--model"), args=("--model", "no-such-model")),
    row("404-url", Error(404, "Not Found"),
        code=EXIT_FAILURE, words=("nothing answers", "/v1")),
    row("400-context", Error(400, "This model's maximum context length is 128000 tokens.", code="context_length_exceeded"),
        code=EXIT_FAILURE, words=("context window", "/compact")),
    row("400-other-hostile-detail", Error(400, f"Invalid value for 'temperature' (key {TEST_KEY}) \x1b]0;pwned\x07"),
        code=EXIT_FAILURE, words=("400", "temperature", "settings")),
]


# --------------------------------------------------------------------------- #
# Where the base URL points
# --------------------------------------------------------------------------- #


@contextmanager
def blackhole() -> Iterator[str]:
    """A URL whose listener's accept queue is full, so a new connection is never accepted."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for sock in (*fillers, listener):
            sock.close()


@pytest.fixture
def url_for(srv: ChatServer):
    """The base URL a row talks to: the test server, or an address that cannot answer."""
    with ExitStack() as stack:

        def url(r: Row) -> str:
            if r.where == "refused":
                return f"http://127.0.0.1:{free_port()}/v1"
            if r.where == "dns":
                return "http://chatcli-no-such-host.invalid/v1"  # .invalid never resolves (RFC 2606)
            if r.where == "blackhole":
                return stack.enter_context(blackhole())
            return srv.base_url

        yield url


def expected_words(r: Row, url: str) -> list[str]:
    return [w.replace("{url}", url.lower()) for w in r.words]


def saved(home: Path) -> list[tuple[str, str, str | None]]:
    """(role, content, status) of every message in the default sessions store."""
    path = home / "data" / "chatcli" / "chatcli.db"
    with closing(sqlite3.connect(path)) as db:
        return list(db.execute("SELECT role, content, status FROM messages ORDER BY id"))


# --------------------------------------------------------------------------- #
# One-shot mode
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("r", MATRIX)
def test_one_shot(srv: ChatServer, run_chatcli, url_for, isolated_env: Path, r: Row) -> None:
    srv.script(*r.script)
    url = url_for(r)
    env = {"OPENAI_BASE_URL": url, **{f"CHATCLI_{k.upper()}": str(v) for k, v in r.settings.items()}}
    result = run_chatcli(*r.args, "hello", env=env)

    if r.succeeds:
        assert result.returncode == EXIT_OK, result.stderr
        assert result.stdout == r.partial + "\n"
        assert all(RETRY_LINE.match(line) for line in result.stderr.splitlines()), result.stderr
        assert_no_key(result)
    else:
        line = error_line(result, r.code).lower()
        for word in expected_words(r, url):
            assert word in line, line
        assert result.stdout == (r.partial + "\n" if r.partial else "")
    if r.requests is not None:
        assert len(srv.chat_requests) == r.requests

    # Nothing lost: the question is saved, and the partial reply too, marked unless complete.
    rows = saved(isolated_env)
    assert rows[0][:2] == ("user", "hello")
    if r.partial:
        assert rows[1][:2] == ("assistant", r.partial)
        assert (rows[1][2] == "complete") == r.succeeds, rows

    # And once the server behaves, asking again works.
    srv.reset()
    srv.script(Reply(RECOVERED))
    again = run_chatcli(*r.args, "hello")
    assert again.returncode == EXIT_OK, again.stderr
    assert again.stdout == RECOVERED + "\n"


# --------------------------------------------------------------------------- #
# The REPL
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("r", MATRIX)
def test_repl_then_retry(srv: ChatServer, url_for, tmp_path: Path, r: Row) -> None:
    url = url_for(r)
    settings = {"max_retries": 0, "read_timeout": 10.0, **r.settings}
    config = Config(base_url=url, api_key=TEST_KEY, **settings)
    client = ChatClient(config)
    journal = Journal.open(tmp_path / "chatcli.db")
    model = r.args[1] if r.args else "gpt-4o-mini"
    session = make_session(client=client, model=model, system=None, params={}, journal=journal)
    srv.script(*r.script)

    def recover() -> None:
        """The service comes back: the test server, at the row's address if it pointed elsewhere."""
        srv.reset()
        srv.script(Reply(RECOVERED))
        if r.where != "server":
            client._sdk = None
            client.config = Config(base_url=srv.base_url, api_key=TEST_KEY, **settings)

    with ExitStack() as stack:
        stack.callback(lambda: journal.store and journal.store.close())
        chat = piped_chat(stack, session, history=tmp_path / "history")
        # Ctrl-C clears the message put back at the prompt after a failure, then /retry.
        out = chat.run("hello" + ENTER, recover, CTRL_C, "/retry" + ENTER, pause=0)

    assert "Traceback" not in out
    assert TEST_KEY not in out and "\x1b" not in out.replace("\x1b[", "")  # nothing steers the terminal
    text = flat(out).lower()
    for word in expected_words(r, url):
        assert word in text, out
    if r.partial:
        assert flat(r.partial) in flat(out)
    # /retry sent the question alone, not a failed or partial reply with it, and showed the new reply.
    assert srv.chat_requests[-1].body["messages"] == [{"role": "user", "content": "hello"}]
    assert RECOVERED in out
    assert [(t.user, t.reply) for t in session.turns] == [("hello", RECOVERED)]
    with closing(sqlite3.connect(tmp_path / "chatcli.db")) as db:
        assert list(db.execute("SELECT role, content FROM messages ORDER BY id")) == [
            ("user", "hello"), ("assistant", RECOVERED),
        ]


# --------------------------------------------------------------------------- #
# How long the retries wait
# --------------------------------------------------------------------------- #


def gaps(srv: ChatServer) -> list[float]:
    at = [r.at for r in srv.chat_requests]
    return [b - a for a, b in zip(at, at[1:])]


def test_retry_after_is_waited_as_asked(srv: ChatServer, run_chatcli) -> None:
    srv.script(Error(429, "slow down", headers={"retry-after": "1"}),
               Error(429, "slow down", headers={"retry-after-ms": "400"}), Reply(TEXT))
    result = run_chatcli("hello", env={"CHATCLI_MAX_RETRIES": "2"})

    assert result.returncode == EXIT_OK and result.stdout == TEXT + "\n", result.stderr
    assert result.stderr.splitlines() == [
        "chatcli: rate limited, retrying in 1.0s (attempt 1/2).",
        "chatcli: rate limited, retrying in 0.4s (attempt 2/2).",
    ]
    first, second = gaps(srv)
    assert 1.0 <= first < 1.5 and 0.4 <= second < 0.9, (first, second)


def test_server_errors_back_off_exponentially_with_jitter(srv: ChatServer, run_chatcli) -> None:
    # No Retry-After: the waits double (0.5 s, 1 s, 2 s, ...), each cut by a random 0-25%.
    srv.script(*[Error(503, "overloaded")] * 2, Reply(TEXT))
    result = run_chatcli("hello", env={"CHATCLI_MAX_RETRIES": "2"})

    assert result.returncode == EXIT_OK and result.stdout == TEXT + "\n", result.stderr
    said = [float(RETRY_LINE.match(line).group(0).split("retrying in ")[1].split("s")[0])
            for line in result.stderr.splitlines()]
    waited = gaps(srv)
    assert len(said) == len(waited) == 2
    for base, wait, told in zip((0.5, 1.0), waited, said):
        assert 0.75 * base - 0.05 <= told <= base + 0.05, said
        assert 0.75 * base <= wait < base + 0.4, waited
    assert waited[0] < waited[1]


def test_jitter_spreads_the_waits_of_clients_that_failed_together(srv: ChatServer) -> None:
    """Six clients get a 500 at the same moment; they do not all come back at the same instant."""
    from chatcli.base.events import Retrying

    told: list[float] = []
    srv.script(*[Error(500, "boom")] * 6)
    srv.default = Reply("ok")

    ready = threading.Barrier(6)

    def ask() -> None:
        client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=1))
        client.warm_up()  # built before the barrier: on a busy machine a late first request took a retry's 500
        ready.wait(timeout=10)
        for r in client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}):
            if isinstance(r, Retrying):
                told.append(r.seconds)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(told) == 6 and all(0.375 <= t <= 0.5 for t in told), told
    assert statistics.pstdev(told) > 0.002 and len({round(t, 4) for t in told}) >= 5, told
