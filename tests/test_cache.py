"""The response cache (issue 18, item 6): hits answer without a request, misses ask and keep.

Against the test server, with the real SQLite database: a hit is proved by the server seeing no
request at all; what is kept is read back from the database itself. The tests that show what a
user sees run the installed script in a process of its own.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_CONFIG, EXIT_FAILURE
from chatcli.base.events import Usage
from chatcli.core.cache import ResponseCache, request_key
from chatcli.store.db import Store
from chatcli.store.migrations import MIGRATIONS
from tests.support.keys import TEST_KEY
from tests.support.pty import TIMEOUT, ask, expect_prompt, quit_with_ctrl_d, visible
from tests.support.running import CHATCLI, assert_no_key, error_line, ok
from tests.support.server import ChatServer, EchoHeaders, Error, Reply
from tests.support.sessions import default_db

pytestmark = pytest.mark.timeout(30)

ASK = ("--cache", "-m", "gpt-4o-mini", "-t", "0")  # a model named: no /models request before the ask


def entries(home: Path) -> list[dict]:
    """The response cache's rows, as the database holds them."""
    path = default_db(home)
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM response_cache ORDER BY created_at")]
    finally:
        db.close()


def execute(home: Path, sql: str, *args) -> None:
    db = sqlite3.connect(default_db(home))
    try:
        db.execute(sql, args)
        db.commit()
    finally:
        db.close()


def ledger_rows(home: Path) -> int:
    db = sqlite3.connect(default_db(home))
    try:
        return db.execute("SELECT COUNT(*) FROM usage_ledger").fetchone()[0]
    finally:
        db.close()


def write_config(home: Path, text: str) -> None:
    (home / "config" / "chatcli").mkdir(parents=True, exist_ok=True)
    (home / "config" / "chatcli" / "config.toml").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- #
# Hits and misses, as a user sees them
# --------------------------------------------------------------------------- #


def test_a_second_ask_is_answered_from_the_cache_without_any_request(srv: ChatServer, run_chatcli, isolated_env: Path):
    srv.script(Reply("Idempotent: doing it twice is doing it once."))
    first = ok(run_chatcli(*ASK, "what does idempotent mean?", process=True))
    assert first.stdout == "Idempotent: doing it twice is doing it once.\n" and first.stderr == ""
    assert len(srv.chat_requests) == 1
    (kept,) = entries(isolated_env)
    assert kept["reply"] == "Idempotent: doing it twice is doing it once." and kept["hits"] == 0

    srv.reset()
    again = ok(run_chatcli(*ASK, "what does idempotent mean?", process=True))
    assert again.stdout == first.stdout  # plain text in a pipe, as the first answer was
    assert again.stderr == ""
    assert srv.requests == []  # not a chat request, nor any other: the server heard nothing
    assert entries(isolated_env)[0]["hits"] == 1
    assert_no_key(again)


def test_a_hit_is_logged_with_v_and_a_miss_and_a_keep_too(srv: ChatServer, run_chatcli):
    miss = ok(run_chatcli(*ASK, "-v", "hello"))
    assert "response cache: miss (key " in miss.stderr and "response cache: kept the reply" in miss.stderr
    hit = ok(run_chatcli(*ASK, "-v", "hello"))
    assert "response cache: hit (key " in hit.stderr and "no request is made" in hit.stderr
    assert "POST " not in hit.stderr
    assert hit.stdout == miss.stdout == "echo: hello\n"
    assert len(srv.chat_requests) == 1


def test_a_hit_on_a_terminal_is_drawn_as_any_reply_with_its_stats_line(srv: ChatServer, spawn_chatcli):
    import pexpect

    for _ in range(2):
        child = spawn_chatcli(*ASK, "hello **there**", env={"CHATCLI_STATS": "1"})
        child.expect(pexpect.EOF, timeout=TIMEOUT)
        child.close()
        assert child.exitstatus == 0
    shown = visible(child.logfile_read.getvalue())
    assert "echo: hello there" in shown and "**" not in shown  # markdown, drawn
    assert "from the response cache: no request, no cost" in shown
    assert len(srv.chat_requests) == 1


def test_the_interactive_session_says_the_cache_is_for_one_shot_asks(srv: ChatServer, spawn_chatcli):
    child = spawn_chatcli(*ASK)
    child.expect_exact("--cache is for one-shot asks; the interactive session asks the server each time.",
                       timeout=TIMEOUT)
    expect_prompt(child)
    for _ in range(2):
        ask(child, "hello")
    quit_with_ctrl_d(child)
    assert len(srv.chat_requests) == 2


def test_without_the_cache_nothing_is_kept_and_every_ask_is_a_request(srv: ChatServer, run_chatcli, isolated_env: Path):
    for _ in range(2):
        ok(run_chatcli("-m", "gpt-4o-mini", "-t", "0", "hello"))
    assert len(srv.chat_requests) == 2
    assert entries(isolated_env) == []


def test_the_config_key_and_its_variable_turn_the_cache_on(srv: ChatServer, run_chatcli, isolated_env: Path):
    write_config(isolated_env, "cache = true\n")
    for _ in range(2):
        ok(run_chatcli("-m", "gpt-4o-mini", "-t", "0", "from the file"))
    for _ in range(2):
        ok(run_chatcli("-m", "gpt-4o-mini", "-t", "0", "from the variable", env={"CHATCLI_CACHE": "1"}))
    assert len(srv.chat_requests) == 2
    # cache = false in the environment wins over the file, as every layer does
    ok(run_chatcli("-m", "gpt-4o-mini", "-t", "0", "from the file", env={"CHATCLI_CACHE": "0"}))
    assert len(srv.chat_requests) == 3


@pytest.mark.parametrize("change", [
    ["a different question"],
    ["-o", "top_p", "0.5", "what does idempotent mean?"],
    ["--max-tokens", "50", "what does idempotent mean?"],
    ["-s", "Answer in French.", "what does idempotent mean?"],
    ["-m", "gpt-4o", "what does idempotent mean?"],
])
def test_a_different_body_is_a_miss(srv: ChatServer, run_chatcli, change: list[str]):
    ok(run_chatcli(*ASK, "what does idempotent mean?"))
    ok(run_chatcli(*ASK, *change))
    assert len(srv.chat_requests) == 2
    ok(run_chatcli(*ASK, *change))  # and is kept in its turn
    assert len(srv.chat_requests) == 2


def test_a_schema_is_part_of_the_body(srv: ChatServer, run_chatcli, tmp_path: Path):
    schema = tmp_path / "answer.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"word": {"type": "string"}}}))
    srv.script(Reply("plain"), Reply('{"word": "yes"}'), Reply("unused"))
    ok(run_chatcli(*ASK, "one word"))
    with_schema = ok(run_chatcli(*ASK, "--schema", str(schema), "one word"))
    assert len(srv.chat_requests) == 2 and "response_format" in srv.chat_requests[1].body
    again = ok(run_chatcli(*ASK, "--schema", str(schema), "one word"))
    assert again.stdout == with_schema.stdout == '{"word": "yes"}\n'
    assert len(srv.chat_requests) == 2


def test_another_server_is_a_miss(srv: ChatServer, run_chatcli):
    ok(run_chatcli(*ASK, "hello"))
    with ChatServer() as other:
        other.script(Reply("from the other server"))
        there = ok(run_chatcli(*ASK, "hello", env={"OPENAI_BASE_URL": other.base_url}))
        assert there.stdout == "from the other server\n"
        assert len(other.chat_requests) == 1
        again = ok(run_chatcli(*ASK, "hello", env={"OPENAI_BASE_URL": other.base_url}))
        assert again.stdout == "from the other server\n" and len(other.chat_requests) == 1
    assert ok(run_chatcli(*ASK, "hello")).stdout == "echo: hello\n"
    assert len(srv.chat_requests) == 1


# --------------------------------------------------------------------------- #
# What may be cached
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("sampling", [["-t", "0.7"], []])
def test_a_request_whose_answer_may_vary_is_not_cached_by_default(srv: ChatServer, run_chatcli, isolated_env: Path,
                                                                    sampling: list[str]):
    for _ in range(2):
        result = ok(run_chatcli("--cache", "-m", "gpt-4o-mini", *sampling, "-v", "a poem"))
    assert len(srv.chat_requests) == 2
    assert entries(isolated_env) == []
    assert "response cache: not used: it has " in result.stderr and "cache_any" in result.stderr


def test_a_seed_makes_a_request_cacheable(srv: ChatServer, run_chatcli):
    for _ in range(2):
        ok(run_chatcli("--cache", "-m", "gpt-4o-mini", "-t", "0.7", "-o", "seed", "42", "a poem"))
    assert len(srv.chat_requests) == 1
    assert srv.chat_requests[0].body["seed"] == 42


def test_cache_any_caches_any_request(srv: ChatServer, run_chatcli, isolated_env: Path):
    write_config(isolated_env, "cache_any = true\n")
    for _ in range(2):
        ok(run_chatcli("--cache", "-m", "gpt-4o-mini", "-t", "0.7", "a poem"))
    assert len(srv.chat_requests) == 1
    assert len(entries(isolated_env)) == 1


def test_no_save_writes_nothing_and_serves_nothing(srv: ChatServer, run_chatcli, isolated_env: Path):
    for _ in range(2):
        ok(run_chatcli(*ASK, "--no-save", "hello"))
    assert len(srv.chat_requests) == 2
    assert not default_db(isolated_env).exists()  # nothing at all is written
    ok(run_chatcli(*ASK, "hello"))  # kept now
    ok(run_chatcli(*ASK, "--no-save", "-v", "hello"))
    assert len(srv.chat_requests) == 4  # the cache is off with --no-save, reading included
    assert entries(isolated_env)[0]["hits"] == 0


@pytest.mark.parametrize("behaviour", [
    Error(500, "the server failed"),
    Reply("half a reply that breaks off here", disconnect_after=2),
    Reply("a reply with no end", finish_reason=None),
    Reply("stopped by the filter", finish_reason="content_filter"),
    Reply("", finish_reason="length"),
], ids=["error", "broken-off", "no-finish", "content-filter", "empty"])
def test_a_failed_or_unfinished_reply_is_not_kept(srv: ChatServer, run_chatcli, isolated_env: Path, behaviour):
    srv.script(behaviour)
    failed = run_chatcli(*ASK, "hello", env={"CHATCLI_MAX_RETRIES": "0"})
    assert entries(isolated_env) == []
    assert ok(run_chatcli(*ASK, "hello")).stdout == "echo: hello\n"  # asked anew, and kept now
    assert len(srv.chat_requests) == 2 and len(entries(isolated_env)) == 1
    assert failed.stderr.startswith("chatcli: ")  # each ended as no plain reply ends: with a sentence


def test_a_length_finish_with_text_is_kept(srv: ChatServer, run_chatcli, isolated_env: Path):
    srv.script(Reply("cut at max_tokens", finish_reason="length"))
    first = run_chatcli(*ASK, "--max-tokens", "4", "hello")
    again = run_chatcli(*ASK, "--max-tokens", "4", "hello")
    assert again.stdout == first.stdout == "cut at max_tokens\n" and again.stderr == first.stderr
    assert len(srv.chat_requests) == 1 and entries(isolated_env)[0]["finish_reason"] == "length"


def test_an_interrupted_reply_is_not_kept(srv: ChatServer, chat_env: dict, isolated_env: Path):
    srv.script(Reply("one two three four five six seven eight nine ten", chunk_size=4, delay=0.3))
    child = subprocess.Popen([str(CHATCLI), *ASK, "count"], env=chat_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.read(3) == "one"  # the reply has begun
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == 128 + signal.SIGTERM
    child.stdout.close()
    child.stderr.close()
    assert entries(isolated_env) == []
    db = sqlite3.connect(default_db(isolated_env))
    assert db.execute("SELECT status FROM messages WHERE role = 'assistant'").fetchall() == [("interrupted",)]
    db.close()


def test_a_reply_holding_a_blocked_word_is_not_kept(srv: ChatServer, run_chatcli, isolated_env: Path):
    write_config(isolated_env, 'block_words = ["forbidden"]\n')
    srv.script(Reply("this is forbidden"))
    run_chatcli(*ASK, "hello")
    assert entries(isolated_env) == []


def test_a_reply_that_echoes_the_key_is_kept_without_it(srv: ChatServer, run_chatcli, isolated_env: Path):
    srv.script(EchoHeaders(names=("authorization",)))
    first = ok(run_chatcli(*ASK, "hello"))
    assert "Bearer ***" in first.stdout
    (kept,) = entries(isolated_env)
    assert TEST_KEY not in kept["reply"] and "***" in kept["reply"]
    again = ok(run_chatcli(*ASK, "hello"))
    assert again.stdout == first.stdout and len(srv.chat_requests) == 1
    # and the autouse secret-grep reads the database, its WAL included, for the key


# --------------------------------------------------------------------------- #
# TTL
# --------------------------------------------------------------------------- #


def test_an_expired_reply_is_never_served_and_is_dropped(srv: ChatServer, run_chatcli, isolated_env: Path):
    ok(run_chatcli(*ASK, "hello"))
    execute(isolated_env, "UPDATE response_cache SET expires_at = ?", time.time() - 1)
    srv.script(Reply("a fresh answer"))
    assert ok(run_chatcli(*ASK, "hello")).stdout == "a fresh answer\n"
    assert len(srv.chat_requests) == 2
    (kept,) = entries(isolated_env)  # the expired one dropped, the fresh one kept in its place
    assert kept["reply"] == "a fresh answer" and kept["expires_at"] > time.time() + 6 * 86400


def test_the_ttl_is_the_config_s_and_a_shorter_one_applies_to_replies_already_kept(srv: ChatServer, run_chatcli,
                                                                                   isolated_env: Path):
    ok(run_chatcli(*ASK, "hello", env={"CHATCLI_CACHE_TTL": "2h"}))
    (kept,) = entries(isolated_env)
    assert kept["expires_at"] - kept["created_at"] == pytest.approx(7200)
    execute(isolated_env, "UPDATE response_cache SET created_at = created_at - 5400")  # kept 90 minutes ago
    ok(run_chatcli(*ASK, "hello", env={"CHATCLI_CACHE_TTL": "2h"}))
    assert len(srv.chat_requests) == 1  # still fresh
    ok(run_chatcli(*ASK, "hello", env={"CHATCLI_CACHE_TTL": "1h"}))
    assert len(srv.chat_requests) == 2  # too old for a TTL of an hour


@pytest.mark.parametrize("bad", ["7", "soon", "7 days", "-1d"])
def test_a_bad_cache_ttl_is_one_sentence(run_chatcli, isolated_env: Path, bad: str):
    write_config(isolated_env, f"cache_ttl = {json.dumps(bad)}\n")
    line = error_line(run_chatcli(*ASK, "hello"), EXIT_CONFIG)
    assert "cache_ttl" in line and 'as in "7d"' in line


def test_config_check_says_the_cache_does_nothing_without_saving(run_chatcli, isolated_env: Path):
    write_config(isolated_env, "cache = true\nsave = false\n")
    result = ok(run_chatcli("config", "check"))
    assert "cache = true does nothing while save = false" in result.stderr


# --------------------------------------------------------------------------- #
# --json, the ledger and the history
# --------------------------------------------------------------------------- #


def test_json_says_cached_and_a_hit_costs_nothing(srv: ChatServer, run_chatcli):
    first = json.loads(ok(run_chatcli(*ASK, "--json", "hello", process=True)).stdout)
    assert first["cached"] is False
    assert first["cost_source"] == "list" and first["cost_usd"] > 0
    hit = json.loads(ok(run_chatcli(*ASK, "--json", "hello", process=True)).stdout)
    assert hit["cached"] is True
    assert hit["cost_usd"] == 0 and hit["cost_source"] == "cache"
    assert hit["reply"] == first["reply"] == "echo: hello"
    assert hit["usage"] == first["usage"]  # the original request's
    assert hit["status"] == "complete" and hit["finish_reason"] == "stop"
    assert len(srv.chat_requests) == 1
    plain = json.loads(ok(run_chatcli("-m", "gpt-4o-mini", "-t", "0", "--json", "hello")).stdout)
    assert "cached" not in plain  # said only with the cache on


def test_a_hit_is_not_in_the_ledger_and_the_history_keeps_it(srv: ChatServer, run_chatcli, isolated_env: Path):
    ok(run_chatcli(*ASK, "hello"))
    assert ledger_rows(isolated_env) == 1
    ok(run_chatcli(*ASK, "hello"))
    assert ledger_rows(isolated_env) == 1  # what a budget counts is untouched
    db = sqlite3.connect(default_db(isolated_env))
    replies = db.execute("SELECT session_id, content, cached FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()
    db.close()
    assert [(text, cached) for _, text, cached in replies] == [("echo: hello", 0), ("echo: hello", 1)]
    assert replies[0][0] != replies[1][0]  # each ask its own session, the hit's saved as any


def test_hits_add_nothing_to_what_a_budget_counts(srv: ChatServer, run_chatcli, isolated_env: Path):
    first = json.loads(ok(run_chatcli(*ASK, "--json", "hello")).stdout)
    budget = f"[budget]\ndaily_tokens = {first['usage']['total_tokens'] + 1}\n"

    def spending_said() -> str:
        """The spending a refused request says today's would come to."""
        write_config(isolated_env, budget)
        line = error_line(run_chatcli(*ASK, "a new question"), EXIT_FAILURE)
        write_config(isolated_env, "")
        return line.split("today's spending to ")[1].split(" ")[0]

    before = spending_said()
    for _ in range(3):
        assert ok(run_chatcli(*ASK, "hello")).stdout == "echo: hello\n"
    assert spending_said() == before
    assert len(srv.chat_requests) == 1


def test_a_cap_that_refuses_a_new_request_still_lets_the_cache_answer(srv: ChatServer, run_chatcli, isolated_env: Path):
    first = json.loads(ok(run_chatcli(*ASK, "--json", "--max-tokens", "10", "hello")).stdout)
    # Spent: the first ask's tokens. A request is checked at its prompt plus max_tokens, past this cap.
    write_config(isolated_env, f"[budget]\ndaily_tokens = {first['usage']['total_tokens'] + 5}\n")
    assert ok(run_chatcli(*ASK, "--max-tokens", "10", "hello")).stdout == "echo: hello\n"  # free: answered
    assert len(srv.chat_requests) == 1
    refused = error_line(run_chatcli(*ASK, "--max-tokens", "10", "a new question"), EXIT_FAILURE)
    assert "past the daily_tokens budget" in refused and len(srv.chat_requests) == 1  # the cap still holds


def test_a_saved_hit_counts_no_tokens_when_read_back(srv: ChatServer, run_chatcli):
    first = json.loads(ok(run_chatcli(*ASK, "--json", "hello")).stdout)
    ok(run_chatcli(*ASK, "hello"))
    header, hit, miss = (line.split("\t") for line in ok(run_chatcli("sessions", "list")).stdout.splitlines())
    assert header[4] == "tokens"
    assert (miss[4], hit[4]) == (f"{first['usage']['total_tokens']:,}", "0")
    # Going on with it: the next reply is billed as any, the hit still not.
    ok(run_chatcli("-c", "-m", "gpt-4o-mini", "and then?"))
    assert len(srv.chat_requests) == 2
    _, resumed, _ = (line.split("\t") for line in ok(run_chatcli("sessions", "list")).stdout.splitlines())
    assert resumed[0] == hit[0] and resumed[4] == f"{srv_tokens(srv, -1):,}"


def srv_tokens(srv: ChatServer, request: int) -> int:
    """The total_tokens the test server reported for one of its chat requests."""
    from tests.support.server import compute_usage

    recorded = srv.chat_requests[request]
    return compute_usage(recorded.body, "echo: and then?")["total_tokens"]


# --------------------------------------------------------------------------- #
# chatcli cache stats | clear
# --------------------------------------------------------------------------- #


def test_stats_say_what_the_hits_saved_and_clear_removes_them(srv: ChatServer, run_chatcli, isolated_env: Path):
    first = json.loads(ok(run_chatcli(*ASK, "--json", "hello")).stdout)
    ok(run_chatcli(*ASK, "hello"))
    ok(run_chatcli(*ASK, "hello"))
    ok(run_chatcli(*ASK, "-t", "0", "goodbye"))
    stats = ok(run_chatcli("cache", "stats", process=True)).stdout
    lines = dict(line.split(": ", 1) for line in stats.splitlines()[1:])
    assert stats.splitlines()[0] == f"Response cache in {default_db(isolated_env)}: off unless --cache (cache = false)"
    assert lines["entries"] == "2"
    assert lines["hits"] == "2"
    saved = 2 * first["usage"]["total_tokens"]
    assert lines["saved"] == f"{saved:,} tokens, {'<$0.0001' if 2 * first['cost_usd'] < 0.0001 else ''}"
    assert lines["size"].endswith("bytes")
    assert lines["ttl"].startswith("7d (604,800 seconds; cache_ttl); only requests with temperature 0 or a seed")
    assert "oldest" in lines and "newest" in lines

    cleared = ok(run_chatcli("cache", "clear", process=True))
    assert cleared.stdout == f"Removed 2 cached replies from {default_db(isolated_env)}.\n"
    assert entries(isolated_env) == []
    assert ok(run_chatcli("cache", "stats")).stdout.splitlines()[1] == "entries: 0"
    ok(run_chatcli(*ASK, "hello"))
    assert len(srv.chat_requests) == 3  # asked again after the clear


def test_stats_price_the_saving_and_clear_expired_keeps_the_fresh(srv: ChatServer, run_chatcli, isolated_env: Path):
    write_config(isolated_env, '[prices."gpt-4o-mini"]\ninput = 1000.0\noutput = 1000.0\n')
    first = json.loads(ok(run_chatcli(*ASK, "--json", "hello")).stdout)
    ok(run_chatcli(*ASK, "hello"))
    ok(run_chatcli(*ASK, "another"))
    execute(isolated_env, "UPDATE response_cache SET expires_at = ? WHERE reply = 'echo: another'", time.time() - 1)
    stats = ok(run_chatcli("cache", "stats")).stdout
    assert f"saved: {first['usage']['total_tokens']:,} tokens, ${first['cost_usd']:.4f}" in stats
    assert "entries: 2 (1 expired: never served; `chatcli cache clear --expired` removes them)" in stats
    assert ok(run_chatcli("cache", "clear", "--expired")).stdout.startswith("Removed 1 expired cached reply from ")
    assert [e["reply"] for e in entries(isolated_env)] == ["echo: hello"]


def test_stats_before_any_database_says_so_and_creates_none(run_chatcli, isolated_env: Path):
    result = ok(run_chatcli("cache", "stats"))
    assert result.stdout == f"There is no response cache yet: there is no database at {default_db(isolated_env)}.\n"
    assert not default_db(isolated_env).exists()
    assert ok(run_chatcli("--db", str(isolated_env / "other.db"), "cache", "clear")).stdout.startswith(
        "There is no response cache yet")


def test_the_cache_subcommand_takes_db_before_or_after_it(srv: ChatServer, run_chatcli, tmp_path: Path):
    db = tmp_path / "elsewhere.db"
    ok(run_chatcli(*ASK, "--db", str(db), "hello"))
    assert "entries: 1" in ok(run_chatcli("--db", str(db), "cache", "stats")).stdout
    assert "entries: 1" in ok(run_chatcli("cache", "stats", "--db", str(db))).stdout
    line = error_line(run_chatcli("-m", "gpt-4o", "cache", "stats"), 2)
    assert "cache does not take -m" in line


# --------------------------------------------------------------------------- #
# The seam the batch runner uses, and the schema
# --------------------------------------------------------------------------- #


def test_lookup_and_keep_for_any_sender(tmp_path: Path):
    store = Store.open(tmp_path / "c.db")
    now = [1000.0]
    cache = ResponseCache(store, ttl=60, clock=lambda: now[0])
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert cache.lookup("http://a/v1", body) is None
    assert cache.keep("http://a/v1", body, reply="hello", finish_reason="stop", model="m-2024",
                      usage=Usage(5, 2, 7), cost_usd=0.5, reasoning="thought")
    # The same request, its keys in another order and streamed: the same key.
    streamed = {"temperature": 0, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "hi"}], "model": "m"}
    assert request_key("http://a/v1", streamed) == request_key("http://a/v1", body)
    hit = cache.lookup("http://a/v1", streamed)
    assert (hit.reply, hit.reasoning, hit.finish_reason, hit.model, hit.usage, hit.cost_usd, hit.hits) == \
        ("hello", "thought", "stop", "m-2024", Usage(5, 2, 7), 0.5, 1)
    assert cache.lookup("http://b/v1", body) is None
    assert cache.lookup("http://a/v1", {**body, "temperature": 0.0, "max_tokens": 5}) is None
    now[0] += 61
    assert cache.lookup("http://a/v1", body) is None  # expired: dropped
    assert store.db.execute("SELECT COUNT(*) FROM response_cache").fetchone()[0] == 0
    store.close()


def test_keep_refuses_what_the_cache_does_not_take(tmp_path: Path):
    store = Store.open(tmp_path / "c.db")
    cache = ResponseCache(store, ttl=60)
    body = {"model": "m", "messages": [], "temperature": 0}
    assert not cache.keep("s", body, reply="x", finish_reason="content_filter", model="m")
    assert not cache.keep("s", body, reply="x", finish_reason=None, model="m")
    assert not cache.keep("s", body, reply="  ", finish_reason="stop", model="m")
    assert not cache.keep("s", {**body, "temperature": 1}, reply="x", finish_reason="stop", model="m")
    assert not cache.keep("s", {**body, "tools": [{"type": "function"}]}, reply="x", finish_reason="stop", model="m")
    assert ResponseCache(store, ttl=60, cache_any=True).keep("s", {**body, "temperature": 1}, reply="x",
                                                              finish_reason="stop", model="m")
    store.close()


def test_an_older_database_gains_the_cache(tmp_path: Path):
    path = tmp_path / "old.db"
    Store.open(path, migrations=MIGRATIONS[:14]).close()
    store = Store.open(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    columns = [row[1] for row in store.db.execute("PRAGMA table_info(response_cache)")]
    assert columns[:3] == ["key", "model", "reply"] and "expires_at" in columns and "hits" in columns
    assert "cached" in [row[1] for row in store.db.execute("PRAGMA table_info(messages)")]
    store.close()
