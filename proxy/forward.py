"""Forwarding a request through a provider adapter, with failover before the first byte.

Candidates are tried in order. A retryable failure (connect error, timeout, 429, 5xx,
overloaded) before anything reached the client moves on to the next candidate; after the
first byte a failure ends the stream with an OpenAI error event, never a silent truncation.
With one attempt made, the client gets that attempt's error and status (an upstream error
body is passed on with its status); with several, a 503 that lists them.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
from aiohttp import web

from adapters import get_adapter
from adapters.base import Deployment, ProviderError

from .accounting import Pricing, account, estimated_usage, format_usd
from .errors import error_response
from .record import RequestRecord
from .upstream import TRANSPORT_ERRORS, Upstream, transport_error

__all__ = ["forward_chat", "forward_embeddings", "Attempt"]


class Attempt:
    __slots__ = ("dep", "error")

    def __init__(self, dep: Deployment, error: ProviderError):
        self.dep = dep
        self.error = error

    def describe(self) -> str:
        err = self.error.body.get("error") or {}
        return f"{self.dep.provider}/{self.dep.model}: {self.error.status} {err.get('message', '')}".strip()


def _failure(attempts: list[Attempt], rec: RequestRecord, headers: dict[str, str]) -> web.Response:
    last = attempts[-1].error
    rec.error_class = last.kind
    if len(attempts) == 1:
        rec.status = last.status
        rec.error = (last.body.get("error") or {}).get("message")
        hdrs = dict(headers)
        if last.retry_after is not None:
            hdrs["retry-after"] = str(int(last.retry_after + 0.999))
        return error_response(last.status, last.body, hdrs)
    rec.status = 503
    listing = "; ".join(a.describe() for a in attempts)
    rec.error = f"all {len(attempts)} attempts failed"
    return error_response(503, {"error": {
        "message": f"all {len(attempts)} upstream attempts failed: {listing}",
        "type": "service_unavailable", "param": None, "code": "all_upstreams_failed"}}, headers)


def _served_headers(base: dict[str, str], dep: Deployment, attempts: int) -> dict[str, str]:
    h = dict(base)
    h["x-faregate-model"] = dep.model
    h["x-faregate-provider"] = dep.provider
    h["x-faregate-attempts"] = str(attempts)
    return h


async def forward_chat(request: web.Request, upstream: Upstream, body: dict,
                       candidates: list[Deployment], rec: RequestRecord,
                       headers: dict[str, str], t0: float,
                       pricing: Pricing | None = None, on_complete=None) -> web.StreamResponse:
    stream = bool(body.get("stream"))
    include_usage = bool(stream and (body.get("stream_options") or {}).get("include_usage"))
    attempts: list[Attempt] = []
    rec.failures = attempts  # the metrics count each failed try
    for dep in candidates:
        rec.attempts = len(attempts) + 1
        adapter = get_adapter(dep.provider)
        ureq = adapter.chat_request(dep, body, stream=stream)
        try:
            up = await upstream.open(ureq)
        except TRANSPORT_ERRORS as exc:
            attempts.append(Attempt(dep, transport_error(exc, dep.provider)))
            continue
        try:
            if up.status >= 400:
                data = await up.read()
                err = adapter.error(dep, up.status, up.headers, data)
                attempts.append(Attempt(dep, err))
                if err.retryable:
                    continue
                break
            if not stream:
                data = await up.read()
                try:
                    result = adapter.chat_response(dep, data)
                except ValueError as exc:
                    attempts.append(Attempt(dep, transport_error(exc, dep.provider)))
                    continue
                if on_complete is not None:  # the response cache stores the served answer
                    on_complete(result, dep)
                return _respond(result, dep, rec, headers, len(attempts) + 1, t0, body, pricing)
            outcome = await _relay_stream(request, up, adapter.chat_stream(dep, include_usage=include_usage),
                                          dep, rec, headers, len(attempts) + 1, t0, body, pricing,
                                          on_complete)
            if isinstance(outcome, ProviderError):
                attempts.append(Attempt(dep, outcome))
                continue
            return outcome
        except TRANSPORT_ERRORS as exc:
            attempts.append(Attempt(dep, transport_error(exc, dep.provider)))
            continue
        finally:
            up.close() if not up.closed and not up.content.at_eof() else up.release()
    rec.attempts = len(attempts)
    return _failure(attempts, rec, {**headers, "x-faregate-attempts": str(len(attempts))})


def _completion_text(result: dict) -> str:
    parts = []
    for choice in result.get("choices") or ():
        msg = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(msg, dict):
            continue
        if isinstance(msg.get("content"), str):
            parts.append(msg["content"])
        for call in msg.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if isinstance(args, str):
                parts.append(args)
    return "".join(parts)


def _respond(result: dict, dep: Deployment, rec: RequestRecord, headers: dict[str, str],
             attempts: int, t0: float, body: dict, pricing: Pricing | None) -> web.Response:
    rec.provider, rec.model, rec.status = dep.provider, dep.model, 200
    usage = result.get("usage")
    estimated = not (isinstance(usage, dict) and usage)
    if estimated:  # the provider sent none: counted here
        usage = estimated_usage(body, _completion_text(result))
    cost = account(rec, usage, pricing.price(dep) if pricing is not None else None, estimated=estimated)
    h = _served_headers(headers, dep, attempts)
    if cost is not None:
        h["x-faregate-cost-usd"] = format_usd(cost)
        if estimated:
            h["x-faregate-cost-estimated"] = "true"
    rec.latency_ms = (time.perf_counter() - t0) * 1000.0
    h["x-faregate-latency-ms"] = f"{rec.latency_ms:.2f}"
    return web.Response(body=orjson.dumps(result), headers=h, content_type="application/json")


async def _relay_stream(request: web.Request, up: aiohttp.ClientResponse, translator,
                        dep: Deployment, rec: RequestRecord, headers: dict[str, str],
                        attempts: int, t0: float, body: dict,
                        pricing: Pricing | None, on_complete=None) -> web.StreamResponse | ProviderError:
    """Relays the provider's stream chunk by chunk as it arrives.

    Nothing is sent to the client until the translator produced its first bytes, so a
    provider that fails before that can still be replaced by the next candidate."""
    chunks = up.content.iter_any()
    first = b""
    async for chunk in chunks:
        first = translator.feed(chunk)
        if first or translator.done:
            break
    if not first:
        tail = translator.finish()
        if translator.error is not None:
            return translator.error
        if not tail:
            return transport_error(ConnectionError("stream ended before any data"), dep.provider)
        first = tail
    rec.provider, rec.model, rec.stream, rec.status = dep.provider, dep.model, True, 200
    h = _served_headers(headers, dep, attempts)
    h["content-type"] = "text/event-stream"
    h["cache-control"] = "no-cache"
    h["x-faregate-latency-ms"] = f"{(time.perf_counter() - t0) * 1000.0:.2f}"
    resp = web.StreamResponse(status=200, headers=h)
    try:
        await resp.prepare(request)
        await resp.write(first)
        tap = on_complete.tap() if on_complete is not None else None  # the cache's stream assembler
        if tap is not None:
            tap.feed(first)
        rec.ttft_ms = (time.perf_counter() - t0) * 1000.0
        failure: BaseException | None = None
        try:
            async for chunk in chunks:
                out = translator.feed(chunk)
                if out:
                    await resp.write(out)
                    if tap is not None:
                        tap.feed(out)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            failure = exc
        tail = translator.finish()
        if tail:
            await resp.write(tail)
            if tap is not None:
                tap.feed(tail)
        if not translator.done:
            what = "timed out" if isinstance(failure, asyncio.TimeoutError) else "closed the stream"
            message = f"upstream provider {dep.provider} {what} before the response was complete"
            rec.error_class = "timeout" if isinstance(failure, asyncio.TimeoutError) else "stream_cut"
            rec.error = message
            rec.status = 502
            await resp.write(b"data: " + orjson.dumps({"error": {
                "message": message, "type": "upstream_error", "param": None,
                "code": "upstream_stream_interrupted"}}) + b"\n\n")
        elif translator.error is not None:
            rec.error_class = translator.error.kind
            rec.status = translator.error.status
        elif tap is not None and failure is None:
            on_complete(None, dep, translator.usage)
    finally:
        # The stream's cost goes to the ledger and metrics (its headers left long ago), also
        # when the client went away mid-stream: what the provider generated is billed.
        price = pricing.price(dep) if pricing is not None else None
        if translator.usage:
            account(rec, translator.usage, price)
        else:
            account(rec, estimated_usage(body, translator.completion_text), price, estimated=True)
    await resp.write_eof()
    rec.latency_ms = (time.perf_counter() - t0) * 1000.0
    return resp


async def forward_embeddings(upstream: Upstream, body: dict, candidates: list[Deployment],
                             rec: RequestRecord, headers: dict[str, str], t0: float,
                             pricing: Pricing | None = None) -> web.Response:
    attempts: list[Attempt] = []
    rec.failures = attempts  # the metrics count each failed try
    for dep in candidates:
        rec.attempts = len(attempts) + 1
        adapter = get_adapter(dep.provider)
        ureq = adapter.embeddings_request(dep, body)
        try:
            up = await upstream.open(ureq)
            async with up:
                data = await up.read()
        except TRANSPORT_ERRORS as exc:
            attempts.append(Attempt(dep, transport_error(exc, dep.provider)))
            continue
        if up.status >= 400:
            err = adapter.error(dep, up.status, up.headers, data)
            attempts.append(Attempt(dep, err))
            if err.retryable:
                continue
            break
        try:
            result = adapter.embeddings_response(dep, data)
        except ValueError as exc:
            attempts.append(Attempt(dep, transport_error(exc, dep.provider)))
            continue
        return _respond(result, dep, rec, headers, len(attempts) + 1, t0, body, pricing)
    rec.attempts = len(attempts)
    return _failure(attempts, rec, {**headers, "x-faregate-attempts": str(len(attempts))})
