"""What each model takes in a request, and fitting every request to it.

Reasoning models (the o-series, gpt-5) refuse `max_tokens` and want
`max_completion_tokens`, refuse sampling parameters such as temperature, and take
a `reasoning_effort` that other models refuse. One table says which model takes
what; config [models."NAME"] tables override it, and a 400 that names a parameter
teaches it for a model the table does not know. The client fits each request here
just before it goes out, so no other code asks what kind of model it talks to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from chatcli.base.events import Adjusted
from chatcli.config.table import (
    CAPABILITY_KEYS,
    DROPPABLE,
    EFFORTS,
    MAX_TOKENS_PARAMS,
    SAMPLING,
)
from chatcli.llm.tokens import family_of, override_for


@dataclass(frozen=True)
class Capabilities:
    """What one model takes."""

    max_tokens_param: str = "max_tokens"  # the name the reply's length limit goes under
    unsupported: frozenset[str] = frozenset()  # parameters it refuses: left out of its requests
    efforts: tuple[str, ...] = ()  # the reasoning_effort values it takes; none: it takes no reasoning_effort
    reasoning_effort: str | None = None  # from config: sent to it unless /effort says otherwise
    known: bool = True  # False: neither the table nor the config knows it; an effort chosen for it is tried
    vision: bool | None = None  # False: it takes no images (refused before sending); None: not known


O_SERIES = Capabilities("max_completion_tokens", frozenset(SAMPLING), ("low", "medium", "high"))

# Families, matched as tokens.KNOWN_MODELS is (o3-mini-2025-01-31 is o3-mini, o3-pro is o3).
# A model not here is taken to be an ordinary chat model: max_tokens, every sampling
# parameter, no reasoning_effort, until a config table or a refusal says otherwise.
KNOWN_CAPABILITIES: dict[str, Capabilities] = {
    "o1": O_SERIES,
    "o1-mini": replace(O_SERIES, efforts=(), vision=False),  # the first o1 releases take no reasoning_effort
    "o1-preview": replace(O_SERIES, efforts=(), vision=False),
    "o3-mini": replace(O_SERIES, vision=False),
    "o3": replace(O_SERIES, unsupported=frozenset((*SAMPLING, "stop"))),
    "o4-mini": replace(O_SERIES, unsupported=frozenset((*SAMPLING, "stop"))),
    "gpt-5": Capabilities("max_completion_tokens", frozenset(SAMPLING), EFFORTS),
    # gpt-5-chat-latest is the chat model behind ChatGPT, not a reasoning model: it takes the
    # sampling parameters and no reasoning_effort. max_completion_tokens, which OpenAI takes
    # for every chat model, is what it is documented with.
    "gpt-5-chat": Capabilities("max_completion_tokens"),
    # OpenAI's chat models: known to take every sampling parameter and no reasoning_effort.
    **{name: Capabilities() for name in ("gpt-4o", "gpt-4o-mini", "chatgpt-4o", "gpt-4.1", "gpt-4-turbo")},
    # Text only: an image for them is refused before it is sent.
    **{name: Capabilities(vision=False) for name in ("gpt-4", "gpt-3.5-turbo")},
}


# A 400 for a parameter the model does not take, as OpenAI words it; a proxy may pass on
# the message without the code and param fields, so the message is read too.
REFUSAL_CODES = ("unsupported_parameter", "unsupported_value")
_REFUSAL = re.compile(r"Unsupported (parameter|value): '(\w+)'")
# OpenAI's words for a field it does not know at all (such as OpenRouter's `usage`), with no code or param.
_UNRECOGNIZED = re.compile(r"Unrecognized request arguments? supplied: (\w+)")

# Asks the server for the request's cost in its usage (OpenRouter's usage accounting); not an OpenAI field.
USAGE_ACCOUNTING = {"usage": {"include": True}}


# A server or model that takes no tools, in its own words: llama.cpp without --jinja ("tools param
# requires --jinja flag"), Ollama ("... does not support tools"), others ("tools is not supported").
_NO_TOOLS = re.compile(r"\btools?\b[^.]{0,40}\b(not supported|requires|unsupported|not allowed)|does not support tools"
                       r"|\btool (calling|use|calls?) (is )?not supported", re.IGNORECASE)


def refused_parameter(error: Mapping[str, Any]) -> tuple[str, str] | None:
    """(parameter, code) when an OpenAI-style error body says the model refuses a parameter."""
    code, param = error.get("code"), error.get("param")
    if code in REFUSAL_CODES and isinstance(param, str):
        return param, code
    message = str(error.get("message") or "")
    if _NO_TOOLS.search(message):
        return "tools", "unsupported_parameter"
    found = _REFUSAL.search(message)
    if found is None and (unknown := _UNRECOGNIZED.search(message)):
        return unknown[1], "unsupported_parameter"
    return (found[2], f"unsupported_{found[1]}") if found else None


def _either(names: tuple[str, ...] | list[str]) -> str:
    """a, b or c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass
class Adapter:
    """Fits each request to what its model takes, learns from refusals, and says each change once.

    The client holds one for as long as it lives (the REPL's whole run, across /new and
    /resume), so a refusal teaches the rest of the run and no notice repeats turn after turn.
    """

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # config [models."NAME"]
    default_effort: str | None = None  # config reasoning_effort: for the models that take it
    usage_accounting: bool = False  # ask for the cost in the usage (client.asks_for_cost), unless a model refused it
    _learned: dict[str, Capabilities] = field(default_factory=dict, repr=False)
    _taught: set[tuple[str, str]] = field(default_factory=set, repr=False)  # (model, parameter) refused
    _told: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def capabilities(self, model: str) -> Capabilities:
        """The built-in table's entry, changed by the config's table, changed by what refusals taught."""
        if model in self._learned:
            return self._learned[model]
        family = family_of(model, KNOWN_CAPABILITIES)
        found = KNOWN_CAPABILITIES[family] if family is not None else Capabilities(known=False)
        override = override_for(model, self.overrides)
        changes: dict[str, Any] = {k: override[k] for k in CAPABILITY_KEYS if k in override}
        if "unsupported" in override:
            changes["unsupported"] = frozenset(override["unsupported"])
        if "efforts" in override:
            changes["efforts"] = tuple(override["efforts"])
        elif override.get("reasoning_effort") and not found.efforts:
            changes["efforts"] = EFFORTS  # an effort for it in the config says it takes one
        if changes:
            changes["known"] = True
        return replace(found, **changes)

    def effort(self, model: str, chosen: str | None) -> tuple[str | None, str]:
        """The reasoning_effort that goes to the model, and where it comes from (for /effort)."""
        caps = self.capabilities(model)
        for value, source in ((chosen, "this session"), (caps.reasoning_effort, f"the config for {model}"),
                              (self.default_effort, "the config")):
            if value is not None:
                return value, source
        return None, ""

    def fit(self, model: str, params: Mapping[str, Any], *, say: bool = True) -> tuple[dict[str, Any], list[Adjusted]]:
        """The parameters as this model takes them, and what to tell the user: each thing once a run.

        An effort from the config goes only to models that take one, silently; an effort
        chosen with /effort, or a sampling parameter, that the model refuses is said.
        `say=False`: the body alone, nothing said and nothing counted as said (the response
        cache's key is taken from the body before the request that says it is sent).
        """
        first = self._first if say else (lambda model, what: False)
        caps = self.capabilities(model)
        body = {k: v for k, v in params.items() if v is not None}
        chosen = body.pop("reasoning_effort", None)
        left_out = [k for k in body if k in caps.unsupported]
        for key in left_out:
            del body[key]
        if "max_tokens" in body:
            body[caps.max_tokens_param] = body.pop("max_tokens")
        effort, _ = self.effort(model, chosen)
        said = []
        if effort in caps.efforts:
            body["reasoning_effort"] = effort
        elif chosen is not None and not caps.known:
            body["reasoning_effort"] = chosen  # a model chatcli does not know: tried, and a refusal teaches
        elif chosen is not None and not caps.efforts:
            left_out.append("reasoning_effort")
        elif effort is not None and caps.efforts and first(model, f"reasoning_effort {effort}"):
            said.append(f"{model} takes reasoning_effort {_either(caps.efforts)}, not {effort}; "
                        "none is sent, so the model's own default is used")
        if self.usage_accounting and "usage" not in caps.unsupported:
            body.update(USAGE_ACCOUNTING)
        new = [k for k in left_out if first(model, k)]
        if new:
            said.insert(0, f"{model} does not take {_either(new)}; {'it is' if len(new) == 1 else 'they are'} "
                           "left out of its requests")
        return body, [Adjusted(text) for text in said]

    def learn(self, model: str, refused: str, code: str, sent: Mapping[str, Any]) -> Adjusted | None:
        """What a 400 refusing `refused` teaches about the model, said once.

        None when it teaches nothing: a parameter we did not send or cannot do without,
        or one refused before; the error then stands, and no request is sent again.
        """
        if refused not in sent or (model, refused) in self._taught:
            return None
        caps = self.capabilities(model)
        said = f"{model} refused {refused}, so from now on it is left out of its requests"
        if refused in MAX_TOKENS_PARAMS and code == "unsupported_parameter":
            other = next(name for name in MAX_TOKENS_PARAMS if name != refused)
            caps, said = replace(caps, max_tokens_param=other), f"{model} refused {refused}, so from now on it is sent as {other} instead"
        elif refused in DROPPABLE or refused in USAGE_ACCOUNTING:
            caps = replace(caps, unsupported=caps.unsupported | {refused})
            if refused in USAGE_ACCOUNTING:
                said = (f"{model} refused usage (asked for its cost), so from now on it is left out of its requests "
                        "and its cost comes from list prices")
        elif refused in ("tools", "tool_choice"):
            caps = replace(caps, unsupported=caps.unsupported | {"tools", "tool_choice"})
            said = f"{model} refused tools, so from now on its requests go without them (the tools are off for it)"
        elif refused == "reasoning_effort" and code == "unsupported_value" and caps.efforts:
            # One value refused (gpt-5-pro takes only high): the others may still be taken.
            value = sent["reasoning_effort"]
            caps = replace(caps, efforts=tuple(e for e in caps.efforts if e != value), known=True)
            said = f"{model} refused reasoning_effort {value}, so from now on that value is not sent"
            refused = f"reasoning_effort {value}"
        elif refused == "reasoning_effort":
            caps = replace(caps, efforts=(), reasoning_effort=None, known=True)
        else:
            return None
        self._learned[model] = caps
        self._taught.add((model, refused))
        self._told.add((model, refused))
        return Adjusted(said)

    def _first(self, model: str, what: str) -> bool:
        """Whether this is the first time `what` is said about the model (and now it has been)."""
        if (model, what) in self._told:
            return False
        self._told.add((model, what))
        return True

    def effort_status(self, model: str, chosen: str | None) -> str:
        """/effort: the effort in force and whether the model takes it, in a sentence or two."""
        caps = self.capabilities(model)
        effort, source = self.effort(model, chosen)
        said = f"Reasoning effort: {effort} (from {source})." if effort else "Reasoning effort: not set."
        if not caps.known:
            return (f"{said} chatcli does not know whether {model} takes one: an effort set here is sent, "
                    "and if the server refuses it, it is left out from then on.")
        if not caps.efforts:
            return f"{said} {model} takes no reasoning_effort, so none is sent."
        takes = f"{model} takes {_either(caps.efforts)}"
        if effort is None:
            return f"{said} {takes}; the model's own default is used."
        if effort not in caps.efforts:
            return f"{said} {takes}, so none is sent and the model's own default is used."
        return f"{said} {takes}."
