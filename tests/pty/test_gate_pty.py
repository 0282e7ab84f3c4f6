"""One gate to the terminal, walked end to end: every command that prints, in a real pty, with a
hostile string planted in each source it shows (a reply, a title, a model id, an error body, a
file name), checked in the bytes the terminal receives.

The hostile string sets the clipboard (OSC 52), clears the screen (CSI 2J), sets the window
title (OSC 0), switches to the alternate screen, carries raw C1 controls (CSI and OSC as single
characters), a right-to-left override, a zero-width space and a tag character. None of it may
arrive as it is; the invisible ones must arrive in their visible form.
"""

from __future__ import annotations

import json
from pathlib import Path

import pexpect
import pytest

from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d
from tests.support.server import Error, Reply
from tests.support.sessions import seed

pytestmark = pytest.mark.timeout(60)

HOSTILE = ("\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]0;pwned\x07\x1b[?1049h\x9b2J\x9d0;pwned\x9c"
           "\u202e\u200b\U000e0041")
# What must never arrive, and what shows that the invisible characters were there. The gate
# takes an escape sequence out whole, payload and all; JSON and a quoted string (repr) spell
# every character as an escape instead, which no terminal obeys.
RAW = ("\x1b]52", "\x1b[2J", "\x1b]0;", "\x1b[?1049h", "\x9b", "\x9d", "\x9c", "\u202e", "\u200b", "\U000e0041",
       "\ufffd", "\x07")
PAYLOADS = ("cHduZWQ=", "pwned")
VISIBLE = "<U+202E><U+200B><U+E0041>"
AS_JSON = "\\u202e\\u200b\\udb40\\udc41"
AS_REPR = "\\u202e\\u200b\\U000e0041"


def gated(raw: str, *, shown: str = VISIBLE, times: int = 1) -> str:
    for sequence in RAW + (PAYLOADS if shown == VISIBLE else ()):
        assert sequence not in raw, f"{sequence!r} reached the terminal: {raw[-800:]!r}"
    assert raw.count(shown) >= times, raw[-1500:]
    return raw


def everything(child: pexpect.spawn) -> str:
    """All the terminal received from the child, its exit included."""
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    return child.logfile_read.getvalue()


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


@pytest.fixture
def hostile_file() -> str:
    name = f"notes\u202e\u200b\U000e0041{HOSTILE}.txt"  # a file name may hold anything but / and NUL
    Path(name).write_text("the notes\n")
    return name


@pytest.mark.parametrize("flags", [(), ("--plain",)], ids=["markdown", "plain"])
def test_the_repl_gates_replies_errors_model_ids_titles_and_file_names(srv, spawn_chatcli, hostile_file, flags):
    srv.models = ["gpt-4o-mini", f"evil{HOSTILE}"]
    srv.script(Reply(f"reply {HOSTILE} end", chunk_size=3), Error(400, f"bad {HOSTILE} request"))
    child = spawn_chatcli(*flags, "-m", "gpt-4o-mini", "-f", hostile_file, env={"CHATCLI_SYSTEM": f"persona {HOSTILE}"}, cols=200)
    expect_prompt(child)  # the banner names the system prompt; -f said what it attached, with its name
    child.send("hello\r")
    child.expect_exact("end", timeout=TIMEOUT)  # the reply
    expect_prompt(child)
    child.send("again\r")
    child.expect_exact("request", timeout=TIMEOUT)  # the server's error
    expect_prompt(child)
    child.send("\x03")  # the failed message is back at the prompt: clear it
    child.send("/model\r")  # the server's list
    child.expect_exact("/model NAME switches", timeout=TIMEOUT)
    expect_prompt(child)
    child.send("/model ev\t")  # Tab: the completion menu
    child.expect_exact(f"evil{VISIBLE}", timeout=TIMEOUT)
    child.send("\x03")
    child.send("/sessions\r")  # the title, made from the first message: the attached file's name
    child.expect_exact("/resume", timeout=TIMEOUT)
    expect_prompt(child)
    quit_with_ctrl_d(child)
    raw = gated(child.logfile_read.getvalue(), times=6)
    assert f"reply {VISIBLE} end" in raw and f"bad {VISIBLE} request" in raw and f"evil{VISIBLE}" in raw
    assert f"notes{VISIBLE}{VISIBLE}.txt" in raw and "persona <U+202E>" in raw  # the banner shortens the system prompt
    assert f"File notes{VISIBLE}" in raw  # the title (cut short, inside an escape sequence, which goes whole)
    assert srv.chat_requests[0].body["messages"][-1]["content"].startswith(f"File {hostile_file}:")  # sent as it is


@pytest.mark.parametrize("args", [("ask",), ("--plain", "ask"), ("--json", "ask"), ("fail",)],
                         ids=["markdown", "plain", "json", "error"])
def test_one_shot_gates_the_reply_and_the_error(srv, spawn_chatcli, args):
    srv.served_model = f"served{HOSTILE}"  # the model a reply names: in --json, and saved
    srv.script(Error(400, f"bad {HOSTILE} request") if args == ("fail",) else Reply(f"reply {HOSTILE} end"))
    raw = everything(spawn_chatcli(*args, cols=200))
    if "--json" in args:
        record = json.loads(gated(raw, shown=AS_JSON).strip())
        assert (record["reply"], record["model"]) == (f"reply {HOSTILE} end", f"served{VISIBLE}")
    else:
        gated(raw)


SESSIONS = {
    "list": ("sessions", "list"),
    "show": ("sessions", "show", "1"),
    "search": ("sessions", "search", "planted"),
    "export": ("sessions", "export", "1"),
    "export-json": ("sessions", "export", "1", "--format", "json"),
    "export-to-file": ("sessions", "export", "1", "-o", f"out{HOSTILE}.md"),
    "export-fails": ("sessions", "export", "1", "-o", f"gone{HOSTILE}/out.md"),
    "rename": ("sessions", "rename", "1", f"renamed {HOSTILE}"),
}


@pytest.mark.parametrize("command", SESSIONS.values(), ids=SESSIONS.keys())
def test_the_sessions_commands_gate_titles_models_replies_and_file_names(home, spawn_chatcli, command):
    from chatcli.store.db import Store

    seed(home, (f"title {HOSTILE}", [(f"planted question {HOSTILE}", f"planted reply {HOSTILE}")]))
    store = Store.open(home / "data" / "chatcli" / "chatcli.db")
    store.update_session(1, event="model", model=f"model{HOSTILE}")
    store.close()
    raw = everything(spawn_chatcli(*command, cols=200))
    if command[-1] == "json":
        gated(raw, shown=AS_JSON, times=4)
    elif "rename" in command:
        gated(raw, shown=AS_REPR)  # the title, quoted as Python writes a string
    else:
        gated(raw, times=1 if command[-1].endswith(".md") else 2)


@pytest.mark.parametrize("answer", ["list", "error"])
def test_chatcli_models_gates_the_servers_ids_and_its_error(srv, spawn_chatcli, answer):
    srv.models = ["gpt-4o-mini", f"evil{HOSTILE}"]
    if answer == "error":
        srv.overrides["/v1/models"] = (403, {"error": {"message": f"no {HOSTILE} models", "type": "forbidden"}})
    raw = gated(everything(spawn_chatcli("models", cols=200)))
    assert (f"evil{VISIBLE}" if answer == "list" else f"no {VISIBLE} models") in raw


def test_a_resumed_sessions_recap_is_gated(home, srv, spawn_chatcli):
    seed(home, (f"title {HOSTILE}", [(f"question {HOSTILE}", f"answer {HOSTILE}")]))
    child = spawn_chatcli("--resume", "1", cols=200)
    expect_prompt(child)
    quit_with_ctrl_d(child)
    gated(child.logfile_read.getvalue(), times=3)  # the title, the question and the answer
