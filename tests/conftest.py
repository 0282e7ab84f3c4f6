"""Shared fixtures: an isolated home, the test server, and ways to run chatcli; and each test's
mark (unit, server or pty), from what it uses.

No test touches the real home or the network: every test gets its own HOME,
XDG directories and working directory, and talks to tests/support/server.py on
127.0.0.1 through the real openai SDK.

Every test is also a secret-grep: the API key is made afresh for each run, and
after each test no file under its tmp directory (config, database and WAL,
input history, exports, logs) and nothing chatcli wrote to a terminal or pipe
may hold it, except the files a test put it in on purpose (`key_files`).

The fixtures' code lives in tests/support; this file only hands it to the tests.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.keys import OTHER_KEY, OUTPUTS, TEST_KEY, leaks_in, written
from tests.support.running import chatcli_runner, spawn_in_pty
from tests.support.server import ChatServer
from tests.support.tokens import byte_encoding_registered


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
            assert not leaks_in(written(output)), f"the API key reached the output: {written(output)[-500:]!r}"
        for path in tmp_path.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in key_files:
                assert not leaks_in(path.read_bytes()), f"the API key was written to {path}"
    finally:
        OUTPUTS.clear()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and the XDG directories at tmp, and drop any real settings."""
    home = tmp_path / "home"
    for sub in ("config", "data", "state"):
        (home / sub).mkdir(parents=True)
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATCLI_", "AZURE_OPENAI")) or name in ("NO_COLOR", "TIKTOKEN_CACHE_DIR",
                                                                                 "WAYLAND_DISPLAY", "DISPLAY"):
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


@pytest.fixture
def run_chatcli(chat_env: dict[str, str]):
    """Run chatcli as `chatcli ARGS`, with stdin and stdout pipes; returns a CompletedProcess
    (support.running.chatcli_runner: in this process by default, `process=True` for the script)."""
    return chatcli_runner(chat_env)


@pytest.fixture
def spawn_chatcli(chat_env: dict[str, str]):
    """Start `chatcli` in a real pty (pexpect); the child is closed after the test."""
    children = []

    def spawn(*args: str, env: dict[str, str] | None = None, rows: int = 40, cols: int = 120):
        child = spawn_in_pty(chat_env, *args, env=env, rows=rows, cols=cols)
        children.append(child)
        return child

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)


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


@pytest.fixture(scope="module")
def _other():
    with ChatServer() as server:
        yield server


@pytest.fixture
def other(_other: ChatServer) -> ChatServer:
    """A second chat server, which wants OTHER_KEY."""
    _other.reset()
    _other.api_key = OTHER_KEY
    return _other


@pytest.fixture(scope="module")
def byte_encoding():
    """A tiktoken encoding of one token a byte, registered for the module (support.tokens)."""
    with byte_encoding_registered() as encoding:
        yield encoding


# --------------------------------------------------------------------------- #
# unit, server or pty: each test is marked by what it needs
# --------------------------------------------------------------------------- #

KINDS = ("unit", "slow", "server", "pty")
# In-process tests that take their time by design: properties (Hypothesis draws hundreds of
# cases) and costs measured to be linear. They need no server either, but `-m unit` is the
# quick loop, so they are a kind of their own.
SLOW_FILES = {"test_render_size.py"}
PTY_FOLDER = Path(__file__).resolve().parent / "pty"
PTY_FIXTURES = {"spawn_chatcli"}
SERVER_FIXTURES = {"srv", "_server", "other", "_other", "chat_env", "run_chatcli"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test unit, slow, server or pty, unless it says so itself (a pytestmark, or a mark on the
    test): pty in tests/pty/ or with spawn_chatcli, server with the test servers or a chatcli run,
    unit for the rest. The real-server suite keeps its own mark. A unit test that starts a server
    or a process fails (unit_stays_in_process), so a mark the fixtures cannot see is found."""
    for item in items:
        if item.get_closest_marker("realserver") or any(item.get_closest_marker(k) for k in KINDS):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if PTY_FOLDER in Path(item.path).parents or PTY_FIXTURES & fixtures:
            item.add_marker(pytest.mark.pty)
        elif SERVER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.server)
        elif Path(item.path).name in SLOW_FILES or getattr(getattr(item, "obj", None), "is_hypothesis_test", False) \
                or "linear" in item.name:
            item.add_marker(pytest.mark.slow)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def unit_stays_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test starts no test server, proxy, process or pty: each fails it, saying what to mark."""
    if request.node.get_closest_marker("unit") is None and request.node.get_closest_marker("slow") is None:
        return

    def refuse(what: str):
        def refused(*args, **kwargs):
            raise AssertionError(f"a unit test started {what}; mark it server (or pty) instead")
        return refused

    import pexpect

    from tests.support.proxy import Proxy

    monkeypatch.setattr(ChatServer, "start", refuse("the test server"))
    monkeypatch.setattr(Proxy, "__enter__", refuse("the proxy"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("a process"))
    monkeypatch.setattr(pexpect.spawn, "__init__", refuse("a pty"))
