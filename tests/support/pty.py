"""Driving chatcli in a real pty with pexpect: the prompt, what the screen roughly shows, a
question to the echoing test server, and Ctrl-D.

prompt-toolkit draws "> " as ">" and then moves the cursor, so a fresh prompt is recognised by
what starts one: bracketed paste switched on, then the ">".
"""

from __future__ import annotations

import re

import pexpect

TIMEOUT = 10


# prompt-toolkit turns bracketed paste on each time it starts reading a line.
PROMPT = re.compile(r"\x1b\[\?2004h.*?>", re.DOTALL)


# A terminal escape sequence: CSI, OSC/DCS-style strings, or a two-character one.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]")


def visible(raw: str) -> str:
    """Roughly what the screen shows: the text without escape sequences and carriage returns."""
    return _ESCAPE.sub("", raw).replace("\r", "")


def expect_prompt(child: pexpect.spawn) -> str:
    """Wait for a fresh prompt; return everything printed since the last expect."""
    child.expect(PROMPT, timeout=TIMEOUT)
    return child.before


def ask(child: pexpect.spawn, text: str) -> str:
    """Send a message to the echoing test server, wait for its echo and the next prompt; return what was shown."""
    child.send(text + "\r")
    child.expect_exact(f"echo: {text.splitlines()[0]}", timeout=TIMEOUT)
    return visible(child.before + child.after + expect_prompt(child))


def quit_with_ctrl_d(child: pexpect.spawn) -> None:
    child.sendcontrol("d")
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.exitstatus == 0, child.before
