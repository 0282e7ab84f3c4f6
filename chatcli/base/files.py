"""Reading a text file someone named: the one check that /file and the file tools share.

A name can point at a directory, a FIFO or a device (/dev/zero never ends), at 9 GB of logs,
or at an image; each is refused with a reason before much is read. The file is opened
without blocking and checked on the open descriptor, so a FIFO never hangs the reader and
nothing can be swapped in between the check and the read.
"""

from __future__ import annotations

import os
import stat

from chatcli.base.images import sniff

FILE_LIMIT = 8_000_000  # bytes: about 2M tokens, past every model's window; checked before reading

NOT_REGULAR = "not_regular"
TOO_BIG = "too_big"
NOT_TEXT = "not_text"
UNREADABLE = "unreadable"


class FileRefused(Exception):
    """Why a file was not read: `why` is one of the kinds above; `size` (bytes) for TOO_BIG,
    `reason` (the OS's words) for UNREADABLE. Callers word the sentence for their own context."""

    def __init__(self, why: str, *, size: int = 0, reason: str = "", image: bool = False) -> None:
        super().__init__(why)
        self.why, self.size, self.reason = why, size, reason
        self.image = image  # NOT_TEXT: it is a PNG, JPEG, GIF or WebP image (/image takes it)


def read_text_file(path: str, *, limit: int = FILE_LIMIT, follow_symlinks: bool = True) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes, or FileRefused.

    `follow_symlinks=False` refuses a symlink as the last part of the path (the file tools
    resolve every path first, so one found there now was put there since)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:  # a NUL in the name is a ValueError
        raise FileRefused(UNREADABLE, reason=getattr(exc, "strerror", None) or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(NOT_REGULAR)
        if info.st_size > limit:
            raise FileRefused(TOO_BIG, size=info.st_size)
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise FileRefused(TOO_BIG, size=total)
    except OSError as exc:
        raise FileRefused(UNREADABLE, reason=exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(NOT_TEXT, image=sniff(data[:16]) is not None) from None
    if "\x00" in text:
        raise FileRefused(NOT_TEXT, image=sniff(data[:16]) is not None)
    return text
