"""Cached answers and OpenAI streams, both ways.

`replay_sse(completion, include_usage)` turns a stored `chat.completion` into the byte
stream a live OpenAI stream would have been: per choice a role chunk, content chunks (a few
words each), tool-call chunks (the first carries id, type and name, the rest the arguments),
a finish chunk; then a usage chunk (`choices: []`) when the client asked for usage; then
`data: [DONE]`. `StreamAssembler` does the reverse: fed the OpenAI SSE bytes the gateway
relayed to a client, it rebuilds the `chat.completion`, and `result()` returns it only if
the stream was complete (every choice finished, `[DONE]` seen, no error event).
"""
from __future__ import annotations

import re

import orjson

from proxy._fast import SSEParser, extract_chunk

__all__ = ["replay_sse", "StreamAssembler", "split_text"]

_PIECE = re.compile(r"\s*\S+\s*|\s+")
CHUNK_CHARS = 16  # a replayed content chunk holds whole words, about this many characters
ARG_CHARS = 64


def split_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` in pieces of whole words of about `size` characters; "".join() gives it back."""
    if len(text) <= size:
        return [text] if text else []
    out: list[str] = []
    cur = ""
    for piece in _PIECE.findall(text):
        cur += piece
        if len(cur) >= size:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def _frame(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def replay_sse(completion: dict, include_usage: bool = False) -> bytes:
    base = {"id": completion.get("id") or "chatcmpl-cached", "object": "chat.completion.chunk",
            "created": completion.get("created") or 0, "model": completion.get("model") or ""}
    if completion.get("system_fingerprint"):
        base["system_fingerprint"] = completion["system_fingerprint"]
    usage = completion.get("usage")
    parts: list[bytes] = []

    def chunk(index: int, delta: dict, finish: str | None = None) -> None:
        obj = dict(base)
        obj["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if include_usage:
            obj["usage"] = None
        parts.append(_frame(obj))

    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        msg = choice.get("message") or {}
        chunk(index, {"role": msg.get("role") or "assistant", "content": ""})
        for piece in split_text(msg.get("content") or ""):
            chunk(index, {"content": piece})
        if msg.get("refusal"):
            chunk(index, {"refusal": msg["refusal"]})
        for t, call in enumerate(msg.get("tool_calls") or []):
            fn = call.get("function") or {}
            args = fn.get("arguments") or ""
            pieces = [args[i:i + ARG_CHARS] for i in range(0, len(args), ARG_CHARS)] or [""]
            chunk(index, {"tool_calls": [{"index": t, "id": call.get("id"), "type": call.get("type", "function"),
                                          "function": {"name": fn.get("name"), "arguments": pieces[0]}}]})
            for p in pieces[1:]:
                chunk(index, {"tool_calls": [{"index": t, "function": {"arguments": p}}]})
        chunk(index, {}, choice.get("finish_reason") or "stop")
    if include_usage and usage:
        obj = dict(base)
        obj["choices"] = []
        obj["usage"] = usage
        parts.append(_frame(obj))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


class _Choice:
    __slots__ = ("role", "content", "refusal", "tools", "finish")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tools: dict[int, dict] = {}
        self.finish: str | None = None


def _plain_content(payload: bytes) -> bool:
    """A chunk whose only parts the assembler keeps are choice 0's content and finish reason.
    Byte checks are exact here: inside a JSON string every quote is escaped, so `"role"` or
    `"index"` (closing quote included) can only be a key."""
    return (payload.count(b'"index"') == 1 and b'"index":0' in payload and b'"role"' not in payload
            and b'"tool_calls"' not in payload and b'"refusal"' not in payload
            and b'"error"' not in payload)


class StreamAssembler:
    """Rebuilds a chat.completion from the OpenAI chunks of a stream, fed as raw SSE bytes."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._choices: dict[int, _Choice] = {}
        self.meta: dict = {}
        self.usage: dict | None = None
        self.done = False
        self.failed = False

    def feed(self, data: bytes) -> None:
        if self.failed:
            return
        for ev in self._parser.feed(data):
            payload = ev.data
            if payload == b"[DONE]":
                self.done = True
                continue
            if self.meta and _plain_content(payload):
                # most chunks: one choice (index 0) with content and maybe a finish reason;
                # the compiled extractor reads them without building the dict
                try:
                    content, _args, finish, usage, _err = extract_chunk(payload)
                except ValueError:
                    self.failed = True
                    return
                if usage is None:
                    c = self._choices.get(0)
                    if c is None:
                        c = self._choices[0] = _Choice()
                    if content:
                        c.content.append(content)
                    if finish:
                        c.finish = finish
                    continue
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self.failed = True
                return
            if not isinstance(obj, dict) or "error" in obj:
                self.failed = True
                return
            self._chunk(obj)

    def _chunk(self, obj: dict) -> None:
        if not self.meta:
            self.meta = {k: obj[k] for k in ("id", "created", "model", "system_fingerprint") if obj.get(k)}
        if obj.get("usage"):
            self.usage = obj["usage"]
        for ch in obj.get("choices") or ():
            c = self._choices.get(ch.get("index", 0))
            if c is None:
                c = self._choices[ch.get("index", 0)] = _Choice()
            delta = ch.get("delta") or {}
            if delta.get("role"):
                c.role = delta["role"]
            if delta.get("content"):
                c.content.append(delta["content"])
            if delta.get("refusal"):
                c.refusal.append(delta["refusal"])
            for tc in delta.get("tool_calls") or ():
                slot = c.tools.setdefault(tc.get("index", 0), {"id": None, "type": "function",
                                                               "function": {"name": "", "arguments": []}})
                if tc.get("id"):
                    slot["id"] = tc["id"]
                if tc.get("type"):
                    slot["type"] = tc["type"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"].append(fn["arguments"])
            if ch.get("finish_reason"):
                c.finish = ch["finish_reason"]

    @property
    def text(self) -> str:
        return "".join("".join(c.content) for c in self._choices.values())

    def result(self) -> dict | None:
        """The assembled chat.completion, or None if the stream was not complete and clean."""
        if self.failed or not self.done or not self._choices:
            return None
        choices = []
        for index in sorted(self._choices):
            c = self._choices[index]
            if c.finish is None:
                return None
            msg: dict = {"role": c.role, "content": "".join(c.content) if c.content or not c.tools else None}
            if c.refusal:
                msg["refusal"] = "".join(c.refusal)
            if c.tools:
                msg["tool_calls"] = [{"id": t["id"], "type": t["type"],
                                      "function": {"name": t["function"]["name"],
                                                   "arguments": "".join(t["function"]["arguments"])}}
                                     for _, t in sorted(c.tools.items())]
            choices.append({"index": index, "message": msg, "logprobs": None, "finish_reason": c.finish})
        out = {"id": self.meta.get("id", "chatcmpl-cached"), "object": "chat.completion",
               "created": self.meta.get("created", 0), "model": self.meta.get("model", ""),
               "choices": choices}
        if self.meta.get("system_fingerprint"):
            out["system_fingerprint"] = self.meta["system_fingerprint"]
        if self.usage:
            out["usage"] = self.usage
        return out
