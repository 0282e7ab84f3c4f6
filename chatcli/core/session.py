"""A conversation and the turn runner, shared by the REPL and one-shot mode.

A Session holds a Conversation (the system prompt, the turns so far, the model and
the sampling parameters), the client it talks over, its Policy and its Accounts;
app.py builds it and rewires it. `send` runs one turn in named steps: prepare the
message, fit it to the window, check it may go, save it, stream the reply (every
event, retries among them, said as it comes), and record whatever arrived, marked,
when the reply is interrupted or breaks off.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from chatcli.base.errors import ChatError, ContextLengthError, Terminated
from chatcli.base.events import (
    Event,
    Note,
    RateLimits,
    ReasoningDelta,
    Redacted,
    TextDelta,
    Usage,
)
from chatcli.base.held_reply import HeldReply
from chatcli.base.images import Image
from chatcli.base.pii import hide_known, scrub
from chatcli.base.secret_stream import SecretFreeEvents
from chatcli.core.accounts import Accounts, OtherCost
from chatcli.core.attachments import Attachments, wire_params
from chatcli.core.budget import Budget
from chatcli.core.conversation import Conversation, Policy, Shared
from chatcli.core.journal import Journal, SessionState, make_title
from chatcli.core.toolloop import ToolLoop, schema_tokens, steps_tokens
from chatcli.core.turn import (
    COMPLETE,
    ERROR,
    INTERRUPTED,
    SUMMARY_HEADING,
    TRUNCATED,
    ReplyIn,
    Turn,
)
from chatcli.llm.failures import NoImages, no_images
from chatcli.llm.learning import cut_notice, learn
from chatcli.llm.pricing import Pricing
from chatcli.llm.server_facts import ServerFacts
from chatcli.llm.tokens import Fit, Tokenizer, fit, text_of, too_big

if TYPE_CHECKING:
    from chatcli.config.settings import Profiles
    from chatcli.llm.client import ChatClient


# Below this many tokens a request fits any window a server runs with (2,048 at the least, half
# kept for the reply): a one-shot ask this short does not wait to hear the server's window.
WINDOW_MATTERS = 512


def _scrubbed(text: str, kinds: tuple[str, ...], where: str) -> tuple[str, Redacted | None]:
    """The text with personal data replaced, and what to tell the user, if anything was."""
    found = scrub(text, kinds)
    return found.text, Redacted(tuple(found.counts.items()), where) if found.counts else None


class Session(Attachments):
    """A conversation, the client it is held over, and what the session runs by.

    app.py builds and rewires sessions; tests may build one by hand, with the
    conversation's fields as keywords (`Session(client=..., model=..., journal=...)`).
    """

    # The conversation's fields, read and written through the session; /new and /resume swap it whole.
    model: Shared[str] = Shared()
    system: Shared[str | None] = Shared()
    params: Shared[dict[str, Any]] = Shared()
    turns: Shared[list[Turn]] = Shared()
    context_start: Shared[int] = Shared()
    journal: Shared[Journal] = Shared()
    title: Shared[str | None] = Shared()
    summary: Shared[str | None] = Shared()
    spent_elsewhere: Shared[list[OtherCost]] = Shared()

    def __init__(
        self, client: ChatClient | None = None, *, conversation: Conversation | None = None,
        policy: Policy | None = None, tokenizer: Tokenizer | None = None, accounts: Accounts | None = None,
        pricing: Pricing | None = None, budget: Budget | None = None, profiles: Profiles | None = None,
        show_reasoning: bool = True, attached: list[str] | None = None, model_chosen: bool = True, **state: Any,
    ) -> None:
        self.client = client  # None: a session restored for reading, which cannot send
        self.conversation = conversation if conversation is not None else Conversation(**state)
        self.policy = policy or Policy()
        self.tokenizer = tokenizer or Tokenizer()
        self.accounts = accounts or Accounts(pricing or Pricing(), budget or Budget())
        self.accounts.books = self
        self.profiles = profiles  # /profile: how to load another profile's settings
        self.show_reasoning = show_reasoning  # a view preference (/reasoning), read by the REPL when it draws a reply
        self.attached = attached if attached is not None else []  # /file: files that go with the next message
        self.images: list[Image] = []  # /image, /paste, -i: images that go with the next message
        self.no_images: set[str] = set()  # models that refused images this run: refused before sending
        self.model_chosen = model_chosen  # False: no model was configured, so the server's own is the default
        self._facts: ServerFacts | None = None
        self.toolloop: ToolLoop | None = None  # tools on (app.py): a reply's calls run, and the model asked again
        # What the server read of the last request: (reported, our estimate, turns left out, context start).
        self._read_before: tuple[int, int, int, int] | None = None

    @property
    def id(self) -> int | None:
        """The session's id in the store, once its first message is saved."""
        return self.journal.session_id

    @property
    def sender(self) -> ChatClient:
        """The client, for what sends: a session restored for reading (`chatcli sessions`) has none."""
        assert self.client is not None, "a session restored for reading cannot send"
        return self.client

    @property
    def temperature(self) -> float | None:
        return self.params.get("temperature")

    @property
    def facts(self) -> ServerFacts | None:
        """What the session's server says about itself; asked anew when the server or its counting changes."""
        if self.client is None:
            return None
        if self._facts is None or self._facts.client is not self.client or self._facts.tokenizer is not self.tokenizer:
            self._facts = ServerFacts(self.client, self.tokenizer)
        return self._facts

    def settle(self, *, wait: float = 0.0) -> None:
        """Take in what the server says about itself, waiting up to `wait` seconds for it.

        With no model configured, the server's own model becomes the session's (before its
        first turn). Never blocks when `wait` is 0: the toolbar calls this on every redraw.
        """
        facts = self.facts
        if facts is None or not facts.enabled:
            return
        pick = not self.model_chosen
        if facts.wait(self.model, wait, pick=pick) and pick and facts.models is not None:
            self.model_chosen = True
            chosen = facts.default_model(self.model)
            if chosen != self.model:
                self.set_model(chosen)
            facts.start(self.model)

    @property
    def rate_limits(self) -> RateLimits | None:
        """The server's rate limits as its latest response stated them (for /usage and the toolbar)."""
        return self.client.rate_limits if self.client is not None else None

    @property
    def shown_model(self) -> str:
        """The model as the server names it, once a reply to the current model has said."""
        for turn in reversed(self.turns):
            if turn.asked == self.model:
                return turn.model
            if turn.model == self.model:
                break
        return self.model

    def messages(self, pending: str | None = None, *, left_out: int = 0,
                 images: list[Image] | None = None) -> list[dict[str, Any]]:
        """The conversation as the API wants it, without its `left_out` oldest turns, plus a new
        message with its `images`. A message with images is a list of parts, its text first; one
        without stays a plain string, for servers that take nothing else."""
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        if self.summary:
            out.append({"role": "system", "content": SUMMARY_HEADING + self.summary})
        for turn in [t for t in self.context_turns if t.in_context][left_out:]:
            out.append({"role": "user", "content": self._content(turn.user, turn.images)})
            out.extend(turn.sent_steps())  # the exchange's tool calls and results
            if turn.reply or not turn.steps:
                out.append({"role": "assistant", "content": turn.reply})
        if pending is not None:
            out.append({"role": "user", "content": self._content(pending, images or [])})
        return out

    def _stream_fitting(self, turn: Turn, plan: Fit, messages: list[dict[str, str]]) -> Iterator[Event]:
        """Stream the reply; if the server says the context is too long, leave more out and try once more.

        Our counts can be estimates, and servers count differently: a 400
        context_length_exceeded comes before any text, so retrying loses nothing.
        """
        began = False
        params = self._wire_params(turn)
        try:
            for event in self.sender.stream(model=self.model, messages=messages, params=params):
                began = began or isinstance(event, (TextDelta, ReasoningDelta))
                yield event
            return
        except ContextLengthError as exc:
            if began:
                raise
            if exc.window and exc.window != plan.window:
                # The window the server enforces: fit to it for the rest of the run.
                self.tokenizer.set_window(self.model, exc.window, "the server enforces (its error said so)", learned=True)
                turn.window = exc.window
                tighter = self.plan(turn.user, images=turn.images)
                if not tighter.fits:
                    message = self._user(turn.user, turn.images)
                    raise ContextLengthError(too_big(tighter, message), window=exc.window) from None
            else:
                tighter = self.plan(turn.user, window=plan.reserve + int(plan.tokens.tokens * 0.75), images=turn.images)
            left_out = max(tighter.left_out, plan.left_out + 1)
            if left_out > sum(t.in_context for t in self.context_turns):
                raise
        turn.left_out = left_out
        messages = self.messages(None if turn.steps else turn.user, left_out=left_out, images=turn.images)
        turn.sent = self.tokenizer.messages(self.model, messages)
        turn.estimated = self._raw_estimate(messages)
        yield from self.sender.stream(model=self.model, messages=messages, params=params)

    def _wire_params(self, turn: Turn) -> dict[str, Any]:
        return {**wire_params(turn.params), **(self.toolloop.params() if self.toolloop else {})}

    def plan(self, pending: str = "", *, window: int | None = None, images: list[Image] | None = None) -> Fit:
        """How the conversation plus `pending` and its images fits the model's window, leaving room
        for the reply. By default (no `images`), what waits to go with the next message counts too:
        the files /file attached and the waiting images."""
        t, model = self.tokenizer, self.model
        if images is None:
            images = self.images
            pending = "\n\n".join([*self.attached, *([pending] if pending else [])])
        limits = t.limits(model)
        head = [t.priming(model)]
        if self.system:
            head.append(t.message(model, "system", self.system))
        if self.summary:
            head.append(t.message(model, "system", SUMMARY_HEADING + self.summary))
        if (tools := schema_tokens(t, model, self.toolloop)) is not None:
            head.append(tools)
        turns = [
            sum(steps_tokens(t, model, turn), self._user(turn.user, turn.images) + t.message(model, "assistant", turn.reply))
            for turn in self.context_turns
            if turn.in_context
        ]
        return fit(
            head=head,
            turns=turns,
            latest=self._user(pending, images),
            window=window or limits.context_window,
            reserve=self.reply_reserve(),
        )

    def reply_reserve(self) -> int:
        """Tokens kept free for the reply: max_tokens, or the model's max output, at most half the window."""
        limits = self.tokenizer.limits(self.model)
        return min(self.params.get("max_tokens") or limits.max_output_tokens, limits.context_window // 2)

    @property
    def context_turns(self) -> list[Turn]:
        """The turns the next request builds on."""
        return self.turns[self.context_start :]

    def clear(self) -> None:
        """Stop sending the history, and drop the files and images waiting for the next message;
        the system prompt, model and parameters stay.

        The turns themselves are kept: their tokens were spent, and /usage counts them.
        """
        self.drop_attachments()
        self.context_start = len(self.turns)
        self.summary = None
        self.journal.cleared()

    @property
    def redact(self) -> tuple[str, ...]:
        """Kinds of personal data scrubbed from what is sent (config `redact`); the client scrubs
        every request, and the session the text it counts, saves and shows."""
        return self.policy.redact

    def set_system(self, text: str | None) -> Redacted | None:
        """Set the system prompt, scrubbed as a message would be; say what was scrubbed."""
        redacted = None
        if text and self.redact:
            text, redacted = _scrubbed(text, self.redact, "from the system prompt")
        self.system = text
        self.journal.state_changed(self.state(), "system")
        return redacted

    def state(self) -> SessionState:
        """What the journal keeps of this session besides its turns."""
        return SessionState(self.model, self.system, dict(self.params), self.policy.profile, self.title)

    def set_model(self, name: str) -> None:
        self.model = name
        self.journal.state_changed(self.state(), "model")

    def set_param(self, key: str, value: Any) -> None:
        """Set a sampling parameter, or unset it with None."""
        if value is None:
            self.params.pop(key, None)
        else:
            self.params[key] = value
        self.journal.state_changed(self.state(), "params")

    def set_title(self, title: str) -> None:
        self.title = title
        self.journal.retitle(title)

    def undo(self, *, forget: bool = True) -> Turn | None:
        """Drop the last exchange from what is sent, and from the store unless told not to; return it."""
        if len(self.turns) <= self.context_start:
            return None
        turn = self.turns.pop()
        if forget:
            self.accounts.keep_spend(turn)
            self.journal.forget(turn)
        return turn

    def retry(self, *, on_event: Callable[[Event], None] | None = None) -> Turn | None:
        """Send the last message again; its old reply is replaced only if the new one gets anywhere."""
        old = self.undo(forget=False)
        if old is None:
            return None
        new = self.send(old.user, on_event=on_event, images=old.images)
        if new.reply:
            self.accounts.keep_spend(old)
            self.journal.forget(old)
        else:
            # Nothing came back: keep the earlier reply, drop the failed attempt.
            self.turns.pop()
            self.accounts.keep_spend(new)
            self.journal.forget(new)
            self.turns.append(old)
        return new

    def _learn_from(self, turn: Turn) -> None:
        """What the server's usage says of our counts: a correction, or a cut it made silently."""
        if turn.asked is not None:
            self.tokenizer.served_as(turn.asked, turn.model)
        if turn.usage is None or turn.sent is None:
            return
        if self.carries_images(turn, turn.left_out) or turn.steps:
            # Servers count images their own way (a llama.cpp projector's fixed count, Qwen-VL's
            # patches): what they report says nothing of how our text counts erred, nor of a cut.
            # Nor does the usage of a turn's tool rounds: it is the sum of several requests.
            self._read_before = None
            return

        estimated = turn.sent.tokens if turn.sent.exact else turn.estimated
        before = self._read_before
        # The request before is compared with only when this one carried all of it.
        previous = before[:2] if before is not None and before[2:] == (turn.left_out, self.context_start) else None
        u = turn.usage
        # prompt_tokens counts cached tokens too; a server whose cached count is the larger left them out.
        read = u.prompt_tokens + u.cached_tokens if u.cached_tokens > u.prompt_tokens else u.prompt_tokens
        cut = learn(self.tokenizer, self.model, reported=read, estimated=estimated, exact=turn.sent.exact,
                    previous=previous)
        self._read_before = (read, estimated, turn.left_out, self.context_start)
        if cut is not None:
            facts = self.facts
            said = cut_notice(cut, self.model, facts.kind if facts is not None else None)
            turn.notice = f"{turn.notice}; {said}" if turn.notice else said

    def _plan_to_send(self, text: str, images: list[Image]) -> Fit:
        """The plan for sending `text`, with the server's model and window where they matter,
        and exact counts near the window where they can be had."""
        plan = self.plan(text, images=images)
        if not self.model_chosen or plan.tokens.tokens > WINDOW_MATTERS:
            # The server's model, and its window, which matters once a request is this long.
            self.settle(wait=self.policy.wait)
            plan = self.plan(text, images=images)
        if not plan.tokens.exact and (plan.left_out or 2 * plan.tokens.tokens + plan.reserve > plan.window):
            # Near the window, where an estimate could be wrong about what fits: count exactly,
            # if the encoding can be had quickly, or have the server count (llama.cpp). Far from
            # it, that would cost more than the count is worth (a one-shot ask; the REPL loads
            # tiktoken in the background).
            self.tokenizer.preload(self.model, wait=2.0)
            if self.tokenizer.counts_on_server(self.model):
                self.tokenizer.count_on_server(self.model, [text_of(m["content"]) for m in self.messages(text)])
            plan = self.plan(text, images=images)
        return plan

    def send(self, text: str, *, on_event: Callable[[Event], None] | None = None,
             request: dict[str, Any] | None = None, images: list[Image] | None = None) -> Turn:
        """Run one turn. Ctrl-C and errors end it early; what arrived is kept and marked.
        `request`: body keys for this turn alone (--schema's response_format), saved with it.
        `images`: those to send (/retry's); by default the waiting ones, which it takes."""
        waited = images is None
        if images is None:
            images, self.images = self.images, []
        text, redacted = self._prepare(text)
        turn, plan, messages = self._fit(text, request, images)
        if not self._check(turn, plan, redacted, on_event, messages):
            if waited:
                self.images = images  # nothing was sent: they still wait, to be dropped or sent elsewhere
            return turn  # kept for the prompt to offer again, but not saved: nothing was sent
        if self.title is None:
            self.title = make_title(text) or make_title(", ".join(image.name for image in images))
        self.journal.user_message(self.state(), turn)  # saved before anything is sent
        try:
            stop = self._stream(turn, plan, messages, on_event or _unheard)
            if stop is None and turn.calls and self.toolloop is not None:
                stop = self.toolloop.follow(self, turn, plan, on_event or _unheard)
        finally:
            self._record(turn)
        if waited and turn.status == ERROR and not turn.reply:
            # The message goes back to the prompt (the REPL offers it again): its images wait with it.
            self.images = [*images, *self.images]
        if stop is not None:
            raise stop  # saved; now let the program exit
        return turn

    def _prepare(self, text: str) -> tuple[str, Redacted | None]:
        """The message as it will be sent: the files /file attached before it, and scrubbed
        before anything else sees it (what is counted, saved and sent is the same text)."""
        if self.attached:
            text, self.attached = "\n\n".join([*self.attached, *([text] if text.strip() else [])]), []
        if self.redact:
            return _scrubbed(text, self.redact, "before sending")
        return text, None

    def _fit(self, text: str, request: dict[str, Any] | None,
             images: list[Image]) -> tuple[Turn, Fit, list[dict[str, Any]]]:
        """The turn, begun: fitted to the model's window (the oldest turns left out if need be)."""
        plan = self._plan_to_send(text, images)
        messages = self.messages(pending=text, left_out=plan.left_out, images=images)
        turn = Turn(user=text, model=self.model, params={**self.params, **(request or {})}, left_out=plan.left_out,
                    sent=plan.tokens, window=plan.window, estimated=self._raw_estimate(messages),
                    images=list(images))
        self.turns.append(turn)
        return turn, plan, messages

    def _check(self, turn: Turn, plan: Fit, redacted: Redacted | None, say: Callable[[Event], None] | None,
               messages: list[dict[str, Any]]) -> bool:
        """Whether the turn may go: not too big for the window even alone, nor over a budget
        (a budget nearly used up is a notice on the turn). What was scrubbed is said either way,
        and what was learned of the server, when someone listens (else it waits for one who does)."""
        facts = self.facts
        if say is not None:
            if redacted is not None:
                say(redacted)  # said even if the request is refused: what is kept is scrubbed
            for note in facts.take_notes() if facts is not None else ():
                say(Note(note))
        if self.carries_images(turn, plan.left_out) and self.refuses_images():
            refusal: str | None = no_images(self.model, history=not turn.images)
        elif not plan.fits:
            refusal = too_big(plan, self._user(turn.user, turn.images))
        elif self.sender.answers(model=self.model, messages=messages, params=self._wire_params(turn)):
            refusal = None  # the response cache answers it: nothing is spent, so no cap is passed
        else:
            # The reply's cost is unknown until it arrives: count the room kept for it, at the output price.
            worst = Usage(plan.tokens.tokens, plan.reserve, plan.tokens.tokens + plan.reserve)
            refusal, turn.notice = self.accounts.check_budget(self.model, worst)
        if refusal is None:
            return True
        # Not saved: a message refused as too big would otherwise fill the database with what never went out.
        turn.status, turn.error = ERROR, ChatError(refusal)
        turn.left_out = 0  # nothing was sent, so nothing was left out
        return False

    def _stream(self, turn: Turn, plan: Fit, messages: list[dict[str, str]],
                say: Callable[[Event], None]) -> Terminated | None:
        """Stream the reply into the turn, saying each event (retries among them) as it comes;
        the Ctrl-C that ends the program is handed back, to be raised once the turn is saved."""
        events = SecretFreeEvents(self._stream_fitting(turn, plan, messages), self.policy.secrets)
        reply = ReplyIn(turn)
        # With block_words, the reply is held until it ends and checked; the turn keeps the original.
        held = HeldReply(self.policy.blocklist) if self.policy.blocklist else None
        try:
            self.sender.warm_up()  # so the latency recorded is the server's, not our imports'
            reply.started = time.monotonic()
            for event in events:
                reply.take(event)
                for shown in (event,) if held is None else held.feed(event):
                    say(shown)
            turn.status = COMPLETE if turn.finish_reason else TRUNCATED
        except KeyboardInterrupt as exc:
            turn.status = INTERRUPTED
            return exc if isinstance(exc, Terminated) else None
        except ChatError as exc:
            turn.status, turn.error = ERROR, exc
            if isinstance(exc, NoImages):
                self.no_images.add(exc.model)  # the next try is refused before it is sent
                exc.message = no_images(exc.model, history=not turn.images)
            exc.message = hide_known(exc.message, self.policy.secrets)  # a server error body that quotes a header
            if isinstance(exc, ContextLengthError):
                turn.left_out = 0  # the fitted request was refused too: say so, not what was left out
        except BaseException:
            # Anything else that ends the stream (the reader of a pipe went away): the reply
            # is saved as interrupted, never as one that did not begin.
            turn.status = INTERRUPTED
            raise
        finally:
            events.close()
            reply.end(*events.leftover())  # what the stream held back when it ended early
            if held is not None:  # however it ended, what arrived is checked before any of it is shown
                for shown in held.release():
                    say(shown)
                turn.filtered = held.holds_blocked(turn.reply, turn.reasoning)
        return None

    def _record(self, turn: Turn) -> None:
        """Keep the reply, however it ended: what its usage teaches, the journal, the ledger."""
        self._learn_from(turn)
        self.journal.reply(turn)
        self.accounts.record_spend(turn)


def _unheard(event: Event) -> None:
    """Where a turn's events go when no one is drawing them."""


