"""A batch's results: one JSON line per input row, in input order, and the count that ends a run.

Shared by `batch run` (local rows as they finish, or a job waited for) and `batch fetch`, so a
job's results read the same however they were made. With --schema each reply is checked here
(cli.schema is the only jsonschema user); one that does not match is a failed row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, TextIO

from chatcli.base.errors import EXIT_FAILURE, EXIT_OK, ChatError
from chatcli.base.text import json_text, strip_controls
from chatcli.batch.requests import ReplyCheck
from chatcli.cli.schema import check_reply
from chatcli.core.cache import CACHE
from chatcli.store.batches import FAILED, OK, PENDING, RowState

if TYPE_CHECKING:
    from chatcli.cli.schema import Schema


def schema_of(spec: dict[str, Any]) -> Schema | None:
    """The --schema a job was sent with (its spec's response_format), to check each reply against."""
    form = spec.get("response_format") if isinstance(spec, dict) else None
    inner = form.get("json_schema") if isinstance(form, dict) and form.get("type") == "json_schema" else None
    if not isinstance(inner, dict) or not isinstance(inner.get("schema"), dict):
        return None
    from chatcli.cli.schema import Schema  # lazy: jsonschema's tables only when a job has a schema

    name = str(inner.get("name") or "the schema")
    return Schema(shown=name, body=inner["schema"], name=name,
                  not_strict=None if inner.get("strict") else "sent without strict")


def reply_check(schema: Schema | None) -> ReplyCheck | None:
    """How a row's reply is checked against --schema when its result comes (a reply that does not
    match is a failed row, sent again by a rerun or retry --failed); None without a schema."""
    if schema is None:
        return None

    def check(reply: str, finish_reason: str | None) -> str | None:
        verdict = check_reply(reply, schema)
        return None if verdict.valid else verdict.problem(finish_reason)

    return check


def record_of(row: RowState, *, schema: Schema | None = None) -> dict[str, Any]:
    """A row as its result line: id, status, reply, parsed, usage, cost_usd, error."""
    status, error, parsed = row.status, row.error, None
    if schema is not None and status == OK and row.reply is not None:
        verdict = check_reply(row.reply, schema)
        if verdict.valid:
            parsed = verdict.parsed
        else:
            status, error = FAILED, verdict.problem(row.finish_reason)
    if status == PENDING and error is None:
        error = "not run yet"
    cached = {"cached": True} if row.cost_source == CACHE else {}  # --cache: answered without a request
    return {"id": row.custom_id, "status": status, "reply": row.reply, "parsed": parsed, "usage": row.usage,
            "cost_usd": row.cost_usd, "error": error, **cached}


def write_results(rows: Iterable[RowState], out: TextIO, *, schema: Schema | None = None) -> dict[str, int]:
    """Write each row's line (json_text: exact as data, inert on a terminal); returns the count of each status."""
    counts: dict[str, int] = {}
    for row in rows:
        record = record_of(row, schema=schema)
        out.write(json_text(record) + "\n")
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    out.flush()
    return counts


def write_job_results(rows: list[RowState], job_id: int, output: str | None, stdout: TextIO, *,
                      schema: Schema | None = None) -> dict[str, int]:
    """A job's result lines to `output` (a file, made anew) or `stdout`; the count of each status.
    A file that cannot be written is one sentence: the results are kept, and fetch writes them again."""
    if output is None:
        return write_results(rows, stdout, schema=schema)
    try:
        with Path(output).expanduser().open("w", encoding="utf-8", newline="\n") as out:
            return write_results(rows, out, schema=schema)
    except OSError as exc:
        raise ChatError(f"Could not write the results to {strip_controls(output)} ({exc.strerror or exc}); they "
                        f"are saved: chatcli batch fetch {job_id} --output FILE writes them again.") from None


def summary(counts: dict[str, int]) -> tuple[str, int]:
    """The closing sentence for stderr, and the exit code: 0 when every row succeeded, 1 when any did not."""
    total = sum(counts.values())
    ok = counts.get(OK, 0)
    if ok == total:
        return ("The row succeeded." if total == 1 else f"All {total:,} rows succeeded."), EXIT_OK
    rest = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()) if status != OK and n)
    return f"{ok:,} of {total:,} rows succeeded; {rest}.", EXIT_FAILURE
