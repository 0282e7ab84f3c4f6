"""/image and /file in a real pty: Tab completes the path, a chip before the prompt shows what
waits to go with the next message, sending takes it, /clear drops it, and the input history
keeps the command line, never the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import png
from tests.support.pty import TIMEOUT, expect_prompt, quit_with_ctrl_d, visible

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
    assert _prompt(child) == "[image cat.png 512×384 255 tok] >"  # the chip, before the prompt

    child.send("/file notes.txt\r")
    chips = _prompt(child)  # the two side by side
    assert chips.startswith("[file notes.txt ") and chips.endswith(" tok] [image cat.png 512×384 255 tok] >")

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
    assert _prompt(child) == "[image cat.png 512×384 255 tok] >"
    child.send("/clear\r")
    child.expect_exact("Forgot 1 exchange and dropped 1 waiting attachment", timeout=TIMEOUT)
    assert _prompt(child) == ">"
    quit_with_ctrl_d(child)

    history = (isolated_env / "state" / "chatcli" / "history").read_text()
    assert "/image cat.png" in history
    assert "base64" not in history and "iVBOR" not in history  # the image never enters the input history


def _prompt(child) -> str:
    """The next prompt's line as the screen shows it: its chips and the ">"."""
    expect_prompt(child)
    return visible(child.after).split("\n")[-1].strip()
