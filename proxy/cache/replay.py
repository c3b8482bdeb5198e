"""Cached answers and OpenAI streams, both ways.

`replay_sse(completion, include_usage)` turns a stored `chat.completion` into the byte
stream a live OpenAI stream would have been: per choice a role chunk, content chunks (a few
words each), tool-call chunks (the first carries id, type and name, the rest the arguments),
a finish chunk; then a usage chunk (`choices: []`) when the client asked for usage; then
`data: [DONE]`. `StreamAssembler` does the reverse: given the OpenAI chunks the gateway
relayed to a client (by the stream translator as it writes them, or as SSE bytes), it
rebuilds the `chat.completion`, and `result()` returns it only if the stream was complete
(every choice finished, the end seen, no error event).
"""
from __future__ import annotations

import re

import orjson

from proxy._fast import SHAPE_SIMPLE, SSEParser, extract_chunk

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


class StreamAssembler:
    """Rebuilds a chat.completion from the OpenAI chunks of a stream.

    The stream translator that produced the chunks hands them over as it writes them
    (`start`, `chunk`, `content`, `delta`: no second parse of what it has just read), or
    the raw SSE bytes are fed (`feed`). `finish()` marks the stream complete."""

    def __init__(self) -> None:
        self._parser: SSEParser | None = None
        self._choices: dict[int, _Choice] = {}
        self.meta: dict = {}
        self.usage: dict | None = None
        self.done = False
        self.failed = False

    # -- from the translator --
    def start(self, id: str | None, created: int | None, model: str | None) -> None:
        """The envelope of a stream whose chunks come as deltas."""
        if not self.meta:
            self.meta = {k: v for k, v in (("id", id), ("created", created), ("model", model)) if v}

    def content(self, text: str, finish: str | None) -> None:
        """Choice 0's content and finish reason: all that a SHAPE_SIMPLE chunk adds."""
        c = self._choice(0)
        if text:
            c.content.append(text)
        if finish:
            c.finish = finish

    def finish(self) -> None:
        self.done = True

    def chunk(self, obj: dict) -> None:
        """One whole `chat.completion.chunk` object."""
        if not self.meta:
            self.meta = {k: obj[k] for k in ("id", "created", "model", "system_fingerprint") if obj.get(k)}
        usage = obj.get("usage")
        if usage and isinstance(usage, dict):
            self.usage = usage
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return
        for ch in choices:
            if not isinstance(ch, dict):
                continue
            index = ch.get("index", 0)
            delta = ch.get("delta")
            finish = ch.get("finish_reason")
            self.delta(index if type(index) is int else 0, delta if isinstance(delta, dict) else {},
                       finish if isinstance(finish, str) else None)

    # -- from bytes --
    def feed(self, data: bytes) -> None:
        """Raw SSE bytes of OpenAI chunks; an error event or a payload that is not JSON marks
        the stream failed, `data: [DONE]` complete."""
        if self.failed:
            return
        if self._parser is None:
            self._parser = SSEParser()
        for ev in self._parser.feed(data):
            payload = ev.data
            if payload == b"[DONE]":
                self.done = True
                continue
            try:
                content, _args, finish, usage, _err, shape = extract_chunk(payload)
                if self.meta and shape == SHAPE_SIMPLE and usage is None:
                    self.content(content, finish)   # most chunks: no dict built
                    continue
                obj = orjson.loads(payload)
            except ValueError:
                self.failed = True
                return
            if not isinstance(obj, dict) or "error" in obj:
                self.failed = True
                return
            self.chunk(obj)

    def _choice(self, index: int) -> _Choice:
        c = self._choices.get(index)
        if c is None:
            c = self._choices[index] = _Choice()
        return c

    def delta(self, index: int, delta: dict, finish: str | None) -> None:
        """One choice's delta and finish reason."""
        c = self._choice(index)
        role = delta.get("role")
        if role and isinstance(role, str):
            c.role = role
        text = delta.get("content")
        if text and isinstance(text, str):
            c.content.append(text)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            c.refusal.append(refusal)
        calls = delta.get("tool_calls")
        for tc in calls if isinstance(calls, list) else ():
            if not isinstance(tc, dict):
                continue
            t_index = tc.get("index", 0)
            slot = c.tools.setdefault(t_index if type(t_index) is int else 0,
                                      {"id": None, "type": "function", "function": {"name": "", "arguments": []}})
            if tc.get("id"):
                slot["id"] = tc["id"]
            if tc.get("type"):
                slot["type"] = tc["type"]
            fn = tc.get("function")
            if isinstance(fn, dict):
                if fn.get("name") and isinstance(fn["name"], str):
                    slot["function"]["name"] += fn["name"]
                if fn.get("arguments") and isinstance(fn["arguments"], str):
                    slot["function"]["arguments"].append(fn["arguments"])
        if finish:
            c.finish = finish

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
