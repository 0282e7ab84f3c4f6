"""Reports over what is saved: `chatcli sessions ...` (list, show, search, export, delete, prune,
rename, check) and `chatcli usage` (tokens and cost from the usage ledger)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

from chatcli.base import parse as inputs
from chatcli.base.env import Env
from chatcli.base.errors import EXIT_FAILURE, EXIT_OK, ChatError, UsageError, one_line
from chatcli.base.events import WITHHELD
from chatcli.base.format import age, format_cost
from chatcli.base.text import for_stream, strip_controls
from chatcli.cli.flags import SUBCOMMANDS, add_flags
from chatcli.commands import Result
from chatcli.config.settings import load_config
from chatcli.core.budget import period_starts
from chatcli.core.export import export_text, to_markdown, write_export
from chatcli.core.journal import Journal
from chatcli.core.resume import restore_session
from chatcli.store.db import (
    SessionInfo,
    Store,
    StoreError,
    db_path,
    opened,
)
from chatcli.store.repair import check, recover
from chatcli.ui.markdown import markdown
from chatcli.ui.render import make_console
from chatcli.ui.views import show_result, show_search_hit

EXAMPLES = """\
examples:
  chatcli sessions list
  chatcli sessions show 12
  chatcli sessions search "connection pool"
  chatcli sessions export 12 --format json -o chat.json
  chatcli sessions rename 12 "Postgres tuning"
  chatcli sessions delete 12
  chatcli sessions prune --older-than 30d
  chatcli sessions check --recover
"""

GLOBAL = SUBCOMMANDS["sessions"]  # the global flags sessions and usage take: --db, --config
_UNITS = inputs.DURATION_UNITS


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 30d, 12h or 2w."""
    seconds = inputs.duration_seconds(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"must be a number and a unit (s, m, h, d or w), as in 30d, not {text!r}")
    return seconds


def build_sessions_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="chatcli sessions",
        description="Saved sessions: every turn is saved as it happens.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(parser, GLOBAL)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=parser_class)
    p = sub.add_parser("list", help="id, title, model, turns, tokens, last updated")
    p.add_argument("-n", "--limit", type=inputs.count, default=50, help="at most this many (default 50)")
    p = sub.add_parser("show", help="print a session")
    p.add_argument("id", type=inputs.session_id)
    p = sub.add_parser("search", help="full-text search, with matching snippets")
    p.add_argument("text", nargs="+")
    p = sub.add_parser("export", help="a session as markdown or JSON")
    p.add_argument("id", type=inputs.session_id)
    p.add_argument("--format", choices=("md", "json"), help="default: from -o's extension, else md")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p = sub.add_parser("delete", help="delete a session")
    p.add_argument("id", type=inputs.session_id)
    p = sub.add_parser("prune", help="delete sessions not updated for a while")
    p.add_argument("--older-than", type=parse_duration, required=True, metavar="AGE", help="such as 30d, 12h, 2w")
    p = sub.add_parser("rename", help="give a session a title")
    p.add_argument("id", type=inputs.session_id)
    p.add_argument("title", nargs="+")
    p = sub.add_parser("check", help="check the database; offer to recover a damaged one into a new file",
                       description="Run SQLite's integrity check on the history database. If it is damaged, "
                       "recover what can be read into a new database, which takes its place; the damaged file "
                       "is kept beside it. On a terminal chatcli asks first; --recover does it without asking.")
    p.add_argument("--recover", action="store_true", help="recover a damaged database without asking (for scripts)")
    for action in sub.choices.values():  # chatcli sessions list --db X, as well as chatcli --db X sessions list
        add_flags(action, GLOBAL, again=True)
    return parser


def run_sessions(args: argparse.Namespace, env: Env) -> int:
    config = load_config(env, config_path=args.config, flags={"db": args.db})
    path = db_path(config.db, env.data_dir)
    if args.action == "check":  # a damaged database is what it is for: not opened as the others open it
        return check_action(path, args, env)
    args.show_filtered = config.show_filtered  # whether a withheld reply may be shown (show, search, export)
    with opened(path, failing="Cannot read saved sessions") as store:
        return ACTIONS[args.action](store, args, env)


def _console(env: Env):
    return make_console(env.stdout, color=env.stdout_isatty and not env.no_color)


def _find(store: Store, session_id: int) -> SessionInfo:
    info = store.session(session_id)
    if info is None:
        raise ChatError(f"There is no saved session {session_id}; chatcli sessions list shows them.")
    return info


def _load(store: Store, session_id: int, env: Env, *, show_filtered: bool = False):
    """A saved session to show or export; images no longer in the database are said, on stderr."""
    info = _find(store, session_id)
    journal = Journal(None)
    session = restore_session(info, store.messages(session_id), client=None, journal=journal)
    session.policy = replace(session.policy, show_filtered=show_filtered)
    notice = journal.take_warning()
    if notice:
        env.stderr.write(strip_controls(notice) + "\n")
    return session


def spent(store: Store, info: SessionInfo) -> str:
    """A session's tokens as /usage counts them, with the same computation (Accounts.accounting):
    every request it paid for (undone and replaced replies and /compact summaries included), the
    server's usage where it reported one, and our estimate, marked ≈, where it did not."""

    # Images are not read: what each request counted is saved with its message (sent_tokens).
    session = restore_session(info, store.messages(info.id, images=False), client=None, journal=Journal(None),
                              spends=store.ledger(session_id=info.id))
    _, total = session.accounts.accounting()
    return f"{'' if total.exact else '≈'}{total.usage.total_tokens:,}"


def list_action(store: Store, args, env: Env) -> int:
    listed = store.list_sessions(limit=args.limit)
    if not listed:
        env.stdout.write("No saved sessions yet.\n")
        return EXIT_OK
    headers = ["id", "title", "model", "turns", "tokens", "updated"]
    rows = [[str(i.id), i.title or "", i.model, str(i.turns), spent(store, i), age(i.updated_at)] for i in listed]
    if not env.stdout_isatty:
        # For scripts: one line per session, tab-separated, never wrapped.
        for row in [headers, *rows]:
            env.stdout.write("\t".join(cell.replace("\t", " ") for cell in row) + "\n")
        return EXIT_OK
    show_result(_console(env), Result(headers=headers, rows=rows))
    return EXIT_OK


def show_action(store: Store, args, env: Env) -> int:
    text = strip_controls(to_markdown(_load(store, args.id, env, show_filtered=args.show_filtered)))
    if env.stdout_isatty:
        _console(env).print(markdown(text))
    else:
        env.stdout.write(text)
    return EXIT_OK


def search_action(store: Store, args, env: Env) -> int:
    hits = store.search(" ".join(args.text))
    if not hits:
        env.stdout.write("No matches.\n")
        return EXIT_OK
    console = _console(env)
    for hit in hits:
        snippet = WITHHELD if hit.filtered and not args.show_filtered else hit.snippet
        show_search_hit(console, hit.session_id, hit.title, hit.role, snippet, terminal=env.stdout_isatty)
    return EXIT_OK


def export_action(store: Store, args, env: Env) -> int:
    """To a file, the text exactly (written whole or not at all); to a terminal, through the gate,
    as everything else shown; to a pipe, exactly: it is data, and the program reading it (jq, a
    file, less, which shows control characters as ^[ by default) decides what to do with it."""

    session = _load(store, args.id, env, show_filtered=args.show_filtered)
    if args.output:
        target = write_export(session, args.output, args.format)
        env.stderr.write(f"Exported session {args.id} to {strip_controls(str(target))}.\n")
        return EXIT_OK
    text = export_text(session, args.format or "md")
    env.stdout.write(for_stream(text, terminal=env.stdout_isatty))
    return EXIT_OK


def delete_action(store: Store, args, env: Env) -> int:
    _find(store, args.id)
    store.delete_session(args.id)
    env.stdout.write(f"Deleted session {args.id}.\n")
    return EXIT_OK


def prune_action(store: Store, args, env: Env) -> int:
    count = store.prune(older_than_s=args.older_than)
    env.stdout.write(f"Deleted {count} {'session' if count == 1 else 'sessions'} not updated for {_span(args.older_than)}.\n")
    return EXIT_OK


def rename_action(store: Store, args, env: Env) -> int:
    _find(store, args.id)
    title = " ".join(" ".join(args.title).split())
    if not title:
        raise UsageError("A title needs some text.")
    store.update_session(args.id, event="title", title=title)
    env.stdout.write(f"Session {args.id} is now titled {title!r}.\n")
    return EXIT_OK


def check_action(path: Path, args, env: Env) -> int:
    """integrity_check; a damaged database is recovered into a new file, asked first on a terminal."""

    if not path.exists():
        env.stdout.write(f"There is no history database at {path} yet.\n")
        return EXIT_OK
    try:
        health = check(path)
    except StoreError as exc:
        raise ChatError(f"Cannot check the history database: {exc}.") from None
    if health.whole:
        sessions, messages = health.sessions, health.messages
        env.stdout.write(f"{path} is whole: {sessions} session{'s' * (sessions != 1)}, "
                         f"{messages} message{'s' * (messages != 1)}.\n")
        return EXIT_OK
    damage = f"The history database {path} is damaged ({one_line(health.problem, 160)})"
    if not args.recover:
        if not (env.stdin_isatty and env.stdout_isatty):
            raise ChatError(f"{damage}; run `chatcli sessions check --recover` to recover what it holds into a "
                            "new file, keeping the damaged one beside it.")
        env.stdout.write(f"{damage}.\nRecover what can be read into a new file, keeping the damaged one beside it? [y/N] ")
        env.stdout.flush()
        if env.stdin.readline().strip().lower() not in ("y", "yes"):
            env.stdout.write("Nothing was changed.\n")
            return EXIT_FAILURE
    try:
        done = recover(path)
    except (StoreError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ChatError(f"{damage}, and it could not be recovered ({why}); the damaged file is left as it was.") from None
    env.stdout.write(f"Recovered {done.sessions} sessions and {done.messages} messages into {done.path} ({done.how}); "
                     f"the damaged file is kept as {done.kept}.\n")
    return EXIT_OK


def _span(seconds: float) -> str:
    for unit, size in (("week", _UNITS["w"]), ("day", _UNITS["d"]), ("hour", _UNITS["h"]), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"


ACTIONS = {
    "list": list_action,
    "show": show_action,
    "search": search_action,
    "export": export_action,
    "delete": delete_action,
    "prune": prune_action,
    "rename": rename_action,
}


def build_usage_parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="chatcli usage",
        description="Tokens and cost from the usage ledger, as a table and a bar chart.",
        epilog="examples:\n  chatcli usage\n  chatcli usage --days 30 --by model\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--days", type=int, default=7, help="how many days back, today included (default 7)")
    parser.add_argument("--by", choices=("day", "model"), default="day", help="one row per day or per model")
    add_flags(parser, SUBCOMMANDS["usage"])
    return parser


def run_usage(args: argparse.Namespace, env: Env) -> int:
    if not 1 <= args.days <= 3660:
        raise UsageError(f"--days must be from 1 to 3660, not {args.days}.")
    args.action = "usage"
    return run_sessions(args, env)


@dataclass
class _Spent:
    """One row of `chatcli usage`: what a day or a model spent."""

    tokens: int = 0
    cached: int = 0
    reasoning: int = 0
    usd: float = 0.0
    unknown: bool = False  # some of it was on a model with no price
    exact: bool = True  # False: some of it was chatcli's estimate

    def add(self, spend) -> None:
        self.tokens += spend.total_tokens
        self.cached += spend.cached_tokens
        self.reasoning += spend.reasoning_tokens
        self.usd += spend.cost_usd or 0.0
        self.unknown = self.unknown or spend.cost_usd is None
        self.exact = self.exact and not spend.estimated


def usage_action(store: Store, args, env: Env) -> int:
    today, _ = period_starts()
    since = today - (args.days - 1) * 86400
    groups: dict[str, _Spent] = {}
    if args.by == "day":
        for n in range(args.days):  # every day, spent on or not
            groups[time.strftime("%Y-%m-%d", time.localtime(since + n * 86400 + 43200))] = _Spent()
    total = _Spent()
    provider = False  # some cost is the provider's own figure
    for spend in store.ledger(since):
        key = time.strftime("%Y-%m-%d", time.localtime(spend.created_at)) if args.by == "day" else spend.model
        groups.setdefault(key, _Spent()).add(spend)
        total.add(spend)
        provider = provider or spend.cost_source == "provider"
    measure = "usd" if total.usd > 0 else "tokens"  # chart cost, or tokens when nothing is priced
    biggest = max((getattr(g, measure) for g in groups.values()), default=0) or 1
    # Cached and reasoning tokens where the server reported any, with the bars shorter to make room.
    details = [name for name in ("cached", "reasoning") if getattr(total, name)]
    width = 30 - 8 * len(details)

    def cost_cell(row: _Spent) -> str:
        if row.unknown and row.usd == 0:
            return "cost unknown"  # never a made-up $0
        return format_cost(row.usd, exact=row.exact) + (" + cost unknown" if row.unknown else "")

    def cells(key: str, row: _Spent, bar: str) -> list[str]:
        mark = "" if row.exact else "≈"
        if not row.tokens:
            return [key, "0", *("-" for _ in details), "-", bar]
        return [key, f"{mark}{row.tokens:,}", *(f"{getattr(row, name):,}" for name in details), cost_cell(row), bar]

    rows = [cells(key, group, "█" * round(width * getattr(group, measure) / biggest)) for key, group in groups.items()]
    rows.append(cells("total", total, ""))
    chart = "cost" if measure == "usd" else "tokens"
    said = f"Usage over the last {args.days} {'day' if args.days == 1 else 'days'}, by {args.by}; bars show {chart}."
    if provider:
        said += " Costs are the provider's own where it reported them, list prices elsewhere."
    show_result(
        _console(env),
        Result(text=said, headers=[args.by, "tokens", *details, "cost", ""], rows=rows),
    )
    return EXIT_OK


ACTIONS["usage"] = usage_action

