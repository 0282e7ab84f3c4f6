"""Sessions as markdown or JSON, for /export and `chatcli sessions export`.

Both are made from a Session, whether it is the live one or one restored
from the store, so the two ways to export can never disagree. The API key is
not part of a Session, so it cannot reach an export.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chatcli.errors import ChatError
from chatcli.session import COMPLETE, PENDING, Session

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
        messages.append({"role": "user", "content": turn.user, "created_at": _iso(turn.created_at)})
        if turn.status != PENDING:
            messages.append(
                {
                    "role": "assistant",
                    "content": turn.reply,
                    "status": turn.status,
                    "finish_reason": turn.finish_reason,
                    "model": turn.model,
                    "params": turn.params,
                    "usage": asdict(turn.usage) if turn.usage else None,
                    "error": turn.error.message if turn.error else None,
                    "first_token_ms": None if turn.first_token_s is None else round(turn.first_token_s * 1000),
                    "total_ms": None if turn.total_s is None else round(turn.total_s * 1000),
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


def to_json(session: Session) -> str:
    return json.dumps(session_record(session), indent=2, ensure_ascii=False) + "\n"


def to_markdown(session: Session) -> str:
    record = session_record(session)
    lines = [f"# {record['title'] or 'Untitled session'}", "", f"Model: {record['model']}"]
    if record["system"]:
        lines += ["", "## System", "", record["system"]]
    for message in record["messages"]:
        heading = "You" if message["role"] == "user" else "Assistant"
        lines += ["", f"## {heading}", "", message["content"] or "*(no reply)*"]
        status = message.get("status")
        if message["role"] == "assistant" and status and status != COMPLETE:
            note = f" ({message['error']})" if message.get("error") else ""
            lines += ["", f"*[{status}{note}]*"]
    return "\n".join(lines) + "\n"


def export_text(session: Session, fmt: str) -> str:
    return to_json(session) if fmt == "json" else to_markdown(session)


def write_export(session: Session, path: str | Path) -> Path:
    """Write the session to PATH, in the format its extension names."""
    target = Path(path).expanduser()
    text = export_text(session, format_for(target))
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ChatError(f"Could not write {target} ({exc.strerror}).") from None
    return target


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
