"""Rate limits: the x-ratelimit-* headers read from every response, shown by /usage, warned of in
the toolbar under 10%, logged by -v, and said by a 429 that knows when its limit resets."""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import pytest

from chatcli.base.errors import EXIT_FAILURE
from chatcli.base.events import RateLimits, Retrying, TextDelta
from chatcli.base.ratelimits import Limit, duration
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.session import Session
from chatcli.llm.client import ChatClient
from chatcli.llm.ratelimits import go_duration, read_rate_limits, reset_time
from chatcli.ui.prompt import make_toolbar
from tests.support.keys import TEST_KEY
from tests.support.repl import ENTER, flat, piped_chat
from tests.support.running import error_line
from tests.support.server import Error, Reply, rate_limit_headers
from tests.support.sessions import make_session

pytestmark = pytest.mark.timeout(30)

NOW = 1_800_000_000.0  # a fixed "now" for the parsing tests

OPENAI = {  # as OpenAI sends them
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4990",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "149000",
    "x-ratelimit-reset-tokens": "6m0s",
}


# --------------------------------------------------------------------------- #
# Reading the headers
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("0s", 0.0), ("1.5µs", 1.5e-6),
    ("100ns", 1e-7), (".5s", 0.5), ("2h", 7200.0),
])
def test_go_durations_read_as_seconds(text, seconds):
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1", "1x", "-1s", "1s ", "m5", "1s2", "one second", "1e3s", "∞s"])
def test_what_is_no_go_duration_reads_as_none(text):
    assert go_duration(text) is None


def test_openais_headers_read_with_resets_made_absolute():
    limits = read_rate_limits(OPENAI, now=NOW)
    assert limits == RateLimits(
        requests=Limit(5000, 4990, pytest.approx(NOW + 0.012)), tokens=Limit(150000, 149000, NOW + 360), read_at=NOW,
    )


def test_header_names_are_read_whatever_their_case():
    shouted = {name.upper(): value for name, value in OPENAI.items()}
    mixed = {name.title(): value for name, value in OPENAI.items()}
    assert read_rate_limits(shouted, now=NOW) == read_rate_limits(mixed, now=NOW) == read_rate_limits(OPENAI, now=NOW)


@pytest.mark.parametrize(("value", "at"), [
    ("12", NOW + 12), ("0.5", NOW + 0.5), ("0", NOW),  # seconds from now
    (str(int(NOW) + 40), NOW + 40),  # a Unix time in seconds
    (str(int((NOW + 40) * 1000)), NOW + 40),  # a Unix time in milliseconds (OpenRouter)
])
def test_a_reset_given_as_a_number_is_seconds_or_a_unix_time(value, at):
    assert reset_time(value, now=NOW) == pytest.approx(at)


def test_openrouters_unsuffixed_headers_are_its_request_limit():
    limits = read_rate_limits({"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "1",
                               "X-RateLimit-Reset": str(int((NOW + 30) * 1000))}, now=NOW)
    assert limits is not None and limits.tokens is None
    assert limits.requests == Limit(20, 1, NOW + 30)
    assert limits.warning(NOW) == "requests 5% left, resets in 30s"


@pytest.mark.parametrize("bad", ["abc", "-5", "nan", "inf", "1e400", "", "5\x1b[31m", "٣", "10" * 40])
def test_a_malformed_figure_is_left_out_and_the_rest_kept(bad):
    headers = {**OPENAI, "x-ratelimit-remaining-tokens": bad, "x-ratelimit-reset-requests": bad}
    limits = read_rate_limits(headers, now=NOW)
    assert limits is not None and limits.tokens is not None and limits.requests is not None
    assert limits.tokens.remaining is None and limits.tokens.limit == 150000
    assert limits.requests.resets_at is None and limits.requests.remaining == 4990


def test_headers_that_state_no_limit_read_as_none():
    assert read_rate_limits({}, now=NOW) is None
    assert read_rate_limits({"content-type": "text/event-stream", "x-request-id": "req_1"}, now=NOW) is None
    assert read_rate_limits({"x-ratelimit-remaining-tokens": "garbage"}, now=NOW) is None
    assert read_rate_limits(None, now=NOW) is None  # not headers at all


def test_only_the_limits_stated_count():
    limits = read_rate_limits({"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "50"}, now=NOW)
    assert limits is not None and limits.requests is None
    assert limits.summary(NOW) == "tokens 50 of 1,000 left, as of just now"
    assert limits.log_line() == "rate limits: tokens 50/1000"
    assert limits.warning(NOW) == "tokens 5% left"


# --------------------------------------------------------------------------- #
# Saying them
# --------------------------------------------------------------------------- #


def test_the_usage_line_the_log_line_and_no_warning_above_ten_percent():
    limits = read_rate_limits(OPENAI, now=NOW)
    assert limits is not None
    assert limits.log_line() == "rate limits: requests 4990/5000 (reset 12ms), tokens 149000/150000 (reset 6m0s)"
    assert limits.summary(NOW + 3) == ("requests 4,990 of 5,000 left (has reset since); "
                                       "tokens 149,000 of 150,000 left (resets in 5m57s), as of 3s ago")
    assert limits.warning(NOW) is None


def test_the_warning_names_the_lower_limit_under_ten_percent_until_it_resets():
    limits = read_rate_limits({**OPENAI, "x-ratelimit-remaining-tokens": "6000", "x-ratelimit-remaining-requests": "450",
                               "x-ratelimit-reset-tokens": "12s"}, now=NOW)
    assert limits is not None
    assert limits.warning(NOW) == "tokens 4% left, resets in 12s"
    assert limits.warning(NOW + 11.6) == "tokens 4% left, resets in 400ms"
    # Past the reset the figures are stale: the requests (9%, reset long past) warn no more either.
    assert limits.warning(NOW + 13) is None


@pytest.mark.parametrize(("seconds", "said"), [(0.0123, "12ms"), (12.4, "12s"), (360, "6m0s"), (3723.5, "1h2m4s")])
def test_durations_are_said_as_openai_writes_them(seconds, said):
    assert duration(seconds) == said


def _toolbar(session: Session) -> str:
    return "".join(text for _style, text in make_toolbar(session)())


def _client() -> ChatClient:
    return ChatClient(Config(base_url="http://127.0.0.1:9/v1", api_key=TEST_KEY))  # never asked: only its state is read


def test_the_toolbar_warns_only_of_the_current_servers_low_limit():
    session = Session(client=_client(), model="gpt-4o-mini")
    assert "⚠" not in _toolbar(session)
    ample = read_rate_limits(OPENAI)
    assert ample is not None
    session.client.rate_limits = ample  # as the client keeps what a response stated
    assert "⚠" not in _toolbar(session)
    low = read_rate_limits({**OPENAI, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"})
    assert low is not None
    session.client.rate_limits = low
    assert re.search(r"│ ⚠ requests 0% left, resets in (20|19)s │ /help", _toolbar(session)), _toolbar(session)
    session.client = _client()  # /profile moved to another server: not its limits
    assert session.rate_limits is None
    assert "⚠" not in _toolbar(session)


# --------------------------------------------------------------------------- #
# Against the test server
# --------------------------------------------------------------------------- #


def test_the_client_yields_the_limits_before_the_reply(srv):
    srv.script(Reply("hello", headers=rate_limit_headers(requests=(5000, 4990), tokens=(150000, 149000),
                                                         reset_requests="12ms")))
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0))
    events = list(client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}))
    limits = [e for e in events if isinstance(e, RateLimits)]
    assert len(limits) == 1 and events.index(limits[0]) < min(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert limits[0].requests is not None and limits[0].requests.remaining == 4990
    assert limits[0].tokens is not None and limits[0].tokens.limit == 150000
    assert client.rate_limits == limits[0]  # kept for /usage and the toolbar


def test_a_429_retried_says_its_limits_before_the_retry(srv):
    srv.script(Error(429, "slow down", headers={"retry-after-ms": "10", **rate_limit_headers(tokens=(1000, 0))}),
               Reply("fine", headers=rate_limit_headers(tokens=(1000, 900))))
    client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=1))
    events = list(client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], params={}))
    kinds = [type(e).__name__ for e in events if isinstance(e, (RateLimits, Retrying))]
    assert kinds == ["RateLimits", "Retrying", "RateLimits"]
    remaining = [e.tokens.remaining for e in events if isinstance(e, RateLimits) and e.tokens is not None]
    assert remaining == [0, 900]


def test_one_shot_verbose_logs_the_limits_of_each_response(srv, run_chatcli):
    srv.script(Reply("hello", headers=rate_limit_headers(requests=(5000, 4990), tokens=(150000, 149000),
                                                         reset_requests="12ms")))
    result = run_chatcli("-v", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert "rate limits: requests 4990/5000 (reset 12ms), tokens 149000/150000 (reset 6m0s)" in result.stderr


def test_a_server_without_the_headers_shows_no_limits_anywhere(srv, run_chatcli, tmp_path: Path):
    srv.script(Reply("hello"))
    result = run_chatcli("-v", "hi")
    assert result.returncode == 0 and "rate limits" not in result.stderr.lower()

    session = make_session(srv)
    session.send("hi")
    assert session.rate_limits is None
    assert "⚠" not in _toolbar(session)
    assert "Rate limits" not in REGISTRY.dispatch(session, "/usage").text


def test_usage_in_the_repl_shows_the_servers_latest_figures(srv, tmp_path: Path):
    srv.script(Reply("one", headers=rate_limit_headers(requests=(5000, 4999), tokens=(150000, 149500))),
               Reply("two", headers=rate_limit_headers(requests=(5000, 4990), tokens=(150000, 149000),
                                                       reset_requests="12s")))
    with ExitStack() as stack:
        config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10)
        chat = piped_chat(stack, make_session(config=config), history=tmp_path / "history")
        out = flat(chat.run("first", ENTER, "second", ENTER, "/usage", ENTER))
    assert re.search(r"Rate limits: requests 4,990 of 5,000 left \(resets in 1[12]s\); "
                     r"tokens 149,000 of 150,000 left \(resets in (6m0s|5m59s)\), as of (just now|\ds ago)\.", out), out
    assert "4,999" not in out


def test_a_429_says_when_the_exhausted_limit_resets_and_the_toolbar_warns(srv, run_chatcli):
    limits = rate_limit_headers(requests=(5000, 4000), tokens=(150000, 0), reset_requests="1s", reset_tokens="20s")
    srv.script(Error(429, "Rate limit reached for tokens", code="rate_limit_exceeded", headers=limits))
    result = run_chatcli("hi", env={"CHATCLI_MAX_RETRIES": "0"})
    line = error_line(result, EXIT_FAILURE)
    assert re.fullmatch(r"chatcli: The server's rate limit for tokens was reached \(429\); it resets in (20|19)s, "
                        r"so wait until then and try again, or lower max_tokens\.", line), line

    srv.script(Error(429, "Rate limit reached for tokens", code="rate_limit_exceeded", headers=limits))
    session = make_session(srv)
    turn = session.send("hi")
    assert turn.error is not None and "resets in" in turn.error.message
    assert re.search(r"│ ⚠ tokens 0% left, resets in (20|19)s ", _toolbar(session)), _toolbar(session)


def test_a_429_naming_no_exhausted_limit_says_the_later_reset(srv, run_chatcli):
    srv.script(Error(429, "slow down", headers=rate_limit_headers(openrouter=(20, 3, 45))))
    line = error_line(run_chatcli("hi", env={"CHATCLI_MAX_RETRIES": "0"}), EXIT_FAILURE)
    assert re.fullmatch(r"chatcli: The server's rate limit was reached \(429\); it resets in 4[45]s, "
                        r"so wait until then and try again\.", line), line


def test_a_429_without_reset_headers_keeps_its_old_sentence(srv, run_chatcli):
    srv.script(Error(429, "Rate limit reached", headers=rate_limit_headers(tokens=(1000, 0), reset_tokens=None)))
    line = error_line(run_chatcli("hi", env={"CHATCLI_MAX_RETRIES": "0"}), EXIT_FAILURE)
    assert line == "chatcli: The server is rate limiting requests (429); wait a moment and try again."


def test_usage_before_any_turn_still_shows_limits_heard():
    session = Session(client=_client(), model="gpt-4o-mini")
    limits = read_rate_limits(OPENAI)
    assert limits is not None
    session.client.rate_limits = limits
    assert REGISTRY.dispatch(session, "/usage").text.startswith("No turns yet.\nRate limits: requests 4,990 of 5,000")


def test_a_429_whose_limit_resets_long_after_the_retries_would_come_is_said_at_once(srv, run_chatcli):
    far = rate_limit_headers(requests=(100, 0), tokens=(10000, 300), reset_requests="1m30s", reset_tokens="1s")
    srv.script(Error(429, "Rate limit reached for requests", headers=far))
    line = error_line(run_chatcli("hi", env={"CHATCLI_MAX_RETRIES": "2"}), EXIT_FAILURE)
    assert re.fullmatch(r"chatcli: The server's rate limit for requests was reached \(429\); it resets in "
                        r"1m(30|29)s, so wait until then and try again\.", line), line
    assert len(srv.chat_requests) == 1  # not asked again seconds later, to be refused again

    near = rate_limit_headers(requests=(100, 0), reset_requests="200ms")
    srv.script(Error(429, "Rate limit reached for requests", headers=near), Reply("in time"))
    result = run_chatcli("hi", env={"CHATCLI_MAX_RETRIES": "2"})
    assert result.returncode == 0 and result.stdout == "in time\n"  # a reset within reach is waited for
