"""The images sent with user messages, as the database keeps them (migration 10).

An image's bytes are kept once, in `images`, keyed by their sha256, however many
messages send it; `message_images` names a message's images in order. A URL image
has no bytes: its link keeps the URL. These run inside db.py's write transactions,
so a message and its images are committed together or not at all.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from chatcli.base.images import Image


def link_images(db: sqlite3.Connection, message_id: int, images: tuple[Image, ...]) -> None:
    """Name a message's images, in order; an image's bytes are written the first time any message sends it."""
    now = time.time()
    for position, image in enumerate(images):
        if image.url is None:
            assert image.data is not None and image.mime is not None
            db.execute(
                """INSERT OR IGNORE INTO images (sha256, mime, bytes, width, height, size, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (image.sha256, image.mime, image.data, image.width, image.height, len(image.data), now),
            )
        db.execute(
            "INSERT INTO message_images (message_id, position, sha256, name, detail, url) VALUES (?, ?, ?, ?, ?, ?)",
            (message_id, position, image.sha256, image.name, image.detail, image.url),
        )


def drop_unused_images(db: sqlite3.Connection) -> None:
    """Delete the images no message names any more (their links went with their messages, ON DELETE
    CASCADE), so the database does not keep every image ever sent."""
    db.execute("DELETE FROM images WHERE NOT EXISTS (SELECT 1 FROM message_images l WHERE l.sha256 = images.sha256)")


def images_of(db: sqlite3.Connection, session_id: int) -> tuple[dict[int, list[Image]], dict[int, list[str]]]:
    """A session's images by message id, in order; and the names of those whose bytes are gone
    (deleted by hand, or lost to damage): a missing image is left out, not a reason to fail.

    Bytes that no longer match their sha256 count as gone: sent again, they would not be the image
    the conversation was about."""
    rows = db.execute(
        """SELECT l.message_id, l.sha256, l.name, l.detail, l.url, i.mime, i.bytes, i.width, i.height
           FROM messages m JOIN message_images l ON l.message_id = m.id
           LEFT JOIN images i ON i.sha256 = l.sha256 AND l.url IS NULL
           WHERE m.session_id = ? ORDER BY l.message_id, l.position""",
        (session_id,),
    ).fetchall()
    images: dict[int, list[Image]] = {}
    missing: dict[int, list[str]] = {}
    for message_id, sha256, name, detail, url, mime, data, width, height in rows:
        if url is not None:
            images.setdefault(message_id, []).append(Image(name=name, sha256=sha256, url=url, detail=detail))
        elif data is None or hashlib.sha256(data).hexdigest() != sha256:
            missing.setdefault(message_id, []).append(name)
        else:
            images.setdefault(message_id, []).append(Image(name=name, sha256=sha256, mime=mime, data=bytes(data),
                                                           width=width, height=height, detail=detail))
    return images, missing
