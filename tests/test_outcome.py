"""One outcome, two front ends: the REPL and one-shot mode say the same words for the same end of a turn.

Each end is scripted on tests/support/server.py and met twice: by `chatcli "q"` (the words on stderr and the
exit code) and by a REPL over a pipe (the words on its screen). One-shot mode writes a notice as
`chatcli: words.` and an error as `chatcli: sentence`; the REPL draws a notice as `[words]` and an
error as the sentence. Both come from core.turn.outcome_of.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatcli.base.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NETWORK, EXIT_OK
from chatcli.config.settings import Config
from tests.support.keys import TEST_KEY
from tests.support.repl import ENTER, Chat, flat, piped_chat
from tests.support.server import ChatServer, Reply
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(40)

TEXT = "alpha beta gamma delta epsilon"
KEPT = " (partial reply kept)"


@dataclass(frozen=True)
class End:
    """One way a turn ends: what the server does, and what both front ends must say about it."""

    reply: Any  # the server's behaviour
    words: str  # said by both ({url}: the server's address)
    error: bool  # drawn as an error (a sentence) rather than a notice
    code: int  # one-shot mode's exit code
    interrupt: bool = False  # Ctrl-C once the reply has begun (or stalled before it)
    max_tokens: int | None = None


STALLED = dict(chunk_size=6, stall_after=1, stall_seconds=5)

ENDS = {
    "interrupted": End(Reply(TEXT, **STALLED), "interrupted" + KEPT, error=False, code=EXIT_INTERRUPTED,
                       interrupt=True),
    "interrupted-before-the-reply": End(Reply(TEXT, chunk_size=6, stall_after=0, stall_seconds=5), "interrupted",
                                        error=False, code=EXIT_INTERRUPTED, interrupt=True),
    "error-mid-reply": End(Reply(TEXT, chunk_size=6, disconnect_after=1),
                           "The connection to {url} broke off in the middle of the reply; try again" + KEPT + ".",
                           error=True, code=EXIT_NETWORK),
    "no-finish": End(Reply(TEXT, finish_reason=None),
                     "The reply stopped before the server said it was finished, so it may be cut short; try again"
                     + KEPT + ".", error=True, code=EXIT_FAILURE),
    "length": End(Reply(TEXT, finish_reason="length"), "the reply reached the max_tokens limit, so it may be cut short",
                  error=False, code=EXIT_OK, max_tokens=6),
    "length-before-any-answer": End(
        Reply("", reasoning="thinking " * 10, finish_reason="length"),
        "The model used its whole max_tokens limit on reasoning before it wrote any answer; raise it with "
        "--max-tokens or /set max_tokens (reasoning models need room to think), and ask again.",
        error=True, code=EXIT_FAILURE, max_tokens=6),
    "content-filter": End(Reply(TEXT, finish_reason="content_filter"),
                          "the server's content filter stopped the reply, so it may be cut short",
                          error=False, code=EXIT_OK),
}


@pytest.fixture
def chat(srv: ChatServer, tmp_path: Path):
    """A REPL over a pipe, drawing plain text to a string, on a session as the CLI builds it."""
    with ExitStack() as stack:

        def make(*, params: dict | None = None) -> Chat:
            config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
            session = make_session(config=config, model="o3-mini", params=dict(params or {}))
            return piped_chat(stack, session, markdown=False, history=tmp_path / "history")

        yield make


def interrupt_once_it_began(srv: ChatServer) -> threading.Thread:
    """Ctrl-C once the request is in and its first piece has come: SIGINT, sent to the main thread so
    that it cuts short the wait for the stalled stream, as a terminal's Ctrl-C does."""

    def press() -> None:
        deadline = time.monotonic() + 10
        while not srv.chat_requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.6)  # the first piece is in; the rest is stalled for seconds
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def one_shot(srv: ChatServer, run_chatcli, end: End):
    srv.script(end.reply)
    flags = ["--max-tokens", str(end.max_tokens)] if end.max_tokens else []
    if end.interrupt:
        interrupt_once_it_began(srv)
    return run_chatcli("-m", "o3-mini", *flags, "q", env={"CHATCLI_MAX_RETRIES": "0"})


def repl_screen(srv: ChatServer, chat, end: End) -> tuple[str, Any]:
    srv.reset()
    srv.script(end.reply)
    params = {"max_tokens": end.max_tokens} if end.max_tokens else None
    driver = chat(params=params)
    if end.interrupt:
        interrupt_once_it_began(srv)
    return driver.run("q", ENTER), driver.session


@pytest.mark.parametrize("name", list(ENDS))
def test_both_front_ends_say_the_same_words_for_the_same_end(srv, run_chatcli, chat, name):
    end = ENDS[name]
    words = end.words.replace("{url}", srv.base_url)

    result = one_shot(srv, run_chatcli, end)
    screen, _ = repl_screen(srv, chat, end)

    # One-shot mode: the words, alone on stderr, and the exit code of that end.
    assert result.stderr == f"chatcli: {words if end.error else words + '.'}\n", result.stderr
    assert result.returncode == end.code
    # The REPL: the same words on the screen, a notice in brackets.
    shown = words if end.error else f"[{words}]"
    assert shown in flat(screen), screen
    assert flat(screen).count(words) == 1


@pytest.mark.parametrize("name", ["interrupted", "no-finish", "length", "content-filter"])
def test_the_words_are_the_outcome_of_the_turn(srv, run_chatcli, chat, name):
    """What the REPL shows and what one-shot mode writes are outcome_of's sentences for the turn."""
    from chatcli.core.turn import outcome_of

    end = ENDS[name]
    result = one_shot(srv, run_chatcli, end)
    screen, session = repl_screen(srv, chat, end)

    outcome = outcome_of(session.turns[-1])
    assert outcome.status == session.turns[-1].status
    assert outcome.exit_code == result.returncode == end.code
    assert outcome.partial == (end.code != EXIT_OK)
    assert [f"chatcli: {sentence.line}" for sentence in outcome.sentences] == result.stderr.splitlines()
    for sentence in outcome.sentences:
        assert (sentence.text if sentence.error else f"[{sentence.text}]") in flat(screen)
