"""The provider's Batch API on the wire: upload a request file, create, retrieve, cancel and list
batches, and read their output files (OpenAI's /v1/files and /v1/batches, through the openai SDK).

The SDK client is ChatClient's (its proxy, certificates, key and retries), and openai is imported
only when a call is made, never on the path to the first prompt. Every failure is one sentence,
as failures.py says a chat's: 401, 404 (no Batch API, or no such batch or file), 429, the network.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from chatcli.base.errors import ChatError, one_line
from chatcli.base.pii import redact_secrets
from chatcli.llm.failures import connection_error, describe_status_error, timeout_error
from chatcli.llm.overflow import error_fields

if TYPE_CHECKING:
    from chatcli.config.settings import Config
    from chatcli.llm.client import ChatClient

log = logging.getLogger("chatcli")

ENDPOINT = "/v1/chat/completions"  # what every line of a request file asks for
WINDOW = "24h"  # the only completion window the Batch API offers
OPEN = ("validating", "in_progress", "finalizing", "cancelling")  # a batch's states before its end
ENDED = ("completed", "expired", "cancelled", "failed")


@dataclass(frozen=True)
class RemoteBatch:
    """A batch as the provider last described it."""

    id: str
    status: str
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0  # request_counts: answered, failed, in all
    failed: int = 0
    total: int = 0
    errors: tuple[str, ...] = ()  # why validation failed it (a batch whose status is "failed")

    def record(self) -> dict[str, Any]:
        """As JSON, for the job's `remote`."""
        return {"id": self.id, "status": self.status, "input_file_id": self.input_file_id,
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "completed": self.completed, "failed": self.failed, "total": self.total, "errors": list(self.errors)}


class BatchWire:
    """The Batch API of the server a config names."""

    def __init__(self, config: Config, client: ChatClient | None = None) -> None:
        if client is None:
            from chatcli.llm.client import ChatClient  # lazy: keeps the SDK's owner off the startup path

            client = ChatClient(config)
        self.config = config
        self.client = client

    def upload(self, name: str, data: bytes) -> str:
        """Upload a request file (purpose "batch"); its file id."""
        log.info("POST %s/files: %s, %d bytes, purpose batch", self.config.shown_url, name, len(data))
        with self._failing("take the request file"):
            file = self.client.sdk().files.create(file=(name, data, "application/jsonl"), purpose="batch")
        file_id = getattr(file, "id", None)
        if not isinstance(file_id, str) or not file_id:
            raise self._not_batch_api("upload")
        return file_id

    def create(self, file_id: str, *, metadata: dict[str, str] | None = None) -> RemoteBatch:
        """Start a batch over an uploaded request file."""
        with self._failing("start a batch"):
            made = self.client.sdk().batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window=WINDOW,
                                                    metadata=metadata)
        return self._logged(self._batch(made, "start"))

    def retrieve(self, batch_id: str) -> RemoteBatch:
        with self._failing("describe a batch", missing=f"batch {batch_id}"):
            found = self.client.sdk().batches.retrieve(batch_id)
        return self._logged(self._batch(found, "describe"))

    def cancel(self, batch_id: str) -> RemoteBatch:
        """Ask the server to stop a batch; it says `cancelling` until it has."""
        with self._failing("cancel a batch", missing=f"batch {batch_id}"):
            found = self.client.sdk().batches.cancel(batch_id)
        return self._logged(self._batch(found, "cancel"))

    def list(self, *, limit: int = 20, after: str | None = None) -> list[RemoteBatch]:
        """One page of the server's batches, newest first."""
        with self._failing("list its batches"):
            page = self.client.sdk().batches.list(limit=limit, **({"after": after} if after else {}))
            data = page.data
        return [self._batch(b, "list") for b in data or []]

    def content(self, file_id: str) -> str:
        """An output or error file's text."""
        with self._failing("send a batch's results", missing=f"file {file_id}"):
            body = self.client.sdk().files.content(file_id).content
        log.info("GET %s/files/%s/content: %d bytes", self.config.shown_url, file_id, len(body))
        return body.decode("utf-8", "replace")

    def available(self) -> bool:
        """Whether the server has a Batch API: GET /batches?limit=1 answers 200 with JSON holding `data`.
        Not Azure OpenAI's, whose request lines name a deployment and another URL (not supported here)."""
        if self.config.api_type == "azure":
            return False
        found = self.client.fetch_json("/batches?limit=1", timeout=min(self.config.connect_timeout, 5.0))
        return isinstance(found, dict) and isinstance(found.get("data"), list)

    def _logged(self, batch: RemoteBatch) -> RemoteBatch:
        log.info("batch %s: %s, %d of %d requests done, %d failed", batch.id, batch.status,
                 batch.completed + batch.failed, batch.total, batch.failed)
        return batch

    @contextmanager
    def _failing(self, what: str, *, missing: str | None = None) -> Iterator[None]:
        """The SDK's exceptions as one sentence each; `what` is what the server was asked to do."""
        import httpx2  # lazy: loaded with openai
        import openai  # lazy: keeps openai off the startup path

        try:
            yield
        except openai.APIStatusError as exc:
            raise self._status_error(exc, what, missing) from None
        except (openai.APITimeoutError, httpx2.TimeoutException):
            raise timeout_error(self.config, tries=self.config.max_retries + 1) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            kind = ("proxy" if isinstance(cause, httpx2.ProxyError) else
                    "broke" if isinstance(cause, (httpx2.RemoteProtocolError, httpx2.ReadError)) else None)
            raise connection_error(self.config, cause, proxy=self.client.proxy, kind=kind) from None
        except (openai.APIError, ValueError) as exc:  # a 200 whose body is no answer of the Batch API
            log.info("batch API: %s: %s", what, type(exc).__name__)
            raise self._not_batch_api(what) from None

    def _status_error(self, exc: Any, what: str, missing: str | None) -> ChatError:
        url, status = self.config.shown_url, exc.status_code
        detail = one_line(redact_secrets(str(error_fields(exc.body).get("message") or exc.message or ""),
                                         self.config.api_key), 200)
        if status == 404 and missing and missing.startswith("file"):
            return ChatError(f"The server at {url} no longer has the {one_line(missing, 100)} (404); "
                             "OpenAI deletes a batch's files 30 days after it ends.")
        if status == 404 and missing:
            return ChatError(f"The server at {url} knows no {one_line(missing, 100)} (404); "
                             "the job may have been sent with another --profile or --base-url.")
        if status in (404, 405):
            return ChatError(f"The server at {url} has no Batch API (HTTP {status} when asked to {what}); "
                             "run the batch here with --via local.")
        if status in (400, 409, 413, 422):
            return ChatError(f"The server refused to {what} (HTTP {status}: {detail or 'no details'}).")
        return describe_status_error(exc, config=self.config, model="")

    def _not_batch_api(self, what: str) -> ChatError:
        return ChatError(f"The server at {self.config.shown_url} did not answer as the Batch API does when asked "
                         f"to {what}; check the base URL, or run the batch with --via local.")

    def _batch(self, found: Any, what: str) -> RemoteBatch:
        """A RemoteBatch from the SDK's Batch (built without validation: a field may be missing or odd)."""
        batch_id, status = getattr(found, "id", None), getattr(found, "status", None)
        if not isinstance(batch_id, str) or not batch_id or not isinstance(status, str):
            raise self._not_batch_api(what)
        counts = getattr(found, "request_counts", None)

        def number(name: str) -> int:
            value = getattr(counts, name, 0)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

        def file_id(name: str) -> str | None:
            value = getattr(found, name, None)
            return value if isinstance(value, str) and value else None

        errors = getattr(getattr(found, "errors", None), "data", None) or []
        said = tuple(one_line(redact_secrets(str(getattr(e, "message", "") or getattr(e, "code", "") or "invalid"),
                                             self.config.api_key), 200)
                     + (f" (line {e.line})" if isinstance(getattr(e, "line", None), int) and e.line > 0 else "")
                     for e in errors)
        return RemoteBatch(batch_id, status, file_id("input_file_id"), file_id("output_file_id"),
                           file_id("error_file_id"), number("completed"), number("failed"), number("total"), said)


def has_batch_api(config: Config, client: ChatClient | None = None) -> bool:
    """Whether the server has a Batch API, for `batch run`'s --via default: a probe, one short try;
    any failure (a 404 from Ollama or llama.cpp, a timeout) means no."""
    return BatchWire(config, client).available()
