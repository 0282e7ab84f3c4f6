"""One-shot mode end to end: the installed `chatcli` against tests/support/server.py.

Every test runs the real console script in a subprocess and looks only at
what a user can see (stdout, stderr, the exit code) and at what the server
received. stdout is a pipe here, so chatcli must write plain text.
"""

from __future__ import annotations

import io
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import chatcli
from chatcli.base.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
)
from tests.support.keys import TEST_KEY
from tests.support.running import CHATCLI, CONTROL, assert_no_key, bash_completes, error_line, free_port
from tests.support.server import ChatServer, Error, Reply
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(20)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert_no_key(result)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stderr == ""


def user_message(srv: ChatServer) -> str:
    messages = srv.chat_requests[-1].body["messages"]
    assert messages[-1]["role"] == "user"
    return messages[-1]["content"]


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


# --------------------------------------------------------------------------- #
# asking
# --------------------------------------------------------------------------- #


def test_question_prints_reply_and_streams(srv: ChatServer, run_chatcli) -> None:
    srv.script(Reply("The sky scatters blue light.", chunk_size=3))
    result = run_chatcli("why is the sky blue?", process=True)  # the installed console script, end to end

    assert_ok(result)
    assert result.stdout == "The sky scatters blue light.\n"
    [request] = srv.chat_requests
    body = request.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "user", "content": "why is the sky blue?"}]
    # Unset settings are left to the server, not sent as null.
    assert "temperature" not in body and "max_tokens" not in body
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"


def test_piped_text_follows_the_instruction(srv: ChatServer, run_chatcli) -> None:
    piped = "Quarterly report\nRevenue rose 12%.\n"
    result = run_chatcli("summarize this", input=piped, process=True)

    assert_ok(result)
    message = user_message(srv)
    assert message.startswith("summarize this")
    assert piped.strip() in message
    assert message.index("summarize this") < message.index("Quarterly report")


def test_stdin_file_alone_is_the_message(srv: ChatServer, chat_env: dict[str, str], tmp_path: Path) -> None:
    text = "Notes — ünïcode and all.\nSecond line.\n"
    notes = tmp_path / "notes.txt"
    notes.write_text(text, encoding="utf-8")
    with notes.open("rb") as stdin:  # chatcli < notes.txt
        result = subprocess.run([str(CHATCLI)], stdin=stdin, capture_output=True, text=True, env=chat_env, timeout=30)

    assert_ok(result)
    assert user_message(srv) == text
    assert result.stdout == "echo: " + text


def test_system_prompt_is_the_first_message(srv: ChatServer, run_chatcli) -> None:
    result = run_chatcli("--system", "You are a terse SQL expert.", "list", "tables")

    assert_ok(result)
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "You are a terse SQL expert."},
        {"role": "user", "content": "list tables"},
    ]


def test_model_temperature_and_max_tokens_reach_the_request(srv: ChatServer, run_chatcli) -> None:
    result = run_chatcli("--model", "gpt-4o", "--temperature", "0.25", "--max-tokens", "42", "hi")

    assert_ok(result)
    body = srv.chat_requests[-1].body
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 42


def test_python_dash_m_works_too(srv: ChatServer, chat_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatcli", "q"], input="", capture_output=True, text=True, env=chat_env, timeout=30
    )
    assert_ok(result)
    assert result.stdout == "echo: q\n"
    assert user_message(srv) == "q"


def test_reply_cut_by_max_tokens_succeeds_with_a_warning(srv: ChatServer, run_chatcli) -> None:
    srv.script(Reply("Once upon a", finish_reason="length"))
    result = run_chatcli("tell a story")

    assert result.returncode == EXIT_OK
    assert result.stdout == "Once upon a\n"
    line = error_line(result, EXIT_OK)
    assert "max_tokens" in line


# --------------------------------------------------------------------------- #
# plain output and hostile text
# --------------------------------------------------------------------------- #


def test_markdown_reaches_a_pipe_exactly_as_written(srv: ChatServer, run_chatcli) -> None:
    reply = "# Title\n\n**bold** and `code`"
    srv.script(Reply(reply, chunk_size=3))
    # Even when colour is forced, a pipe gets the model's text untouched.
    result = run_chatcli("format something", env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})

    assert_ok(result)
    assert result.stdout == reply + "\n"
    assert "\x1b" not in result.stdout


HOSTILE = (
    "Hello \x1b[31mred\x1b[0m world\n"
    "\x1b]0;title\x07 click \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ here\n"
    "wipe\x9b2J out\r over\x07 beep\x00 end"
)
VISIBLE = ["Hello", "red", "world", "click", "link", "here", "wipe", "out", "over", "beep", "end"]


@pytest.mark.parametrize("chunk_size", [64, 1], ids=["whole", "split-across-chunks"])
def test_control_sequences_never_reach_stdout(srv: ChatServer, run_chatcli, chunk_size: int) -> None:
    srv.script(Reply(HOSTILE, chunk_size=chunk_size))
    result = run_chatcli("say something nasty")

    assert_ok(result)
    assert not CONTROL.search(result.stdout), repr(result.stdout)
    # The words a terminal would have shown are still there, in order.
    assert re.search(r"\W+".join(VISIBLE), result.stdout), repr(result.stdout)


# --------------------------------------------------------------------------- #
# errors: one sentence on stderr and the right exit code
# --------------------------------------------------------------------------- #

# The fault matrix (HTTP errors, retries, the network, broken streams) is in test_faults.py.


def test_missing_key_for_openai_says_how_to_set_one(chat_env: dict[str, str]) -> None:
    env = without(chat_env, "OPENAI_API_KEY", "OPENAI_BASE_URL")
    result = subprocess.run([str(CHATCLI), "hello"], input="", capture_output=True, text=True, env=env, timeout=30)

    line = error_line(result, EXIT_CONFIG)
    assert "OPENAI_API_KEY" in line
    assert ".env" in line
    assert "config" in line
    assert result.stdout == ""


def test_local_server_asking_for_a_key_gets_exit_3(srv: ChatServer, run_chatcli) -> None:
    srv.api_key = "sk-the-server-wants-this"
    result = run_chatcli("hello", env={"OPENAI_API_KEY": ""})

    line = error_line(result, EXIT_CONFIG)
    assert "401" in line and "OPENAI_API_KEY" in line
    assert "sk-the-server-wants-this" not in result.stderr


# --------------------------------------------------------------------------- #
# bad command lines and configuration
# --------------------------------------------------------------------------- #


# Every flag that takes a value, with values it must refuse; the flags without one take none.
BAD_FLAGS = [
    (["--temperature", "3"], "--temperature", "from 0 to 2"),
    (["-t", "abc"], "--temperature", "from 0 to 2"),
    (["-t", "1e309"], "--temperature", "from 0 to 2"),
    (["--max-tokens", "0"], "--max-tokens", "at least 1"),
    (["--max-tokens", "abc"], "--max-tokens", "at least 1"),
    (["--max-tokens", "1.5"], "--max-tokens", "at least 1"),
    (["--model", ""], "--model", "a non-empty string"),
    (["-m", " "], "--model", "a non-empty string"),
    (["--base-url", "ftp://example.com/v1"], "--base-url", "http:// or https://"),
    (["--base-url", "http://localhost:99999/v1"], "--base-url", "not a valid url"),
    (["--base-url", ""], "--base-url", "a non-empty string"),
    (["--resume", "abc"], "--resume", "session id"),
    (["--log-file", "/proc/no/such/dir/chatcli.log"], "--log-file", "cannot write"),
    (["--log-file", "~no-such-user-here/chatcli.log"], "--log-file", "home directory that does not exist"),
    (["--log-file", ""], "--log-file", "needs a file name"),
    (["--plain=yes"], "--plain", "ignored explicit argument"),
    (["--frobnicate"], "--frobnicate", "unrecognized"),
    (["--temperature"], "--temperature", "expected one argument"),
]


@pytest.mark.parametrize("args, flag, allowed", BAD_FLAGS, ids=[" ".join(a[0]) or "empty" for a in BAD_FLAGS])
def test_bad_flags_and_values_are_usage_errors(srv: ChatServer, run_chatcli, args, flag, allowed) -> None:
    result = run_chatcli(*args, *(["hello"] if args != ["--temperature"] else []))

    line = error_line(result, EXIT_USAGE)
    assert flag in line and allowed in line.lower(), line
    if len(args) == 2 and args[1].strip():
        assert args[1] in line  # the value that was wrong
    assert result.stdout == ""
    assert srv.requests == []


def test_temperature_nan_is_a_usage_error(srv: ChatServer, run_chatcli) -> None:
    result = run_chatcli("--temperature", "nan", "hello")

    line = error_line(result, EXIT_USAGE)
    assert "--temperature" in line
    assert srv.requests == []


def test_bad_config_file_is_exit_3(srv: ChatServer, run_chatcli, isolated_env: Path) -> None:
    path = isolated_env / "config" / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("temprature = 0.5\n")
    result = run_chatcli("hello")

    line = error_line(result, EXIT_CONFIG)
    assert str(path) in line and "temperature" in line
    assert srv.requests == []


@pytest.mark.parametrize("stdin", ["", " \n\t\n"], ids=["empty", "blank"])
def test_nothing_to_send_is_a_usage_error(srv: ChatServer, run_chatcli, stdin: str) -> None:
    result = run_chatcli(input=stdin)

    line = error_line(result, EXIT_USAGE)
    assert "nothing to send" in line.lower()
    assert srv.requests == []


def test_binary_stdin_is_a_usage_error(srv: ChatServer, chat_env: dict[str, str]) -> None:
    env = {**chat_env, "LC_ALL": "C.UTF-8"}
    result = subprocess.run(
        [str(CHATCLI), "describe this"], input=b"\x89PNG\r\n\x1a\n\xff\xfe\x00", capture_output=True, env=env, timeout=30
    )
    decoded = subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    )
    line = error_line(decoded, EXIT_USAGE)
    assert "utf-8" in line.lower()
    assert srv.requests == []


def test_closed_stdin_still_asks_the_question(srv: ChatServer, chat_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(CHATCLI), "hello"], capture_output=True, text=True, env=chat_env, timeout=30,
        preexec_fn=lambda: os.close(0),
    )
    assert "Traceback" not in result.stderr
    assert_ok(result)
    assert result.stdout == "echo: hello\n"


# --------------------------------------------------------------------------- #
# help, version, Ctrl-C, a closed pipe
# --------------------------------------------------------------------------- #


def test_help_shows_examples(run_chatcli) -> None:
    result = run_chatcli("--help")

    assert_ok(result)
    assert "examples:" in result.stdout
    assert 'chatcli "why is the sky blue?"' in result.stdout
    assert "--temperature" in result.stdout and "exit codes" in result.stdout


def test_version(run_chatcli) -> None:
    result = run_chatcli("--version")

    assert_ok(result)
    assert result.stdout.strip() == f"chatcli {chatcli.__version__}"


def _read_until(proc: subprocess.Popen, wanted: bytes, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while wanted not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {wanted!r}; got {got!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout closed early; got {got!r}"
            got += chunk
    return got


def test_ctrl_c_keeps_the_partial_reply_and_exits_130(srv: ChatServer, chat_env: dict[str, str], tmp_path: Path) -> None:
    srv.script(Reply("Hello there, general Kenobi.", chunk_size=6, stall_after=1, stall_seconds=5))
    log = tmp_path / "chatcli.log"
    proc = subprocess.Popen(
        [str(CHATCLI), "--log-file", str(log), "hello"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=chat_env,
    )
    try:
        got = _read_until(proc, b"Hello ")
        time.sleep(0.5)  # let it settle into waiting for the next token (see the race test below)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, (got + out).decode(), err.decode())

    line = error_line(result, EXIT_INTERRUPTED)
    assert "interrupted" in line
    assert result.stdout == "Hello \n"
    # The log says how the request ended, too.
    assert re.search(r"stopped after \d+\.\d{3}s, 6 characters in: interrupted \(KeyboardInterrupt\)$",
                     log.read_text().splitlines()[-1]), log.read_text()


class _CtrlCAfterFirstWrite(io.StringIO):
    """A terminal where Ctrl-C lands just after the first piece of the reply was written.

    In a real terminal this is a race (SIGINT arrives as write() returns); here it
    is made to happen every time.
    """

    fired = False

    def flush(self) -> None:
        super().flush()
        if self.getvalue() and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def test_ctrl_c_right_after_a_write_still_ends_the_line(srv: ChatServer) -> None:
    from chatcli.base.env import Env
    from chatcli.cli.oneshot import run_oneshot
    from chatcli.config.settings import load_config
    from chatcli.ui.output import make_renderer

    srv.script(Reply("Hello there, general Kenobi.", chunk_size=6))
    out, err = _CtrlCAfterFirstWrite(), io.StringIO()
    env = Env(
        stdin=io.StringIO(""), stdout=out, stderr=err, stdin_isatty=False, stdout_isatty=False,
        environ={"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": srv.base_url}, cwd=Path.cwd(),
    )
    config = load_config(env)
    session = make_session(config=config, model=config.model)

    code = run_oneshot(session, env, ["hello"], output=make_renderer(env, markdown=False, repl=False))

    assert code == EXIT_INTERRUPTED
    assert err.getvalue() == "chatcli: interrupted (partial reply kept).\n"
    assert out.getvalue() == "Hello \n"


def test_reader_going_away_stops_quietly(srv: ChatServer, chat_env: dict[str, str]) -> None:
    # chatcli "..." | head -c 10: far more text than a pipe buffer holds.
    srv.script(Reply("word " * 60_000, chunk_size=8192))
    proc = subprocess.Popen(
        [str(CHATCLI), "hello"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=chat_env
    )
    try:
        _read_until(proc, b"word word")
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert err.decode() == ""
    assert proc.returncode == EXIT_OK

    # The reply the reader stopped taking is saved as interrupted, with what was written.
    db = Path(os.environ["XDG_DATA_HOME"]) / "chatcli" / "chatcli.db"
    with sqlite3.connect(db) as conn:
        status, content = conn.execute("SELECT status, content FROM messages WHERE role = 'assistant'").fetchone()
    assert status == "interrupted" and content.startswith("word word")


def test_a_content_filter_stop_is_complete_but_said(srv: ChatServer, run_chatcli) -> None:
    srv.script(Reply("partial answ", finish_reason="content_filter"))
    result = run_chatcli("q")
    assert result.returncode == EXIT_OK and result.stdout == "partial answ\n"
    assert "content filter" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_full_output_device_is_one_line_not_a_traceback(srv: ChatServer, chat_env: dict[str, str]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(CHATCLI), "hello"], stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE,
            text=True, env=chat_env, timeout=30,
        )
    assert result.returncode == EXIT_FAILURE, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.stderr.splitlines() == ["chatcli: stopped by a system error: No space left on device."]


# --------------------------------------------------------------------------- #
# --json
# --------------------------------------------------------------------------- #


def test_json_prints_one_object_with_the_reply_and_what_it_cost(srv: ChatServer, run_chatcli) -> None:
    import json

    from chatcli.base.events import Usage
    from chatcli.llm.pricing import cost
    from tests.support.server import compute_usage

    srv.script(Reply("Two, three and five.\n\x1b]0;title\x07"))
    result = run_chatcli("--json", "name three primes")

    assert result.returncode == EXIT_OK and result.stderr == "", result.stderr
    assert result.stdout.count("\n") == 1 and not CONTROL.search(result.stdout)  # one line, escapes escaped
    record = json.loads(result.stdout)
    expected = compute_usage(srv.chat_requests[0].body, "Two, three and five.\n\x1b]0;title\x07")
    assert record == {
        "reply": "Two, three and five.\n\x1b]0;title\x07",  # exactly as sent: JSON carries it safely
        "model": "gpt-4o-mini",
        "status": "complete",
        "finish_reason": "stop",
        "usage": {**{k: expected[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
                  "cached_tokens": 0, "reasoning_tokens": 0, "exact": True},
        "cost_usd": cost("gpt-4o-mini", Usage(expected["prompt_tokens"], expected["completion_tokens"],
                                                expected["total_tokens"])),
        "cost_source": "list",
        "error": None,
    }


def test_json_shows_cached_and_reasoning_tokens_and_prices_cached_input_at_the_cached_price(
        srv: ChatServer, run_chatcli) -> None:
    import json

    srv.script(Reply("Seven.", usage={
        "prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1536}, "completion_tokens_details": {"reasoning_tokens": 200},
    }))
    record = json.loads(run_chatcli("--json", "a prime?").stdout)
    assert record["usage"]["cached_tokens"] == 1536 and record["usage"]["reasoning_tokens"] == 200
    # gpt-4o-mini: $0.15 per million fresh input tokens, $0.075 cached, $0.60 output
    assert record["cost_usd"] == pytest.approx((464 * 0.15 + 1536 * 0.075 + 300 * 0.60) / 1e6)
    assert record["cost_source"] == "list"


def test_json_says_a_cost_from_chatclis_own_count_is_an_estimate(srv: ChatServer, run_chatcli) -> None:
    import json

    srv.script(Reply("Seven.", usage=False))
    record = json.loads(run_chatcli("--json", "a prime?").stdout)
    assert record["usage"]["exact"] is False and record["cost_usd"] > 0
    assert record["cost_source"] == "estimate"
    srv.script(Reply("Seven."))
    unpriced = json.loads(run_chatcli("--json", "-m", "my-local-model", "a prime?").stdout)
    assert unpriced["cost_usd"] is None and unpriced["cost_source"] is None
    srv.script(Error(500, "down"), Error(500, "down"), Error(500, "down"))
    failed = json.loads(run_chatcli("--json", "a prime?", env={"CHATCLI_MAX_RETRIES": "0"}).stdout)
    assert failed["usage"] is None and failed["cost_source"] is None  # nothing billed: no source to name


def test_json_escapes_del_and_c1_controls_too(srv: ChatServer, run_chatcli) -> None:
    import json

    srv.script(Reply("a\x9b2Jb\x7fc\x85d"))  # json.dumps alone would write these raw
    result = run_chatcli("--json", "hello")

    assert result.returncode == EXIT_OK and not CONTROL.search(result.stdout), repr(result.stdout)
    assert json.loads(result.stdout)["reply"] == "a\x9b2Jb\x7fc\x85d"


def test_json_for_a_failed_reply_keeps_what_arrived_and_says_why(srv: ChatServer, run_chatcli) -> None:
    import json

    srv.script(Reply("The quick brown fox", chunk_size=4, disconnect_after=2))
    result = run_chatcli("--json", "hello")

    assert result.returncode == EXIT_NETWORK
    record = json.loads(result.stdout)
    assert record["reply"] == "The quic" and record["status"] == "error" and record["finish_reason"] is None
    assert record["error"].startswith("The connection to ") and "broke off" in record["error"]
    assert result.stderr == f"chatcli: {record['error'].removesuffix('.')} (partial reply kept).\n"


# --------------------------------------------------------------------------- #
# models
# --------------------------------------------------------------------------- #


def test_models_lists_what_the_server_offers(srv: ChatServer, run_chatcli) -> None:
    srv.models = ["o3-mini", "gpt-4o", "llama3.2"]
    result = run_chatcli("models")

    assert_ok(result)
    # Sorted, each with the window chatcli's table gives where it knows the model; the list is asked for once.
    assert result.stdout == ("gpt-4o  window 128,000 (chatcli's table (gpt-4o))\nllama3.2\n"
                             "o3-mini  window 200,000 (chatcli's table (o3))\n")
    assert [line.split(" ")[0] for line in result.stdout.splitlines()] == ["gpt-4o", "llama3.2", "o3-mini"]
    assert [(r.method, r.path) for r in srv.requests] == [("GET", "/v1/models")]


def test_models_from_a_server_that_is_down_is_one_sentence(run_chatcli) -> None:
    result = run_chatcli("models", "--base-url", f"http://127.0.0.1:{free_port()}/v1", env={"CHATCLI_MAX_RETRIES": "0"})
    line = error_line(result, EXIT_NETWORK)
    assert "could not connect" in line.lower()


def test_an_unknown_model_gets_the_close_matches_the_server_has(srv: ChatServer, run_chatcli) -> None:
    srv.models = ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    srv.script(Error(404, "The model `gpt-4o-mni` does not exist", type="invalid_request_error", code="model_not_found"))
    result = run_chatcli("-m", "gpt-4o-mni", "hello")

    line = error_line(result, EXIT_FAILURE)
    assert line.endswith("pick another with /model or --model; close matches: gpt-4o-mini, gpt-4o.")


# --------------------------------------------------------------------------- #
# shell integration: completion scripts and chatcli config
# --------------------------------------------------------------------------- #


def test_the_bash_completion_script_loads_in_bash_and_completes_flags_subcommands_and_values(run_chatcli) -> None:
    result = run_chatcli("--completion", "bash")
    assert result.returncode == EXIT_OK and result.stderr == ""
    script = result.stdout

    assert bash_completes(script, "--mo") == ["--model"]
    assert bash_completes(script, "--log") == ["--log-file"]
    assert bash_completes(script, "mod") == ["models"]
    assert bash_completes(script, "--completion", "") == ["bash", "fish", "zsh"]
    assert bash_completes(script, "config", "ch") == ["check"]
    # Every flag the parser has is offered: the script is made from it.
    from chatcli.cli.main import build_parser

    flags = {f for a in build_parser()._actions for f in a.option_strings if f.startswith("--")}
    assert flags <= set(bash_completes(script, "--"))


@pytest.mark.parametrize("shell, first", [("zsh", "#compdef chatcli"), ("fish", "complete -c chatcli")])
def test_zsh_and_fish_scripts_are_printed(run_chatcli, shell: str, first: str) -> None:
    result = run_chatcli("--completion", shell)
    assert result.returncode == EXIT_OK and result.stdout.startswith(first)
    assert "--log-file" in result.stdout or "-l log-file" in result.stdout


def test_config_path_show_and_check(run_chatcli, isolated_env: Path) -> None:
    path = isolated_env / "config" / "chatcli" / "config.toml"
    assert run_chatcli("config", "path").stdout == f"{path}\n"
    assert run_chatcli("config", "check").stdout == "ok: no config file; defaults, .env and the environment\n"

    path.parent.mkdir(parents=True)
    path.write_text('model = "gpt-4o"\ntemperature = 0.4\nredact = ["email"]\n')
    shown = run_chatcli("config", "show")
    assert shown.returncode == EXIT_OK
    lines = shown.stdout.splitlines()
    assert 'model = "gpt-4o"' in lines and "temperature = 0.4" in lines and 'redact = ["email"]' in lines
    assert 'api_key = "***"' in lines  # set in the environment, never shown
    assert "# max_tokens is not set" in lines
    assert run_chatcli("config", "check").stdout == f"ok: {path}\n"

    path.write_text("temprature = 0.4\n")
    bad = run_chatcli("config", "check")
    line = error_line(bad, EXIT_CONFIG)
    assert "did you mean 'temperature'" in line.lower()
