"""Gateway errors and how each becomes an OpenAI-shaped HTTP response.

Every error a client sees is `{"error": {"message", "type", "param", "code"}}` with the right
status; nothing reaches the client as a stack trace. The middleware here turns aiohttp's own
HTTP errors (unknown path, wrong method, body too large) and unexpected exceptions into that
shape too.
"""
from __future__ import annotations

import logging

import orjson
from aiohttp import web

__all__ = ["GatewayError", "bad_request", "error_response", "error_middleware", "body_too_large",
           "MAX_BODY_BYTES"]

MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)  # for the 413 message; set by create_app

log = logging.getLogger("faregate")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 502: "upstream_error",
          503: "service_unavailable", 504: "timeout_error"}


class GatewayError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "api_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def body_too_large(app: web.Application) -> GatewayError:
    limit = app.get(MAX_BODY_BYTES, 0)
    return GatewayError(413, f"request body is too large: the limit is {limit} bytes "
                             f"(server.max_body_mb in the config)", code="request_too_large")


def error_response(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc.status, exc.body(), exc.headers)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, body_too_large(request.app).body())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            msg = f"unknown path {request.path}: see GET /v1/models and POST /v1/chat/completions"
        elif exc.status == 405:
            msg = f"method {request.method} is not allowed on {request.path}"
        else:
            msg = exc.reason or f"HTTP {exc.status}"
        return error_response(exc.status, GatewayError(exc.status, msg, code=None).body(),
                              {k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, GatewayError(
            500, "internal gateway error; the details are in the gateway's log",
            code="internal_error").body())
