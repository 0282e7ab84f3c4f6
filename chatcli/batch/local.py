"""The local runner (--via local): a job's rows sent from here, N at a time, for servers with no Batch API.

Worker threads each stream one row at a time through the one ChatClient (it keeps each
thread's reply state apart, retries what is safe to retry and honours Retry-After). The main
thread alone decides what starts and commits what finishes: a row is committed, with its
ledger entry, the moment its result comes back, so a run killed with -9 loses only the rows in
flight, and running the same command again skips the rest. Before each row starts, the
server's rate limits (a limit with nothing left waits for its reset) and the [budget] caps
(with what the rows in flight may still spend) are asked; a cap reached stops the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from chatcli.base.errors import ChatError, Terminated
from chatcli.base.events import Adjusted, Note, RateLimits, Usage
from chatcli.base.pii import hide_known
from chatcli.base.ratelimits import duration
from chatcli.batch.requests import ReplyCheck
from chatcli.core.accounts import turn_cost
from chatcli.core.budget import BudgetGuard, Spending
from chatcli.core.turn import ReplyIn, Turn
from chatcli.llm.pricing import Pricing
from chatcli.llm.tokens import Tokenizer
from chatcli.store.batches import FAILED, OK, Batches, RowResult, RowState
from chatcli.store.db import Spend

if TYPE_CHECKING:
    from chatcli.llm.client import ChatClient

DONE, BUDGET, INTERRUPTED = "done", "budget", "interrupted"
# A row refused with a 429 whose limit resets later goes back in line, this many times at most.
REQUEUES = 3
# How often the main thread looks up from waiting: the progress bar's rate and ETA, a hold's end.
TICK_S = 0.25
BROKE_OFF = "The reply broke off before it was finished; run the batch again to retry this row."


@dataclass(frozen=True)
class Tally:
    """How the run stands, for the progress bar."""

    total: int  # the job's rows
    done: int  # rows ok, those done before this run included
    failed: int  # rows that failed in this run
    before: int  # rows ok before this run began
    cost: float | None  # this run's spending so far at normal prices (None: some of it has no price)
    note: str | None = None  # what the run waits for, if anything


@dataclass(frozen=True)
class RunEnd:
    """How the run ended: every row tried (done), stopped at a cap (budget, with its sentence), or Ctrl-C."""

    status: str
    refusal: str | None = None
    left: int = 0  # rows not started


@dataclass
class _Reply:
    """What came back for one row, gathered in its worker thread."""

    row: RowState
    turn: Turn  # the reply as core/turn.ReplyIn gathers any reply: text, finish, usage, served model, cached
    limits: RateLimits | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    crash: BaseException | None = None  # a bug: raised again in the main thread
    cancelled: bool = False


class LocalRunner:
    def __init__(self, client: ChatClient, batches: Batches, job_id: int, *, jobs: int, total: int,
                 pricing: Pricing, tokenizer: Tokenizer, secrets: tuple[str, ...] = (),
                 guard: BudgetGuard | None = None, estimates: dict[str, Usage] | None = None,
                 say: Callable[[str], None] = lambda sentence: None,
                 progress: Callable[[Tally], None] = lambda tally: None, check: ReplyCheck | None = None) -> None:
        self.client = client
        self.batches = batches
        self.job_id = job_id
        self.jobs = jobs
        self.total = total
        self.pricing = pricing
        self.tokenizer = tokenizer
        self.secrets = secrets
        self.guard = guard  # None: no [budget] cap is set
        self.estimates = estimates or {}  # custom_id -> its likely usage, for the caps
        self.say = say
        self.progress = progress
        self.check = check  # --schema: a reply that does not pass is a failed row, sent again by the next run
        self._pending: deque[RowState] = deque()
        self._in_flight: dict[str, RowState] = {}
        self._work: queue.Queue[RowState | None] = queue.Queue()
        self._results: queue.Queue[_Reply] = queue.Queue()
        self._cancel = threading.Event()
        self._requeued: dict[str, int] = {}
        self._said: set[str] = set()
        self._held_until = 0.0
        self._note: str | None = None
        self._before = self._done = self._failed = 0
        self._cost: float | None = 0.0

    # --- the main thread ---

    def run(self, rows: list[RowState]) -> RunEnd:
        """Run these (pending) rows; return how the run ended. Ctrl-C stops new rows and waits for
        those in flight; a second one leaves them (they stay pending). SIGTERM and SIGHUP commit what
        finished and are raised again."""
        self._pending = deque(rows)
        self._before = self.total - len(rows)
        self._done = self._before
        workers = [threading.Thread(target=self._worker, daemon=True, name=f"batch-row-{k}")
                   for k in range(min(self.jobs, len(rows)))]
        for worker in workers:
            worker.start()
        self._report()
        refusal = None
        try:
            while True:
                if refusal is None:
                    refusal = self._start_more()
                if not self._in_flight and (refusal is not None or not self._pending):
                    break
                self._collect(self._wait())
        except KeyboardInterrupt as exc:
            return self._interrupted(exc)
        finally:
            for _ in workers:
                self._work.put(None)
        return RunEnd(BUDGET, refusal, len(self._pending)) if refusal else RunEnd(DONE)

    def _start_more(self) -> str | None:
        """Start rows while there is room, no rate limit holds them back and the caps allow;
        a cap's refusal ends the starting."""
        while self._pending and len(self._in_flight) < self.jobs and not self._held():
            row = self._pending[0]
            if self.guard is not None:
                likely = self.estimates.get(row.custom_id, Usage())
                refusal, warning = self.guard.check(cost=self.pricing.cost(row.request["model"], likely),
                                                    tokens=likely.total_tokens, model=row.request["model"],
                                                    what="The next row")
                if warning:
                    self._say_once(warning[0].upper() + warning[1:] + ".")
                if refusal is not None:
                    return refusal
            self._pending.popleft()
            self._in_flight[row.custom_id] = row
            self._work.put(row)
        return None

    def _held(self) -> bool:
        """Whether a limit the server stated has nothing left and resets later: no row starts till then."""
        limits = self.client.rate_limits
        now = time.time()
        until = max((limit.resets_at or 0.0 for _, limit in limits.named() if limit.exhausted()), default=0.0) \
            if limits is not None else 0.0
        if until <= now:
            self._note = None
            return False
        if self._held_until <= now:  # a hold begins (one that goes on as more responses say so is said once)
            name = next(n for n, limit in limits.named() if limit.exhausted() and limit.resets_at == until)
            self._note = f"waiting for the {name} limit"
            self.say(f"The server's {name} rate limit is used up; no more rows start for {duration(until - now)}, "
                     "until it resets.")
        self._held_until = max(self._held_until, until)
        return True

    def _wait(self) -> float:
        """How long to wait for a result before looking up again."""
        hold = self._held_until - time.time()
        return min(TICK_S, hold) if hold > 0 and not self._in_flight else TICK_S

    def _collect(self, timeout: float) -> None:
        """Take the results that have come (waiting up to `timeout` for the first), commit them in one
        transaction, and report."""
        try:
            replies = [self._results.get(timeout=max(timeout, 0.01))]
        except queue.Empty:
            self._report()
            return
        while True:
            try:
                replies.append(self._results.get_nowait())
            except queue.Empty:
                break
        self._commit(replies)

    def _commit(self, replies: list[_Reply]) -> None:
        results = []
        for reply in replies:
            self._in_flight.pop(reply.row.custom_id, None)
            if reply.crash is not None:
                raise reply.crash
            if reply.cancelled:
                continue  # left pending: the next run sends it
            for note in reply.notes:
                self._say_once(note)
            if reply.error is not None and self._again(reply):
                self._pending.appendleft(reply.row)
                continue
            results.append(self._result(reply))
        if results:
            self.batches.finish(self.job_id, results)
        for result in results:
            if result.status == OK:
                self._done += 1
            else:
                self._failed += 1
            if self._cost is not None:
                self._cost = None if result.cost_usd is None and result.spend is not None else \
                    self._cost + (result.cost_usd or 0.0)
        self._report()

    def _again(self, reply: _Reply) -> bool:
        """Whether a failed row goes back in line: refused (429) by a limit that resets later, a few times at most."""
        limits = reply.limits
        later = limits is not None and any(limit.exhausted() and (limit.resets_at or 0.0) > time.time()
                                           for _, limit in limits.named())
        tries = self._requeued.get(reply.row.custom_id, 0)
        if not later or "(429)" not in (reply.error or "") or tries >= REQUEUES:
            return False
        self._requeued[reply.row.custom_id] = tries + 1
        return True

    def _result(self, reply: _Reply) -> RowResult:
        """A row's result and its ledger entry, at normal prices, costed as a session's turn is."""
        turn = reply.turn
        if turn.usage is None and turn.reply:  # billed, though unreported: our estimate, marked as one
            turn.sent = self.tokenizer.messages(turn.model, reply.row.request["messages"])
        row = turn_cost(turn, self.tokenizer, self.pricing)
        usage, spend = row.usage, None
        if usage is not None and usage.total_tokens:
            spend = Spend.of(turn.model, usage, row.cost, source=row.source, estimated=not row.exact, kind="batch")
        text = hide_known(turn.reply, self.secrets)
        if reply.error is not None:
            status, error = FAILED, hide_known(reply.error, self.secrets)
        elif turn.finish_reason is None:
            status, error = FAILED, BROKE_OFF
        else:
            error = self.check(text, turn.finish_reason) if self.check is not None else None
            status = OK if error is None else FAILED
        figures = None if usage is None else {**usage.counts(), "exact": row.exact}
        if turn.cached:  # the kept reply's usage, as it was when it was made; this row spent nothing
            figures = None if turn.usage is None else {**turn.usage.counts(), "exact": True}
        return RowResult(reply.row.custom_id, status, text if text or status == OK else None, turn.finish_reason,
                         figures, row.cost, row.source, error, spend)

    def _interrupted(self, exc: KeyboardInterrupt) -> RunEnd:
        """Ctrl-C: no more rows start; those in flight finish, unless Ctrl-C comes again (or it was
        SIGTERM or SIGHUP), when they are left to the next run. What finished is committed."""
        self._pending.clear()
        try:
            if self._in_flight and not isinstance(exc, Terminated):
                n = len(self._in_flight)
                self.say(f"Stopping: no more rows start; waiting for the {n} in flight "
                         f"(Ctrl-C again to leave {'it' if n == 1 else 'them'} for the next run).")
                while self._in_flight:
                    self._collect(TICK_S)
        except KeyboardInterrupt as again:
            exc = again
        if self._in_flight:
            self._cancel.set()
            self._drain()
        if isinstance(exc, Terminated):
            raise exc
        return RunEnd(INTERRUPTED)

    def _drain(self) -> None:
        """Commit the results already back, without waiting for more."""
        replies = []
        while True:
            try:
                replies.append(self._results.get_nowait())
            except queue.Empty:
                break
        self._commit([r for r in replies if r.crash is None])

    def _report(self) -> None:
        self.progress(Tally(self.total, self._done, self._failed, self._before, self._cost, self._note))

    def _say_once(self, sentence: str) -> None:
        if sentence not in self._said:
            self._said.add(sentence)
            self.say(sentence)

    def in_flight(self) -> Spending:
        """What the rows in flight may still spend, by their estimates: the caps count it as spent."""
        usd, tokens = 0.0, 0
        for row in list(self._in_flight.values()):
            likely = self.estimates.get(row.custom_id, Usage())
            usd += self.pricing.cost(row.request["model"], likely) or 0.0
            tokens += likely.total_tokens
        return Spending(usd, tokens)

    # --- the worker threads ---

    def _worker(self) -> None:
        while (row := self._work.get()) is not None:
            self._results.put(self._ask(row))

    def _ask(self, row: RowState) -> _Reply:
        """One row's request, streamed; its reply, or the client's sentence for why it failed."""
        body = row.request
        reply = _Reply(row, Turn(user="", model=body["model"], params={}))
        if self._cancel.is_set():
            reply.cancelled = True
            return reply
        params: dict[str, Any] = {k: v for k, v in body.items() if k not in ("model", "messages")}
        gathered = ReplyIn(reply.turn)
        try:
            events = self.client.stream(model=body["model"], messages=body["messages"], params=params)
            try:
                for event in events:
                    if self._cancel.is_set():
                        reply.cancelled = True
                        break
                    gathered.take(event)
                    if type(event) is RateLimits:
                        reply.limits = event
                    elif type(event) in (Adjusted, Note):
                        reply.notes.append(str(event))
            finally:
                events.close()  # type: ignore[attr-defined]
                gathered.end("", "")
        except ChatError as exc:
            reply.error = exc.message
        except Exception as exc:  # noqa: BLE001 - a bug: said by the main thread, as main() says one
            reply.crash = exc
        return reply
