"""Jobs through the provider's Batch API (--via api): the rows written as request files, uploaded and
started as batches; their state asked after; their output and error files joined back to the rows.

The job is saved before anything is uploaded, and each remote batch the moment it exists, so a
process stopped at any point (Ctrl-C, kill -9) leaves a job that `status`, `wait` and `fetch` pick
up. Fetching writes each row's result with its ledger entry (at batch prices) in one transaction,
and a row once ok is never written again: fetching twice books once.

A job's `remote` is {"profile": ..., "batches": [entry, ...]}, an entry being the provider's batch
(llm.batches.RemoteBatch.record) with "rows" (how many it carries) and "fetched".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from chatcli.base.errors import ChatError, UsageError, one_line
from chatcli.base.pii import configured_secrets, hide_known, redact_secrets
from chatcli.batch.inputs import Row
from chatcli.batch.requests import ReplyCheck, Spec, bodies_of, job_key
from chatcli.core.accounts import cost_source
from chatcli.core.turn import ReplyIn, Turn
from chatcli.llm.batches import ENDED, ENDPOINT, OPEN, BatchWire, RemoteBatch
from chatcli.llm.pricing import Pricing
from chatcli.llm.sse import completion_events
from chatcli.store.batches import CANCELLED, EXPIRED, FAILED, OK, PENDING, Batches, Job, RowResult
from chatcli.store.db import Spend

REQUESTS_PER_FILE = 50_000  # the Batch API's limits on one request file
BYTES_PER_FILE = 200 * 1024 * 1024
EXPIRED_ROW = "The batch's 24-hour window ran out before this request was run; chatcli batch retry JOB --failed sends it again."


@dataclass(frozen=True)
class Limits:
    """Where request files are split: the API's limits, or smaller (tests)."""

    requests: int = REQUESTS_PER_FILE
    bytes: int = BYTES_PER_FILE


@dataclass(frozen=True)
class Poll:
    """How often `wait` asks: `first` seconds, doubling up to `most`."""

    first: float = 1.0
    most: float = 30.0

    def waits(self) -> Iterator[float]:
        wait = self.first
        while True:
            yield wait
            wait = min(wait * 2, self.most)


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One line of a request file."""
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def split(lines: list[tuple[str, bytes]], limits: Limits) -> list[list[tuple[str, bytes]]]:
    """The lines in files of at most limits.requests lines and limits.bytes bytes, in order."""
    parts: list[list[tuple[str, bytes]]] = []
    size = 0
    for custom_id, line in lines:
        if len(line) > limits.bytes:
            raise UsageError(f"The request of row {one_line(custom_id, 60)} is {len(line):,} bytes, more than a "
                             f"Batch API file may hold ({limits.bytes:,}); shorten it, or run the batch with --via local.")
        if not parts or len(parts[-1]) >= limits.requests or size + len(line) > limits.bytes:
            parts.append([])
            size = 0
        parts[-1].append((custom_id, line))
        size += len(line)
    return parts


def overall(entries: list[dict[str, Any]]) -> str:
    """The job's state from its batches': the least advanced of those still open, else how they ended."""
    statuses = {e.get("status") for e in entries}
    for status in ("cancelling", "validating", "in_progress", "finalizing", "failed", "expired", "cancelled",
                   "completed"):
        if status in statuses:
            return status
    return "unsent" if not entries else str(next(iter(statuses)))


class ApiJobs:
    """Batch API jobs: one wire (the server), the database's batch tables, and the prices rows are booked at."""

    def __init__(self, wire: BatchWire, batches: Batches, pricing: Pricing, *, limits: Limits = Limits(),
                 checks: Callable[[dict[str, Any]], ReplyCheck | None] | None = None) -> None:
        self.wire = wire
        self.batches = batches
        self.pricing = pricing
        self.limits = limits
        self.checks = checks  # a job's spec -> how its replies are checked (--schema), or None
        self.secrets = configured_secrets(wire.config)  # taken out of replies, as the local runner does

    # --- sending ---

    def submit(self, *, rows: list[Row], spec: Spec, input_name: str, server: str, profile: str | None = None,
               key: str | None = None) -> tuple[Job, int]:
        """Save the job, then send its rows; the job, and how many rows were sent. The same input sent again
        (same server and spec) reuses its job: rows already answered are kept, the rest sent anew."""
        key = key or job_key(server, spec, input_name)
        triples = bodies_of(rows, spec)
        job = self.batches.find_job(key, via="api")
        if job is not None:
            job = self.collect(job.id)
            if any(e.get("status") in OPEN for e in entries_of(job)):
                state = job.status.replace("_", " ")
                raise ChatError(f"Job {job.id} is already sending this input ({state}); follow it with "
                                f"chatcli batch wait {job.id}.")
            self.batches.sync_rows(job.id, triples)
        else:
            job = self.batches.create_job(via="api", key=key, input_name=input_name, server=server, model=spec.model,
                                          spec=spec.record(), rows=triples, status="unsent")
            self.batches.update_job(job.id, remote={"profile": profile, "batches": []})
        ids = [r.custom_id for r in self.batches.rows(job.id) if r.status != OK]
        if not ids:
            return self._job(job.id), 0
        return self.send(job.id, ids), len(ids)

    def send(self, job_id: int, custom_ids: list[str]) -> Job:
        """Upload the rows as request files (split at the limits) and start a batch for each."""
        requests = {r.custom_id: r.request for r in self.batches.rows(job_id)}
        parts = split([(cid, request_line(cid, requests[cid])) for cid in custom_ids], self.limits)
        for number, part in enumerate(parts, start=1):
            try:
                file_id = self.wire.upload(f"chatcli-job{job_id}-{len(entries_of(self._job(job_id))) + 1}.jsonl",
                                           b"".join(line for _, line in part))
                made = self.wire.create(file_id, metadata={"chatcli_job": str(job_id)})
            except ChatError as exc:
                unsent = sum(len(p) for p in parts[number - 1:])
                raise ChatError(f"{exc.message.rstrip('.')}; job {job_id} is saved, and {unsent:,} of its rows were "
                                f"not sent: chatcli batch retry {job_id} --failed sends them.",
                                exit_code=exc.exit_code) from None
            # The rows first, then the job's list: a job stopped between the two finds the batch from its rows.
            self.batches.mark_sent(job_id, [cid for cid, _ in part], made.id)
            self._record(job_id, [*entries_of(self._job(job_id)), _entry(made, rows=len(part))])
        return self._job(job_id)

    def retry(self, job_id: int) -> tuple[Job, int]:
        """Send the failed and expired rows (and any never sent) again, as new batches of the same job."""
        job = self.collect(job_id)
        ids = [r.custom_id for r in self.batches.rows(job.id)
               if r.status in (FAILED, EXPIRED) or (r.status == PENDING and r.remote_batch is None)]
        if not ids:
            return job, 0
        return self.send(job.id, ids), len(ids)

    def cancel(self, job_id: int) -> tuple[Job, int, int]:
        """Ask the server to stop the job's open batches; rows never sent are cancelled here. The job, how
        many batches the server was asked to stop, and how many unsent rows were cancelled."""
        job = self.refresh(job_id)
        entries, asked = entries_of(job), 0
        for i, entry in enumerate(entries):
            if entry.get("status") in ("validating", "in_progress", "finalizing"):
                entries[i] = {**entry, **self.wire.cancel(entry["id"]).record()}
                asked += 1
        unsent = [r.custom_id for r in self.batches.rows(job_id, status=PENDING) if r.remote_batch is None]
        self.batches.finish(job_id, [RowResult(cid, CANCELLED, error="The job was cancelled before this row was sent.")
                                     for cid in unsent])
        self._record(job_id, entries)
        return self._job(job_id), asked, len(unsent)

    # --- following ---

    def refresh(self, job_id: int) -> Job:
        """Ask the server after each batch of the job still open; the job, up to date."""
        job = self._job(job_id)
        entries = entries_of(job)
        known = {e.get("id") for e in entries}
        sent: dict[str, int] = {}
        for row in self.batches.rows(job_id):
            if row.remote_batch and row.remote_batch not in known:
                sent[row.remote_batch] = sent.get(row.remote_batch, 0) + 1
        entries += [{"id": found, "status": "validating", "rows": n, "fetched": False} for found, n in sent.items()]
        changed = bool(sent)
        for i, entry in enumerate(entries):
            if entry.get("status") in OPEN:
                entries[i] = {**entry, **self.wire.retrieve(entry["id"]).record()}
                changed = True
        if changed:
            self._record(job_id, entries)
        return self._job(job_id)

    def wait(self, job_id: int, *, poll: Poll = Poll(), heard: Callable[[Job], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> Job:
        """Ask until every batch of the job has ended (telling `heard` each time); Ctrl-C stops only the asking."""
        waits = poll.waits()
        while True:
            job = self.refresh(job_id)
            if heard is not None:
                heard(job)
            if not any(e.get("status") in OPEN for e in entries_of(job)):
                return job
            sleep(next(waits))

    def collect(self, job_id: int) -> Job:
        """Read the output and error files of each batch that has ended and is not yet read into the rows.
        Safe to repeat, or to stop halfway: a row once ok is left as it is."""
        job = self.refresh(job_id)
        for entry in entries_of(job):
            if entry.get("status") in ENDED and not entry.get("fetched"):
                self.batches.finish(job_id, self._results(job, entry))
                self._record(job_id, [{**e, "fetched": True} if e.get("id") == entry["id"] else e
                                      for e in entries_of(self._job(job_id))])
        return self._job(job_id)

    # --- reading results ---

    def _results(self, job: Job, entry: dict[str, Any]) -> list[RowResult]:
        """Each row of one ended batch: its line in the output or error file, or what its absence means."""
        mine = {r.custom_id for r in self.batches.rows(job.id) if r.remote_batch == entry["id"]}
        check = self.checks(job.spec) if self.checks is not None else None
        found: dict[str, RowResult] = {}
        for file_id in (entry.get("output_file_id"), entry.get("error_file_id")):
            if not file_id:
                continue
            for text in self.wire.content(file_id).split("\n"):  # JSONL: not splitlines, which breaks at U+2028
                line = _json(text)
                custom_id = line.get("custom_id") if line else None
                if isinstance(custom_id, str) and custom_id in mine and custom_id not in found:
                    found[custom_id] = self._result(custom_id, line, job.model, check)
        missing = _absent(entry)
        return [*found.values(), *(RowResult(cid, missing[0], error=missing[1]) for cid in mine - found.keys())]

    def _result(self, custom_id: str, line: dict[str, Any], model: str, check: ReplyCheck | None = None) -> RowResult:
        """A row from its line: a 200 is its reply, usage and cost at batch prices; anything else, why not."""
        error, response = line.get("error"), line.get("response")
        if isinstance(error, dict) and error:
            code, message = str(error.get("code") or ""), _said(error.get("message"), self.wire.config.api_key)
            if code == "batch_expired":
                return RowResult(custom_id, EXPIRED, error=EXPIRED_ROW)
            if code == "batch_cancelled":
                return RowResult(custom_id, CANCELLED, error="The batch was cancelled before this request was run.")
            return RowResult(custom_id, FAILED, error=f"The server could not run this request ({code or 'error'}: "
                                                      f"{message or 'no details'}).")
        if not isinstance(response, dict):
            return RowResult(custom_id, FAILED, error="The server's result for this request has no response in it.")
        status, body = response.get("status_code"), response.get("body")
        if status != 200:
            detail = body.get("error") if isinstance(body, dict) else body
            message = _said(detail.get("message") if isinstance(detail, dict) else detail, self.wire.config.api_key)
            return RowResult(custom_id, FAILED, error=f"The server refused this request (HTTP {status}: "
                                                      f"{message or 'no details'}).")
        try:
            events = completion_events(json.dumps(body), self.wire.config.api_key)
        except ChatError as exc:
            return RowResult(custom_id, FAILED, error=exc.message)
        gathered = ReplyIn(Turn(user="", model=model, params={}))
        for event in events:
            gathered.take(event)
        gathered.end("", "")
        turn = gathered.turn
        reply, finish, usage = hide_known(turn.reply, self.secrets), turn.finish_reason, turn.usage
        # A reply that does not pass --schema is a failed row (sent again by retry --failed); it was billed.
        problem = check(reply, finish) if check is not None else None
        status = OK if problem is None else FAILED
        if usage is None:
            return RowResult(custom_id, status, reply=reply, finish_reason=finish, error=problem)
        cost = self.pricing.cost(turn.model, usage, batch=True)  # the model the server says answered
        source = cost_source(usage, cost, exact=True)
        return RowResult(custom_id, status, reply=reply, finish_reason=finish, usage=usage.counts(), cost_usd=cost,
                         cost_source=source, error=problem,
                         spend=Spend.of(turn.model, usage, cost, source=source, kind="batch"))

    # --- the job's record ---

    def _job(self, job_id: int) -> Job:
        job = self.batches.job(job_id)
        if job is None:
            raise UsageError(f"There is no batch job {job_id}; chatcli batch list shows them.")
        return job

    def _record(self, job_id: int, entries: list[dict[str, Any]]) -> None:
        remote = self._job(job_id).remote
        remote = dict(remote) if isinstance(remote, dict) else {}
        self.batches.update_job(job_id, status=overall(entries), remote={**remote, "batches": entries})


def entries_of(job: Job) -> list[dict[str, Any]]:
    """A job's remote batches, as last heard (an empty list for a local job)."""
    remote = job.remote if isinstance(job.remote, dict) else {}
    return [dict(e) for e in remote.get("batches") or [] if isinstance(e, dict) and isinstance(e.get("id"), str)]


def _entry(made: RemoteBatch, *, rows: int) -> dict[str, Any]:
    return {**made.record(), "rows": rows, "fetched": False}


def _absent(entry: dict[str, Any]) -> tuple[str, str]:
    """A row of an ended batch that neither file names: what became of it, by how the batch ended."""
    status = entry.get("status")
    if status == "expired":
        return EXPIRED, EXPIRED_ROW
    if status == "cancelled":
        return CANCELLED, "The batch was cancelled before this request was run."
    if status == "failed":
        errors = "; ".join(str(e) for e in entry.get("errors") or []) or "no reason given"
        return FAILED, f"The server refused the whole batch ({one_line(errors, 300)})."
    return FAILED, "The server's batch ended without a result for this request."


def _json(text: str) -> dict[str, Any] | None:
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _said(value: Any, secret: str | None) -> str:
    """A server's words, as one bounded line, without the key should they quote it."""
    return one_line(redact_secrets(str(value), secret), 300) if value else ""
