"""Request validation: the checks a provider would fail on, done before any upstream call.

The body stays the client's dict (fields the gateway does not know pass through untouched);
these functions only look, and raise a 400 naming the offending field.
"""
from __future__ import annotations

from typing import Any

import orjson

from .errors import bad_request

__all__ = ["decode_body", "validate_chat", "validate_embeddings"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


def decode_body(raw: bytes) -> dict:
    if not raw:
        raise bad_request("the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, found {_kind(body)}",
                          code="invalid_json")
    return body


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _model(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise bad_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise bad_request(f"'model' must be a non-empty string, found {_kind(model)}", param="model")
    return model


def _number(body: dict, name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"'{name}' must be a number, found {_kind(value)}", param=name)
    if not lo <= value <= hi:
        raise bad_request(f"'{name}' must be between {lo:g} and {hi:g}, found {value}", param=name)


def _int(body: dict, name: str, lo: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer, found {_kind(value)}", param=name)
    if value < lo:
        raise bad_request(f"'{name}' must be at least {lo}, found {value}", param=name)


def validate_chat(body: dict) -> str:
    """Checks a chat completion request; returns the model name."""
    model = _model(body)
    messages = body.get("messages")
    if messages is None:
        raise bad_request("you must provide a messages parameter", param="messages",
                          code="missing_required_parameter")
    if not isinstance(messages, list):
        raise bad_request(f"'messages' must be an array of message objects, found {_kind(messages)}",
                          param="messages")
    if not messages:
        raise bad_request("'messages' must contain at least one message", param="messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object, found {_kind(msg)}", param=f"messages[{i}]")
        role = msg.get("role")
        if role not in _ROLES:
            raise bad_request(f"messages[{i}].role must be one of 'system', 'developer', 'user', "
                              f"'assistant', 'tool', found {role!r}", param=f"messages[{i}].role")
        content = msg.get("content")
        if content is None:
            if role in ("user", "system", "developer") :
                raise bad_request(f"messages[{i}].content is required for role '{role}'",
                                  param=f"messages[{i}].content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in _PART_TYPES:
                    found = part.get("type") if isinstance(part, dict) else _kind(part)
                    raise bad_request(f"messages[{i}].content[{j}].type must be one of 'text', "
                                      f"'image_url', 'input_audio', 'file', found {found!r}",
                                      param=f"messages[{i}].content[{j}].type")
        elif not isinstance(content, str):
            raise bad_request(f"messages[{i}].content must be a string or an array of content parts, "
                              f"found {_kind(content)}", param=f"messages[{i}].content")
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise bad_request(f"messages[{i}].tool_call_id is required for role 'tool'",
                              param=f"messages[{i}].tool_call_id")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request(f"'stream' must be a boolean, found {_kind(stream)}", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise bad_request(f"'stream_options' must be an object, found {_kind(opts)}", param="stream_options")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _int(body, "max_tokens", 1)
    _int(body, "max_completion_tokens", 1)
    _int(body, "n", 1)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise bad_request(f"'tools' must be an array, found {_kind(tools)}", param="tools")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise bad_request(f"tools[{i}].function.name is required", param=f"tools[{i}].function.name")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise bad_request(f"'stop' must be a string or an array of strings, found {_kind(stop)}", param="stop")
    return model


def validate_embeddings(body: dict) -> str:
    model = _model(body)
    inp = body.get("input")
    if inp is None:
        raise bad_request("you must provide an input parameter", param="input", code="missing_required_parameter")
    ok = isinstance(inp, str) or (isinstance(inp, list) and inp and (
        all(isinstance(x, str) for x in inp) or all(isinstance(x, int) for x in inp)
        or all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in inp)))
    if not ok:
        raise bad_request("'input' must be a string, an array of strings, or an array of token arrays "
                          f"(non-empty), found {_kind(inp)}", param="input")
    return model
