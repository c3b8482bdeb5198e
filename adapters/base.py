"""The adapter contract: pure translation between OpenAI chat completions and a provider.

An adapter does no I/O. The gateway hands it a resolved `Deployment` and the client's
OpenAI-shaped body; it gets back an `UpstreamRequest` (method, URL, headers, body bytes) to
send, and turns what the provider answered into OpenAI shapes: a chat.completion dict, an
incremental stream translator that emits OpenAI SSE bytes, or a classified `ProviderError`.
Only `proxy/upstream.py` talks to the network.
"""
from __future__ import annotations

from typing import Any, Protocol

import msgspec
import orjson

__all__ = [
    "Deployment", "UpstreamRequest", "ProviderError", "StreamTranslator", "StreamState", "Adapter",
    "openai_error_body", "RETRYABLE_KINDS", "RequestRejected",
]


class Deployment(msgspec.Struct, kw_only=True):
    """One concrete place a request can go: provider + upstream model + key + base URL."""

    name: str                       # the public model name clients use
    provider: str                   # adapter/provider name: "openai", "anthropic", "gemini", "groq", ...
    model: str                      # the provider's model id
    base_url: str
    api_key: str | None = None
    headers: dict[str, str] = {}    # extra headers sent upstream
    options: dict[str, Any] = {}    # provider-specific knobs (api_version, auto_cache, ...)
    weight: float = 1.0


class UpstreamRequest(msgspec.Struct):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


# Error kinds. Retryable ones make the gateway back off and try the next candidate.
RETRYABLE_KINDS = frozenset({"rate_limit", "overloaded", "server", "timeout", "connection"})


class ProviderError(msgspec.Struct, kw_only=True):
    """A provider's failure, classified, with the OpenAI-shaped body to show the client.

    kind: rate_limit | quota | overloaded | server | timeout | connection | context_window |
    content_policy | auth | permission | bad_request | not_found | other
    """

    status: int
    body: dict
    kind: str
    retryable: bool
    retry_after: float | None = None


class RequestRejected(ValueError):
    """Raised by `chat_request`/`embeddings_request` when the provider cannot serve the
    request as asked (e.g. `n>1` on Anthropic, embeddings on Anthropic). `error` is a
    non-retryable 400 `ProviderError` to answer with or to fail over on."""

    def __init__(self, error: ProviderError):
        super().__init__(error.body["error"]["message"])
        self.error = error


def openai_error_body(message: str, type: str = "invalid_request_error",
                      param: str | None = None, code: str | int | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class StreamTranslator(Protocol):
    """Turns a provider's raw stream bytes into OpenAI `chat.completion.chunk` SSE bytes.

    feed(chunk) returns the bytes to write to the client now (b"" when nothing is complete
    yet); finish() is called at upstream EOF and returns what is left (ending in
    `data: [DONE]\\n\\n` when the stream ended properly). After a `data: [DONE]` or the
    provider's end event, `done` is True. A provider error event sets `error` and `done`
    (the stream ended, with a reason): once output has started it is emitted as an OpenAI
    error event `data: {"error": {...}}`; before any output nothing is emitted, so the
    gateway can still fail over to the next candidate. `usage` is the OpenAI usage dict
    once the provider sent it, `finish_reason` the last finish reason, `completion_text`
    what the model wrote so far (content, tool-call arguments), for counting tokens when
    the provider gives no usage. `collect`, when set before the first feed, is told every
    chunk as it is written (`start(id, created, model)`, `chunk(obj)`, `content(text,
    finish)` for choice 0, `delta(index, delta, finish)`): the response cache's
    StreamAssembler, which so never parses the output again.
    """

    done: bool
    error: ProviderError | None
    usage: dict | None
    finish_reason: str | None
    model: str | None
    collect: Any

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    @property
    def completion_text(self) -> str: ...


class StreamState:
    """The state every stream translator keeps (the attributes StreamTranslator names):
    its SSE parser, whether the client asked for the usage chunk, and what it has seen."""

    __slots__ = ("_parser", "_include_usage", "_text", "done", "error", "usage", "finish_reason",
                 "model", "collect")

    def __init__(self, include_usage: bool):
        from proxy._fast import SSEParser  # noqa: PLC0415 (keeps base.py importable alone)

        self._parser = SSEParser()
        self._include_usage = include_usage
        self._text: list[str] = []
        self.done = False
        self.error: ProviderError | None = None
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        # Set by the caller before the first feed: told every OpenAI chunk written, as it is
        # written (the response cache's StreamAssembler: start/chunk/content/delta).
        self.collect = None

    @property
    def completion_text(self) -> str:
        return "".join(self._text)

    def feed(self, chunk: bytes) -> bytes:
        """Parses the provider's SSE events and hands each JSON object to `_on_event`, which
        appends the OpenAI chunks to send; OpenAIStream overrides this with its fast path."""
        out: list[bytes] = []
        for ev in self._parser.feed(chunk):
            if self.done:
                break
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                self._on_event(ev.event, obj, out)
        return b"".join(out)

    def _on_event(self, event: str | None, obj: dict, out: list[bytes]) -> None:
        raise NotImplementedError("each provider's translator handles its own events")


class Adapter(Protocol):
    name: str

    def chat_request(self, dep: Deployment, body: dict, *, stream: bool) -> UpstreamRequest: ...
    def chat_response(self, dep: Deployment, data: bytes) -> dict: ...
    def chat_stream(self, dep: Deployment, *, include_usage: bool) -> StreamTranslator: ...
    def embeddings_request(self, dep: Deployment, body: dict) -> UpstreamRequest: ...
    def embeddings_response(self, dep: Deployment, data: bytes) -> dict: ...
    def error(self, dep: Deployment, status: int, headers: Any, data: bytes) -> ProviderError: ...
