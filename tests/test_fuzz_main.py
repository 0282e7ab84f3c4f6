"""Property test: whatever argv, environment and stdin chatcli is started with, it never takes
the internal-error path (cli.main's last resort, which writes crash.log and calls it a bug).

main() runs in this process, as tests/conftest.py's run_in_process runs it, with streams that
encode as the real ones do: stdout strict UTF-8, stderr with backslashreplace, stdin decoded
from bytes. The server is tests/support/server.py on 127.0.0.1 (or a closed port), with no retries.

Nothing here may touch the machine: every file name drawn is a bare name in the example's own
working directory (tests run as root), no command is run (CHATCLI_API_KEY_CMD is never drawn,
and stdin is never a terminal, so no editor starts), and nothing leaves 127.0.0.1: base URLs
come from a fixed list, and NO_PROXY always names 127.0.0.1, so a proxy variable is parsed
(by chatcli and by httpx2) but never used.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from chatcli.commands.params import PARAMS
from chatcli.config.table import SETTINGS
from tests.support.keys import OUTPUTS, TEST_KEY
from tests.support.running import call_main
from tests.support.strategies import any_text, as_env_text, valid_value

pytestmark = pytest.mark.timeout(120)

# About 15 s for 150 examples. A longer hunt: CHATCLI_FUZZ_EXAMPLES=3000 pytest -p no:timeout tests/test_fuzz_main.py
MAIN = settings(max_examples=int(os.environ.get("CHATCLI_FUZZ_EXAMPLES", 150)), deadline=None, database=None,
                derandomize=bool(os.environ.get("CI")),
                phases=[Phase.explicit, Phase.generate, Phase.shrink],  # explaining a failure took a minute
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Text as argv and the environment bring it: any str, or bytes decoded with surrogateescape;
# never a NUL, which neither can hold (they are C strings).
undecoded = st.binary(max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape"))
words = (any_text | undecoded | st.sampled_from(["-", "--", "-x", "--nope", "last", "²", str(2**63), "12", "0"])).map(
    lambda text: text.replace("\x00", ""))

# Bare names in the example's working directory: files that exist (text, binary, a schema, a
# config, a directory), one that does not, and names that are odd in themselves.
FILES = ["notes.txt", "binary.bin", "schema.json", "config.toml", "folder", "missing.txt", "out.md", "out.json",
         "log.txt", "chat.db", "", " ", ".", "-", "~", "x\udcffy.txt", "\x1b[2J.txt"]
files = st.sampled_from(FILES)

# Base URLs: the test server, a closed port, and ones no client can use; never a name to look up.
BAD_URLS = ["http://127.0.0.1:9/v1", "{srv}\x1b[2J", "ftp://127.0.0.1/v1", "::nope::", "http://[::1", "",
            " ", "http://127.0.0.1:99999/v1", "http://127.0.0.1\udcff/v1", "http://1.2.3.999/v1", "127.0.0.1:9"]
urls = st.sampled_from(["{srv}", *BAD_URLS])
PROXIES = ["::nope::", "socks5://127.0.0.1:9", "socks5h://u:p@127.0.0.1:9", "http://127.0.0.1:9", "ftp://x",
           "http://1.2.3.999", "http://[::1", "\x1b", "a\udcffb", "http://127.0.0.1:0", "x:y:z", ""]
proxies = st.sampled_from(PROXIES) | words

flag_values = {
    "-m": words, "-s": words, "-t": words, "--max-tokens": words, "-p": words, "--base-url": urls,
    "-f": files, "--schema": files, "--db": files, "--log-file": files, "--config": files, "-r": words,
    "--completion": st.sampled_from(["bash", "zsh", "fish", "tcsh"]) | words,
}
flags = st.one_of(
    st.sampled_from(["--json", "--plain", "-c", "--no-save", "-v", "-r", "--help", "--version", "-"]).map(lambda f: [f]),
    st.sampled_from(sorted(flag_values)).flatmap(lambda f: flag_values[f].map(lambda v: [f, v])),
    st.tuples(st.sampled_from([*PARAMS, "stop"]) | words, words).map(lambda nv: ["-o", *nv]),
)
chat_argv = st.builds(lambda fs, question: [w for f in fs for w in f] + question,
                      st.lists(flags, max_size=4), st.lists(words, max_size=3))

ids = st.sampled_from(["1", "2", str(2**63 - 1), str(2**63), "9" * 25, "²", "0", "-1"]) | words
sessions_argv = st.one_of(
    st.tuples(st.just("list"), st.sampled_from([[], ["-n"]]), st.lists(ids, max_size=1)).map(lambda t: [t[0], *t[1], *t[2]]),
    st.tuples(st.sampled_from(["show", "delete"]), ids).map(list),
    st.tuples(st.just("search"), st.lists(words, min_size=1, max_size=2)).map(lambda t: [t[0], *t[1]]),
    st.tuples(st.just("export"), ids, st.sampled_from([[], ["--format", "json"], ["--format", "md"]]),
              st.sampled_from([[], ["-o"]]), files).map(lambda t: ["export", t[1], *t[2], *([*t[3], t[4]] if t[3] else [])]),
    st.tuples(st.just("prune"), st.sampled_from(["--older-than"]), words | st.sampled_from(["30d", "0s", "9" * 30 + "w"])).map(list),
    st.tuples(st.just("rename"), ids, st.lists(words, min_size=1, max_size=2)).map(lambda t: [t[0], t[1], *t[2]]),
    st.lists(words, max_size=2),
).map(lambda rest: ["sessions", *rest])
subcommand_argv = st.one_of(
    sessions_argv,
    st.tuples(st.sampled_from([[], ["--days"]]), st.lists(words | st.sampled_from(["1", "30", "3660", "3661"]), max_size=1),
              st.sampled_from([[], ["--by", "model"], ["--by", "day"], ["--by", "x"]])).map(lambda t: ["usage", *t[0], *t[1], *t[2]]),
    st.lists(words, max_size=1).map(lambda rest: ["models", *rest]),
    st.tuples(st.sampled_from(["path", "show", "check", "profiles", "nope"]) | words).map(lambda t: ["config", *t]),
)
# The flags subcommands take too, before or after them (chatcli --db X sessions list), and now and then any other.
global_flags = st.sampled_from(["--db", "--config", "-p", "--base-url", "--log-file"]).flatmap(
    lambda f: flag_values[f].map(lambda v: [f, v])) | st.just(["-v"]) | flags
argvs = st.one_of(
    chat_argv,
    chat_argv,  # twice as likely: the path to a request has the most to get wrong
    st.builds(lambda before, sub, after: [w for f in before for w in f] + sub + [w for f in after for w in f],
              st.lists(global_flags, max_size=2), subcommand_argv, st.lists(global_flags, max_size=2)),
    st.lists(words, max_size=6),
)

# Every variable chatcli reads, but the ones that would run a command (api_key_cmd), read any
# path (CHATCLI_CONFIG), retry with backoff (max_retries) or name a server (drawn from urls).
SERVER_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE", "CHATCLI_BASE_URL")
NOT_DRAWN = {"CHATCLI_API_KEY_CMD", "CHATCLI_CONFIG", "CHATCLI_MAX_RETRIES", *SERVER_VARIABLES}
VARIABLES = sorted({s.env_var for s in SETTINGS} - NOT_DRAWN) + ["OPENAI_API_KEY", "CHATCLI_REDACT", "MY_KEY"]
PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
SETTING_OF = {s.env_var: s for s in SETTINGS}


def variable_values(name: str) -> st.SearchStrategy[str]:
    """Mostly what the variable takes, so that runs get past the config to a request; or anything."""
    odd = words | st.sampled_from(["MY_KEY", "chat.db", "folder", "0", "0.01"])
    setting = SETTING_OF.get(name)
    if setting is None or setting.key in ("proxy", "ca_bundle", "db"):  # files and servers: from the lists above
        return odd | (files if setting is not None and setting.key != "proxy" else proxies)
    return valid_value(setting).map(as_env_text) | odd


environments = st.tuples(
    st.lists(st.sampled_from(VARIABLES), unique=True, max_size=4).flatmap(
        lambda names: st.fixed_dictionaries({name: variable_values(name) for name in names})),
    st.dictionaries(st.sampled_from(SERVER_VARIABLES), urls, max_size=2),
    st.dictionaries(st.sampled_from(PROXY_VARIABLES), proxies, max_size=2),
    st.sampled_from(["", ",*", ",example.com", ",\x1b", ",::1"]),  # more of NO_PROXY
)
stdins = st.one_of(st.just(b""), st.binary(max_size=200), any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
                   st.sampled_from([b"caf\xe9", b"\xff\xfe", "hello".encode("utf-16")]))

CONFIGS = [
    b"",
    b'model = "gpt-4o-mini"\n[profiles.other]\nbase_url = "http://127.0.0.1:9/v1"\n',
    b"[budget]\ndaily_tokens = 1\n",
    b'redact = ["email"]\nsystem = "be brief"\n',
    b"temperature = 9\n",
    b"\xff\xfe not toml",
    b'db = "chat\\u0000.db"\n',  # TOML can write a NUL, which no file name holds
]


def workdir(root: Path, config: bytes) -> tuple[Path, Path]:
    """home, and the working directory with the FILES that exist."""
    home, work = root / "home", root / "work"
    for sub in ("config/chatcli", "data", "state"):
        (home / sub).mkdir(parents=True)
    work.mkdir()
    (work / "notes.txt").write_text("a note\n")
    (work / "binary.bin").write_bytes(bytes(range(256)))
    (work / "schema.json").write_text('{"type": "object", "properties": {"a": {"type": "string"}}}')
    (work / "config.toml").write_bytes(config)
    (home / "config" / "chatcli" / "config.toml").write_bytes(config)
    (work / "x\udcffy.txt").write_text("model = \"gpt-4o\"\n")  # a name that is not UTF-8
    (work / "folder").mkdir()
    return home, work


def run_main(argv: list[str], environ: dict[str, str], stdin: bytes, *, stdin_errors: str, stdout_tty: bool) -> subprocess.CompletedProcess:
    """main(argv) with streams that encode and decode as a process's do; SystemExit is an exit code."""
    from chatcli.base.env import Env

    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
    env = Env(stdin=io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors=stdin_errors), stdout=stdout,
              stderr=stderr, stdin_isatty=False, stdout_isatty=stdout_tty, environ=environ, cwd=Path.cwd())
    code = call_main(argv, env)
    return subprocess.CompletedProcess(["chatcli", *argv], code, out.getvalue().decode("utf-8", "replace"),
                                       err.getvalue().decode("utf-8", "replace"))


@MAIN
@given(argv=argvs, environment=environments, stdin=stdins, stdin_errors=st.sampled_from(["strict", "surrogateescape"]),
       stdout_tty=st.booleans(), config=st.sampled_from(CONFIGS))
@example(argv=["q\udcff"], environment=({}, {}, {}, ""), stdin=b"", stdin_errors="strict", stdout_tty=False, config=b"")
@example(argv=["sessions", "show", "²"], environment=({}, {}, {}, ""), stdin=b"", stdin_errors="strict", stdout_tty=False, config=b"")
@example(argv=["q"], environment=({}, {}, {"HTTPS_PROXY": "::nope::"}, ""), stdin=b"", stdin_errors="strict", stdout_tty=False, config=b"")
@example(argv=["--config", "x\udcffy.txt", "config", "path"], environment=({}, {}, {}, ""), stdin=b"", stdin_errors="strict",
         stdout_tty=False, config=b"")
@example(argv=["sessions", "list"], environment=({}, {}, {}, ""), stdin=b"", stdin_errors="strict", stdout_tty=False,
         config=CONFIGS[-1])
def test_no_argv_environment_or_stdin_takes_the_internal_error_path(srv, argv, environment, stdin, stdin_errors,
                                                                    stdout_tty, config):
    # srv, not the shared _server: reset first, so no behaviour a test before left scripted on this
    # worker's server (a reply held open, a slow default) makes each example wait out a timeout.
    variables, servers, proxy_variables, more_no_proxy = environment
    srv = srv.base_url
    with tempfile.TemporaryDirectory(prefix="chatcli-fuzz-main-") as root:
        home, work = workdir(Path(root), config)
        environ = {
            "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"), "OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": srv,
            "CHATCLI_MAX_RETRIES": "0", **variables, **{k: v.format(srv=srv) for k, v in servers.items()},
            **proxy_variables, "NO_PROXY": "127.0.0.1,localhost" + more_no_proxy,
        }
        # httpx2 reads the proxy variables from the process, not from chatcli's Env.
        process = {k: v for k, v in environ.items() if k in (*PROXY_VARIABLES, "NO_PROXY")}
        argv = [word.format(srv=srv) if word in urls_with_server() else word for word in argv]
        cwd = os.getcwd()
        os.chdir(work)
        try:
            with mock.patch.dict(os.environ, process):
                result = run_main(argv, environ, stdin, stdin_errors=stdin_errors, stdout_tty=stdout_tty)
        finally:
            os.chdir(cwd)
        crashed = (home / "state" / "chatcli" / "crash.log").exists()
        log = (home / "state" / "chatcli" / "crash.log").read_text() if crashed else ""
    OUTPUTS.append(result)  # grepped for the key after the test
    event(f"exit {result.returncode}")
    assert "internal error" not in result.stderr, (argv, result.stderr, log)
    assert not crashed, (argv, log)
    assert isinstance(result.returncode, int)


def urls_with_server() -> set[str]:
    return {"{srv}", "{srv}\x1b[2J"}
