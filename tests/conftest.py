"""Shared fixtures: an isolated home, the test server, and ways to run chatcli.

No test touches the real home or the network: every test gets its own HOME,
XDG directories and working directory, and talks to tests/support/server.py on
127.0.0.1 through the real openai SDK.

Every test is also a secret-grep: the API key is made afresh for each run, and
after each test no file under its tmp directory (config, database and WAL,
input history, exports, logs) and nothing chatcli wrote to a terminal or pipe
may hold it, except the files a test put it in on purpose (`key_files`).
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.server import ChatServer

# New each run, so finding it anywhere means a leak; not shaped like any known key format, so
# only the literal removal of the configured key can hide it (as with an Azure or gateway key).
TEST_KEY = "test-key-" + secrets.token_hex(12)

# What chatcli wrote during the current test, to be grepped for the key afterwards.
OUTPUTS: list[io.StringIO | subprocess.CompletedProcess | object] = []


def leaks_in(text: str | bytes) -> bool:
    """Whether text holds the key, whole or its distinctive second half."""
    needles = (TEST_KEY, TEST_KEY[-12:])
    if isinstance(text, bytes):
        return any(n.encode() in text or n.encode("utf-16-le") in text for n in needles)
    return any(n in text for n in needles)


def _written(output: object) -> str:
    if isinstance(output, subprocess.CompletedProcess):
        return f"{output.stdout or ''}{output.stderr or ''}"
    if isinstance(output, io.StringIO):
        return output.getvalue()
    read = getattr(output, "logfile_read", None)  # a pexpect child: all it printed
    return read.getvalue() if isinstance(read, io.StringIO) else ""


@pytest.fixture
def key_files() -> set[Path]:
    """Files a test wrote the key into on purpose (a config file, a .env): exempt from the grep."""
    return set()


@pytest.fixture(autouse=True)
def no_key_anywhere(tmp_path: Path, key_files: set[Path]):
    OUTPUTS.clear()
    yield
    try:
        for output in OUTPUTS:
            assert not leaks_in(_written(output)), f"the API key reached the output: {_written(output)[-500:]!r}"
        for path in tmp_path.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in key_files:
                assert not leaks_in(path.read_bytes()), f"the API key was written to {path}"
    finally:
        OUTPUTS.clear()


CHATCLI = Path(sys.executable).with_name("chatcli")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and the XDG directories at tmp, and drop any real settings."""
    home = tmp_path / "home"
    for sub in ("config", "data", "state"):
        (home / sub).mkdir(parents=True)
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATCLI_", "AZURE_OPENAI")) or name in ("NO_COLOR", "TIKTOKEN_CACHE_DIR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture(scope="session")
def _server():
    with ChatServer() as server:
        yield server


@pytest.fixture
def srv(_server: ChatServer) -> ChatServer:
    """The test server, with an empty script and no recorded requests."""
    _server.reset()
    return _server


@pytest.fixture
def chat_env(srv: ChatServer) -> dict[str, str]:
    """Environment for a chatcli subprocess that talks to the test server."""
    env = dict(os.environ)
    env.update(OPENAI_API_KEY=TEST_KEY, OPENAI_BASE_URL=srv.base_url, PYTHONUNBUFFERED="1")
    return env


# Read by libraries straight from os.environ, not from chatcli's Env: a run that sets them
# needs a process of its own to mean anything.
PROCESS_ONLY = {"FORCE_COLOR", "TERM", "COLUMNS", "LINES", "PYTHONPATH", "TIKTOKEN_CACHE_DIR",
                "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE"}


@pytest.fixture
def run_chatcli(chat_env: dict[str, str]):
    """Run chatcli as `chatcli ARGS`, with stdin and stdout pipes; returns a CompletedProcess.

    By default main() runs in this process, with an Env of pipes and the test's environment:
    the same code from argument parsing to exit code, without paying for a Python start and
    the openai import on every run. `process=True` (or a variable only a process can honour)
    runs the installed console script instead.
    """
    assert CHATCLI.exists(), f"chatcli is not installed next to {sys.executable}; pip install -e '.[test]'"

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 30,
            process: bool = False):
        environ = {**chat_env, **(env or {})}
        if process or PROCESS_ONLY & set(env or {}):
            result = subprocess.run(
                [str(CHATCLI), *args], input=input if input is not None else "", capture_output=True,
                text=True, env=environ, timeout=timeout,
            )
        else:
            result = run_in_process(list(args), input=input or "", environ=environ)
        OUTPUTS.append(result)
        return result

    return run


def run_in_process(argv: list[str], *, input: str, environ: dict[str, str]) -> subprocess.CompletedProcess:
    """main(argv) with pipes for its streams; argparse's own output (--help, usage errors) is caught too."""
    from chatcli.base.env import Env

    stdout, stderr = io.StringIO(), io.StringIO()
    env = Env(stdin=io.StringIO(input), stdout=stdout, stderr=stderr, stdin_isatty=False, stdout_isatty=False,
              environ=environ, cwd=Path.cwd())
    code = call_main(argv, env)
    return subprocess.CompletedProcess(["chatcli", *argv], code, stdout.getvalue(), stderr.getvalue())


def call_main(argv: list[str], env) -> int:
    """main(argv) in this process, ending as a process would: argparse's output goes to env's
    streams, a SystemExit is its exit code (1 for a message, as Python's own exit gives), and the
    signal handlers main installs are put back."""
    import contextlib
    import signal

    from chatcli.cli.main import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr):
            return main(argv, env=env)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@pytest.fixture
def spawn_chatcli(chat_env: dict[str, str]):
    """Start `chatcli` in a real pty (pexpect); the child is closed after the test."""
    import pexpect

    children = []

    def spawn(*args: str, env: dict[str, str] | None = None, rows: int = 40, cols: int = 120):
        child = pexpect.spawn(
            str(CHATCLI),
            list(args),
            # The pty's size is the terminal's size: COLUMNS or LINES inherited from whatever
            # runs the tests (pytest-xdist's workers set them) would override it.
            env={**{k: v for k, v in chat_env.items() if k not in ("COLUMNS", "LINES")},
                 "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})},
            dimensions=(rows, cols),
            encoding="utf-8",
            codec_errors="replace",
            timeout=15,
        )
        child.logfile_read = io.StringIO()
        OUTPUTS.append(child)
        children.append(child)
        return child

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def make_env(*, stdin: str = "", stdin_isatty: bool = False, stdout_isatty: bool = False, environ=None):
    """An in-process Env with captured streams, for tests that call chatcli's modules."""
    from chatcli.base.env import Env

    return Env(
        stdin=io.StringIO(stdin),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        stdin_isatty=stdin_isatty,
        stdout_isatty=stdout_isatty,
        environ=dict(os.environ if environ is None else environ),
        cwd=Path.cwd(),
    )


@contextmanager
def _taking_turns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests that keep both cores busy take turns, across xdist workers: the 50-process load
    test and the real llama-server, run side by side, each starve the other past its timeouts."""
    import fcntl

    path = tmp_path_factory.getbasetemp().parent / "both-cores.lock"  # the workers share this folder
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def both_cores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with _taking_turns(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def both_cores_for_the_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with _taking_turns(tmp_path_factory):
        yield
