"""read_file, list_dir and grep: the model reads the files under `tool_roots`, and nothing else.

Every path the model gives is resolved (os.path.realpath: `..`, symlinks, a symlinked
directory in the middle) and must then lie inside one of the roots, themselves resolved
once, at start. So `../secret`, `/etc/passwd`, a symlink in the project pointing at ~/.ssh
and a directory symlink out are all refused, each with a sentence. Files are read with
/file's own check (base/files.py): no FIFOs, devices, binary files or files over the limit.
The tools only read, so they run without asking unless the config says `ask`.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from typing import Any, Iterator

from chatcli.base.files import FILE_LIMIT, NOT_REGULAR, NOT_TEXT, TOO_BIG, FileRefused, read_text_file
from chatcli.tools.base import ToolFailed

MAX_MATCHES = 200  # grep's default cap on matching lines
MAX_ENTRIES = 1000  # list_dir's cap on entries
LINE_CHARS = 300  # grep cuts a matching line to this many characters
SKIPPED_DIRS = {"node_modules", "__pycache__"}  # and every hidden directory: .git, .venv, ...


class Roots:
    """The directories the file tools may read under, resolved; relative paths start at the first."""

    def __init__(self, roots: list[str] | tuple[str, ...]) -> None:
        resolved = [os.path.realpath(os.path.expanduser(root)) for root in roots] or [os.path.realpath(os.getcwd())]
        self.paths = list(dict.fromkeys(resolved))

    def inside(self, real: str) -> bool:
        return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.paths)

    def resolve(self, path: str) -> str:
        """The real path of what the model named, or ToolFailed when it lies outside every root."""
        if not isinstance(path, str) or not path or "\x00" in path:
            raise ToolFailed("Give a path to a file or directory under the allowed roots.")
        real = os.path.realpath(os.path.join(self.paths[0], path))
        if not self.inside(real):
            where = " or ".join(self.paths)
            raise ToolFailed(f"{path} is outside the directories the tools may read ({where}); "
                             "only paths under them can be read (symlinks are followed before checking).")
        return real

    def shown(self, real: str) -> str:
        """A path as the model sees it: relative to the first root when under it."""
        rel = os.path.relpath(real, self.paths[0])
        return real if rel.startswith("..") else rel


def _read(roots: Roots, path: str, real: str) -> str:
    """A file's text under /file's rules, each refusal a sentence for the model."""
    try:
        return read_text_file(real, follow_symlinks=False)
    except FileRefused as refused:
        if refused.why == NOT_REGULAR:
            raise ToolFailed(f"{path} is not a regular file (a directory, a device or a pipe); "
                             "use list_dir for a directory.") from None
        if refused.why == TOO_BIG:
            raise ToolFailed(f"{path} is {refused.size / 1e6:.1f} MB, over the {FILE_LIMIT / 1e6:.0f} MB "
                             "that read_file reads.") from None
        if refused.why == NOT_TEXT:
            raise ToolFailed(f"{path} is not a text file (it is binary or not UTF-8).") from None
        raise ToolFailed(f"Could not read {path} ({refused.reason}).") from None


class ReadFile:
    """Reads a text file, whole or some of its lines."""

    name = "read_file"
    description = "Read a UTF-8 text file under the allowed directories, whole or from line start to line end."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "The file, relative to the working directory."},
            "start": {"type": "integer", "minimum": 1, "description": "First line to read (1-based)."},
            "end": {"type": "integer", "minimum": 1, "description": "Last line to read (inclusive)."},
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    asks = False

    def __init__(self, roots: Roots) -> None:
        self.roots = roots

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        path = arguments.get("path", "")
        text = _read(self.roots, path, self.roots.resolve(path))
        start, end = arguments.get("start"), arguments.get("end")
        if start is None and end is None:
            return text
        lines = text.splitlines(keepends=True)
        first, last = start or 1, min(end or len(lines), len(lines))
        if first > len(lines):
            raise ToolFailed(f"{path} has {len(lines)} lines, so there is no line {first}.")
        if last < first:
            raise ToolFailed(f"The end line {end} comes before the start line {first}.")
        return f"[{path}: lines {first}-{last} of {len(lines)}]\n" + "".join(lines[first - 1:last])


class ListDir:
    """Lists a directory: directories end in /, symlinks in @, files with their size."""

    name = "list_dir"
    description = "List a directory under the allowed directories: subdirectories end in /, files show their size."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "The directory (default: the working directory)."}},
        "additionalProperties": False,
    }
    asks = False

    def __init__(self, roots: Roots) -> None:
        self.roots = roots

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        path = arguments.get("path") or "."
        real = self.roots.resolve(path)
        try:
            with os.scandir(real) as entries:
                found = sorted(entries, key=lambda e: e.name)
        except NotADirectoryError:
            raise ToolFailed(f"{path} is not a directory; use read_file for a file.") from None
        except OSError as exc:
            raise ToolFailed(f"Could not list {path} ({exc.strerror or exc}).") from None
        lines = [_entry(e) for e in found[:MAX_ENTRIES]]
        if len(found) > MAX_ENTRIES:
            lines.append(f"({len(found) - MAX_ENTRIES} more not shown)")
        return "\n".join(lines) if lines else f"{self.roots.shown(real)} is empty."


def _entry(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return entry.name + "@"
        if entry.is_dir():
            return entry.name + "/"
        info = entry.stat()
    except OSError:
        return entry.name
    if stat.S_ISREG(info.st_mode):
        return f"{entry.name}  ({info.st_size:,} bytes)"
    return f"{entry.name}  (not a regular file)"


class Grep:
    """Searches the text files under a directory for a regular expression."""

    name = "grep"
    description = ("Search the text files under a directory (or one file) for a Python regular expression; "
                   "prints path:line: text for each match, skipping hidden directories.")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1, "description": "A Python regular expression."},
            "path": {"type": "string", "description": "A directory or file (default: the working directory)."},
            "ignore_case": {"type": "boolean", "description": "Match letters in either case."},
            "max_matches": {"type": "integer", "minimum": 1, "maximum": 1000,
                            "description": f"Most matching lines to return (default {MAX_MATCHES})."},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }
    asks = False

    def __init__(self, roots: Roots) -> None:
        self.roots = roots

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        try:
            pattern = re.compile(arguments.get("pattern", ""), re.IGNORECASE if arguments.get("ignore_case") else 0)
        except re.error as exc:
            raise ToolFailed(f"The pattern is not a valid regular expression ({exc}).") from None
        path = arguments.get("path") or "."
        cap = arguments.get("max_matches") or MAX_MATCHES
        real = self.roots.resolve(path)
        if not os.path.exists(real):
            raise ToolFailed(f"{path} does not exist.")
        matches, more, files = [], 0, 0
        for name, file in self._files(real, stop):
            try:
                text = read_text_file(file, follow_symlinks=False)
            except FileRefused:
                continue  # binary, too big, unreadable: grep skips it
            files += 1
            for number, line in enumerate(text.splitlines(), 1):
                if pattern.search(line):
                    if len(matches) < cap:
                        cut = line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + " …"
                        matches.append(f"{name}:{number}: {cut}")
                    else:
                        more += 1
        if stop.is_set():
            matches.append("(stopped before the search finished)")
        if more:
            matches.append(f"({more} more not shown)")
        return "\n".join(matches) if matches else f"No match in {files} {'file' if files == 1 else 'files'}."

    def _files(self, real: str, stop: threading.Event) -> Iterator[tuple[str, str]]:
        """(the path shown, the real path) of each file to search, in a stable order; a symlink
        only when it stays inside the roots, shown under its own name."""
        if not os.path.isdir(real):
            yield self.roots.shown(real), real
            return
        for top, dirs, names in os.walk(real):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS
                             and not os.path.islink(os.path.join(top, d)))
            for name in sorted(names):
                if stop.is_set():
                    return
                path = os.path.join(top, name)
                file = os.path.realpath(path)
                if self.roots.inside(file) and os.path.isfile(file):
                    yield self.roots.shown(path), file


def file_tools(roots: list[str] | tuple[str, ...]) -> list[Any]:
    """read_file, list_dir and grep, sharing one set of roots (default: the working directory)."""
    shared = Roots(roots)
    return [ReadFile(shared), ListDir(shared), Grep(shared)]
