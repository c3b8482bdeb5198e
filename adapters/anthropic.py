"""Anthropic Messages API (`POST /v1/messages`) behind OpenAI chat completions.

Requests: system and developer messages, wherever they are, are joined into the top-level
`system`; the rest become alternating user/assistant turns (adjacent same-role turns merge,
consecutive `tool` messages become one user turn of `tool_result` blocks); `max_tokens` is
required, so a default is supplied; temperature is clamped to Anthropic's 0-1. The route
option `auto_cache` marks the system prompt and the tool definitions cacheable.

JSON mode: Anthropic has no `response_format`, so `json_object` / `json_schema` become one
extra tool with the reserved name `faregate_json_response` (JSON_TOOL) whose `input_schema`
is the client's schema (`{"type":"object"}` for json_object; the schema's name goes into the
description), forced with `tool_choice`. If the client sent tools of its own they are kept and
its tool_choice is honoured (`none` forces the JSON tool instead), plus a system line asking for
the final answer through the JSON tool; with extended thinking, which allows no forced tool, the
system line does the asking (and `none` becomes `auto`). On the way back a call to the JSON tool becomes the
message `content` (the compact JSON of its input) with finish_reason "stop" ("length" when
max_tokens cut it), after any text the model wrote before it, as a stream has it; other tool
calls stay tool calls. The reserved name keeps the response and
stream translators stateless; a client tool with that name is rejected. `strict` cannot be
guaranteed: the schema is the tool's input schema, which Claude follows but does not enforce.
A malformed `response_format` is a 400 naming it.

Streams: Anthropic's named events (message_start, content_block_*, message_delta,
message_stop, ping, error) become OpenAI chunks. Tool-use blocks are numbered by their
ordinal among tool blocks (OpenAI's `tool_calls[].index`), not by Anthropic's block index.
The JSON tool's block is no tool call: its `partial_json` pieces are `delta.content`.
"""
from __future__ import annotations

import time
from typing import Any

import orjson


from ._chat import (ChunkWriter, parse_arguments, parse_data_url, stop_list, text_of,
                    usage_dict)
from .base import Deployment, ProviderError, StreamState, UpstreamRequest
from .errors import decode_json, provider_error, request_rejected

__all__ = ["AnthropicAdapter", "AnthropicStream", "ADAPTER", "STOP_REASONS", "ERROR_KINDS",
           "DEFAULT_MAX_TOKENS", "JSON_TOOL", "to_anthropic", "anthropic_usage"]

DEFAULT_MAX_TOKENS = 4096
# The reserved tool that carries `response_format` JSON (see the module docstring).
JSON_TOOL = "faregate_json_response"
_JSON_HINT = f"When you give your final answer, give it by calling the {JSON_TOOL} tool."
VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                "max_tokens": "length", "model_context_window_exceeded": "length",
                "tool_use": "tool_calls", "refusal": "content_filter"}
# Anthropic error type -> (our kind, the status it comes with)
ERROR_KINDS = {"invalid_request_error": ("bad_request", 400), "authentication_error": ("auth", 401),
               "billing_error": ("quota", 402), "permission_error": ("permission", 403),
               "not_found_error": ("not_found", 404), "request_too_large": ("bad_request", 413),
               "rate_limit_error": ("rate_limit", 429), "api_error": ("server", 500),
               "timeout_error": ("timeout", 504), "overloaded_error": ("overloaded", 529)}
_EPHEMERAL = {"type": "ephemeral"}
# OpenAI reasoning_effort -> extended-thinking budget
_THINKING_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}


# ---- request -----------------------------------------------------------------------------

def _image_block(part: dict) -> dict:
    image = part.get("image_url") or {}
    url = image if isinstance(image, str) else image.get("url", "")
    data = parse_data_url(url)
    if data:
        source = {"type": "base64", "media_type": data[0], "data": data[1]}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _file_block(part: dict) -> dict:
    file = part.get("file") or {}
    data = parse_data_url(file.get("file_data") or "")
    if not data:
        raise request_rejected("Anthropic needs files inline as file_data data URLs", "messages")
    return {"type": "document", "source": {"type": "base64", "media_type": data[0], "data": data[1]}}


def _blocks(content: Any) -> list[dict]:
    """OpenAI content (string or parts) -> Anthropic content blocks; cache_control kept."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if not part.get("text"):
                continue  # Anthropic rejects empty text blocks
            block = {"type": "text", "text": part["text"]}
        elif kind == "image_url":
            block = _image_block(part)
        elif kind == "file":
            block = _file_block(part)
        else:
            raise request_rejected(f"content part type {kind!r} is not supported by Anthropic",
                                   "messages")
        if part.get("cache_control"):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_result(msg: dict) -> dict:
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id", "")}
    if isinstance(content, list):
        block["content"] = _blocks(content)
    else:
        block["content"] = text_of(content)
    return block


def _assistant_blocks(msg: dict) -> list[dict]:
    blocks = _blocks(msg.get("content"))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                       "input": parse_arguments(fn.get("arguments"))})
    return blocks


def _message_blocks(msg: dict) -> list[dict]:
    blocks = _assistant_blocks(msg) if msg.get("role") == "assistant" else _blocks(msg.get("content"))
    if msg.get("cache_control") and blocks:  # message-level marker: cache up to its end
        blocks[-1] = {**blocks[-1], "cache_control": msg["cache_control"]}
    return blocks


def to_anthropic(messages: list) -> tuple[list[dict], list[dict]]:
    """OpenAI messages -> (system blocks, Anthropic turns)."""
    system: list[dict] = []
    turns: list[dict] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_message_blocks(msg))
            continue
        if role in ("tool", "function"):
            if role == "function":
                msg = {**msg, "tool_call_id": msg.get("name", "")}
            role, blocks = "user", [_tool_result(msg)]
        elif role == "assistant":
            blocks = _message_blocks(msg)
        else:
            role, blocks = "user", _message_blocks(msg)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    # Plain single-text turns read better (and are smaller) as strings.
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            turn["content"] = content[0]["text"]
    return system, turns


def _tools(tools: list) -> list[dict]:
    out = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            continue
        fn = tool.get("function") or {}
        entry = {"name": fn.get("name", ""),
                 "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            entry["description"] = fn["description"]
        if tool.get("cache_control"):
            entry["cache_control"] = tool["cache_control"]
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict | None:
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict):
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        out = {"type": "auto"}
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _json_tool(fmt: Any) -> dict | None:
    """The tool that stands for `response_format`, None for text; a 400 when malformed."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"name": JSON_TOOL, "description": "Respond with a JSON object",
                "input_schema": {"type": "object"}}
    if kind != "json_schema":
        raise request_rejected("response_format must be an object whose type is text, json_object "
                               "or json_schema", "response_format")
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise request_rejected("response_format json_schema needs a `schema` object",
                               "response_format")
    if schema.get("type", "object") != "object":
        raise request_rejected("Anthropic needs a response_format schema whose root type is object",
                               "response_format")
    if "type" not in schema:
        schema = {"type": "object", **schema}
    description = "Respond with JSON matching this schema"
    if spec.get("name"):
        description += f" ({spec['name']})"
    if spec.get("description"):
        description += f": {spec['description']}"
    return {"name": JSON_TOOL, "description": description, "input_schema": schema}


def _mark_cacheable(system: list[dict], tools: list[dict]) -> None:
    """The `auto_cache` route option: one breakpoint after the tools and one after the
    system prompt (tools come first in Anthropic's prefix order), within the limit of 4."""
    used = sum(1 for b in system if "cache_control" in b) + sum(1 for t in tools if "cache_control" in t)
    for blocks in (tools, system):
        if blocks and "cache_control" not in blocks[-1] and used < 4:
            blocks[-1]["cache_control"] = dict(_EPHEMERAL)
            used += 1


def translate_request(dep: Deployment, body: dict, *, stream: bool) -> dict:
    if body.get("n") not in (None, 1):
        raise request_rejected("Anthropic returns one choice per request; n must be 1", "n")
    system, turns = to_anthropic(body.get("messages") or [])
    out: dict[str, Any] = {"model": dep.model}
    tools = _tools(body.get("tools") or [])
    if any(t["name"] == JSON_TOOL for t in tools):
        raise request_rejected(f"the tool name {JSON_TOOL} is reserved by the gateway", "tools")
    json_tool = _json_tool(body.get("response_format"))
    client_choice = body.get("tool_choice") if tools else None
    effort = body.get("reasoning_effort") or dep.options.get("reasoning_effort")
    budget = _THINKING_BUDGET.get(effort) if effort else None
    # Extended thinking allows no forced tool_choice: then the system line asks for the tool.
    force_json = json_tool is not None and not budget and (not tools or client_choice == "none")
    if json_tool is not None:
        tools.append(json_tool)
        if not force_json:  # the model picks between the client's tools and the JSON answer
            system.append({"type": "text", "text": _JSON_HINT})
    if dep.options.get("auto_cache"):
        _mark_cacheable(system, tools)
    if system:
        out["system"] = (system if any(len(b) > 2 or b["type"] != "text" for b in system)
                         else "\n\n".join(b["text"] for b in system))
    out["messages"] = turns
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") \
        or dep.options.get("max_tokens") or DEFAULT_MAX_TOKENS
    out["max_tokens"] = int(max_tokens)
    if budget:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        out["max_tokens"] = max(out["max_tokens"], budget + 1024)
    else:
        if body.get("temperature") is not None:
            out["temperature"] = min(1.0, max(0.0, float(body["temperature"])))
        if body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
        if body.get("top_k") is not None:
            out["top_k"] = body["top_k"]
    stops = stop_list(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    if tools:
        out["tools"] = tools
        if force_json:
            choice = {"type": "tool", "name": JSON_TOOL}
        elif json_tool is not None and client_choice == "none":
            choice = {"type": "auto"}  # thinking: the JSON tool must stay callable
        else:
            choice = _tool_choice(client_choice, body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["metadata"] = {"user_id": str(user)}
    if stream:
        out["stream"] = True
    return out


# ---- response ----------------------------------------------------------------------------

def anthropic_usage(usage: dict) -> dict:
    """Anthropic usage in OpenAI terms: prompt_tokens = input + cache read + cache write."""
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + write
    return usage_dict(prompt, usage.get("output_tokens") or 0, cached=read, cache_write=write)


def _tool_call(block: dict) -> dict:
    return {"id": block.get("id", ""), "type": "function",
            "function": {"name": block.get("name", ""),
                         "arguments": orjson.dumps(block.get("input") or {}).decode()}}


def translate_response(data: dict) -> dict:
    text, thinking, calls = [], [], []
    json_answer = False
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            json_answer = True
            text.append(orjson.dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    reason = data.get("stop_reason")
    if reason == "tool_use" and json_answer and not calls:
        reason = "end_turn"  # only the JSON answer was a tool call
    return {"id": data.get("id", ""), "object": "chat.completion", "created": int(time.time()),
            "model": data.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": STOP_REASONS.get(reason, "stop") if reason else "stop"}],
            "usage": anthropic_usage(data.get("usage") or {})}


def error_from(obj: Any, status: int, headers: Any = None) -> ProviderError:
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return provider_error(status, f"Anthropic returned HTTP {status}", headers=headers)
    err_type = err.get("type")
    message = str(err.get("message") or err_type or f"Anthropic returned HTTP {status}")
    kind, default_status = ERROR_KINDS.get(err_type, (None, status))
    if kind in ("bad_request", None):
        kind = None  # let the text decide: context window, content policy, plain bad request
    return provider_error(status or default_status, message, code=err_type, err_type=err_type,
                          headers=headers, kind=kind)


# ---- stream ------------------------------------------------------------------------------

class AnthropicStream(StreamState):
    __slots__ = ("_tools", "_json_blocks", "_writer", "_usage_raw")

    def __init__(self, include_usage: bool):
        super().__init__(include_usage)
        self._tools: dict[int, int] = {}   # Anthropic block index -> OpenAI tool_calls index
        self._json_blocks: set[int] = set()  # indexes of JSON_TOOL blocks (answer content)
        self._writer: ChunkWriter | None = None
        self._usage_raw: dict = {}

    def _on_event(self, event: str | None, obj: dict, out: list[bytes]) -> None:
        name = event or obj.get("type")
        w = self._writer
        if name == "content_block_delta" and w is not None:
            delta = obj.get("delta") or {}
            kind = delta.get("type")
            if kind == "text_delta":
                text = delta.get("text") or ""
                self._text.append(text)
                out.append(w.delta({"content": text}))
            elif kind == "input_json_delta":
                piece = delta.get("partial_json") or ""
                index = obj.get("index", -1)
                k = self._tools.get(index)
                if piece and index in self._json_blocks:
                    self._text.append(piece)
                    out.append(w.delta({"content": piece}))
                elif piece and k is not None:
                    self._text.append(piece)
                    out.append(w.delta({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))
            elif kind == "thinking_delta":
                out.append(w.delta({"reasoning_content": delta.get("thinking") or ""}))
        elif name == "content_block_start" and w is not None:
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
                self._json_blocks.add(obj.get("index", -1))
            elif block.get("type") == "tool_use":
                k = self._tools[obj.get("index", len(self._tools))] = len(self._tools)
                out.append(w.delta({"tool_calls": [{"index": k, "id": block.get("id", ""), "type": "function",
                                                    "function": {"name": block.get("name", ""), "arguments": ""}}]}))
            elif block.get("type") == "text" and block.get("text"):
                self._text.append(block["text"])
                out.append(w.delta({"content": block["text"]}))
        elif name == "message_start":
            msg = obj.get("message") or {}
            self.model = msg.get("model")
            self._usage_raw = dict(msg.get("usage") or {})
            if self._usage_raw:  # input is billed even if the stream is cut later
                self.usage = anthropic_usage(self._usage_raw)
            self._writer = ChunkWriter(msg.get("id", ""), self.model, self.collect)
            out.append(self._writer.delta({"role": "assistant", "content": ""}))
        elif name == "message_delta" and w is not None:
            self._usage_raw.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
            self.usage = anthropic_usage(self._usage_raw)
            reason = (obj.get("delta") or {}).get("stop_reason")
            if reason == "tool_use" and self._json_blocks and not self._tools:
                reason = "end_turn"  # only the JSON answer was a tool call
            if reason:
                self.finish_reason = STOP_REASONS.get(reason, "stop")
                out.append(w.delta({}, finish_reason=self.finish_reason))
        elif name == "message_stop":
            self.done = True
            if self._include_usage and self.usage and w is not None:
                out.append(w.usage(self.usage))
            out.append(b"data: [DONE]\n\n")
        elif name == "error":
            self.error = error_from(obj, ERROR_KINDS.get((obj.get("error") or {}).get("type"), (None, 500))[1])
            self.done = True
            if w is not None:  # before any output the gateway can still fail over instead
                out.append(b"data: " + orjson.dumps(self.error.body) + b"\n\n")

    def finish(self) -> bytes:
        self._parser.close()
        return b""


class AnthropicAdapter:
    name = "anthropic"

    def _url(self, dep: Deployment, path: str) -> str:
        base = dep.base_url.rstrip("/")
        return base + (path if base.endswith("/v1") else "/v1" + path)

    def _headers(self, dep: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json",
                   "anthropic-version": str(dep.options.get("anthropic_version", VERSION))}
        if dep.api_key:
            headers["x-api-key"] = dep.api_key
        beta = dep.options.get("anthropic_beta")
        if beta:
            headers["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(beta)
        headers.update(dep.headers)
        return headers

    def chat_request(self, dep: Deployment, body: dict, *, stream: bool) -> UpstreamRequest:
        out = translate_request(dep, body, stream=stream)
        return UpstreamRequest("POST", self._url(dep, "/messages"), self._headers(dep), orjson.dumps(out))

    def chat_response(self, dep: Deployment, data: bytes) -> dict:
        obj = decode_json(data)
        if not isinstance(obj, dict) or obj.get("type") != "message":
            raise ValueError("Anthropic returned something that is not a message")
        return translate_response(obj)

    def chat_stream(self, dep: Deployment, *, include_usage: bool) -> AnthropicStream:
        return AnthropicStream(include_usage)

    def embeddings_request(self, dep: Deployment, body: dict) -> UpstreamRequest:
        raise request_rejected("Anthropic has no embeddings API", "model")

    def embeddings_response(self, dep: Deployment, data: bytes) -> dict:
        raise ValueError("Anthropic has no embeddings API")

    def models_request(self, dep: Deployment) -> UpstreamRequest:
        return UpstreamRequest("GET", self._url(dep, "/models"), self._headers(dep), b"")

    def error(self, dep: Deployment, status: int, headers: Any, data: bytes) -> ProviderError:
        obj = decode_json(data)
        if not isinstance(obj, dict):  # 413 from the CDN, HTML from a proxy...
            text = data[:300].decode("utf-8", "replace").strip() or f"Anthropic returned HTTP {status}"
            return provider_error(status, text, headers=headers)
        return error_from(obj, status, headers)


ADAPTER = AnthropicAdapter()
