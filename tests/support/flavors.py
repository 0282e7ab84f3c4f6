"""How llama.cpp, vLLM, Ollama, LM Studio and OpenRouter differ from OpenAI, for tests/support/server.py.

``ChatServer.flavor`` picks one of :data:`FLAVORS`. A flavor owns what differs between
these servers on the wire: the shape of ``/v1/models``, the discovery endpoints beside it
(``/props``, ``/api/show``, ``/api/v0/models`` ...), the body and status of a prompt that
does not fit ``ChatServer.n_ctx``, and what happens when the reply fills the window. The
server keeps the HTTP mechanics; each flavor only decides, so the fast suite can meet every
server's behaviour without running it. The shapes follow the real servers: llama.cpp's
tools/server (the source tests/support/llama_server.py builds), vLLM's serving_engine (its older
top-level error body by default), Ollama's server/routes.go, server/prompt.go and
openai/openai.go, and LM Studio's /api/v0 REST API.

One tokenizer serves every flavor, so tests can assert exact numbers: a message costs the
words of its content plus 4 (:func:`prompt_tokens`, what ``compute_usage`` reports). The
llama.cpp flavor's ``/apply-template`` wraps each message in exactly 4 marker words and its
``/tokenize`` makes one token per whitespace-separated word, so
``len(tokenize(apply_template(messages)))`` equals the chat's ``prompt_tokens``.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from tests.support.server import ChatServer

__all__ = ["FLAVORS", "DEFAULT_WINDOW", "Flavor", "OpenRouter", "Verdict", "apply_template", "content_text",
           "prompt_tokens", "tokenize"]

DEFAULT_WINDOW = 4096  # the window a server reports when ChatServer.n_ctx is None (no limit enforced)
MARKERS_PER_MESSAGE = 4

Answer = tuple[int, Any]  # an HTTP status and the JSON body to send
Route = Callable[["ChatServer", Any], Answer]


# --------------------------------------------------------------------------- #
# The one tokenizer
# --------------------------------------------------------------------------- #


def content_text(content: Any) -> str:
    """Text of a message ``content`` (a string, a list of parts, or None)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


IMAGE_TOKENS = 85  # what each image_url part costs, so a test sees an image in the usage


def image_parts(content: Any) -> list[dict[str, Any]]:
    """The image_url parts of a message ``content``."""
    if not isinstance(content, list):
        return []
    return [part for part in content if isinstance(part, dict) and part.get("type") == "image_url"]


def prompt_tokens(messages: Any) -> int:
    """What a prompt costs: per message, the words of its content + 4, and 85 per image."""
    return sum(
        len(content_text(m.get("content")).split()) + MARKERS_PER_MESSAGE + IMAGE_TOKENS * len(image_parts(m.get("content")))
        for m in messages or []
        if isinstance(m, dict)
    )


# How each server refuses an image for a model that takes none (ChatServer.blind).
NO_IMAGES = {
    "openai": (400, "Invalid content type. image_url is only supported by certain models.", "invalid_request_error"),
    "llamacpp": (500, "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
                 "server_error"),
    "vllm": (400, "{model} is not a multimodal model", "BadRequestError"),
    "ollama": (400, "this model does not support image input", "invalid_request_error"),
    "lmstudio": (400, "Model does not support images. Please use a model that does.", "invalid_request_error"),
}


def apply_template(messages: Any) -> str:
    """llama.cpp's rendered prompt: ChatML-like, 4 marker words around each message's content."""
    out = []
    for m in messages or []:
        if isinstance(m, dict):
            role = "".join(str(m.get("role") or "unknown").split()) or "unknown"
            media = " <__media__>" * (IMAGE_TOKENS * len(image_parts(m.get("content"))))  # an image's tokens
            out.append(f"<|im_start|> {role} <|im_sep|>\n{content_text(m.get('content'))}{media} <|im_end|>\n")
    return "".join(out)


def tokenize(text: str, n_vocab: int = 49152) -> list[int]:
    """One token per whitespace-separated word, with a stable id (no BOS, as SmolLM2 adds none)."""
    return [zlib.crc32(word.encode()) % n_vocab for word in text.split()]


def _error(message: str, type_: str | None, code: Any, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --------------------------------------------------------------------------- #
# Flavors
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Verdict:
    """What a flavor decides about one chat request before the scripted behaviour runs.

    ``refusal`` is answered instead of any reply (and leaves the script alone);
    ``messages`` is what the model gets to see when the server silently drops some;
    ``prompt_cap`` caps the reported prompt_tokens; ``completion_budget`` cuts a longer
    reply at that many tokens, ending it with finish_reason "length".
    """

    refusal: Answer | None = None
    messages: list[Any] | None = None
    prompt_cap: int | None = None
    completion_budget: int | None = None


class Flavor:
    """OpenAI itself: the default, and what each other server adapts."""

    name: ClassVar[str] = "openai"
    owned_by: ClassVar[str] = "test"
    public: ClassVar[frozenset[str]] = frozenset()  # routes answered without the API key
    retrieves: ClassVar[bool] = True  # has GET /v1/models/{id}

    def routes(self) -> dict[tuple[str, str], Route]:
        """Endpoints beside the OpenAI ones, by (method, exact path)."""
        return {}

    def route(self, method: str, path: str) -> Route | None:
        return self.routes().get((method, path))

    def listed(self, srv: ChatServer) -> list[str]:
        """The model ids ``/v1/models`` lists."""
        return list(srv.models)

    def entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 0, "owned_by": self.owned_by}

    def models(self, srv: ChatServer) -> Answer:
        return 200, {"object": "list", "data": [self.entry(srv, m) for m in self.listed(srv)]}

    def model(self, srv: ChatServer, name: str) -> Answer:
        """``GET /v1/models/{name}``, where ``retrieves`` says the server has it."""
        if name in self.listed(srv):
            return 200, self.entry(srv, name)
        message = f"The model `{name}` does not exist or you do not have access to it."
        return 404, _error(message, "invalid_request_error", "model_not_found")

    def account(self, srv: ChatServer, request: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
        """The usage as this server reports it, from compute_usage's (or a scripted) one."""
        return usage

    def chat(self, srv: ChatServer, request: dict[str, Any]) -> Verdict:
        """OpenAI refuses messages longer than the window (only when n_ctx is set)."""
        if srv.n_ctx is None:
            return Verdict()
        n = prompt_tokens(request.get("messages"))
        if n > srv.n_ctx:
            message = (f"This model's maximum context length is {srv.n_ctx} tokens. However, your messages "
                       f"resulted in {n} tokens. Please reduce the length of the messages.")
            return Verdict(refusal=(400, _error(message, "invalid_request_error", "context_length_exceeded",
                                                "messages")))
        return Verdict()


class LlamaCpp(Flavor):
    """llama-server: /props, /tokenize, /apply-template; 400 past the window, "length" at it."""

    name = "llamacpp"
    owned_by = "llamacpp"
    public = frozenset({"/health", "/v1/health"})
    retrieves = False

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("GET", "/health"): self._health, ("GET", "/v1/health"): self._health,
                ("GET", "/props"): self._props, ("POST", "/tokenize"): self._tokenize,
                ("POST", "/apply-template"): self._apply_template}

    def listed(self, srv: ChatServer) -> list[str]:
        # One model per server, named by -m's path (or --alias): what served_model says.
        return [srv.served_model] if srv.served_model else list(srv.models)

    def entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        meta = {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_ctx": srv.n_ctx or DEFAULT_WINDOW,
                "n_embd": 576, "n_params": 134515008, "size": 98000000}
        return {"id": model, "aliases": [], "tags": [], "object": "model", "created": 0,
                "owned_by": self.owned_by, "meta": meta}

    def models(self, srv: ChatServer) -> Answer:
        # llama-server answers Ollama's /api/tags shape and OpenAI's in one body.
        ollama = [{"name": m, "model": m, "modified_at": "", "size": "", "digest": "", "type": "model",
                   "description": "", "tags": [""], "capabilities": ["completion"], "parameters": "",
                   "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""],
                               "parameter_size": "", "quantization_level": ""}}
                  for m in self.listed(srv)]
        return 200, {"models": ollama, "object": "list", "data": [self.entry(srv, m) for m in self.listed(srv)]}


    def chat(self, srv: ChatServer, request: dict[str, Any]) -> Verdict:
        if srv.n_ctx is None:
            return Verdict()
        n = prompt_tokens(request.get("messages"))
        if n >= srv.n_ctx:  # not even one token left to generate
            message = (f"request ({n} tokens) exceeds the available context size ({srv.n_ctx} tokens), "
                       "try increasing it")
            return Verdict(refusal=(400, {"error": {"code": 400, "type": "exceed_context_size_error",
                                                    "message": message, "n_prompt_tokens": n, "n_ctx": srv.n_ctx}}))
        return Verdict(completion_budget=srv.n_ctx - n)  # no context shift: generation stops when full

    def _health(self, srv: ChatServer, body: Any) -> Answer:
        return 200, {"status": "ok"}

    def _props(self, srv: ChatServer, body: Any) -> Answer:
        listed = self.listed(srv)
        path = listed[0] if listed else "models/x.gguf"
        params = {"n_predict": -1, "seed": 4294967295, "temperature": 0.8, "top_k": 40, "top_p": 0.95,
                  "min_p": 0.05, "max_tokens": -1, "stream": False}
        template = ("{% for message in messages %}<|im_start|> {{ message['role'] }} <|im_sep|>\n"
                    "{{ message['content'] }} <|im_end|>\n{% endfor %}")
        return 200, {"default_generation_settings": {"n_ctx": srv.n_ctx or DEFAULT_WINDOW, "params": params},
                     "total_slots": 1, "model_alias": path, "model_path": path,
                     "modalities": {"vision": False, "audio": False}, "chat_template": template,
                     "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "build_info": "b6000-testserver"}

    def _tokenize(self, srv: ChatServer, body: Any) -> Answer:
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, str):
            return 200, {"tokens": []}
        tokens = tokenize(content)
        if body.get("with_pieces") is True:
            return 200, {"tokens": [{"id": t, "piece": w} for t, w in zip(tokens, content.split())]}
        return 200, {"tokens": tokens}

    def _apply_template(self, srv: ChatServer, body: Any) -> Answer:
        messages = body.get("messages") if isinstance(body, dict) else None
        return 200, {"prompt": apply_template(messages)}


class Vllm(Flavor):
    """vLLM: max_model_len in /v1/models; its own error envelope, top-level or (newer) nested."""

    name = "vllm"
    owned_by = "vllm"
    retrieves = False

    def entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        permission = {"id": "modelperm-" + hashlib.sha256(model.encode()).hexdigest()[:32],
                      "object": "model_permission", "created": 0, "allow_create_engine": False,
                      "allow_sampling": True, "allow_logprobs": True, "allow_search_indices": False,
                      "allow_view": True, "allow_fine_tuning": False, "organization": "*", "group": None,
                      "is_blocking": False}
        return {"id": model, "object": "model", "created": 0, "owned_by": self.owned_by, "root": model,
                "parent": None, "max_model_len": srv.n_ctx or DEFAULT_WINDOW, "permission": [permission]}


    def chat(self, srv: ChatServer, request: dict[str, Any]) -> Verdict:
        model = request.get("model")
        if model not in srv.models:
            return Verdict(refusal=self._error(srv, 404, "NotFoundError", f"The model `{model}` does not exist."))
        if srv.n_ctx is None:
            return Verdict()
        limit, n = srv.n_ctx, prompt_tokens(request.get("messages"))
        asked = request.get("max_completion_tokens") or request.get("max_tokens")
        head = f"This model's maximum context length is {limit} tokens. However, you requested "
        if not isinstance(asked, int):  # without max_tokens vLLM generates up to the window
            if n >= limit:
                message = f"{head}{n} tokens in the messages, Please reduce the length of the messages."
                return Verdict(refusal=self._error(srv, 400, "BadRequestError", message))
        elif n + asked > limit:
            message = (f"{head}{n + asked} tokens ({n} in the messages, {asked} in the completion). "
                       "Please reduce the length of the messages or completion.")
            return Verdict(refusal=self._error(srv, 400, "BadRequestError", message))
        return Verdict(completion_budget=limit - n)

    @staticmethod
    def _error(srv: ChatServer, status: int, type_: str, message: str) -> Answer:
        error = {"message": message, "type": type_, "param": None, "code": status}
        return status, ({"error": error} if srv.vllm_nested_errors else {"object": "error", **error})


def _tagged(name: Any) -> str:
    """Ollama's full name: a name without a tag means ``:latest``."""
    name = str(name)
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


class Ollama(Flavor):
    """Ollama: /api/show, /api/ps, /api/tags; unknown models 404; too long a prompt is cut, silently."""

    name = "ollama"
    owned_by = "library"
    TRAINED = 131072  # llama3.2's context_length in model_info: what it was trained for, not the window
    DETAILS: ClassVar[dict[str, Any]] = {"parent_model": "", "format": "gguf", "family": "llama",
                                         "families": ["llama"], "parameter_size": "3.2B",
                                         "quantization_level": "Q4_K_M"}

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("POST", "/api/show"): self._show, ("GET", "/api/ps"): self._ps, ("GET", "/api/tags"): self._tags,
                ("GET", "/api/version"): lambda srv, body: (200, {"version": "0.12.6"})}

    def entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        owner = model.split("/", 1)[0] if "/" in model else self.owned_by
        return {"id": model, "object": "model", "created": 1700000000, "owned_by": owner}

    def _known(self, srv: ChatServer, name: Any) -> str | None:
        return next((m for m in srv.models if _tagged(m) == _tagged(name)), None)

    def model(self, srv: ChatServer, name: str) -> Answer:
        if self._known(srv, name):
            return 200, self.entry(srv, name)
        return 404, _error(f"model '{name}' not found", "api_error", None)

    def chat(self, srv: ChatServer, request: dict[str, Any]) -> Verdict:
        model = request.get("model")
        if not self._known(srv, model):
            message = f"model {json.dumps(str(model), ensure_ascii=False)} not found, try pulling it first"  # Go's %q
            return Verdict(refusal=(404, _error(message, "api_error", None)))
        if srv.n_ctx is None:
            return Verdict()
        # No error: the oldest messages that do not fit are dropped (system ones and the last
        # are kept), and if the rest is still too long the runner keeps just n_ctx tokens of it.
        return Verdict(messages=self._fit(request.get("messages") or [], srv.n_ctx), prompt_cap=srv.n_ctx)

    @staticmethod
    def _fit(messages: list[Any], n_ctx: int) -> list[Any]:
        """Ollama's chatPrompt: from the newest back, the most messages that fit, plus earlier system ones."""
        def system(upto: int) -> list[Any]:
            return [m for m in messages[:upto] if isinstance(m, dict) and m.get("role") == "system"]

        first = len(messages) - 1
        for i in range(len(messages) - 2, -1, -1):
            if prompt_tokens(system(i) + messages[i:]) > n_ctx:
                break
            first = i
        return system(first) + messages[first:] if messages else []

    def _window(self, srv: ChatServer) -> int:
        return srv.n_ctx or DEFAULT_WINDOW

    def _show(self, srv: ChatServer, body: Any) -> Answer:
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        known = self._known(srv, name)
        if known is None:
            return 404, {"error": f"model '{name}' not found"}
        params = [("num_ctx", str(self._window(srv)))] if srv.ollama_num_ctx_param else []
        params += [("stop", '"<|start_header_id|>"'), ("stop", '"<|end_header_id|>"'), ("stop", '"<|eot_id|>"')]
        template = ("{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
                    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")
        modelfile = (f'# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, replace '
                     f"FROM with:\n# FROM {_tagged(known)}\n\nFROM {self._blob(known)}\n"
                     f'TEMPLATE """{template}"""\n' + "".join(f"PARAMETER {k} {v}\n" for k, v in params))
        info = {"general.architecture": "llama", "general.basename": "Llama-3.2", "general.file_type": 15,
                "general.parameter_count": 3212749888, "general.quantization_version": 2,
                "llama.attention.head_count": 24, "llama.block_count": 28,
                "llama.context_length": self.TRAINED, "llama.embedding_length": 3072,
                "llama.feed_forward_length": 8192, "llama.rope.freq_base": 500000,
                "tokenizer.ggml.model": "gpt2"}
        return 200, {"license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT", "modelfile": modelfile,
                     # Go's fmt.Sprintf("%-*s %#v", 30, key, value), one line per value
                     "parameters": "\n".join(f"{k:<30} {v}" for k, v in params),
                     "template": template, "details": self.DETAILS, "model_info": info,
                     "capabilities": ["completion", "tools"], "modified_at": "2025-01-01T00:00:00Z"}

    def _ps(self, srv: ChatServer, body: Any) -> Answer:
        loaded = srv.models if srv.loaded is None else [m for m in srv.models if m in srv.loaded]
        return 200, {"models": [{"name": _tagged(m), "model": _tagged(m), "size": 3355288576,
                                 "digest": self._digest(m), "details": self.DETAILS,
                                 "expires_at": "2030-01-01T00:05:00Z", "size_vram": 3355288576,
                                 "context_length": self._window(srv)} for m in loaded]}

    def _tags(self, srv: ChatServer, body: Any) -> Answer:
        return 200, {"models": [{"name": _tagged(m), "model": _tagged(m), "modified_at": "2025-01-01T00:00:00Z",
                                 "size": 2019393189, "digest": self._digest(m), "details": self.DETAILS}
                                for m in srv.models]}

    @staticmethod
    def _digest(model: str) -> str:
        return hashlib.sha256(_tagged(model).encode()).hexdigest()

    def _blob(self, model: str) -> str:
        return f"/root/.ollama/models/blobs/sha256-{self._digest(model)}"


class LmStudio(Flavor):
    """LM Studio: /api/v0/models with max and loaded context lengths; a string error past the window."""

    name = "lmstudio"
    owned_by = "organization_owner"
    TRAINED = 32768  # max_context_length: what the model supports, not what it is loaded with
    PREFIX = "/api/v0/models/"
    retrieves = False

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("GET", "/api/v0/models"): self._v0_models}

    def route(self, method: str, path: str) -> Route | None:
        if method == "GET" and path.startswith(self.PREFIX):
            return lambda srv, body: self._v0_model(srv, path[len(self.PREFIX):])
        return super().route(method, path)

    def entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "owned_by": self.owned_by}

    def models(self, srv: ChatServer) -> Answer:
        return 200, {"data": [self.entry(srv, m) for m in srv.models], "object": "list"}

    def chat(self, srv: ChatServer, request: dict[str, Any]) -> Verdict:
        if srv.n_ctx is None:
            return Verdict()
        n = prompt_tokens(request.get("messages"))
        if n >= srv.n_ctx:  # taken, like llama.cpp's, as leaving no token to generate
            message = (f"Trying to keep the first {n} tokens when context the overflows. However, the model is "
                       f"loaded with context length of only {srv.n_ctx} tokens, which is not enough. Try to load "
                       "the model with a larger context length, or provide a shorter input")
            return Verdict(refusal=(400, {"error": message}))
        return Verdict()

    def _v0_entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        entry = {"id": model, "object": "model", "type": "llm", "publisher": "lmstudio-community", "arch": "qwen2",
                 "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
                 "max_context_length": self.TRAINED, "loaded_context_length": srv.n_ctx or DEFAULT_WINDOW}
        if srv.loaded is not None and model not in srv.loaded:
            entry["state"] = "not-loaded"
            del entry["loaded_context_length"]
        return entry

    def _v0_models(self, srv: ChatServer, body: Any) -> Answer:
        return 200, {"object": "list", "data": [self._v0_entry(srv, m) for m in srv.models]}

    def _v0_model(self, srv: ChatServer, name: str) -> Answer:
        if name in srv.models:
            return 200, self._v0_entry(srv, name)
        return 404, {"error": f"Model '{name}' not found"}  # LM Studio's wording here is not verified


class OpenRouter(Flavor):
    """OpenRouter: /models entries with context_length and per-token prices, and usage accounting.

    A request that asks for it (``"usage": {"include": true}``) gets the cost in its usage, in USD
    (OpenRouter's credits), at :attr:`PRICES`, which are deliberately unlike any list price so a
    test can tell the provider's cost from chatcli's; a scripted usage that has a ``cost`` keeps it.
    Like OpenRouter's for a request on its own credits (not ``is_byok``), ``cost_details`` breaks
    the same cost down, and adds nothing to it.
    """

    name = "openrouter"
    owned_by = "openrouter"
    PRICES = (200.0, 20.0, 1000.0)  # USD per million prompt, cached prompt and completion tokens

    def entry(self, srv: ChatServer, model: str) -> dict[str, Any]:
        per_token = [f"{p / 1e6:.10f}".rstrip("0") for p in self.PRICES]
        return {"id": model, "canonical_slug": model, "name": model, "created": 0, "context_length": DEFAULT_WINDOW,
                "pricing": {"prompt": per_token[0], "input_cache_read": per_token[1], "completion": per_token[2]}}

    def models(self, srv: ChatServer) -> Answer:
        return 200, {"data": [self.entry(srv, m) for m in self.listed(srv)]}

    @classmethod
    def cost_of(cls, usage: dict[str, Any]) -> float:
        """What OpenRouter charges for a usage, at PRICES."""
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        fresh = usage["prompt_tokens"] - cached
        prompt, cached_prompt, completion = cls.PRICES
        return (fresh * prompt + cached * cached_prompt + usage["completion_tokens"] * completion) / 1e6

    def account(self, srv: ChatServer, request: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
        asked = request.get("usage")
        if not (isinstance(asked, dict) and asked.get("include") is True) or "cost" in usage:
            return usage
        cost = self.cost_of(usage)
        return {**usage, "cost": cost, "is_byok": False, "cost_details": {"upstream_inference_cost": cost}}


FLAVORS: dict[str, Flavor] = {f.name: f for f in (Flavor(), LlamaCpp(), Vllm(), Ollama(), LmStudio(), OpenRouter())}
