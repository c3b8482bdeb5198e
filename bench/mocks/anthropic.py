"""An Anthropic-format mock provider: POST /v1/messages (stream and not), /v1/models, with the
shapes the anthropic SDK expects: the full named-event stream (message_start, ping,
content_block_start/delta/stop for text and tool_use with input_json_delta, message_delta
with cumulative usage, message_stop), errors as {"type":"error","error":{...}} including 529
overloaded_error, a `request-id` header and anthropic-ratelimit-* headers. A tool call's input
is a value matching the tool's input_schema (strings "Oslo", numbers 1, booleans true, enums
their first value, arrays of one item, nested objects), and a forced tool
(`tool_choice: {"type": "tool"}`) is always called, as the real API does."""
from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from .core import Behavior, EventWriter, MockProvider, answer_words, rough_tokens

__all__ = ["AnthropicMock"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
                529: "overloaded_error"}
_ERROR_TEXT = {529: "Overloaded", 429: "Number of request tokens has exceeded your rate limit",
               401: "invalid x-api-key", 404: "model: not found"}


def _prompt_tokens(body: dict) -> int:
    total = 3 + rough_tokens(body["system"] if isinstance(body.get("system"), str)
                             else "".join(b.get("text", "") for b in body.get("system") or ()))
    for msg in body.get("messages") or ():
        content = msg.get("content")
        total += 3
        if isinstance(content, str):
            total += rough_tokens(content)
        else:
            for block in content or ():
                total += rough_tokens(block.get("text") or "") if block.get("type") == "text" else 85
    for tool in body.get("tools") or ():
        total += rough_tokens(orjson.dumps(tool).decode())
    return total


def _cached_tokens(raw: bytes, prompt: int) -> int:
    """Blocks marked cache_control count as a cache read (a warm cache, for accounting tests)."""
    marked = raw.count(b'"cache_control"')
    return min(prompt - 1, 1024 * marked) if marked and prompt > 1 else 0


def _sample(schema: dict, depth: int = 0) -> object:
    """A value that matches a simple JSON schema."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _sample(schema[key][0] or {}, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        return "Oslo"
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        return [] if depth > 4 else [_sample(schema.get("items") or {"type": "string"}, depth + 1)]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {} if depth > 4 else {k: _sample(v or {}, depth + 1) for k, v in props.items()}
    return 1


def _tool_use(body: dict) -> dict | None:
    tools = body.get("tools")
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None
    name = choice.get("name") if choice.get("type") == "tool" else tools[0].get("name", "tool")
    schema = next((t.get("input_schema") or {} for t in tools if t.get("name") == name), {})
    args = _sample({**schema, "type": "object"})
    return {"type": "tool_use", "id": "toolu_" + hashlib.blake2b(name.encode(), digest_size=9).hexdigest(),
            "name": name, "input": args}


def _answer(beh: Behavior) -> list[str]:
    if beh.text is not None:
        return [beh.text[i:i + 16] for i in range(0, len(beh.text), 16)] or [""]
    return answer_words(beh.chunks)


def _event(name: str, obj: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class AnthropicMock(MockProvider):
    format = "anthropic"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.list_models)

    def _headers(self, beh: Behavior | None = None) -> dict:
        headers = {"request-id": f"req_mock{self.stats['requests']:06d}"}
        if beh is not None and beh.ratelimit_remaining is not None:
            headers.update({"anthropic-ratelimit-requests-limit": "4000",
                            "anthropic-ratelimit-requests-remaining": str(beh.ratelimit_remaining),
                            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:00Z"})
        return headers

    def error_response(self, status: int, message: str | None, retry_after: float | None = None,
                       count_fault: bool = True) -> web.Response:
        if count_fault:
            self.stats["faults"] += 1
        self.note_status(status)
        err_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        headers = self._headers()
        body = {"type": "error", "error": {"type": err_type, "message": message or _ERROR_TEXT.get(
            status, f"mock upstream error {status}")}, "request_id": headers["request-id"]}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return web.Response(status=status, body=orjson.dumps(body), headers=headers,
                            content_type="application/json")

    def _check(self, request: web.Request, body: dict) -> web.Response | None:
        """What the real API rejects before doing anything: missing key/version, no max_tokens."""
        if not request.headers.get("x-api-key") and not request.headers.get("authorization"):
            return self.error_response(401, "x-api-key header is required", count_fault=False)
        if not request.headers.get("anthropic-version"):
            return self.error_response(400, "anthropic-version: header is required", count_fault=False)
        for field in ("model", "messages", "max_tokens"):
            if field not in body:
                return self.error_response(400, f"{field}: Field required", count_fault=False)
        if body.get("temperature") is not None and not 0 <= body["temperature"] <= 1:
            return self.error_response(400, "temperature: Input should be less than or equal to 1",
                                       count_fault=False)
        return None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self.error_response(400, "There was an issue with your request body", count_fault=False)
        model = body.get("model")
        self.note_request(request, model, body)
        beh = self.behavior_for(request, model)
        bad = self._check(request, body)
        if bad is not None:
            return bad
        if self.models is not None and model not in self.models:
            return self.error_response(404, f"model: {model}", count_fault=False)
        early, fault = await self.apply_fault(request, beh)
        if early is not None:
            return early
        forced = (body.get("tool_choice") or {}).get("type") == "tool"
        tool = _tool_use(body) if beh.tool_calls or forced else None
        prompt = _prompt_tokens(body)
        cached = _cached_tokens(raw, prompt)
        usage = {"input_tokens": prompt - cached, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": cached,
                 "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                 "output_tokens": 0, "service_tier": "standard"}
        msg_id = f"msg_mock{self.stats['requests']:06d}"
        if body.get("stream"):
            return await self._stream(request, body, beh, fault, msg_id, tool, usage)
        await self.sleep_ms(beh.latency_ms)
        pieces = [] if tool else _answer(beh)
        content = [tool] if tool else [{"type": "text", "text": "".join(pieces)}]
        usage["output_tokens"] = (rough_tokens(orjson.dumps(tool["input"]).decode()) + 5) if tool else max(1, len(pieces))
        resp = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
                "usage": usage if beh.usage else {"input_tokens": 0, "output_tokens": 0}}
        self.note_status(200)
        return web.Response(body=orjson.dumps(resp), content_type="application/json",
                            headers=self._headers(beh))

    async def _stream(self, request: web.Request, body: dict, beh: Behavior, fault: str | None,
                      msg_id: str, tool: dict | None, usage: dict) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache",
                                           **self._headers(beh)})
        await resp.prepare(request)
        self.note_status(200)
        start_usage = {**usage, "output_tokens": 1}
        out = EventWriter(resp)
        with self.streaming():
            await out.send(_event("message_start", {"type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"),
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}))
            if tool:
                block = {**tool, "input": {}}
                args = orjson.dumps(tool["input"]).decode()
                deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": args[i:i + 8]} for i in range(0, len(args), 8)]
                output = rough_tokens(args) + 5
                stop = "tool_use"
            else:
                block = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": w} for w in _answer(beh)]
                output = max(1, len(deltas))
                stop = "end_turn"
            await out.send(_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                            "content_block": block}))
            await out.send(_event("ping", {"type": "ping"}))
            await out.pause(beh.ttft_ms)
            for i, delta in enumerate(deltas):
                if i:
                    await out.pause(beh.chunk_delay_ms)
                if fault == "cut" and i >= beh.cut_after:
                    self.stats["faults"] += 1
                    if beh.error_message:  # the provider's own mid-stream error event
                        await out.send(_event("error", {"type": "error", "error": {
                            "type": "overloaded_error", "message": beh.error_message}}))
                        await out.close()
                    else:
                        await out.flush()
                        self.cut_connection(request)
                    return resp
                await out.send(_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                                "delta": delta}))
            await out.send(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
            final = {"output_tokens": output}
            if beh.usage:
                final.update({"input_tokens": usage["input_tokens"],
                              "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                              "cache_read_input_tokens": usage["cache_read_input_tokens"]})
            await out.send(_event("message_delta", {"type": "message_delta", "delta": {
                "stop_reason": stop, "stop_sequence": None}, "usage": final}))
            await out.send(_event("message_stop", {"type": "message_stop"}))
            await out.close()
            self.stats["completed_streams"] += 1
        return resp

    async def count_tokens(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        return web.Response(body=orjson.dumps({"input_tokens": _prompt_tokens(body)}),
                            content_type="application/json", headers=self._headers())

    async def list_models(self, request: web.Request) -> web.Response:
        ids = self.models or ["claude-mock"]
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in ids]
        return web.Response(body=orjson.dumps({"data": data, "has_more": False, "first_id": ids[0],
                                               "last_id": ids[-1]}),
                            content_type="application/json", headers=self._headers())
