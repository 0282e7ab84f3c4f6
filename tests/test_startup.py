"""Startup stays light: neither --help nor the path to the first prompt imports openai."""

from __future__ import annotations

import subprocess
import sys

import pytest

HELP = """
import sys
from chatcli.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print(sorted(m for m in ("openai", "rich", "prompt_toolkit", "httpx2") if m in sys.modules), file=sys.stderr)
"""

FIRST_PROMPT = """
import io, sys
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from chatcli.llm.client import ChatClient
from chatcli.config.settings import Config
from chatcli.cli.repl import Repl
from chatcli.core.session import Session

session = Session(client=ChatClient(Config(base_url="http://127.0.0.1:9/v1")), model="m")
with create_pipe_input() as pipe:
    seen = []
    repl = Repl(session, out=io.StringIO(), input=pipe, output=DummyOutput(), warm_up=False)
    original = repl.prompt.prompt
    def prompt(*a, **k):
        seen.append("openai" in sys.modules)
        return original(*a, **k)
    repl.prompt.prompt = prompt
    pipe.send_text("\\x04")
    repl.run()
print(seen, file=sys.stderr)
"""


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30).stderr


@pytest.mark.server
def test_help_imports_neither_openai_nor_the_terminal_libraries():
    assert run(HELP).strip().splitlines()[-1] == "[]"


@pytest.mark.server
def test_first_prompt_is_reached_without_importing_openai():
    assert run(FIRST_PROMPT).strip().splitlines()[-1] == "[False]"


REAL_ENTRY = """
import sys
import prompt_toolkit as shortcuts

original = shortcuts.PromptSession.prompt

def prompt(self, *args, **kwargs):
    print(f"openai loaded at the first prompt: {'openai' in sys.modules}", flush=True)
    return original(self, *args, **kwargs)

shortcuts.PromptSession.prompt = prompt
from chatcli.cli.main import main
sys.exit(main([]))
"""


@pytest.mark.pty
def test_the_real_entry_point_reaches_the_prompt_without_openai(chat_env):
    """Through cli.main, config loading and the store, in a real pty, as a user starts it."""
    import pexpect

    child = pexpect.spawn(
        sys.executable, ["-c", REAL_ENTRY], env={**chat_env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
        dimensions=(30, 100), encoding="utf-8", timeout=20,
    )
    child.expect("openai loaded at the first prompt: (True|False)")
    loaded = child.match.group(1)
    child.expect("\x1b\\[\\?2004h")  # prompt-toolkit is reading keys (bracketed paste on)
    child.expect(">")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert loaded == "False"
