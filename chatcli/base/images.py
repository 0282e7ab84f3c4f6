"""An image that goes with a user's message, as the layers above share it.

The bytes of a file, stdin or the clipboard travel as a data URL; a URL the user gave
travels as it is, for the server to fetch. The store keeps each image's bytes once,
keyed by its sha256, so the same screenshot sent twice is stored once.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

DETAILS = ("auto", "low", "high")


@dataclass(frozen=True)
class Image:
    """One image attached to a message."""

    name: str  # what the user named it: a file's name, "clipboard", "stdin", or the URL
    sha256: str  # of the bytes, or of the URL when there are none
    mime: str | None = None  # image/png, image/jpeg, image/gif or image/webp; None for a URL
    data: bytes | None = None  # None for a URL
    url: str | None = None  # set for an image the server fetches itself
    width: int | None = None  # None where it is not known (a URL)
    height: int | None = None
    detail: str = "auto"  # image_url.detail: auto, low or high

    @classmethod
    def of_bytes(cls, name: str, data: bytes, mime: str, *, width: int | None = None, height: int | None = None,
                 detail: str = "auto") -> Image:
        return cls(name=name, sha256=hashlib.sha256(data).hexdigest(), mime=mime, data=data,
                   width=width, height=height, detail=detail)

    @classmethod
    def of_url(cls, url: str, *, detail: str = "auto") -> Image:
        return cls(name=url, sha256=hashlib.sha256(url.encode()).hexdigest(), url=url, detail=detail)

    @property
    def location(self) -> str:
        """What goes in image_url.url: the URL, or the bytes as a data URL."""
        if self.url is not None:
            return self.url
        assert self.data is not None and self.mime is not None
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def part(self) -> dict[str, Any]:
        """The image as a chat-completions content part."""
        return {"type": "image_url", "image_url": {"url": self.location, "detail": self.detail}}
