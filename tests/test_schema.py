"""--schema end to end: chatcli against tests/support/server.py, judged by what a user sees.

What goes out (response_format at the server), what comes back on stdout and
stderr, and the exit code, for replies that match the schema, replies that do
not, replies that are not JSON at all, and schema files that cannot be used.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_FAILURE, EXIT_NETWORK, EXIT_OK, EXIT_USAGE
from tests.support.keys import TEST_KEY
from tests.support.running import CHATCLI, make_env
from tests.support.server import ChatServer, Reply

pytestmark = pytest.mark.timeout(20)

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Keeps OpenAI's strict-mode rules: every property required, no others allowed.
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture
def person(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "person.json"
    path.write_text(json.dumps(PERSON), encoding="utf-8")
    return path


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    """Exactly one 'chatcli: ...' sentence on stderr, no traceback, the given exit code."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatcli: ") and lines[0].endswith("."), result.stderr
    assert not CONTROL.search(lines[0]), repr(lines[0])
    return lines[0]


# --------------------------------------------------------------------------- #
# the request
# --------------------------------------------------------------------------- #


def test_a_matching_reply_is_printed_as_json_and_the_schema_went_with_the_request(
    srv: ChatServer, run_chatcli, person: Path
) -> None:
    srv.script(Reply('{"name": "Ada",\n "age": 36}', chunk_size=3))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert result.returncode == EXIT_OK and result.stderr == "", result.stderr
    assert result.stdout == '{"name": "Ada", "age": 36}\n'  # normalised: one line
    body = srv.chat_requests[0].body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    assert body["messages"][-1] == {"role": "user", "content": "invent a person"}


def test_a_schema_outside_the_strict_rules_is_sent_with_strict_false_under_a_safe_name(
    srv: ChatServer, run_chatcli, tmp_path: Path
) -> None:
    loose = {"type": "object", "properties": {"name": {"type": "string"}}}  # nothing required, more allowed
    path = tmp_path / "my person (v2).schema.json"
    path.write_text(json.dumps(loose), encoding="utf-8")
    srv.script(Reply('{"name": "Ada", "extra": true}'))
    result = run_chatcli("--schema", str(path), "invent a person")

    assert result.returncode == EXIT_OK and result.stdout == '{"name": "Ada", "extra": true}\n', result.stderr
    assert srv.chat_requests[0].body["response_format"]["json_schema"] == {
        "name": "my_person__v2__schema", "schema": loose, "strict": False,
    }


def test_the_format_belongs_to_that_ask_not_to_the_saved_session(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('{"name": "Ada", "age": 36}'), Reply("Ada was a mathematician."))
    assert run_chatcli("--schema", str(person), "invent a person").returncode == EXIT_OK
    result = run_chatcli("-c", "tell me about her")

    assert result.returncode == EXIT_OK and result.stdout == "Ada was a mathematician.\n", result.stderr
    assert "response_format" not in srv.chat_requests[1].body


def test_with_a_terminal_and_no_question_it_still_asks_once(srv: ChatServer, chat_env: dict[str, str], person: Path) -> None:
    from chatcli.cli.main import main

    srv.script(Reply('{"name": "Ada", "age": 36}'))
    env = make_env(stdin="invent a person\n", stdin_isatty=True, stdout_isatty=True, environ=chat_env)
    code = main(["--schema", str(person)], env=env)

    assert code == EXIT_OK, env.stderr.getvalue()
    assert env.stdout.getvalue() == '{"name": "Ada", "age": 36}\n'  # JSON, not markdown, on a terminal too
    assert "Ctrl-D" in env.stderr.getvalue()
    assert srv.chat_requests[0].body["messages"][-1]["content"] == "invent a person\n"


# --------------------------------------------------------------------------- #
# replies that do not pass
# --------------------------------------------------------------------------- #


def test_a_reply_that_breaks_the_schema_is_printed_and_the_path_is_named(
    srv: ChatServer, run_chatcli, person: Path
) -> None:
    reply = '{"name": "Ada", "age": "thirty-six"}'
    srv.script(Reply(reply))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert result.stdout == reply + "\n"  # never lose a word
    assert one_line(result, EXIT_FAILURE) == (
        "chatcli: The reply does not match person.json: at $.age, 'thirty-six' is not of type 'integer'."
    )


def test_every_problem_is_counted(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('{"age": 1.5, "nick": "A"}'))
    result = run_chatcli("--schema", "person.json", "invent a person")

    line = one_line(result, EXIT_FAILURE)
    assert line.startswith("chatcli: The reply does not match person.json: at $, ")
    assert line.endswith("(and 2 more problems).")


def test_a_reply_that_is_not_json_is_printed_and_said(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply("Sure! Ada, aged 36."))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert result.stdout == "Sure! Ada, aged 36.\n"
    assert one_line(result, EXIT_FAILURE) == (
        "chatcli: The reply is not JSON, so it cannot match person.json: Expecting value at line 1, column 1."
    )


def test_nan_is_not_json(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('{"name": "Ada", "age": NaN}'))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert "is not JSON" in one_line(result, EXIT_FAILURE)


def test_a_reply_cut_by_max_tokens_says_so(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('{"name": "Ad', finish_reason="length"))
    result = run_chatcli("--schema", "person.json", "--max-tokens", "5", "invent a person")

    assert result.stdout == '{"name": "Ad\n'
    line = one_line(result, EXIT_FAILURE)
    assert "max_tokens limit before its JSON was finished" in line and "--max-tokens" in line


def test_a_broken_stream_keeps_its_own_sentence_and_exit_code(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('{"name": "Ada", "age": 36}', chunk_size=4, disconnect_after=2))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert result.returncode == EXIT_NETWORK
    assert result.stdout == '{"name":\n'  # two chunks of four
    assert "broke off" in result.stderr and "match" not in result.stderr


def test_a_fenced_reply_is_accepted_and_printed_without_the_fence(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('```json\n{\n  "name": "Ada",\n  "age": 36\n}\n```\n'))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert result.returncode == EXIT_OK and result.stderr == "", result.stderr
    assert json.loads(result.stdout) == {"name": "Ada", "age": 36}


def test_one_fence_with_text_around_it_is_taken(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('Here you are:\n```json\n{"name": "Ada", "age": 36}\n```\nHope it helps!'))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert (result.returncode, result.stdout) == (EXIT_OK, '{"name": "Ada", "age": 36}\n'), result.stderr


def test_two_fences_with_text_around_them_are_not_json(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('One:\n```json\n{"name": "Ada", "age": 36}\n```\nOr:\n```json\n{"name": "Bo", "age": 3}\n```'))
    result = run_chatcli("--schema", "person.json", "invent a person")

    assert "is not JSON" in one_line(result, EXIT_FAILURE)
    assert "Bo" in result.stdout  # printed as it came


@pytest.mark.parametrize("reply", ["[" * 3000 + "]" * 3000, "[" * 5000], ids=["deep", "deep-and-cut"])
def test_a_reply_nested_too_deeply_is_printed_and_said_not_crashed(srv: ChatServer, run_chatcli, person: Path, reply) -> None:
    srv.script(Reply(reply))
    result = run_chatcli("--schema", "person.json", "q")

    assert "nested too deeply" in one_line(result, EXIT_FAILURE)
    assert result.stdout.rstrip("\n") == reply  # never lose a word


def test_a_recursive_schema_and_a_deep_reply_are_said_not_crashed(srv: ChatServer, run_chatcli, tmp_path: Path) -> None:
    (tmp_path / "work" / "tree.json").write_text(json.dumps(
        {"$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}))
    deep = '{"c": ' * 400 + "{}" + "}" * 400
    srv.script(Reply(deep))
    result = run_chatcli("--schema", "tree.json", "q")

    assert result.returncode in (EXIT_OK, EXIT_FAILURE) and "internal error" not in result.stderr
    assert result.stdout.strip() and "Traceback" not in result.stderr


def test_a_number_too_large_for_json_is_not_passed_on(srv: ChatServer, run_chatcli, tmp_path: Path) -> None:
    (tmp_path / "work" / "n.json").write_text('{"type": "object", "properties": {"a": {"type": "number"}}}')
    srv.script(Reply('{"a": 1e400}'))
    result = run_chatcli("--schema", "n.json", "q")

    assert "1e400 is too large for a JSON number" in one_line(result, EXIT_FAILURE)
    assert "Infinity" not in result.stdout


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"$schema": 5, "type": "object"}', "$schema must be a string"),
        ('{"type": "object", "properties": {"a": ' * 3000 + "{}" + "}}" * 3000, "nested too deeply"),
    ],
    ids=["schema-not-a-string", "deep"],
)
def test_odd_schema_files_are_a_usage_error(srv: ChatServer, run_chatcli, tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "work" / "odd.json").write_text(text)
    result = run_chatcli("--schema", "odd.json", "q")

    assert says in one_line(result, EXIT_USAGE)
    assert srv.chat_requests == []


def test_a_schema_from_a_pipe_is_read(srv: ChatServer, person: Path) -> None:
    """--schema <(jq . person.json): the shell hands over /dev/fd/N, a pipe."""
    import os


    script = f'{CHATCLI} --schema <(cat {person}) "invent a person"'
    srv.script(Reply('{"name": "Ada", "age": 36}'))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": srv.base_url})

    assert (done.returncode, done.stdout) == (EXIT_OK, '{"name": "Ada", "age": 36}\n'), done.stderr
    assert srv.chat_requests[0].body["response_format"]["json_schema"]["name"]


def test_a_server_refusing_response_format_is_named_as_the_cause(srv: ChatServer, run_chatcli, person: Path) -> None:
    from tests.support.server import Error

    srv.script(Error(400, "response_format json_schema is not supported by this server"))
    result = run_chatcli("--schema", "person.json", "q")

    line = one_line(result, EXIT_FAILURE)
    assert "response_format json_schema is not supported" in line
    assert "--schema's response_format json_schema, which not every server takes" in line


@pytest.mark.parametrize("keyword", ["allOf", "not", "if", "patternProperties", "oneOf"])
def test_keywords_strict_mode_refuses_turn_strict_off(keyword: str) -> None:
    from chatcli.cli.schema import strict_problem

    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False, keyword: [{"type": "object"}] if keyword in ("allOf", "oneOf") else {}}

    assert strict_problem(schema) == f"at $, strict mode does not take {keyword}"


def test_no_control_sequence_reaches_stdout_or_stderr(srv: ChatServer, run_chatcli, person: Path) -> None:
    # Valid JSON whose strings decode to ESC and C1 CSI: printed escaped, and still the same data.
    srv.script(Reply('{"name": "\\u001b]0;pwned\\u0007\\u009b2J", "age": 1}'))
    valid = run_chatcli("--schema", "person.json", "q")
    assert valid.returncode == EXIT_OK and not CONTROL.search(valid.stdout), repr(valid.stdout)
    assert json.loads(valid.stdout)["name"] == "\x1b]0;pwned\x07\x9b2J"

    srv.script(Reply('{"name": "A", "age": "\\u009b2J"}'))
    wrong_type = run_chatcli("--schema", "person.json", "q")
    assert not CONTROL.search(wrong_type.stdout)
    assert one_line(wrong_type, EXIT_FAILURE).startswith("chatcli: The reply does not match person.json: at $.age")

    srv.script(Reply('{"name": "\x1b[2J\x1b]0;pwned\x07", "age": 1}'))  # raw controls: not JSON, shown filtered
    not_json = run_chatcli("--schema", "person.json", "q")
    assert not CONTROL.search(not_json.stdout) and '"age": 1}' in not_json.stdout
    assert "is not JSON" in one_line(not_json, EXIT_FAILURE)


# --------------------------------------------------------------------------- #
# schema files that cannot be used: exit 2 before any request
# --------------------------------------------------------------------------- #


BAD_SCHEMAS = [
    ("missing.json", None, "The schema file missing.json does not exist."),
    ("broken.json", '{"type": "object",', "The schema file broken.json is not valid JSON: Expecting"),
    ("list.json", "[1, 2]", "The schema file list.json must hold a JSON object"),
    ("typo.json", '{"type": "object", "properties": {"age": {"type": "integr"}}}',
     "The schema in typo.json is not valid JSON Schema: at $.properties.age.type, 'integr' is not valid"),
    ("ref.json", '{"type": "object", "properties": {"a": {"$ref": "#/$defs/nowhere"}}}',
     "The schema in ref.json cannot be used: at $.properties.a, $ref '#/$defs/nowhere' points to nothing"),
    ("remote.json", '{"$ref": "https://example.com/person.json"}',
     "The schema in remote.json cannot be used: at $, $ref 'https://example.com/person.json' points outside"),
    ("latin1.json", b'{"description": "caf\xe9"}', "The schema file latin1.json is not UTF-8 text."),
]


@pytest.mark.parametrize(("name", "content", "sentence"), BAD_SCHEMAS, ids=[n for n, *_ in BAD_SCHEMAS])
def test_an_unusable_schema_file_is_a_usage_error_and_nothing_is_sent(
    srv: ChatServer, run_chatcli, name: str, content: str | bytes | None, sentence: str
) -> None:
    if isinstance(content, bytes):
        Path(name).write_bytes(content)
    elif content is not None:
        Path(name).write_text(content, encoding="utf-8")
    result = run_chatcli("--schema", name, "invent a person")

    assert one_line(result, EXIT_USAGE).startswith("chatcli: " + sentence)
    assert result.stdout == ""
    assert srv.chat_requests == []


def test_a_directory_is_not_a_schema_file(srv: ChatServer, run_chatcli) -> None:
    result = run_chatcli("--schema", ".", "q")

    assert one_line(result, EXIT_USAGE) == "chatcli: The schema file . is a directory."
    assert srv.chat_requests == []


# --------------------------------------------------------------------------- #
# with --json
# --------------------------------------------------------------------------- #


def test_json_record_carries_the_verdict_and_the_parsed_reply(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('```json\n{"name": "Ada", "age": 36}\n```'))
    result = run_chatcli("--json", "--schema", "person.json", "invent a person")

    assert result.returncode == EXIT_OK and result.stderr == "", result.stderr
    record = json.loads(result.stdout)
    assert record["reply"] == '```json\n{"name": "Ada", "age": 36}\n```'  # exactly as the model sent it
    assert record["status"] == "complete"
    assert record["schema"] == {"file": "person.json", "valid": True, "errors": [],
                                "parsed": {"name": "Ada", "age": 36}}


def test_json_record_lists_every_problem_and_the_exit_code_is_1(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply('{"name": 7, "age": "x"}'))
    result = run_chatcli("--json", "--schema", "person.json", "invent a person")

    record = json.loads(result.stdout)
    assert record["schema"]["valid"] is False and record["schema"]["parsed"] == {"name": 7, "age": "x"}
    assert sorted(record["schema"]["errors"], key=lambda e: e["path"]) == [
        {"path": "$.age", "message": "'x' is not of type 'integer'"},
        {"path": "$.name", "message": "7 is not of type 'string'"},
    ]
    line = one_line(result, EXIT_FAILURE)
    assert line.startswith("chatcli: The reply does not match person.json: at $.") and "1 more problem)" in line


def test_json_record_for_a_reply_that_is_not_json(srv: ChatServer, run_chatcli, person: Path) -> None:
    srv.script(Reply("no"))
    result = run_chatcli("--json", "--schema", "person.json", "invent a person")

    record = json.loads(result.stdout)
    assert record["reply"] == "no"
    assert record["schema"] == {"file": "person.json", "valid": False, "parsed": None,
                                "errors": [{"path": None, "message": "Expecting value at line 1, column 1"}]}
    assert "is not JSON" in one_line(result, EXIT_FAILURE)


# --------------------------------------------------------------------------- #
# startup cost
# --------------------------------------------------------------------------- #


def test_jsonschema_is_imported_only_for_schema(srv: ChatServer, chat_env: dict[str, str], person: Path) -> None:
    code = """
import sys
from chatcli.cli.main import main
main(sys.argv[1:])
print("jsonschema" in sys.modules, file=sys.stderr)
"""
    srv.script(Reply("hi"), Reply('{"name": "Ada", "age": 36}'))
    plain = subprocess.run([sys.executable, "-c", code, "hello"], capture_output=True, text=True, env=chat_env,
                           timeout=20)
    assert plain.stdout == "hi\n" and plain.stderr == "False\n", plain.stderr
    schema = subprocess.run([sys.executable, "-c", code, "--schema", str(person), "hello"], capture_output=True,
                            text=True, env=chat_env, timeout=20)
    assert schema.stderr == "True\n", schema.stderr
