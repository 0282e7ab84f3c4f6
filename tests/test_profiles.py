"""Profiles: [profiles.NAME] in the config file, chosen with -p, CHATCLI_PROFILE, `profile`
or /profile; and Azure OpenAI through one. Each test checks, at the test servers, where a
request went and with which key and headers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_CONFIG, ConfigError
from chatcli.config.settings import load_config
from tests.support.keys import KEYS, OTHER_KEY, TEST_KEY
from tests.support.profiles import two_profiles, write_config
from tests.support.pty import ask, expect_prompt, quit_with_ctrl_d, visible
from tests.support.running import CHATCLI, bash_completes, make_env
from tests.support.server import ChatServer
from tests.support.sessions import make_session

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


# --------------------------------------------------------------------------- #
# choosing a profile
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("how", ["-p", "--profile", "CHATCLI_PROFILE", "profile key"])
def test_a_profile_chosen_any_way_sends_to_its_server_with_its_key_and_headers(srv, other, run_chatcli, how):
    two_profiles(srv, other, top='profile = "other"' if how == "profile key" else "")
    args = [how, "other"] if how.startswith("-") else []
    env = {**KEYS, "CHATCLI_PROFILE": "other"} if how == "CHATCLI_PROFILE" else KEYS

    result = run_chatcli(*args, "hello", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"
    assert srv.chat_requests == []
    (request,) = other.chat_requests
    assert request.headers["authorization"] == f"Bearer {OTHER_KEY}"
    assert request.headers["x-profile"] == "other" and request.headers["x-title"] == "chatcli"
    assert request.body["model"] == "llama3.2"


def test_the_flag_beats_the_environment_which_beats_the_file(srv, other, run_chatcli):
    two_profiles(srv, other, top='profile = "main"')

    run_chatcli("first", env={**KEYS, "CHATCLI_PROFILE": "other"})
    run_chatcli("-p", "main", "second", env={**KEYS, "CHATCLI_PROFILE": "other"})

    assert [r.body["messages"][-1]["content"] for r in other.chat_requests] == ["first"]
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == ["second"]


def test_flags_go_over_the_profile(srv, other, run_chatcli):
    two_profiles(srv, other)

    run_chatcli("-p", "other", "--model", "qwen2.5", "-t", "0.3", "hi", env=KEYS)

    assert other.chat_requests[0].body["model"] == "qwen2.5"
    assert other.chat_requests[0].body["temperature"] == 0.3


def test_the_openai_key_is_never_sent_to_a_profiles_own_server(srv, other, run_chatcli):
    # OPENAI_API_KEY is exported (as chat_env does) for OpenAI; a local server's profile names no key.
    other.api_key = None
    write_config(f'[profiles.local]\nbase_url = "{other.base_url}"\nmodel = "llama3.2"\n')

    result = run_chatcli("-p", "local", "hi")

    assert result.returncode == 0, result.stderr
    (request,) = other.chat_requests
    assert TEST_KEY not in str(request.headers)
    assert request.headers["authorization"] == "Bearer no-key"  # the SDK insists on one; a local server ignores it


def test_a_profile_on_the_same_server_keeps_the_key_and_changes_the_rest(srv, run_chatcli):
    write_config('[profiles.terse]\nsystem = "Answer in one word."\ntemperature = 1.3\nmax_tokens = 50\n')

    result = run_chatcli("-p", "terse", "hi")

    assert result.returncode == 0, result.stderr
    (request,) = srv.chat_requests
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert request.body["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert (request.body["temperature"], request.body["max_tokens"]) == (1.3, 50)


def test_headers_at_the_top_do_not_follow_a_profile_to_another_server(srv, other, run_chatcli):
    two_profiles(srv, other, top='[headers]\nX-Secret-Gateway = "only-for-openai"\n')
    # [headers] at the top is a table: the profiles after it must not land inside it.
    path = Path.home() / "config" / "chatcli" / "config.toml"
    assert "X-Secret-Gateway" in tomllib.loads(path.read_text())["headers"]

    run_chatcli("plain", env=KEYS)
    run_chatcli("-p", "other", "profiled", env=KEYS)

    assert srv.chat_requests[0].headers["x-secret-gateway"] == "only-for-openai"
    assert "x-secret-gateway" not in other.chat_requests[0].headers


def test_a_profiles_model_figures_add_to_the_files() -> None:
    write_config('[models."llama3.2"]\nencoding = "cl100k_base"\n'
                 '[profiles.local]\nbase_url = "http://localhost:11434/v1"\n'
                 '[profiles.local.models."llama3.2"]\ncontext_window = 131072\n')

    config = load_config(make_env(), flags={"profile": "local"})

    assert config.models["llama3.2"] == {"encoding": "cl100k_base", "context_window": 131072}
    assert config.profile == "local" and config.profiles == ("local",)


# --------------------------------------------------------------------------- #
# what goes wrong: one sentence, exit 3
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("text", "args", "env", "says"),
    [
        ('[profiles.a]\nmodel = "x"\n', ["-p", "nosuch"], {}, "There is no profile 'nosuch' in {path} (the file has a)"),
        ("", ["-p", "nosuch"], {}, "There is no profile 'nosuch' in {path} (the file has none)"),
        (None, ["-p", "nosuch"], {}, "There is no profile 'nosuch': there is no config file at {path}; add [profiles.nosuch] there."),
        ('[profiles.a]\nmodel = "x"\n', [], {"CHATCLI_PROFILE": "b"}, "There is no profile 'b'"),
        ('[profiles.or]\nbase_url = "https://openrouter.ai/api/v1"\napi_key_env = "OPENROUTER_API_KEY"\n', ["-p", "or"], {},
         "No API key: the profile 'or' reads it from OPENROUTER_API_KEY, which is not set; export OPENROUTER_API_KEY=..."),
        ('[profiles.a]\nmodle = "x"\n', ["-p", "a"], {}, "[profiles.a] in {path}: unknown key 'modle'. Did you mean 'model'?"),
        ('[profiles.a]\ndb = "/tmp/x.db"\n', [], {}, "[profiles.a] in {path}: 'db' cannot be set in a profile"),
        ('[profiles.a]\ntemperature = 9\n', [], {}, "'temperature' in [profiles.a] in {path} must be a number from 0 to 2, not 9."),
        ('[profiles.a]\nheaders = { "Bad Header" = "x" }\n', [], {}, "'Bad Header' is not a valid HTTP header name"),
        ('[profiles.a]\nheaders = { "X-A" = "line\\nbreak" }\n', [], {}, "the header X-A must be a string of printable ASCII"),
        ('[profiles.a]\nheaders = { "X-A" = " padded " }\n', [], {}, "the header X-A must be a string of printable ASCII characters, without spaces"),
        ('headers = { "Content-Length" = "1" }\n', [], {}, "the header Content-Length is set by the HTTP client itself; leave it out."),
        ('api_type = "azure"\n', [], {"OPENAI_BASE_URL": ""}, "Azure OpenAI needs base_url: your resource's endpoint"),
        ('[profiles.a.models."m"]\ncontext_window = 1\n', [], {}, "[profiles.a] in {path}"),
        ('[profiles."a b"]\nmodel = "x"\n', [], {}, "the profile name 'a b' must be letters, digits"),
        ('profiles = 3\n', [], {}, "'profiles' must hold tables"),
        ('[profiles.az]\napi_type = "azure"\nbase_url = "https://r.openai.azure.com"\n', ["-p", "az"], {},
         "No API key is set for Azure OpenAI at https://r.openai.azure.com"),
        ('proxy = "socks5://127.0.0.1:1080"\n', [], {}, "The proxy URL 'socks5://127.0.0.1:1080' must be a full http:// or https:// URL"),
        ('ca_bundle = "/nonexistent/ca.pem"\n', [], {}, "The CA bundle /nonexistent/ca.pem does not exist"),
    ],
)
def test_a_bad_profile_is_one_sentence_and_exit_3(run_chatcli, text, args, env, says):
    path = write_config(text) if text is not None else Path.home() / "config" / "chatcli" / "config.toml"

    result = run_chatcli(*args, "hi", env=env)

    assert result.returncode == EXIT_CONFIG
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert says.format(path=path) in result.stderr


def test_config_show_masks_header_values_and_names_the_profiles(srv, other, run_chatcli):
    two_profiles(srv, other)

    result = run_chatcli("config", "show", "-p", "other", env=KEYS)

    assert result.returncode == 0, result.stderr
    assert 'profile = "other"' in result.stdout
    assert 'headers = { "X-Profile" = "***", "X-Title" = "***" }' in result.stdout
    assert "# profiles: main, other" in result.stdout
    assert OTHER_KEY not in result.stdout


def test_chatcli_models_lists_a_profiles_server(srv, other, run_chatcli):
    two_profiles(srv, other)
    other.models = ["llama3.2", "qwen2.5"]

    result = run_chatcli("models", "-p", "other", env=KEYS)

    assert result.stdout == "llama3.2\nqwen2.5\n"
    assert other.requests[-1].headers["authorization"] == f"Bearer {OTHER_KEY}"


# --------------------------------------------------------------------------- #
# Azure OpenAI, through the SDK's Azure client
# --------------------------------------------------------------------------- #


def azure_profile(srv: ChatServer, extra: str = "") -> None:
    write_config(f'[profiles.azure]\napi_type = "azure"\nbase_url = "{srv.url}"\n'
                 f'api_key_env = "AZURE_OPENAI_API_KEY"\nmodel = "gpt-4o-mini"\n{extra}')


def test_azure_sends_to_the_deployment_with_the_api_version_and_an_api_key_header(srv, run_chatcli):
    azure_profile(srv, 'azure_deployment = "prod-4o"\napi_version = "2025-01-01-preview"\n')

    result = run_chatcli("-p", "azure", "-v", "hi", env={"AZURE_OPENAI_API_KEY": TEST_KEY})

    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hi\n"
    (request,) = srv.chat_requests
    assert request.path == "/openai/deployments/prod-4o/chat/completions?api-version=2025-01-01-preview"
    assert f"POST {srv.url}{request.path}: model gpt-4o-mini" in result.stderr  # the log says where it went
    assert request.headers["api-key"] == TEST_KEY
    assert "authorization" not in request.headers


def test_azure_without_a_deployment_uses_the_model_name_and_the_default_api_version(srv, run_chatcli):
    azure_profile(srv)

    run_chatcli("-p", "azure", "-m", "gpt-4o", "hi", env={"AZURE_OPENAI_API_KEY": TEST_KEY})

    assert srv.chat_requests[0].path == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"


def test_azure_rejecting_the_key_says_so(srv, run_chatcli):
    srv.api_key = TEST_KEY
    azure_profile(srv)

    result = run_chatcli("-p", "azure", "hi", env={"AZURE_OPENAI_API_KEY": "wrong-" + OTHER_KEY})

    assert result.returncode == EXIT_CONFIG
    assert "rejected the API key (401)" in result.stderr
    assert OTHER_KEY not in result.stderr


# --------------------------------------------------------------------------- #
# the profiles in config.example.toml
# --------------------------------------------------------------------------- #

EXAMPLE_KEYS = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY", "openrouter": "OPENROUTER_API_KEY"}


@pytest.mark.parametrize("name", ["openai", "azure", "openrouter", "ollama", "vllm", "lmstudio"])
def test_each_example_profile_works_as_written(srv, run_chatcli, name):
    """The example file copied into place; only the server is ours (--base-url over the profile)."""
    write_config(EXAMPLE.read_text(encoding="utf-8"))
    profile = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["profiles"][name]
    variable = EXAMPLE_KEYS.get(name)
    env = {variable: TEST_KEY} if variable else {}
    url = srv.url if name == "azure" else srv.base_url

    result = run_chatcli("-p", name, "--base-url", url, "hi", env={"OPENAI_API_KEY": "", **env})

    assert result.returncode == 0, result.stderr
    (request,) = srv.chat_requests
    assert request.body["model"] == profile["model"]
    if name == "azure":
        assert request.path.startswith(f"/openai/deployments/{profile['model']}/chat/completions?api-version=")
        assert request.headers["api-key"] == TEST_KEY
    else:
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {TEST_KEY if variable else 'no-key'}"
    for header, value in profile.get("headers", {}).items():
        assert request.headers[header.lower()] == value


# --------------------------------------------------------------------------- #
# /profile in a session: the REPL in a real pty, two servers
# --------------------------------------------------------------------------- #


def test_profile_switches_a_running_session_between_two_servers(srv, other, spawn_chatcli, run_chatcli):
    srv.api_key = TEST_KEY
    two_profiles(srv, other)
    child = spawn_chatcli("-p", "main", env=KEYS)
    assert "profile main: gpt-4o-mini" in visible(expect_prompt(child))  # the banner

    ask(child, "first question")
    child.send("/profile\r")
    listing = visible(expect_prompt(child))
    child.send("/profile other\r")
    switched = visible(expect_prompt(child))
    ask(child, "second question")
    child.send("/profile nosuch\r")
    refused = visible(expect_prompt(child))
    ask(child, "third question")
    quit_with_ctrl_d(child)

    assert "Profile: main" in listing
    assert "* main" in listing and "  other" in listing and other.base_url in listing
    assert f"Profile other: llama3.2 at {other.base_url}." in switched
    assert "There is no profile 'nosuch'" in refused
    # The first went to main with its key; the rest to other, with its key, headers and model,
    # carrying the conversation so far.
    (first,) = srv.chat_requests
    assert first.headers["authorization"] == f"Bearer {TEST_KEY}" and first.headers["x-profile"] == "main"
    second, third = other.chat_requests
    for request in (second, third):
        assert request.headers["authorization"] == f"Bearer {OTHER_KEY}"
        assert request.headers["x-profile"] == "other"
        assert request.body["model"] == "llama3.2"
    assert [m["content"] for m in second.body["messages"]] == ["first question", "echo: first question", "second question"]
    assert OTHER_KEY not in child.logfile_read.getvalue()
    # The session was left on "other": continuing it goes there, though it began on "main".
    assert run_chatcli("-c", "fourth question", env=KEYS).returncode == 0
    assert other.chat_requests[-1].body["messages"][-1]["content"] == "fourth question"


def test_profile_completes_the_files_profile_names(srv, other):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from chatcli.commands import REGISTRY
    from chatcli.ui.prompt import make_prompt_session

    two_profiles(srv, other)
    config = load_config(make_env(environ={**KEYS, "HOME": str(Path.home()), "XDG_CONFIG_HOME": str(Path.home() / "config")}))
    session = make_session(config=config, model=config.model)
    with create_pipe_input() as pipe:  # the prompt the REPL builds, with its completer
        prompt = make_prompt_session(session, REGISTRY, history=InMemoryHistory(), input=pipe, output=DummyOutput())

        names = [c.text for c in prompt.completer.get_completions(Document("/profile o"), CompleteEvent())]

    assert names == ["other"]


def test_profile_without_profiles_available_says_so(srv):
    from chatcli.commands import REGISTRY
    from chatcli.config.settings import Config

    session = make_session(config=Config(base_url=srv.base_url), model="m")

    result = REGISTRY.dispatch(session, "/profile other")

    assert result.error and result.text == "Profiles are not available here."


def test_a_profile_that_cannot_be_used_leaves_the_session_where_it_was(srv, other):
    from chatcli.commands import REGISTRY
    from chatcli.config.settings import Profiles

    two_profiles(srv, other)
    env = make_env(environ={"MAIN_KEY": TEST_KEY, "HOME": str(Path.home()), "XDG_CONFIG_HOME": str(Path.home() / "config")})
    config = load_config(env, flags={"profile": "main"})
    session = make_session(config=config, model=config.model, profiles=Profiles(env))

    result = REGISTRY.dispatch(session, "/profile other")  # OTHER_KEY is not set

    assert result.error and "reads it from OTHER_KEY, which is not set" in result.text
    assert session.client.config.profile == "main" and session.model == "gpt-4o-mini"
    with pytest.raises(ConfigError):
        Profiles(env).load("other")


# --------------------------------------------------------------------------- #
# keys go only where they are meant to (from a review)
# --------------------------------------------------------------------------- #


def test_api_key_env_wins_over_an_exported_openai_api_key(srv, run_chatcli):
    srv.api_key = OTHER_KEY
    write_config(f'base_url = "{srv.base_url}"\napi_key_env = "OPENROUTER_API_KEY"\n[profiles.fast]\nmodel = "m2"\n')

    plain = run_chatcli("hi", env={"OPENROUTER_API_KEY": OTHER_KEY})  # OPENAI_API_KEY is exported too
    profiled = run_chatcli("-p", "fast", "hi", env={"OPENROUTER_API_KEY": OTHER_KEY})

    assert (plain.returncode, profiled.returncode) == (0, 0), plain.stderr + profiled.stderr
    assert [r.headers["authorization"] for r in srv.chat_requests] == [f"Bearer {OTHER_KEY}"] * 2


def test_another_provider_on_the_same_host_does_not_get_the_key(srv, run_chatcli):
    # One gateway, two providers: srv.url + /v1 is "openai" (OPENAI_BASE_URL), srv.url + /groq/v1 another.
    write_config(f'[profiles.groq]\nbase_url = "{srv.url}/groq/v1"\n')

    result = run_chatcli("-p", "groq", "hi")

    assert result.returncode == 0, result.stderr
    assert srv.chat_requests[0].path == "/groq/v1/chat/completions"
    assert srv.chat_requests[0].headers["authorization"] == "Bearer no-key"


def test_a_dotenv_cannot_choose_the_key_variable_the_proxy_or_the_authorities(srv, other, run_chatcli):
    other.api_key = None
    Path(".env").write_text(f"CHATCLI_BASE_URL={other.base_url}\nCHATCLI_API_KEY_ENV=GITHUB_TOKEN\n"
                            "CHATCLI_PROXY=http://127.0.0.1:9\nCHATCLI_CA_BUNDLE=/etc/hostname\n")

    result = run_chatcli("hi", env={"GITHUB_TOKEN": "ghp_" + OTHER_KEY, "OPENAI_BASE_URL": ""})

    assert result.returncode == 0, result.stderr  # no proxy at port 9, no bad bundle: both ignored
    assert OTHER_KEY not in str(other.chat_requests[0].headers)


def test_the_401_names_the_variable_the_key_came_from(srv, run_chatcli):
    srv.api_key = TEST_KEY
    write_config(f'[profiles.or]\nbase_url = "{srv.base_url}"\napi_key_env = "OPENROUTER_API_KEY"\n')

    result = run_chatcli("-p", "or", "hi", env={"OPENROUTER_API_KEY": "wrong-" + OTHER_KEY})

    assert result.returncode == EXIT_CONFIG
    assert result.stderr == f"chatcli: The server at {srv.base_url} rejected the API key (401); check OPENROUTER_API_KEY.\n"


def test_switching_profiles_leaves_nothing_of_the_last_one(srv, other):
    from chatcli.commands import REGISTRY
    from chatcli.config.settings import Profiles

    other.api_key = None
    write_config(f'temperature = 0.7\n[profiles.a]\nbase_url = "{srv.base_url}"\nmax_tokens = 100\n'
                 f'[profiles.b]\nbase_url = "http://me:pw-secret@127.0.0.1:{other.url.rsplit(":", 1)[1]}/v1"\nmodel = "llama3.2"\n')
    env = make_env(environ={"HOME": str(Path.home()), "XDG_CONFIG_HOME": str(Path.home() / "config")})
    config = load_config(env, flags={"profile": "a"})
    session = make_session(config=config, model=config.model, params={"max_tokens": 100, "temperature": 0.7},
                      profiles=Profiles(env))
    REGISTRY.dispatch(session, "/set temperature 1.5")
    REGISTRY.dispatch(session, "/set seed 7")

    listing = REGISTRY.dispatch(session, "/profile").rows
    result = REGISTRY.dispatch(session, "/profile b")
    session.send("hi")

    assert not result.error, result.text
    assert "pw-secret" not in str(listing) and "me:***@" in str(listing)
    body = other.chat_requests[0].body
    assert "max_tokens" not in body  # profile a's, not b's
    assert body["temperature"] == 0.7  # what chatcli -p b starts with
    assert body["seed"] == 7  # /set's own stays


def test_config_profiles_lists_the_names_and_bash_completes_them_after_p(srv, other, run_chatcli, monkeypatch):
    import os


    two_profiles(srv, other)

    assert run_chatcli("config", "profiles").stdout == "main\nother\n"
    script = run_chatcli("--completion", "bash").stdout
    monkeypatch.setenv("PATH", f"{CHATCLI.parent}{os.pathsep}{os.environ.get('PATH', '')}")  # bash runs chatcli

    assert bash_completes(script, "-p", "o") == ["other"]
    assert bash_completes(script, "--profile", "") == ["main", "other"]
    assert bash_completes(script, "config", "pro") == ["profiles"]


def test_an_empty_profile_flag_chooses_no_profile(srv, other, run_chatcli):
    two_profiles(srv, other, top='profile = "other"')

    result = run_chatcli("-p", "", "hi", env=KEYS)

    assert result.returncode == 0, result.stderr
    assert len(srv.chat_requests) == 1 and other.chat_requests == []


def test_a_relative_ca_bundle_in_the_file_is_beside_the_file(tmp_path):
    import trustme

    path = write_config('ca_bundle = "certs/corp.pem"\n')
    (path.parent / "certs").mkdir()
    trustme.CA().cert_pem.write_to_path(str(path.parent / "certs" / "corp.pem"))

    config = load_config(make_env())  # run from the test's working directory, not the file's

    assert config.ca_bundle == str(path.parent / "certs" / "corp.pem")


# --------------------------------------------------------------------------- #
# a resumed session goes back to the profile it was held with
# --------------------------------------------------------------------------- #


def test_continuing_a_session_goes_back_to_its_profiles_server(srv, other, run_chatcli):
    two_profiles(srv, other, top='profile = "main"')

    first = run_chatcli("-p", "other", "private question", env=KEYS)
    again = run_chatcli("-c", "and a follow-up", env=KEYS)  # the file's default is main
    elsewhere = run_chatcli("-c", "-p", "main", "now over there", env=KEYS)  # said outright: main

    assert (first.returncode, again.returncode, elsewhere.returncode) == (0, 0, 0), again.stderr + elsewhere.stderr
    assert [r.body["messages"][-1]["content"] for r in other.chat_requests] == ["private question", "and a follow-up"]
    assert other.chat_requests[1].headers["authorization"] == f"Bearer {OTHER_KEY}"
    (moved,) = srv.chat_requests
    assert [m["content"] for m in moved.body["messages"]][-1] == "now over there"


def test_a_session_whose_profile_is_gone_is_not_sent_elsewhere(srv, other, run_chatcli):
    two_profiles(srv, other)
    run_chatcli("-p", "other", "private question", env=KEYS)
    write_config(f'[profiles.main]\nbase_url = "{srv.base_url}"\n')  # "other" is no more

    result = run_chatcli("-c", "and a follow-up", env=KEYS)

    assert result.returncode == EXIT_CONFIG
    assert result.stderr.startswith("chatcli: Session 1 was held with the profile 'other', which cannot be used now "
                                    "(There is no profile 'other' in")
    assert result.stderr.endswith("choose where it goes on with -p NAME.\n")
    assert srv.chat_requests == [] and len(other.chat_requests) == 1


def test_resume_in_a_session_goes_back_to_that_sessions_profile(srv, other, run_chatcli):
    from chatcli.commands import REGISTRY
    from chatcli.config.settings import Profiles
    from chatcli.core.journal import Journal

    two_profiles(srv, other)
    run_chatcli("-p", "other", "held on other", env=KEYS)  # session 1
    env = make_env(environ={**KEYS, "HOME": str(Path.home()), "XDG_CONFIG_HOME": str(Path.home() / "config")})
    config = load_config(env, flags={"profile": "main"})
    journal = Journal.open(Path.home() / "data" / "chatcli" / "chatcli.db")
    session = make_session(config=config, model=config.model, journal=journal, profiles=Profiles(env))

    result = REGISTRY.dispatch(session, "/resume 1")
    session.send("more")

    assert not result.error, result.text
    assert session.client.config.profile == "other" and session.model == "llama3.2"
    assert [m["content"] for m in other.chat_requests[-1].body["messages"]] == ["held on other", "echo: held on other", "more"]
    assert srv.chat_requests == []
