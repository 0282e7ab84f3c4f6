"""The test keys, and the secret-grep's record of what chatcli wrote.

The key is new each run, so finding it anywhere means a leak; it is not shaped like any known key
format, so only the literal removal of the configured key can hide it (as with an Azure or
gateway key).
"""

from __future__ import annotations

import io
import secrets
import subprocess

# New each run, so finding it anywhere means a leak; not shaped like any known key format, so
# only the literal removal of the configured key can hide it (as with an Azure or gateway key).
TEST_KEY = "test-key-" + secrets.token_hex(12)


# What chatcli wrote during the current test, to be grepped for the key afterwards.
OUTPUTS: list[io.StringIO | subprocess.CompletedProcess | object] = []


def leaks_in(text: str | bytes) -> bool:
    """Whether text holds the key, whole or its distinctive second half."""
    needles = (TEST_KEY, TEST_KEY[-12:])
    if isinstance(text, bytes):
        return any(n.encode() in text or n.encode("utf-16-le") in text for n in needles)
    return any(n in text for n in needles)


def written(output: object) -> str:
    if isinstance(output, subprocess.CompletedProcess):
        return f"{output.stdout or ''}{output.stderr or ''}"
    if isinstance(output, io.StringIO):
        return output.getvalue()
    read = getattr(output, "logfile_read", None)  # a pexpect child: all it printed
    return read.getvalue() if isinstance(read, io.StringIO) else ""


OTHER_KEY = "other-key-" + secrets.token_hex(8)  # the second server's, never the one OPENAI_API_KEY holds


KEYS = {"MAIN_KEY": TEST_KEY, "OTHER_KEY": OTHER_KEY}
