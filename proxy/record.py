"""One row per request: what was asked, where it went, what it cost, how it ended.

The handlers fill a RequestRecord as the request moves along and hand it, once finished, to
every sink on the app (access log, ledger, metrics). Sinks must not block: they queue.
"""
from __future__ import annotations

__all__ = ["RequestRecord"]


class RequestRecord:
    __slots__ = ("ts", "request_id", "key_id", "user", "tags", "endpoint", "route", "provider",
                 "model", "stream", "status", "latency_ms", "ttft_ms", "prompt_tokens",
                 "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
                 "usage_estimated", "cost_usd", "saved_usd", "attempts", "cache", "error_class",
                 "error", "failures")

    def __init__(self, ts: float, request_id: str, endpoint: str):
        self.ts = ts
        self.request_id = request_id
        self.endpoint = endpoint
        self.key_id: str | None = None
        self.user: str | None = None
        self.tags: list[str] = []
        self.route: str | None = None
        self.provider: str | None = None
        self.model: str | None = None
        self.stream = False
        self.status = 0
        self.latency_ms = 0.0
        self.ttft_ms: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.cache_write_tokens = 0
        self.reasoning_tokens = 0
        self.usage_estimated = False
        self.cost_usd: float | None = None
        self.saved_usd = 0.0
        self.attempts = 0
        self.cache = "off"
        self.error_class: str | None = None
        self.error: str | None = None
        self.failures: list | tuple = ()  # forward.Attempt per failed upstream try (for metrics)

    def set_usage(self, usage: dict | None) -> None:
        if not usage:
            return
        self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        self.completion_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        self.cached_tokens = int(details.get("cached_tokens") or 0)
        self.cache_write_tokens = int(details.get("cache_write_tokens") or 0)
        cdetails = usage.get("completion_tokens_details") or {}
        self.reasoning_tokens = int(cdetails.get("reasoning_tokens") or 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__ if name != "failures"}
