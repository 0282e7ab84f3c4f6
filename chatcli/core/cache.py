"""The response cache: a reply kept under the hash of its server and request body, given again
without a request while it is fresh (`--cache`, config `cache`, `cache_ttl`, `cache_any`).

What may be kept and served is decided here; store/cache.py holds the rows. A request is cached
only when its answer would repeat: temperature 0 or a seed in the body as sent (config
`cache_any` lifts that), and never with tools (their calls must run). Only a whole reply is kept:
one that finished with `stop` or `length` and has text, not an error, an interrupted or cut-off
reply, a tool call, nor one holding a blocked word; the configured secrets are taken out first.

ResponseCache is the seam: lookup(server, body) and keep(server, body, ...), for any sender (the
batch runner too). CachingClient puts it in front of a session's client (app.py wires it for
one-shot asks), so the session has no branch for it: a hit is a stream of the same events a reply
is, begun with FromCache, which marks the turn as costing nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Iterator

from chatcli.base.digest import json_sha256
from chatcli.base.events import Event, Finish, FromCache, ReasoningDelta, Served, TextDelta, Usage
from chatcli.base.format import age
from chatcli.base.log import log
from chatcli.base.pii import hide_known
from chatcli.core.turn import ReplyIn, Turn
from chatcli.store.cache import CacheEntry, Responses
from chatcli.store.db import StoreError

if TYPE_CHECKING:
    from chatcli.base.blocklist import Blocklist
    from chatcli.llm.client import ChatClient
    from chatcli.store.db import Store

KEPT_FINISHES = ("stop", "length")  # a whole reply; length: cut at max_tokens, as the same request would be again
STREAMING = ("stream", "stream_options")  # how the reply travels, not what it says: not part of the key
RULE = "only requests with temperature 0 or a seed are cached, unless cache_any = true"
CACHE = "cache"  # the cost_source of a reply the cache answered: no request was made, nothing spent


def request_key(server: str, body: dict[str, Any]) -> str:
    """The sha256 of the server and the body, its keys sorted: the same request, however it was built."""
    body = {k: v for k, v in body.items() if k not in STREAMING}
    return json_sha256({"server": server, "body": body})


def refusal(body: dict[str, Any], *, cache_any: bool = False) -> str | None:
    """Why a request is not cached, in words, or None when it may be."""
    if body.get("tools"):
        return "the request carries tools, whose calls must run"
    if cache_any:
        return None
    temperature, seed = body.get("temperature"), body.get("seed")
    if seed is None and not (isinstance(temperature, (int, float)) and temperature == 0):
        return f"it has {'no temperature' if temperature is None else f'temperature {temperature}'} and no seed ({RULE})"
    return None


@dataclass(frozen=True)
class CachedReply:
    """A reply the cache gives: what the server said then, and what it cost then."""

    reply: str
    reasoning: str
    finish_reason: str
    model: str  # as the server named it
    usage: Usage | None  # as the server reported it when the reply was made
    cost_usd: float | None  # what the reply cost then (None: unknown); a hit costs nothing
    created_at: float
    hits: int  # times served, this one included


class ResponseCache:
    """Replies kept in one Store, served for `ttl` seconds.

    Never stops a request: a cache that cannot be read is a miss, one that cannot be written keeps
    nothing, each said in the -v log. Threads may share it (the batch runner's): pass the lock the
    Store's other writers hold.
    """

    def __init__(self, store: Store, *, ttl: float, cache_any: bool = False,
                 lock: threading.Lock | threading.RLock | None = None, clock: Callable[[], float] = time.time) -> None:
        self.responses = Responses(store, lock=lock)
        self.ttl = ttl
        self.cache_any = cache_any
        self.clock = clock

    def refuses(self, body: dict[str, Any]) -> str | None:
        """Why this request is not cached, or None."""
        return refusal(body, cache_any=self.cache_any)

    def lookup(self, server: str, body: dict[str, Any]) -> CachedReply | None:
        """The kept reply to this request on this server, if there is a fresh one (counted as a hit)."""
        why = self.refuses(body)
        if why is not None:
            log.info("response cache: not used: %s", why)
            return None
        key, now = request_key(server, body), self.clock()
        try:
            entry = self.responses.find(key, now=now, newer_than=now - self.ttl)
        except StoreError as exc:
            log.info("response cache: not read (%s); asking the server", exc)
            return None
        if entry is None:
            log.info("response cache: miss (key %s)", key[:12])
            return None
        log.info("response cache: hit (key %s, kept %s, served %d time%s); no request is made", key[:12],
                 age(entry.created_at), entry.hits, "" if entry.hits == 1 else "s")
        named = {f.name for f in fields(Usage)}
        usage = Usage(**{k: v for k, v in entry.usage.items() if k in named}) if entry.usage else None
        return CachedReply(entry.reply, entry.reasoning or "", entry.finish_reason, entry.model, usage, entry.cost_usd,
                           entry.created_at, entry.hits)

    def holds(self, server: str, body: dict[str, Any]) -> bool:
        """Whether lookup() would answer this request now (asked before a budget check: an answer
        from the cache spends nothing); not counted as a hit."""
        if self.refuses(body) is not None:
            return False
        now = self.clock()
        try:
            return self.responses.holds(request_key(server, body), now=now, newer_than=now - self.ttl)
        except StoreError:
            return False

    def keep(self, server: str, body: dict[str, Any], *, reply: str, finish_reason: str | None, model: str,
             usage: Usage | None = None, cost_usd: float | None = None, reasoning: str = "") -> bool:
        """Keep a reply to this request, if the cache takes it (KEPT_FINISHES, with text, a request it
        caches); whether it was kept. The caller has checked the reply is whole and may be shown, and
        taken its secrets out."""
        why = self.refuses(body)
        if why is None and finish_reason not in KEPT_FINISHES:
            why = f"it ended with {f'finish_reason {finish_reason}' if finish_reason else 'no finish reason'}"
        if why is None and not reply.strip():
            why = "it has no text"
        if why is not None:
            log.info("response cache: the reply is not kept: %s", why)
            return False
        key, now = request_key(server, body), self.clock()
        kept = None if usage is None else {**usage.counts(), **({"cost": usage.cost} if usage.cost is not None else {})}
        entry = CacheEntry(key, model, reply, reasoning or None, str(finish_reason), kept, cost_usd, now, now + self.ttl)
        try:
            self.responses.put(entry)
        except StoreError as exc:
            log.info("response cache: the reply is not kept (%s)", exc)
            return False
        log.info("response cache: kept the reply (key %s) for %s", key[:12], _span(self.ttl))
        return True


class CachingClient:
    """A session's client with the response cache in front: stream() answers from the cache where
    it may, and keeps what the server answers where it may; everything else is the client's own.

    `secrets` are taken out of a reply before it is kept, and a reply holding a `blocklist` word is
    not kept; `cost` prices a reply's usage (the session's pricing), for `chatcli cache stats`.
    """

    def __init__(self, client: ChatClient, cache: ResponseCache, *, secrets: tuple[str, ...] = (),
                 blocklist: Blocklist | None = None, cost: Callable[[str, Usage], float | None] | None = None) -> None:
        self.client = client
        self.cache = cache
        self.secrets = secrets
        self.blocklist = blocklist
        self.cost = cost

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)  # the client's own: models, warm_up, adapter, rate_limits, ...

    def answers(self, *, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> bool:
        """Whether stream() would answer this request from the cache, without a request."""
        client = self.client
        return self.cache.holds(client.server, client.request_body(model=model, messages=messages, params=params))

    def stream(self, *, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Iterator[Event]:
        client = self.client
        body, server = client.request_body(model=model, messages=messages, params=params), client.server
        hit = self.cache.lookup(server, body)
        if hit is not None:
            return _replayed(hit)
        events = client.stream(model=model, messages=messages, params=params)
        return events if self.cache.refuses(body) is not None else self._keeping(events, server, body, model)

    def _keeping(self, events: Iterator[Event], server: str, body: dict[str, Any], asked: str) -> Iterator[Event]:
        """The events, passed on as they come; once they end as a reply ends, the reply is kept.

        An error, a Ctrl-C or the reader closing the stream ends this at a yield, and nothing is kept."""
        gathered = ReplyIn(Turn(user="", model=asked, params={}))  # the reply, as a session's turn gathers it
        for event in events:
            gathered.take(event)
            yield event
        gathered.end("", "")
        turn = gathered.turn
        reply, reasoning = hide_known(turn.reply, self.secrets), hide_known(turn.reasoning, self.secrets)
        if turn.calls:
            log.info("response cache: the reply is not kept: it calls tools")
        elif self.blocklist is not None and (self.blocklist.found(reply) or self.blocklist.found(reasoning)):
            log.info("response cache: the reply is not kept: it holds a blocked word")
        else:
            usage = turn.usage
            cost = self.cost(turn.model, usage) if usage is not None and self.cost is not None else None
            self.cache.keep(server, body, reply=reply, reasoning=reasoning, finish_reason=turn.finish_reason,
                            model=hide_known(turn.model, self.secrets), usage=usage, cost_usd=cost)


def _replayed(hit: CachedReply) -> Iterator[Event]:
    """A kept reply as the events of a reply, begun with FromCache."""
    yield FromCache(hit.created_at, hit.hits)
    yield Served(hit.model)
    if hit.reasoning:
        yield ReasoningDelta(hit.reasoning)
    if hit.reply:
        yield TextDelta(hit.reply)
    yield Finish(hit.finish_reason)
    if hit.usage is not None:
        yield hit.usage


def caching(client: object) -> bool:
    """Whether a session's client has the response cache in front of it (--json then says "cached")."""
    return isinstance(client, CachingClient)


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
