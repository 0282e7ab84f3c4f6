"""Saved sessions and what they cost: /sessions, /resume, /new, /title, /export, /usage and /tokens."""

from __future__ import annotations

from chatcli.app import new_conversation, resume
from chatcli.base.errors import UsageError
from chatcli.base.format import age, format_cost
from chatcli.base.parse import MAX_ID, whole_number
from chatcli.commands.registry import Result, command
from chatcli.core.export import write_export
from chatcli.core.session import Session
from chatcli.core.toolloop import schema_tokens, steps_tokens
from chatcli.core.turn import ERROR, PENDING, SUMMARY_HEADING
from chatcli.llm.tokens import margin, text_of


@command("usage", help="Tokens and estimated cost, per turn and for the session.")
def usage_command(session: Session, arg: str) -> Result:
    """A table of each turn's prompt, completion and total tokens, as the server reported
    them (with the prompt tokens it read from its cache, priced at the cached price, and a reasoning
    model's reasoning tokens, where it reports them), with the cost the provider reported (OpenRouter's)
    or else from the price table, and the session's total. A model with no known price
    shows "cost unknown"; a cost is never made up. Tokens spent on undone or replaced turns count.
    Where the server's responses state its rate limits, the latest figures follow."""
    turns, total = session.accounts.accounting()
    limits = session.rate_limits
    said = f"\nRate limits: {limits.summary()}." if limits is not None else ""
    if not turns:
        return Result("No turns yet." + said)
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
    billed = [r.usage for r in [*turns, *session.spent_elsewhere] if r.usage is not None]
    where = ("the provider's own, where it reported it; else list prices" if any(u.cost is not None for u in billed)
             else "list prices")
    return Result(
        text=f"Tokens as reported by the server; cost from {where}." + estimated + said,
        headers=["turn", "model", "prompt", "completion", "total", "cost"],
        rows=rows,
    )


@command("sessions", help="List recent saved sessions.")
def sessions_command(session: Session, arg: str) -> Result:
    """Lists the most recent saved sessions: id, title, model, turns and when last updated. /resume ID
    switches to one; `chatcli sessions` on the command line searches, exports and deletes them."""

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
    """/resume ID switches to a saved session (ids as /sessions lists them): its history,
    system prompt, model and parameters, and the profile it was held with, so it goes on on the
    same server. The current session stays saved."""
    number = whole_number(arg)
    if number is None or number > MAX_ID:  # ids are SQLite integers
        return Result("Give the id of a session to resume, as /sessions lists them: /resume 12.", error=True)

    resume(session, number)  # or one sentence (no such session, its profile unusable), and no change
    return Result(f"Resumed session {arg}: {session.title or 'untitled'}.", recap=True)


@command("new", help="Start a new session (the current one stays saved).")
def new_command(session: Session, arg: str) -> Result:
    """Starts a new, empty session with the same model, system prompt and parameters; the
    current one stays saved and can be had back with /resume. Files and images waiting for the
    next message are dropped."""

    new_conversation(session)
    waiting = session.drop_attachments()
    dropped = f"; dropped {waiting} waiting {'attachment' if waiting == 1 else 'attachments'}" if waiting else ""
    return Result(f"Started a new session{dropped}.")


@command("title", args="TEXT", help="Name the session.")
def title_command(session: Session, arg: str) -> Result:
    """/title TEXT names the session, as /sessions and `chatcli sessions list` show it.
    A session is otherwise named after its first message."""
    if not arg:
        return Result(f"Title: {session.title}" if session.title else "This session has no title yet.")
    session.set_title(" ".join(arg.split()))
    return Result(f"Title set to {session.title!r}.")


@command("export", args="PATH", help="Write the session to a .md or .json file.")
def export_command(session: Session, arg: str) -> Result:
    """/export PATH writes the session to a file: Markdown for .md, JSON for .json
    (messages, model, parameters and usage). ~ works. The API key is never in an export."""

    if not arg:
        return Result("Give a file to export to: /export chat.md or /export chat.json.", error=True)
    if "\x00" in arg:
        return Result("A file name cannot hold a NUL character; give another.", error=True)
    try:
        target = write_export(session, arg)
    except UsageError as exc:  # ~NAME when there is no user NAME
        return Result(exc.message, error=True)
    return Result(f"Exported {len(session.turns)} turns to {target}.")


def _usage_cells(row) -> list[str]:
    """Prompt, completion and total tokens and the cost; of the prompt, what the server read from its
    cache (priced at the cached price), and of the completion, what a reasoning model thought in."""
    u, mark = row.usage, "" if row.exact else "≈"
    cached = f" ({u.cached_tokens:,} cached)" if u.cached_tokens else ""
    reasoning = f" ({u.reasoning_tokens:,} reasoning)" if u.reasoning_tokens else ""
    return [f"{mark}{u.prompt_tokens:,}{cached}", f"{mark}{u.completion_tokens:,}{reasoning}", f"{mark}{u.total_tokens:,}",
            format_cost(row.cost, exact=row.exact)]


@command("tokens", help="What the next request would carry: system prompt, history, and what fitting leaves out.")
def tokens_command(session: Session, arg: str) -> Result:
    """What the next request would carry, in tokens: the system prompt, the summary from
    /compact, the history, and what fitting into the context window leaves out. Counts are exact
    where tiktoken's encoding is at hand, and marked ≈ where they are estimates. Images count by
    OpenAI's tile formula for its models, and as an estimate (≈) for others and for URLs."""
    t, model = session.tokenizer, session.model
    session.settle(wait=2.0)  # the server's window, if it is still being asked
    if t.counts_on_server(model):  # llama.cpp counts with the model's own tokenizer
        t.count_on_server(model, [text_of(m["content"]) for m in session.messages()])
    plan = session.plan()
    in_context = [turn for turn in session.context_turns if turn.in_context]
    system = t.message(model, "system", session.system) if session.system else None
    sent = in_context[plan.left_out :]
    history = None
    for turn in sent:
        count = sum(steps_tokens(t, model, turn), t.message(model, "user", turn.user) + t.message(model, "assistant", turn.reply))
        count = count + session.image_tokens(turn.images) if turn.images else count  # type: ignore[operator]
        history = count if history is None else history + count
    pictures = [image for turn in sent for image in turn.images]
    in_history = session.image_tokens(pictures)
    waiting = session.image_tokens(session.images)
    files = t.message(model, "user", "\n\n".join(session.attached)) if session.attached else None
    summary = t.message(model, "system", SUMMARY_HEADING + session.summary) if session.summary else None
    tools = schema_tokens(t, model, session.toolloop)  # the enabled tools' schemas, on a line of their own
    rows = [
        ["system prompt", str(system) if system else "0"],
        ["summary of earlier turns (/compact)", str(summary) if summary else "0"],
        [f"history ({len(sent)} {'turn' if len(sent) == 1 else 'turns'})", str(history) if history else "0"],
        [f"of which images ({len(pictures)})", str(in_history) if in_history else "0"],
        [f"waiting: {len(session.attached)} {'file' if len(session.attached) == 1 else 'files'} (/file)",
         str(files) if files else "0"],
        [f"waiting: {len(session.images)} {'image' if len(session.images) == 1 else 'images'} (/image, /paste)",
         str(waiting) if waiting else "0"],
        *([["tool schemas (each request)", str(tools)]] if tools is not None else []),
        ["left out to fit", f"{plan.left_out} {'turn' if plan.left_out == 1 else 'turns'}"],
        ["next request, before your message", str(plan.tokens)],  # what waits included
        ["kept free for the reply", f"{plan.reserve:,}"],
        ["context window", f"{plan.window:,} ({t.window(model).source})"],
    ]
    if not plan.tokens.exact:
        rows.insert(-1, ["kept free for estimates' errors", f"{margin(plan.window):,}"])
        if (factor := t.factor(model)) is not None:
            rows.append(["estimates corrected by", f"×{factor:.2f}, from the server's counts of earlier turns"])
    why = t.problem(model)
    text = f"Counts marked ≈ are estimates: {why}." if why and not plan.tokens.exact else ""
    return Result(text=text, headers=["", "tokens"], rows=rows)
