"""The question before a tool with side effects runs: the exact command, and one key to answer.

sgpt and oterm ran the model's shell commands unasked; here the user sees what would run, as
it is, and answers [y]es, [n]o, [e]dit or [a]lways (this exact command, for the session).
"Exact" matters: a carriage return or an escape sequence in a command could draw over the
part that deletes files, so every control character is shown as <U+000D>, and invisible or
reordering characters too (base/text), never obeyed or dropped. Ctrl-C answers no.

ui/ may not import tools/, so this takes plain values and returns base-level answers; the
REPL's approver (cli/repl.py) calls it with what the Toolbox asks about.
"""

from __future__ import annotations

import re
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import FormattedTextControl, Layout, Window
from prompt_toolkit.output import Output
from prompt_toolkit.shortcuts import print_formatted_text

from chatcli.base.approval import Approval
from chatcli.base.events import ToolCall
from chatcli.base.pii import hide_known
from chatcli.base.secrets import known_secrets
from chatcli.base.text import strip_controls, visible

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def exactly(text: str) -> str:
    """Text as it is, made safe to show: controls spelled out (<U+001B>), not removed, so what
    the user approves is what runs; then the terminal gate, which spells out invisible characters.
    A configured secret (the API key) is shown as ***, as everywhere: never printed."""
    return strip_controls(hide_known(_CONTROL.sub(lambda m: visible(m[0]), text), known_secrets()))


def ask_approval(call: ToolCall, tool_name: str, arguments: dict[str, Any], *, shows: str, editable: str | None,
                 input: Input | None = None, output: Output | None = None) -> Approval:
    """Asks whether to run one call; [e]dit (when `editable` is the command) edits it on a
    prompt line and asks again. `input` and `output` are for tests (a pipe, DummyOutput)."""
    command = editable
    while True:
        shown = exactly(command) if command is not None else exactly(shows)
        answer = _one_key(_question(tool_name, shown, editable=command is not None), editable=command is not None,
                          input=input, output=output)
        if answer == "edit":
            command = _edited(command or "", input=input, output=output)
            continue
        _say({"yes": "yes", "no": "no", "always": "yes, and always for this session"}[answer], output)
        if answer != "no" and command is not None and command != editable:
            key = next((k for k, v in arguments.items() if v == editable), "command")
            return Approval(answer, {**arguments, key: command})
        return Approval(answer)


def _question(tool_name: str, shown: str, *, editable: bool) -> FormattedText:
    what = "wants to run" if editable else "wants to run with"
    always = "this exact command" if editable else "this tool with these arguments"
    edit = "[e]dit / " if editable else ""
    lines = "\n".join("    " + line for line in (shown.splitlines() or [""]))
    return FormattedText([
        ("bold", f"⚙ {exactly(tool_name)}"), ("", f" {what}:\n"),
        ("bold", lines), ("", "\n"),
        ("", f"  [y]es / [n]o / {edit}[a]lways {always} for the session? "),
    ])


def _one_key(question: FormattedText, *, editable: bool, input: Input | None, output: Output | None) -> str:
    """The answer as one key: y, n, a (and e when editable); Ctrl-C, Ctrl-D and Esc are no."""
    keys = KeyBindings()
    answers = {"y": "yes", "Y": "yes", "n": "no", "N": "no", "a": "always", "A": "always",
               "c-c": "no", "c-d": "no", "escape": "no"}
    if editable:
        answers.update(e="edit", E="edit")
    for key, answer in answers.items():
        def answered(event: KeyPressEvent, answer: str = answer) -> None:
            event.app.exit(result=answer)
        keys.add(key, eager=True)(answered)

    @keys.add("<any>")
    def ignored(event: KeyPressEvent) -> None:
        """Any other key: the question stays."""

    app: Application[str] = Application(
        layout=Layout(Window(FormattedTextControl(question, show_cursor=True), dont_extend_height=True, wrap_lines=True)),
        key_bindings=keys, input=input, output=output, full_screen=False, erase_when_done=False,
    )
    try:
        return app.run() or "no"
    except (KeyboardInterrupt, EOFError):
        return "no"


def _edited(command: str, *, input: Input | None, output: Output | None) -> str:
    """The command after the user edited it; unchanged when they cancel (Ctrl-C) or empty it."""
    session: PromptSession[str] = PromptSession(input=input, output=output)
    try:
        text = session.prompt("  command: ", default=command)
    except (KeyboardInterrupt, EOFError):
        return command
    return text if text.strip() else command


def _say(answer: str, output: Output | None) -> None:
    print_formatted_text(FormattedText([("italic", f"  → {answer}")]), output=output)
