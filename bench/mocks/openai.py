"""An OpenAI-format mock provider: /v1/chat/completions (stream and not), /v1/embeddings,
/v1/models, with the shapes the openai SDK expects, down to the usage-only final chunk."""
from __future__ import annotations

import hashlib
import time

import orjson
from aiohttp import web

from .core import Behavior, EventWriter, MockProvider, answer_words, embed_text, rough_tokens

__all__ = ["OpenAIMock"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
                502: "server_error", 503: "server_error", 504: "server_error"}
_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def _prompt_tokens(body: dict) -> int:
    total = 3
    for msg in body.get("messages") or ():
        total += 3
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            total += rough_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    total += rough_tokens(part.get("text") or "") if part.get("type") == "text" else 85
    for tool in body.get("tools") or ():
        total += rough_tokens(orjson.dumps(tool).decode())
    return total


def _tool_call(body: dict) -> dict | None:
    tools = body.get("tools")
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    name = None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    if name is None:
        name = ((tools[0] or {}).get("function") or {}).get("name", "tool")
    params = {}
    for tool in tools:
        fn = tool.get("function") or {}
        if fn.get("name") == name:
            props = (fn.get("parameters") or {}).get("properties") or {}
            params = {k: ("Oslo" if (v or {}).get("type") == "string" else 1) for k, v in props.items()}
    return {"id": "call_" + hashlib.blake2b(name.encode(), digest_size=6).hexdigest(), "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(params).decode()}}


def _answer_text(body: dict, beh: Behavior) -> str:
    if beh.text is not None:
        return beh.text
    fmt = (body.get("response_format") or {}).get("type")
    words = "".join(answer_words(beh.chunks))
    if fmt in ("json_object", "json_schema"):
        return '{"answer": "' + words + '"' if beh.invalid_json else orjson.dumps({"answer": words}).decode()
    return words


class OpenAIMock(MockProvider):
    format = "openai"

    def add_routes(self, app: web.Application) -> None:
        for prefix in ("/v1", ""):
            app.router.add_post(prefix + "/chat/completions", self.chat)
            app.router.add_post(prefix + "/embeddings", self.embeddings)
            app.router.add_get(prefix + "/models", self.list_models)

    def error_response(self, status: int, message: str | None,
                       retry_after: float | None = None) -> web.Response:
        self.stats["faults"] += 1
        self.note_status(status)
        body = {"error": {"message": message or f"mock upstream error {status}",
                          "type": _ERROR_TYPES.get(status, "server_error"), "param": None,
                          "code": _ERROR_CODES.get(status)}}
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return web.Response(status=status, body=orjson.dumps(body), headers=headers,
                            content_type="application/json")

    def _rate_headers(self, beh: Behavior) -> dict:
        if beh.ratelimit_remaining is None:
            return {}
        return {"x-ratelimit-limit-requests": "10000",
                "x-ratelimit-remaining-requests": str(beh.ratelimit_remaining),
                "x-ratelimit-reset-requests": "1s"}

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, content_type="application/json", body=orjson.dumps(
                {"error": {"message": "We could not parse the JSON body of your request.",
                           "type": "invalid_request_error", "param": None, "code": None}}))
        model = body.get("model")
        self.note_request(request, model, body)
        beh = self.behavior_for(request, model)
        if self.models is not None and model not in self.models:
            return self.error_response(404, f"The model `{model}` does not exist")
        early, fault = await self.apply_fault(request, beh)
        if early is not None:
            return early
        if body.get("stream"):
            return await self._stream(request, body, beh, fault)
        await self.sleep_ms(beh.latency_ms)
        call = _tool_call(body) if beh.tool_calls else None
        text = None if call else _answer_text(body, beh)
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if call:
            message["tool_calls"] = [call]
        completion = rough_tokens(call["function"]["arguments"]) + 5 if call else max(1, beh.chunks)
        prompt = _prompt_tokens(body)
        resp = {"id": f"chatcmpl-mock{self.stats['requests']}", "object": "chat.completion",
                "created": int(time.time()), "model": model, "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if call else "stop"}]}
        if beh.usage:
            resp["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion,
                             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
        self.note_status(200)
        return web.Response(body=orjson.dumps(resp), content_type="application/json",
                            headers=self._rate_headers(beh))

    async def _stream(self, request: web.Request, body: dict, beh: Behavior,
                      fault: str | None) -> web.StreamResponse:
        model = body.get("model")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream",
                                           "cache-control": "no-cache", **self._rate_headers(beh)})
        try:
            await resp.prepare(request)
        except ConnectionError:  # the client left before the headers went out
            self.stats["disconnects"] += 1
            return resp
        self.note_status(200)
        env = (b'{"id":"chatcmpl-mock' + str(self.stats["requests"]).encode() + b'","object":"chat.completion.chunk","created":'
               + str(int(time.time())).encode() + b',"model":' + orjson.dumps(model)
               + b',"system_fingerprint":"fp_mock","choices":')
        call = _tool_call(body) if beh.tool_calls else None

        def frame(choices: bytes, usage: bytes = b"null") -> bytes:
            return b"data: " + env + choices + b',"usage":' + usage + b"}\n\n"

        out = EventWriter(resp)
        with self.streaming():
            await out.send(frame(b'[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]'))
            await out.pause(beh.ttft_ms)
            if call:
                args = call["function"]["arguments"]
                first = {"index": 0, "id": call["id"], "type": "function",
                         "function": {"name": call["function"]["name"], "arguments": ""}}
                pieces = [args[i:i + 8] for i in range(0, len(args), 8)] or [""]
                deltas = [{"tool_calls": [first]}] + [
                    {"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
                completion = rough_tokens(args) + 5
                finish = b'"tool_calls"'
            else:
                text = _answer_text(body, beh)
                words = answer_words(beh.chunks) if beh.text is None and text == "".join(answer_words(beh.chunks)) \
                    else [text[i:i + 16] for i in range(0, len(text), 16)]
                deltas = [{"content": w} for w in words]
                completion = max(1, len(words))
                finish = b'"stop"'
            for i, delta in enumerate(deltas):
                if i:
                    await out.pause(beh.chunk_delay_ms)
                if fault == "cut" and i >= beh.cut_after:
                    self.stats["faults"] += 1
                    await out.flush()
                    self.cut_connection(request)
                    return resp
                await out.send(frame(b'[{"index":0,"delta":' + orjson.dumps(delta)
                                       + b',"logprobs":null,"finish_reason":null}]'))
            await out.send(frame(b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":' + finish + b"}]"))
            if include_usage and beh.usage:
                prompt = _prompt_tokens(body)
                usage = orjson.dumps({"prompt_tokens": prompt, "completion_tokens": completion,
                                      "total_tokens": prompt + completion,
                                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}})
                await out.send(frame(b"[]", usage))
            await out.send(b"data: [DONE]\n\n")
            await out.close()
            self.stats["completed_streams"] += 1
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        model = body.get("model")
        self.note_request(request, model, body)
        beh = self.behavior_for(request, model)
        early, _ = await self.apply_fault(request, beh)  # embeddings have no stream to cut
        if early is not None:
            return early
        await self.sleep_ms(beh.latency_ms)
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        dims = int(body.get("dimensions") or 256)
        data, tokens = [], 0
        for i, item in enumerate(inputs or []):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += rough_tokens(text)
            data.append({"object": "embedding", "index": i, "embedding": embed_text(text, dims)})
        self.note_status(200)
        return web.Response(body=orjson.dumps({"object": "list", "model": model, "data": data,
                                               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
                            content_type="application/json")

    async def list_models(self, request: web.Request) -> web.Response:
        ids = self.models or ["mock-model"]
        return web.Response(body=orjson.dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1715367049, "owned_by": "mock"} for m in ids]}),
            content_type="application/json")
