"""Classifying provider errors into retryable or not, shared by every adapter."""
from __future__ import annotations

import email.utils
import time
from typing import Any

import orjson

from .base import RETRYABLE_KINDS, ProviderError, RequestRejected, openai_error_body

_STATUS_KIND = {
    400: "bad_request", 401: "auth", 402: "quota", 403: "permission", 404: "not_found",
    408: "timeout", 409: "server", 413: "bad_request", 422: "bad_request", 429: "rate_limit",
    500: "server", 502: "server", 503: "overloaded", 504: "timeout", 529: "overloaded",
}
_OPENAI_TYPE = {
    "bad_request": "invalid_request_error", "auth": "authentication_error",
    "permission": "permission_error", "not_found": "not_found_error",
    "rate_limit": "rate_limit_error", "quota": "insufficient_quota",
    "overloaded": "server_error", "server": "server_error", "timeout": "timeout_error",
    "context_window": "invalid_request_error", "content_policy": "invalid_request_error",
}
_CONTEXT_MARKERS = ("context_length_exceeded", "context length", "context window",
                    "maximum context", "too many tokens", "prompt is too long",
                    "input is too long", "exceeds the maximum number of tokens",
                    "context size", "exceed_context")
_POLICY_MARKERS = ("content_policy", "content policy", "content_filter", "safety system",
                   "responsible ai", "prohibited_content")


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(status: int, message: str, code: Any = None, err_type: Any = None) -> str:
    text = f"{message} {code or ''} {err_type or ''}".lower()
    if status in (400, 413, 422) or status == 0:
        if any(m in text for m in _CONTEXT_MARKERS):
            return "context_window"
        if any(m in text for m in _POLICY_MARKERS):
            return "content_policy"
    if status == 429 and ("insufficient_quota" in text or "quota" in str(code or "").lower()):
        return "quota"
    if status == 402 or (status in (400, 403) and "billing" in text):
        return "quota"
    if "overloaded" in text and status >= 500:
        return "overloaded"
    kind = _STATUS_KIND.get(status)
    if kind:
        return kind
    if status >= 500:
        return "server"
    return "other"


def provider_error(status: int, message: str, *, code: Any = None, err_type: Any = None,
                   param: Any = None, headers: Any = None, provider: str = "",
                   kind: str | None = None, retry_after: float | None = None) -> ProviderError:
    """Classify a failure and build its OpenAI-shaped body.

    `kind` overrides the classification (a provider's own error type is often more precise
    than the status). A `x-should-retry: true|false` header (Stainless SDK convention, sent
    by OpenAI and Anthropic) decides retryability when present. `retry_after` defaults to
    the `retry-after-ms`/`retry-after` headers.
    """
    if kind is None:
        kind = classify(status, message, code, err_type)
    retryable = kind in RETRYABLE_KINDS
    should = headers.get("x-should-retry") if headers is not None else None
    if should in ("true", "false"):
        retryable = should == "true"
    # OpenAI's codes for what the router and clients act on, whatever the provider called it
    if kind == "context_window":
        code = "context_length_exceeded"
    elif kind == "content_policy" and "content" not in str(code or ""):
        code = "content_policy_violation"
    elif kind == "quota" and (code is None or status != 429):
        code = "insufficient_quota"
    body = openai_error_body(message, err_type if isinstance(err_type, str) and err_type
                             else _OPENAI_TYPE.get(kind, "api_error"), param, code)
    if retry_after is None:
        retry_after = parse_retry_after(headers)
    return ProviderError(status=status, body=body, kind=kind, retryable=retryable,
                         retry_after=retry_after)


def request_rejected(message: str, param: str | None = None) -> "RequestRejected":
    """The exception an adapter raises for a request its provider cannot serve (n>1 where
    the provider has no n, audio to a text-only API...): a 400 the router may fail over on."""
    err = ProviderError(status=400, body=openai_error_body(message, "invalid_request_error", param,
                                                           "unsupported_parameter"),
                        kind="bad_request", retryable=False)
    return RequestRejected(err)


def parse_duration(value: Any) -> float | None:
    """Seconds from a protobuf/Go style duration: "22s", "1.5s", "120ms", "6m0s"."""
    if not isinstance(value, str) or not value:
        return None
    total, num = 0.0, ""
    i = 0
    try:
        while i < len(value):
            ch = value[i]
            if ch.isdigit() or ch == ".":
                num += ch
            elif value.startswith("ms", i):
                total += float(num) / 1000
                num = ""
                i += 1
            elif ch in "hms":
                total += float(num) * {"h": 3600, "m": 60, "s": 1}[ch]
                num = ""
            else:
                return None
            i += 1
        if num:
            total += float(num)
    except ValueError:
        return None
    return total


def decode_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
