"""Forwarding a request through a provider adapter, with failover before the first byte.

Candidates are tried in the order `failover.FailoverRun` gives (backoff, retry-after,
deadline, another provider first; see there). A failure before anything reached the client
moves on to the next candidate; after the first byte a failure ends the stream with an
OpenAI error event, never a silent truncation. With one deployment tried (maybe retried),
the client gets its error and status (an upstream error body is passed on with its status);
with several, a 503 that lists every attempt. Every outcome goes to the router's health
state (latency window, breaker, rate-limit damping).
"""
from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from adapters import get_adapter
from adapters.base import Deployment, ProviderError, RequestRejected

from .accounting import Pricing, account, estimated_usage, format_usd
from .errors import error_response
from .failover import Attempt, FailoverRun
from .record import RequestRecord
from .httpclient import Response
from .upstream import STREAM_ERRORS, TRANSPORT_ERRORS, Upstream, transport_error

__all__ = ["forward_chat", "forward_embeddings", "Attempt", "ClientDisconnected"]


def _failure(attempts: list[Attempt], rec: RequestRecord, headers: dict[str, str]) -> web.Response:
    last = attempts[-1].error
    rec.error_class = last.kind
    if len({id(a.dep) for a in attempts}) == 1:  # one deployment (maybe retried): its own error
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
                       run: FailoverRun, rec: RequestRecord,
                       headers: dict[str, str], t0: float,
                       pricing: Pricing | None = None, on_complete=None) -> web.StreamResponse:
    """Tries the route's candidates as `run` (failover.py) orders them: backoff, retry-after,
    deadline, another provider first, larger context, content-policy fallback, cascade."""
    stream = bool(body.get("stream"))
    include_usage = bool(stream and (body.get("stream_options") or {}).get("include_usage"))
    rec.failures = run.attempts
    while (step := run.next()) is not None:
        m, wait = step
        dep = m.dep
        if wait > 0:
            await asyncio.sleep(wait)
        adapter = get_adapter(dep.provider)
        try:
            ureq = adapter.chat_request(dep, body, stream=stream)
        except RequestRejected as exc:  # this provider cannot serve it as asked; another may
            run.rejected(m, exc.error)
            continue
        rec.attempts = run.sending(m)
        t1 = time.perf_counter()
        try:
            up = await upstream.open(ureq, max(0.001, run.time_left()))
        except TRANSPORT_ERRORS as exc:
            run.failed(m, transport_error(exc, dep.provider), _ms(t1))
            continue
        try:
            if up.status >= 400:
                data = await up.read()
                run.failed(m, adapter.error(dep, up.status, up.headers, data), _ms(t1), up.headers)
                continue
            if not stream:
                data = await up.read()
                try:
                    result = adapter.chat_response(dep, data)
                except ValueError as exc:
                    run.failed(m, transport_error(exc, dep.provider), _ms(t1), up.headers)
                    continue
                run.succeeded(m, _ms(t1), up.headers)
                if run.escalate(m, result):  # cascade: the answer failed its checks
                    continue
                hdrs = _routed_headers(headers, run)
                if on_complete is not None:  # the response cache stores the served answer
                    on_complete(result, dep)
                return _respond(result, dep, rec, hdrs, run.sent, t0, body, pricing,
                                run.billed_usd(pricing))
            outcome = await _relay_stream(request, up, adapter.chat_stream(dep, include_usage=include_usage),
                                          dep, rec, _routed_headers(headers, run), run.sent, t0, body, pricing,
                                          on_complete)
            if isinstance(outcome, ProviderError):
                run.failed(m, outcome, _ms(t1), up.headers)
                continue
            ttft = rec.ttft_ms - (t1 - t0) * 1000.0 if rec.ttft_ms is not None else _ms(t1)
            if rec.status >= 500:  # broken after the first byte: the client got an error event
                run.broke(m, ttft, rec.error_class, up.headers)
            else:
                run.succeeded(m, ttft, up.headers)
            return outcome
        except TRANSPORT_ERRORS as exc:
            run.failed(m, transport_error(exc, dep.provider), _ms(t1))
            continue
        finally:
            up.close()   # a no-op once complete: the connection is back in the pool
    rec.attempts = run.sent
    attempts = run.attempts or run.unavailable()
    hdrs = {**_routed_headers(headers, run), "x-faregate-attempts": str(run.sent)}
    if not attempts:
        return error_response(503, {"error": {"message": "no upstream attempt could be made before the deadline",
                                              "type": "service_unavailable", "param": None,
                                              "code": "deadline_exceeded"}}, hdrs)
    return _failure(attempts, rec, hdrs)


def _ms(t1: float) -> float:
    return (time.perf_counter() - t1) * 1000.0


def _routed_headers(headers: dict[str, str], run: FailoverRun) -> dict[str, str]:
    h = dict(headers)
    h["x-faregate-route"] = run.route_header()
    if run.billed:
        h["x-faregate-cascade"] = "escalated: " + ", ".join(f"{d.provider}/{d.model}" for d, _ in run.billed)
    elif run.cascade_failed:
        h["x-faregate-cascade"] = "checks failed: " + run.cascade_failed
    return h


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
             attempts: int, t0: float, body: dict, pricing: Pricing | None,
             prior_usd: float = 0.0) -> web.Response:
    rec.provider, rec.model, rec.status = dep.provider, dep.model, 200
    usage = result.get("usage")
    estimated = not (isinstance(usage, dict) and usage)
    if estimated:
        usage = estimated_usage(body, _completion_text(result))
    cost = account(rec, usage, pricing.price(dep) if pricing is not None else None, estimated=estimated)
    if prior_usd:  # cascade: the cheaper answers that failed their checks were paid for too
        cost = rec.cost_usd = (cost or 0.0) + prior_usd
    h = _served_headers(headers, dep, attempts)
    if cost is not None:
        h["x-faregate-cost-usd"] = format_usd(cost)
        if estimated:
            h["x-faregate-cost-estimated"] = "true"
    rec.latency_ms = (time.perf_counter() - t0) * 1000.0
    h["x-faregate-latency-ms"] = f"{rec.latency_ms:.2f}"
    return web.Response(body=orjson.dumps(result), headers=h, content_type="application/json")


class ClientDisconnected(Exception):
    """The client went away while its response was being written: not the provider's
    fault, so it is never reported as a deployment failure nor failed over."""

    def __init__(self, response: web.StreamResponse):
        super().__init__("client disconnected")
        self.response = response


async def _send(resp: web.StreamResponse, data: bytes | None, request: web.Request | None = None,
                *, eof: bool = False) -> None:
    """Writes to the client (prepare when `request` is given); its connection errors, which
    aiohttp raises as ClientConnectionResetError, become ClientDisconnected."""
    try:
        if request is not None:
            await resp.prepare(request)
        elif eof:
            await resp.write_eof(data or b"")
        else:
            await resp.write(data)
    except ConnectionError as exc:
        raise ClientDisconnected(resp) from exc


async def _relay_stream(request: web.Request, up: Response, translator,
                        dep: Deployment, rec: RequestRecord, headers: dict[str, str],
                        attempts: int, t0: float, body: dict,
                        pricing: Pricing | None, on_complete=None) -> web.StreamResponse | ProviderError:
    """Relays the provider's stream chunk by chunk as it arrives.

    Nothing is sent to the client until the translator produced its first bytes, so a
    provider that fails before that can still be replaced by the next candidate. The
    response hands out every byte it received before it raises a broken connection's error,
    so a provider's last chunks, arriving together with the connection's end, are relayed."""
    first = b""
    failure: BaseException | None = None
    # the cache's stream assembler: the translator tells it each chunk it writes
    tap = translator.collect = on_complete.tap() if on_complete is not None else None
    try:
        async for chunk in up:
            first = translator.feed(chunk)
            if first or translator.done:
                break
    except STREAM_ERRORS as exc:
        failure = exc
    if not first:
        tail = translator.finish()
        if translator.error is not None:
            return translator.error
        if not tail:
            return transport_error(failure or ConnectionError("stream ended before any data"),
                                   dep.provider)
        first = tail
    rec.provider, rec.model, rec.stream, rec.status = dep.provider, dep.model, True, 200
    h = _served_headers(headers, dep, attempts)
    h["content-type"] = "text/event-stream"
    h["cache-control"] = "no-cache"
    h["x-faregate-latency-ms"] = f"{(time.perf_counter() - t0) * 1000.0:.2f}"
    resp = _EventStream(status=200, headers=h)
    # Once the translator saw the provider's end, what it wrote last goes out together with
    # the end of the response (one write), before the provider's HTTP body end is read: a
    # client that stops reading at [DONE] has then had every byte, and is not a disconnect.
    last = b""
    try:
        await _send(resp, None, request)
        if translator.done:
            last = first
        else:
            await _send(resp, first)
            rec.ttft_ms = (time.perf_counter() - t0) * 1000.0
            try:
                async for chunk in up:
                    out = translator.feed(chunk)
                    if translator.done:
                        last = out
                        break
                    if out:
                        await _send(resp, out)
            except STREAM_ERRORS as exc:
                failure = exc
        last += translator.finish()
        if not translator.done:
            what = "timed out" if isinstance(failure, asyncio.TimeoutError) else "closed the stream"
            message = f"upstream provider {dep.provider} {what} before the response was complete"
            rec.error_class = "timeout" if isinstance(failure, asyncio.TimeoutError) else "stream_cut"
            rec.error = message
            rec.status = 502
            last += b"data: " + orjson.dumps({"error": {
                "message": message, "type": "upstream_error", "param": None,
                "code": "upstream_stream_interrupted"}}) + b"\n\n"
        elif translator.error is not None:
            rec.error_class = translator.error.kind
            rec.status = translator.error.status
        await _send(resp, last, eof=True)
        if rec.ttft_ms is None:
            rec.ttft_ms = (time.perf_counter() - t0) * 1000.0
        if tap is not None and translator.done and translator.error is None and failure is None:
            on_complete(None, dep, translator.usage)   # the cache stores the whole answer
    finally:
        # The stream's cost goes to the ledger and metrics (its headers left long ago), also
        # when the client went away mid-stream: what the provider generated is billed.
        price = pricing.price(dep) if pricing is not None else None
        if translator.usage:
            account(rec, translator.usage, price)
        else:
            account(rec, estimated_usage(body, translator.completion_text), price, estimated=True)
    rec.latency_ms = (time.perf_counter() - t0) * 1000.0
    up.release(DRAIN_S)   # the body's end, usually there already, pools the connection
    return resp


class _EventStream(web.StreamResponse):
    """An SSE response whose headers leave with its first bytes (one write, not two): it is
    only prepared once those bytes are there. (aiohttp's own Response buffers them the same
    way; an aiohttp without the switch sends them at once, which is only slower.)"""
    _send_headers_immediately = False


DRAIN_S = 1.0   # after the provider's end event, how long its HTTP body end may take


async def forward_embeddings(upstream: Upstream, body: dict, candidates: list[Deployment],
                             rec: RequestRecord, headers: dict[str, str], t0: float,
                             pricing: Pricing | None = None) -> web.Response:
    attempts: list[Attempt] = []
    rec.failures = attempts
    for dep in candidates:
        rec.attempts = len(attempts) + 1
        adapter = get_adapter(dep.provider)
        try:
            ureq = adapter.embeddings_request(dep, body)
        except RequestRejected as exc:
            attempts.append(Attempt(dep, exc.error))
            continue
        try:
            up = await upstream.open(ureq)
            try:
                data = await up.read()
            finally:
                up.close()
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
