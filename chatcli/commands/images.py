"""Images that go with the next message: /image and /paste (issue 16).

The checks (type by content, size, regular files, http(s) URLs) are base/images.py's; here an
image is attached if it passes them and fits the model's window, or one sentence says why not.
"""

from __future__ import annotations

import shlex

from chatcli.base.clipboard import ClipboardError, paste_image
from chatcli.base.images import Image, ImageRefused, image_of_bytes, image_of_url, is_url, label, read_image
from chatcli.base.text import shown
from chatcli.commands.registry import Result, _shown, command
from chatcli.core.session import Session


@command("image", args="PATH|URL [...]", help="Attach images (PNG, JPEG, GIF, WebP files, or http(s) URLs) to your next message.")
def image_command(session: Session, arg: str) -> Result:
    """/image PATH attaches an image to your next message: a PNG, JPEG, GIF or WebP file
    (told by its content, not its name), up to image_max_mb (20 MB), sent as a data URL; or an
    http(s) URL, sent as it is for the server to fetch. Several may be given, quoted as in a shell;
    ~ works; Tab completes paths. /image alone lists the waiting images; /clear drops them.
    -o image_detail low (or /set image_detail low) sends them at low detail (85 tokens each)."""
    if not arg:
        if not session.images:
            return Result("No images are waiting; /image PATH attaches one.")
        return Result("Waiting for your next message: " + ", ".join(shown(label(i)) for i in session.images) + ".")
    try:
        names = shlex.split(arg)
    except ValueError:
        return Result(f"A quote is not closed in {_shown(arg)}; nothing was attached.", error=True)
    images = []
    for name in names:
        try:
            images.append(image_of_url(name) if is_url(name) else read_image(name, max_mb=session.policy.image_max_mb))
        except ImageRefused as exc:
            return Result(f"{shown(str(exc))}; nothing was attached.", error=True)
    return attach(session, images)


@command("paste", help="Attach the image on the clipboard (through wl-paste, xclip or osascript) to your next message.")
def paste_command(session: Session, arg: str) -> Result:
    """/paste attaches the image on the system clipboard to your next message, read with
    wl-paste (Wayland), xclip (X11) or osascript (macOS). A terminal pastes only text, so a
    screenshot is had this way; text on the clipboard is pasted at the prompt as usual."""
    try:
        data = paste_image()
        image = image_of_bytes("clipboard", data, max_mb=session.policy.image_max_mb)
    except ClipboardError as exc:
        return Result(str(exc), error=True)
    except ImageRefused as exc:  # "clipboard is not a PNG, ...", said of what it holds
        return Result(f"What the clipboard holds {str(exc).removeprefix('clipboard ')}; nothing was attached.", error=True)
    return attach(session, [image])


def attach(session: Session, images: list[Image]) -> Result:
    """Add the images to those waiting, if the window has room for them beside the conversation."""
    plan = session.plan("\n\n".join(session.attached), images=[*session.images, *images])
    count = session.image_tokens(images)
    if not plan.fits:
        return Result(f"The {'image is' if len(images) == 1 else 'images are'} {count} tokens, more than the model's "
                      f"{plan.window:,}-token window has room for; nothing was attached.", error=True)
    session.images += images
    said = ", ".join(shown(label(i)) for i in images)
    warning = ""
    if session.refuses_images():
        warning = f" Note: {shown(session.model)} does not take images; choose a vision model with /model before sending."
    return Result(f"Attached {said} ({count} tokens); {'it goes' if len(images) == 1 else 'they go'} with your next "
                  f"message.{warning}")
