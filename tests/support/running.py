"""Running chatcli: main() in this process with pipes, the installed script as a process, in a pty,
and reading what a run said."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.keys import OUTPUTS, TEST_KEY

CHATCLI = Path(sys.executable).with_name("chatcli")


# Read by libraries straight from os.environ, not from chatcli's Env: a run that sets them
# needs a process of its own to mean anything.
PROCESS_ONLY = {"FORCE_COLOR", "TERM", "COLUMNS", "LINES", "PYTHONPATH", "TIKTOKEN_CACHE_DIR",
                "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE"}


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


# Anything that can steer a terminal: C0 controls except tab and newline, DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def assert_no_key(result: subprocess.CompletedProcess) -> None:
    """The API key never reaches the terminal, whole or in part."""
    for stream in (result.stdout, result.stderr):
        assert TEST_KEY not in stream
        assert TEST_KEY[-10:] not in stream


RETRY_LINE = re.compile(r"^chatcli: .+, retrying in \d+\.\ds \(attempt (\d+)/(\d+)\)\.$")


def error_line(result: subprocess.CompletedProcess, code: int) -> str:
    """One 'chatcli: ...' sentence on stderr, after a line for each retry; no traceback, the given exit code."""
    assert_no_key(result)
    assert "Traceback" not in result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    *retries, last = result.stderr.splitlines()
    assert [RETRY_LINE.match(line)[1] for line in retries] == [str(n) for n in range(1, len(retries) + 1)], result.stderr
    lines = [last]
    assert lines[0].startswith("chatcli: "), lines[0]
    assert result.stderr.endswith("\n")
    assert not CONTROL.search(lines[0]), repr(lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bash_completes(script: str, *words: str) -> list[str]:
    """What Tab offers after `words` (the last one being completed), in a real bash with the script loaded."""
    quoted = " ".join(f"'{w}'" for w in words)
    probe = f'{script}\nCOMP_WORDS=(chatcli {quoted}); COMP_CWORD={len(words)}; _chatcli; printf "%s\\n" "${{COMPREPLY[@]}}"\n'
    done = subprocess.run(["bash", "--norc", "--noprofile"], input=probe, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return sorted(done.stdout.split())


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result



def chatcli_runner(chat_env: dict[str, str]):
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


def spawn_in_pty(chat_env: dict[str, str], *args: str, env: dict[str, str] | None = None, rows: int = 40,
                 cols: int = 120):
    """`chatcli ARGS` in a real pty (pexpect), its output kept for the secret-grep."""
    import pexpect

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
    return child
