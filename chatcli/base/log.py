"""--verbose and --log-file: each request, its timings and its retries, with secrets taken out.

chatcli logs what it sends (the URL, the model, how many messages and bytes,
the parameters) and how long each step took, never the words of a message.
The SDK's and httpx2's own records go to the same place. Every line passes
through one redacting formatter, so a key can reach the log neither through
chatcli's records nor through a library's: the configured key, Authorization
and api-key headers, and anything shaped like a known key format.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

from chatcli.base.errors import UsageError
from chatcli.base.pii import hide_known, redact_secrets
from chatcli.base.secrets import known_api_key, known_secrets

log = logging.getLogger("chatcli")


# The libraries whose records are worth having, at the level that says what they did.
LIBRARIES = {"openai": logging.INFO, "httpx2": logging.INFO}


class Redacting(logging.Formatter):
    def __init__(self, secret: str | None) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        self.secret = secret

    def format(self, record: logging.LogRecord) -> str:
        # The known key too: after /profile, the key in use is another profile's.
        text = hide_known(redact_secrets(super().format(record), self.secret), known_secrets())
        key = known_api_key()
        return redact_secrets(text, key) if key and key != self.secret else text


# Where --verbose lines go instead of stderr while the REPL draws a reply (see `routed`).
_route: Callable[[str], None] | None = None
_held: list[tuple[logging.Handler, logging.LogRecord]] = []  # lines from other threads, while holding
_holding = False


class _Handler(logging.StreamHandler):
    def __init__(self, stream: TextIO, *, routable: bool = False) -> None:
        super().__init__(stream)
        self.routable = routable

    def emit(self, record: logging.LogRecord) -> None:
        if self.routable and _holding and threading.current_thread() is not threading.main_thread():
            # A line from the background (asking the server about itself) would cut into the
            # prompt or the reply being drawn: it waits for the next reply, and goes above it.
            _held.append((self, record))
            return
        route = _route
        if not (self.routable and route is not None):
            return super().emit(record)
        try:
            route(self.format(record))
        except Exception:  # noqa: BLE001 - a log line must never break the reply
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Drop the line: logging's default prints a traceback with the record's unredacted arguments."""


@contextmanager
def routed(say: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, --verbose lines go to `say` (the renderer, which prints them above
    the reply it is drawing) instead of straight to stderr, where they would cut into it."""
    global _route
    saved, _route = _route, say
    _release()
    try:
        yield
    finally:
        _route = saved


@contextmanager
def holding() -> Iterator[None]:
    """While the REPL runs, a --verbose line from a background thread would cut into the prompt
    or the reply being drawn: such lines are held, and printed above the next reply."""
    global _holding
    _holding = True
    try:
        yield
    finally:
        _holding = False
        _release()


def _release() -> None:
    """The lines held from other threads, in order, each where its handler now sends it."""
    while _held:
        handler, record = _held.pop(0)
        if isinstance(handler, _Handler) and _route is not None:
            try:
                _route(handler.format(record))
            except Exception:  # noqa: BLE001 - a log line must never break the reply
                pass
        else:
            logging.StreamHandler.emit(handler, record)  # type: ignore[arg-type]


@contextmanager
def logging_to(stderr: TextIO, *, verbose: bool, log_file: str | None, secret: str | None) -> Iterator[None]:
    """Send the log to stderr (--verbose) and/or a file (--log-file) while the block runs."""
    handlers: list[logging.Handler] = []
    if verbose:
        handlers.append(_Handler(stderr, routable=True))
    if log_file is not None:
        handlers.append(_Handler(_open_log(log_file)))
    formatter = Redacting(secret)
    loggers = {log: logging.INFO, **{logging.getLogger(name): level for name, level in LIBRARIES.items()}}
    saved = {logger: (logger.level, logger.propagate) for logger in loggers}
    for handler in handlers:
        handler.setFormatter(formatter)
    if handlers:  # an empty list: neither flag, and the loggers are left alone
        for logger, level in loggers.items():
            logger.setLevel(level)
            logger.propagate = False
            for handler in handlers:
                logger.addHandler(handler)
    try:
        yield
    finally:
        _release()  # what the background said after the last reply
        for logger, (level, propagate) in saved.items():
            for handler in handlers:
                logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        for handler in handlers:
            handler.flush()
            if handler.stream is not stderr:
                handler.stream.close()


def _open_log(name: str) -> TextIO:
    """The log file, appended to, readable by its owner only (it names servers and models)."""
    if not name.strip():
        raise UsageError("--log-file needs a file name, as in --log-file chatcli.log.")
    try:
        path = Path(name).expanduser()
    except RuntimeError:  # ~NAME with no user NAME
        raise UsageError(f"--log-file {name!r} names a home directory that does not exist; give a full path.") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise UsageError(f"Cannot write the log file {path} ({exc.strerror or exc}); check --log-file.") from None
