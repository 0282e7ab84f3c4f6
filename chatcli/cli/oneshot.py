"""One-shot mode: ask once, stream the reply to stdout, exit with a meaningful code.

The reply goes to stdout and every message about it to stderr, so a pipe
receives exactly the text the model wrote.
"""

from __future__ import annotations

import io
from contextlib import nullcontext
from typing import TYPE_CHECKING

from chatcli.base.env import Env
from chatcli.base.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BadRequest,
    ChatError,
    UsageError,
)
from chatcli.base.events import LogLine
from chatcli.base.log import routed
from chatcli.base.text import json_text, shown
from chatcli.core.session import Session
from chatcli.core.turn import (
    COMPLETE,
    ERROR,
    INTERRUPTED,
    Turn,
    finish_notice,
    left_out_notice,
)
from chatcli.ui.render import MarkdownRenderer, PlainRenderer, make_console
from chatcli.ui.terminal import echo_off
from chatcli.ui.views import show_stats, stats_line

if TYPE_CHECKING:
    from chatcli.cli.schema import Schema, Verdict
    from chatcli.core.turn import Turn


def build_message(words: list[str], env: Env, *, attached: bool = False) -> str:
    """The instruction from the arguments, followed by whatever was piped in.

    With no arguments and a terminal on stdin (`chatcli > answer.txt`), the
    question is read from the terminal until Ctrl-D, as cat would.
    """
    instruction = " ".join(words).strip()
    piped = ""
    if env.stdin is not None and (not env.stdin_isatty or not instruction):  # stdin may be closed (<&-)
        if env.stdin_isatty:
            env.stderr.write("chatcli: type your question, then Ctrl-D on a line of its own to send it.\n")
            env.stderr.flush()
        try:
            piped = env.stdin.read()
            # Python reads stdin with surrogateescape under a C/UTF-8 locale,
            # so undecodable bytes show up here as lone surrogates.
            piped.encode("utf-8")
        except UnicodeError:
            raise UsageError("The piped input is not UTF-8 text; chatcli can only send text.") from None
        if "\x00" in piped:
            raise UsageError("The piped input looks binary (it has NUL bytes); chatcli can only send text.")
    if instruction and piped.strip():
        return f"{instruction}\n\n{piped}"
    text = instruction or piped
    if not text.strip() and not attached:  # files from -f are a message of their own
        raise UsageError('Nothing to send: give a question, as in chatcli "why is the sky blue?", or pipe text in.')
    return text


def run_oneshot(
    session: Session, env: Env, words: list[str], *, markdown: bool, verbose: bool = False, stats: bool = False,
    as_json: bool = False, schema: Schema | None = None,
) -> int:
    """Ask once; with a schema, the reply is held until it is checked, then printed as JSON if it matches."""
    text = build_message(words, env, attached=bool(session.attached))
    quiet = nullcontext()
    held = io.StringIO()
    # A reply that stalls mid-stream is said live on stderr when it is a terminal, never in stdout.
    stalls = env.stderr if env.stderr_isatty else None
    if as_json or schema is not None:
        # The reply goes out once: checked, or inside the JSON.
        renderer = PlainRenderer(held, notices=env.stderr, stalls=stalls)
    elif markdown and env.stdout_isatty:
        console = make_console(env.stdout, color=not env.no_color)
        renderer = MarkdownRenderer(console, show_reasoning=session.show_reasoning)  # says a stall in its live region
        quiet = echo_off(env.stdout)  # an echoed ^C would throw the live region's line count off
    else:
        # With stdout on the terminal too (--plain, NO_COLOR), the notice goes after the reply's text.
        renderer = PlainRenderer(env.stdout, notices=env.stderr, stalls=stalls, after_text=env.stdout_isatty)
    request = None
    if schema is not None:
        from chatcli.base.log import log

        request = {"response_format": schema.response_format()}
        log.info("--schema %s: name %s, strict %s", schema.shown, schema.name,
                 "true" if schema.strict else f"false ({schema.not_strict})")
    try:
        # Plain output: -v lines go through the renderer, which writes them to stderr with the stall
        # notice there erased first.
        logs = routed(lambda line: renderer.handle(LogLine(line))) if isinstance(renderer, PlainRenderer) else nullcontext()
        with quiet, renderer, logs:
            turn = session.send(text, on_event=renderer.handle, request=request)
    except KeyboardInterrupt:  # SIGTERM or SIGHUP: the turn is saved; keep what arrived on stdout too
        if schema is not None and not as_json:
            env.stdout.write(held.getvalue())
        raise
    if stats and isinstance(renderer, MarkdownRenderer):
        show_stats(console, session, turn)
    elif stats and stats_line(session, turn):  # plain output: on stderr, so stdout stays the reply alone
        env.stderr.write(f"chatcli: {stats_line(session, turn)}\n")
        env.stderr.flush()
    verdict = None
    if schema is not None:
        from chatcli.cli.schema import check_reply

        verdict = check_reply(turn.reply, schema)
    if as_json:
        record = as_record(session, turn)
        if verdict is not None:
            record["schema"] = verdict.record()
        env.stdout.write(json_text(record) + "\n")
        env.stdout.flush()
    elif verdict is not None:
        # Matching JSON is printed normalised, on one line (a fence taken off); anything else as it came, filtered.
        env.stdout.write(json_text(verdict.parsed) + "\n" if verdict.valid and turn.status == COMPLETE
                         else held.getvalue())
        env.stdout.flush()
    if schema is not None and isinstance(turn.error, BadRequest):
        turn.error = ChatError(turn.error.message.rstrip(".") + "; the request carried --schema's response_format "
                               "json_schema, which not every server takes, so try without --schema too.")

    return _closing(session, env, turn, verdict, verbose=verbose)


def _closing(session: Session, env: Env, turn: Turn, verdict: Verdict | None, *, verbose: bool) -> int:
    """What to say on stderr once the turn is over, and the exit code it ends with."""

    def say(message: str) -> None:
        env.stderr.write(f"chatcli: {shown(message)}\n")  # each piece is filtered; this is the backstop
        env.stderr.flush()

    session.journal.settle()  # one last try at what a full disk or a lock held back
    warning = session.journal.take_warning()
    if warning:
        say(warning)

    if left_out_notice(turn):
        say(left_out_notice(turn) + ".")
    if turn.notice:
        say(turn.notice + ".")
    why = session.tokenizer.take_problem(session.model) if verbose else None
    if why:
        say(f"token counts are estimates (≈): {why}.")
    if turn.status == COMPLETE:
        if verdict is not None and not verdict.valid:
            say(verdict.problem(turn.finish_reason))
            return EXIT_FAILURE
        if turn.finish_reason == "length" and not turn.reply.strip():  # a script must not take this for an answer
            spent = " on reasoning" if turn.reasoning else ""
            say(f"The model used its whole max_tokens limit{spent} before it wrote any answer; "
                "raise it with --max-tokens (reasoning models need room to think), and ask again.")
            return EXIT_FAILURE
        notice = finish_notice(turn)
        if notice:
            say(notice + ".")
        return EXIT_OK
    if turn.status == INTERRUPTED:
        say("interrupted; the reply above is partial." if turn.reply else "interrupted before the reply began.")
        return EXIT_INTERRUPTED
    if turn.status == ERROR and turn.error is not None:
        say(turn.error.message)
        return turn.error.exit_code
    say("The reply stopped before the server said it was finished, so it may be cut short; try again.")
    return EXIT_FAILURE


def as_record(session: Session, turn: Turn) -> dict:
    """--json: the turn as one object, for scripts (json_text escapes every control character)."""
    row = session.accounts.cost_of(turn)
    usage = None
    if row.usage is not None:
        usage = {"prompt_tokens": row.usage.prompt_tokens, "completion_tokens": row.usage.completion_tokens,
                 "total_tokens": row.usage.total_tokens, "exact": row.exact}
    return {
        "reply": turn.reply,
        "model": turn.model,
        "status": turn.status,
        "finish_reason": turn.finish_reason,
        "usage": usage,
        "cost_usd": row.cost,
        "error": turn.error.message if turn.error is not None else None,
    }
