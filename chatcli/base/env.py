"""The process environment, gathered once and injected everywhere else.

Nothing reads os.environ, the tty flags or the XDG directories at import
time; main() builds an Env and passes it down, and tests build their own.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, TextIO


@dataclass(frozen=True)
class Env:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdin_isatty: bool
    stdout_isatty: bool
    environ: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    stderr_isatty: bool = False  # where one-shot mode may say, live, that a reply has stalled

    @classmethod
    def from_process(cls) -> Env:
        return cls(
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin_isatty=isatty(sys.stdin),
            stdout_isatty=isatty(sys.stdout),
            environ=dict(os.environ),
            cwd=Path.cwd(),
            stderr_isatty=isatty(sys.stderr),
        )

    def _xdg(self, name: str, fallback: str) -> Path:
        value = self.environ.get(name, "")
        # The XDG spec says relative paths are invalid and must be ignored.
        if value and os.path.isabs(value):
            return Path(value)
        return Path(self.environ.get("HOME") or Path.home()) / fallback

    @property
    def config_dir(self) -> Path:
        return self._xdg("XDG_CONFIG_HOME", ".config") / "chatcli"

    @property
    def data_dir(self) -> Path:
        return self._xdg("XDG_DATA_HOME", ".local/share") / "chatcli"

    @property
    def state_dir(self) -> Path:
        return self._xdg("XDG_STATE_HOME", ".local/state") / "chatcli"

    @property
    def no_color(self) -> bool:
        # https://no-color.org: any non-empty value disables colour.
        return bool(self.environ.get("NO_COLOR"))


def isatty(stream: TextIO | None) -> bool:
    try:
        return bool(stream) and stream.isatty()
    except (AttributeError, ValueError):
        return False
