"""Batch benchmark: `chatcli batch run --via local` on 1,000 rows at -j 1, 4 and 16, against a bare
asyncio openai loop at the same concurrency.

Run: python tests/benchmarks/batch_local.py [--rows 1000] [--jobs 1,4,16] [--runs 3]

Both ask tests/support/server.py, in a process of its own, for the same streamed echo replies
(a prompt of a few words, its echo in 4-character chunks, no delay), so the server's own time is
as small as it gets and what is left is the client's. chatcli runs as users run it: the
installed script, a database of its own for each run (so no row is skipped as done), results
to a file; its time includes its start (Python, openai, the config) and committing each row with
its ledger entry as it finishes. The baselines are a script that sends the same requests with
openai.AsyncOpenAI, N at a time (an asyncio.Semaphore), keeps each reply's text and writes
nothing: "stream" streams them as chatcli does (the same wire, the same work for the server),
"plain" asks for whole completions (the least work for a client, and less for the server). It
runs as a process too, so each pays a Python start and the openai import.

All rows are measured in the same run, interleaved, and the table quotes medians and ratios,
because a shared machine is noisy. The overhead per row is (chatcli's time - the baseline's)
/ rows; each one's start is measured with a one-row batch, so the table also shows the overhead
per row past the start: ((chatcli - its 1-row time) - (baseline - its 1-row time)) / rows. CPU is user + sys of the measured process alone (os.wait4).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from isolated import isolated_env  # tests/benchmarks/isolated.py, beside this script

ROOT = Path(__file__).resolve().parents[2]
CHATCLI = Path(sys.executable).with_name("chatcli")
MODEL = "gpt-4o-mini"
KINDS = ("stream", "plain")  # the baselines: streamed as chatcli asks, and whole completions (the least work)

SERVE = """
import sys, time
from tests.support.server import ChatServer, Echo
server = ChatServer(port=int(sys.argv[1])).start()
server.default = Echo(delay=0.0)
print(f"serving on {server.base_url};", flush=True)
while True:
    time.sleep(3600)
"""

BASELINE = """
import asyncio, sys
import openai

base_url, path, jobs, streamed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "stream"
prompts = [line for line in open(path, encoding="utf-8").read().splitlines() if line.strip()]

async def main():
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench")
    gate = asyncio.Semaphore(jobs)

    async def ask(prompt):
        async with gate:
            messages = [{"role": "user", "content": prompt}]
            if not streamed:
                completion = await client.chat.completions.create(model="%s", messages=messages)
                return completion.choices[0].message.content
            stream = await client.chat.completions.create(
                model="%s", messages=messages, stream=True, stream_options={"include_usage": True})
            text = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
            return "".join(text)

    replies = await asyncio.gather(*(ask(p) for p in prompts))
    assert replies == ["echo: " + p for p in prompts], "a reply did not come back whole"

asyncio.run(main())
""" % (MODEL, MODEL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(free_port())], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("serving on "):
        process.kill()
        raise RuntimeError(f"tests.support.server did not start: {line!r}")
    return process, line.split()[2].rstrip(";")


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float  # user + sys of the process alone


def measured(argv: list[str], env: dict[str, str], cwd: str) -> Sample:
    """Run argv to its end; its wall time and its own CPU, read from wait4 when it is reaped."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.stderr.close() if process.stderr else None
    if process.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} exited with {process.returncode}: {stderr[-500:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime)


def chatcli_run(home: str, env: dict[str, str], prompts: Path, jobs: int, run: int) -> Sample:
    db = Path(home) / f"run-{run}.db"
    out = Path(home) / f"out-{run}.jsonl"
    sample = measured([str(CHATCLI), "batch", "run", str(prompts), "--via", "local", "-j", str(jobs), "-m", MODEL,
                       "--db", str(db), "--output", str(out)], env, home)
    lines = out.read_text().splitlines()
    rows = sum(1 for line in prompts.read_text().splitlines() if line.strip())
    if len(lines) != rows or any('"status": "ok"' not in line for line in lines):
        raise RuntimeError(f"chatcli wrote {len(lines)} result lines for {rows} rows, or not all ok")
    db.unlink()
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--jobs", default="1,4,16", help="the -j values, separated by commas")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    levels = [int(j) for j in args.jobs.split(",")]

    home = tempfile.mkdtemp(prefix="chatcli-bench-")
    prompts = Path(home) / "prompts.txt"
    prompts.write_text("".join(f"question number {n} about batches\n" for n in range(args.rows)))
    one = Path(home) / "one.txt"
    one.write_text("question number 0 about batches\n")
    server, base_url = start_server()
    env = isolated_env(home, OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=base_url)
    counter = iter(range(1_000_000))
    chatcli: dict[int, list[Sample]] = {j: [] for j in levels}
    bare: dict[tuple[str, int], list[Sample]] = {(kind, j): [] for kind in KINDS for j in levels}
    start: list[Sample] = []  # chatcli on a 1-row batch: its start, and one row
    bare_start: dict[str, list[Sample]] = {kind: [] for kind in KINDS}  # each baseline on the same row

    def baseline(kind: str, path: Path, jobs: int) -> Sample:
        return measured([sys.executable, "-c", BASELINE, base_url, str(path), str(jobs), kind], env, home)

    try:
        for _ in range(args.runs):  # interleaved, so drift in the machine's load hits every row alike
            start.append(chatcli_run(home, env, one, 1, next(counter)))
            for kind in KINDS:
                bare_start[kind].append(baseline(kind, one, 1))
            for jobs in levels:
                chatcli[jobs].append(chatcli_run(home, env, prompts, jobs, next(counter)))
                for kind in KINDS:
                    bare[kind, jobs].append(baseline(kind, prompts, jobs))
    finally:
        server.terminate()
        server.wait(timeout=10)

    def median(samples: list[Sample], what: str = "wall") -> float:
        return statistics.median(getattr(s, what) for s in samples)

    rows = args.rows
    started = median(start)
    print(f"batch run --via local, {rows:,} rows, median of {args.runs} runs (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores); a 1-row batch: chatcli {started:.2f}s, "
          + ", ".join(f"asyncio {kind} {median(bare_start[kind]):.2f}s" for kind in KINDS))
    print(f"{'-j':>3} {'client':<16} {'wall s':>7} {'rows/s':>7} {'chatcli/it':>10} {'overhead/row':>13} "
          f"{'past start':>11} {'cpu/row':>8}")
    for jobs in levels:
        ours = median(chatcli[jobs])
        print(f"{jobs:>3} {'chatcli':<16} {ours:>7.2f} {rows / ours:>7.0f} {'':>10} {'':>13} {'':>11} "
              f"{median(chatcli[jobs], 'cpu') / rows * 1000:>5.2f} ms")
        for kind in KINDS:
            theirs = median(bare[kind, jobs])
            past = ((ours - started) - (theirs - median(bare_start[kind]))) / rows * 1000
            print(f"{'':>3} {'asyncio ' + kind:<16} {theirs:>7.2f} {rows / theirs:>7.0f} {ours / theirs:>9.2f}x "
                  f"{(ours - theirs) / rows * 1000:>10.2f} ms {past:>8.2f} ms "
                  f"{median(bare[kind, jobs], 'cpu') / rows * 1000:>5.2f} ms")


if __name__ == "__main__":
    main()
