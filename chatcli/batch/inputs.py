"""A batch's input file, read into rows: a .txt (one prompt a line), a .jsonl (`id`, and one of
`prompt`, `messages` or `vars`) or a .csv (its columns are the variables of --prompt-template).

Every row has a stable id: the input's own, or its line (row) number, so running the same file
again finds the rows already done, and a line added at the end does not renumber the others.
A file that cannot be read as rows is one sentence naming the line, raised before anything is sent.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatcli.base.errors import UsageError
from chatcli.base.text import strip_controls

FORMATS = (".txt", ".jsonl", ".csv")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


@dataclass(frozen=True)
class Row:
    """One request to make: its id, and either whole messages or the user's message."""

    id: str
    line: int  # where it is in the input (1-based), for sentences about it
    prompt: str | None = None  # the user's message (a .txt line, a .jsonl prompt, or the template filled)
    messages: tuple[dict[str, Any], ...] = ()  # a .jsonl row's own messages, sent as they are
    vars: dict[str, str] = field(default_factory=dict)  # what filled the template, kept for the results


def read_rows(path: Path, *, template: str | None = None) -> list[Row]:
    """The rows of `path`, in input order; UsageError with one sentence when it cannot be read as rows."""
    shown = strip_controls(str(path))
    kind = path.suffix.lower()
    if kind not in FORMATS:
        raise UsageError(f"{shown} is not a batch input: name a .txt (a prompt a line), .jsonl or .csv file.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's CSV) is not text
    except FileNotFoundError:
        raise UsageError(f"{shown} does not exist; give the path of a .txt, .jsonl or .csv file.") from None
    except IsADirectoryError:
        raise UsageError(f"{shown} is a directory; give the path of a .txt, .jsonl or .csv file.") from None
    except UnicodeDecodeError:
        raise UsageError(f"{shown} is not UTF-8 text; save it as UTF-8 and run the batch again.") from None
    except OSError as exc:
        raise UsageError(f"{shown} could not be read ({exc.strerror}).") from None
    if kind == ".csv" and template is None:
        raise UsageError(f"{shown} is a .csv file: give --prompt-template, as in "
                         "--prompt-template 'Summarize: {{text}}', to make each row's prompt from its columns.")
    reader = {".txt": _txt_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows}[kind]
    rows = reader(text, shown, template)
    if not rows:
        raise UsageError(f"{shown} has no rows; nothing to send.")
    _check_ids(rows, shown)
    return rows


def fill(template: str, values: dict[str, str], *, where: str) -> str:
    """The template with each {{name}} replaced by its value; a name with no value is an error."""
    missing = [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1) not in values]
    if missing:
        have = ", ".join(sorted(values)) or "none"
        raise UsageError(f"{where}: --prompt-template uses {{{{{missing[0]}}}}}, which it has no value for "
                         f"(it has: {strip_controls(have)}).")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _txt_rows(text: str, shown: str, template: str | None) -> list[Row]:
    rows = []
    for number, line in enumerate(_lines(text), start=1):
        if line.strip():
            prompt = fill(template, {"prompt": line}, where=f"{shown}:{number}") if template else line
            rows.append(Row(id=str(number), line=number, prompt=prompt))
    return rows


def _lines(text: str) -> list[str]:
    """The file's lines as an editor numbers them: split at \\n (a \\r before it dropped), not at every
    character str.splitlines() breaks at (U+2028, form feed, ...), which may sit inside a prompt."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _jsonl_rows(text: str, shown: str, template: str | None) -> list[Row]:
    rows = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{shown}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where} is not JSON ({exc.msg}); each line must be one object.") from None
        if not isinstance(item, dict):
            raise UsageError(f"{where} is not a JSON object; each line must be one, as in "
                             '{"id": "a1", "prompt": "..."}.')
        rows.append(_jsonl_row(item, number, where, template))
    return rows


def _jsonl_row(item: dict[str, Any], number: int, where: str, template: str | None) -> Row:
    given = [k for k in ("prompt", "messages", "vars") if k in item]
    if len(given) != 1:
        raise UsageError(f"{where} must have one of prompt, messages or vars"
                         + (f", not {' and '.join(given)}." if given else "."))
    row_id = _id_of(item.get("id"), number, where)
    if "prompt" in item:
        if not isinstance(item["prompt"], str) or not item["prompt"].strip():
            raise UsageError(f"{where}: prompt must be text that is not empty.")
        prompt = fill(template, {"prompt": item["prompt"]}, where=where) if template else item["prompt"]
        return Row(id=row_id, line=number, prompt=prompt)
    if "messages" in item:
        messages = item["messages"]
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in messages)):
            raise UsageError(f"{where}: messages must be a list of objects with a role and content, "
                             'as in [{"role": "user", "content": "..."}].')
        return Row(id=row_id, line=number, messages=tuple(messages))
    values = item["vars"]
    if not isinstance(values, dict):
        raise UsageError(f'{where}: vars must be an object, as in {{"vars": {{"text": "..."}}}}.')
    if template is None:
        raise UsageError(f"{where} has vars: give --prompt-template, as in --prompt-template 'Summarize: {{{{text}}}}'.")
    values = {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in values.items()}
    return Row(id=row_id, line=number, prompt=fill(template, values, where=where), vars=values)


def _csv_rows(text: str, shown: str, template: str | None) -> list[Row]:
    assert template is not None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise UsageError(f"{shown} has no header row; its first line must name the columns.")
    rows = []
    try:
        for index, record in enumerate(reader, start=1):
            number = reader.line_num
            if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
                continue
            if None in record:  # more fields than the header names
                raise UsageError(f"{shown}:{number} has more fields than the header names.")
            values = {k: v or "" for k, v in record.items()}
            where = f"{shown}:{number}"
            row_id = _id_of(values["id"], number, where) if values.get("id", "").strip() else str(index)
            rows.append(Row(id=row_id, line=number, prompt=fill(template, values, where=where), vars=values))
    except csv.Error as exc:
        raise UsageError(f"{shown}:{reader.line_num} is not valid CSV ({exc}).") from None
    return rows


def _id_of(value: Any, number: int, where: str) -> str:
    """A row's id: its own (text or a whole number), or its line number."""
    if value is None:
        return str(number)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise UsageError(f"{where}: id must be text or a whole number that is not empty.")
    return str(value)


def _check_ids(rows: list[Row], shown: str) -> None:
    seen: dict[str, int] = {}
    for row in rows:
        if row.id in seen:
            raise UsageError(f"{shown}:{row.line} has the id {strip_controls(row.id)!r} that line {seen[row.id]} "
                             "has too; each row needs an id of its own.")
        seen[row.id] = row.line
