"""A stand-in for `chatcli batch ...` until cli/batch.py is joined with cli/batch_api.py: the Batch API
actions (status, wait, fetch, cancel, list, retry) and a submit, for tests that need a process of their own.

    python -m tests.support.batch_cli submit prompts.txt [--wait] [--output FILE] [--split N]
    python -m tests.support.batch_cli wait 1
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from chatcli.base.env import Env
from chatcli.base.errors import EXIT_INTERRUPTED, ChatError
from chatcli.base.text import shown
from chatcli.cli.flags import Parser


def run(argv: Sequence[str], env: Env) -> int:
    """One action, with the config from env (as `chatcli batch` would load it)."""
    from chatcli.batch.api import Limits
    from chatcli.batch.inputs import read_rows
    from chatcli.batch.requests import Spec
    from chatcli.cli import batch_api
    from chatcli.config.settings import load_config

    parser = Parser(prog="chatcli batch")
    parser.add_argument("--db")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    batch_api.add_api_actions(sub)
    p = sub.add_parser("submit")
    p.add_argument("input")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--output")
    p.add_argument("--split", type=int, help="at most this many requests a file")
    args = parser.parse_args(list(argv))
    try:
        config = load_config(env, flags={"db": args.db})
        if args.action != "submit":
            return batch_api.ACTIONS[args.action](args, env, config)
        rows = read_rows(Path(args.input))
        limits = Limits(requests=args.split) if args.split else None
        return batch_api.submit(env, config, rows=rows, spec=Spec(model=config.model), input_name=args.input,
                                wait=args.wait, output=args.output, limits=limits)
    except ChatError as exc:
        env.stderr.write(f"chatcli: {shown(exc.message)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], Env.from_process()))
