"""A reply's deadlines: read_timeout without content, reply_timeout in all, a grace after the finish.

httpx2's read timeout counts time without bytes, and an SSE keep-alive comment
(`: ping`) is bytes: a server that pings and never writes would hold a reply
open for ever. These deadlines count content instead (text, reasoning, a finish
reason, usage). When one passes, a thread of its own shuts the connection's
socket down, which ends at once the read the reply waits in. Where no socket
can be had, the reply ends at the next bytes that come (the next ping), and
httpx2's own read timeout still bounds a silence.

After the finish reason the reply is over in all but its usage and `[DONE]`: a
server that then leaves the connection open gets FINISH_GRACE seconds, and the
reply ends complete instead of waiting out read_timeout.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

# Seconds to wait, after the finish reason, for the usage and [DONE] that should follow at once.
FINISH_GRACE = 2.0

# A wait cut short to what was left of reply_timeout ends this close to it, or past it.
OVERDUE_SLACK = 0.05

IDLE = "idle"  # no content for read_timeout
TOTAL = "total"  # the reply ran past reply_timeout
FINISHED = "finished"  # the finish reason came, then nothing for FINISH_GRACE: the reply is complete


class Deadline:
    """The deadlines of one request and its reply; `expired` says which one passed, if any."""

    def __init__(self, *, idle: float, total: float | None = None, started: float | None = None) -> None:
        now = time.monotonic()
        self.idle = idle
        self.total = total
        self._end = (now if started is None else started) + total if total else None
        self._last = now  # the last content, or the headers
        self._finished = False
        self.content_seen = False  # text, reasoning, a finish or usage came: a retry could repeat it
        self.keepalives = 0  # keep-alive comments since the last content
        self.expired: str | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the finish came, or the watch is to stop
        self._stopped = False
        self._held_since: float | None = None  # the reader holds an event: read_timeout does not run
        self._parked = False  # the watch waits with no idle deadline (it looked while an event was held)
        self._sock: socket.socket | None = None

    @property
    def finished(self) -> bool:
        """The finish reason came: whatever happens to the connection now, the reply is complete."""
        return self._finished

    def remaining(self) -> float | None:
        """Seconds left of reply_timeout; None when there is no such limit."""
        return None if self._end is None else self._end - time.monotonic()

    @property
    def overdue(self) -> bool:
        """reply_timeout has run out (also while the headers were awaited, with no watch yet)."""
        left = self.remaining()
        return self.expired == TOTAL or (left is not None and left <= OVERDUE_SLACK)

    def start(self, response: Any) -> None:
        """The headers came: count from now, and watch the response's connection."""
        self._last = time.monotonic()
        self._sock = _socket_of(response)
        threading.Thread(target=self._watch, daemon=True, name="reply-deadline").start()

    def content(self, *, finish: bool = False) -> None:
        """Content came (text, reasoning, usage; `finish`: the finish reason)."""
        with self._lock:
            self._last = time.monotonic()
            self.keepalives = 0
            self.content_seen = True
            if finish and not self._finished:
                self._finished = True
                self._changed.notify()  # the next deadline is now the grace, sooner

    @contextmanager
    def held(self) -> Iterator[None]:
        """While the reader holds an event (drawing a long block can take a while), nothing is
        being waited for: read_timeout and the grace stop counting, reply_timeout does not."""
        with self._lock:
            self._held_since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                if self._held_since is not None:
                    self._last += time.monotonic() - self._held_since
                self._held_since = None
                if self._parked:  # else the watch wakes at its own time and finds the deadline moved on
                    self._changed.notify()

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        """The response's lines, ending at the first that comes after a deadline passed."""
        for line in lines:
            if self.expired is None and (due := self._due()) is not None:
                self.expired = due
            if self.expired is not None:
                return
            if line.startswith(":"):
                self.keepalives += 1
            yield line

    def chunks(self, chunks: Iterable[str]) -> Iterator[str]:
        """A whole body's pieces (a completion sent whole, not streamed), each one content."""
        for chunk in chunks:
            if self.expired is not None:
                return
            self.content()
            yield chunk

    def stop(self) -> None:
        """The reply is over, or about to be read no more: the watch ends and shuts nothing."""
        with self._lock:
            self._stopped = True
            self._changed.notify()

    def _due(self) -> str | None:
        now = time.monotonic()
        if self._finished:
            return FINISHED if now >= self._next() else None
        if self._end is not None and now >= self._end:
            return TOTAL
        return IDLE if now >= self._next() else None

    def _next(self) -> float:
        """When the next deadline falls (infinity: none while the reader holds an event, with no reply_timeout)."""
        end = math.inf if self._end is None else self._end
        if self._held_since is not None:
            return end
        after = self._last + (min(FINISH_GRACE, self.idle / 2) if self._finished else self.idle)  # the grace ends
        return min(after, end)  # before httpx2's read timeout, which counts silence alone

    def _watch(self) -> None:
        with self._lock:
            while not self._stopped:
                due = self._due()
                if due is not None:
                    self.expired = due
                    _shut(self._sock)
                    return
                self._parked = self._held_since is not None
                wait = self._next() - time.monotonic()
                self._changed.wait(None if wait == math.inf else max(wait, 0.005))


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under an httpx2 response (httpcore2's network stream), if it can be had."""
    try:
        sock = response.extensions["network_stream"].get_extra_info("socket")
    except (AttributeError, KeyError, TypeError):
        return None
    return sock if isinstance(sock, socket.socket) else None


def _shut(sock: socket.socket | None) -> None:
    """End the reads on a socket from another thread: shutdown wakes a blocked recv, close does not.

    socket.socket's own shutdown, also for an ssl.SSLSocket, whose shutdown would drop
    its TLS state under the thread still reading."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
