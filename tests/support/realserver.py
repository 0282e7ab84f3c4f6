"""The real-server suite's parts: llama.cpp's llama-server run on a free port, and a terminal for the REPL.

tests/support/llama_server.py builds the binary and unpacks the model; this module only runs them.
The server is started from the cache folder with the model's path relative to it, so the id
it serves (the ``-m`` path as given) is short and the same on every machine.

The terminal is a pyte screen fed everything chatcli writes to its pty. It answers the
cursor-position requests prompt-toolkit sends, as a real terminal does, so the bottom toolbar is
drawn, and it keeps the raw bytes too, to wait on.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pexpect
import pyte

from tests.support.llama_server import cache_root
from tests.support.pty import PROMPT, visible
from tests.support.running import free_port

CTX_SIZE = 2048


class LlamaServer:
    """One llama-server process at a time, always on the same port, so a restart is the same server to chatcli."""

    def __init__(self, binary: Path, model: Path, *, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.binary, self.log, self.extra = binary, log, extra
        root = cache_root()
        self.cwd = root if model.is_relative_to(root) else model.parent
        self.model_arg = str(model.relative_to(self.cwd))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        return [str(self.binary), "-m", self.model_arg, "--host", "127.0.0.1", "--port", str(self.port),
                "--ctx-size", str(CTX_SIZE), "--threads", "2", "-np", "1", "--no-webui", "--jinja", *self.extra]

    def start(self, *, timeout: float = 60) -> None:
        """Start it and wait until /health says the model is loaded; a port still held by the last one is waited out."""
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("a") as out:
                out.write(f"\n--- {' '.join(self.args())}\n")
                out.flush()
                self.proc = subprocess.Popen(self.args(), cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.healthy():
                    return
                time.sleep(0.1)
            else:
                self.kill()
                raise RuntimeError(f"llama-server was not healthy within {timeout:.0f}s; "
                                   f"its log ends:\n{self.log_tail()}")
            if "bind" not in self.log_tail(5).lower() or time.monotonic() >= deadline:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}); its log ends:\n{self.log_tail()}")
            time.sleep(0.5)  # the port is not free yet (the killed server's socket): try again

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """SIGKILL: the connection drops at once."""
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM: llama-server stops generating but holds an open connection for about 30 s."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            if self.proc is not None:
                self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def ensure_ready(self, *, timeout: float = 60) -> None:
        """Running and idle: started again if a test before stopped it, and done with any reply a test left behind.

        A reply whose reader went away goes on until llama-server notices, and with one slot
        the next request would wait for it.
        """
        if not (self.running() and self.healthy()):
            self.kill()
            self.start()
        deadline = time.monotonic() + timeout
        while any(slot["is_processing"] for slot in self._call("/slots")):
            if time.monotonic() > deadline:
                self.kill()
                self.start()
                return
            time.sleep(0.2)

    # What the server itself says, to compare chatcli's figures with.

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def model_id(self) -> str:
        return self._call("/v1/models")["data"][0]["id"]

    def window(self) -> int:
        return self._call("/props")["default_generation_settings"]["n_ctx"]

    def tokens(self, text: str) -> int:
        """The model's own count of a text's tokens."""
        return len(self._call("/tokenize", {"content": text})["tokens"])

    def prompt_tokens(self, messages: list[dict]) -> int:
        """The prompt tokens the server counts for these messages, as it reports them in usage."""
        reply = self._call("/v1/chat/completions", {"messages": messages, "max_tokens": 1})
        return reply["usage"]["prompt_tokens"]


class Terminal(pyte.Screen):
    """A pty child's screen: everything it writes is fed here, and its cursor-position requests are answered."""

    def __init__(self, child: pexpect.spawn, *, rows: int, cols: int) -> None:
        super().__init__(cols, rows)
        self.child = child
        self.raw = ""
        self.mark = 0  # where the text waited on so far ends in raw
        self._stream = pyte.Stream(self)

    def write_process_input(self, data: str) -> None:
        self.child.send(data)

    def pump(self, timeout: float = 0.1) -> bool:
        """Read what the child wrote within timeout; False once it has exited."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw += data
        self._stream.feed(data)
        return True

    def wait(self, pattern: str | re.Pattern, *, timeout: float = 30, raw: bool = False) -> re.Match:
        """Wait until pattern appears after the mark (in the visible text, or the raw bytes); the mark moves past it."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            text = self.raw[self.mark:] if raw else visible(self.raw[self.mark:])
            found = regex.search(text)
            if found:
                if raw:
                    self.mark += found.end()
                else:  # the raw offset of the visible match's end: the shortest raw prefix that shows it
                    self.mark += self._raw_end(found.end())
                return found
            alive = self.pump(min(0.2, max(deadline - time.monotonic(), 0.01)))
            if not alive or time.monotonic() > deadline:
                rest = visible(self.raw[self.mark:])[-1500:]
                raise AssertionError(f"{'exited' if not alive else 'timed out'} waiting for {regex.pattern!r}; "
                                     f"the screen shows:\n{self.text().rstrip()}\n--- since the mark: {rest!r}")

    def _raw_end(self, visible_end: int) -> int:
        rest = self.raw[self.mark:]
        low, high = 0, len(rest)
        while low < high:
            middle = (low + high) // 2
            if len(visible(rest[:middle])) >= visible_end:
                high = middle
            else:
                low = middle + 1
        return low

    def prompt(self, *, timeout: float = 60) -> str:
        """Wait for a fresh prompt; return what was shown since the mark."""
        start = self.mark
        self.wait(PROMPT, timeout=timeout, raw=True)
        return visible(self.raw[start:self.mark])

    def settle(self, seconds: float = 0.3) -> None:
        """Take in whatever comes within seconds: a redraw after the prompt, the toolbar."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.pump(0.05):
            pass

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.display)

    def bottom_row(self) -> str:
        return self.display[-1].rstrip()

    def exit_status(self, *, timeout: float = 15) -> int | None:
        """Wait for the child to exit; its exit status."""
        deadline = time.monotonic() + timeout
        while self.pump(0.2):
            if time.monotonic() > deadline:
                raise AssertionError(f"chatcli did not exit; the screen shows:\n{self.text()}")
        self.child.close()
        return self.child.exitstatus


def environment(base_url: str) -> dict[str, str]:
    """chatcli's environment against llama-server: no API key (the isolated env has dropped OPENAI_*)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(OPENAI_BASE_URL=base_url, PYTHONUNBUFFERED="1")
    return env
