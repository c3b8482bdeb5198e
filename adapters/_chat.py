"""Pieces the non-OpenAI adapters share: message helpers, data URLs, OpenAI chunk framing."""
from __future__ import annotations

import time
from typing import Any

import orjson

from .errors import request_rejected

__all__ = ["text_of", "parse_data_url", "parse_arguments", "stop_list", "ChunkWriter",
           "tool_names_by_id", "usage_dict"]


def text_of(content: Any) -> str:
    """The text of an OpenAI message content (string, or list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content
                       if isinstance(p, dict) and p.get("type") in ("text", "input_text"))
    return str(content)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL, else None."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    meta = head[5:].split(";")
    if "base64" not in meta[1:]:
        raise request_rejected("image data URLs must be base64-encoded", "messages")
    return (meta[0] or "application/octet-stream"), data


def parse_arguments(arguments: Any) -> dict:
    """A tool call's `arguments` JSON string as the object Anthropic/Gemini want."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def stop_list(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    return [s for s in stops if isinstance(s, str) and s.strip()]


def tool_names_by_id(messages: list) -> dict[str, str]:
    """tool_call_id -> function name, from the assistant turns of the conversation."""
    names = {}
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            for call in msg.get("tool_calls") or ():
                names[call.get("id")] = (call.get("function") or {}).get("name", "")
    return names


class ChunkWriter:
    """Frames OpenAI `chat.completion.chunk` SSE events for one stream; the envelope is
    encoded once and each chunk costs one small `orjson.dumps` of its delta. `collect` (the
    translator's, see StreamState) is told each delta as it is framed."""

    __slots__ = ("_head", "id", "model", "created", "_collect")

    def __init__(self, id: str, model: str | None, collect=None):
        self.id = id
        self.model = model
        self.created = int(time.time())
        self._head = (b'data: {"id":' + orjson.dumps(id) + b',"object":"chat.completion.chunk","created":'
                      + str(self.created).encode() + b',"model":' + orjson.dumps(model)
                      + b',"choices":')
        self._collect = collect
        if collect is not None:
            collect.start(id, self.created, model)

    def delta(self, delta: dict, index: int = 0, finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        if self._collect is not None:
            self._collect.delta(index, delta, finish_reason)
        return self._head + orjson.dumps([choice]) + b"}\n\n"

    def usage(self, usage: dict) -> bytes:
        return self._head + b'[],"usage":' + orjson.dumps(usage) + b"}\n\n"


def usage_dict(prompt: int, completion: int, *, cached: int = 0, cache_write: int = 0,
               reasoning: int = 0, total: int | None = None) -> dict:
    """OpenAI usage: cached and cache-write tokens are inside prompt_tokens, reasoning inside
    completion_tokens."""
    details = {"cached_tokens": cached, "cache_write_tokens": cache_write}
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion if total is None else total,
            "prompt_tokens_details": details,
            "completion_tokens_details": {"reasoning_tokens": reasoning}}
