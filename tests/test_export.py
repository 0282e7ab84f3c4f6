"""Exports: a file gets the text exactly and whole, or keeps what it had; JSON carries control and
invisible characters only as escapes; a pipe gets the data as saved."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.running import CHATCLI, ok
from tests.support.sessions import default_db, seed

pytestmark = pytest.mark.timeout(60)

HOSTILE = "osc52 \x1b]52;c;cHduZWQ=\x07 c1 \x9d0;t\x9c \x9b2J bidi \u202e zw \u200b tag \U000e0041 end"


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


def test_an_export_that_fails_midway_leaves_the_old_file_as_it_was(home, chat_env, tmp_path):
    seed(home, ("long one", [("tell me everything", "everything, " * 20_000)]))  # a 240 KB export
    old = "# the export from last week\n"
    target = Path("chat.md")
    target.write_text(old)
    target.chmod(0o640)

    def file_size_limit() -> None:  # a real fault: the kernel refuses to let a file grow past 64 KB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = subprocess.run([str(CHATCLI), "sessions", "export", "1", "-o", "chat.md"], env=chat_env,
                            preexec_fn=file_size_limit, capture_output=True, text=True, timeout=60)

    assert target.read_text() == old
    assert result.returncode == 1, result.stderr
    assert result.stderr == "chatcli: Could not write chat.md (File too large); the file there is unchanged.\n"
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["chat.md"]  # no half-written file left beside it

    # Without the limit the same export goes through, over the old file, keeping its permissions.
    ok(subprocess.run([str(CHATCLI), "sessions", "export", "1", "-o", "chat.md"], env=chat_env,
                      capture_output=True, text=True, timeout=60))
    assert target.read_text().count("everything, ") == 20_000
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["chat.md"]


def test_an_export_through_a_symlink_replaces_the_file_it_names(home, run_chatcli):
    seed(home, ("linked", [("q", "the answer")]))
    Path("real").mkdir()
    Path("real/chat.md").write_text("old")
    Path("chat.md").symlink_to("real/chat.md")
    ok(run_chatcli("sessions", "export", "1", "-o", "chat.md"))
    assert Path("chat.md").is_symlink()
    assert "the answer" in Path("real/chat.md").read_text()


def test_a_file_name_too_long_for_the_file_system_is_one_sentence(home, run_chatcli):
    """Found by the fuzz of /export: a name over 255 bytes raised from Path.exists(), before the
    write's own handling, and came out as an internal error."""
    seed(home, ("long", [("q", "the answer")]))
    name = "x" * 300 + ".md"
    result = run_chatcli("sessions", "export", "1", "-o", name)
    assert result.returncode == 1
    assert result.stderr.startswith(f"chatcli: Could not write {name} (File name too long).")
    assert "internal error" not in result.stderr and result.stderr.count("\n") == 1


def test_json_keeps_control_and_invisible_characters_only_as_escapes(home, run_chatcli):
    seed(home, (HOSTILE, [(HOSTILE, HOSTILE)]))
    for result in (ok(run_chatcli("sessions", "export", "1", "--format", "json")),
                   ok(run_chatcli("sessions", "export", "1", "-o", "chat.json"))):
        text = result.stdout or Path("chat.json").read_text(encoding="utf-8")
        for raw in ("\x1b", "\x07", "\x9d", "\x9c", "\x9b", "\u202e", "\u200b", "\U000e0041"):
            assert raw not in text, repr(raw)
        assert "\\u009d" in text and "\\u202e" in text and "\\udb40\\udc41" in text
        record = json.loads(text)
        assert record["title"] == HOSTILE and [m["content"] for m in record["messages"]] == [HOSTILE, HOSTILE]


def test_markdown_to_a_file_or_a_pipe_is_the_text_exactly(home, run_chatcli):
    # A pipe is data: jq, a file, a program that asked for what was saved. The reader decides
    # what reaches a terminal (less shows control characters as ^[ by default); a terminal on
    # stdout gets the export through the gate (pty/test_gate_pty.py).
    seed(home, ("exact", [("q", HOSTILE)]))
    piped = ok(run_chatcli("sessions", "export", "1")).stdout
    assert HOSTILE in piped
    ok(run_chatcli("sessions", "export", "1", "-o", "chat.md"))
    assert Path("chat.md").read_text(encoding="utf-8") == piped
    assert default_db(home).exists()
