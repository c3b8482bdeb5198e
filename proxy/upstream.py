"""The only module that opens connections to providers.

One pooled `aiohttp.ClientSession` per worker process: keep-alive, a total and a per-host
connection limit, DNS caching, and three timeouts (connect, first byte — which is also the
longest silence allowed between stream chunks — and total). Transport failures come back as
`ProviderError`s of kind `connection` or `timeout`, so the caller treats them like any other
retryable provider error.
"""
from __future__ import annotations

import asyncio

import aiohttp

from adapters.base import ProviderError, UpstreamRequest, openai_error_body

from .config import UpstreamConfig

__all__ = ["Upstream", "transport_error", "salvage_buffered", "STREAM_ERRORS"]


def transport_error(exc: BaseException, provider: str) -> ProviderError:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ProviderError(status=504, kind="timeout", retryable=True, body=openai_error_body(
            f"upstream provider {provider} timed out", "timeout_error", None, "upstream_timeout"))
    detail = str(exc) or type(exc).__name__
    return ProviderError(status=502, kind="connection", retryable=True, body=openai_error_body(
        f"upstream provider {provider} is unreachable: {detail}", "upstream_error", None,
        "upstream_unreachable"))


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
STREAM_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError)


def salvage_buffered(content: aiohttp.StreamReader) -> bytes:
    """The bytes a response had already received when its connection broke.

    aiohttp's readers raise the recorded error before handing out what is still buffered,
    so a provider's last chunks, arriving together with the connection's end, would be lost;
    the provider did send them, and the client should get them before the error event.
    (Reads aiohttp's private buffer; the attributes have been stable since 3.0.)"""
    buf = getattr(content, "_buffer", None)
    if not buf:
        return b""
    data = b"".join(buf)[getattr(content, "_buffer_offset", 0):]
    buf.clear()
    content._buffer_offset = 0
    return data


class Upstream:
    def __init__(self, cfg: UpstreamConfig):
        self.cfg = cfg
        self.session: aiohttp.ClientSession | None = None
        self.timeout = aiohttp.ClientTimeout(total=cfg.total_timeout_s,
                                             sock_connect=cfg.connect_timeout_s,
                                             sock_read=cfg.first_byte_timeout_s)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.cfg.pool_limit,
                                         limit_per_host=self.cfg.pool_limit_per_host,
                                         keepalive_timeout=self.cfg.keepalive_s,
                                         ttl_dns_cache=300, enable_cleanup_closed=False)
        # auto_decompress stays on: providers may gzip non-stream bodies.
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                             skip_auto_headers=("User-Agent",),
                                             raise_for_status=False, trust_env=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def open(self, req: UpstreamRequest) -> aiohttp.ClientResponse:
        """Sends the request and returns once the status line and headers arrived.

        The caller owns the response: read it, then release() it, or close() it to drop the
        connection (a client went away mid-stream)."""
        assert self.session is not None, "Upstream.start() was not awaited"
        return await self.session.request(req.method, req.url, headers=req.headers, data=req.body)
