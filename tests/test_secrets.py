"""The API key stays secret, wherever it comes from; --verbose and --log-file log without it.

Every test in the suite already ends with a grep for the key (see conftest.py):
here the key also comes from a config file, a .env and a key command, the
server echoes it back in errors, and the log is switched on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import sys
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE
from chatcli.base.log import logging_to
from chatcli.base.pii import redact_secrets
from tests.support.keys import TEST_KEY, leaks_in
from tests.support.repl import ENTER, piped_chat
from tests.support.server import ChatServer, EchoHeaders, Error, Reply
from tests.support.sessions import make_session

TEXT = "The quick brown fox jumps over the lazy dog."
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [\w.]+: ")


def log_lines(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    return lines


# --------------------------------------------------------------------------- #
# --log-file and --verbose
# --------------------------------------------------------------------------- #


def test_log_file_has_each_request_its_timings_and_retries(srv: ChatServer, run_chatcli, tmp_path: Path) -> None:
    srv.script(Error(500, "boom", headers={"retry-after-ms": "1"}), Reply(TEXT, chunk_size=8))
    log = tmp_path / "logs" / "chatcli.log"
    result = run_chatcli("--log-file", str(log), "-t", "0.5", "hello")

    assert result.returncode == EXIT_OK and result.stdout == TEXT + "\n", result.stderr
    text = "\n".join(log_lines(log))
    assert f"POST {srv.base_url}/chat/completions: model gpt-4o-mini, 1 message, " in text
    assert "temperature 0.5" in text
    assert "the server failed (HTTP 500), retrying in 0.0s (attempt 1/2)" in text
    assert re.search(r"HTTP 200, text/event-stream, after \d+\.\d{3}s; request id req_\w+", text), text
    assert re.search(r"first token after \d+\.\d{3}s", text)
    assert re.search(rf"reply ended after \d+\.\d{{3}}s: {len(TEXT)} characters \(0 of reasoning\), finish stop, "
                     r"usage \d+\+\d+ tokens", text)
    assert 'httpx2: HTTP Request: POST' in text  # the libraries' own records come too
    assert "hello" not in text and TEXT not in text  # requests and timings, never the words
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert result.stderr.count("\n") == 1  # the log went to the file; stderr has the retry notice only

    # The file is appended to, run after run.
    srv.script(Reply("again"))
    run_chatcli("--log-file", str(log), "hello")
    assert "\n".join(log_lines(log)).count("reply ended after") == 2


def test_verbose_logs_to_stderr_and_leaves_stdout_to_the_reply(srv: ChatServer, run_chatcli) -> None:
    srv.script(Reply(TEXT, disconnect_after=3))
    result = run_chatcli("-v", "hello")

    assert result.stdout == TEXT[:12] + "\n"
    *log, sentence = result.stderr.splitlines()
    assert all(LOG_LINE.match(line) for line in log), log
    assert any("chatcli: POST" in line for line in log)
    assert any(re.search(r"failed after \d+\.\d{3}s: The connection .* broke off", line) for line in log), log
    assert sentence.startswith("chatcli: The connection")


def test_the_log_names_a_server_error_without_the_key_it_echoed(srv: ChatServer, run_chatcli, tmp_path: Path) -> None:
    srv.script(Error(401, f"Incorrect API key provided: {TEST_KEY}. You can find your key at ...",
                     code="invalid_api_key"))
    log = tmp_path / "chatcli.log"
    result = run_chatcli("-v", "--log-file", str(log), "hello")

    assert result.returncode == EXIT_CONFIG
    assert re.search(r"failed after \d+\.\d{3}s: The server at \S+ rejected the API key \(401\)", log.read_text())
    assert not leaks_in(log.read_bytes()) and not leaks_in(result.stderr)


def test_an_unwritable_log_file_is_one_sentence(srv: ChatServer, run_chatcli, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, so nothing can go under it")
    result = run_chatcli("--log-file", str(blocked / "chatcli.log"), "hello")

    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith(f"chatcli: Cannot write the log file {blocked / 'chatcli.log'} (")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert srv.chat_requests == []


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: Bearer {TEST_KEY}",
        "authorization: Bearer azure-key-0123456789abcdef",
        "{'api-key': 'c2VjcmV0LWF6dXJlLWtleQ=='}",
        '"Authorization": "Basic dXNlcjpwYXNzd29yZA=="',
        "x-api-key=hf_abcdefghijklmnopqrstuvwxyz0123",
        "retry with sk-proj-AbCdEf0123456789AbCdEf0123456789",
    ],
    ids=["bearer-the-key", "bearer-other", "api-key-dict", "basic-auth", "x-api-key", "key-shaped"],
)
def test_every_log_line_is_redacted_whoever_writes_it(line: str, tmp_path: Path) -> None:
    """A record from a library passes through the same redaction as chatcli's own."""
    import io

    secret = "c2VjcmV0LWF6dXJlLWtleQ=="
    err = io.StringIO()
    log = tmp_path / "x.log"
    with logging_to(err, verbose=True, log_file=str(log), secret=secret):
        logging.getLogger("httpx2").info("sending %s", line)
        logging.getLogger("openai").info(line)
    for written in (err.getvalue(), log.read_text()):
        assert written.count("\n") == 2
        for token in re.findall(r"[A-Za-z0-9_+/=-]{16,}", line):
            assert token not in written, written
        assert "***" in written or "REDACTED" in written
    # The loggers are put back as they were.
    assert logging.getLogger("httpx2").handlers == [] and logging.getLogger("chatcli").handlers == []


def test_redaction_keeps_ordinary_text() -> None:
    text = "POST http://127.0.0.1:8080/v1/chat/completions: model gpt-4o-mini, 3 messages, 812 bytes, task-list"
    assert redact_secrets(text, TEST_KEY) == text


# --------------------------------------------------------------------------- #
# Keys from a file or a command: used, never shown, never stored
# --------------------------------------------------------------------------- #


def key_command(tmp_path: Path) -> str:
    script = tmp_path / "print_key.py"
    script.write_text(f"print({TEST_KEY!r})\n")
    return f"{sys.executable} {script}"


@pytest.mark.parametrize("source", ["config", "dotenv", "command"])
def test_a_key_from_any_source_is_sent_and_never_shown_or_stored(
    srv: ChatServer, run_chatcli, isolated_env: Path, tmp_path: Path, key_files: set[Path], source: str
) -> None:
    config = isolated_env / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    if source == "config":
        config.write_text(f'api_key = "{TEST_KEY}"\n')
        config.chmod(0o600)
        key_files.add(config)
    elif source == "dotenv":
        dotenv = Path.cwd() / ".env"
        dotenv.write_text(f"OPENAI_API_KEY={TEST_KEY}\n")
        dotenv.chmod(0o600)
        key_files.add(dotenv)
    else:
        config.write_text(f"api_key_cmd = {key_command(tmp_path)!r}\n".replace("'", '"'))
        key_files.add(tmp_path / "print_key.py")
    env = {"OPENAI_API_KEY": ""}

    # Sent: the server sees it in the Authorization header.
    srv.script(Reply(TEXT))
    ok = run_chatcli("-v", "--log-file", str(tmp_path / "chatcli.log"), "hello", env=env)
    assert ok.returncode == EXIT_OK, ok.stderr
    assert srv.chat_requests[-1].headers["authorization"] == f"Bearer {TEST_KEY}"

    # An error that echoes it, a stream error that echoes it, and the export of the session.
    srv.script(Error(401, f"Incorrect API key provided: {TEST_KEY}", code="invalid_api_key"),
               Reply(TEXT, error_event_after=2, error_message=f"key {TEST_KEY} is over quota"))
    assert run_chatcli("-v", "--log-file", str(tmp_path / "chatcli.log"), "again", env=env).returncode == EXIT_CONFIG
    assert run_chatcli("-v", "once more", env=env).returncode != EXIT_OK
    for fmt in ("md", "json"):
        exported = run_chatcli("sessions", "export", "1", "--format", fmt, env=env)
        assert exported.returncode == EXIT_OK and "hello" in exported.stdout, exported.stderr
    # The grep at the end of the test reads every file and output; nothing was written but the key's own file.
    files = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert any(p.name == "chatcli.db" for p in files) and (tmp_path / "chatcli.log").exists()
    assert os.environ.get("OPENAI_API_KEY") is None


@pytest.mark.parametrize("markdown", [True, False], ids=["markdown", "plain"])
def test_in_the_repl_verbose_lines_are_printed_above_the_reply_not_into_it(srv: ChatServer, tmp_path: Path, markdown):
    """stderr written mid-reply would cut into the lines the REPL is drawing: the renderer prints them."""
    import io
    from contextlib import ExitStack


    reply = "line one of the reply\n\nline two of the reply"
    srv.script(Reply(reply, chunk_size=3, delay=0.01))
    err = io.StringIO()
    session = make_session(srv, model="gpt-4o-mini")
    from chatcli.base.log import holding

    with ExitStack() as stack:
        stack.enter_context(logging_to(err, verbose=True, log_file=None, secret=TEST_KEY))
        stack.enter_context(holding())  # as the REPL runs in main()
        out = piped_chat(stack, session, markdown=markdown, history=tmp_path / "history").run("hello", ENTER)

    # Nothing went around the renderer while it drew; what the background asked the server
    # (its models and window) is said when the session ends, not cut into the reply.
    assert all("GET " in line and "/v1/models" in line for line in err.getvalue().splitlines()), err.getvalue()
    lines = [line.rstrip() for line in out.splitlines()]
    logged = [line for line in lines if LOG_LINE.match(line)]
    assert any("first token after" in line for line in logged) and any("reply ended after" in line for line in logged)
    assert "line one of the reply" in lines and "line two of the reply" in lines, out  # whole lines, nothing cut in


def test_a_password_in_the_base_url_is_never_shown_or_logged(srv: ChatServer, run_chatcli, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    port = urlsplit(srv.base_url).port
    log = tmp_path / "chatcli.log"
    srv.script(Reply(TEXT), Error(404, "Not Found"))
    url = f"http://bob:hunter2pw@127.0.0.1:{port}/v1"
    ok = run_chatcli("-v", "--log-file", str(log), "hello", env={"OPENAI_BASE_URL": url})
    failed = run_chatcli("-v", "--log-file", str(log), "hello", env={"OPENAI_BASE_URL": url})

    assert ok.returncode == EXIT_OK and failed.returncode != EXIT_OK
    assert f"Nothing answers at http://bob:***@127.0.0.1:{port}/v1 (404)" in failed.stderr
    for text in (ok.stderr, failed.stderr, log.read_text()):
        assert "hunter2pw" not in text and "bob:***@" in text


def test_a_bug_is_one_sentence_and_a_report_without_the_key(srv: ChatServer, run_chatcli, isolated_env: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Seam: no real bug can be summoned on purpose, so one is put where the one-shot path runs."""
    import chatcli.cli.oneshot

    def broken(*args, **kwargs):
        raise TypeError(f"unexpected value near {TEST_KEY}")

    monkeypatch.setattr(chatcli.cli.oneshot, "run_oneshot", broken)
    result = run_chatcli("hello")

    crash = isolated_env / "state" / "chatcli" / "crash.log"
    assert result.returncode == 1
    assert result.stderr == (f"chatcli: internal error (TypeError), which is a bug in chatcli; the details are in "
                             f"{crash}; please report it.\n")
    report = crash.read_text()
    assert "Traceback (most recent call last)" in report and "TypeError: unexpected value near ***" in report
    assert stat.S_IMODE(crash.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- #
# A server that quotes the secrets back
# --------------------------------------------------------------------------- #


def test_a_proxy_that_echoes_the_key_and_a_header_token_has_neither_shown_nor_stored(
    srv: ChatServer, run_chatcli, isolated_env: Path, tmp_path: Path
) -> None:
    token = "gw-" + secrets.token_hex(12)  # a credential in a configured header, as a gateway asks for
    config = isolated_env / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[headers]\n"X-Gateway-Token" = "{token}"\n')
    quoted = ("Authorization", "X-Gateway-Token")  # httpx2 sends header names in lower case
    # Streamed five characters at a time: the key and the token arrive split across chunks.
    srv.script(EchoHeaders(names=quoted), EchoHeaders(names=quoted), EchoHeaders(status=400, names=quoted))

    replied = run_chatcli("who am I?")
    assert replied.returncode == EXIT_OK, replied.stderr
    assert replied.stdout == "You sent: authorization: Bearer ***; x-gateway-token: ***\n"
    as_json = run_chatcli("--json", "-c", "and now?")
    assert json.loads(as_json.stdout)["reply"] == "You sent: authorization: Bearer ***; x-gateway-token: ***"
    refused = run_chatcli("-c", "again")
    assert refused.returncode != EXIT_OK and "x-gateway-token: ***" in refused.stderr, refused.stderr
    assert srv.chat_requests[-1].headers["x-gateway-token"] == token  # it was sent, so there was something to leak

    exported = run_chatcli("sessions", "export", "1", "--format", "json")
    messages = json.loads(exported.stdout)["messages"]
    assert [m.get("status") for m in messages] == [None, "complete", None, "complete", None, "error"]
    assert "x-gateway-token: ***" in messages[-1]["error"]
    for result in (replied, as_json, refused, exported):
        assert token not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):  # the database, its WAL, the input history
        if path.is_file() and path != config:
            assert token.encode() not in path.read_bytes(), path


def test_a_secret_split_anywhere_across_the_chunks_of_a_reply_is_taken_out() -> None:
    from chatcli.base.secret_stream import SecretStream

    token = "gw-" + "0123456789abcdef" * 2
    text = f"key {TEST_KEY}, token {token}{token} and a last {TEST_KEY[:5]}t word, then s"
    for size in range(1, 40):
        stream = SecretStream((token, TEST_KEY))
        out = "".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size)) + stream.flush()
        assert out == f"key ***, token ****** and a last {TEST_KEY[:5]}t word, then s", size
    # A reply cut off in the middle of the key leaves no half of it either.
    stream = SecretStream((TEST_KEY,))
    assert stream.feed(f"cut {TEST_KEY[:14]}") + stream.flush() == "cut ***"


def test_a_placeholder_key_is_no_secret_to_take_out_of_replies() -> None:
    from chatcli.base.pii import configured_secrets
    from chatcli.config.settings import Config

    # Ollama, vLLM and LM Studio take any key; taking "ollama" out of a reply about Ollama would garble it.
    for placeholder in ("ollama", "EMPTY", "lm-studio", "sk-no-key-required"):
        assert configured_secrets(Config(api_key=placeholder)) == ()
    config = Config(api_key=TEST_KEY, headers={"X-Title": "chatcli", "X-Token": "tok-31337-abc"},
                    base_url="http://me:hunter2hunter2@127.0.0.1/v1", proxy="http://u:s3cr3t-pw@proxy:3128")
    assert set(configured_secrets(config)) == {TEST_KEY, "tok-31337-abc", "hunter2hunter2", "s3cr3t-pw"}
