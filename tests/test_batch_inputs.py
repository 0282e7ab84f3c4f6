"""A batch's input file as rows (chatcli/batch/inputs.py) and a row as a request (batch/requests.py):
stable ids, each format's rules, and one sentence naming the line for each way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatcli.base.digest import json_sha256 as body_hash
from chatcli.base.errors import UsageError
from chatcli.batch.inputs import Row, fill, read_rows
from chatcli.batch.requests import Spec, body_of, messages_of


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, **options) -> str:
    with pytest.raises(UsageError) as caught:
        read_rows(path, **options)
    message = caught.value.message
    assert "\n" not in message and message.endswith("."), message
    return message


# --- .txt ---


def test_txt_rows_are_numbered_by_line_so_blank_lines_and_lines_added_at_the_end_keep_the_ids(tmp_path):
    path = write(tmp_path, "p.txt", "first\n\n  \nfourth\n")
    assert [(r.id, r.line, r.prompt) for r in read_rows(path)] == [("1", 1, "first"), ("4", 4, "fourth")]
    path.write_text("first\n\n  \nfourth\nfifth\n", encoding="utf-8")
    assert [r.id for r in read_rows(path)] == ["1", "4", "5"]


def test_a_txt_line_fills_the_template_as_prompt(tmp_path):
    path = write(tmp_path, "p.txt", "cats\ndogs\n")
    rows = read_rows(path, template="Write a haiku about {{ prompt }}.")
    assert [r.prompt for r in rows] == ["Write a haiku about cats.", "Write a haiku about dogs."]


def test_a_template_naming_a_column_a_txt_line_does_not_have_names_the_line_and_what_it_has(tmp_path):
    path = write(tmp_path, "p.txt", "cats\n")
    said = refusal(path, template="About {{topic}}")
    assert said.startswith(f"{path}:1: --prompt-template uses {{{{topic}}}}") and "(it has: prompt)" in said


# --- .jsonl ---


def test_jsonl_rows_take_prompt_messages_or_vars_with_their_own_ids_or_their_line_numbers(tmp_path):
    lines = [
        {"id": "a1", "prompt": "hello"},
        {"messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}]},
        {"id": 7, "vars": {"name": "Ada", "age": 36}},
    ]
    path = write(tmp_path, "r.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    with pytest.raises(UsageError, match=r"r.jsonl:1: --prompt-template uses \{\{name\}\}"):
        read_rows(path, template="{{name}} is {{age}}")  # the template is every prompt's: row 1 has no name
    path.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n", encoding="utf-8")
    rows = read_rows(path)
    assert [r.id for r in rows] == ["a1", "2"]
    assert rows[0].prompt == "hello"
    assert rows[1].messages == tuple(lines[1]["messages"]) and rows[1].prompt is None
    path.write_text("\n" + json.dumps(lines[2]) + "\n", encoding="utf-8")
    (row,) = read_rows(path, template="{{name}} is {{age}}")
    assert (row.id, row.line, row.prompt, row.vars) == ("7", 2, "Ada is 36", {"name": "Ada", "age": "36"})


@pytest.mark.parametrize("line, words", [
    ('{"prompt": "x"', "is not JSON"),
    ('["prompt", "x"]', "is not a JSON object"),
    ('{"id": "x"}', "must have one of prompt, messages or vars."),
    ('{"prompt": "x", "vars": {}}', "must have one of prompt, messages or vars, not prompt and vars."),
    ('{"prompt": ""}', "prompt must be text that is not empty"),
    ('{"prompt": 3}', "prompt must be text that is not empty"),
    ('{"messages": [{"content": "x"}]}', "messages must be a list of objects with a role and content"),
    ('{"messages": []}', "messages must be a list of objects with a role and content"),
    ('{"vars": ["x"]}', "vars must be an object"),
    ('{"vars": {"x": "y"}}', "has vars: give --prompt-template"),
    ('{"id": true, "prompt": "x"}', "id must be text or a whole number"),
    ('{"id": " ", "prompt": "x"}', "id must be text or a whole number"),
    ('{"id": 1.5, "prompt": "x"}', "id must be text or a whole number"),
])
def test_a_jsonl_line_that_is_not_a_row_is_one_sentence_naming_its_line(tmp_path, line, words):
    path = write(tmp_path, "r.jsonl", '{"prompt": "fine"}\n' + line + "\n")
    said = refusal(path)
    assert said.startswith(f"{path}:2") and words in said, said


# --- .csv ---


def test_csv_rows_without_an_id_column_are_numbered_by_row_and_keep_their_columns(tmp_path):
    path = write(tmp_path, "d.csv", 'text,lang\n"Hello, world",en\n\n"Line one\nline two",de\n')
    rows = read_rows(path, template="Translate from {{lang}}: {{text}}")
    assert [r.id for r in rows] == ["1", "2"]
    assert rows[0].prompt == "Translate from en: Hello, world"
    assert rows[1].prompt == "Translate from de: Line one\nline two"
    assert rows[1].vars == {"text": "Line one\nline two", "lang": "de"}
    assert rows[1].line == 5  # the line its record ends on, for sentences about it


def test_csv_rows_with_an_id_column_keep_their_own_ids_and_a_blank_id_its_row_number(tmp_path):
    path = write(tmp_path, "d.csv", "id,text\nq-1,first\n,second\nq-3,third\n")
    assert [r.id for r in read_rows(path, template="{{text}}")] == ["q-1", "2", "q-3"]


def test_a_csv_needs_a_template_and_its_placeholders_must_name_columns(tmp_path):
    path = write(tmp_path, "d.csv", "text\nhello\n")
    assert "--prompt-template" in refusal(path)
    said = refusal(path, template="{{body}}")
    assert said.startswith(f"{path}:2: --prompt-template uses {{{{body}}}}") and "(it has: text)" in said


def test_a_csv_row_with_more_fields_than_its_header_names_its_line(tmp_path):
    path = write(tmp_path, "d.csv", "text\nhello\na,b\n")
    assert refusal(path, template="{{text}}") == f"{path}:3 has more fields than the header names."


# --- every format ---


@pytest.mark.parametrize("name, text, template", [
    ("p.jsonl", '{"id": "x", "prompt": "a"}\n{"id": "y", "prompt": "b"}\n{"id": "x", "prompt": "c"}\n', None),
    ("d.csv", "id,text\nx,a\nx,b\n", "{{text}}"),
])
def test_a_duplicate_id_is_refused_naming_both_lines(tmp_path, name, text, template):
    path = write(tmp_path, name, text)
    said = refusal(path, template=template)
    assert "the id 'x' that line 1" in said or "the id 'x' that line 2" in said, said
    assert said.startswith(f"{path}:3"), said


@pytest.mark.parametrize("name, content, words", [
    ("p.md", "x", "is not a batch input"),
    ("empty.txt", "\n \n", "has no rows"),
    ("bad.txt", b"\xff\xfe", "is not UTF-8"),
])
def test_a_file_that_holds_no_rows_is_refused(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert words in refusal(path)


def test_a_missing_file_or_a_folder_is_refused(tmp_path):
    assert "does not exist" in refusal(tmp_path / "nope.txt")
    (tmp_path / "dir.txt").mkdir()
    assert "is a directory" in refusal(tmp_path / "dir.txt")


def test_fill_leaves_text_without_placeholders_alone_and_names_the_first_missing_one():
    assert fill("{{a}}-{{ b }}-{c}", {"a": "1", "b": "2"}, where="x") == "1-2-{c}"
    with pytest.raises(UsageError, match=r"^x: --prompt-template uses \{\{c\}\}"):
        fill("{{c}}", {}, where="x")


# --- a row as a request ---


def test_a_prompt_row_is_sent_with_the_spec_system_prompt_parameters_and_response_format():
    spec = Spec(model="m", system="terse", params={"temperature": 0.2, "max_tokens": 5},
                response_format={"type": "json_object"})
    body = body_of(Row(id="1", line=1, prompt="hi"), spec)
    assert body == {"model": "m", "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"}],
                    "temperature": 0.2, "max_tokens": 5, "response_format": {"type": "json_object"}}
    assert "stream" not in body


def test_a_messages_row_gets_the_spec_system_prompt_only_when_it_has_none_of_its_own():
    spec = Spec(model="m", system="terse")
    own = ({"role": "developer", "content": "mine"}, {"role": "user", "content": "hi"})
    assert messages_of(Row(id="1", line=1, messages=own), spec) == list(own)
    bare = ({"role": "user", "content": "hi"},)
    assert messages_of(Row(id="1", line=1, messages=bare), spec) == [{"role": "system", "content": "terse"}, *bare]
    assert messages_of(Row(id="1", line=1, messages=bare), Spec(model="m")) == list(bare)


def test_the_body_hash_is_the_same_whatever_order_the_keys_came_in_and_changes_with_any_value():
    a = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    b = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert body_hash(a) == body_hash(b)
    assert body_hash(a) != body_hash({**a, "temperature": 0.1})


def test_lines_are_split_at_newlines_only_and_a_byte_order_mark_is_not_text(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("one\u2028still one\r\ntwo\x0cstill two\n", encoding="utf-8")
    assert [(r.id, r.prompt) for r in read_rows(txt)] == [("1", "one\u2028still one"), ("2", "two\x0cstill two")]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"id": "a", "prompt": "x\u2028y"}\n', encoding="utf-8")  # a raw U+2028 inside a JSON string
    assert [(r.id, r.prompt) for r in read_rows(jsonl)] == [("a", "x\u2028y")]
    csv_file = tmp_path / "d.csv"
    csv_file.write_bytes("\ufeffid,text\nr1,hello\n".encode())  # as Excel saves it
    assert [(r.id, r.prompt) for r in read_rows(csv_file, template="{{id}}: {{text}}")] == [("r1", "r1: hello")]
