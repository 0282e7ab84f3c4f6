"""`chatcli cache stats|clear`: the response cache (core/cache.py) as the database holds it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from chatcli.base.env import Env
from chatcli.base.errors import EXIT_OK
from chatcli.base.format import age, format_cost
from chatcli.base.parse import duration_seconds
from chatcli.base.text import for_stream
from chatcli.cli.flags import SUBCOMMANDS, add_flags
from chatcli.config.settings import load_config
from chatcli.core.cache import RULE
from chatcli.store.cache import Responses
from chatcli.store.db import db_path, opened

EXAMPLES = """\
examples:
  chatcli cache stats                 entries, size, hits, the tokens and USD they saved, the TTL
  chatcli cache clear                 remove every cached reply
  chatcli cache clear --expired       remove only those past cache_ttl
  chatcli --cache -t 0 "a question"   ask with the cache on (also: cache = true in the config)
"""

GLOBAL = SUBCOMMANDS["cache"]


def build_cache_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="chatcli cache",
        description="The response cache: one-shot asks answered again without a request (--cache, cache = true). "
        f"By default {RULE}; nothing is cached with --no-save.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(parser, GLOBAL)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    sub.add_parser("stats", help="entries, size, hits, the tokens and USD the hits saved, oldest and newest, the TTL")
    p = sub.add_parser("clear", help="remove the cached replies (say how many)")
    p.add_argument("--expired", action="store_true", help="only those past their time")
    for action in sub.choices.values():  # chatcli cache stats --db X, as well as chatcli --db X cache stats
        add_flags(action, GLOBAL, again=True)
    return parser


def run_cache(args: argparse.Namespace, env: Env) -> int:
    config = load_config(env, config_path=args.config, flags={"db": args.db})
    path = db_path(config.db, env.data_dir)

    def out(text: str) -> None:  # a file name in it: data in a pipe, gated on a terminal
        env.stdout.write(for_stream(text, terminal=env.stdout_isatty))

    if not path.exists():
        out(f"There is no response cache yet: there is no database at {path}.\n")
        return EXIT_OK
    with opened(path, failing="Cannot use the response cache") as store:
        responses = Responses(store)
        if args.action == "clear":
            count = responses.clear(expired_before=time.time() if args.expired else None)
            which = "expired cached " if args.expired else "cached "
            out(f"Removed {count:,} {which}{'reply' if count == 1 else 'replies'} from {path}.\n")
            return EXIT_OK
        for line in _stats_lines(responses, config, path):
            out(line + "\n")
        return EXIT_OK


def _stats_lines(responses: Responses, config, path: Path) -> list[str]:
    now = time.time()
    s = responses.stats(now=now)
    state = "on (cache = true)" if config.cache else "off unless --cache (cache = false)"
    ttl = duration_seconds(config.cache_ttl)
    lines = [f"Response cache in {path}: {state}"]
    expired = f" ({s.expired:,} expired: never served; `chatcli cache clear --expired` removes them)" if s.expired else ""
    lines.append(f"entries: {s.entries:,}{expired}")
    lines.append(f"size: {_size(s.size_bytes)}")
    lines.append(f"hits: {s.hits:,}")
    cost = format_cost(s.saved_usd)
    unpriced = f" (and {s.unpriced_hits:,} {'hit' if s.unpriced_hits == 1 else 'hits'} at an unknown cost)" \
        if s.unpriced_hits else ""
    lines.append(f"saved: {s.saved_tokens:,} tokens, {cost}{unpriced}")
    if s.oldest is not None:
        lines.append(f"oldest: {_when(s.oldest)}")
        lines.append(f"newest: {_when(s.newest)}")
    rule = "any request (cache_any = true)" if config.cache_any else f"{RULE.split(', unless')[0]}"
    lines.append(f"ttl: {config.cache_ttl} ({ttl:,} seconds; cache_ttl); {rule}")
    return lines


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(timestamp))} ({age(timestamp)})"


def _size(size: int) -> str:
    for unit, step in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= step:
            return f"{size / step:,.1f} {unit}"
    return f"{size:,} bytes"
