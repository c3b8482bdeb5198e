"""OpenAI chat completions and every OpenAI-compatible provider.

The request body passes through untouched (unknown fields included) apart from the model
id; responses are already OpenAI-shaped. The stream translator re-frames the provider's SSE
events, drops the usage-only chunk when the client did not ask for it (the gateway always
asks upstream, to account the request), and remembers usage, finish reason and the text
written so far.
"""
from __future__ import annotations

from typing import Any

import orjson

from proxy._fast import SSEParser

from .base import Deployment, ProviderError, UpstreamRequest, openai_error_body
from .errors import decode_json, provider_error

__all__ = ["OpenAIAdapter", "ADAPTER"]

_DONE = b"data: [DONE]\n\n"


class OpenAIStream:
    __slots__ = ("_parser", "_include_usage", "_text", "done", "error", "usage",
                 "finish_reason", "model")

    def __init__(self, include_usage: bool):
        self._parser = SSEParser()
        self._include_usage = include_usage
        self._text: list[str] = []
        self.done = False
        self.error: ProviderError | None = None
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None

    @property
    def completion_text(self) -> str:
        return "".join(self._text)

    def feed(self, chunk: bytes) -> bytes:
        out = []
        for ev in self._parser.feed(chunk):
            data = ev.data
            if self.done:
                continue
            if data == b"[DONE]":
                self.done = True
                out.append(_DONE)
                continue
            obj = decode_json(data)
            if not isinstance(obj, dict):
                continue
            if "error" in obj and "choices" not in obj:
                err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
                self.error = provider_error(int(err.get("code") or 500) if str(err.get("code", "")).isdigit() else 500,
                                            str(err.get("message", "upstream error")),
                                            code=err.get("code"), err_type=err.get("type"))
                out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
                continue
            if self.model is None:
                self.model = obj.get("model")
            usage = obj.get("usage")
            if usage:
                self.usage = usage
            choices = obj.get("choices")
            if choices:
                for choice in choices:
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if content:
                        self._text.append(content)
                    for call in delta.get("tool_calls") or ():
                        fn = call.get("function") or {}
                        if fn.get("arguments"):
                            self._text.append(fn["arguments"])
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
            elif usage and not self._include_usage:
                continue  # the usage-only chunk the client did not ask for
            if usage and not self._include_usage and choices:
                obj["usage"] = None
                out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
                continue
            out.append(b"data: " + data + b"\n\n")
        return b"".join(out)

    def finish(self) -> bytes:
        self._parser.close()
        return b""


class OpenAIAdapter:
    name = "openai"

    def _headers(self, dep: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if dep.api_key:
            headers["authorization"] = f"Bearer {dep.api_key}"
        headers.update(dep.headers)
        return headers

    def chat_request(self, dep: Deployment, body: dict, *, stream: bool) -> UpstreamRequest:
        body = dict(body)
        body["model"] = dep.model
        if stream:
            opts = dict(body.get("stream_options") or {})
            opts["include_usage"] = True
            body["stream_options"] = opts
        return UpstreamRequest("POST", dep.base_url.rstrip("/") + "/chat/completions",
                               self._headers(dep), orjson.dumps(body))

    def chat_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)
        if not isinstance(obj, dict) or "choices" not in obj:
            raise ValueError("upstream returned a response without choices")
        return obj

    def chat_stream(self, dep: Deployment, *, include_usage: bool) -> OpenAIStream:
        return OpenAIStream(include_usage)

    def embeddings_request(self, dep: Deployment, body: dict) -> UpstreamRequest:
        body = dict(body)
        body["model"] = dep.model
        return UpstreamRequest("POST", dep.base_url.rstrip("/") + "/embeddings",
                               self._headers(dep), orjson.dumps(body))

    def embeddings_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)
        if not isinstance(obj, dict) or "data" not in obj:
            raise ValueError("upstream returned an embeddings response without data")
        return obj

    def error(self, dep: Deployment, status: int, headers: Any, data: bytes) -> ProviderError:
        obj = decode_json(data)
        err: Any = None
        if isinstance(obj, dict):
            err = obj.get("error", obj)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or f"upstream returned {status}")
            return provider_error(status, message, code=err.get("code"), err_type=err.get("type"),
                                  param=err.get("param"), headers=headers)
        text = data[:500].decode("utf-8", "replace").strip() or f"upstream returned HTTP {status}"
        return provider_error(status, text, headers=headers)


ADAPTER = OpenAIAdapter()
