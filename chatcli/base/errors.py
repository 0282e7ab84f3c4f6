"""User-facing errors and the exit codes they map to.

Every failure a user can meet is one of these: a sentence that says what
happened and what to do, plus the exit code one-shot mode ends with. Catch
them at the edge (a REPL turn, a one-shot run, main) and print the sentence.
"""

from __future__ import annotations

from enum import IntEnum

from chatcli.base.text import strip_controls


class ExitCode(IntEnum):
    """What chatcli exits with (the README's table)."""

    OK = 0
    FAILURE = 1  # the request failed, or the reply is incomplete
    USAGE = 2  # a bad flag or argument
    CONFIG = 3  # bad configuration, or no API key
    NETWORK = 4  # the server could not be reached, or did not answer in time
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


EXIT_OK, EXIT_FAILURE, EXIT_USAGE = ExitCode.OK, ExitCode.FAILURE, ExitCode.USAGE
EXIT_CONFIG, EXIT_NETWORK, EXIT_INTERRUPTED = ExitCode.CONFIG, ExitCode.NETWORK, ExitCode.INTERRUPTED


class ChatError(Exception):
    """An error with a one-sentence message meant for the user."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(ChatError):
    """A setting is wrong; the message names where it came from and what is allowed."""

    exit_code = EXIT_CONFIG


class UsageError(ChatError):
    """A bad command line."""

    exit_code = EXIT_USAGE


class ContextLengthError(ChatError):
    """The server said the conversation is longer than the model's context window.

    `window` and `requested` are the sizes the server named, when it named them
    (llama.cpp's n_ctx and n_prompt_tokens, or the numbers in vLLM's sentence).
    """

    def __init__(self, message: str, *, window: int | None = None, requested: int | None = None) -> None:
        super().__init__(message)
        self.window = window
        self.requested = requested


class BadRequest(ChatError):
    """The server refused the request as it was put (HTTP 400): a parameter, or a part of the body."""


class RefusedParameter(BadRequest):
    """The server refused a request parameter for this model (400 unsupported_parameter or unsupported_value)."""

    def __init__(self, message: str, *, param: str, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class NetworkError(ChatError):
    """The server could not be reached or went silent."""

    exit_code = EXIT_NETWORK


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (the terminal closed): end the turn like Ctrl-C, save it, then exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def one_line(text: str, limit: int = 300) -> str:
    """Server text bound for the terminal: one line, through the terminal's gate (invisible
    characters shown, not hidden), bounded."""
    # The gate keeps a ZWNJ or ZWJ only where a word needs it; any other unprintable is a space.
    text = "".join(ch if ch.isprintable() or ch in "\u200c\u200d" else " " for ch in strip_controls(text))
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"
