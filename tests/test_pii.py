"""Scrubbing personal data: what a user sees in the text that is sent.

True positives become their placeholder with the text around them untouched;
look-alikes (versions, dates, hashes, floats, checksums that fail) come back
exactly as written. The checksums are recomputed here by small independent
implementations, so a test number is valid because the test says so, not
because pii.py does. Fake API keys are assembled from pieces so that no
secret scanner mistakes this file for a leak.
"""

from __future__ import annotations

import random
import time

import pytest

from chatcli.base.pii import KINDS, Scrubbed, describe, scrub
from tests.support.keys import TEST_KEY
from tests.support.repl import ENTER, flat, piped_chat
from tests.support.sessions import make_session

EMAIL = "[EMAIL_REDACTED]"
PHONE = "[PHONE_REDACTED]"
ID_CARD = "[ID_CARD_REDACTED]"
CARD = "[CREDIT_CARD_REDACTED]"
KEY = "[API_KEY_REDACTED]"
PLACEHOLDER = {"email": EMAIL, "phone": PHONE, "id_card": ID_CARD, "credit_card": CARD, "api_key": KEY}


def id_check_char(first17: str) -> str:
    """GB 11643: the weights are 2**(17-i) mod 11, the check char makes the weighted sum 1 mod 11."""
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def with_id_check(first17: str) -> str:
    return first17 + id_check_char(first17)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    odd = digits[-1::-2]
    even = [sum(divmod(2 * d, 10)) for d in digits[-2::-2]]
    return (sum(odd) + sum(even)) % 10 == 0


def with_luhn_check(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def key(prefix: str, length: int, alphabet: str = "a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ") -> str:
    body = (alphabet * (length // len(alphabet) + 1))[:length]
    return prefix + body


def scrub_all(text: str) -> Scrubbed:
    return scrub(text, KINDS)


# --- the helpers above agree with published examples ---------------------------------------


def test_test_helpers_agree_with_published_examples():
    assert id_check_char("11010519491231002") == "X"
    for number in ("4111111111111111", "4242424242424242", "378282246310005", "5555555555554444"):
        assert luhn_ok(number)
    assert not luhn_ok("4111111111111112")


# --- true positives: each becomes its placeholder, and nothing else changes --------------------

POSITIVES = {
    "email": [
        "john.doe@example.com",
        "first_last+newsletter@mail.example.co.uk",
        "x%relay@mail-server.org",
        "12345678@qq.com",
        "ALICE@EXAMPLE.COM",
        "a.b-c@d-e.io",
        "name@company.internal",
    ],
    "phone": [
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+86 138 0013 8000",
        "+8613800138000",
        "+86-138-0013-8000",
        "+33 6 12 34 56 78",
        "0086 138 0013 8000",
        "13800138000",
        "138-0013-8000",
        "138 0013 8000",
        "19912345678",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-415-555-2671",
    ],
    "id_card": [
        "11010519491231002X",
        "11010519491231002x",
        with_id_check("44030619900101123"),
        with_id_check("31010120000229123"),  # 29 February of a leap year
        with_id_check("51010018991231001"),  # born in the 1800s
        with_id_check("65010220241130456"),
    ],
    "credit_card": [
        "4111 1111 1111 1111",
        "4242-4242-4242-4242",
        "4111111111111111",
        "3782 822463 10005",
        "378282246310005",
        "5555 5555 5555 4444",
        "2223003122003222",  # Mastercard 2-series
        "6011111111111117",  # Discover
        "3056 930902 5904",  # Diners Club, 14 digits
        "4222222222222",  # Visa, 13 digits
    ],
    "api_key": [
        key("sk-", 48),
        key("sk-proj-", 100, "Ab3_-Xy9Zq"),
        key("sk-ant-api03-", 80, "Qw7-Er_4Ty"),
        key("ghp_", 36),
        key("gho_", 36),
        key("github_pat_", 82, "11ABcd_Ef9"),
        "AKIA" + "IOSFODNN7EXAMPLE",
        "ASIA" + "Y34FZKBOKMUTVV7A",
        key("AIza", 35, "SyA1b2C3_d4-E5f"),
        "xoxb-" + "123456789012-1234567890123-" + key("", 24),
        key("sk_live_", 24),
        key("rk_live_", 24),
        key("pk_live_", 24),
        key("sk_test_", 24),
        key("hf_", 34),
    ],
}


@pytest.mark.parametrize(
    ("kind", "value"), [(kind, value) for kind, values in POSITIVES.items() for value in values]
)
@pytest.mark.parametrize("kinds", ["only", "all"])
def test_true_positives_become_the_placeholder(kind: str, value: str, kinds: str):
    text = f"before {value} after\n"
    result = scrub(text, [kind] if kinds == "only" else KINDS)
    assert result.text == f"before {PLACEHOLDER[kind]} after\n"
    assert result.counts == {kind: 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at john@example.com.", f"Mail me at {EMAIL}."),
        ("<john@example.com>", f"<{EMAIL}>"),
        ("mailto:john@example.com?subject=hi", f"mailto:{EMAIL}?subject=hi"),
        ("请拨打13800138000联系我", f"请拨打{PHONE}联系我"),
        ("电话：+86 138 0013 8000。", f"电话：{PHONE}。"),
        ("邮箱是zhang.san@example.cn，谢谢", f"邮箱是{EMAIL}，谢谢"),
        ("身份证号：11010519491231002X。", f"身份证号：{ID_CARD}。"),
        ("tel:+14155552671", f"tel:{PHONE}"),
        ("Call 415-555-2671, or (415) 555-2671.", f"Call {PHONE}, or {PHONE}."),
        ("card 4111 1111 1111 1111 exp 12/25 cvv 123", f"card {CARD} exp 12/25 cvv 123"),
        ("4111 1111 1111 1111 12/25 123", f"{CARD} 12/25 123"),
        ("Authorization: Bearer " + key("eyJ", 60), f"Authorization: Bearer {KEY}"),
        ("curl -H 'Authorization: bearer " + key("", 32) + "'", f"curl -H 'Authorization: bearer {KEY}'"),
        ("OPENAI_API_KEY=" + key("sk-", 48) + "\n", f"OPENAI_API_KEY={KEY}\n"),
        ("api_key: '" + key("sk-proj-", 64) + "'", f"api_key: '{KEY}'"),
    ],
)
def test_matches_in_context_keep_their_surroundings(text: str, expected: str):
    assert scrub_all(text).text == expected


# --- look-alikes: nothing matches, the text comes back unchanged --------------------------------

LOOKALIKES = {
    "email": [
        "user@localhost",
        "@handle said hi",
        "@property\ndef name(self):",
        "a@b.c",
        "foo@bar",
        "npm i @types/node",
        "name@",
        "@example.com",
        "git rev-parse @{upstream}",
        "john at example dot com",
    ],
    "phone": [
        "1.2.3",
        "v13.8.0",
        "2024-01-15",
        "12:30:45",
        "2024-01-15T12:30:45+08:00",
        "+2024-01-15",
        "192.168.100.200",
        "10.0.0.1",
        "#12345678",
        "order #13800138000",
        "$1,299.99",
        "12345678901",  # 11 digits, but not 1[3-9]
        "99913800138000999999",  # a mobile number's digits inside a 20-digit number
        "0.13800138000",
        "123-456-7890",  # no North American area code starts with 1
        "+1 2",
        "+12345",
        "ISBN 978-3-16-148410-0",
        "+86 138 0013 8000 1234 5678 9012",  # too many digits for E.164
        "１３８００１３８０００",  # full-width digits are left alone
    ],
    "id_card": [
        "110105194912310021",  # the published example with its check character changed
        "11010519491231002Y",
        with_id_check("11010519490230100"),  # 30 February
        with_id_check("11010519000229100"),  # 1900 was not a leap year
        with_id_check("11010517500101100"),  # born in 1750
        with_id_check("11010519491301100"),  # month 13
        "11010519491231002",  # 17 characters
        "911010519491231002X",  # inside a longer number
        "11010519491231002X9",
    ],
    "credit_card": [
        "4111 1111 1111 1112",
        "4242-4242-4242-4241",
        "3782 822463 10006",
        "4111111111111112",
        "99994111111111111111",  # a valid number's digits inside a longer run
        "0.4111111111111111",
        "0x4111111111111111",
        "a4111111111111111f",
        "1234567812345670",  # Luhn-valid, but no card network starts with 1
        with_luhn_check("3400000000000"),  # Luhn-valid, but Amex numbers have 15 digits, not 14...
        with_luhn_check("340000000000000"),  # ...nor 16
        with_luhn_check("4000000000000"),  # Visa has no 14-digit numbers
        with_luhn_check("200000000000000"),  # below the Mastercard 2-series
        "4111111111111111" + "9",
    ],
    "api_key": [
        "sk-learn",
        "pip install scikit-learn  # sk-learn",
        "sk-learn-compatible-estimators-api",
        "ask-me-anything-about-the-project-timeline",
        "task-list-for-the-quarter-2024-q3-review",
        "risk-free-investment-strategies-for-2024",
        "Bearer token",
        "Bearer authentication-is-configured-for-this",
        "Authorization: Bearer YOUR_OPENAI_API_KEY_HERE",
        "Bearer $OPENAI_API_KEY",
        "AKIA1234",
        "ghp_short",
        "from huggingface_hub import hf_hub_download",
        "sk_live_short",
    ],
}

# Not personal data of any kind.
OTHER_LOOKALIKES = [
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "a13800138000b4111111111111111c11010519491231002",  # digits inside a hex string
    "550e8400-e29b-41d4-a716-446655440000",
    "123e4567-e89b-12d3-a456-426614174000",
    "Python 3.11.7 (main, Dec 18 2023, 10:02:58) [GCC 12.2.0]",
    "0.30000000000000004",
    "1700000000000",
    "2024-01-15 12:30:45.123456",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "",
]


@pytest.mark.parametrize("text", [t for texts in LOOKALIKES.values() for t in texts] + OTHER_LOOKALIKES)
def test_lookalikes_come_back_unchanged(text: str):
    result = scrub_all(f"see {text} here")
    assert result.text == f"see {text} here"
    assert result.counts == {}


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1111",  # a card
        "4111111111111111",
        with_id_check("11010519491231002"),  # an ID number
        "11010519491231002X",
        "12345678901234567890",
    ],
)
def test_other_kinds_of_number_are_not_phone_numbers(text: str):
    assert scrub(text, ["phone"]).text == text


# --- counts and the sentence that reports them ------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "sentence"),
    [
        ({}, ""),
        ({"email": 0}, ""),
        ({"email": 1}, "1 email address"),
        ({"email": 2}, "2 email addresses"),
        ({"phone": 1, "email": 1}, "1 email address and 1 phone number"),
        (
            {"credit_card": 1, "phone": 1, "email": 2},
            "2 email addresses, 1 phone number and 1 payment card number",
        ),
        ({"id_card": 3, "api_key": 1}, "3 ID card numbers and 1 API key"),
        (
            {"email": 1, "phone": 2, "id_card": 1, "credit_card": 2, "api_key": 3},
            "1 email address, 2 phone numbers, 1 ID card number, 2 payment card numbers and 3 API keys",
        ),
    ],
)
def test_describe(counts: dict[str, int], sentence: str):
    assert describe(counts) == sentence


MIXED = (
    "Hi, I'm Zhang San (zhang.san@example.cn, backup zs@corp.example.com).\n"
    "Phone: 13800138000 or +44 20 7946 0958. ID: 11010519491231002X\n"
    "Card 4111 1111 1111 1111, key " + key("sk-proj-", 60) + ".\n"
    "\tversion 1.2.3 released 2024-01-15 — 谢谢!\r\n"
)


def test_mixed_message_scrubs_every_kind_once():
    result = scrub_all(MIXED)
    assert result.text == (
        f"Hi, I'm Zhang San ({EMAIL}, backup {EMAIL}).\n"
        f"Phone: {PHONE} or {PHONE}. ID: {ID_CARD}\n"
        f"Card {CARD}, key {KEY}.\n"
        "\tversion 1.2.3 released 2024-01-15 — 谢谢!\r\n"
    )
    assert result.counts == {"email": 2, "phone": 2, "id_card": 1, "credit_card": 1, "api_key": 1}
    assert list(result.counts) == ["email", "phone", "id_card", "credit_card", "api_key"]
    assert describe(result.counts) == (
        "2 email addresses, 2 phone numbers, 1 ID card number, 1 payment card number and 1 API key"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_requested_kinds_are_scrubbed(kind: str):
    result = scrub(MIXED, [kind])
    assert set(result.counts) == {kind}
    for other, placeholder in PLACEHOLDER.items():
        assert (placeholder in result.text) == (other == kind)


def test_no_kinds_scrub_nothing():
    assert scrub(MIXED, []) == Scrubbed(MIXED, {})


def test_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="ssn"):
        scrub("text", ["email", "ssn"])


def luhn_valid_id_number() -> str:
    """An ID number that starts like a Diners/JCB card and passes Luhn too."""
    for sequence in range(1000):
        number = with_id_check(f"31010119900101{sequence:03d}")
        if number[-1] != "X" and luhn_ok(number):
            return number
    raise AssertionError("no ID number that also passes Luhn")


LUHN_VALID_ID = luhn_valid_id_number()


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        # A QQ address is one email, not an email holding a phone number.
        ("13800138000@qq.com", EMAIL, {"email": 1}),
        # The key after Bearer is one API key, found by two patterns.
        ("Bearer " + key("sk-", 48), f"Bearer {KEY}", {"api_key": 1}),
        # A Luhn-valid ID number is an ID number, not a card.
        (LUHN_VALID_ID, ID_CARD, {"id_card": 1}),
        # A phone number inside a key is part of the key.
        (key("hf_", 10) + "13800138000" + key("", 20), KEY, {"api_key": 1}),
    ],
)
def test_overlapping_kinds_are_counted_once(text: str, expected: str, counts: dict[str, int]):
    result = scrub_all(text)
    assert result.text == expected
    assert result.counts == counts


def test_scrubbing_twice_changes_nothing_more():
    once = scrub_all(MIXED)
    twice = scrub_all(once.text)
    assert twice == Scrubbed(once.text, {})


def test_unicode_and_whitespace_survive_byte_for_byte():
    text = "  多行\r\n文本 🙂\tcafé\u00a0naïve\u200b 电话13800138000。\n\n"
    result = scrub_all(text)
    assert result.text == f"  多行\r\n文本 🙂\tcafé\u00a0naïve\u200b 电话{PHONE}。\n\n"


@pytest.mark.parametrize(
    "text",
    [
        "１３８００１３８０００",
        "138００１３８０００",
        "４１１１ １１１１ １１１１ １１１１",
        "4111１１１１１１１１１１１１",
        "110105１９４９１２３１００２X",
        "٠١٢٣٤٥٦٧٨٩٠١٢٣",
        "＋８６ １３８ ００１３ ８０００",
    ],
)
def test_non_ascii_digits_do_not_match_or_crash(text: str):
    assert scrub_all(text) == Scrubbed(text, {})


# --- linear time -----------------------------------------------------------------------------

ADVERSARIAL = [
    "1 2-3.4 ",
    "a@a.a@",
    "+1 +1 ",
    "0" * 64,
    "+1 (1) ",
    "sk-" * 10,
    "x@" + "a." * 40,
    "Bearer " + " " * 40,
    "1-" * 40,
    "1." * 40,
    "(" * 10 + "1" * 10 + ")" * 10,
]


def test_a_megabyte_of_adversarial_text_is_scrubbed_quickly():
    """A catastrophic backtrack would take minutes; 5 s only catches that, not a slow machine."""
    mix = "\n".join(ADVERSARIAL) + "\n"
    text = mix * (500_000 // len(mix))
    for piece in ADVERSARIAL:
        text += piece * (50_000 // len(piece)) + "\n"  # long runs of each shape, too
    start = time.perf_counter()
    result = scrub_all(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 5
    assert len(result.text) == len(text)
    assert result == Scrubbed(text, {})


def test_a_megabyte_of_mixed_random_text_is_scrubbed_quickly():
    rng = random.Random(7)
    alphabet = "abcXYZ0123456789 .-+@_()#:/\n中文"
    text = "".join(rng.choices(alphabet, k=1_000_000))
    start = time.perf_counter()
    scrub_all(text)
    assert time.perf_counter() - start < 5


# --------------------------------------------------------------------------- #
# In use: config `redact`, what is sent, said, saved and kept in history
# --------------------------------------------------------------------------- #

MESSAGE = "Mail ana@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, due 2024-01-15 at 12:30."
SCRUBBED = f"Mail {EMAIL} or call {PHONE}; card {CARD}, due 2024-01-15 at 12:30."
SAID = "chatcli: redacted 1 email address, 1 phone number and 1 payment card number before sending."


def saved_texts(db) -> list[str]:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("SELECT content FROM messages ORDER BY id")]


def test_a_one_shot_ask_sends_and_saves_the_scrubbed_text_and_says_what_went(srv, run_chatcli, isolated_env):
    from tests.support.server import Echo

    config = isolated_env / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('redact = ["email", "phone", "credit_card"]\n')
    srv.script(Echo())
    result = run_chatcli(MESSAGE)

    assert result.returncode == 0, result.stderr
    assert srv.chat_requests[0].body["messages"] == [{"role": "user", "content": SCRUBBED}]
    assert result.stderr == SAID + "\n"
    assert result.stdout == f"echo: {SCRUBBED}\n"
    db = isolated_env / "data" / "chatcli" / "chatcli.db"
    assert saved_texts(db) == [SCRUBBED, f"echo: {SCRUBBED}"]
    for secret in ("ana@example.com", "7946 0958", "4111 1111"):
        assert secret.encode() not in db.read_bytes()


def test_only_the_kinds_asked_for_are_scrubbed_and_none_without_the_setting(srv, run_chatcli):
    from tests.support.server import Echo

    srv.script(Echo(), Echo())
    some = run_chatcli(MESSAGE, env={"CHATCLI_REDACT": "email"})
    none = run_chatcli(MESSAGE)

    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == [
        MESSAGE.replace("ana@example.com", EMAIL), MESSAGE,
    ]
    assert some.stderr == "chatcli: redacted 1 email address before sending.\n"
    assert none.stderr == ""


@pytest.mark.parametrize(
    "setting, words",
    [
        ('redact = ["emial"]', ["unknown kind 'emial'", "did you mean 'email'"]),
        ('redact = "email"', ["must be a list", 'redact = ["email", "phone"]']),
        ("redact = [1]", ["must be a list"]),
    ],
)
def test_a_bad_redact_setting_is_one_sentence(srv, run_chatcli, isolated_env, setting, words):
    config = isolated_env / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(setting + "\n")
    result = run_chatcli("hello")

    assert result.returncode == 3 and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr.lower()
    assert srv.chat_requests == []


def test_the_repl_says_what_it_scrubbed_above_the_reply_and_keeps_it_out_of_history(srv, tmp_path):
    from contextlib import ExitStack

    from chatcli.config.settings import Config
    from chatcli.core.journal import Journal
    from tests.support.server import Echo

    journal = Journal.open(tmp_path / "chatcli.db")
    config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, redact=KINDS)
    session = make_session(config=config, model="gpt-4o-mini", journal=journal)
    srv.script(Echo(), Echo())
    with ExitStack() as stack:
        stack.callback(journal.store.close)
        chat = piped_chat(stack, session, history=tmp_path / "history")
        out = chat.run(MESSAGE, ENTER, "/retry", ENTER)

    notice = "redacted 1 email address, 1 phone number and 1 payment card number before sending"
    assert flat(out).count(notice) == 1  # /retry sends the scrubbed text: nothing more to scrub
    assert flat(out).index(notice) < flat(out).index(f"echo: {SCRUBBED}")
    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == [SCRUBBED, SCRUBBED]
    history = (tmp_path / "history").read_text()
    assert SCRUBBED in history and "ana@example.com" not in history
    assert saved_texts(tmp_path / "chatcli.db") == [SCRUBBED, f"echo: {SCRUBBED}"]


def test_the_system_prompt_is_scrubbed_too_from_a_flag_or_slash_system(srv, run_chatcli, isolated_env):
    from tests.support.server import Echo

    srv.script(Echo())
    result = run_chatcli("--system", "I am carol@corp.example.com", "hi", env={"CHATCLI_REDACT": "email"})

    assert result.returncode == 0, result.stderr
    assert srv.chat_requests[0].body["messages"][0] == {"role": "system", "content": f"I am {EMAIL}"}
    assert result.stderr == "chatcli: redacted 1 email address from the system prompt.\n"
    db = isolated_env / "data" / "chatcli" / "chatcli.db"
    assert b"carol@corp" not in db.read_bytes()

    from chatcli.commands import REGISTRY
    from chatcli.config.settings import Config

    session = make_session(config=Config(base_url=srv.base_url, redact=("phone",)), model="gpt-4o-mini")
    result = REGISTRY.dispatch(session, "/system Call me on +44 20 7946 0958.")
    assert result.text == "System prompt set (redacted 1 phone number from the system prompt); the history is kept."
    assert session.system == f"Call me on {PHONE}."


def test_turns_saved_before_redaction_was_on_are_scrubbed_when_sent_again(srv, run_chatcli, isolated_env):
    from tests.support.server import Echo

    srv.script(Echo(), Echo())
    assert run_chatcli("my mail is dan@example.net").returncode == 0  # saved as written: redaction is off
    result = run_chatcli("--resume", "1", "and again?", env={"CHATCLI_REDACT": "email"})

    assert result.returncode == 0, result.stderr
    assert srv.chat_requests[-1].body["messages"] == [
        {"role": "user", "content": f"my mail is {EMAIL}"},
        {"role": "assistant", "content": f"echo: my mail is {EMAIL}"},
        {"role": "user", "content": "and again?"},
    ]


def test_a_project_env_file_cannot_turn_off_the_users_redaction(srv, run_chatcli, isolated_env):
    from pathlib import Path

    from tests.support.server import Echo

    config = isolated_env / "config" / "chatcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('redact = ["email"]\n')
    (Path.cwd() / ".env").write_text("CHATCLI_REDACT=\n")
    srv.script(Echo(), Echo())
    run_chatcli("mail ana@example.com")
    run_chatcli("mail ana@example.com, +44 20 7946 0958", env={"CHATCLI_REDACT": "phone"})  # kinds add up

    assert [r.body["messages"][-1]["content"] for r in srv.chat_requests] == [
        f"mail {EMAIL}", f"mail {EMAIL}, {PHONE}",
    ]
