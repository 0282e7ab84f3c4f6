"""What waits to go with the next message, as the prompt shows it: /file's files and the images
of /image, /paste and -i, each as a chip such as [image cat.png 512×384 ≈255 tok]."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatcli.base.images import label
from chatcli.base.text import strip_controls

if TYPE_CHECKING:
    from chatcli.core.session import Session


class AttachedFile(str):
    """A file /file attached: its text as it is sent (a str, joined into the message), and its name."""

    name: str

    def __new__(cls, text: str, *, name: str) -> AttachedFile:
        made = super().__new__(cls, text)
        made.name = name
        return made


def chips(session: Session) -> list[str]:
    """One chip per waiting attachment, names through the terminal's gate (a name can hold anything)."""
    out = []
    for piece in session.attached:
        name = getattr(piece, "name", "file")
        count = session.tokenizer.message(session.model, "user", piece)
        out.append(f"[file {strip_controls(name)} {count} tok]")
    for image in session.images:
        count = session.image_tokens([image])
        out.append(f"[image {strip_controls(label(image))} {count} tok]")
    return out
