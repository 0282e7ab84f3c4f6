"""The conversation itself: /clear, /system, /file, /edit, /undo, /retry, /copy and /compact."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Callable

from chatcli.base.blocks import code_blocks
from chatcli.base.events import Event
from chatcli.base.files import NOT_REGULAR, NOT_TEXT, TOO_BIG, FileRefused, read_text_file
from chatcli.base.parse import whole_number
from chatcli.base.text import OSC52_LIMIT, osc52_payload
from chatcli.commands.registry import UNSET, Result, _shown, command
from chatcli.core.attachments import AttachedFile
from chatcli.core.compact import compact
from chatcli.core.filtered import kept_from_view
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, INTERRUPTED


@command("clear", help="Forget the conversation; keep the system prompt and settings.")
def clear_command(session: Session, arg: str) -> Result:
    """Starts the conversation afresh: earlier turns are no longer sent, though they stay in
    the saved session, and files and images waiting for the next message are dropped. The system
    prompt, the model and the parameters set with /set are kept."""
    count = sum(turn.in_context for turn in session.context_turns)
    waiting = len(session.attached) + len(session.images)
    session.clear()  # and the attachments waiting for the next message
    dropped = f" and dropped {waiting} waiting {'attachment' if waiting == 1 else 'attachments'}" if waiting else ""
    return Result(f"Forgot {count} {'exchange' if count == 1 else 'exchanges'}{dropped}; the system prompt is kept.")


@command("system", args="[text|none]", help="Show the system prompt, set it, or remove it with none (the history is kept).")
def system_command(session: Session, arg: str) -> Result:
    """/system alone shows the system prompt. /system TEXT replaces it for the rest of the
    session; earlier turns stay and are sent with the new prompt. /system none removes it, so
    none is sent and the model's own default applies; /system default (or unset) does the same,
    as /temp default goes back to the server's own temperature. With `redact` on, the prompt is
    scrubbed too."""
    if not arg:
        return Result(f"System prompt: {session.system}" if session.system else "No system prompt is set.")
    if arg.lower() in UNSET:
        had = session.system
        session.set_system(None)
        if not had:
            return Result("No system prompt was set; none is sent.")
        return Result("System prompt removed: none is sent now, so the model's own default applies; the history is kept.")
    redacted = session.set_system(arg)
    said = f" ({redacted})" if redacted is not None else ""
    return Result(f"System prompt set{said}; the history is kept.")


@command("file", args="PATH [PATH...]", help="Attach text files: their names and contents go with your next message.")
def file_command(session: Session, arg: str) -> Result:
    """/file PATH [PATH...] attaches text files: each goes with your next message, under its
    name, in a fence longer than any backtick run inside it. Paths are quoted as in a shell, and ~
    works. Binary or non-UTF-8 files, directories and devices, files over 8 MB, and files too big for
    the model's context window (their size is given in tokens) are refused, and nothing is attached."""

    try:
        paths = shlex.split(arg)
    except ValueError:
        return Result(f"A quote is not closed in {_shown(arg)}; quote file names with spaces.", error=True)
    if not paths:
        return Result("Give a file to attach: /file notes.md (more than one: /file a.py b.py).", error=True)
    pieces = []
    for name in paths:
        try:
            text = read_text_file(str(Path(name).expanduser()))
        except RuntimeError as exc:  # ~nosuchuser
            return Result(f"Could not read {name} ({exc}); nothing was attached.", error=True)
        except FileRefused as refused:
            return Result(f"{_refusal(name, refused)}; nothing was attached.", error=True)
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
        pieces.append(AttachedFile(f"File {name}:\n{fence}\n{text.rstrip()}\n{fence}", name=name))
    plan = session.plan("\n\n".join(pieces))  # with what already waits
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


def _refusal(name: str, refused: FileRefused) -> str:
    """Why /file did not attach a file, as the start of a sentence."""
    if refused.why == NOT_REGULAR:  # a directory, a device (/dev/zero never ends), a pipe
        return f"{name} is not a regular file"
    if refused.why == TOO_BIG:
        return f"{name} is {refused.size / 1e6:.0f} MB, more than any context window holds"
    if refused.why == NOT_TEXT and refused.image:
        return f"{name} is an image, not a text file; attach it with /image (or -i)"
    if refused.why == NOT_TEXT:
        return f"{name} is not a text file (it is binary or not UTF-8)"
    return f"Could not read {name} ({refused.reason})"


@command("edit", args="[text]", help="Write a message in $EDITOR (Ctrl-X Ctrl-E does it for what is typed); it comes back to the prompt.")
def edit_command(session: Session, arg: str) -> Result:
    """Opens $VISUAL (or $EDITOR, or vi) on a new message, starting from TEXT if given.
    When the editor exits, what you wrote comes back to the prompt to be read over and sent with
    Enter. Ctrl-X Ctrl-E does the same for what is already typed."""
    return Result(edit=arg)  # the REPL opens the editor: a command never touches the terminal


@command("undo", help="Drop the last exchange, from what is sent and from the store.")
def undo_command(session: Session, arg: str) -> Result:
    """Drops the last exchange, your message and its reply, from what is sent and from the
    saved session; the message (with its images) comes back to the prompt to be changed and sent again. Its tokens
    still count in /usage, since they were billed."""
    turn = session.undo()
    if turn is None:
        return Result("Nothing to undo.", error=True)
    if not turn.images:
        return Result("Dropped the last exchange; its message is back at the prompt.", prefill=turn.user)
    session.images = [*turn.images, *session.images]  # they go with the message again, as chips show
    n = len(turn.images)
    waits = "image waits" if n == 1 else f"{n} images wait"
    return Result(f"Dropped the last exchange; its message is back at the prompt, and its {waits} to go with it "
                  "(/clear drops it).", prefill=turn.user)


@command("retry", help="Send the last message again, replacing its reply.")
def retry_command(session: Session, arg: str) -> Result:
    """Sends your last message again, replacing its reply, for a reply that failed, broke
    off or that you want another go at. The old reply's tokens still count in /usage."""
    if len(session.turns) <= session.context_start:
        return Result("Nothing to retry.", error=True)
    return Result(retry=True)


@command("copy", args="[N]", help="Copy the last reply, or its Nth code block, to the clipboard (OSC 52).")
def copy_command(session: Session, arg: str) -> Result:
    """/copy puts the last reply on the clipboard, /copy N its Nth code block (without the
    fence lines). It uses an OSC 52 escape sequence, so it reaches the clipboard of the terminal you
    are looking at, over SSH too; inside tmux 3.3 or later, set set-clipboard on."""
    if arg and whole_number(arg) is None:
        return Result(f"/copy takes the number of a code block in the last reply, as in /copy 2, not {arg!r}.", error=True)
    turn = next((t for t in reversed(session.turns) if t.reply), None)
    if turn is None:
        return Result("There is no reply to copy yet.", error=True)
    if kept_from_view(turn, session.policy):
        return Result("Nothing was copied: the last reply was withheld, as it contains a blocked word "
                      "(set show_filtered = true in the config to allow it).", error=True)
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


@command("compact", args="[N]", help="Summarise all but the last N turns (default 2) to free the context window.",
         hears=True)
def compact_command(session: Session, arg: str, *, on_event: Callable[[Event], None] | None = None) -> Result:
    """/compact [N] has the model summarise all but the last N turns (default 2); the
    summary is then sent in their place, which frees the context window. The turns themselves stay
    in the saved session. The summary costs one request, counted in /usage."""
    if arg and whole_number(arg) is None:
        return Result(f"/compact takes how many recent turns to keep, as in /compact 2, not {arg!r}.", error=True)

    done = compact(session, keep=int(arg) if arg else 2, on_event=on_event)
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
