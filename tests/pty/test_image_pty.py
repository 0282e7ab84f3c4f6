"""/image and /file in a real pty: Tab completes the path, a chip before the prompt shows what
waits to go with the next message, sending takes it, /clear drops it, and the input history
keeps the command line, never the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import png
from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d, visible
from tests.support.realserver import Terminal

pytestmark = pytest.mark.timeout(60)


def test_image_chip_send_and_clear(srv, spawn_chatcli, isolated_env):
    Path("cat.png").write_bytes(png(512, 384))
    Path("notes.txt").write_text("the notes\n")
    child = spawn_chatcli("-m", "gpt-4o", cols=160)
    expect_prompt(child)

    child.send("/image ca")
    child.expect_exact("cat.png", timeout=TIMEOUT)  # the menu, as it is typed
    child.send("\t")  # Tab takes the only path that starts so
    child.expect_exact("t.png", timeout=TIMEOUT)  # what Tab added to the line
    child.send("\r")
    child.expect_exact("Attached cat.png 512×384 (255 tokens)", timeout=TIMEOUT)
    assert _prompt(child) == "[image cat.png 512×384 255 tok] | >"  # the chip, on a line above the prompt

    child.send("/file notes.txt\r")
    chips = _prompt(child)  # the two side by side
    assert chips.startswith("[file notes.txt ") and chips.endswith(" tok] [image cat.png 512×384 255 tok] | >")

    child.send("what is it?\r")
    child.expect_exact("echo: ", timeout=TIMEOUT)
    assert _prompt(child) == ">"  # sent: nothing waits
    content = srv.chat_requests[-1].body["messages"][-1]["content"]
    assert content[0]["text"].startswith("File notes.txt:") and content[0]["text"].endswith("what is it?")
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")

    child.send("/tokens\r")  # sent: nothing waits any more, and the history holds the image
    shown = visible(expect_prompt(child))
    assert "of which images (1)" in shown and "waiting: 0 images" in shown

    child.send("/image cat.png\r")
    assert _prompt(child) == "[image cat.png 512×384 255 tok] | >"
    child.send("/clear\r")
    child.expect_exact("Forgot 1 exchange and dropped 1 waiting attachment", timeout=TIMEOUT)
    assert _prompt(child) == ">"
    quit_with_ctrl_d(child)

    history = (isolated_env / "state" / "chatcli" / "history").read_text()
    assert "/image cat.png" in history
    assert "base64" not in history and "iVBOR" not in history  # the image never enters the input history


def _prompt(child) -> str:
    """The next prompt as the screen shows it: its line of chips, if any, then " | " and the ">"."""
    expect_prompt(child)
    lines = [line.strip() for line in visible(child.after).split("\n")[-2:]]
    return lines[-1] if not lines[0].startswith("[") else " | ".join(lines)


def test_chips_wider_than_the_terminal_leave_the_prompt_and_what_is_typed_on_screen(srv, spawn_chatcli):
    # On the prompt's own line, chips wider than the terminal made prompt-toolkit draw nothing at all.
    long_name = "a_rather_long_screenshot_name_from_the_desktop_2026-12-02_at_20.45.13.png"
    for name in (long_name, "photo.png", "error.png"):
        Path(name).write_bytes(png(512, 384))
    term = Terminal(spawn_chatcli("-m", "gpt-4o", env={"PROMPT_TOOLKIT_NO_CPR": "0"}, rows=16, cols=80),
                    rows=16, cols=80)
    term.prompt(timeout=15)

    term.child.send(f"/image {long_name} photo.png error.png\r")
    term.wait("Attached")
    term.prompt(timeout=15)
    term.child.send("hello typed")
    term.wait("hello typed")
    term.settle(0.3)

    rows = term.text().splitlines()
    [typed] = [row for row in rows if "hello typed" in row]
    assert typed.startswith("> hello typed"), term.text()
    above = rows[rows.index(typed) - 2:rows.index(typed)]  # the chips, packed into the 80 columns
    assert above[0].startswith("[image a_rather_long_screenshot") and above[0].endswith("…"), term.text()
    assert above[1] == "[image photo.png 512×384 255 tok] [image error.png 512×384 255 tok]", term.text()
    assert all(len(row) < 80 for row in above)
    term.child.sendcontrol("c")
    term.child.sendcontrol("d")
    assert term.exit_status() == 0
