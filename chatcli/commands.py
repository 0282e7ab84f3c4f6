"""Slash commands: one registry feeds dispatch, /help and completion.

Handlers change the session and return a Result; they never print, so they
can be tested without a terminal. The REPL draws the Result.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable

from chatcli.blocks import code_blocks
from chatcli.capabilities import Adapter
from chatcli.config import SETTINGS_BY_KEY, Setting
from chatcli.errors import ChatError
from chatcli.pricing import format_cost
from chatcli.session import (
    COMPLETE,
    ERROR,
    INTERRUPTED,
    PENDING,
    SUMMARY_HEADING,
    Session,
)
from chatcli.terminal import OSC52_LIMIT, osc52_payload


@dataclass
class Result:
    text: str = ""
    error: bool = False
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    exit: bool = False
    retry: bool = False  # the REPL sends the last message again (/retry)
    prefill: str | None = None  # the REPL puts this back at the prompt (/undo)
    recap: bool = False  # the REPL shows the session's history (/resume)
    clipboard: str | None = None  # the REPL puts this on the terminal's clipboard (/copy), then shows text


Handler = Callable[[Session, str], Result]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    help: str
    args: str = ""
    aliases: tuple[str, ...] = ()


class Registry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self._lookup: dict[str, Command] = {}

    def command(self, name: str, *, help: str, args: str = "", aliases: tuple[str, ...] = ()):
        def register(handler: Handler) -> Handler:
            cmd = Command(name, handler, help, args, aliases)
            self.commands[name] = cmd
            for key in (name, *aliases):
                self._lookup[key] = cmd
            return handler

        return register

    def names(self) -> list[str]:
        """Every name a user may type, aliases included, with the slash."""
        return sorted("/" + key for key in self._lookup)

    def command_for(self, name: str) -> Command | None:
        return self._lookup.get(name.removeprefix("/").lower())

    def unknown(self, name: str) -> Result:
        near = difflib.get_close_matches(name.lower(), self._lookup, n=1, cutoff=0.5)
        hint = f" Did you mean /{near[0]}?" if near else " Type /help for the list."
        return Result(f"Unknown command /{name}.{hint}", error=True)

    def dispatch(self, session: Session, line: str) -> Result:
        name, arg = (line.strip().removeprefix("/").split(None, 1) + ["", ""])[:2]
        if not name:
            return Result("Type a command after the slash; /help lists them.", error=True)
        cmd = self._lookup.get(name.lower())
        if cmd is None:
            return self.unknown(name)
        if arg.strip() and not cmd.args:
            # Never half-obey: /undo 3 would drop one exchange, /clear now would clear.
            return Result(f"/{cmd.name} takes nothing after it, not {_shown(arg.strip())}; type /{cmd.name} alone.", error=True)
        try:
            return cmd.handler(session, arg.strip())
        except ChatError as exc:
            return Result(exc.message, error=True)


REGISTRY = Registry()
command = REGISTRY.command


@command("help", args="[command]", help="List the commands, or say how one is used.", aliases=("?",))
def help_command(session: Session, arg: str) -> Result:
    if arg:
        cmd = REGISTRY.command_for(arg.split()[0])
        if cmd is None:
            return REGISTRY.unknown(arg.split()[0].removeprefix("/"))
        also = f" Also: /{', /'.join(cmd.aliases)}." if cmd.aliases else ""
        usage = f"/{cmd.name}" + (f" {cmd.args}" if cmd.args else " (takes nothing after it)")
        return Result(f"{usage}: {cmd.help}{also}")
    rows = [
        [f"/{c.name}" + (f" {c.args}" if c.args else ""), c.help + (f" (also /{', /'.join(c.aliases)})" if c.aliases else "")]
        for c in REGISTRY.commands.values()
    ]
    rows.append(["Alt-Enter", "Insert a newline (Esc then Enter works too)."])
    rows.append(["Ctrl-C", "Cancel a reply, or clear the line."])
    rows.append(["Ctrl-D", "Quit."])
    return Result(headers=["command", "what it does"], rows=rows)


@command("exit", help="Quit chatcli.", aliases=("quit", "q"))
def exit_command(session: Session, arg: str) -> Result:
    return Result(exit=True)


@command("clear", help="Forget the conversation; keep the system prompt and settings.")
def clear_command(session: Session, arg: str) -> Result:
    count = sum(turn.in_context for turn in session.context_turns)
    session.clear()
    return Result(f"Forgot {count} {'exchange' if count == 1 else 'exchanges'}; the system prompt is kept.")


@command("system", args="[text]", help="Show the system prompt, or set it (the history is kept).")
def system_command(session: Session, arg: str) -> Result:
    if not arg:
        return Result(f"System prompt: {session.system}" if session.system else "No system prompt is set.")
    redacted = session.set_system(arg)
    said = f" ({redacted})" if redacted is not None else ""
    return Result(f"System prompt set{said}; the history is kept.")


@command("temp", args="[value]", help="Show the temperature, or set it (0 to 2).", aliases=("temperature",))
def temp_command(session: Session, arg: str) -> Result:
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
}
STOP_HELP = "up to 4 strings that end the reply, quoted as in a shell"
UNSET = ("default", "unset", "none")


@command("set", args="NAME VALUE", help="Set a request parameter (top_p, seed, stop, ...); VALUE default unsets it.")
def set_command(session: Session, arg: str) -> Result:
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
    import shlex

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
    rows = [[name, _param_text(session.params[name]) if name in session.params else "server default",
             f"{setting.allowed()}: {setting.help[0].lower()}{setting.help[1:].rstrip('.')}"]
            for name, setting in PARAMS.items()]
    stop = session.params.get("stop")
    rows.append(["stop", _param_text(stop) if stop else "server default", STOP_HELP])
    return Result(headers=["parameter", "value", "allowed"], rows=rows)


@command("effort", args="[minimal|low|medium|high|default]", help="Show or set the reasoning effort sent to models that take one.")
def effort_command(session: Session, arg: str) -> Result:
    if arg:
        _set(session, "reasoning_effort", arg.lower(), label="Reasoning effort")  # saved with the session
    adapter = session.client.adapter if session.client is not None else Adapter()
    return Result(adapter.effort_status(session.model, session.params.get("reasoning_effort")))


FILE_LIMIT = 8_000_000  # bytes: about 2M tokens, past every model's window; checked before reading


@command("file", args="PATH [PATH...]", help="Attach text files: their names and contents go with your next message.")
def file_command(session: Session, arg: str) -> Result:
    import shlex
    from pathlib import Path

    try:
        paths = shlex.split(arg)
    except ValueError:
        return Result(f"A quote is not closed in {_shown(arg)}; quote file names with spaces.", error=True)
    if not paths:
        return Result("Give a file to attach: /file notes.md (more than one: /file a.py b.py).", error=True)
    pieces = []
    for name in paths:
        try:
            path = Path(name).expanduser()
            if path.exists() and not path.is_file():  # a directory, a device (/dev/zero never ends), a pipe
                return Result(f"{name} is not a regular file; nothing was attached.", error=True)
            if path.exists() and path.stat().st_size > FILE_LIMIT:
                return Result(f"{name} is {path.stat().st_size / 1e6:.0f} MB, more than any context window holds; "
                              "nothing was attached.", error=True)
            data = path.read_bytes()
        except (OSError, RuntimeError, ValueError) as exc:
            return Result(f"Could not read {name} ({getattr(exc, 'strerror', None) or exc}); nothing was attached.", error=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            return Result(f"{name} is not a text file (it is binary or not UTF-8); nothing was attached.", error=True)
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
        pieces.append(f"File {name}:\n{fence}\n{text.rstrip()}\n{fence}")
    plan = session.plan("\n\n".join([*session.attached, *pieces]))
    if not plan.fits:
        size = session.tokenizer.message(session.model, "user", "\n\n".join(pieces))
        room = max(plan.window - plan.reserve - (plan.tokens.tokens - size.tokens), 0)
        return Result(f"{' and '.join(paths)} {'is' if len(paths) == 1 else 'are'} {size} tokens, but the model's "
                      f"{plan.window:,}-token window leaves room for about {room:,}; nothing was attached: "
                      "attach a smaller file or a part of it.", error=True)
    session.attached += pieces
    count = session.tokenizer.message(session.model, "user", "\n\n".join(pieces))
    return Result(f"Attached {', '.join(paths)} ({count} tokens); {'it goes' if len(paths) == 1 else 'they go'} "
                  "with your next message.")


@command("edit", args="[text]", help="Write a message in $EDITOR (Ctrl-X Ctrl-E does it for what is typed); it comes back to the prompt.")
def edit_command(session: Session, arg: str) -> Result:
    from chatcli.terminal import edit_in_editor

    text = edit_in_editor(arg)
    if not text.strip():
        return Result("The message was left empty; nothing was put at the prompt.")
    return Result("Your message is at the prompt: press Enter to send it.", prefill=text)


@command("model", args="[name]", help="Show the model, or switch to another.")
def model_command(session: Session, arg: str) -> Result:
    if not arg:
        try:
            names = session.client.models() if session.client is not None else []
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
    return Result(f"Model set to {arg}.")


@command("profile", args="[name]", help="List the config file's profiles, or switch to one: its server, key and model.")
def profile_command(session: Session, arg: str) -> Result:
    from chatcli.profiles import switch

    current = session.client.config if session.client is not None else None
    if session.profiles is None or current is None:
        return Result("Profiles are not available here.", error=True)
    if not arg:
        tables = session.profiles.tables(current)
        if not tables:
            return Result(f"No profiles: add [profiles.NAME] tables to {current.config_path}.")
        rows = [[("* " if name == current.profile else "  ") + name, t.get("model", "-"), t.get("base_url", "-")]
                for name, t in tables.items()]
        return Result(f"Profile: {current.profile or 'none'} (/profile NAME switches):",
                      headers=["profile", "model", "base_url"], rows=rows)
    switch(session, session.profiles.load(arg))  # a ConfigError is the one sentence said
    config = session.client.config
    return Result(f"Profile {arg}: {config.model} at {config.shown_url}.")


@command("usage", help="Tokens and estimated cost, per turn and for the session.")
def usage_command(session: Session, arg: str) -> Result:
    turns, total = session.accounting()
    if not turns:
        return Result("No turns yet.")
    rows = []
    for number, row in enumerate(turns, 1):
        turn = row.turn
        if row.usage is None:
            why = {PENDING: "no reply"}.get(turn.status, "failed" if turn.status == ERROR and not turn.reply else turn.status)
            rows.append([str(number), turn.model, "-", "-", "-", f"{why}, no usage reported"])
            continue
        rows.append([str(number), turn.model, *_usage_cells(row)])
    for other in session.spent_elsewhere:
        rows.append([other.what, other.model, *_usage_cells(other)])
    rows.append(["session", "", *_usage_cells(total)])
    estimated = " Rows marked ≈ are our own estimate: the server reported no usage for them." if not total.exact else ""
    return Result(
        text="Tokens as reported by the server; cost from list prices." + estimated,
        headers=["turn", "model", "prompt", "completion", "total", "cost"],
        rows=rows,
    )


@command("sessions", help="List recent saved sessions.")
def sessions_command(session: Session, arg: str) -> Result:
    from chatcli.sessions import age

    listed = session.journal.list_sessions(limit=20)
    if listed is None:
        return Result("History is not being saved, so there are no sessions to list.", error=True)
    if not listed:
        return Result("No saved sessions yet.")
    rows = [
        [str(info.id) + (" *" if info.id == session.id else ""), info.title or "", info.model, str(info.turns), age(info.updated_at)]
        for info in listed
    ]
    return Result(text="Resume one with /resume ID.", headers=["id", "title", "model", "turns", "updated"], rows=rows)


@command("resume", args="ID", help="Switch to a saved session.")
def resume_command(session: Session, arg: str) -> Result:
    number = whole_number(arg)
    if number is None or number >= 2**63:  # ids are SQLite integers, which stop at 2**63 - 1
        return Result("Give the id of a session to resume, as /sessions lists them: /resume 12.", error=True)
    session.adopt(Session.load(session.journal, number, client=session.client))
    return Result(f"Resumed session {arg}: {session.title or 'untitled'}.", recap=True)


@command("new", help="Start a new session (the current one stays saved).")
def new_command(session: Session, arg: str) -> Result:
    session.adopt(Session(client=session.client, model=session.model, system=session.system,
                          params=dict(session.params), journal=session.journal.fork()))
    return Result("Started a new session.")


@command("title", args="TEXT", help="Name the session.")
def title_command(session: Session, arg: str) -> Result:
    if not arg:
        return Result(f"Title: {session.title}" if session.title else "This session has no title yet.")
    session.set_title(" ".join(arg.split()))
    return Result(f"Title set to {session.title!r}.")


@command("export", args="PATH", help="Write the session to a .md or .json file.")
def export_command(session: Session, arg: str) -> Result:
    from chatcli.export import write_export

    if not arg:
        return Result("Give a file to export to: /export chat.md or /export chat.json.", error=True)
    if "\x00" in arg:
        return Result("A file name cannot hold a NUL character; give another.", error=True)
    try:
        target = write_export(session, arg)
    except RuntimeError:  # Path.expanduser: ~NAME when there is no user NAME
        return Result(f"There is no home directory for {arg.split('/')[0]!r}; give the full path.", error=True)
    return Result(f"Exported {len(session.turns)} turns to {target}.")


@command("undo", help="Drop the last exchange, from what is sent and from the store.")
def undo_command(session: Session, arg: str) -> Result:
    turn = session.undo()
    if turn is None:
        return Result("Nothing to undo.", error=True)
    return Result("Dropped the last exchange; its message is back at the prompt.", prefill=turn.user)


@command("retry", help="Send the last message again, replacing its reply.")
def retry_command(session: Session, arg: str) -> Result:
    if len(session.turns) <= session.context_start:
        return Result("Nothing to retry.", error=True)
    return Result(retry=True)


@command("copy", args="[N]", help="Copy the last reply, or its Nth code block, to the clipboard (OSC 52).")
def copy_command(session: Session, arg: str) -> Result:
    if arg and whole_number(arg) is None:
        return Result(f"/copy takes the number of a code block in the last reply, as in /copy 2, not {arg!r}.", error=True)
    turn = next((t for t in reversed(session.turns) if t.reply), None)
    if turn is None:
        return Result("There is no reply to copy yet.", error=True)
    if arg:
        blocks, number = code_blocks(turn.reply), int(arg)
        if not blocks:
            return Result("The last reply has no code blocks; /copy alone copies the whole reply.", error=True)
        if not 1 <= number <= len(blocks):
            has = "1 code block" if len(blocks) == 1 else f"{len(blocks)} code blocks"
            return Result(f"The last reply has {has}, numbered from 1, so there is no block {number}.", error=True)
        text, what = blocks[number - 1], f"code block {number} of {len(blocks)} from the last reply"
        if not text:
            return Result(f"Nothing was copied: code block {number} of the last reply is empty.", error=True)
    else:
        text, what = turn.reply, "the last reply"
    size = len(osc52_payload(text))
    if size > OSC52_LIMIT:
        return Result(
            f"Nothing was copied: {what} is {size:,} bytes once encoded for the terminal, and many "
            f"terminals drop a clipboard sequence over {OSC52_LIMIT:,}.",
            error=True,
        )
    cut = {INTERRUPTED: " (it was interrupted, so it is partial)"}.get(
        turn.status, "" if turn.status == COMPLETE else " (it was cut short, so it may be partial)"
    )
    chars = f"{len(text):,} {'character' if len(text) == 1 else 'characters'}"
    return Result(f"Copied {what} ({chars}) to the clipboard{cut}.", clipboard=text)


def _shown(text: str, limit: int = 40) -> str:
    """A user's argument quoted in an error: one line, bounded."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def whole_number(text: str) -> int | None:
    """Digits as a number, or None; int() refuses more than 4,300 digits, and no count or id has that many."""
    if not text.isdecimal():
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _usage_cells(row) -> list[str]:
    u, mark = row.usage, "" if row.exact else "≈"
    return [f"{mark}{u.prompt_tokens:,}", f"{mark}{u.completion_tokens:,}", f"{mark}{u.total_tokens:,}", format_cost(row.cost, exact=row.exact)]


@command("tokens", help="What the next request would carry: system prompt, history, and what fitting leaves out.")
def tokens_command(session: Session, arg: str) -> Result:
    t, model = session.tokenizer, session.model
    plan = session.plan()
    in_context = [turn for turn in session.context_turns if turn.in_context]
    system = t.message(model, "system", session.system) if session.system else None
    sent = in_context[plan.left_out :]
    history = None
    for turn in sent:
        count = t.message(model, "user", turn.user) + t.message(model, "assistant", turn.reply)
        history = count if history is None else history + count
    summary = t.message(model, "system", SUMMARY_HEADING + session.summary) if session.summary else None
    rows = [
        ["system prompt", str(system) if system else "0"],
        ["summary of earlier turns (/compact)", str(summary) if summary else "0"],
        [f"history ({len(sent)} {'turn' if len(sent) == 1 else 'turns'})", str(history) if history else "0"],
        ["left out to fit", f"{plan.left_out} {'turn' if plan.left_out == 1 else 'turns'}"],
        ["next request, before your message", str(plan.tokens)],
        ["kept free for the reply", f"{plan.reserve:,}"],
        ["context window", f"{plan.window:,}"],
    ]
    why = t.problem(model)
    text = f"Counts marked ≈ are estimates: {why}." if why and not plan.tokens.exact else ""
    return Result(text=text, headers=["", "tokens"], rows=rows)


@command("compact", args="[N]", help="Summarise all but the last N turns (default 2) to free the context window.")
def compact_command(session: Session, arg: str) -> Result:
    if arg and whole_number(arg) is None:
        return Result(f"/compact takes how many recent turns to keep, as in /compact 2, not {arg!r}.", error=True)
    from chatcli.compact import compact

    done = compact(session, keep=int(arg) if arg else 2)
    how = f" in {done.requests} requests, as they did not fit one" if done.requests > 1 else ""
    cut = (
        f" ({done.shortened} {'turn was' if done.shortened == 1 else 'turns were'} too long for a request and "
        f"had {'its' if done.shortened == 1 else 'their'} middle cut)" if done.shortened else ""
    )
    warning = f" Note: {done.notice}." if done.notice else ""
    return Result(
        f"Compacted {done.turns} {'turn' if done.turns == 1 else 'turns'}{how}{cut}: the next request carries "
        f"{done.after} tokens instead of {done.before}; the turns stay in the history.{warning}"
    )


@command("reasoning", args="[on|off]", help="Show or hide the reasoning some models stream before the answer.")
def reasoning_command(session: Session, arg: str) -> Result:
    choice = arg.strip().lower()
    if choice not in ("", "on", "off"):
        return Result(f"/reasoning takes on or off, not {arg!r}.", error=True)
    session.show_reasoning = (not session.show_reasoning) if not choice else choice == "on"
    if session.show_reasoning:
        return Result("Reasoning is shown, dimmed, before the answer.")
    return Result("Reasoning is hidden; it is still saved with the reply.")
