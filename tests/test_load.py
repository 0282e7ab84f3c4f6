"""Load: fifty one-shot asks at once, against a server that throws in random 429s and 500s.

The fifty are real processes, each with its own connection to the one
sessions database, running at the same time. To keep the suite quick they
are forked from one process that has already imported chatcli and openai,
instead of each paying for a Python start and that import.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_FAILURE, EXIT_OK
from tests.support.server import ChatServer, Echo, Error

pytestmark = pytest.mark.timeout(600)  # it may first wait for the real-server suite (both_cores)

RUNS = 50
RETRIES = 2

# Fork RUNS children, each running `chatcli QUESTION` with its own stdout and stderr files,
# all released at once; print each one's exit code as JSON.
FORKER = r"""
import json, os, sys
import chatcli.cli.main, chatcli.llm.client, chatcli.core.session, chatcli.core.journal, chatcli.cli.oneshot, openai  # imported once, shared
runs, out = int(sys.argv[1]), sys.argv[2]
go_r, go_w = os.pipe()
children = {}
for i in range(runs):
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.read(go_r, 1)  # wait until every child exists, then all start together
        stdin = os.open(os.devnull, os.O_RDONLY)
        stdout = os.open(f"{out}/{i}.out", os.O_WRONLY | os.O_CREAT)
        stderr = os.open(f"{out}/{i}.err", os.O_WRONLY | os.O_CREAT)
        for fd, to in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, to)
        try:
            code = chatcli.cli.main.main([f"question number {i}"])
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            import traceback; traceback.print_exc(); code = 99
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 98)
    children[pid] = i
os.close(go_r)
os.write(go_w, b"x" * runs)
codes = {}
while children:
    pid, status = os.wait()
    codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps(codes))
"""

RETRY = re.compile(r"^chatcli: (rate limited|the server failed \(HTTP 500\)), retrying in \d+\.\ds \(attempt [12]/2\)\.$")


def test_fifty_concurrent_asks_under_random_faults_each_end_correctly(
    both_cores: None, srv: ChatServer, chat_env: dict[str, str], isolated_env: Path, tmp_path: Path
) -> None:
    rng = random.Random(20261125)
    faults = [Error(429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after-ms": "50"}),
              Error(500, "boom", headers={"retry-after-ms": "20"})]
    # About 45% of requests fail: most asks retry, and a few fail three times in a row and give up.
    script = [rng.choice(faults) if rng.random() < 0.45 else Echo() for _ in range(RUNS * (RETRIES + 1))]
    srv.script(*script)
    out = tmp_path / "runs"
    out.mkdir()
    env = {**chat_env, "CHATCLI_MAX_RETRIES": str(RETRIES)}

    done = subprocess.run([sys.executable, "-c", FORKER, str(RUNS), str(out)], env=env, capture_output=True,
                          text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    codes = {int(k): v for k, v in json.loads(done.stdout).items()}
    assert sorted(codes) == list(range(RUNS))

    tries: dict[str, int] = {}
    for request in srv.chat_requests:
        question = request.body["messages"][-1]["content"]
        tries[question] = tries.get(question, 0) + 1
    failed = 0
    for i, code in codes.items():
        stdout, stderr = (out / f"{i}.out").read_text(), (out / f"{i}.err").read_text()
        *retries, last = stderr.splitlines() or [""]
        assert all(RETRY.match(line) for line in retries), stderr
        question = f"question number {i}"
        if code == EXIT_OK:
            assert stdout == f"echo: {question}\n", (i, stdout, stderr)
            assert RETRY.match(last) or last == "", stderr  # only retry notices, nothing else
            assert 1 <= tries[question] <= RETRIES + 1
        else:
            failed += 1
            # Gave up after exactly the configured tries, with one sentence, and printed nothing.
            assert code == EXIT_FAILURE, (i, code, stderr)
            assert stdout == ""
            assert re.match(r"^chatcli: The server (is rate limiting requests \(429\)|failed \(HTTP 500\)) even after "
                            r"2 retries; ", last), stderr
            assert tries[question] == RETRIES + 1 and len(retries) == RETRIES
    assert len(srv.chat_requests) == sum(tries.values())
    assert sum(tries.values()) > RUNS  # the faults were met, and retried

    # The sessions store holds every run's question, each in a session of its own.
    with closing(sqlite3.connect(isolated_env / "data" / "chatcli" / "chatcli.db")) as db:
        questions = sorted(q for (q,) in db.execute("SELECT content FROM messages WHERE role = 'user'"))
        sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        replies = db.execute("SELECT COUNT(*) FROM messages WHERE role = 'assistant' AND status = 'complete'").fetchone()[0]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert questions == sorted(f"question number {i}" for i in range(RUNS))
    assert sessions == RUNS
    assert replies == RUNS - failed
