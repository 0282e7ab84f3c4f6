"""One-shot mode: ask once, stream the reply to stdout, exit with a meaningful code.

The reply goes to stdout and every message about it to stderr, so a pipe
receives exactly the text the model wrote.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING

from chatcli.base.env import Env
from chatcli.base.errors import EXIT_FAILURE, BadRequest, ChatError, UsageError
from chatcli.base.events import LogLine
from chatcli.base.log import log, routed
from chatcli.base.text import json_text, shown
from chatcli.cli.schema import check_reply
from chatcli.core.cache import caching
from chatcli.core.session import Session
from chatcli.core.turn import COMPLETE, Sentence, Turn, outcome_of
from chatcli.ui.terminal import echo_off
from chatcli.ui.views import show_stats, stats_line

if TYPE_CHECKING:
    from chatcli.cli.schema import Schema, Verdict
    from chatcli.ui.output import Output


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
    if not text.strip() and not attached:  # files from -f and images from -i are a message of their own
        raise UsageError('Nothing to send: give a question, as in chatcli "why is the sky blue?", or pipe text in.')
    return text


def run_oneshot(
    session: Session, env: Env, words: list[str], *, output: Output, verbose: bool = False, stats: bool = False,
    as_json: bool = False, schema: Schema | None = None,
) -> int:
    """Ask once, drawing the reply as `output` (make_renderer) says; with a schema, the reply is
    held until it is checked, then printed as JSON if it matches."""
    text = build_message(words, env, attached=bool(session.attached or session.images))
    turn = _ask(session, env, output, text, schema=schema, as_json=as_json)
    if stats:
        _show_stats(session, env, output, turn)
    verdict = None
    if schema is not None and not turn.filtered:  # a withheld reply is not checked, nor its JSON shown
        verdict = check_reply(turn.reply, schema)
    if as_json or verdict is not None:
        _write_held(session, env, output, turn, verdict, as_json=as_json)
    if schema is not None and isinstance(turn.error, BadRequest):
        turn.error = ChatError(turn.error.message.rstrip(".") + "; the request carried --schema's response_format "
                               "json_schema, which not every server takes, so try without --schema too.")

    return _closing(session, env, turn, verdict, verbose=verbose)


def _ask(session: Session, env: Env, output: Output, text: str, *, schema: Schema | None, as_json: bool) -> Turn:
    """Send the message and draw the reply as it streams."""
    renderer = output.renderer(show_reasoning=session.show_reasoning)
    # An echoed ^C would throw the live region's line count off.
    quiet = echo_off(env.stdout) if output.markdown else nullcontext()
    request = None
    if schema is not None:
        request = {"response_format": schema.response_format()}
        log.info("--schema %s: name %s, strict %s", schema.shown, schema.name,
                 "true" if schema.strict else f"false ({schema.not_strict})")
    try:
        # Plain output: -v lines go through the renderer, which writes them to stderr with the stall
        # notice there erased first.
        logs = nullcontext() if output.markdown else routed(lambda line: renderer.handle(LogLine(line)))
        loop = session.toolloop  # with a terminal, a tool call's question is asked with the drawing paused
        with quiet, renderer, logs, loop.asking_with(renderer.paused) if loop is not None else nullcontext():
            return session.send(text, on_event=renderer.handle, request=request)
    except KeyboardInterrupt:  # SIGTERM or SIGHUP: the turn is saved; keep what arrived on stdout too
        if schema is not None and not as_json:
            env.stdout.write(output.held_text())
        raise


def _show_stats(session: Session, env: Env, output: Output, turn: Turn) -> None:
    """The stats line: under a reply drawn as markdown, or on stderr, so stdout stays the reply alone."""
    if output.markdown:
        show_stats(output.console, session, turn)
    elif stats_line(session, turn):
        env.stderr.write(f"chatcli: {stats_line(session, turn)}\n")
        env.stderr.flush()


def _write_held(session: Session, env: Env, output: Output, turn: Turn, verdict: Verdict | None, *,
                as_json: bool) -> None:
    """The reply held back goes out once: inside the JSON (--json), or checked (--schema)."""
    if as_json:
        record = as_record(session, turn)
        if verdict is not None:
            record["schema"] = verdict.record()
        env.stdout.write(json_text(record) + "\n")
    elif verdict is not None:
        # Matching JSON is printed normalised, on one line (a fence taken off); anything else as it came, filtered.
        env.stdout.write(json_text(verdict.parsed) + "\n" if verdict.valid and turn.status == COMPLETE
                         else output.held_text())
    env.stdout.flush()


def _closing(session: Session, env: Env, turn: Turn, verdict: Verdict | None, *, verbose: bool) -> int:
    """What to say on stderr once the turn is over, and the exit code it ends with: the turn's
    Outcome, the same words the REPL shows, unless the reply does not match --schema."""
    session.journal.settle()  # one last try at what a full disk or a lock held back
    warning = session.journal.take_warning()
    if warning:
        _say(env, warning)
    why = session.tokenizer.take_problem(session.model) if verbose else None
    outcome = outcome_of(turn, estimates=why)
    if turn.status == COMPLETE and verdict is not None and not verdict.valid:
        outcome = replace(outcome, end=Sentence(verdict.problem(turn.finish_reason), error=True),
                          exit_code=EXIT_FAILURE)
    for sentence in outcome.sentences:
        _say(env, sentence.line)
    return outcome.exit_code


def _say(env: Env, message: str) -> None:
    env.stderr.write(f"chatcli: {shown(message)}\n")  # each piece is filtered; this is the backstop
    env.stderr.flush()


def as_record(session: Session, turn: Turn) -> dict:
    """--json: the turn as one object, for scripts (json_text escapes every control character)."""
    row = session.accounts.cost_of(turn)
    usage = None
    u = turn.usage if turn.cached else row.usage  # from the cache: the usage the reply had when it was made
    if u is not None:
        # cached_tokens: of prompt_tokens, those the server read from its prompt cache (priced at the
        # cached price); reasoning_tokens: of completion_tokens, those a reasoning model thought in.
        usage = {**u.counts(), "exact": row.exact}
    filtered = {"filtered": turn.filtered} if session.policy.blocklist else {}  # with the content filter on
    # With the response cache on: whether the reply came from it (no request, cost_usd 0, cost_source "cache").
    cached = {"cached": turn.cached} if caching(session.client) else {}
    loop = session.toolloop
    # With tools on: each call the model made, in order (the results themselves are the model's to read).
    calls = {"tool_calls": [dict(step["_shown"]) for step in turn.steps if "_shown" in step]} \
        if loop is not None and loop.box.enabled else {}
    return {
        "reply": None if turn.filtered else turn.reply,
        **filtered,
        "model": turn.model,
        "status": turn.status,
        "finish_reason": turn.finish_reason,
        "usage": usage,
        "cost_usd": row.cost,
        # "provider" (the server's own figure), "list", "estimate" (list prices over our count), "cache", or null
        "cost_source": row.source,
        "error": turn.error.message if turn.error is not None else None,
        **cached,
        **calls,
    }
