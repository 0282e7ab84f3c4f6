"""Startup benchmark: `chatcli --help` and the first prompt, against `import openai`.

Run: python tests/benchmarks/startup.py [--runs N]

All rows are measured in the same run on the same machine, and the table
quotes medians and ratios, because a shared machine is noisy. The baseline
rows are a bare interpreter and `python -c "import openai"`: the cost that
chatcli keeps off the path to the first prompt by importing openai lazily.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
from isolated import isolated_env  # tests/benchmarks/isolated.py, beside this script

CHATCLI = Path(sys.executable).with_name("chatcli")


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def time_to_prompt(env: dict[str, str]) -> float:
    """Seconds from spawning chatcli in a pty until its prompt is on the screen."""
    started = time.perf_counter()
    child = pexpect.spawn(str(CHATCLI), [], env=env, dimensions=(40, 120), encoding="utf-8", timeout=20)
    # Answer the cursor-position request as a real terminal does; prompt-toolkit
    # draws the bottom toolbar only once it knows where the cursor is.
    child.expect("\x1b\\[6n")
    child.send("\x1b[2;1R")
    child.expect(" │ /help")  # the toolbar's last field
    elapsed = time.perf_counter() - started
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="chatcli-bench-")
    env = isolated_env(home, OPENAI_API_KEY="sk-benchmark", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    cases = {
        "python -c pass": lambda: timed_run([sys.executable, "-c", "pass"], env),
        'python -c "import openai"': lambda: timed_run([sys.executable, "-c", "import openai"], env),
        "chatcli --help": lambda: timed_run([str(CHATCLI), "--help"], env),
        "chatcli, to first prompt (pty)": lambda: time_to_prompt(env),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so drift in machine load hits every row alike
        for name, case in cases.items():
            results[name].append(case())

    medians = {name: statistics.median(times) for name, times in results.items()}
    openai_ms = medians['python -c "import openai"']
    print(f"startup, median of {args.runs} runs (Python {sys.version.split()[0]})")
    print(f"{'case':34} {'median ms':>10} {'min ms':>8} {'vs import openai':>17}")
    for name, times in results.items():
        print(f"{name:34} {medians[name] * 1000:10.0f} {min(times) * 1000:8.0f} {medians[name] / openai_ms:16.2f}x")


if __name__ == "__main__":
    main()
