"""What a server says about itself: the models it serves, each one's context window, and its tokenizer.

OpenAI's API says nothing about windows, but the servers people run locally do,
each in its own place: llama.cpp in /props (and `meta.n_ctx` in /v1/models),
vLLM as `max_model_len` in /v1/models, Ollama in /api/show's `num_ctx` or the
loaded model's `context_length` in /api/ps (the runtime window, not the trained
maximum), LM Studio as `loaded_context_length` in /api/v0/models, OpenRouter as
`context_length` in /models. They are asked once per server and model, in a
background thread, so the prompt never waits; the answers go to the Tokenizer,
which weighs them against the config.

llama.cpp also counts with the model's own tokenizer (/tokenize) and renders
its chat template (/apply-template): LlamaCounter uses both for exact counts.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chatcli.base.errors import one_line
from chatcli.llm.tokens import DEFAULT_SOURCE

if TYPE_CHECKING:
    from chatcli.llm.client import ChatClient
    from chatcli.llm.tokens import Tokenizer, Window

log = logging.getLogger("chatcli")

LLAMA_CPP, VLLM, OLLAMA, LM_STUDIO = "llama.cpp", "vLLM", "Ollama", "LM Studio"
RETRY_S = 2.0  # a server that could not list its models is asked again after this long
TIMEOUT = 5.0  # per request: a server that is slow to describe itself is not waited on longer


def root_of(base_url: str) -> str:
    """The server's root, where llama.cpp, Ollama and LM Studio keep their own endpoints."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _size(value: Any) -> int | None:
    """A window figure from outside: an int of a plausible size, or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 64 <= value < 1 << 31 else None


def kind_of(entry: dict[str, Any], ids: list[str]) -> str | None:
    """Which server this is, from how it describes a model in /v1/models."""
    owner = entry.get("owned_by")
    if owner == "llamacpp" or isinstance(entry.get("meta"), dict):
        return LLAMA_CPP
    if owner == "vllm" or "max_model_len" in entry:
        return VLLM
    if owner == "organization_owner":
        return LM_STUDIO
    if owner in ("library", "ollama") or any(":" in i and "/" not in i for i in ids):
        return OLLAMA
    return None


@dataclass
class LlamaCounter:
    """Exact counts from llama.cpp: /tokenize for a text, /apply-template for what the chat template adds."""

    client: ChatClient
    root: str
    _overhead: tuple[int, int] | None = None
    _tried: bool = False

    def count(self, text: str) -> int | None:
        found = self.client.fetch_json(f"{self.root}/tokenize", body={"content": text, "add_special": False})
        tokens = found.get("tokens") if isinstance(found, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    def overhead(self) -> tuple[int, int] | None:
        """(per message, once): measured once by rendering a one-message and a three-message chat."""
        if not self._tried:
            self._tried = True
            self._overhead = self._measure()
        return self._overhead

    def _measure(self) -> tuple[int, int] | None:
        one = [{"role": "user", "content": "a"}]
        three = [*one, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
        extra = []
        for messages in (one, three):
            found = self.client.fetch_json(f"{self.root}/apply-template", body={"messages": messages})
            prompt = found.get("prompt") if isinstance(found, dict) else None
            whole = self.count(prompt) if isinstance(prompt, str) else None
            parts = [self.count(m["content"]) for m in messages]
            if whole is None or None in parts:
                return None
            extra.append(whole - sum(parts))  # type: ignore[arg-type]
        per_message = max(-(-(extra[1] - extra[0]) // 2), 0)
        return per_message, max(extra[0] - per_message, 0)


@dataclass
class ServerFacts:
    """Asks the server about itself once per model, in the background, and tells the Tokenizer."""

    client: ChatClient
    tokenizer: Tokenizer
    models: list[str] | None = None  # the ids the server lists, in its order; None until known
    kind: str | None = None
    notes: list[str] = field(default_factory=list)  # to say once: a config window larger than the server's
    _threads: dict[str, threading.Thread] = field(default_factory=dict)
    _entries: list[dict[str, Any]] | None = None  # None until the server has listed its models
    _failed_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        """OpenAI and Azure OpenAI say nothing of windows: chatcli's table knows their models."""
        c = self.client.config
        return c.api_type != "azure" and not c.is_openai

    def start(self, model: str, *, pick: bool = False) -> threading.Thread | None:
        """Ask about `model` in the background, once. `pick`: the model was not chosen, so the
        server's own is the default (see default_model); its window is asked for instead."""
        if not self.enabled:
            return None
        key = "" if pick else model
        with self._lock:
            thread = self._threads.get(key)
            if thread is not None and not thread.is_alive() and self._entries is None \
                    and time.monotonic() - self._failed_at > RETRY_S:
                thread = None  # the server could not list its models then (starting, loading): ask again
            if thread is None:
                thread = threading.Thread(target=self._learn, args=(model, pick), daemon=True, name="chatcli-facts")
                self._threads[key] = thread
                thread.start()
        return thread

    def wait(self, model: str, seconds: float, *, pick: bool = False) -> bool:
        """Wait up to `seconds` for what the server says about `model`; True when it has been said."""
        thread = self.start(model, pick=pick)
        if thread is None:
            return True
        thread.join(seconds)
        return not thread.is_alive()

    def default_model(self, configured: str) -> str:
        """The model to use when none was chosen: the default if the server lists it (OpenAI
        does), else the first the server lists, else the default (a server that lists none)."""
        usable = [m for m in self.models or () if m.isprintable() and not any(c.isspace() for c in m) and len(m) <= 200]
        if not usable or configured in usable:
            return configured
        return usable[0]

    def window_for(self, model: str) -> Window | None:
        """The model's window as the server or chatcli's table says it, asked now (chatcli models);
        None when neither says."""
        if self.enabled:
            self._learn(model, False)

        window = self.tokenizer.window(model)
        return None if window.source == DEFAULT_SOURCE else window

    def take_notes(self) -> list[str]:
        with self._lock:
            notes, self.notes = self.notes, []
        return notes

    # -- the background work -------------------------------------------------

    def _learn(self, model: str, pick: bool) -> None:
        """Ask, and tell the Tokenizer; a server that answers in a shape nobody expects has said nothing."""
        try:
            self._ask(model, pick)
        except Exception as exc:  # noqa: BLE001 - a background question must never end in a traceback
            log.info("asking %s about itself failed: %s", self.client.config.shown_url, type(exc).__name__)

    def _ask(self, model: str, pick: bool) -> None:
        entries = self._list()
        if pick and self.models is None:
            return  # no list to pick from: settle keeps waiting, and the question is asked again
        if pick:
            model = self.default_model(model)
            with self._lock:  # what is learned here is that model's too: not asked again
                self._threads.setdefault(model, threading.current_thread())
        entry = next((e for e in entries if e.get("id") == model), None)
        if entry is None and self.kind == LLAMA_CPP and len(entries) == 1:
            entry = entries[0]  # one model loaded: llama-server answers to any name with it
        found = self._window(model, entry or {})
        if found is not None:
            larger = self.tokenizer.set_window(model, found[0], found[1])
            if larger is not None:
                with self._lock:
                    self.notes.append(
                        f"the config sets context_window {larger.tokens:,} for {one_line(model, 80)}, larger than the "
                        f"{found[0]:,} tokens {found[1]}; the config's figure is used, so requests may overflow"
                    )
        if self.kind == LLAMA_CPP:
            self.tokenizer.use_server(model, LlamaCounter(self.client, root_of(self.client.config.base_url)))

    def _list(self) -> list[dict[str, Any]]:
        """The server's /models entries, asked once per server."""
        if self._entries is not None:
            return self._entries
        if self.client.listing is not None:
            data: Any = self.client.listing
        else:
            found = self.client.fetch_json("models")
            data = found.get("data") if isinstance(found, dict) else None
        if not isinstance(data, list):
            self._failed_at = time.monotonic()  # not a list (yet): asked again after RETRY_S
            return []
        entries = [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]
        ids = [e["id"] for e in entries]
        if entries:
            self.kind = kind_of(entries[0], ids)
        self.models = ids
        self.client.remember_models(ids)
        self._entries = entries
        return entries

    def _window(self, model: str, entry: dict[str, Any]) -> tuple[int, str] | None:
        """The window the server runs the model with, and where it said so."""
        root = root_of(self.client.config.base_url)
        if self.kind == LLAMA_CPP:
            props = self.client.fetch_json(f"{root}/props")
            settings = props.get("default_generation_settings") if isinstance(props, dict) else None
            if isinstance(settings, dict) and (n := _size(settings.get("n_ctx"))):
                return n, "llama.cpp reports in /props"
            meta = entry.get("meta")
            if isinstance(meta, dict) and (n := _size(meta.get("n_ctx"))):
                return n, "llama.cpp reports in /v1/models (meta.n_ctx)"
        if self.kind == VLLM and (n := _size(entry.get("max_model_len"))):
            return n, "vLLM reports (max_model_len)"
        if self.kind == OLLAMA and (found := self._ollama(root, model)) is not None:
            return found
        if self.kind == LM_STUDIO:
            info = self.client.fetch_json(f"{root}/api/v0/models/{quote(model, safe='')}")
            if isinstance(info, dict) and (n := _size(info.get("loaded_context_length"))):
                return n, "LM Studio reports (loaded_context_length)"
        if n := _size(entry.get("context_length")):
            return n, "the server reports in /models (context_length)"
        return None

    def _ollama(self, root: str, model: str) -> tuple[int, str] | None:
        """The runtime window: num_ctx from the Modelfile, else the loaded model's, never the trained maximum."""
        show = self.client.fetch_json(f"{root}/api/show", body={"model": model})
        if not isinstance(show, dict):
            return None
        parameters = show.get("parameters")
        found = re.search(r"^\s*num_ctx\s+(\d+)", parameters, re.MULTILINE) if isinstance(parameters, str) else None
        if found and (n := _size(int(found.group(1)[:10]))):
            return n, "Ollama reports (num_ctx in /api/show)"
        ps = self.client.fetch_json(f"{root}/api/ps")
        loaded = ps.get("models") if isinstance(ps, dict) else None
        for m in loaded if isinstance(loaded, list) else ():
            names = {n for n in (m.get("name"), m.get("model")) if isinstance(n, str)} if isinstance(m, dict) else set()
            if (model in names or f"{model}:latest" in names) and (n := _size(m.get("context_length"))):
                return n, "Ollama reports for the loaded model (/api/ps)"
        return None
