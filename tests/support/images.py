"""Small real images made from bytes (no Pillow): a PNG that decodes, and headers of the other
kinds, enough for chatcli to tell their type and size from their content."""

from __future__ import annotations

import struct
import zlib


def png(width: int, height: int) -> bytes:
    """A whole, decodable red RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b";"


def jpeg(width: int, height: int, *, exif: int = 0) -> bytes:
    """A JPEG's segments up to its frame header: an APP1 (EXIF) of `exif` bytes first, as a camera writes."""
    out = b"\xff\xd8"
    out += b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    if exif:
        out += b"\xff\xe1" + struct.pack(">H", exif + 2) + b"\x00" * exif
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" * 65  # a quantisation table
    out += b"\xff\xc4" + struct.pack(">H", 4) + b"\x00\x00"  # DHT: not a frame, though in the SOF range
    out += b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return out + b"\xff\xd9"


def webp_vp8(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(frame)) + b"WEBP" + b"VP8 " + struct.pack("<I", len(frame)) + frame


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    frame = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 4
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(frame)) + b"WEBP" + b"VP8L" + struct.pack("<I", len(frame)) + frame


def webp_vp8x(width: int, height: int) -> bytes:
    frame = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(frame)) + b"WEBP" + b"VP8X" + struct.pack("<I", len(frame)) + frame
