"""An image that goes with a user's message, as the layers above share it.

The bytes of a file, stdin or the clipboard travel as a data URL; a URL the user gave
travels as it is, for the server to fetch. The store keeps each image's bytes once,
keyed by its sha256, so the same screenshot sent twice is stored once.
"""

from __future__ import annotations

import base64
import functools
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

    @functools.cached_property
    def location(self) -> str:
        """What goes in image_url.url: the URL, or the bytes as a data URL (made once: every
        request of the conversation carries it again)."""
        if self.url is not None:
            return self.url
        assert self.data is not None and self.mime is not None
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def part(self) -> dict[str, Any]:
        """The image as a chat-completions content part."""
        return {"type": "image_url", "image_url": {"url": self.location, "detail": self.detail}}


# -- checks: what may be attached, decided before anything is sent ------------------------------

KINDS = "a PNG, JPEG, GIF or WebP image"
DEFAULT_MAX_MB = 20  # OpenAI's limit on an image's size


class ImageRefused(ValueError):
    """An image that cannot be attached; its message is a sentence for the user, without its end
    (the caller says what was not done: "; nothing was attached.")."""


def sniff(data: bytes) -> str | None:
    """The image type from the first bytes, whatever the file is named."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def dimensions(data: bytes, mime: str) -> tuple[int, int] | None:
    """Width and height read from the header, or None where the header does not say."""
    try:
        if mime == "image/png" and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if mime == "image/gif":
            return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
        if mime == "image/webp":
            return _webp_size(data)
        if mime == "image/jpeg":
            return _jpeg_size(data)
    except IndexError:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


# The start-of-frame markers: each holds the frame's height and width (not DHT, JPG or DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the segments to the first start-of-frame marker (past EXIF and its thumbnail)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill bytes
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF:
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big")
        at += 2 + length
    return None


def image_of_bytes(name: str, data: bytes, *, max_mb: float = DEFAULT_MAX_MB, detail: str = "auto") -> Image:
    """The bytes as an Image, if they are a PNG, JPEG, GIF or WebP under the size cap."""
    if len(data) > max_mb * 1_000_000:
        raise ImageRefused(_too_big(name, len(data), max_mb))
    if not data:
        raise ImageRefused(f"{name} is empty")
    mime = sniff(data)
    if mime is None:
        raise ImageRefused(f"{name} is not {KINDS}")
    size = dimensions(data, mime)
    if not size or not all(size):  # a whole image's header always says; a cut or damaged one may not
        raise ImageRefused(f"{name} starts as {mime.split('/')[1].upper()} but its header is cut short or damaged")
    width, height = size
    return Image.of_bytes(name, data, mime, width=width, height=height, detail=detail)


def _too_big(name: str, size: int, max_mb: float) -> str:
    return f"{name} is {_bytes(size)}, over the {max_mb:g} MB limit on an image (image_max_mb)"


def _bytes(size: int) -> str:
    """A size as people read it: 3.1 MB, 3.3 KB, 812 bytes."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{size / 1000:.1f} KB" if size >= 1000 else f"{size} bytes"


def read_image(path: str, *, max_mb: float = DEFAULT_MAX_MB, detail: str = "auto", name: str | None = None) -> Image:
    """A file as an Image: a regular file only (opened without blocking, so a FIFO never hangs),
    its size checked before it is read."""
    import os  # lazy: off the path of chatcli --help
    import stat

    name = name or path
    if not path:
        raise ImageRefused("An empty file name was given")
    if "\x00" in path:
        raise ImageRefused("A file name cannot hold a NUL character")
    try:
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageRefused(f"Could not read {name} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRefused(f"{name} is {'a directory' if stat.S_ISDIR(info.st_mode) else 'not a regular file'}")
        if info.st_size > max_mb * 1_000_000:
            raise ImageRefused(_too_big(name, info.st_size, max_mb))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(int(max_mb * 1_000_000) + 1)
    except OSError as exc:
        raise ImageRefused(f"Could not read {name} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return image_of_bytes(name, data, max_mb=max_mb, detail=detail)


def image_of_url(url: str, *, detail: str = "auto") -> Image:
    """A URL the server fetches itself: http(s) only, sent as it is, never downloaded here."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ImageRefused(f"{url!r} is not an http or https URL: only those can be sent for the server to fetch")
    if not rest or any(c.isspace() for c in url):
        raise ImageRefused(f"{url!r} is not a well-formed URL (it has a space, or no host)")
    return Image.of_url(url, detail=detail)


def is_url(text: str) -> bool:
    """Whether an /image argument names a URL rather than a file (anything with a scheme)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalpha()


def label(image: Image) -> str:
    """The image in a few words, for a chip at the prompt: its name and, where known, its size."""
    name = image.name.rsplit("/", 1)[-1] if image.url is None else image.name
    size = f" {image.width}×{image.height}" if image.width and image.height else ""
    return f"{name}{size}"


def size_of_location(location: str) -> tuple[int, int] | None:
    """Width and height of a data URL's image, from the start of its bytes alone; None for a URL."""
    if not location.startswith("data:"):
        return None
    head, _, payload = location.partition(",")
    try:
        data = base64.b64decode(payload[:350_000])  # a multiple of 4: room for a JPEG's EXIF before its frame
    except ValueError:
        return None
    mime = sniff(data)
    return dimensions(data, mime) if mime else None
