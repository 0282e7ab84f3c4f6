"""Replies that are no chat stream: what a proxy, a web server or another API may answer with 200."""

from __future__ import annotations

import gzip
from random import Random

from tests.support.server import Body


def _half_gzip() -> bytes:
    """A gzip body cut in the middle, garbage after: its first half decodes to no whole line."""
    random = Random(14)
    line = 'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % "".join(random.choice("abcdefgh ") for _ in range(4000))
    packed = gzip.compress(line.encode())
    return packed[: len(packed) // 2] + bytes(range(256))  # zlib: "invalid distance too far back"


# 200 bodies that are no chat stream, and what the sentence calls them.
NOT_CHAT_STREAMS = [
    ("html-labelled-event-stream", Body(b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>\n"),
     "html, not a chat stream"),
    ("json-that-is-no-completion", Body(b'{"status": "ok", "version": "1.2"}', content_type="application/json"),
     "json that is not a chat completion"),
    ("json-labelled-event-stream", Body(b'{"detail": "Not Found"}\n'), "json that is not a chat completion"),
    ("other-server-sent-events", Body(b'event: message_start\ndata: {"type": "message_start"}\n\n'),
     "server-sent events that are not chat-completion chunks"),
    ("garbage", Body(Random(1).randbytes(600)), "binary data, not a chat stream"),
    ("plain-text", Body(b"Bad Gateway\n", content_type="text/event-stream; charset=utf-8"),
     "plain text ('bad gateway'), not a chat stream"),
    ("empty", Body(b""), "an empty body, not a chat stream"),
    ("gzip-garbage", Body(b"this is not gzip at all " * 20, headers={"Content-Encoding": "gzip"}),
     "a compressed body that does not decompress"),
    ("half-valid-gzip", Body(_half_gzip(), headers={"Content-Encoding": "gzip"}),
     "a compressed body that does not decompress"),
]


FAST_RETRY = {"retry-after-ms": "1"}  # the SDK honours it, so retries take no time
