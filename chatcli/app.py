"""The composition root: the one place that builds or rewires a Session.

A new session, a resumed one (--resume, /resume), /new and /profile all come through here, so a
per-session service is wired in one place: the client, the tokenizer, the prices, the budget,
the journal.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chatcli.base.errors import ChatError, UsageError
from chatcli.base.parse import MAX_ID, whole_number
from chatcli.config.settings import Config
from chatcli.core.resume import load_session
from chatcli.core.session import Session
from chatcli.llm.tokens import Encodings, Tokenizer


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
    from chatcli.base.secrets import know

    know(config)



def use(session: Session, config: Config) -> None:
    """The session talks to the config's server, counts and prices with its figures; nothing else changes."""
    from chatcli.llm.client import ChatClient
    from chatcli.llm.pricing import Pricing

    session.client = ChatClient(config)
    session.tokenizer = make_tokenizer(config, encodings=session.tokenizer.encodings)
    session.pricing = Pricing(config.prices)



def make_tokenizer(config: Config, *, encodings: Encodings | None = None) -> Tokenizer:
    """Counting and limits with the config's figures; encodings already loaded are kept."""
    from chatcli.llm.tokens import Encodings, ModelLimits, Tokenizer

    default = ModelLimits(config.default_context_window, config.default_max_output_tokens, "o200k_base")
    return Tokenizer(overrides=config.models, default=default, encodings=encodings or Encodings())


def start_session(args: argparse.Namespace, env, config, flags: dict[str, Any], *, save: bool, profiles) -> tuple[Any, Any]:
    """The session to run, a saved one resumed (on the server it was held on) or a new one, and
    the config it runs with (a resumed session's profile's)."""
    from chatcli.app import make_tokenizer, use
    from chatcli.core.budget import Budget
    from chatcli.core.journal import Journal
    from chatcli.core.session import Session
    from chatcli.llm.client import ChatClient
    from chatcli.llm.pricing import Pricing

    if save:
        journal = open_journal(config, env)
    elif any(v is not None for v in config.budget.values()):
        # Incognito keeps no words, but a budget must still hold: only the usage ledger is written.
        journal = open_journal(config, env, keep_text=False)
    else:
        journal = Journal()
    if args.resume is not None:
        session = resume_session(journal, args.resume, client=None)
        saved = journal.profile_of(session.id)
        if args.profile is None and saved and saved != config.profile:
            # Back to the server the conversation was held on, not wherever the config now points.
            config = profiles.load_for_resume(saved, session.id)
        use(session, config)
        session.budget = Budget(**config.budget, where=str(config.config_path))
        # Flags given now win over the saved state; config defaults do not.
        if args.model:
            session.set_model(args.model)
        if args.system:
            session.set_system(args.system)
        for key in ("temperature", "max_tokens"):
            if flags[key] is not None:
                session.set_param(key, flags[key])
    else:
        params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        session = Session(
            client=ChatClient(config),
            model=config.model,
            system=config.system,
            params={k: v for k, v in params.items() if v is not None},
            journal=journal,
            tokenizer=make_tokenizer(config),
            pricing=Pricing(config.prices),
            budget=Budget(**config.budget, where=str(config.config_path)),
        )
    return session, config



def open_journal(config, env, *, keep_text: bool = True):
    from chatcli.core.journal import Journal
    from chatcli.store.db import default_db_path

    path = Path(config.db).expanduser() if config.db else default_db_path(env.data_dir)
    return Journal.open(path, keep_text=keep_text)



def resume_session(journal, which: str, *, client):
    """The session --resume names, or the last one."""

    if not journal.saving:
        reason = journal.take_warning() or "history is not being saved (--no-save or save = false)"
        raise ChatError(f"Cannot resume: {reason[0].lower() + reason[1:]}".rstrip(".") + ".")
    if which == "last":
        session_id = journal.last_session_id()
        if session_id is None:
            raise ChatError("There is no saved session to continue yet; start one with chatcli.")
    else:
        session_id = whole_number(which)
        if session_id is None or not 0 < session_id <= MAX_ID:
            shown = which if len(which) <= 40 else which[:39] + "…"
            raise UsageError(f"--resume takes a session id, as chatcli sessions list shows them, not {shown!r}.")
    return load_session(journal, session_id, client=client)
