"""What each reply teaches about the server: how it counts, and whether it silently cut the prompt.

A server's usage says how many tokens it read. Set against our estimate of what
was sent, that corrects later estimates for the same model (Tokenizer.calibrate);
and when it is far below, the server cut the conversation without saying so, as
Ollama's OpenAI endpoint does when a prompt passes its num_ctx. No error comes:
the model just answers without the start of the conversation. chatcli says so
once, and fits to the size the server read from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatcli.base.errors import one_line
from chatcli.llm.tokens import REPORTED

if TYPE_CHECKING:
    from chatcli.llm.tokens import Tokenizer

# Two signs of a cut, either enough. One request: the server read less than CUT_SHARE of our
# corrected estimate of a request at least CUT_MIN tokens long (estimates err, but not by
# three times, except for digits a tokenizer groups in threes). Two requests in a row, the
# second carrying all of the first and at least GROWTH_MIN tokens more: the server read less
# than GROWTH_SHARE of what was added, as a server does that keeps cutting to the same size.
CUT_SHARE = 0.3
CUT_MIN = 512
GROWTH_SHARE = 0.25
GROWTH_MIN = 128


@dataclass(frozen=True)
class Cut:
    """The server read `read` tokens of about `sent`."""

    read: int
    sent: int
    window: int  # what chatcli fits to from now on


def cut_window(read: int) -> int:
    """The window a server that cut a prompt to `read` tokens runs with: the power of two just
    above it when one is close (num_ctx is nearly always one), else what it read."""
    power = 1 << max(read - 1, 1).bit_length()
    return power if power <= read * 1.15 else read


def learn(tokenizer: Tokenizer, model: str, *, reported: int, estimated: int, exact: bool,
          previous: tuple[int, int] | None = None) -> Cut | None:
    """Take in the prompt_tokens the server reported for a request we counted as `estimated`
    (uncorrected, or exact); a Cut when the server evidently read far less than was sent.

    `previous`: (reported, estimated) for the request before, when this one carried all of it.
    """
    if reported <= 0 or estimated <= 0 or exact:
        # Exact counts come from OpenAI's tokenizers (whose servers do not cut) or from
        # llama.cpp's (which refuses an overflow with an error): only estimates are weighed.
        return None
    factor = tokenizer.factor(model) or 1.0
    corrected = estimated * factor
    cut = corrected >= CUT_MIN and reported < CUT_SHARE * corrected
    if previous is not None:
        added = (estimated - previous[1]) * factor
        # A server that cuts reads about its window each time: a plateau. Far fewer than the
        # time before is something else (a server counting only what its cache did not hold).
        plateau = reported >= 0.8 * previous[0]
        cut = cut or (added >= GROWTH_MIN and plateau and reported - previous[0] < GROWTH_SHARE * added)
    stated = tokenizer.known_window(model, REPORTED)
    if cut and stated is not None and reported < 0.9 * stated.tokens:
        cut = False  # a server cuts to the window it states: having read less than it, it read all
    if cut:
        found = Cut(reported, round(corrected), cut_window(reported))
        tokenizer.set_window(model, found.window, "the server read no more (it cut a longer prompt)", learned=True)
        return found
    tokenizer.calibrate(model, reported=reported, estimated=estimated)
    return None


def cut_notice(cut: Cut, model: str, kind: str | None) -> str:
    """The sentence for a silent cut, with how to raise that server's window."""
    how = {
        "Ollama": "raise Ollama's window (OLLAMA_CONTEXT_LENGTH for the server, or num_ctx in a Modelfile)",
        "llama.cpp": "restart llama-server with a larger --ctx-size",
        "LM Studio": "load the model with a larger context length",
        "vLLM": "start vLLM with a larger --max-model-len",
    }.get(kind or "", "raise the server's context window for the model")
    return (
        f"the server read only {cut.read:,} of about {cut.sent:,} tokens sent, so it cut the start of the conversation "
        f"without saying so; chatcli now fits to {cut.window:,} tokens for {one_line(model, 80)}: to send more, {how}"
    )
