"""Global flags before or after a subcommand: `chatcli --db X sessions list` is
`chatcli sessions list --db X`, and neither is a question for the model.

An alias or a wrapper script puts its flags first (alias work='chatcli --config
~/work.toml'); `work config check` must check that file, not ask the model about it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_OK, EXIT_USAGE
from tests.support.keys import KEYS
from tests.support.profiles import two_profiles, write_config
from tests.support.running import CHATCLI, bash_completes, error_line, ok
from tests.support.server import Reply


def test_config_check_after_config_checks_that_file(srv, run_chatcli, tmp_path: Path):
    path = tmp_path / "work.toml"
    path.write_text('model = "gpt-4o"\n')

    for args in (["--config", str(path), "config", "check"], ["config", "check", "--config", str(path)],
                 [f"--config={path}", "config", "check"]):
        result = run_chatcli(*args)
        assert (result.returncode, result.stdout) == (EXIT_OK, f"ok: {path}\n"), result.stderr
    assert srv.chat_requests == []


@pytest.mark.parametrize("where", ["before", "between", "after"])
def test_db_goes_before_or_after_sessions_and_its_action(srv, run_chatcli, tmp_path: Path, where):
    other_db = tmp_path / "elsewhere.db"
    srv.script(Reply("Saved over there."))
    ok(run_chatcli("--db", str(other_db), "a question for the other database"))
    db = ["--db", str(other_db)]
    args = {"before": [*db, "sessions", "list"], "between": ["sessions", *db, "list"],
            "after": ["sessions", "list", *db]}[where]

    out = ok(run_chatcli(*args)).stdout
    assert [line.split("\t")[1] for line in out.splitlines()[1:]] == ["a question for the other database"]
    assert len(srv.chat_requests) == 1  # the one that made the session; listing asks nothing
    assert ok(run_chatcli("sessions", "list")).stdout == "No saved sessions yet.\n"  # none in the default one


def test_usage_takes_db_before_it(srv, run_chatcli, tmp_path: Path):
    srv.script(Reply("Counted."))
    ok(run_chatcli("--db", str(tmp_path / "x.db"), "count me"))
    out = ok(run_chatcli("--db", str(tmp_path / "x.db"), "usage", "--days", "1")).stdout
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1] != "0"
    assert len(srv.chat_requests) == 1


def test_models_takes_the_profile_and_verbose_before_it(srv, other, run_chatcli):
    two_profiles(srv, other)
    other.models = ["llama3.2", "qwen3"]

    for args in (["-p", "other", "models"], ["models", "-p", "other"], ["-pother", "-v", "models"]):
        result = run_chatcli(*args, env=KEYS)
        assert (result.returncode, result.stdout) == (EXIT_OK, "llama3.2\nqwen3\n"), result.stderr
    assert "GET" in result.stderr and "/models" in result.stderr  # -v: the request is logged
    assert srv.requests == [] and other.chat_requests == []


def test_base_url_before_models_is_the_server_asked(srv, run_chatcli):
    srv.models = ["only-here"]
    result = run_chatcli("--base-url", srv.base_url, "models", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert (result.returncode, result.stdout) == (EXIT_OK, "only-here\n"), result.stderr


@pytest.mark.parametrize(
    ("args", "flag", "takes"),
    [
        (["--plain", "sessions", "list"], "--plain", "it takes --db and --config"),
        (["-m", "gpt-4o", "models"], "-m", "it takes --profile, --base-url, --config, --verbose and --log-file"),
        (["--no-save", "config", "check"], "--no-save", "it takes --profile, --config, --verbose and --log-file"),
        (["-p", "work", "usage"], "-p", "it takes --db and --config"),
    ],
)
def test_a_flag_the_subcommand_does_not_take_is_a_usage_error_not_a_question(srv, run_chatcli, args, flag, takes):
    result = run_chatcli(*args)

    line = error_line(result, EXIT_USAGE)
    name = next(a for a in args if not a.startswith("-") and a not in ("gpt-4o", "work"))
    assert line.startswith(f"chatcli: {name} does not take {flag} ({takes}); "), line
    assert result.stdout == "" and srv.requests == []


def test_a_question_is_still_a_question(srv, run_chatcli):
    srv.script(Reply("One."), Reply("Two."), Reply("Three."))
    assert ok(run_chatcli("config check")).stdout == "One.\n"  # one quoted word is not a subcommand
    assert ok(run_chatcli("-m", "gpt-4o", "what", "are", "models")).stdout == "Two.\n"  # not where a question begins
    assert ok(run_chatcli("--", "sessions", "list")).stdout == "Three.\n"  # after --, only words
    sent = [r.body["messages"][-1]["content"] for r in srv.chat_requests]
    assert sent == ["config check", "what are models", "sessions list"]


def test_help_before_a_subcommand_is_the_subcommands_help(run_chatcli):
    result = run_chatcli("--db", "x.db", "--help", "sessions")
    assert result.returncode == EXIT_OK and result.stdout.startswith("usage: chatcli sessions")
    assert "--db" in run_chatcli("sessions", "list", "--help").stdout


def test_bash_completes_a_subcommand_after_global_flags(srv, run_chatcli, monkeypatch):
    script = run_chatcli("--completion", "bash").stdout
    monkeypatch.setenv("PATH", f"{CHATCLI.parent}{os.pathsep}{os.environ.get('PATH', '')}")

    assert bash_completes(script, "--config", "work.toml", "config", "ch") == ["check"]
    assert "list" in bash_completes(script, "--db", "x.db", "sessions", "")
    assert bash_completes(script, "sessions", "list", "--d") == ["--db"]  # an action given: its flags, not --model
    assert bash_completes(script, "usage", "--da") == ["--days"]
    write_config("[profiles.work]\nmodel = \"gpt-4o\"\n")
    assert bash_completes(script, "models", "-p", "w") == ["work"]
