"""shell: the model runs a command, after the user has seen that exact command and said yes.

It is on only when named (never in an "all"), and it always asks (asks=True: the Toolbox
lets only an "always this exact command" answer or --yes skip the question). The command runs
under /bin/sh in a process group of its own, so a timeout or Ctrl-C kills what it started
too, not just the shell. The output (stdout and stderr together, then the exit code) is capped.
The API key's variables are not passed on, so `env` cannot hand the key to the model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import IO, Any

from chatcli.base.pii import hide_known
from chatcli.base.secrets import known_secrets
from chatcli.tools.base import ToolFailed

MAX_OUTPUT = 100_000  # bytes of output kept; the rest is read and counted, so the command never blocks
HIDDEN_PREFIXES = ("OPENAI_", "CHATCLI_", "AZURE_OPENAI")
GRACE = 1.0  # seconds between SIGTERM and SIGKILL, and for the output to end after the shell exits


class Shell:
    """Runs a shell command in the working directory and returns its output and exit code."""

    name = "shell"
    description = "Run a shell command (/bin/sh -c) in the working directory; the user approves each command."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"command": {"type": "string", "minLength": 1, "description": "The command line to run."}},
        "required": ["command"],
        "additionalProperties": False,
    }
    asks = True
    edits = "command"  # the argument the approval prompt's [e]dit changes (ui/approval.py's `editable`)

    def __init__(self, *, cwd: str | None = None, timeout: float | None = None, max_output: int = MAX_OUTPUT,
                 hide_env: tuple[str, ...] = ()) -> None:
        self.cwd, self.timeout, self.max_output, self.hide_env = cwd, timeout, max_output, hide_env

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        command = arguments.get("command", "")
        if not isinstance(command, str) or not command.strip() or "\x00" in command:
            raise ToolFailed("Give a command to run.")
        env = {k: v for k, v in os.environ.items() if not k.startswith(HIDDEN_PREFIXES) and k not in self.hide_env}
        try:
            process = subprocess.Popen(["/bin/sh", "-c", command], cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise ToolFailed(f"The command could not start ({exc.strerror or exc}).") from None
        output = _Output(process.stdout, self.max_output)
        ended = self._wait(process, stop, output)
        if ended is None and not output.done.wait(GRACE):  # the shell exited; something it started holds the output
            _kill_group(process, output)
            ended = "background processes it left were killed when it exited"
        output.done.wait(GRACE)
        code = process.wait()
        if process.stdout and output.done.is_set():
            process.stdout.close()
        text = hide_known(output.text(), known_secrets())
        if output.dropped:
            text += f"\n[{output.dropped:,} more bytes of output not shown]"
        said = f"stopped: {ended}; " if ended else ""
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{text}\n[{said}{how}]" if text else f"[no output; {said}{how}]"

    def _wait(self, process: subprocess.Popen[bytes], stop: threading.Event, output: _Output) -> str | None:
        """None when the shell exits by itself; else why its process group was killed."""
        deadline = time.monotonic() + self.timeout if self.timeout else None
        while process.poll() is None:
            if stop.wait(0.02):
                _kill_group(process, output)
                return "cancelled, and its process group was killed"
            if deadline and time.monotonic() > deadline:
                _kill_group(process, output)
                return f"timed out after {self.timeout:g} s, and its process group was killed"
        return None


def _kill_group(process: subprocess.Popen[bytes], output: _Output) -> None:
    """SIGTERM to the whole group; SIGKILL to what is left once the shell has gone and the output
    has closed, or after a moment (a zombie still counts as in the group, so the group's own
    existence says nothing)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        process.wait(GRACE)
    except subprocess.TimeoutExpired:
        pass
    output.done.wait(GRACE)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Output:
    """Reads a pipe to its end in a thread, keeping the first `cap` bytes and counting the rest."""

    def __init__(self, pipe: IO[bytes] | None, cap: int) -> None:
        self.kept, self.dropped, self.cap = bytearray(), 0, cap
        self.done = threading.Event()
        self.pipe = pipe
        threading.Thread(target=self._read, daemon=True, name="shell-output").start()

    def _read(self) -> None:
        try:
            while self.pipe and (chunk := self.pipe.read1(65536)):
                room = self.cap - len(self.kept)
                self.kept += chunk[:max(room, 0)]
                self.dropped += max(len(chunk) - max(room, 0), 0)
        except (OSError, ValueError):
            pass
        finally:
            self.done.set()

    def text(self) -> str:
        return bytes(self.kept).decode("utf-8", errors="replace").rstrip("\n")
