"""An image from the system clipboard, through the tool the desktop has: wl-paste (Wayland),
xclip (X11) or osascript (macOS; pbpaste reads only text).

Terminals paste text, never images, so /paste asks the clipboard's own tool for the bytes.
Each failure is one sentence: no tool, no image on the clipboard, a tool that failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Mapping

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
TIMEOUT_S = 5.0
NO_TOOL = "No clipboard tool for images found: install wl-clipboard (Wayland) or xclip (X11)."
NO_IMAGE = "The clipboard holds no image (copy one first; text is pasted at the prompt as it is)."


class ClipboardError(Exception):
    """The clipboard's image could not be had; the message is one sentence for the user."""


def paste_image(environ: Mapping[str, str] | None = None) -> bytes:
    """The image on the clipboard, as bytes of its own type (PNG where the tool can choose)."""
    env = dict(os.environ if environ is None else environ)
    path = env.get("PATH")
    if env.get("WAYLAND_DISPLAY") and shutil.which("wl-paste", path=path):
        types = _run(["wl-paste", "--list-types"], env).decode("utf-8", "replace").split()
        return _run(["wl-paste", "--no-newline", "--type", _choose(types)], env)
    if env.get("DISPLAY") and shutil.which("xclip", path=path):
        targets = _run(["xclip", "-selection", "clipboard", "-t", "TARGETS", "-o"], env).decode("utf-8", "replace")
        return _run(["xclip", "-selection", "clipboard", "-t", _choose(targets.split()), "-o"], env)
    if sys.platform == "darwin" and shutil.which("osascript", path=path):
        return _mac(env)
    raise ClipboardError(NO_TOOL)


def _choose(types: list[str]) -> str:
    """The image type to ask for: PNG first, as every model takes it."""
    for kind in IMAGE_TYPES:
        if kind in types:
            return kind
    raise ClipboardError(NO_IMAGE)


def _run(argv: list[str], env: dict[str, str]) -> bytes:
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ClipboardError(f"{argv[0]} did not answer within {TIMEOUT_S:g} seconds; nothing was attached.") from None
    except OSError as exc:
        raise ClipboardError(f"{argv[0]} could not be run ({exc.strerror or exc}); nothing was attached.") from None
    if done.returncode != 0:
        # wl-paste says "No selection" or "Clipboard content is not available as requested type"
        # and xclip "target ... not available" when the clipboard is empty or holds no image.
        raise ClipboardError(NO_IMAGE)
    return done.stdout


def _mac(env: dict[str, str]) -> bytes:
    """macOS: AppleScript hands the clipboard's PNG over as «data PNGf89504E47...»."""
    out = _run(["osascript", "-e", "get the clipboard as «class PNGf»"], env).decode("ascii", "replace").strip()
    prefix = "«data PNGf"
    if not out.startswith(prefix):
        raise ClipboardError(NO_IMAGE)
    try:
        return bytes.fromhex(out[len(prefix):].rstrip("»"))
    except ValueError:
        raise ClipboardError(NO_IMAGE) from None
