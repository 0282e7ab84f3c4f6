"""What the command line puts with the first message or turns on before it: an image from
stdin (-i -), -f, -i and -o done as the slash commands do them, and the tools (--tools, --yes)."""

from __future__ import annotations

import argparse

from chatcli.base.errors import UsageError
from chatcli.base.text import shown


def equip_tools(session, config, env, *, yes: bool, terminal: bool, repl: bool = False) -> None:
    """The tools the config turns on, with who says yes to what asks: --yes, the terminal, or no one (a pipe).
    News of an MCP server (it could not start, it stopped) goes to stderr at once, or in the REPL
    waits for the prompt's next turn (the REPL says it then), so it never cuts into the prompt."""
    from chatcli.app import equip_tools  # lazy: off the path of chatcli --help
    from chatcli.cli.repl import terminal_approver  # lazy: off the path of chatcli --help
    from chatcli.tools.base import Approval  # lazy: off the path of chatcli --help

    approver = (lambda call, tool, arguments: Approval("yes")) if yes else terminal_approver() if terminal else None

    def say(sentence: str) -> None:  # an MCP server that cannot start or stops (from its thread)
        env.stderr.write(f"chatcli: {shown(sentence)}\n")
        env.stderr.flush()

    for problem in equip_tools(session, config, approver, say=None if repl else say):
        env.stderr.write(f"chatcli: {shown(problem)}\n")
    box = session.toolloop.box if session.toolloop is not None else None
    mcp = {name for name in box.wanted if "." in name} if box is not None else set()  # its tools ask
    if yes and box is not None and (box.enabled or mcp):
        asking = [n for n in sorted(box.enabled | mcp) if n in mcp or box.asks(box.tools[n])]
        named = f" ({', '.join(asking)})" if asking else ""
        env.stderr.write(f"chatcli: --yes: tool calls that would ask{named} run without asking.\n")


def image_from_stdin(session, env):
    """-i -: the image's bytes from stdin, checked as /image checks a file; the env returned has
    no stdin left to read the question from."""
    from dataclasses import replace  # lazy: off the path of chatcli --help

    from chatcli.base.images import ImageRefused, image_of_bytes  # lazy: off the path of chatcli --help

    stream = getattr(env.stdin, "buffer", None)
    if stream is None or env.stdin_isatty:
        what = "a terminal" if env.stdin_isatty else "closed"
        raise UsageError(f"-i - reads an image from stdin, but stdin is {what}; pipe the image in, as in "
                         "chatcli -i - \"what is this?\" < shot.png.")
    limit = session.policy.image_max_mb
    try:
        image = image_of_bytes("stdin", stream.read(int(limit * 1_000_000) + 1), max_mb=limit)
    except ImageRefused as exc:
        raise UsageError(f"-i -: {exc}; nothing was sent.") from None
    session.images.append(image)
    return replace(env, stdin=None, stdin_isatty=False)


def as_commands(session, args: argparse.Namespace) -> list[str]:
    """-o NAME VALUE and -f PATH, done as /set and /file do them: the same checks, the same words.

    A bad one is a bad command line (exit 2), said before anything is sent."""
    import shlex  # lazy: off the path of chatcli --help

    lines = [f"/set {name} {value}" for name, value in args.option or ()]
    if args.file:
        lines.append("/file " + shlex.join(args.file))
    named = [name for name in args.image or () if name != "-"]
    if named:
        lines.append("/image " + shlex.join(named))
    if not lines:
        return []
    from chatcli.commands import REGISTRY  # lazy: off the path of chatcli --help

    said = []
    for line in lines:
        result = REGISTRY.dispatch(session, line)
        if result.error:
            flag = {"/set": "-o", "/file": "-f", "/image": "-i"}[line.split(" ", 1)[0]]
            raise UsageError(f"{flag}: {result.text}")
        said.append(result.text)
    return said
