"""The built-in tools, called as the Toolbox calls them (`run(arguments, stop)`), on real files
and real processes; their config keys; and the approval prompt, over a pipe. (fetch_url has
tests/test_tools_fetch.py.)

The file tools must not read past `tool_roots`, however the path is spelled: `..`, an absolute
path, a symlink out, a symlinked directory in the middle. shell's timeout and Ctrl-C must kill
everything the command started.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from pathlib import Path

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.output.vt100 import Vt100_Output

from chatcli.base.approval import Approval
from chatcli.base.errors import ConfigError
from chatcli.base.events import ToolCall
from chatcli.base.files import FILE_LIMIT
from chatcli.config.settings import load_config
from chatcli.tools.base import ToolFailed
from chatcli.tools.box import ALWAYS_ASKS
from chatcli.tools.builtin import builtin_tools
from chatcli.tools.files import MAX_MATCHES, file_tools
from chatcli.tools.shell import Shell
from chatcli.ui.approval import ask_approval
from tests.support.keys import TEST_KEY
from tests.support.running import make_env


def run(tool, stop: threading.Event | None = None, **arguments) -> str:
    return tool.run(arguments, stop or threading.Event())


def refused(tool, **arguments) -> str:
    with pytest.raises(ToolFailed) as info:
        run(tool, **arguments)
    return str(info.value)


# --------------------------------------------------------------------------- #
# read_file, list_dir, grep: confined to the roots
# --------------------------------------------------------------------------- #


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (the only root) holding main.py, docs/, a link inside and links out; a secret beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (root / "main.py").write_text("import os\nimport sys\n\nprint(os.getcwd())\n", encoding="utf-8")
    (root / "docs" / "notes.md").write_text("# Notes\nimport nothing here\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("TOP SECRET\n", encoding="utf-8")
    (outside / "key.txt").write_text("TOP SECRET too\n", encoding="utf-8")
    (root / "inside_link.py").symlink_to(root / "main.py")
    (root / "secret_link").symlink_to(tmp_path / "secret.txt")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "docs" / "up").symlink_to(tmp_path, target_is_directory=True)
    return root


@pytest.fixture
def tools(tree: Path) -> dict:
    return {tool.name: tool for tool in file_tools([str(tree)])}


def test_read_file_reads_a_file_under_the_root_by_relative_and_absolute_path(tools: dict, tree: Path) -> None:
    assert run(tools["read_file"], path="main.py") == (tree / "main.py").read_text()
    assert run(tools["read_file"], path=str(tree / "docs" / "notes.md")).startswith("# Notes")
    assert run(tools["read_file"], path="docs/../main.py").startswith("import os")
    assert run(tools["read_file"], path="inside_link.py").startswith("import os")  # a link that stays inside


@pytest.mark.parametrize("path", [
    "../secret.txt",
    "docs/../../secret.txt",
    "{tmp}/secret.txt",
    "/etc/passwd",
    "secret_link",  # a symlink inside the root, pointing out
    "out/key.txt",  # a symlinked directory as the first part
    "docs/up/secret.txt",  # a symlinked directory in the middle of the path
    "docs/up/root/../secret.txt",
])
def test_read_file_refuses_every_way_out_of_the_roots(tools: dict, tree: Path, path: str) -> None:
    said = refused(tools["read_file"], path=path.format(tmp=tree.parent))
    assert "is outside the directories the tools may read" in said and str(tree) in said
    assert "TOP SECRET" not in said


@pytest.mark.parametrize("path", ["..", "out", "docs/up", "/"])
def test_list_dir_refuses_directories_out_of_the_roots(tools: dict, path: str) -> None:
    assert "is outside the directories the tools may read" in refused(tools["list_dir"], path=path)


def test_grep_finds_nothing_through_links_out(tools: dict) -> None:
    found = run(tools["grep"], pattern="SECRET")
    assert found == "No match in 3 files."  # main.py, notes.md, inside_link.py (followed: it stays inside)
    assert "outside" in refused(tools["grep"], pattern="SECRET", path="out")
    assert "outside" in refused(tools["grep"], pattern="SECRET", path="../secret.txt")


def test_every_builtin_tool_has_a_one_line_description_and_an_object_schema() -> None:
    import jsonschema

    tools = builtin_tools()
    assert sorted(tools) == ["fetch_url", "grep", "list_dir", "read_file", "shell"] and ALWAYS_ASKS == {"shell"}
    for name, tool in tools.items():
        assert tool.name == name and tool.description and "\n" not in tool.description
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        assert tool.parameters["type"] == "object" and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name)
        assert tool.asks is (name == "shell")


def test_the_default_root_is_the_working_directory(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "docs")
    read = builtin_tools()["read_file"]
    assert run(read, path="notes.md").startswith("# Notes")
    assert "outside" in refused(read, path="../main.py")


def test_a_second_root_is_readable_by_absolute_path(tree: Path, tmp_path: Path) -> None:
    read = builtin_tools(roots=[str(tree), str(tmp_path / "outside")])["read_file"]
    assert run(read, path=str(tmp_path / "outside" / "key.txt")) == "TOP SECRET too\n"
    assert "outside" in refused(read, path=str(tmp_path / "secret.txt"))


def test_read_file_takes_a_range_of_lines(tools: dict) -> None:
    assert run(tools["read_file"], path="main.py", start=2, end=3) == "[main.py: lines 2-3 of 4]\nimport sys\n\n"
    assert run(tools["read_file"], path="main.py", start=4) == "[main.py: lines 4-4 of 4]\nprint(os.getcwd())\n"
    assert refused(tools["read_file"], path="main.py", start=9) == "main.py has 4 lines, so there is no line 9."
    assert refused(tools["read_file"], path="main.py", start=3, end=2) == "The end line 2 comes before the start line 3."


def test_fifos_devices_and_directories_are_refused_without_hanging(tools: dict, tree: Path) -> None:
    os.mkfifo(tree / "pipe")  # no writer: a blocking open would wait forever
    started = time.monotonic()
    assert "pipe is not a regular file" in refused(tools["read_file"], path="pipe")
    assert "docs is not a regular file" in refused(tools["read_file"], path="docs")
    devices = {tool.name: tool for tool in file_tools(["/dev"])}
    assert "zero is not a regular file" in refused(devices["read_file"], path="zero")
    assert "No match" in run(tools["grep"], pattern="x")  # the FIFO in the tree is skipped, not opened
    assert time.monotonic() - started < 5


def test_binary_non_utf8_missing_and_huge_files_are_refused(tools: dict, tree: Path) -> None:
    (tree / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tree / "latin1.txt").write_bytes("café".encode("latin-1"))
    with open(tree / "huge.log", "wb") as huge:
        huge.truncate(FILE_LIMIT + 1)  # sparse: refused by its size, before a byte is read
    assert refused(tools["read_file"], path="image.png") == "image.png is not a text file (it is binary or not UTF-8)."
    assert "latin1.txt is not a text file" in refused(tools["read_file"], path="latin1.txt")
    assert refused(tools["read_file"], path="huge.log") == "huge.log is 8.0 MB, over the 8 MB that read_file reads."
    assert refused(tools["read_file"], path="nowhere.txt") == "Could not read nowhere.txt (No such file or directory)."
    assert "No match in" in run(tools["grep"], pattern="café|PNG")  # grep skips what it cannot read as text


def test_list_dir_shows_directories_links_and_sizes(tools: dict, tree: Path) -> None:
    listing = run(tools["list_dir"]).splitlines()
    size = (tree / "main.py").stat().st_size
    assert listing == ["docs/", "inside_link.py@", f"main.py  ({size} bytes)", "out@", "secret_link@"]
    size = (tree / "docs" / "notes.md").stat().st_size
    assert run(tools["list_dir"], path="docs") == f"notes.md  ({size} bytes)\nup@"
    assert "main.py is not a directory" in refused(tools["list_dir"], path="main.py")


def test_grep_reports_path_line_and_text_and_caps_the_matches(tools: dict, tree: Path) -> None:
    assert run(tools["grep"], pattern=r"^import \w+$").splitlines() == [
        "inside_link.py:1: import os",
        "inside_link.py:2: import sys", "main.py:1: import os", "main.py:2: import sys"]
    assert run(tools["grep"], pattern="IMPORT N", ignore_case=True) == "docs/notes.md:2: import nothing here"
    (tree / "many.txt").write_text("".join(f"match {n}\n" for n in range(MAX_MATCHES + 50)), encoding="utf-8")
    found = run(tools["grep"], pattern="match", path="many.txt").splitlines()
    assert len(found) == MAX_MATCHES + 1 and found[-1] == "(50 more not shown)"
    assert found[0] == "many.txt:1: match 0" and found[MAX_MATCHES - 1] == f"many.txt:{MAX_MATCHES}: match {MAX_MATCHES - 1}"
    assert run(tools["grep"], pattern="match", path="many.txt", max_matches=3).splitlines()[-1] == \
        f"({MAX_MATCHES + 47} more not shown)"
    assert "not a valid regular expression" in refused(tools["grep"], pattern="(unclosed")


def test_grep_skips_hidden_directories(tools: dict, tree: Path) -> None:
    (tree / ".git").mkdir()
    (tree / ".git" / "config").write_text("needle\n", encoding="utf-8")
    (tree / "visible.txt").write_text("needle\n", encoding="utf-8")
    assert run(tools["grep"], pattern="needle") == "visible.txt:1: needle"


def test_grep_stops_when_asked(tools: dict, tree: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert run(tools["grep"], stop, pattern="import") == "(stopped before the search finished)"


# --------------------------------------------------------------------------- #
# Config: tool_roots, fetch_allow_private, fetch_max_kb
# --------------------------------------------------------------------------- #


def _config(text: str):
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_config(make_env(environ={**os.environ, "OPENAI_API_KEY": TEST_KEY}))


def test_tool_settings_are_read_from_the_config_and_checked() -> None:
    defaults = _config("")
    assert (defaults.tool_roots, defaults.fetch_allow_private, defaults.fetch_max_kb) == ((), False, 1024)
    config = _config('tool_roots = [".", "~/notes"]\nfetch_allow_private = true\nfetch_max_kb = 64\n')
    assert (config.tool_roots, config.fetch_allow_private, config.fetch_max_kb) == ((".", "~/notes"), True, 64)
    with pytest.raises(ConfigError) as info:
        _config('tool_roots = "."\n')
    assert "'tool_roots' in" in info.value.message and 'tool_roots = [".", "~/notes"]' in info.value.message


def test_a_projects_dotenv_cannot_open_the_private_network() -> None:
    (Path.cwd() / ".env").write_text("CHATCLI_FETCH_ALLOW_PRIVATE=true\n", encoding="utf-8")
    assert _config("").fetch_allow_private is False


# --------------------------------------------------------------------------- #
# shell: real processes in a group of their own
# --------------------------------------------------------------------------- #


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for init to reap it counts as ended)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.server
def test_shell_returns_output_and_exit_code(tmp_path: Path) -> None:
    shell = Shell(cwd=str(tmp_path))
    assert run(shell, command="echo out; echo err >&2; exit 3") == "out\nerr\n[exit code 3]"
    assert run(shell, command="pwd") == f"{tmp_path}\n[exit code 0]"
    assert run(shell, command="true") == "[no output; exit code 0]"
    assert Shell.asks is True and Shell.edits == "command"


@pytest.mark.server
def test_shell_does_not_pass_the_api_key_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("CHATCLI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OTHER_SETTING", "kept")
    output = run(Shell(), command="env")
    assert TEST_KEY not in output and "OTHER_SETTING=kept" in output
    from chatcli.base import secrets

    monkeypatch.setattr(secrets, "_secrets", (TEST_KEY,))  # as secrets.know(config) sets it at start
    assert run(Shell(), command=f"echo {TEST_KEY[:10]}''{TEST_KEY[10:]}") == "***\n[exit code 0]"


@pytest.mark.server
def test_shell_caps_its_output() -> None:
    output = run(Shell(max_output=1000), command="yes | head -c 5000")
    assert output.endswith("\n[4,000 more bytes of output not shown]\n[exit code 0]")


@pytest.mark.server
def test_shell_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    started = time.monotonic()
    output = run(Shell(timeout=0.5), command=f"sleep 30 & echo $! > {tmp_path}/child; sleep 30")
    assert time.monotonic() - started < 5
    assert output == "[no output; stopped: timed out after 0.5 s, and its process group was killed; killed by SIGTERM]"
    assert _gone(int((tmp_path / "child").read_text()))


@pytest.mark.server
def test_stop_kills_the_whole_group(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    output = run(Shell(), stop, command=f"echo started; sleep 30 & echo $! > {tmp_path}/child; wait")
    assert time.monotonic() - started < 5
    assert output == "started\n[stopped: cancelled, and its process group was killed; killed by SIGTERM]"
    assert _gone(int((tmp_path / "child").read_text()))


@pytest.mark.server
def test_background_processes_left_holding_the_output_are_killed(tmp_path: Path) -> None:
    started = time.monotonic()
    output = run(Shell(), command=f"sleep 30 & echo $! > {tmp_path}/child; echo done")
    assert time.monotonic() - started < 5
    assert output == "done\n[stopped: background processes it left were killed when it exited; exit code 0]"
    assert _gone(int((tmp_path / "child").read_text()))


# --------------------------------------------------------------------------- #
# The approval prompt, over prompt_toolkit's pipe input
# --------------------------------------------------------------------------- #

CALL = ToolCall("call_1", "shell", '{"command": "rm -rf build"}')


def ask(keys: str, *, command: str = "rm -rf build", editable: bool = True, output=None) -> Approval:
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        return ask_approval(CALL, "shell", {"command": command}, shows=command,
                            editable=command if editable else None, input=pipe, output=output or DummyOutput())


@pytest.mark.parametrize("keys, answer", [
    ("y", Approval("yes")), ("n", Approval("no")), ("a", Approval("always")),
    ("\x03", Approval("no")),  # Ctrl-C
    ("\x04", Approval("no")),  # Ctrl-D
    ("x\rqy", Approval("yes")),  # other keys, Enter included, leave the question asked
])
def test_one_key_answers(keys: str, answer: Approval) -> None:
    assert ask(keys) == answer


def test_edit_changes_the_command_and_asks_again() -> None:
    assert ask("e\x15rm -rf build/tmp\ry") == Approval("yes", {"command": "rm -rf build/tmp"})
    assert ask("e\x15ls\ra") == Approval("always", {"command": "ls"})
    assert ask("e\x15ls\rn") == Approval("no")  # no edited command goes back with a no
    assert ask("e\x03y") == Approval("yes")  # Ctrl-C in the editor keeps the command as it was
    assert ask("e\x15\ry") == Approval("yes")  # an emptied command is not run: the old one stands


def test_a_tool_that_is_not_editable_has_no_edit() -> None:
    assert ask("ey", editable=False) == Approval("yes")  # e is not an answer there


def _screen(keys: str, command: str, *, editable: bool = True) -> str:
    buffer = io.StringIO()
    output = Vt100_Output(buffer, lambda: Size(rows=24, columns=100), term="xterm")
    ask(keys, command=command, editable=editable, output=output)
    return buffer.getvalue()


def test_the_exact_command_is_shown_with_its_controls_spelled_out() -> None:
    """A carriage return or an escape in the command could draw a harmless line over the real
    one; each is shown as <U+...>, so the user sees what would run."""
    sneaky = "rm -rf ~ \rls  \x1b[2K\x1b]0;title\x07echo \u202eok"
    screen = _screen("n", sneaky)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # prompt_toolkit's own drawing
    assert "rm -rf ~ <U+000D>ls  <U+001B>[2K<U+001B>]0;title<U+0007>echo <U+202E>ok" in text
    assert "[y]es / [n]o / [e]dit / [a]lways this exact command for the session?" in text
    assert "\r" + "ls" not in screen and "\x1b]0;" not in screen and "\u202e" not in screen
    assert "→ no" in text


def test_a_non_shell_tool_shows_its_arguments_and_always_means_these_arguments() -> None:
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _screen("a", 'path="a.txt"', editable=False))
    assert 'path="a.txt"' in screen and "[y]es / [n]o / [a]lways this tool with these arguments for the session?" in screen
    assert "[e]dit" not in screen


def test_the_api_key_is_never_shown_in_the_question_nor_returned_by_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    from chatcli.base import secrets

    monkeypatch.setattr(secrets, "_secrets", (TEST_KEY,))  # as secrets.know(config) sets it at start
    screen = _screen("n", f"curl -H 'Authorization: Bearer {TEST_KEY}' https://example.com")
    assert TEST_KEY not in screen and "Bearer ***" in screen
