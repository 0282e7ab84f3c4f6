"""The toolbar warns before a rate limit is hit: the REPL in a real pty, whose screen (pyte)
answers prompt-toolkit's cursor-position requests so the bottom toolbar is drawn."""

from __future__ import annotations

import re

import pytest

from tests.support.realserver import Terminal
from tests.support.server import Reply, rate_limit_headers

pytestmark = pytest.mark.timeout(40)


def _toolbar_after_reply(term: Terminal, reply: str) -> str:
    """Send a message, wait for `reply` and the prompt after it; the bottom row once drawn again."""
    term.child.send("go\r")
    term.wait(reply)
    term.prompt(timeout=15)
    term.settle(0.6)  # the toolbar is redrawn within refresh_interval (0.5s)
    return term.bottom_row()


@pytest.mark.parametrize("color", [True, False], ids=["color", "no-color"])
def test_the_toolbar_warns_once_the_tokens_left_fall_below_ten_percent(srv, spawn_chatcli, color):
    srv.script(
        Reply("plenty left", headers=rate_limit_headers(requests=(5000, 4999), tokens=(150000, 140000))),
        Reply("nearly out", headers=rate_limit_headers(requests=(5000, 4998), tokens=(150000, 6000),
                                                       reset_tokens="40s")),
    )
    env = {"PROMPT_TOOLKIT_NO_CPR": "0", **({} if color else {"NO_COLOR": "1"})}
    term = Terminal(spawn_chatcli(env=env, rows=24, cols=120), rows=24, cols=120)
    term.prompt(timeout=15)

    before = _toolbar_after_reply(term, "plenty left")
    assert "/help" in before and "⚠" not in before, before

    after = _toolbar_after_reply(term, "nearly out")
    assert re.search(r"│ ⚠ tokens 4% left, resets in (40|39|38)s │ /help", after), after
    row = term.buffer[term.lines - 1]
    at = after.index("⚠")
    cells = [row[x] for x in range(at, at + len("⚠ tokens"))]
    assert all(cell.bold for cell in cells)  # set apart, with colour or without
    colours = {cell.fg for cell in cells} | {cell.bg for cell in cells}
    assert ("red" in colours) is color, colours

    term.child.sendcontrol("d")
    assert term.exit_status() == 0
