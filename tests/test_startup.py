"""Startup stays light: neither --help nor the path to the first prompt imports openai."""

from __future__ import annotations

import subprocess
import sys

HELP = """
import sys
from chatcli.cli import main
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
from chatcli.client import ChatClient
from chatcli.config import Config
from chatcli.repl import Repl
from chatcli.session import Session

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


def test_help_imports_neither_openai_nor_the_terminal_libraries():
    assert run(HELP).strip().splitlines()[-1] == "[]"


def test_first_prompt_is_reached_without_importing_openai():
    assert run(FIRST_PROMPT).strip().splitlines()[-1] == "[False]"
