"""Sessions as markdown or JSON, for /export and `chatcli sessions export`.

Both are made from a Session, whether it is the live one or one restored
from the store, so the two ways to export can never disagree. The API key is
not part of a Session, so it cannot reach an export.

A file gets the text exactly, and whole or not at all: it is written beside the
old one and renamed over it, so a full disk never leaves half an export where a
good one was. JSON carries control and invisible characters only as \\u escapes.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chatcli.base.errors import ChatError, UsageError, one_line
from chatcli.base.events import WITHHELD
from chatcli.base.images import Image
from chatcli.base.text import json_text
from chatcli.core.filtered import kept_from_view
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, PENDING

FORMATS = {".md": "md", ".markdown": "md", ".json": "json"}


def format_for(path: str | Path) -> str:
    """md or json, from the file's extension."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ChatError(f"Export to a .md or .json file, not {Path(path).name!r}.")
    return fmt


def session_record(session: Session) -> dict[str, Any]:
    """Every message, with its role, status, usage and timing."""
    messages: list[dict[str, Any]] = []
    for turn in session.turns:
        messages.append({"role": "user", "content": turn.user, "created_at": _iso(turn.created_at),
                         "images": [image_record(image) for image in turn.images]})
        if turn.status != PENDING:
            messages.append(
                {
                    "role": "assistant",
                    # A reply withheld for a blocked word: no text, unless show_filtered allows it.
                    "content": None if kept_from_view(turn, session.policy) else turn.reply,
                    **({"filtered": True} if turn.filtered else {}),
                    "status": turn.status,
                    "finish_reason": turn.finish_reason,
                    "model": turn.model,
                    "params": turn.params,
                    "usage": asdict(turn.usage) if turn.usage else None,
                    "error": turn.error.message if turn.error else None,
                    "first_token_ms": None if turn.first_token_s is None else round(turn.first_token_s * 1000),
                    "total_ms": None if turn.total_s is None else round(turn.total_s * 1000),
                    **({"steps": steps_record(turn)} if turn.steps else {}),
                }
            )
    return {
        "id": session.id,
        "title": session.title,
        "model": session.model,
        "system": session.system,
        "params": session.params,
        "messages": messages,
    }


def steps_record(turn: Any) -> list[dict[str, Any]]:
    """A turn's steps before its reply, as sent (the assistant's tool_calls, each call's result), the
    tool messages with what the user was shown of them: name, arguments, status, seconds."""
    return [{k: v for k, v in step.items() if k != "_shown"} | step.get("_shown", {}) for step in turn.steps]


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text, so the text cannot end it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def tool_lines(steps: list[dict[str, Any]]) -> list[str]:
    """A markdown export's lines for the steps before a reply: what the model said before its calls,
    a line per call, and its result fenced."""
    lines: list[str] = []
    for step in steps:
        if step["role"] == "assistant":
            lines += ["", step["content"]] if step.get("content") else []
            continue
        result = step.get("content") or ""
        fence = _fence(result)
        lines += ["", f"**Tool** `{_on_one_line(step['name'])}` {_on_one_line(step['arguments'])} "
                      f"({step['status']}, {step['seconds']:.2f}s)", "", fence, result, fence]
    return lines


def image_record(image: Image) -> dict[str, Any]:
    """An image as an export notes it: what it was, never its bytes (`bytes` is their number)."""
    return {"name": image.name, "mime": image.mime, "width": image.width, "height": image.height,
            "bytes": None if image.data is None else len(image.data), "sha256": image.sha256, "url": image.url}


def image_note(image: dict[str, Any]) -> str:
    """[image: cat.png, image/png, 512×384, 23.4 KB, sha256 3fa2…]: an image in a markdown export."""
    if image["url"] is not None:
        return f"[image: {_on_one_line(image['url'])}, by URL]"
    parts = [_on_one_line(image["name"]), image["mime"]]
    if image["width"] and image["height"]:
        parts.append(f"{image['width']}×{image['height']}")
    parts += [_size(image["bytes"]), f"sha256 {image['sha256'][:12]}…"]
    return f"[image: {', '.join(parts)}]"


def _on_one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    return f"{count / 1000:.1f} KB" if count < 1_000_000 else f"{count / 1_000_000:.1f} MB"


def to_json(session: Session) -> str:
    return json_text(session_record(session), indent=2) + "\n"


def to_markdown(session: Session) -> str:
    record = session_record(session)
    lines = [f"# {record['title'] or 'Untitled session'}", "", f"Model: {record['model']}"]
    if record["system"]:
        lines += ["", "## System", "", record["system"]]
    for message in record["messages"]:
        heading = "You" if message["role"] == "user" else "Assistant"
        content = WITHHELD if message.get("filtered") and message["content"] is None else message["content"]
        lines += ["", f"## {heading}", *tool_lines(message.get("steps", [])), "", content or "*(no reply)*"]
        for image in message.get("images", ()):
            lines += ["", image_note(image)]
        status = message.get("status")
        if message["role"] == "assistant" and status and status != COMPLETE:
            note = f" ({message['error']})" if message.get("error") else ""
            lines += ["", f"*[{status}{note}]*"]
    return "\n".join(lines) + "\n"


def export_text(session: Session, fmt: str) -> str:
    return to_json(session) if fmt == "json" else to_markdown(session)


def write_export(session: Session, path: str | Path, fmt: str | None = None) -> Path:
    """Write the session to PATH, in `fmt` or the format its extension names."""
    try:
        target = Path(path).expanduser()
    except RuntimeError:  # ~NAME when there is no user NAME
        raise UsageError(f"There is no home directory for {one_line(str(path).split('/')[0], 60)!r}; give the full path.") from None
    write_whole_file(target, export_text(session, fmt or format_for(target)))
    return target


def write_whole_file(target: Path, text: str) -> None:
    """Write text to target whole or not at all: into a new file beside it, then renamed over it.

    A failure (a full disk, a file size limit) leaves whatever was there before as it was. A
    symlink's file is the one replaced; a device or a FIFO (-o /dev/stdout) is written to
    directly, as there is no file to replace. The new file keeps the old one's permissions.
    """
    real = Path(os.path.realpath(target))
    existed = False
    try:
        existed = real.exists()  # raises for a name too long, which is said like any other failure
        if existed and not real.is_file():
            with open(real, "w", encoding="utf-8") as f:
                f.write(text)
            return
        fd, temp = _new_file_beside(real)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            if existed:
                os.chmod(temp, stat.S_IMODE(real.stat().st_mode))
            os.replace(temp, real)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
    except OSError as exc:
        kept = "; the file there is unchanged" if existed else ""
        raise ChatError(f"Could not write {target} ({exc.strerror or exc}){kept}.") from None


def _new_file_beside(path: Path) -> tuple[int, str]:
    """A new, hidden file in path's folder (so renaming it over path is atomic), with the
    permissions a new file gets there (the umask's)."""
    for _ in range(100):
        temp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
