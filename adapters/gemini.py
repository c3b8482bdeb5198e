"""Google Gemini API (`generateContent`, `streamGenerateContent?alt=sse`, embeddings) behind
OpenAI chat completions.

Gemini's function calls carry no ids (newer models may add one), while OpenAI clients send
tool results back by id. So ids are made here (`call_<hex>`, or Gemini's own) and the way
back needs no memory in the gateway: a tool result's function name is found from the
assistant turn in the same conversation that made the call. A `thoughtSignature` that came
with a call must be echoed back on it; it rides inside the id (`call_<hex>__thought__<sig>`,
the convention LiteLLM uses) so a stateless client returns it without knowing.
"""
from __future__ import annotations

import os
import time
from typing import Any

import orjson


from ._chat import (ChunkWriter, parse_arguments, parse_data_url, stop_list, text_of,
                    tool_names_by_id, usage_dict)
from .base import Deployment, ProviderError, StreamState, UpstreamRequest
from .errors import decode_json, parse_duration, provider_error, request_rejected

__all__ = ["GeminiAdapter", "GeminiStream", "ADAPTER", "FINISH_REASONS", "to_gemini",
           "gemini_usage", "clean_schema"]

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE",
             "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "IMAGE_OTHER")
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", **{r: "content_filter" for r in _FILTERED},
                  # the gateway's choice for "the model misbehaved": an ordinary stop
                  "MALFORMED_FUNCTION_CALL": "stop", "UNEXPECTED_TOOL_CALL": "stop",
                  "TOO_MANY_TOOL_CALLS": "stop", "OTHER": "stop", "NO_IMAGE": "stop",
                  "FINISH_REASON_UNSPECIFIED": "stop"}
# status string -> kind; INVALID_ARGUMENT is left to the text (context window, content policy)
_STATUS_KIND = {"FAILED_PRECONDITION": "permission",  # region or billing: this deployment cannot serve
                "PERMISSION_DENIED": "permission", "UNAUTHENTICATED": "auth",
                "NOT_FOUND": "not_found", "RESOURCE_EXHAUSTED": "rate_limit",
                "INTERNAL": "server", "UNAVAILABLE": "overloaded", "DEADLINE_EXCEEDED": "timeout"}
_THOUGHT_SEP = "__thought__"
_THINKING_BUDGET = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
# Gemini's Schema is an OpenAPI subset; other JSON Schema keywords are a 400.
_SCHEMA_KEYS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems",
                          "minItems", "properties", "required", "minProperties", "maxProperties",
                          "minLength", "maxLength", "pattern", "example", "anyOf",
                          "propertyOrdering", "default", "items", "minimum", "maximum"})
_MIME_BY_EXT = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                "webp": "image/webp", "pdf": "application/pdf"}


# ---- request -----------------------------------------------------------------------------

def clean_schema(schema: Any) -> Any:
    """A JSON Schema reduced to what Gemini's Schema accepts (recursively)."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            value = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "items":
            value = clean_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            value = [clean_schema(sub) for sub in value]
        elif key == "type" and isinstance(value, list):  # ["string", "null"]
            kinds = [v for v in value if v != "null"]
            if len(kinds) < len(value):
                out["nullable"] = True
            value = kinds[0] if kinds else "string"
        out[key] = value
    return out


def _split_id(call_id: str) -> tuple[str, str | None]:
    head, sep, sig = call_id.partition(_THOUGHT_SEP)
    return head, (sig if sep else None)


def _parts(content: Any) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            url = image if isinstance(image, str) else image.get("url", "")
            data = parse_data_url(url)
            if data:
                parts.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
            else:
                ext = url.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
                parts.append({"fileData": {"mimeType": _MIME_BY_EXT.get(ext, "image/jpeg"), "fileUri": url}})
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": "audio/" + audio.get("format", "wav"),
                                         "data": audio.get("data", "")}})
        elif kind == "file":
            file = part.get("file") or {}
            data = parse_data_url(file.get("file_data") or "")
            if not data:
                raise request_rejected("Gemini needs files inline as file_data data URLs", "messages")
            parts.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
        else:
            raise request_rejected(f"content part type {kind!r} is not supported by Gemini", "messages")
    return parts


def _function_response(msg: dict, names: dict[str, str]) -> dict:
    call_id = msg.get("tool_call_id") or ""
    name = names.get(call_id) or msg.get("name") or ""
    text = text_of(msg.get("content"))
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"result": text if value is None else value}
    return {"functionResponse": {"name": name, "response": response}}


def _function_calls(msg: dict) -> list[dict]:
    parts = []
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        part: dict[str, Any] = {"functionCall": {"name": fn.get("name", ""),
                                                 "args": parse_arguments(fn.get("arguments"))}}
        _, sig = _split_id(call.get("id") or "")
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def to_gemini(messages: list) -> tuple[list[dict], list[dict]]:
    """OpenAI messages -> (systemInstruction parts, contents)."""
    names = tool_names_by_id(messages)
    system: list[dict] = []
    contents: list[dict] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(msg.get("content")))
            continue
        if role in ("tool", "function"):
            role, parts = "user", [_function_response(msg, names)]
        elif role == "assistant":
            role, parts = "model", _parts(msg.get("content")) + _function_calls(msg)
        else:
            role, parts = "user", _parts(msg.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _tool_config(choice: Any) -> dict | None:
    if choice is None:
        return None
    if choice == "none":
        config: dict[str, Any] = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif isinstance(choice, dict):
        config = {"mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name", "")]}
    else:
        config = {"mode": "AUTO"}
    return {"functionCallingConfig": config}


def _generation_config(body: dict) -> dict:
    cfg: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        cfg["maxOutputTokens"] = int(limit)
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"),
                     ("seed", "seed"), ("presence_penalty", "presencePenalty"),
                     ("frequency_penalty", "frequencyPenalty")):
        if body.get(src) is not None:
            cfg[dst] = body[src]
    if body.get("n") not in (None, 1):
        cfg["candidateCount"] = int(body["n"])
    stops = stop_list(body.get("stop"))
    if stops:
        cfg["stopSequences"] = stops
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        cfg["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            cfg["responseSchema"] = clean_schema(schema)
    effort = body.get("reasoning_effort")
    if effort in _THINKING_BUDGET:
        cfg["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGET[effort]}
    return cfg


def translate_request(dep: Deployment, body: dict) -> dict:
    system, contents = to_gemini(body.get("messages") or [])
    out: dict[str, Any] = {}
    if system:
        out["systemInstruction"] = {"parts": system}
    out["contents"] = contents
    decls = []
    for tool in body.get("tools") or ():
        if tool.get("type", "function") != "function":
            continue
        fn = tool.get("function") or {}
        decl = {"name": fn.get("name", "")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters") and (fn["parameters"].get("properties") or fn["parameters"].get("type") != "object"):
            decl["parameters"] = clean_schema(fn["parameters"])
        decls.append(decl)
    if decls:
        out["tools"] = [{"functionDeclarations": decls}]
        config = _tool_config(body.get("tool_choice"))
        if config:
            out["toolConfig"] = config
    cfg = _generation_config(body)
    if cfg:
        out["generationConfig"] = cfg
    if dep.options.get("safety_settings"):
        out["safetySettings"] = dep.options["safety_settings"]
    return out


# ---- response ----------------------------------------------------------------------------

def gemini_usage(meta: dict) -> dict:
    """usageMetadata in OpenAI terms: thoughts count as (reasoning) completion tokens."""
    prompt = (meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0)
    thoughts = meta.get("thoughtsTokenCount") or 0
    completion = (meta.get("candidatesTokenCount") or 0) + thoughts
    return usage_dict(prompt, completion, cached=meta.get("cachedContentTokenCount") or 0,
                      reasoning=thoughts, total=meta.get("totalTokenCount") or prompt + completion)


def new_call_id(part: dict) -> str:
    call = part.get("functionCall") or {}
    base = call.get("id") or "call_" + os.urandom(12).hex()
    sig = part.get("thoughtSignature")
    return base + _THOUGHT_SEP + sig if sig else base


def _tool_call(part: dict) -> dict:
    call = part["functionCall"]
    return {"id": new_call_id(part), "type": "function",
            "function": {"name": call.get("name", ""),
                         "arguments": orjson.dumps(call.get("args") or {}).decode()}}


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(reason or "STOP", "stop")


def translate_response(data: dict, model: str) -> dict:
    choices = []
    for i, cand in enumerate(data.get("candidates") or ()):
        text, thoughts, calls = [], [], []
        for part in (cand.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                calls.append(_tool_call(part))
            elif part.get("thought"):
                thoughts.append(part.get("text") or "")
            elif "text" in part:
                text.append(part["text"])
        message: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(text) if text or not calls else None,
                                   "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        choices.append({"index": cand.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": _finish(cand.get("finishReason"), bool(calls))})
    if not choices:  # the prompt itself was blocked
        block = (data.get("promptFeedback") or {}).get("blockReason")
        choices.append({"index": 0, "message": {"role": "assistant", "content": None,
                                                "refusal": f"prompt blocked: {block}" if block else None},
                        "logprobs": None, "finish_reason": "content_filter" if block else "stop"})
    return {"id": "chatcmpl-" + (data.get("responseId") or os.urandom(8).hex()),
            "object": "chat.completion", "created": int(time.time()),
            "model": data.get("modelVersion") or model, "choices": choices,
            "usage": gemini_usage(data.get("usageMetadata") or {})}


def error_from(obj: Any, status: int, headers: Any = None) -> ProviderError:
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        err = obj[0].get("error")  # the non-SSE stream wraps it in an array
    if not isinstance(err, dict):
        return provider_error(status, f"Gemini returned HTTP {status}", headers=headers)
    state = err.get("status")
    message = str(err.get("message") or state or f"Gemini returned HTTP {status}")
    retry_after = None
    kind = _STATUS_KIND.get(state)
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        kind_of = str(detail.get("@type", ""))
        if kind_of.endswith("RetryInfo"):
            retry_after = parse_duration(detail.get("retryDelay"))
        elif kind_of.endswith("ErrorInfo") and str(detail.get("reason", "")).startswith("API_KEY"):
            kind = "auth"  # a bad key comes as 400 INVALID_ARGUMENT
        elif kind_of.endswith("QuotaFailure") and "PerDay" in orjson.dumps(detail).decode():
            kind = "quota"  # a daily quota does not come back after a short wait
    return provider_error(status or int(err.get("code") or 500), message, code=state,
                          err_type=None, headers=headers, kind=kind, retry_after=retry_after)


# ---- stream ------------------------------------------------------------------------------

class GeminiStream(StreamState):
    """Each SSE event is a whole GenerateContentResponse holding only new text; usage is
    cumulative; the stream ends when the connection closes (no [DONE])."""

    __slots__ = ("_calls", "_writer", "_model", "_ended")

    def __init__(self, include_usage: bool, model: str):
        super().__init__(include_usage)
        self._model = model
        self._calls: dict[int, int] = {}   # candidate index -> tool calls so far
        self._writer: ChunkWriter | None = None
        self._ended: set[int] = set()

    def _on_event(self, event: str | None, obj: dict, out: list[bytes]) -> None:
        if "error" in obj:
            self.error = error_from(obj, int((obj["error"] or {}).get("code") or 500))
            self.done = True
            if self._writer is not None:  # before any output the gateway can still fail over
                out.append(b"data: " + orjson.dumps(self.error.body) + b"\n\n")
            return
        w = self._writer
        if w is None:
            self.model = obj.get("modelVersion") or self._model
            w = self._writer = ChunkWriter("chatcmpl-" + (obj.get("responseId") or os.urandom(8).hex()),
                                           self.model, self.collect)
            out.append(w.delta({"role": "assistant", "content": ""}))
        if obj.get("usageMetadata"):
            self.usage = gemini_usage(obj["usageMetadata"])
        candidates = obj.get("candidates") or ()
        for i, cand in enumerate(candidates):
            index = cand.get("index", i)
            for part in (cand.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    k = self._calls.get(index, 0)
                    self._calls[index] = k + 1
                    call = _tool_call(part)
                    call["index"] = k
                    self._text.append(call["function"]["arguments"])
                    out.append(w.delta({"tool_calls": [call]}, index))
                elif part.get("thought"):
                    out.append(w.delta({"reasoning_content": part.get("text") or ""}, index))
                elif part.get("text"):
                    self._text.append(part["text"])
                    out.append(w.delta({"content": part["text"]}, index))
            reason = cand.get("finishReason")
            if reason:
                self.finish_reason = _finish(reason, bool(self._calls.get(index)))
                self._ended.add(index)
                out.append(w.delta({}, index, self.finish_reason))
        block = (obj.get("promptFeedback") or {}).get("blockReason")
        if block and not candidates:
            self.finish_reason = "content_filter"
            self._ended.add(0)
            out.append(w.delta({"refusal": f"prompt blocked: {block}"}, 0, "content_filter"))

    def finish(self) -> bytes:
        self._parser.close()
        if self.done or self.error is not None or not self._ended or self._writer is None:
            return b""  # cut before any finishReason: not a proper end
        self.done = True
        tail = self._writer.usage(self.usage) if self._include_usage and self.usage else b""
        return tail + b"data: [DONE]\n\n"


class GeminiAdapter:
    name = "gemini"

    def _url(self, dep: Deployment, action: str) -> str:
        base = dep.base_url.rstrip("/")
        if not base.rsplit("/", 1)[-1].startswith("v1"):
            base += "/" + str(dep.options.get("api_version", "v1beta"))
        model = dep.model if dep.model.startswith(("models/", "tunedModels/")) else "models/" + dep.model
        return f"{base}/{model}:{action}"

    def _headers(self, dep: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if dep.api_key:
            headers["x-goog-api-key"] = dep.api_key
        headers.update(dep.headers)
        return headers

    def chat_request(self, dep: Deployment, body: dict, *, stream: bool) -> UpstreamRequest:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamRequest("POST", self._url(dep, action), self._headers(dep),
                               orjson.dumps(translate_request(dep, body)))

    def chat_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)
        if not isinstance(obj, dict) or not ("candidates" in obj or "promptFeedback" in obj):
            raise ValueError("Gemini returned a response without candidates")
        return translate_response(obj, dep.model)

    def chat_stream(self, dep: Deployment, *, include_usage: bool) -> GeminiStream:
        return GeminiStream(include_usage, dep.model)

    def embeddings_request(self, dep: Deployment, body: dict) -> UpstreamRequest:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise request_rejected("Gemini embeddings take text input, not token ids", "input")
        model = dep.model if dep.model.startswith("models/") else "models/" + dep.model
        requests = []
        for text in inputs:
            req: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if body.get("dimensions"):
                req["outputDimensionality"] = int(body["dimensions"])
            requests.append(req)
        return UpstreamRequest("POST", self._url(dep, "batchEmbedContents"), self._headers(dep),
                               orjson.dumps({"requests": requests}))

    def embeddings_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)
        if not isinstance(obj, dict) or not ("embeddings" in obj or "embedding" in obj):
            raise ValueError("Gemini returned an embeddings response without embeddings")
        vectors = obj.get("embeddings") or [obj.get("embedding")]
        return {"object": "list", "model": dep.model,
                "data": [{"object": "embedding", "index": i, "embedding": v.get("values") or []}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def models_request(self, dep: Deployment) -> UpstreamRequest:
        base = self._url(dep, "x").rsplit("/models/", 1)[0]
        return UpstreamRequest("GET", base + "/models", self._headers(dep), b"")

    def error(self, dep: Deployment, status: int, headers: Any, data: bytes) -> ProviderError:
        obj = decode_json(data)
        if obj is None:
            text = data[:300].decode("utf-8", "replace").strip() or f"Gemini returned HTTP {status}"
            return provider_error(status, text, headers=headers)
        return error_from(obj, status, headers)


ADAPTER = GeminiAdapter()
