"""`chatcli config check` and [models."NAME"] tables: a table whose name matches no model
chatcli knows and none the server lists applies to nothing, and check says so, with the
close matches, while the exit code stays 0."""

from __future__ import annotations

from chatcli.base.errors import EXIT_OK
from tests.support.keys import KEYS
from tests.support.profiles import write_config
from tests.support.running import free_port


def warnings(result) -> list[str]:
    assert result.returncode == EXIT_OK, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("chatcli: warning: ") for line in lines), result.stderr
    return [line.removeprefix("chatcli: warning: ") for line in lines]


def test_tables_for_known_or_listed_models_pass_and_the_others_are_named_with_close_matches(srv, other, run_chatcli):
    srv.models = ["llama3.2", "mistral-small-2503"]
    other.models = ["qwen3:8b", "gemma3:4b"]
    path = write_config(f"""
[models."gpt-4o-2024-08-06"]
context_window = 128000
[models."openai/o3-mini"]
max_tokens_param = "max_completion_tokens"
[models."llama3.2"]
context_window = 131072
[models."lama3.2"]
context_window = 131072
[models."mistral-small"]  # applies to its dated version, which the server lists
context_window = 32768

[profiles.local]
base_url = "{other.base_url}"
api_key_env = "OTHER_KEY"
[profiles.local.models."qwen3"]
context_window = 40960
[profiles.local.models."gemma3:4b"]
context_window = 131072
""")

    result = run_chatcli("config", "check", env=KEYS)

    said = warnings(result)
    assert result.stdout == f"ok: {path}\n"
    assert len(said) == 2, said
    assert said[0].startswith(f'[models."lama3.2"] in {path} names no model chatcli knows or the server at '
                              f"{srv.base_url} lists, so it applies to none")
    assert said[0].endswith("; did you mean llama3.2?")
    assert said[1].startswith(f'[profiles.local.models."qwen3"] in {path} names no model chatcli knows or the '
                              f"server at {other.base_url} lists")
    assert "did you mean qwen3:8b" in said[1]
    # Each server was asked once, for its list, and nothing was sent to a model.
    assert [(r.method, r.path) for r in srv.requests] == [("GET", "/v1/models")]
    assert [(r.method, r.path) for r in other.requests] == [("GET", "/v1/models")]


def test_known_names_need_no_server(srv, run_chatcli):
    write_config('[models."gpt-4.1-mini"]\nmax_output_tokens = 1000\n[models."o3-pro"]\nefforts = ["high"]\n')
    assert warnings(run_chatcli("config", "check")) == []
    assert srv.requests == []


def test_a_server_that_cannot_be_asked_is_said_once_and_the_known_tables_still_count(run_chatcli):
    down = f"http://127.0.0.1:{free_port()}/v1"
    path = write_config(f'base_url = "{down}"\n[models."gpt-5-mini"]\nencoding = "o200k_base"\n'
                        '[models."gtp-4o"]\ncontext_window = 1000\n[models."local-thing"]\ncontext_window = 1000\n')

    said = warnings(run_chatcli("config", "check", env={"OPENAI_BASE_URL": ""}))

    assert len(said) == 3, said
    assert said[0].startswith(f"the [models] names in {path} could not be checked against the server at {down} (")
    assert said[0].endswith("they were checked against chatcli's own tables only.")
    assert said[1].startswith(f'[models."gtp-4o"] in {path} names no model chatcli knows (the server could not be '
                              "asked), so it may apply to none; did you mean gpt-4o")
    assert said[2].startswith('[models."local-thing"]') and said[2].endswith("so it may apply to none.")


def test_a_model_id_from_the_server_never_reaches_the_terminal_as_a_control_sequence(srv, run_chatcli):
    srv.models = ["llama3.2\x1b[2J\x07"]
    write_config('[models."llama3"]\ncontext_window = 1000\n')
    said = warnings(run_chatcli("config", "check"))
    assert len(said) == 1 and said[0].endswith("did you mean llama3.2?")  # the sequence taken out whole
    assert "\x1b" not in "".join(said) and "\x07" not in "".join(said)
