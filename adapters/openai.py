"""OpenAI chat completions and every OpenAI-compatible provider.

The wire is the same for all of them; what differs is a handful of parameters some reject or
rename, how they authenticate, and where usage rides in a stream. Those differences are data:
one `Compat` row per provider in `COMPAT`, applied by named transforms below. The request
body otherwise passes through untouched (unknown fields included) apart from the model id.
The stream translator re-frames the provider's SSE events, normalises usage into one
usage-only chunk (`choices: []`) that it drops when the client did not ask for it (the
gateway always asks upstream, to account the request), and remembers usage, finish reason
and the text written so far.
"""
from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from proxy._fast import SHAPE_SIMPLE, extract_chunk

from .base import Deployment, ProviderError, StreamState, UpstreamRequest
from .errors import decode_json, provider_error, request_rejected

__all__ = ["Compat", "COMPAT", "OpenAIAdapter", "OpenAIStream", "ADAPTER", "ADAPTERS",
           "normalize_usage"]

_DONE = b"data: [DONE]\n\n"
# o1/o3/o4 and gpt-5: reject `max_tokens` (400), want `max_completion_tokens`.
_REASONING_MODEL = re.compile(r"^(?:.*/)?(?:o\d|gpt-5)")


class Compat(msgspec.Struct, frozen=True, kw_only=True):
    """What one OpenAI-compatible provider does differently from OpenAI."""

    drop: tuple[str, ...] = ()              # body fields the provider rejects
    rename: tuple[tuple[str, str], ...] = ()  # (openai name, provider name)
    drop_message_fields: tuple[str, ...] = ()  # per-message fields it rejects
    strip_nulls: bool = False               # `null` values are rejected (extra_forbidden)
    max_tokens_field: str = "max_tokens"    # which name the output limit goes by
    stream_usage_opt_in: bool = True        # supports stream_options.include_usage
    single_choice: bool = False             # n != 1 is rejected
    tool_choice_required: str = "required"  # Mistral spells it "any"
    named_tool_choice: bool = True          # {"type":"function","function":{"name"}}
    # reasoning_content echoed back in assistant turns: a 400 on DeepSeek (R1 docs), an
    # unknown field to OpenAI's strict message schema and Mistral's extra_forbidden
    strip_reasoning_content: bool = True
    azure: bool = False                     # deployment URL, api-version, api-key header
    model_drops: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (model regex, fields those reject)


COMPAT: dict[str, Compat] = {
    "openai": Compat(max_tokens_field="auto"),
    "azure": Compat(max_tokens_field="auto", azure=True),
    "deepseek": Compat(),
    "mistral": Compat(strip_nulls=True, rename=(("seed", "random_seed"),),
                      drop=("stream_options", "logit_bias", "logprobs", "top_logprobs", "user",
                            "store", "metadata", "service_tier", "reasoning_effort"),
                      drop_message_fields=("name",), stream_usage_opt_in=False,
                      tool_choice_required="any", named_tool_choice=False),
    "groq": Compat(drop=("logprobs", "logit_bias", "top_logprobs"), drop_message_fields=("name",),
                   single_choice=True),
    "together": Compat(),
    "fireworks": Compat(),
    "openrouter": Compat(),
    # docs.x.ai reasoning guide: reasoning models reject presencePenalty, frequencyPenalty
    # and stop; grok-4 *non-reasoning* variants take stop but not the penalties.
    "xai": Compat(model_drops=(
        (r"grok-3-mini|grok-4|grok-code", ("presence_penalty", "frequency_penalty")),
        (r"grok-3-mini|grok-4(?!.*non-reasoning)|grok-code", ("stop",)))),
    "qwen": Compat(),
    "ollama": Compat(),
    "vllm": Compat(),
    "llamacpp": Compat(),
}


# ---- request transforms ------------------------------------------------------------------

def _max_tokens(body: dict, compat: Compat, model: str) -> None:
    field = compat.max_tokens_field
    if field == "auto":
        field = "max_completion_tokens" if _REASONING_MODEL.match(model) else None
        if field is None:
            return  # OpenAI accepts both on non-reasoning models: pass as given
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    if other in body:
        value = body.pop(other)
        body.setdefault(field, value)


def _tool_choice(body: dict, compat: Compat) -> None:
    choice = body.get("tool_choice")
    if choice == "required":
        body["tool_choice"] = compat.tool_choice_required
    elif isinstance(choice, dict) and not compat.named_tool_choice:
        # Forcing one tool where only "any" exists: offer that tool alone and require a call.
        name = (choice.get("function") or {}).get("name")
        body["tools"] = [t for t in body.get("tools") or ()
                         if (t.get("function") or {}).get("name") == name] or body.get("tools")
        body["tool_choice"] = compat.tool_choice_required


def _messages(messages: list, compat: Compat) -> list:
    fields = compat.drop_message_fields
    out = []
    for msg in messages:
        if not isinstance(msg, dict):
            out.append(msg)
            continue
        if (fields and any(f in msg for f in fields)) or (
                compat.strip_reasoning_content and "reasoning_content" in msg) or (
                compat.strip_nulls and None in msg.values()):
            msg = {k: v for k, v in msg.items() if k not in fields
                   and not (compat.strip_reasoning_content and k == "reasoning_content")
                   and not (compat.strip_nulls and v is None and k != "content")}
        out.append(msg)
    return out


def translate_request(body: dict, compat: Compat, model: str, *, stream: bool) -> dict:
    """The OpenAI body as this provider accepts it (a new dict; the input is not changed)."""
    body = dict(body)
    body["model"] = model
    if compat.single_choice and body.get("n") not in (None, 1):
        raise request_rejected("this provider only supports n=1", "n")
    if stream:
        body["stream"] = True
        if compat.stream_usage_opt_in:
            opts = dict(body.get("stream_options") or {})
            opts["include_usage"] = True
            body["stream_options"] = opts
    for name in compat.drop:
        body.pop(name, None)
    for pattern, names in compat.model_drops:
        if re.search(pattern, model):
            for name in names:
                body.pop(name, None)
    for old, new in compat.rename:
        if old in body:
            body[new] = body.pop(old)
    _max_tokens(body, compat, model)
    if "tool_choice" in body:
        _tool_choice(body, compat)
    if isinstance(body.get("messages"), list):
        body["messages"] = _messages(body["messages"], compat)
    if compat.strip_nulls:
        body = {k: v for k, v in body.items() if v is not None}
    return body


# ---- responses ---------------------------------------------------------------------------

def normalize_usage(usage: dict) -> dict:
    """OpenAI usage as every compatible provider should have sent it: DeepSeek's
    `prompt_cache_hit_tokens` become `prompt_tokens_details.cached_tokens`."""
    hit = usage.get("prompt_cache_hit_tokens")
    if hit is not None:
        details = usage.get("prompt_tokens_details") or {}
        if not details.get("cached_tokens"):
            usage["prompt_tokens_details"] = {**details, "cached_tokens": hit}
    return usage


class OpenAIStream(StreamState):
    __slots__ = ("_envelope",)

    def __init__(self, include_usage: bool):
        super().__init__(include_usage)
        self._envelope: dict | None = None

    def _usage_chunk(self) -> bytes:
        if not (self._include_usage and self.usage):
            return b""
        env = self._envelope or {}
        obj = {"id": env.get("id"), "object": "chat.completion.chunk", "created": env.get("created"),
               "model": env.get("model"), "choices": [], "usage": self.usage}
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def feed(self, chunk: bytes) -> bytes:
        out = []
        collect = self.collect
        for ev in self._parser.feed(chunk):
            data = ev.data
            if self.done:
                continue
            if data == b"[DONE]":
                self.done = True
                out.append(self._usage_chunk())
                out.append(_DONE)
                continue
            if self._envelope is not None:
                # The common chunk is passed on as it came: the compiled extractor reads what
                # accounting needs without building the dict, and its shape says whether it
                # may (no usage or error riding on it, see extract_chunk).
                try:
                    content, args, finish, usage, _is_error, shape = extract_chunk(data)
                except ValueError:
                    continue
                if shape and usage is None:
                    if content:
                        self._text.append(content)
                    if args:
                        self._text.append(args)
                    if finish:
                        self.finish_reason = finish
                    out.append(b"data: " + data + b"\n\n")
                    if collect is not None:
                        if shape == SHAPE_SIMPLE:
                            collect.content(content, finish)
                        else:
                            collect.chunk(orjson.loads(data))
                    continue
            obj = decode_json(data)
            if not isinstance(obj, dict):
                continue
            if obj.get("error"):  # OpenRouter adds choices with finish_reason "error"
                self._on_error(obj["error"])
                self.done = True
                if self._envelope is not None:  # before any output the gateway can fail over
                    out.append(b"data: " + orjson.dumps(self.error.body) + b"\n\n")  # type: ignore[union-attr]
                continue
            if self._envelope is None:
                self._envelope = {"id": obj.get("id"), "created": obj.get("created"),
                                  "model": obj.get("model")}
                self.model = obj.get("model")
            usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
            if usage:
                self.usage = normalize_usage(usage)
            choices = obj.get("choices")
            if not choices:
                continue  # usage-only chunk (choices [], null or absent): sent before [DONE]
            for choice in choices:
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    self._text.append(content)
                for call in delta.get("tool_calls") or ():
                    args = (call.get("function") or {}).get("arguments")
                    if args:
                        self._text.append(args)
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            if usage or "x_groq" in obj:
                # Usage riding on a content chunk (Mistral, Groq): it moves to its own chunk.
                obj.pop("x_groq", None)
                obj["usage"] = None
                out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
            else:
                out.append(b"data: " + data + b"\n\n")
            if collect is not None:
                collect.chunk(obj)
        return b"".join(out)

    def _on_error(self, err: Any) -> None:
        if not isinstance(err, dict):
            err = {"message": str(err)}
        code = err.get("code")
        hint = f"{code} {err.get('type')}".lower()
        if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
            status = int(code)
        else:
            status = 429 if "rate_limit" in hint else 503 if "overloaded" in hint else 500
        self.error = provider_error(status, str(err.get("message") or "upstream error"),
                                    code=code, err_type=err.get("type"))

    def finish(self) -> bytes:
        self._parser.close()
        return b""


class OpenAIAdapter:
    """One OpenAI-compatible provider: `name` and its `Compat` row."""

    def __init__(self, name: str = "openai", compat: Compat | None = None):
        self.name = name
        self.compat = compat or COMPAT.get(name, Compat())

    def _headers(self, dep: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if dep.api_key:
            if self.compat.azure:
                headers["api-key"] = dep.api_key
            else:
                headers["authorization"] = f"Bearer {dep.api_key}"
        if self.name == "openrouter":
            for opt, header in (("referer", "HTTP-Referer"), ("title", "X-Title")):
                if dep.options.get(opt):
                    headers[header] = str(dep.options[opt])
        headers.update(dep.headers)
        return headers

    def _url(self, dep: Deployment, path: str) -> str:
        base = dep.base_url.rstrip("/")
        if self.compat.azure and not base.endswith("/v1"):
            deployment = dep.options.get("deployment") or dep.model
            version = dep.options.get("api_version", "2024-10-21")
            if "/openai/deployments/" not in base:
                base = f"{base}/openai/deployments/{deployment}"
            return f"{base}{path}?api-version={version}"
        return base + path

    def chat_request(self, dep: Deployment, body: dict, *, stream: bool) -> UpstreamRequest:
        out = translate_request(body, self.compat, dep.model, stream=stream)
        return UpstreamRequest("POST", self._url(dep, "/chat/completions"), self._headers(dep),
                               orjson.dumps(out))

    def chat_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)  # leading blank lines (DeepSeek keep-alive) are whitespace
        if not isinstance(obj, dict) or "choices" not in obj:
            raise ValueError("upstream returned a response without choices")
        if isinstance(obj.get("usage"), dict):
            normalize_usage(obj["usage"])
        return obj

    def chat_stream(self, dep: Deployment, *, include_usage: bool) -> OpenAIStream:
        return OpenAIStream(include_usage)

    def embeddings_request(self, dep: Deployment, body: dict) -> UpstreamRequest:
        body = dict(body)
        body["model"] = dep.model
        return UpstreamRequest("POST", self._url(dep, "/embeddings"), self._headers(dep),
                               orjson.dumps(body))

    def embeddings_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)
        if not isinstance(obj, dict) or "data" not in obj:
            raise ValueError("upstream returned an embeddings response without data")
        return obj

    def models_request(self, dep: Deployment) -> UpstreamRequest:
        return UpstreamRequest("GET", self._url(dep, "/models"), self._headers(dep), b"")

    def error(self, dep: Deployment, status: int, headers: Any, data: bytes) -> ProviderError:
        obj = decode_json(data)
        err: Any = None
        if isinstance(obj, dict):
            err = obj.get("error", obj)  # vLLM's old flat shape has no "error" wrapper
            if isinstance(err, str):
                err = {"message": err}
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or f"upstream returned {status}"
            if not isinstance(message, str):  # 422 validation details are a list
                message = orjson.dumps(message).decode()
            return provider_error(status, message, code=err.get("code"), err_type=err.get("type"),
                                  param=err.get("param"), headers=headers)
        text = data[:500].decode("utf-8", "replace").strip() or f"upstream returned HTTP {status}"
        return provider_error(status, text, headers=headers)


ADAPTERS: dict[str, OpenAIAdapter] = {name: OpenAIAdapter(name, compat)
                                      for name, compat in COMPAT.items()}
ADAPTER = ADAPTERS["openai"]

