"""Streams that never end, or end wrongly, and the terminal under them (issue 14).

- read_timeout counts time without content: SSE keep-alives (`: ping`) do not hold it off;
  reply_timeout bounds a whole reply;
- a finish reason followed by silence, instead of `[DONE]`, ends the reply complete within
  seconds;
- a 200 body that is no chat stream is one sentence naming it, and the message comes back;
- a drop or a stall after the headers but before any text is retried, and said;
- the terminal going away mid-reply takes the SIGHUP path;
- Ctrl-C stops a reply from its first moment, in a terminal that never answers a
  cursor-position request.

Each row of tests/test_faults.py's matrix covers these in one-shot mode and the REPL too;
these tests add the clock, the terminal and what the fault matrix cannot see.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import ExitStack, closing
from pathlib import Path

import pexpect
import pytest

from chatcli.base.errors import EXIT_FAILURE, EXIT_NETWORK, EXIT_OK, ChatError
from chatcli.base.events import Finish, Retrying, Served, TextDelta, Usage
from chatcli.config.settings import Config
from chatcli.config.table import SETTINGS_BY_KEY
from chatcli.core.journal import Journal
from chatcli.core.session import Session
from chatcli.llm.client import ChatClient
from tests.support.faults import NOT_CHAT_STREAMS
from tests.support.keys import TEST_KEY
from tests.support.pty import PROMPT, TIMEOUT, expect_prompt, quit_with_ctrl_d
from tests.support.repl import CTRL_C, ENTER, flat, piped_chat
from tests.support.running import RETRY_LINE, error_line
from tests.support.server import Body, Error, Reply
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(40)

TEXT = "The quick brown fox jumps over the lazy dog."
SLOW = "word " * 2000  # 2000 chunks of 5 characters
COMPLETION = {"id": "x", "object": "chat.completion", "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def make_client(srv, **settings) -> ChatClient:
    return ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, **{"max_retries": 0, **settings}))


def stream(client: ChatClient) -> tuple[list, ChatError | None, float]:
    """The events of one reply, the error it ended with, and the seconds it took (openai's import apart)."""
    client.warm_up()
    events: list = []
    started = time.monotonic()
    try:
        for event in client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}):
            events.append(event)
    except ChatError as exc:
        return events, exc, time.monotonic() - started
    return events, None, time.monotonic() - started


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def repl_run(srv, tmp_path: Path, *keys: str, **settings) -> tuple[str, Session]:
    """A REPL over a pipe, as the fault matrix drives it, with these settings; what it printed."""
    config = Config(base_url=srv.base_url, api_key=TEST_KEY, **{"max_retries": 0, "read_timeout": 10.0, **settings})
    journal = Journal.open(tmp_path / "chatcli.db")
    session = make_session(config=config, model="gpt-4o-mini", journal=journal)
    with ExitStack() as stack:
        stack.callback(lambda: journal.store and journal.store.close())
        out = piped_chat(stack, session, history=tmp_path / "history").run(*keys, pause=0)
    assert "Traceback" not in out and TEST_KEY not in out
    return out, session


# --------------------------------------------------------------------------- #
# read_timeout counts content, not bytes; reply_timeout counts the whole reply
# --------------------------------------------------------------------------- #


def test_keep_alives_forever_mid_reply_end_it_after_read_timeout_not_never(srv):
    srv.script(Reply(TEXT, chunk_size=4, stall_after=2, stall_seconds=30, ping_every=0.05))
    events, error, took = stream(make_client(srv, read_timeout=0.5))

    assert text_of(events) == TEXT[:8]  # what came is kept
    assert error is not None and error.exit_code == EXIT_NETWORK
    assert "sent only keep-alives, no text, for more than 0.5s in the middle of the reply" in error.message
    assert 0.5 <= took < 2.0, took  # the keep-alives came every 50 ms, and did not hold it off


def test_keep_alives_before_any_text_end_it_after_read_timeout(srv):
    srv.script(Reply(TEXT, stall_after=0, stall_seconds=30, ping_every=0.05))
    events, error, took = stream(make_client(srv, read_timeout=0.5))

    assert text_of(events) == "" and error is not None
    assert "sent only keep-alives, no text, for more than 0.5s: it may still be reading a long prompt" in error.message
    assert 0.5 <= took < 2.0, took


def test_keep_alives_between_tokens_do_not_end_a_reply_that_flows(srv):
    srv.script(Reply(TEXT, chunk_size=4, delay=0.2, ping_every=0.05, stall_after=5, stall_seconds=0.1))
    events, error, _ = stream(make_client(srv, read_timeout=0.5))
    assert error is None and text_of(events) == TEXT and Finish("stop") in events


def test_time_the_reader_spends_on_an_event_is_not_silence(srv):
    """Drawing a long block may take longer than read_timeout; the server was not silent meanwhile."""
    srv.script(Reply(TEXT, chunk_size=4, delay=0.05))
    client = make_client(srv, read_timeout=0.5)
    client.warm_up()
    got = []
    for event in client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}):
        got.append(event)
        if isinstance(event, TextDelta) and len(got) < 4:
            time.sleep(0.7)  # a slow draw, past read_timeout
    assert text_of(got) == TEXT and Finish("stop") in got


def test_a_whole_completion_is_no_wait_however_long_it_takes_to_draw(srv):
    """A server that ignored stream=true sent everything at once; drawing it is not silence."""
    srv.script(Error(200, body=json.dumps(COMPLETION).encode()))
    client = make_client(srv, read_timeout=0.3)
    client.warm_up()
    got = []
    for event in client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}):
        got.append(event)
        time.sleep(0.2)  # four events, 0.8 s in all: past read_timeout
    assert text_of(got) == "whole answer" and Finish("stop") in got


def test_reply_timeout_is_off_by_default_and_documented():
    setting = SETTINGS_BY_KEY["reply_timeout"]
    assert setting.default == 0 and Config().reply_timeout == 0
    assert "0 means no limit" in setting.help


def test_reply_timeout_cuts_a_reply_that_keeps_flowing(srv):
    """Text every 100 ms never trips read_timeout; reply_timeout ends it, the text kept."""
    srv.script(Reply("word " * 100, chunk_size=5, delay=0.1))
    events, error, took = stream(make_client(srv, read_timeout=5, reply_timeout=1))

    assert error is not None and error.exit_code == EXIT_FAILURE
    assert "took longer than reply_timeout (1s), so it stopped there" in error.message
    assert 5 <= len(text_of(events).split()) < 15, text_of(events)
    assert 1.0 <= took < 1.8, took


def test_reply_timeout_bounds_the_retries_before_the_headers_too(srv):
    """Each try waits read_timeout for the headers; reply_timeout ends the whole round of them."""
    srv.script(*[Reply(TEXT, first_delay=10)] * 4)
    _, error, took = stream(make_client(srv, read_timeout=0.6, reply_timeout=1, max_retries=3))

    assert error is not None and error.exit_code == EXIT_NETWORK
    assert "had not begun the reply within reply_timeout (1s" in error.message
    assert took < 1.6, took


# --------------------------------------------------------------------------- #
# A finish reason, then silence instead of [DONE]
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("usage", [True, False], ids=["with-usage", "without-usage"])
def test_a_finished_reply_on_a_connection_left_open_ends_complete_within_seconds(srv, run_chatcli, isolated_env, usage):
    srv.script(Reply(TEXT, usage=usage, done=False, hold_open=30))
    started = time.monotonic()
    result = run_chatcli("hello", env={"CHATCLI_READ_TIMEOUT": "30"})
    took = time.monotonic() - started

    assert result.returncode == EXIT_OK and result.stdout == TEXT + "\n" and result.stderr == "", result.stderr
    assert took < 4, took  # not read_timeout's 30 s
    with closing(sqlite3.connect(isolated_env / "data" / "chatcli" / "chatcli.db")) as db:
        assert db.execute("SELECT content, status FROM messages WHERE role = 'assistant'").fetchall() == [
            (TEXT, "complete")]


def test_a_finish_then_silence_in_the_repl_shows_no_error(srv, tmp_path):
    srv.script(Reply(TEXT, done=False, hold_open=30))
    started = time.monotonic()
    out, session = repl_run(srv, tmp_path, "hello" + ENTER, read_timeout=30)
    assert time.monotonic() - started < 6
    assert TEXT in out and "went silent" not in out and "cut short" not in out and "back at the prompt" not in out
    assert [(t.reply, t.status) for t in session.turns] == [(TEXT, "complete")]


# --------------------------------------------------------------------------- #
# A 200 that is no chat stream
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("body, said", [pytest.param(body, said, id=name) for name, body, said in NOT_CHAT_STREAMS])
def test_a_body_that_is_no_chat_stream_is_named_and_the_message_comes_back(srv, tmp_path, body, said):
    srv.script(body)
    out, session = repl_run(srv, tmp_path, "hello" + ENTER, CTRL_C)  # Ctrl-C clears the message put back

    text = flat(out)
    assert f"The server at {srv.base_url} answered with" in text and said in text.lower(), out
    assert "Your message is back at the prompt" in text
    assert "may be cut short" not in text and "internal error" not in text
    assert [(t.user, t.reply, t.status) for t in session.turns] == [("hello", "", "error")]


@pytest.mark.parametrize("body, said", [pytest.param(body, said, id=name) for name, body, said in NOT_CHAT_STREAMS])
def test_one_shot_says_what_came_in_one_sentence_and_writes_no_crash_log(srv, run_chatcli, isolated_env, body, said):
    srv.script(body)
    result = run_chatcli("hello", env={"CHATCLI_MAX_RETRIES": "0"})

    line = error_line(result, EXIT_FAILURE)
    assert line.lower().startswith(f"chatcli: the server at {srv.base_url} answered with") and said in line.lower()
    assert result.stdout == ""
    assert not (isolated_env / "state" / "chatcli" / "crash.log").exists()


def test_damaged_gzip_after_text_keeps_the_text_and_says_the_rest_could_not_be_read(srv):
    """Stored (level 0) deflate blocks: the first decodes to whole chunks, the second's header is damaged."""
    import gzip
    import struct

    chunk = 'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n'
    packed = bytearray(gzip.compress("".join(chunk % f"piece {n:05d} " for n in range(3000)).encode(), compresslevel=0))
    first = 10  # past gzip's header: a stored block is a byte, LEN and NLEN (its complement), then LEN bytes
    (length,) = struct.unpack("<H", packed[first + 1 : first + 3])
    second = first + 5 + length
    packed[second + 3 : second + 5] = packed[second + 1 : second + 3]  # NLEN no longer LEN's complement
    srv.script(Body(bytes(packed), headers={"Content-Encoding": "gzip"}))
    events, error, _ = stream(make_client(srv))

    assert text_of(events).startswith("piece 00000 piece 00001 ")
    assert error is not None and "could not be read: its compressed encoding is damaged" in error.message


def test_a_whole_completion_labelled_an_event_stream_is_still_the_reply(srv):
    srv.script(Body(json.dumps(COMPLETION, indent=2).encode()))
    events, error, _ = stream(make_client(srv))
    assert error is None
    assert events == [Served("m"), TextDelta("whole answer"), Finish("stop"), Usage(3, 2, 5)]


# --------------------------------------------------------------------------- #
# A drop or a stall before the first token: retried, and said
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("fault, reason", [
    (Reply(TEXT, disconnect_after=0), "the connection broke off before the reply began"),
    (Reply(TEXT, stall_after=0, stall_seconds=5), "the server sent no text for 0.5s"),
    (Reply(TEXT, stall_after=0, stall_seconds=5, ping_every=0.05), "the server sent only keep-alives for 0.5s"),
], ids=["drop", "stall", "keep-alives"])
def test_a_failure_after_the_headers_before_any_text_is_retried_and_said(srv, fault, reason):
    srv.script(fault, Reply(TEXT))
    events, error, _ = stream(make_client(srv, read_timeout=0.5, max_retries=2))

    assert error is None and text_of(events) == TEXT
    assert [str(e) for e in events if isinstance(e, Retrying)] == [f"{reason}, retrying in 0.5s (attempt 1/2)"]
    assert len(srv.chat_requests) == 2


def test_retries_before_the_first_token_and_the_sdk_retries_share_max_retries(srv):
    srv.script(Error(503, "busy", headers={"retry-after-ms": "1"}), Reply(TEXT, disconnect_after=0), Reply(TEXT))
    events, error, _ = stream(make_client(srv, max_retries=2))
    assert error is None and text_of(events) == TEXT
    assert [(e.attempt, e.of) for e in events if isinstance(e, Retrying)] == [(1, 2), (2, 2)]  # the 503, then the drop
    srv.reset()
    srv.script(Error(503, "busy", headers={"retry-after-ms": "1"}), *[Reply(TEXT, disconnect_after=0)] * 3)
    _, error, _ = stream(make_client(srv, max_retries=2))
    assert error is not None and "broke off before the reply began" in error.message
    assert len(srv.chat_requests) == 3


def test_after_text_has_been_shown_nothing_is_retried(srv, run_chatcli):
    srv.script(Reply(TEXT, chunk_size=4, disconnect_after=2), Reply("a second reply"))
    result = run_chatcli("hello", env={"CHATCLI_MAX_RETRIES": "2"})

    line = error_line(result, EXIT_NETWORK)
    assert "broke off in the middle of the reply" in line and result.stdout == TEXT[:8] + "\n"
    assert not any(RETRY_LINE.match(x) for x in result.stderr.splitlines()) and len(srv.chat_requests) == 1


def test_the_repl_says_the_retry_before_the_reply(srv, tmp_path):
    srv.script(Reply(TEXT, disconnect_after=0), Reply(TEXT))
    out, session = repl_run(srv, tmp_path, "hello" + ENTER, max_retries=1)

    text = flat(out)
    said = "the connection broke off before the reply began, retrying in 0.5s (attempt 1/1)"
    assert said in text and text.index(said) < text.index(TEXT)
    assert [(t.reply, t.status) for t in session.turns] == [(TEXT, "complete")]


# --------------------------------------------------------------------------- #
# The terminal goes away mid-reply
# --------------------------------------------------------------------------- #


def close_the_terminal(child: pexpect.spawn) -> int | None:
    """Close the pty's master side, as a terminal window closing does; the exit code chatcli ends with."""
    child.ptyproc.fileobj.close()
    deadline = time.monotonic() + TIMEOUT
    while child.ptyproc.isalive():
        assert time.monotonic() < deadline, "chatcli did not exit after its terminal closed"
        time.sleep(0.05)
    return child.ptyproc.exitstatus if child.ptyproc.signalstatus is None else -child.ptyproc.signalstatus


@pytest.mark.parametrize("args", [(), ("--plain",), ("tell me",)], ids=["repl", "repl-plain", "one-shot"])
def test_closing_the_terminal_mid_reply_takes_the_sighup_path(srv, spawn_chatcli, isolated_env, args):
    srv.script(Reply(SLOW, chunk_size=5, delay=0.05))  # slow enough not to fill the pty, which nobody reads
    child = spawn_chatcli(*args)
    if args != ("tell me",):
        expect_prompt(child)
        child.send("tell me\r")
    child.expect_exact("word word word word", timeout=TIMEOUT)

    assert close_the_terminal(child) == 129  # 128 + SIGHUP, not 1

    assert not (isolated_env / "state" / "chatcli" / "crash.log").exists()
    with closing(sqlite3.connect(isolated_env / "data" / "chatcli" / "chatcli.db")) as db:
        rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "tell me", None)
    assert rows[1][0] == "assistant" and rows[1][2] == "interrupted" and rows[1][1].startswith("word word word")


# --------------------------------------------------------------------------- #
# Ctrl-C from the first moment of a reply, in a terminal that never answers CPR
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("after", [0.3, 0.0], ids=["as-the-reply-waits", "right-after-enter"])
def test_ctrl_c_stops_a_reply_at_once_in_a_terminal_that_never_answers_cpr(srv, spawn_chatcli, after):
    # PROMPT_TOOLKIT_NO_CPR=0: prompt-toolkit asks where the cursor is, and pexpect never answers.
    srv.default = Reply(TEXT, stall_after=0, stall_seconds=20)
    child = spawn_chatcli(env={"PROMPT_TOOLKIT_NO_CPR": "0", "CHATCLI_READ_TIMEOUT": "15"})
    child.expect_exact("\x1b[6n", timeout=TIMEOUT)  # asked, and left unanswered
    expect_prompt(child)
    child.send("hello\r")
    time.sleep(after)
    pressed = time.monotonic()
    child.sendcontrol("c")
    child.expect(r"\[interrupted[^\]]*\]", timeout=5)
    assert time.monotonic() - pressed < 2.5  # at once, not after read_timeout's 15 s
    if after:
        assert child.after == "[interrupted]"  # the reply had begun: it is the reply that stopped
    else:  # the line had not left the prompt: nothing was sent, and it is back
        assert child.after in ("[interrupted]", "[interrupted before it was sent; the message is back at the prompt]")
    child.expect(PROMPT, timeout=TIMEOUT)
    child.sendcontrol("c")  # clears a message put back at the prompt
    expect_prompt(child)
    quit_with_ctrl_d(child)


def test_ctrl_c_after_enter_while_the_prompt_lets_go_gives_the_line_back(srv, spawn_chatcli):
    """A Ctrl-C typed before prompt-toolkit has left raw mode is a key, not SIGINT: it still stops the send."""
    child = spawn_chatcli()
    expect_prompt(child)
    child.send("hello\r\x03")  # Enter and Ctrl-C in one write: both reach the prompt in raw mode
    child.expect(r"\[interrupted[^\]]*\]", timeout=5)
    assert child.after == "[interrupted before it was sent; the message is back at the prompt]"
    child.expect(PROMPT, timeout=TIMEOUT)
    child.expect_exact("hello", timeout=TIMEOUT)  # back at the prompt
    assert srv.chat_requests == []
    child.send("\r")  # and Enter sends it
    child.expect_exact("echo: hello", timeout=TIMEOUT)
    expect_prompt(child)
    quit_with_ctrl_d(child)
