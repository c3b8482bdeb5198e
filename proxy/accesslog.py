"""The access log: one JSON line per finished request on stderr."""
from __future__ import annotations

import sys
import time

import orjson

from .record import RequestRecord

__all__ = ["AccessLog"]


class AccessLog:
    def __init__(self, stream=None):
        self._stream = stream or sys.stderr

    def __call__(self, rec: RequestRecord) -> None:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec.ts)) + f".{int(rec.ts * 1000) % 1000:03d}Z",
            "id": rec.request_id, "endpoint": rec.endpoint, "route": rec.route,
            "model": rec.model, "provider": rec.provider, "status": rec.status,
            "stream": rec.stream, "latency_ms": round(rec.latency_ms, 2),
            "prompt_tokens": rec.prompt_tokens, "completion_tokens": rec.completion_tokens,
            "attempts": rec.attempts,
        }
        if rec.ttft_ms is not None:
            line["ttft_ms"] = round(rec.ttft_ms, 2)
        if rec.cost_usd is not None:
            line["cost_usd"] = rec.cost_usd
        if rec.cache != "off":
            line["cache"] = rec.cache
            if rec.saved_usd:
                line["saved_usd"] = rec.saved_usd
        if rec.error_class:
            line["error"] = rec.error_class
        try:
            self._stream.write(orjson.dumps(line).decode() + "\n")
        except (OSError, ValueError):  # stderr closed: logging must never fail a request
            pass
