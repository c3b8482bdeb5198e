"""HTTP handlers: short functions that call the pieces (auth, validation, routing, forwarding)
and make sure every request, however it ends, leaves one RequestRecord."""
from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from .errors import GatewayError, body_too_large, error_response
from .failover import FailoverRun
from .forward import ClientDisconnected, forward_chat, forward_embeddings
from .record import RequestRecord
from .validate import decode_body, validate_chat, validate_embeddings

__all__ = ["chat_completions", "embeddings", "list_models", "get_model", "healthz", "readyz"]


def _request_id(request: web.Request, state) -> str:
    rid = request.headers.get("x-request-id")
    if rid and len(rid) <= 128 and rid.isascii():
        return rid
    # a random per-worker prefix and a counter: unique across workers and restarts, and no
    # getrandom() syscall per request (it showed in the profile, bench/README.md)
    return f"{state.request_id_prefix}{next(state.request_counter):08x}"


async def _read_json(request: web.Request) -> dict:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large(request.app) from None
    return decode_body(raw)


def _tags(request: web.Request) -> list[str]:
    raw = request.headers.get("x-faregate-tags")
    return [t.strip() for t in raw.split(",") if t.strip()] if raw else []


async def _handle(request: web.Request, endpoint: str) -> web.StreamResponse:
    from .app import STATE  # the app module imports this one

    t0 = time.perf_counter()
    state = request.app[STATE]
    rec = RequestRecord(time.time(), _request_id(request, state), endpoint)
    headers = {"x-request-id": rec.request_id, "x-faregate-attempts": "0"}
    try:
        key = state.keys.authenticate(request)
        rec.key_id = state.keys.key_id(key)
        rec.tags = _tags(request)
        body = await _read_json(request)
        model = validate_chat(body) if endpoint == "chat" else validate_embeddings(body)
        rec.route = model
        user = body.get("user")
        rec.user = user if isinstance(user, str) else None
        rec.stream = bool(body.get("stream")) if endpoint == "chat" else False
        state.keys.check_model(key, model)
        cache_store = None
        if endpoint == "chat" and state.cache is not None:
            served, cache_store = await state.cache.lookup(request, body, model, rec, headers, t0)
            if served is not None:
                return served
        plan = state.router.plan(body, request.headers, endpoint)  # 404 unknown, 400 bad header
        headers["x-faregate-route"] = plan.explanation
        if endpoint == "chat":
            return await forward_chat(request, state.upstream, body, FailoverRun(state.router, plan, body),
                                      rec, headers, t0, state.pricing, on_complete=cache_store)
        return await forward_embeddings(state.upstream, body, plan.candidates, rec, headers, t0,
                                        state.pricing)
    except GatewayError as exc:
        rec.status = exc.status
        rec.error_class = "client_error" if exc.status < 500 else "gateway_error"
        rec.error = exc.message
        return error_response(exc.status, exc.body(), {**headers, **exc.headers})
    except ClientDisconnected as exc:  # mid-stream; the upstream request was closed with it
        rec.status = 499
        rec.error_class = "client_disconnected"
        return exc.response
    except (asyncio.CancelledError, ConnectionResetError):
        rec.status = 499  # the client went away; its upstream request was closed with it
        rec.error_class = "client_disconnected"
        raise
    finally:
        if not rec.latency_ms:
            rec.latency_ms = (time.perf_counter() - t0) * 1000.0
        state.emit_after_response(rec)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "chat")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "embeddings")


def _model_object(name: str, deps) -> dict:
    return {"id": name, "object": "model", "created": 0,
            "owned_by": deps[0].provider if deps else "faregate"}


async def list_models(request: web.Request) -> web.Response:
    from .app import STATE

    state = request.app[STATE]
    state.keys.authenticate(request)
    data = [_model_object(name, deps) for name, deps in state.router.routes.items()]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}),
                        content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    from .app import STATE

    state = request.app[STATE]
    state.keys.authenticate(request)
    name = request.match_info["model"]
    deps = state.router.routes.get(name)
    if not deps:
        raise GatewayError(404, f"the model '{name}' does not exist on this gateway",
                           param="model", code="model_not_found")
    return web.Response(body=orjson.dumps(_model_object(name, deps)), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    from ._fast import IMPLEMENTATION

    return web.json_response({"status": "ok", "hot_path": IMPLEMENTATION})


async def readyz(request: web.Request) -> web.Response:
    from .app import STATE

    state = request.app[STATE]
    if state.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not state.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready", "models": len(state.router.routes)})
