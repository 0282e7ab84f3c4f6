"""chatcli batch run draws a progress bar on a terminal's stderr (done, rate, time left, cost so far),
and erases it for the closing count when the run ends."""

from __future__ import annotations

import json

import pexpect
import pytest

from tests.support.pty import TIMEOUT
from tests.support.screen import Terminal
from tests.support.server import Echo

pytestmark = pytest.mark.timeout(40)


def test_the_bar_counts_the_rows_as_they_finish_and_gives_way_to_the_closing_count(srv, spawn_chatcli, tmp_path):
    srv.default = Echo(delay=0.05)  # each reply takes a few tenths of a second
    rows = 8
    (tmp_path / "p.txt").write_text("".join(f"question number {n}\n" for n in range(rows)))
    out = tmp_path / "out.jsonl"
    child = spawn_chatcli("batch", "run", str(tmp_path / "p.txt"), "--via", "local", "-j", "1", "--output", str(out),
                          "-m", "gpt-4o-mini")
    child.expect(rf"[1-{rows - 1}]/{rows} done · [\d.]+ rows/s · \d+s left · (<?\$[\d.]+)", timeout=TIMEOUT)
    child.expect(pexpect.EOF, timeout=TIMEOUT)
    child.close()
    assert child.exitstatus == 0
    screen = Terminal(120, 40)
    screen.feed(child.logfile_read.getvalue())
    # The bar is gone from the screen: what stays is the run's opening line and its closing count.
    assert [row.rstrip() for row in screen.display if row.strip()] == [
        f"chatcli: Batch job 1: running {rows} rows here, 1 at a time.", f"chatcli: All {rows} rows succeeded."]
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["ok"] * rows
