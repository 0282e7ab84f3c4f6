"""What is sent, and where: /model, /profile, /temp, /set, /params, /effort and /reasoning."""

from __future__ import annotations

import difflib
import shlex

from chatcli.app import switch
from chatcli.base.errors import ChatError
from chatcli.base.images import DETAILS
from chatcli.base.pii import hide_password
from chatcli.commands.registry import UNSET, Result, _shown, command
from chatcli.config.table import SETTINGS_BY_KEY, Setting
from chatcli.core.session import Session


@command("temp", args="[value]", help="Show the temperature, or set it (0 to 2).", aliases=("temperature",))
def temp_command(session: Session, arg: str) -> Result:
    """/temp alone shows the temperature. /temp 0.2 sets it (0 to 2); /temp default goes
    back to the server's own. The same as /set temperature VALUE; saved with the session."""
    if not arg:
        value = session.params.get("temperature")
        return Result(f"Temperature: {value:g}" if value is not None else "Temperature: the server's default.")
    return _set(session, "temperature", arg, label="Temperature")


# What /set may change: each is sent with every request until unset, and saved with the session.
PARAMS: dict[str, Setting] = {
    "temperature": SETTINGS_BY_KEY["temperature"],
    "top_p": Setting("top_p", float, None, "sample from the tokens that make up this much probability", 0, 1, optional=True),
    "max_tokens": SETTINGS_BY_KEY["max_tokens"],
    "presence_penalty": Setting("presence_penalty", float, None, "favour new topics", -2, 2, optional=True),
    "frequency_penalty": Setting("frequency_penalty", float, None, "repeat words less", -2, 2, optional=True),
    "seed": Setting("seed", int, None, "the same seed, the same reply, where the server can", -(2**63), 2**63 - 1, optional=True),
    "reasoning_effort": SETTINGS_BY_KEY["reasoning_effort"],
    # Not sent as a parameter: it sets each image part's detail (low: 85 tokens an image).
    "image_detail": Setting("image_detail", str, None, "how closely images are looked at: low costs 85 tokens each",
                            optional=True, choices=DETAILS),
}


STOP_HELP = "up to 4 strings that end the reply, quoted as in a shell"


@command("set", args="NAME VALUE", help="Set a request parameter (top_p, seed, stop, ...); VALUE default unsets it.")
def set_command(session: Session, arg: str) -> Result:
    """/set NAME VALUE sets a request parameter for every later request, checked against
    its range: temperature (0 to 2), top_p (0 to 1), max_tokens (1 or more), presence_penalty and
    frequency_penalty (-2 to 2), seed (a whole number), reasoning_effort, image_detail (low, high
    or auto: how closely attached images are looked at, set in each image rather than sent on its
    own), or stop: up to 4 strings, quoted as in a shell (/set stop "###" "END"). VALUE default unsets it. Parameters are saved
    with the session; a model that does not take one has it left out, and says so once."""
    if not arg:
        return params_command(session, "")
    name, _, value = arg.partition(" ")
    name, value = name.lower(), value.strip()
    if name not in (*PARAMS, "stop"):
        near = difflib.get_close_matches(name, (*PARAMS, "stop"), n=1)
        hint = f"Did you mean {near[0]}? " if near else ""
        return Result(f"There is no parameter {_shown(name)}. {hint}/params lists them.", error=True)
    if not value:
        example = '"###"' if name == "stop" else "default"
        return Result(f"Give a value, as in /set {name} {example}.", error=True)
    return _set(session, name, value, label=name)


def _set(session: Session, name: str, value: str, *, label: str) -> Result:
    """Check a parameter's value with its rules and set it; `default` unsets it."""
    if value.lower() in UNSET:
        session.set_param(name, None)
        return Result(f"{label} reset to the server's default.")
    session.set_param(name, _stop_strings(value) if name == "stop" else PARAMS[name].parse(value, label))
    return Result(f"{label} set to {_param_text(session.params[name])}.")


def _stop_strings(text: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError:
        raise ChatError(f"stop must be {STOP_HELP}; a quote is not closed in {_shown(text)}.") from None
    if not 1 <= len(words) <= 4 or not all(words):
        raise ChatError(f"stop must be {STOP_HELP}, as in /set stop \"###\" \"END\".")
    return words


def _param_text(value: object) -> str:
    if isinstance(value, list):
        return " ".join(repr(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@command("params", help="The request parameters: what is set, and what each may be.")
def params_command(session: Session, arg: str) -> Result:
    """A table of every request parameter: its value in this session (or "server default")
    and what it may be. /set changes them."""
    rows = [[name, _param_text(session.params[name]) if name in session.params else "server default",
             f"{setting.allowed()}: {setting.help[0].lower()}{setting.help[1:].rstrip('.')}"]
            for name, setting in PARAMS.items()]
    if "reasoning_effort" not in session.params:  # the config's, if it has one
        effort, source = session.sender.adapter.effort(session.model, None)
        if effort is not None:
            rows[list(PARAMS).index("reasoning_effort")][1] = f"{effort} (from {source})"
    stop = session.params.get("stop")
    rows.append(["stop", _param_text(stop) if stop else "server default", STOP_HELP])
    return Result(headers=["parameter", "value", "allowed"], rows=rows)


@command("effort", args="[minimal|low|medium|high|default]", help="Show or set the reasoning effort sent to models that take one.")
def effort_command(session: Session, arg: str) -> Result:
    """/effort alone says the reasoning effort sent, where it comes from (this session,
    [models."NAME"] or the config's reasoning_effort) and whether the model takes one. /effort low
    (minimal, low, medium, high) sets it for this session; /effort default unsets it. Only models
    that take an effort (the o-series, gpt-5) are sent one."""
    if arg:
        _set(session, "reasoning_effort", arg.lower(), label="Reasoning effort")  # saved with the session
    return Result(session.sender.adapter.effort_status(session.model, session.params.get("reasoning_effort")))


@command("model", args="[name]", help="Show the model, or switch to another.")
def model_command(session: Session, arg: str) -> Result:
    """/model alone lists the models the server offers (GET /models), the current one
    marked; Tab completes their names after /model. /model NAME switches for the next request; the
    conversation goes on, and the model is saved with each turn. A name the server does not know
    fails with a sentence listing close matches."""
    if not arg:
        try:
            names = session.sender.models()
        except ChatError as exc:
            return Result(f"Model: {session.model}. The server's list could not be had: {exc.message}")
        if not names:
            return Result(f"Model: {session.model}. The server lists no models.")
        rows = [[("* " if name == session.model else "  ") + name] for name in names]
        return Result(f"Model: {session.model}; the server has {len(names)} (/model NAME switches):",
                      headers=["model"], rows=rows)
    if any(ch.isspace() or not ch.isprintable() for ch in arg):
        return Result(f"A model name has no spaces or control characters: {arg!r}.", error=True)
    session.set_model(arg)
    session.model_chosen = True  # the server's own model is no longer the default
    names = session.sender.peek_models()
    if names is None:  # not asked yet (the REPL asks as it starts)
        try:
            names = session.sender.models()
        except ChatError:
            names = []  # the server cannot say: the first request will
    if names and arg not in names:
        near = difflib.get_close_matches(arg, names, n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(near)}" if near else f"; it lists {len(names)} (/model shows them)"
        return Result(f"Model set to {arg}, though the server does not list it{hint}. Its requests may fail.")
    if session.accounts.pricing.price_for(arg) is None:
        return Result(f"Model set to {arg}; chatcli knows no price for it, so its cost shows as unknown.")
    return Result(f"Model set to {arg}.")


@command("profile", args="[name]", help="List the config file's profiles, or switch to one: its server, key and model.")
def profile_command(session: Session, arg: str) -> Result:
    """/profile alone lists the config file's [profiles.NAME] tables, with their model and
    base URL, the current one marked. /profile NAME switches to one from the next request on, as if
    chatcli had started with -p NAME: its server, key, headers, model, temperature and max_tokens
    (unset where it sets none), and its system prompt if it gives one. The conversation goes on
    there, and parameters only /set sets stay. A profile that cannot be used (no such profile, its
    key not set) is one sentence, and nothing changes. Tab completes the names."""

    policy = session.policy
    if session.profiles is None:
        return Result("Profiles are not available here.", error=True)
    if not arg:
        tables = session.profiles.tables(policy.config_path)
        if not tables:
            return Result(f"No profiles: add [profiles.NAME] tables to {policy.config_path}.")
        rows = [[("* " if name == policy.profile else "  ") + name, t.get("model", "-"), hide_password(t.get("base_url", "-"))]
                for name, t in tables.items()]
        return Result(f"Profile: {policy.profile or 'none'} (/profile NAME switches):",
                      headers=["profile", "model", "base_url"], rows=rows)
    config = session.profiles.load(arg)  # a ConfigError is the one sentence said
    switch(session, config)
    return Result(f"Profile {arg}: {config.model} at {config.shown_url}.")


@command("reasoning", args="[on|off]", help="Show or hide the reasoning some models stream before the answer.")
def reasoning_command(session: Session, arg: str) -> Result:
    """/reasoning alone toggles showing the reasoning some models stream before their
    answer (DeepSeek R1, QwQ, and servers that send reasoning_content), drawn dimmed. /reasoning on
    and /reasoning off set it."""
    choice = arg.strip().lower()
    if choice not in ("", "on", "off"):
        return Result(f"/reasoning takes on or off, not {arg!r}.", error=True)
    session.show_reasoning = (not session.show_reasoning) if not choice else choice == "on"
    if session.show_reasoning:
        return Result("Reasoning is shown, dimmed, before the answer.")
    return Result("Reasoning is hidden; it is still saved with the reply.")
