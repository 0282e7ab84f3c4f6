"""Personal data scrubbed from outgoing text (opt-in with `redact = [...]`), and secrets
kept out of everything chatcli shows, logs or reports (`redact_secrets`, always on).

Each kind is found by a regex plus a small check in Python (a checksum, a
date, a digit count), because a regex alone cannot tell a card number from any
other 16 digits. Matches are found on the original text for every requested
kind, then kept in a fixed priority order (`PRIORITY`) so that no piece of text
is claimed twice: an API key may contain digits that look like a phone number,
an email's local part may be a phone number (QQ mail), an ID number may pass
the Luhn check. Only the matched spans change; everything else comes back as
it was sent.

The patterns favour precision. A false positive corrupts what the user meant
to ask; a redaction the user cannot predict is one they stop trusting. So:

- Numbers must stand alone: not inside a longer run of digits, letters or
  underscores (hashes, UUIDs, identifiers), and not the digits after a decimal
  point (floats such as 0.30000000000000004). Digits are ASCII `[0-9]`, never
  `\\d`, which also matches full-width and other scripts' digits; those are
  left alone.
- email: ASCII addresses whose domain has a dot and a TLD of 2+ letters.
  `user@localhost`, `@handle`, `@property` and `a@b.c` are not addresses one
  can mail from outside, so they stay. `x@self.weights` (matmul without
  spaces) does look like an address and is scrubbed; that is the price of
  catching `name@company.internal`.
- phone: `+` and a country code with 8-15 digits in all (E.164), grouped by
  spaces, dots, hyphens or parentheses; mainland China mobiles (11 digits,
  1[3-9]..., optionally +86/0086); North American numbers only in their
  punctuated forms, `(415) 555-2671`, `415-555-2671`, `415.555.2671`, because
  ten bare digits are too often something else. Not after `#` (order numbers).
- id_card: 18-character mainland China resident ID numbers with a real birth
  date and a valid ISO 7064 MOD 11-2 check character. The retired 15-digit
  form is not matched.
- credit_card: 13-19 digits passing Luhn, with a length that fits the issuer
  its first digits name (Visa 13/16/19, Amex 15, Mastercard 2-series 16...),
  bare or grouped 4-4-4-4, 4-6-5, 4-6-4 or 4-4-4-1 by one space or hyphen.
- api_key: the prefixed formats of OpenAI/Anthropic, GitHub, AWS, Google,
  Slack, Stripe and Hugging Face, and the token after `Bearer`. `sk-` keys and
  Bearer tokens must hold a digit, so `sk-learn-compatible-estimators` stays.

Every regex runs in linear time: the repeating parts are possessive or cannot
be split two ways, and each candidate starts only where its run of characters
starts.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("email", "phone", "id_card", "credit_card", "api_key")

# Which kind keeps a piece of text two kinds both match: the more specific first.
PRIORITY = ("api_key", "email", "id_card", "credit_card", "phone")

NOUNS = {
    "email": ("email address", "email addresses"),
    "phone": ("phone number", "phone numbers"),
    "id_card": ("ID card number", "ID card numbers"),
    "credit_card": ("payment card number", "payment card numbers"),
    "api_key": ("API key", "API keys"),
}

# A number stands alone: no digit, ASCII letter or underscore next to it, and no decimal point.
_ALONE_LEFT = r"(?<![0-9A-Za-z_])(?<![0-9]\.)"
_ALONE_RIGHT = r"(?![0-9A-Za-z_])(?!\.[0-9])"

_PATTERNS = {
    "email": r"""
        (?<![A-Za-z0-9._%+-])             # the start of the local part, not its middle
        [A-Za-z0-9._%+-]++ @
        (?:[A-Za-z0-9-]++ \.)+ [A-Za-z]{2,}+
        (?![A-Za-z0-9-])
    """,
    "phone": rf"""
        (?<![#+]) {_ALONE_LEFT}
        (?:
            (?P<intl> \+ [1-9] [0-9]*+                         # +country code, then groups
                (?: (?: [ .-] | [ .-]?\( [0-9]++ \)[ .-]? ) [0-9]++ )*+ )
          | (?: (?:\+|00) 86 [ -]? )?                          # mainland China mobile
            1[3-9][0-9] (?: [0-9]{{8}} | (?P<cn>[ -]) [0-9]{{4}} (?P=cn) [0-9]{{4}} )
          | (?: 1[ .-] )?                                      # North America, punctuated
            (?: \( [2-9][0-9]{{2}} \) [ ]? [2-9][0-9]{{2}} -
              | [2-9][0-9]{{2}} (?P<na>[.-]) [2-9][0-9]{{2}} (?P=na) )
            [0-9]{{4}}
        )
        {_ALONE_RIGHT}
    """,
    "id_card": rf"""
        {_ALONE_LEFT}
        [1-9][0-9]{{5}} (?:18|19|20)[0-9]{{2}} (?:0[1-9]|1[0-2]) (?:0[1-9]|[12][0-9]|3[01])
        [0-9]{{3}} [0-9Xx]
        {_ALONE_RIGHT}
    """,
    "credit_card": rf"""
        {_ALONE_LEFT}
        (?: [2-6][0-9]{{12,18}}
          | [2-6][0-9]{{3}} (?P<sep>[ -])
            (?: [0-9]{{4}} (?P=sep) [0-9]{{4}} (?P=sep) [0-9]{{1,4}}
              | [0-9]{{6}} (?P=sep) [0-9]{{4,5}} ) )
        {_ALONE_RIGHT}
    """,
    "api_key": r"""
        (?<![A-Za-z0-9_-])
        (?: (?P<sk> sk-[A-Za-z0-9_-]{20,}+ )              # OpenAI sk-, sk-proj-; Anthropic sk-ant-
          | gh[opsur]_[A-Za-z0-9]{30,}+                   # GitHub
          | github_pat_[A-Za-z0-9_]{22,}+
          | (?:AKIA|ASIA)[0-9A-Z]{16} (?![A-Za-z0-9])      # AWS access key id
          | AIza[0-9A-Za-z_-]{35} (?![A-Za-z0-9_-])        # Google
          | xox[baprs]-[0-9A-Za-z-]{10,}+                 # Slack
          | [spr]k_(?:live|test)_[0-9A-Za-z]{16,}+        # Stripe
          | hf_[A-Za-z0-9]{30,}+                          # Hugging Face
          | [Bb]earer [ \t]++ (?P<bearer> [A-Za-z0-9_.~+/-]{20,}+ =*+ ) )
    """,
}


@dataclass(frozen=True)
class Scrubbed:
    text: str  # the text with each match replaced by its placeholder
    counts: dict[str, int]  # kind -> number replaced, only kinds with > 0, in KINDS order


def scrub_content(content: Any, kinds: Iterable[str]) -> Any:
    """A message's content with the given kinds scrubbed: a string, or the text parts of a list
    (a message with images); anything else as it is."""
    if isinstance(content, str):
        return scrub(content, kinds).text
    if isinstance(content, list):
        return [{**p, "text": scrub(p["text"], kinds).text} if isinstance(p, dict) and isinstance(p.get("text"), str)
                else p for p in content]
    return content


def placeholder(kind: str) -> str:
    return f"[{kind.upper()}_REDACTED]"


def scrub(text: str, kinds: Iterable[str]) -> Scrubbed:
    """`text` with each match of the given kinds replaced by its placeholder, and how many of each."""
    wanted = set(kinds)
    unknown = wanted.difference(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds of personal data: {', '.join(sorted(unknown))}")
    claimed: list[tuple[int, int, str]] = []  # (start, end, kind), kept sorted by start
    for kind in PRIORITY:
        if kind in wanted:
            for start, end in _FINDERS[kind](text):
                _claim(claimed, start, end, kind)
    parts: list[str] = []
    counts = dict.fromkeys(KINDS, 0)
    at = 0
    for start, end, kind in claimed:
        parts += (text[at:start], placeholder(kind))
        counts[kind] += 1
        at = end
    parts.append(text[at:])
    return Scrubbed("".join(parts), {kind: n for kind, n in counts.items() if n})


def describe(counts: Mapping[str, int]) -> str:
    """`counts` in words, as in "2 email addresses and 1 phone number"; "" when nothing was scrubbed."""
    phrases = []
    for kind in KINDS:
        n = counts.get(kind, 0)
        if n > 0:
            phrases.append(f"{n} {NOUNS[kind][n != 1]}")
    if len(phrases) < 2:
        return "".join(phrases)
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _claim(claimed: list[tuple[int, int, str]], start: int, end: int, kind: str) -> None:
    """Adds the span unless a kind earlier in PRIORITY has claimed any of its text."""
    i = bisect.bisect_left(claimed, (start,))
    if i > 0 and claimed[i - 1][1] > start:
        return
    if i < len(claimed) and claimed[i][0] < end:
        return
    claimed.insert(i, (start, end, kind))


@functools.cache
def _regex(kind: str) -> re.Pattern[str]:
    """Compiled on first use, so importing this module costs nothing."""
    return re.compile(_PATTERNS[kind], re.VERBOSE)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _regex("email").finditer(text):
        yield m.span()


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _regex("phone").finditer(text):
        intl = m["intl"]
        if intl is not None and not _plausible_international(intl):
            continue
        yield m.span()


def _plausible_international(number: str) -> bool:
    """E.164 allows 15 digits at most; fewer than 8 is a short code or a signed number."""
    digits = _digits(number)
    if not 8 <= len(digits) <= 15:
        return False
    return not re.fullmatch(r"\+[0-9]{4}([-./])[0-9]{1,2}\1[0-9]{1,2}", number)  # +2024-01-15 in a diff


def _id_cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _regex("id_card").finditer(text):
        if _valid_id_card(m[0]):
            yield m.span()


ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"


def _valid_id_card(number: str) -> bool:
    """A real birth date and the ISO 7064 MOD 11-2 check character of GB 11643."""
    try:
        datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    total = sum(int(c) * w for c, w in zip(number[:17], ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11] == number[17].upper()


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _regex("credit_card").finditer(text):
        digits = _digits(m[0])
        if _plausible_card_length(digits) and _luhn_valid(digits):
            yield m.span()


def _plausible_card_length(digits: str) -> bool:
    """Whether the issuer that the first digits name issues numbers of this length."""
    n = len(digits)
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if digits[:2] in ("34", "37"):  # American Express
        return n == 15
    if digits[0] == "3":  # Diners Club, JCB
        return 14 <= n <= 19
    if digits[0] == "2":  # Mastercard 2-series
        return n == 16 and 2221 <= int(digits[:4]) <= 2720
    return 16 <= n <= 19  # Mastercard, Maestro, Discover, UnionPay


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _api_keys(text: str) -> Iterator[tuple[int, int]]:
    for m in _regex("api_key").finditer(text):
        if m["bearer"] is not None:
            if _has_digit(m["bearer"]):
                yield m.span("bearer")  # "Bearer " stays, so the header still reads as one
        elif m["sk"] is None or _has_digit(m["sk"]):
            yield m.span()


def _digits(text: str) -> str:
    return "".join(c for c in text if "0" <= c <= "9")


def _has_digit(text: str) -> bool:
    return any("0" <= c <= "9" for c in text)


_FINDERS = {
    "email": _emails,
    "phone": _phones,
    "id_card": _id_cards,
    "credit_card": _cards,
    "api_key": _api_keys,
}


# --------------------------------------------------------------------------- #
# Secrets in text chatcli shows or logs
# --------------------------------------------------------------------------- #

_USERINFO = r"(://[^/\s:@]*:)[^/\s@]+@"
_AUTH = r"(?i)\b(authorization|api-key|x-api-key)(['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?[^\s'\",}]+"


def hide_password(text: str) -> str:
    """http://user:secret@host/v1 -> http://user:***@host/v1, wherever a URL appears in text."""
    return re.sub(_USERINFO, r"\1***@", text)  # re caches the compiled pattern


def redact_secrets(text: str, secret: str | None) -> str:
    """Text bound for the terminal, a log or a crash report, without secrets: the configured key,
    credentials in Authorization / api-key headers and in URLs, and anything shaped like a key."""
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(_AUTH, r"\1\2***", hide_password(text))
    return scrub(text, ("api_key",)).text


# --------------------------------------------------------------------------- #
# The configured secrets, out of what a server sends back
# --------------------------------------------------------------------------- #

SHOWN_AS = "***"


def worth_hiding(secret: str) -> bool:
    """Whether a configured value is a secret that free text must never show.

    A placeholder key (`ollama`, `EMPTY`, `lm-studio`, `sk-no-key-required`) is no secret, and
    taking every "ollama" out of a reply about Ollama would corrupt it; a real key or token is
    long, and has digits.
    """
    return len(secret) >= 24 or (len(secret) >= 8 and _has_digit(secret))


def configured_secrets(config) -> tuple[str, ...]:
    """The secrets a config holds, longest first: the API key, the values of its extra headers
    and of its MCP servers' env (which may carry credentials), and the passwords in base_url and proxy."""
    from urllib.parse import urlsplit  # lazy: off the path of chatcli --help

    found = [config.api_key or "", *config.headers.values()]
    found += [value for server in getattr(config, "mcp", {}).values() for value in server.get("env", {}).values()]
    for url in (config.base_url, config.proxy):
        try:
            found.append(urlsplit(url or "").password or "")
        except ValueError:
            pass
    return tuple(sorted({s for s in found if worth_hiding(s)}, key=len, reverse=True))


def hide_known(text: str, secrets: Iterable[str]) -> str:
    """text with every configured secret replaced by ***."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, SHOWN_AS)
    return text


