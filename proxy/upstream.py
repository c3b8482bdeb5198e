"""The only module that opens connections to providers.

One `httpclient.HTTPClient` per worker process (a keep-alive pool of HTTP/1.1 connections,
see there for why it is not aiohttp's client), with the config's limits and three timeouts:
connect, first byte (which is also the longest silence allowed between stream chunks) and
total. Transport failures come back as `ProviderError`s of kind `connection` or `timeout`,
so the caller treats them like any other retryable provider error.
"""
from __future__ import annotations

import asyncio

from adapters.base import ProviderError, UpstreamRequest, openai_error_body

from .config import UpstreamConfig
from .httpclient import HTTPClient, HTTPClientError, Response

__all__ = ["Upstream", "transport_error", "TRANSPORT_ERRORS", "STREAM_ERRORS"]


def transport_error(exc: BaseException, provider: str) -> ProviderError:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ProviderError(status=504, kind="timeout", retryable=True, body=openai_error_body(
            f"upstream provider {provider} timed out", "timeout_error", None, "upstream_timeout"))
    detail = str(exc) or type(exc).__name__
    return ProviderError(status=502, kind="connection", retryable=True, body=openai_error_body(
        f"upstream provider {provider} is unreachable: {detail}", "upstream_error", None,
        "upstream_unreachable"))


# Failures of the upstream hop, before the headers (TRANSPORT) and while reading a body (STREAM).
TRANSPORT_ERRORS = (HTTPClientError, OSError, asyncio.TimeoutError)
STREAM_ERRORS = (HTTPClientError, OSError, asyncio.TimeoutError)


class Upstream:
    def __init__(self, cfg: UpstreamConfig):
        self.cfg = cfg
        self.client: HTTPClient | None = None

    async def start(self) -> None:
        self.client = HTTPClient(connect_timeout=self.cfg.connect_timeout_s,
                                 read_timeout=self.cfg.first_byte_timeout_s,
                                 total_timeout=self.cfg.total_timeout_s,
                                 limit=self.cfg.pool_limit, limit_per_host=self.cfg.pool_limit_per_host,
                                 keepalive=self.cfg.keepalive_s)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def open(self, req: UpstreamRequest, timeout: float | None = None) -> Response:
        """Sends the request and returns once the status line and headers arrived (within
        `timeout` seconds when given). The caller reads the body, and close()s the response
        when it abandons it half-read (a complete one is already back in the pool)."""
        assert self.client is not None, "Upstream.start() was not awaited"
        return await self.client.request(req.method, req.url, req.headers, req.body, timeout)
