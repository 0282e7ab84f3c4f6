"""The composition root: the one place that builds a Session or rewires one.

A session is built from a Config (a new one, or --resume's); /profile points it at another
profile's config; /new and /resume give it another conversation. Each time the session gets
what it runs by from here: its client, its counting, its accounts and its policy.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from chatcli.base.blocklist import Blocklist
from chatcli.base.errors import ChatError, UsageError
from chatcli.base.parse import MAX_ID, duration_seconds, whole_number
from chatcli.base.pii import configured_secrets
from chatcli.base.secrets import know
from chatcli.config.settings import Config, Profiles
from chatcli.core.accounts import Accounts
from chatcli.core.budget import Budget
from chatcli.core.cache import CachingClient, ResponseCache
from chatcli.core.conversation import Conversation, Policy
from chatcli.core.journal import Journal
from chatcli.core.resume import load_conversation
from chatcli.core.session import Session
from chatcli.core.toolloop import ToolLoop
from chatcli.llm.client import ChatClient
from chatcli.llm.pricing import Pricing
from chatcli.llm.tokens import Encodings, ModelLimits, Tokenizer
from chatcli.store.db import Store, db_path
from chatcli.tools.base import Approver
from chatcli.tools.box import ALWAYS_ASKS, Toolbox
from chatcli.tools.registry import BUILTIN_NAMES, builtin_tools, unknown_tools


def policy_of(config: Config) -> Policy:
    """What a session reads of its config."""

    return Policy(profile=config.profile, profiles=tuple(config.profiles), config_path=config.config_path,
                  redact=config.redact, secrets=configured_secrets(config), wait=config.connect_timeout,
                  blocklist=Blocklist(config.block_words) if config.block_words else None,
                  show_filtered=config.show_filtered, image_max_mb=config.image_max_mb)


def build_session(config: Config, conversation: Conversation, **options: Any) -> Session:
    """A session over `conversation`, talking to the config's server, with its prices, caps and policy."""

    accounts = Accounts(Pricing(config.prices), Budget(**config.budget, where=str(config.config_path)))
    session = Session(conversation=conversation, accounts=accounts, **options)
    use(session, config)
    return session


def switch(session: Session, config: Config) -> None:
    """Point the session at another profile's server and model; the conversation goes on there.

    The model, temperature and max_tokens become what `chatcli -p NAME` would start with (unset
    if it sets none), so nothing of the last profile lingers; a system prompt the profile gives
    replaces the session's. Parameters only /set sets (top_p, seed, stop, ...) stay.
    """
    use(session, config)
    session.set_model(config.model)
    for key in ("temperature", "max_tokens"):
        session.set_param(key, getattr(config, key))
    if config.system and config.system != session.system:
        session.set_system(config.system)
    session.journal.state_changed(session.state(), "profile")  # so resuming it comes back here


def use(session: Session, config: Config) -> None:
    """The session talks to the config's server, counts and prices with its figures, and keeps
    its policy; nothing else changes. The config's secrets become the ones the process hides."""

    session.client = ChatClient(config)
    session.tokenizer = make_tokenizer(config, encodings=session.tokenizer.encodings)
    session.accounts.pricing = Pricing(config.prices)
    session.accounts.asks_for_cost = session.client.adapter.usage_accounting  # the server will say what it cost
    session.policy = policy_of(config)
    know(config)
    if session.toolloop is not None:  # the front end equipped it: the new config's tools, asked as before
        equip_tools(session, config, session.toolloop.approver, say=session.toolloop.say)


def tool_settings(config: Config) -> dict[str, Any]:
    """What the built-in tools are made with, as plain values: the config's tool_* and fetch_* keys
    (tool_roots, fetch_allow_private, ...), and the working directory chatcli started in."""
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name.startswith(("tool_", "fetch_"))}
    return {**settings, "cwd": str(Path.cwd())}


def equip_tools(session: Session, config: Config, approver: Approver,
                say: Callable[[str], None] | None = None) -> list[str]:
    """The session's tools as the config says (`tools`, --tools, a profile's), with the front end's
    approver; sentences for names that name no tool. The MCP servers that enabled names reach
    (NAME.tool, NAME.*) start in the background, and `say` tells of one that cannot start or stops."""
    known = list(BUILTIN_NAMES)
    names = set(config.tools)
    if "all" in names:  # every built-in tool but shell, which is on only when named
        names = (names - {"all"}) | {n for n in known if n not in ALWAYS_ASKS}
    problems = [f"There is no tool named {name!r}, so it stays off; known: {', '.join(known)}."
                for name in unknown_tools(sorted(names), known)]
    close_tools(session)  # a profile's change: the servers of the config before are done
    servers = None
    if config.mcp:
        from chatcli.tools.mcp import McpServers  # lazy: asyncio, off the startup path of a session with no servers

        servers = McpServers(config.mcp, say=lambda sentence: _tell(session, sentence))
    started = servers.start(names) if servers is not None else []
    problems += [f"No [mcp.{server}] server is configured, so {name!r} stays off." for name in sorted(names)
                 if "." in name and (server := name.split(".", 1)[0]) not in config.mcp]
    settings = tool_settings(config)
    box = Toolbox(lambda: builtin_tools(settings), enabled=names, ask=set(config.tool_ask), result_tokens=config.tool_result_tokens,
                  timeout=config.tool_timeout, later=(lambda: servers.tools(started)) if started else None)
    if session.toolloop is not None:  # what the user allowed this session stays allowed
        box.allowed, box.allowed_calls = session.toolloop.box.allowed, session.toolloop.box.allowed_calls
    session.toolloop = ToolLoop(box, approver=approver, max_rounds=config.max_tool_rounds)
    session.toolloop.servers, session.toolloop.say = servers, say
    return problems


def close_tools(session: Session) -> None:
    """Stop the session's MCP servers (at exit, or when another profile's tools replace them)."""
    if session.toolloop is not None and session.toolloop.servers is not None:
        session.toolloop.servers.close()
        session.toolloop.servers = None


def _tell(session: Session, sentence: str) -> None:
    """An MCP server's news (from its thread): to the front end's `say`, or kept for the REPL to
    say between turns (ToolLoop.news); the -v log has it either way."""
    logging.getLogger("chatcli").info("%s", sentence)
    loop = session.toolloop
    if loop is not None and loop.say is not None:
        loop.say(sentence)
    elif loop is not None:
        loop.news.append(sentence)


def equip_cache(session: Session, config: Config, *, save: bool) -> None:
    """--cache, or config `cache`: the session's requests answered from the response cache where
    they may, and kept in it (one-shot asks: in the REPL, /retry asks for a new reply). Off when
    nothing is saved (--no-save, save = false), and when the database cannot be opened (said once,
    by the journal)."""
    log = logging.getLogger("chatcli")
    if not config.cache:
        return
    store = session.journal.store
    if not save or store is None:
        log.info("response cache: off, as %s", "nothing is saved (--no-save or save = false)" if not save
                 else "the database cannot be opened")
        return
    session.client = caching(session, config, store)  # type: ignore[assignment]


def caching(session: Session, config: Config, store: Store, *, lock: Any = None) -> CachingClient:
    """The session's client with the response cache in `store` in front of it (config cache_ttl and
    cache_any); `lock`: the one the store's other writers hold, when threads share it (a batch)."""
    cache = ResponseCache(store, ttl=duration_seconds(config.cache_ttl) or 0, cache_any=config.cache_any, lock=lock)
    pricing = session.accounts.pricing
    return CachingClient(session.sender, cache, secrets=session.policy.secrets, blocklist=session.policy.blocklist,
                         cost=lambda model, usage: pricing.cost(model, usage))


def new_conversation(session: Session) -> None:
    """/new: an empty conversation with the same model, system prompt and parameters, saved apart."""
    session.conversation = Conversation(model=session.model, system=session.system, params=dict(session.params),
                                        journal=session.journal.fork())


def resume(session: Session, session_id: int) -> None:
    """/resume: the saved conversation takes the current one's place, on the profile it was held with
    (or one sentence, and no change, when that profile cannot be used)."""
    conversation = load_conversation(session.journal, session_id)
    saved = session.journal.profile_of(session_id)
    if saved and saved != session.policy.profile and session.profiles is not None:
        use(session, session.profiles.load_for_resume(saved, session_id))
    session.conversation = conversation


def make_tokenizer(config: Config, *, encodings: Encodings | None = None) -> Tokenizer:
    """Counting and limits with the config's figures; encodings already loaded are kept."""

    default = ModelLimits(config.default_context_window, config.default_max_output_tokens, "o200k_base")
    return Tokenizer(overrides=config.models, default=default, encodings=encodings or Encodings())


def start_session(args: argparse.Namespace, env, config: Config, flags: dict[str, Any], *, save: bool,
                  profiles: Profiles) -> tuple[Session, Config]:
    """The session to run, a saved one resumed (on the server it was held on) or a new one, and
    the config it runs with (a resumed session's profile's)."""
    session, config = _started(args, env, config, flags, save=save, profiles=profiles)  # profiles set there
    session.model_chosen = args.resume is not None or config.model_set
    session.show_reasoning = config.show_reasoning
    return session, config


def _started(args: argparse.Namespace, env, config: Config, flags: dict[str, Any], *, save: bool,
             profiles: Profiles) -> tuple[Session, Config]:
    if save:
        journal = open_journal(config, env)
    elif any(v is not None for v in config.budget.values()):
        # Incognito keeps no words, but a budget must still hold: only the usage ledger is written.
        journal = open_journal(config, env, keep_text=False)
    else:
        journal = Journal()
    if args.resume is None:
        params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        conversation = Conversation(model=config.model, system=config.system, journal=journal,
                                    params={k: v for k, v in params.items() if v is not None})
        return build_session(config, conversation, profiles=profiles), config
    conversation = load_conversation(journal, resumed_id(journal, args.resume))
    saved = journal.profile_of(conversation.journal.session_id)
    if args.profile is None and saved and saved != config.profile:
        # Back to the server the conversation was held on, not wherever the config now points.
        config = profiles.load_for_resume(saved, conversation.journal.session_id)
    session = build_session(config, conversation, profiles=profiles)
    # Flags given now win over the saved state; config defaults do not.
    if args.model:
        session.set_model(args.model)
    if args.system:
        session.set_system(args.system)
    for key in ("temperature", "max_tokens"):
        if flags[key] is not None:
            session.set_param(key, flags[key])
    return session, config


def open_journal(config: Config, env, *, keep_text: bool = True) -> Journal:
    return Journal.open(db_path(config.db, env.data_dir), keep_text=keep_text)


def resumed_id(journal: Journal, which: str) -> int:
    """The id of the session --resume names, or of the last one."""
    if not journal.saving:
        reason = journal.take_warning() or "history is not being saved (--no-save or save = false)"
        raise ChatError(f"Cannot resume: {reason[0].lower() + reason[1:]}".rstrip(".") + ".")
    if which == "last":
        session_id = journal.last_session_id()
        if session_id is None:
            raise ChatError("There is no saved session to continue yet; start one with chatcli.")
        return session_id
    session_id = whole_number(which)
    if session_id is None or not 0 < session_id <= MAX_ID:
        shown = which if len(which) <= 40 else which[:39] + "…"
        raise UsageError(f"--resume takes a session id, as chatcli sessions list shows them, not {shown!r}.")
    return session_id
