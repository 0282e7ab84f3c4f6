"""The content filter in process: which texts hold a blocked word, how a reply's events are held
back and let out, and how the config gives the words (block_words, block_words_file, profiles)."""

from __future__ import annotations

import os
import random
import string
import time
from pathlib import Path

import pytest

from chatcli.base.blocklist import Blocklist, normalized
from chatcli.base.errors import ConfigError
from chatcli.base.events import HELD, WITHHELD, Finish, ReasoningDelta, TextDelta, Usage, Withheld
from chatcli.base.held_reply import HeldReply
from chatcli.config.settings import load_config
from tests.support.running import make_env

# --------------------------------------------------------------------------- #
# matching
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("text", ["ASS", "what an ass.", "Ass-backwards", "(ass)", "这是ass的"])
def test_a_spaced_word_matches_whole_words_whatever_the_case(text: str) -> None:
    assert Blocklist(["ass"]).found(text)


@pytest.mark.parametrize("text", ["class", "Assassin", "bass guitar", "mass_ass", "2ass", "ässe"])
def test_a_spaced_word_does_not_match_inside_another_word(text: str) -> None:
    assert not Blocklist(["ass"]).found(text)


def test_a_word_in_a_script_without_spaces_matches_anywhere() -> None:
    blocklist = Blocklist(["禁止", "バカ", "ห้าม", "욕설"])
    assert blocklist.match("这是禁止的词") == "禁止"
    assert blocklist.match("お前はバカだ") == "バカ"  # Japanese kana, inside a sentence
    assert blocklist.match("お前はﾊﾞｶだ") == "バカ"  # half-width kana are the same word
    assert blocklist.match("คำนี้ห้ามใช้") == "ห้าม"  # Thai
    assert blocklist.match("이건 욕설이다") == "욕설"  # Korean, a particle joined to it
    assert not blocklist.found("这是允许的词")


def test_full_width_forms_and_invisible_characters_do_not_hide_a_word() -> None:
    blocklist = Blocklist(["badword", "two words"])
    assert blocklist.found("ＢＡＤＷＯＲＤ")  # full-width
    for hidden in ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e"):
        assert blocklist.found(f"a bad{hidden}word here"), repr(hidden)
    assert blocklist.found("TWO\n  Words")  # any white space between the words of a phrase
    assert not blocklist.found("badwords")
    assert Blocklist(["strasse"]).found("Die Straße")  # casefolded, not only lowered


def test_a_blocked_word_is_compared_in_the_same_form_as_the_text() -> None:
    # The word itself may be written in any of these forms: both sides are normalised alike.
    assert Blocklist(["ＢＡＤ\u200bword"]).found("a badword")
    assert normalized("Ｆｕｌｌ\u200b  Width") == "full width"


def test_a_shorter_word_that_is_not_whole_gives_way_to_a_longer_one() -> None:
    blocklist = Blocklist(["ass", "assx"])
    assert blocklist.match("an assx here") == "assx" and blocklist.match("ass") == "ass"
    assert not blocklist.found("assy")


def test_words_that_are_not_letters_match_as_written() -> None:
    blocklist = Blocklist(["c++", "@handle"])
    assert blocklist.found("I write C++ daily") and blocklist.found("ping @handle now")
    assert not blocklist.found("I write C daily")


def test_no_words_or_only_blank_ones_is_no_filter() -> None:
    assert not Blocklist([]) and not Blocklist(["  ", ""])
    assert not Blocklist([]).found("anything")


def test_matching_costs_time_linear_in_the_reply_for_many_words() -> None:
    rng = random.Random(16)
    many = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10))) for _ in range(5000)]
    start = time.perf_counter()
    blocklist, few = Blocklist([*many, "禁止词"]), Blocklist(many[:20])
    assert time.perf_counter() - start < 2  # about 0.1 s: built once, at start
    unit = "The quick brown fox jumps over the lazy dog, 这是一个句子。 Ça va très bien!\n"

    def cost(words: Blocklist, n: int) -> float:
        text = unit * n
        start = time.perf_counter()
        assert not words.found(text)
        return time.perf_counter() - start

    # Interleaved, the least of five each: a busy machine slows both sizes alike.
    runs = [(cost(blocklist, 200), cost(blocklist, 1600), cost(few, 1600)) for _ in range(5)]
    small, large, fewer = (min(r[i] for r in runs) for i in range(3))
    assert large < 8 * small * 2, (small, large)  # 8 times the text: about 8 times the time
    assert large < 10 * fewer, (fewer, large)  # 250 times the words: not 250 times the time


# --------------------------------------------------------------------------- #
# holding a reply back
# --------------------------------------------------------------------------- #


def fed(held: HeldReply, *events) -> list:
    return [out for event in events for out in held.feed(event)]


def test_a_clean_reply_is_let_out_whole_at_its_finish() -> None:
    held = HeldReply(Blocklist(["secret"]))
    out = fed(held, ReasoningDelta("think"), TextDelta("Hel"), Usage(1, 2, 3), TextDelta("lo"), Finish("stop"))
    # Each delta held is said as one that came, with nothing of its text; at the finish, the text.
    assert out == [HELD, HELD, Usage(1, 2, 3), HELD, ReasoningDelta("think"), TextDelta("Hello"), Finish("stop")]
    assert not held.withheld and held.release() == []


def test_a_word_split_across_deltas_is_withheld_with_its_reasoning() -> None:
    held = HeldReply(Blocklist(["secret"]))
    out = fed(held, ReasoningDelta("fine"), TextDelta("a se"), TextDelta("cr"), TextDelta("et!"), Finish("stop"))
    assert out == [HELD] * 4 + [Withheld(), Finish("stop")] and held.withheld
    assert str(Withheld()) == WITHHELD == "[reply withheld: it contains a blocked word]"


def test_a_word_in_the_reasoning_withholds_the_reply_too() -> None:
    held = HeldReply(Blocklist(["secret"]))
    out = fed(held, ReasoningDelta("the secret is"), TextDelta("fine"), Finish("stop"))
    assert out == [HELD, HELD, Withheld(), Finish("stop")]


def test_a_reply_that_ends_early_is_checked_before_any_of_it_is_let_out() -> None:
    held = HeldReply(Blocklist(["secret"]))
    assert fed(held, TextDelta("a sec")) == [HELD]  # then the stream broke, or Ctrl-C
    assert held.release() == [TextDelta("a sec")]
    held = HeldReply(Blocklist(["secret"]))
    fed(held, TextDelta("a secret"))
    assert held.release() == [Withheld()] and held.holds_blocked()


# --------------------------------------------------------------------------- #
# config
# --------------------------------------------------------------------------- #


def config_path() -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "chatcli" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def load(**environ: str):
    return load_config(make_env(environ={**os.environ, **environ}))


def test_block_words_and_a_file_of_them_add_up() -> None:
    words = config_path().parent / "blocked.txt"
    words.write_text("# one a line\nsecret\n\n  two words  \n禁止\n", encoding="utf-8")
    config_path().write_text('block_words = ["first"]\nblock_words_file = "blocked.txt"\n', encoding="utf-8")
    config = load()
    assert config.block_words == ("first", "secret", "two words", "禁止")  # the file is beside the config
    assert config.show_filtered is False


@pytest.mark.parametrize("setup, sentence", [
    (lambda d: None, "does not exist"),
    (lambda d: (d / "blocked.txt").write_bytes(b"caf\xe9\n"), "is not UTF-8 text"),
    (lambda d: (d / "blocked.txt").mkdir(), "is not a file"),
])
def test_a_block_words_file_that_cannot_be_read_is_one_sentence(setup, sentence: str) -> None:
    setup(config_path().parent)
    config_path().write_text('block_words_file = "blocked.txt"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load()
    message = info.value.message
    assert sentence in message and "blocked.txt" in message and message.endswith(".") and "\n" not in message


@pytest.mark.parametrize("value", ['"secret"', "[1, 2]", '[""]'])
def test_block_words_must_be_a_list_of_words(value: str) -> None:
    config_path().write_text(f"block_words = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load()
    assert "'block_words' in" in info.value.message and "must be a list of words or phrases" in info.value.message


def test_a_profile_adds_blocked_words_and_a_dotenv_cannot_loosen_the_filter() -> None:
    config_path().write_text('block_words = ["first"]\n[profiles.work]\nblock_words = ["second"]\n'
                             "show_filtered = true\n", encoding="utf-8")
    assert load().block_words == ("first",)
    work = load(CHATCLI_PROFILE="work")
    assert work.block_words == ("first", "second") and work.show_filtered
    (Path.cwd() / ".env").write_text("CHATCLI_SHOW_FILTERED=true\nCHATCLI_BLOCK_WORDS_FILE=/nonexistent\n")
    assert load().show_filtered is False  # a cloned repository's .env is not obeyed here
    assert load(CHATCLI_SHOW_FILTERED="true").show_filtered  # the environment itself is


def test_a_profiles_block_words_file_adds_to_the_top_of_the_files() -> None:
    folder = config_path().parent
    (folder / "top.txt").write_text("secret\n", encoding="utf-8")
    (folder / "work.txt").write_text("# work's own\n禁止\n", encoding="utf-8")
    config_path().write_text('block_words_file = "top.txt"\nblock_words = ["first"]\n'
                             '[profiles.work]\nblock_words_file = "work.txt"\n', encoding="utf-8")
    assert load().block_words == ("first", "secret")
    assert load(CHATCLI_PROFILE="work").block_words == ("first", "secret", "禁止")
    (folder / "env.txt").write_text("more\n", encoding="utf-8")
    assert load(CHATCLI_BLOCK_WORDS_FILE=str(folder / "env.txt")).block_words == ("first", "secret", "more")
