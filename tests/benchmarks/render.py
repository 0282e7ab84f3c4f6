"""Render benchmark: CPU of chatcli streaming a markdown reply into a pty, against a bare SDK loop.

Run: python tests/benchmarks/render.py [--runs N] [--sizes 12.5,25,50,100] [--large 1,3,10] [--table 2]
                                       [--quick] [--samples] [--save DIR]

Each case streams a deterministic markdown reply (headings, emphasis, inline
code, links, nested lists, tables, quotes, fenced code) from tests/support/server.py
in 4-character deltas, into `chatcli "go"` running in a 120x40 pty, where
chatcli renders markdown live. The sizes are KiB (12.5 is 12,800 bytes). The
unpaced cases send deltas at full speed; the paced case sends 50 KiB at 2 ms
per delta, as a fast model would.

The large cases are where markdown stops helping: a reply that is one line
of 1, 3 and 10 MiB (words with inline markup, no newline), and a markdown
table of 2 MiB (about 47,000 rows). They stream in 256-character deltas (4
would make the 10 MiB case take minutes in the SDK alone), and chatcli draws
them as plain text past its limits, saying so once. Their baseline is
chatcli on the same reply with its stdout on /dev/null (plain text, the
stall notice on the pty's stderr): the same process, streaming and saving
alike, but for drawing, so the ratio is what drawing costs. (The SDK loop
takes minutes on 10 MiB; so does `--plain` on a terminal, for now.)

The figures are CPU seconds (user + sys) and peak RSS of the measured
process alone, read from os.wait4 when it is reaped: the server runs in its
own process, so its work is neither counted nor competing for the GIL. The
markdown cases' baseline is a bare script that streams the same reply with
the openai SDK and prints each delta with `print(delta, end="", flush=True)`,
also into a pty. chatcli runs with
its default behaviour (the session is saved to SQLite, as users run it) in
an isolated HOME.

All rows are measured in the same run on the same machine, interleaved, and
the table quotes medians and ratios, because a shared machine is noisy. The
script is a report: it prints PASS or FAIL for each target and exits 0.

Targets: at 100 KiB chatcli's CPU is at most 0.5x the baseline's; each
doubling of the reply grows chatcli's CPU at most 2.2x (no quadratic
rendering), in each kind of reply; paced, chatcli's CPU is at most 1.0x the
baseline's; at the largest one-line size, chatcli's CPU is at most 2x its
piped baseline's, and its peak RSS exceeds the baseline's by at most twice
the reply's size (the line is printed whole at its end: a copy or two).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
from isolated import isolated_env  # tests/benchmarks/isolated.py, beside this script

ROOT = Path(__file__).resolve().parents[2]
CHATCLI = Path(sys.executable).with_name("chatcli")
COLUMNS, LINES = 120, 40
DEFAULT_SIZES = (12.5, 25.0, 50.0, 100.0)
DEFAULT_LARGE, DEFAULT_TABLE = (1.0, 3.0, 10.0), (2.0,)  # MiB
LARGE_CHUNK = 256
PACED_SIZE, PACED_DELAY = 50.0, 0.002
TARGET_RATIO, TARGET_GROWTH, TARGET_PACED = 0.5, 2.2, 1.0
TARGET_LARGE_RATIO, TARGET_LARGE_RSS = 2.0, 2.0

PIPED = ["/bin/sh", "-c", f'exec "{CHATCLI}" go >/dev/null']  # chatcli alone: exec, so wait4 measures it

BASELINE = """\
import os, openai
client = openai.OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}], stream=True
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
"""

# --------------------------------------------------------------------------- #
# Markdown replies
# --------------------------------------------------------------------------- #

WORDS = (
    "the", "renderer", "stream", "terminal", "buffer", "reply", "model", "token", "latency",
    "scrollback", "block", "table", "column", "parser", "delta", "cursor", "screen", "width",
    "session", "request", "server", "client", "markdown", "heading", "paragraph", "list", "quote",
    "fence", "syntax", "colour", "theme", "output", "input", "worker", "queue", "cache", "index",
    "record", "value", "result", "option", "setting", "default", "timeout",
)

CODE = {
    "python": [
        "def fit_to_window(messages: list[str], limit: int) -> list[str]:",
        '    """Keep the newest messages that fit."""',
        "    kept, total = [], 0",
        "    for message in reversed(messages):",
        "        total += len(message.split())",
        "        if total > limit:",
        "            break",
        "        kept.append(message)",
        "    return kept[::-1]",
    ],
    "bash": [
        "set -euo pipefail",
        'for f in "$@"; do',
        '  wc -l "$f" | awk \'{ print $1 }\'',
        "done | sort -n | tail -n 3",
        'echo "done: $(date +%s)"',
    ],
    "json": [
        "{",
        '  "model": "gpt-4o-mini",',
        '  "stream": true,',
        '  "messages": [{"role": "user", "content": "go"}]',
        "}",
    ],
    "sql": [
        "SELECT model, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion",
        "FROM usage",
        "WHERE created_at > datetime('now', '-30 days')",
        "GROUP BY model ORDER BY prompt DESC;",
    ],
}


def sentence(rng: random.Random) -> str:
    """A sentence with the inline markup models use: emphasis, code, links."""
    words = rng.choices(WORDS, k=rng.randint(8, 18))
    for i in rng.sample(range(len(words)), rng.randint(1, 3)):
        words[i] = rng.choice(
            [f"**{words[i]}**", f"*{words[i]}*", f"`{words[i]}()`", f"[{words[i]}](https://example.com/{words[i]})"]
        )
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))


def nested_list(rng: random.Random) -> str:
    lines = []
    ordered = rng.random() < 0.4
    for i in range(rng.randint(3, 5)):
        lines.append(f"{f'{i + 1}.' if ordered else '-'} {sentence(rng)}")
        for _ in range(rng.randint(0, 2)):
            lines.append(f"   - {sentence(rng)}")
    return "\n".join(lines)


def table(rng: random.Random) -> str:
    headers = rng.sample(WORDS, 4)
    rows = [" | ".join(f"`{rng.choice(WORDS)}`" if j == 0 else str(rng.randint(1, 9999)) for j in range(4))
            for _ in range(rng.randint(3, 6))]
    return "\n".join([f"| {' | '.join(headers)} |", "|---|---:|---:|---:|", *(f"| {row} |" for row in rows)])


def quote(rng: random.Random) -> str:
    return "\n>\n".join(f"> {sentence(rng)}" for _ in range(rng.randint(1, 3)))


def code_block(rng: random.Random) -> str:
    language = rng.choice(sorted(CODE))
    return f"```{language}\n" + "\n".join(CODE[language]) + "\n```"


def section(rng: random.Random, n: int) -> str:
    """One heading and a varied run of blocks under it."""
    blocks = [f"{'#' * rng.randint(1, 3)} {n}. {sentence(rng).rstrip('.')}", paragraph(rng)]
    makers = [paragraph, nested_list, table, quote, code_block]
    blocks += [rng.choice(makers)(rng) for _ in range(rng.randint(2, 5))]
    return "\n\n".join(blocks) + "\n\n"


def markdown_reply(kib: float) -> str:
    """Realistic markdown of exactly `kib` KiB (ASCII, so bytes are characters)."""
    size = round(kib * 1024)
    rng = random.Random(f"chatcli-render-{kib}")
    parts: list[str] = []
    length, n = 0, 1
    while True:
        part = section(rng, n)
        if length + len(part) > size:
            break
        parts.append(part)
        length, n = length + len(part), n + 1
    filler = " ".join(rng.choices(WORDS, k=size))  # a last paragraph, cut to fit
    parts.append(filler[: size - length - 2].rstrip().ljust(size - length - 2, ".") + ".\n")
    text = "".join(parts)
    assert len(text.encode()) == size, (len(text), size)
    return text


def one_line_reply(kib: float) -> str:
    """One line of exactly `kib` KiB: words with inline markup, and no newline."""
    size = round(kib * 1024)
    rng = random.Random(f"chatcli-line-{kib}")
    words = [rng.choice(WORDS) for _ in range(4096)]
    for i in rng.sample(range(len(words)), 600):
        words[i] = rng.choice([f"**{words[i]}**", f"*{words[i]}*", f"`{words[i]}()`",
                               f"[{words[i]}](https://example.com/{words[i]})"])
    unit = " ".join(words) + " "
    return (unit * (size // len(unit) + 1))[:size - 1].rstrip().ljust(size - 1, ".") + "."


def table_reply(kib: float) -> str:
    """A markdown table of exactly `kib` KiB, as a model writes a long one: a line after it."""
    size = round(kib * 1024)
    rng = random.Random(f"chatcli-table-{kib}")
    head = "| name | count | ratio | note |\n|---|---:|---:|---|\n"
    tail = "\nThat is the whole table.\n"
    rows, length, n = [], len(head) + len(tail), 0
    while True:
        row = (f"| `{rng.choice(WORDS)}{n}` | {rng.randint(1, 99999)} | 0.{rng.randint(0, 999):03d} "
               f"| *{rng.choice(WORDS)}* |\n")
        if length + len(row) > size:
            break
        rows.append(row)
        length, n = length + len(row), n + 1
    rows[-1] = rows[-1][:-1] + " " * (size - length) + "\n"  # trailing spaces: still the same row
    text = head + "".join(rows) + tail
    assert len(text.encode()) == size, (len(text), size)
    return text


# --------------------------------------------------------------------------- #
# Processes
# --------------------------------------------------------------------------- #

SERVE = """
import sys, time
from pathlib import Path
from tests.support.server import ChatServer, Reply
reply, delay, chunk = Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
server = ChatServer(port=int(sys.argv[1])).start()
server.default = Reply(reply.read_text(), delay=delay, chunk_size=chunk)
print(f"serving on {server.base_url};", flush=True)
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """tests.support.server in its own process, streaming one reply file."""

    process: subprocess.Popen[str]
    base_url: str

    @classmethod
    def start(cls, reply: Path, *, delay: float, chunk: int = 4) -> Server:
        argv = [sys.executable, "-c", SERVE, str(free_port()), str(reply), str(delay), str(chunk)]
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("serving on "):
            process.kill()
            raise RuntimeError(f"tests.support.server did not start: {line!r}")
        return cls(process, line.split()[2].rstrip(";"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass(frozen=True)
class Sample:
    cpu: float  # user + sys seconds of the process alone
    wall: float
    output: bytes
    rss: float = 0.0  # peak resident MiB of the process alone


def run_in_pty(argv: list[str], env: dict[str, str], cwd: str) -> Sample:
    """Run argv with a 120x40 pty as its terminal, drain the pty to EOF, and reap it with wait4."""
    started = time.perf_counter()
    child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=cwd, dimensions=(LINES, COLUMNS), timeout=None)
    chunks = []
    try:
        while True:  # read as fast as the child writes, so it never blocks on a full pty
            chunks.append(child.read_nonblocking(65536, timeout=None))
    except pexpect.EOF:
        pass
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.ptyproc.terminated = child.terminated = True  # reaped here, so pexpect must not wait again
    child.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = b"".join(chunks)[-500:]
        raise RuntimeError(f"{argv[0]} exited with {code}; output ended with {tail!r}")
    return Sample(usage.ru_utime + usage.ru_stime, wall, b"".join(chunks), usage.ru_maxrss / 1024)


def bench_env(home: str, base_url: str) -> dict[str, str]:
    return isolated_env(
        home, OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=base_url, COLUMNS=str(COLUMNS), LINES=str(LINES)
    )


# --------------------------------------------------------------------------- #
# Cases
# --------------------------------------------------------------------------- #


@dataclass
class Case:
    """One reply served by one server, measured for chatcli and the baseline."""

    label: str
    kib: float
    paced: bool
    server: Server
    kind: str = "markdown"  # markdown, line or table: growth is measured within a kind
    chatcli: list[Sample] = field(default_factory=list)
    baseline: list[Sample] = field(default_factory=list)

    def measure(self, home: str) -> None:
        env = bench_env(home, self.server.base_url)
        sample = run_in_pty([str(CHATCLI), "go"], env, home)
        check_rendered(sample, self)
        self.chatcli.append(sample)
        baseline = [sys.executable, "-c", BASELINE] if self.kind == "markdown" else PIPED
        self.baseline.append(run_in_pty(baseline, env, home))

    def median(self, who: str, what: str) -> float:
        return statistics.median(getattr(s, what) for s in getattr(self, who))


def check_rendered(sample: Sample, case: Case) -> None:
    """chatcli must have drawn the whole reply, with escape sequences, not dropped it."""
    size = round(case.kib * 1024)
    if len(sample.output) < size // 2 or b"\x1b[" not in sample.output:
        raise RuntimeError(f"chatcli wrote {len(sample.output)} bytes for a {size}-byte reply ({case.label})")


def parse_sizes(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def fmt_kib(kib: float) -> str:
    return f"{kib / 1024:g} MiB" if kib >= 1024 else f"{kib:g} KiB"


def growths(cases: list[Case]) -> dict[str, float]:
    """Each unpaced case's CPU growth per doubling of the reply, from the next smaller case of its kind."""
    out: dict[str, float] = {}
    for kind in dict.fromkeys(c.kind for c in cases if not c.paced):
        same = sorted((c for c in cases if c.kind == kind and not c.paced), key=lambda c: c.kib)
        for a, b in itertools.pairwise(same):
            ratio = b.median("chatcli", "cpu") / a.median("chatcli", "cpu")
            out[b.label] = ratio ** (1 / math.log2(b.kib / a.kib))
    return out


def print_report(cases: list[Case], paced: Case | None, runs: int) -> None:
    print(f"render, median of {runs} runs, {COLUMNS}x{LINES} pty, 4-character deltas "
          f"({LARGE_CHUNK} for the MiB cases) (Python {sys.version.split()[0]})")
    header = (f"{'case':22} {'chatcli cpu s':>13} {'baseline cpu s':>14} {'ratio':>7} {'growth':>7} "
              f"{'chatcli wall s':>14} {'baseline wall s':>15} {'chatcli MiB':>11} {'baseline MiB':>12}")
    print(header)
    grown = growths(cases)
    for case in [*cases, *([paced] if paced else [])]:
        cpu, base = case.median("chatcli", "cpu"), case.median("baseline", "cpu")
        growth = f"{grown[case.label]:6.2f}x" if case.label in grown else ""
        print(f"{case.label:22} {cpu:13.3f} {base:14.3f} {cpu / base:6.2f}x {growth:>7} "
              f"{case.median('chatcli', 'wall'):14.2f} {case.median('baseline', 'wall'):15.2f} "
              f"{case.median('chatcli', 'rss'):11.0f} {case.median('baseline', 'rss'):12.0f}")
    print("growth: CPU growth per doubling of the reply, from the smaller case of its kind before it")


def print_samples(cases: list[Case]) -> None:
    """Every run's CPU seconds, to judge the noise behind a median."""
    print()
    for case in cases:
        for who in ("chatcli", "baseline"):
            cpus = " ".join(f"{s.cpu:.2f}" for s in getattr(case, who))
            print(f"{case.label:22} {who:8} cpu s: {cpus}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_targets(cases: list[Case], paced: Case | None) -> None:
    print()
    if markdown := [c for c in cases if c.kind == "markdown"]:
        largest = max(markdown, key=lambda c: c.kib)
        ratio = largest.median("chatcli", "cpu") / largest.median("baseline", "cpu")
        note = "" if largest.kib == 100 else f" (100 KiB not run; largest size {fmt_kib(largest.kib)})"
        print(f"{verdict(ratio <= TARGET_RATIO)}  chatcli/baseline CPU at {fmt_kib(largest.kib)}: "
              f"{ratio:.2f}x, target <= {TARGET_RATIO}x{note}")
    grown = growths(cases)
    for kind in dict.fromkeys(c.kind for c in cases):
        values = [grown[c.label] for c in cases if c.kind == kind and c.label in grown]
        if values:
            print(f"{verdict(max(values) <= TARGET_GROWTH)}  worst chatcli CPU growth per doubling ({kind}): "
                  f"{max(values):.2f}x, target <= {TARGET_GROWTH}x")
    if lines := [c for c in cases if c.kind == "line"]:
        largest = max(lines, key=lambda c: c.kib)
        ratio = largest.median("chatcli", "cpu") / largest.median("baseline", "cpu")
        print(f"{verdict(ratio <= TARGET_LARGE_RATIO)}  chatcli/piped CPU, {largest.label}: "
              f"{ratio:.2f}x, target <= {TARGET_LARGE_RATIO}x")
        more = largest.median("chatcli", "rss") - largest.median("baseline", "rss")
        size = TARGET_LARGE_RSS * largest.kib / 1024
        print(f"{verdict(more <= size)}  chatcli peak RSS over piped's, {largest.label}: "
              f"{more:.0f} MiB, target <= {size:.0f} MiB")
    if paced:
        ratio = paced.median("chatcli", "cpu") / paced.median("baseline", "cpu")
        print(f"{verdict(ratio <= TARGET_PACED)}  paced chatcli/baseline CPU ({paced.label}): "
              f"{ratio:.2f}x, target <= {TARGET_PACED}x")


def save_outputs(cases: list[Case], directory: Path) -> None:
    """The last pty transcript of each case, to look at with `cat` or `less -R`."""
    directory.mkdir(parents=True, exist_ok=True)
    for case in cases:
        stem = case.label.replace(" ", "-").replace(",", "").replace("/", "per")
        (directory / f"{stem}.chatcli.out").write_bytes(case.chatcli[-1].output)
        (directory / f"{stem}.baseline.out").write_bytes(case.baseline[-1].output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), help="KiB, comma-separated")
    parser.add_argument("--large", type=parse_sizes, default=list(DEFAULT_LARGE),
                        help="MiB of the one-line replies, comma-separated; empty: none")
    parser.add_argument("--table", type=parse_sizes, default=list(DEFAULT_TABLE),
                        help="MiB of the table replies, comma-separated; empty: none")
    parser.add_argument("--no-paced", action="store_true", help="skip the paced case")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 run, 12.5 KiB, paced at 12.5 KiB, a 1 MiB line, a 0.5 MiB table")
    parser.add_argument("--samples", action="store_true", help="also list every run's CPU seconds")
    parser.add_argument("--save", type=Path, metavar="DIR", help="keep each case's last pty output here")
    args = parser.parse_args()
    runs, sizes, paced_kib = args.runs, sorted(args.sizes), PACED_SIZE
    large, tables = sorted(args.large), sorted(args.table)
    if args.quick:
        runs, sizes, paced_kib, large, tables = 1, [12.5], 12.5, [1.0], [0.5]

    home = tempfile.mkdtemp(prefix="chatcli-bench-")
    servers: list[Server] = []

    def case(kib: float, delay: float, kind: str = "markdown") -> Case:
        reply = Path(home, f"reply-{kind}-{kib:g}-{delay:g}.md")
        reply.write_text({"markdown": markdown_reply, "line": one_line_reply, "table": table_reply}[kind](kib))
        servers.append(Server.start(reply, delay=delay, chunk=4 if kind == "markdown" else LARGE_CHUNK))
        label = fmt_kib(kib) + {"markdown": "", "line": " one line", "table": " table"}[kind]
        label += f", {delay * 1000:g} ms/delta" if delay else ""
        return Case(label, kib, delay > 0, servers[-1], kind)

    started = time.perf_counter()
    try:
        cases = [case(kib, 0.0) for kib in sizes]
        cases += [case(mib * 1024, 0.0, "line") for mib in large]
        cases += [case(mib * 1024, 0.0, "table") for mib in tables]
        paced = None if args.no_paced else case(paced_kib, PACED_DELAY)
        everything = [*cases, *([paced] if paced else [])]
        everything[0].measure(home)  # warm-up, not counted: creates the database, fills the page cache
        everything[0].chatcli.clear()
        everything[0].baseline.clear()
        for _ in range(runs):  # interleaved, so drift in machine load hits every row alike
            for each in everything:
                each.measure(home)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    print_report(cases, paced, runs)
    if args.samples:
        print_samples(everything)
    print_targets(cases, paced)
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s")
    if args.save:
        save_outputs(everything, args.save)


if __name__ == "__main__":
    main()
