"""Cascade answer checks: is the cheaper model's answer good enough to return?

A cascade route tries its cheapest deployment first and checks the answer; when a check
fails, the gateway escalates to the next tier. Checks (configured per route):

- `non_empty`: the answer has content or tool calls;
- `no_refusal`: the answer is not a refusal (the provider's `refusal` field, a
  `content_filter` finish, or a short answer that opens like "I can't help with that");
- `json`: the content parses as JSON (applied only when the request asked for JSON with
  `response_format`, unless `json_always` is set);
- `schema`: the JSON matches the schema the request gave in
  `response_format.json_schema.schema` (or the route's own `schema`);
- `regex`: the content matches the route's `regex` (searched, not anchored).

`check_answer` returns the first failure's reason ("invalid JSON: ...") or None.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from .routeconfig import CHECKS, CascadeConfig

__all__ = ["CascadeConfig", "CHECKS", "check_answer", "answer_text"]

_REFUSAL_RE = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry,|i can(no|')t (help|assist|comply|do that|provide)|"
    r"i (won'?t|will not|am unable to|'m unable to|am not able to) (help|assist|comply|provide)|"
    r"as an ai\b)", re.IGNORECASE)


def answer_text(result: dict) -> tuple[str, dict]:
    """The first choice's text content and its message dict."""
    choices = result.get("choices") or []
    message = (choices[0].get("message") if choices and isinstance(choices[0], dict) else None) or {}
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return (content if isinstance(content, str) else ""), message


def _requested_schema(body: dict) -> dict | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else None
    return None


def _wants_json(body: dict) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def check_answer(result: dict, body: dict, cfg: CascadeConfig, regex: re.Pattern | None = None) -> str | None:
    text, message = answer_text(result)
    choices = result.get("choices") or [{}]
    finish = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
    tool_calls = message.get("tool_calls")
    checks = cfg.checks
    if "no_refusal" in checks:
        if message.get("refusal") or finish == "content_filter":
            return "refusal"
        if len(text) < 400 and _REFUSAL_RE.match(text):
            return "refusal"
    if "non_empty" in checks and not text.strip() and not tool_calls:
        return "empty answer"
    if tool_calls:  # a tool call is checked by the caller's tool, not here
        return None
    parsed: Any = None
    need_json = ("json" in checks and (cfg.json_always or _wants_json(body)))
    schema = (cfg.schema or _requested_schema(body)) if "schema" in checks else None
    if need_json or schema is not None:
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return f"invalid JSON ({str(exc).split(':')[0]})"
    if schema is not None:
        import jsonschema  # noqa: PLC0415 (only cascade routes with a schema need it)

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(parsed))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"schema mismatch at {where}: {error.message[:120]}"
    if "regex" in checks and regex is not None and not regex.search(text):
        return f"no match for /{regex.pattern}/"
    return None
