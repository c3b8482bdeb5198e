"""A Gemini-format mock provider: /v1beta/models/{model}:generateContent,
:streamGenerateContent (alt=sse, or one JSON array without it), :embedContent,
:batchEmbedContents and GET /v1beta/models, in the camelCase REST shapes the google-genai
SDK parses: cumulative usageMetadata, whole functionCall parts, errors with status strings
and RetryInfo."""
from __future__ import annotations

import orjson
from aiohttp import web

from .core import Behavior, EventWriter, MockProvider, answer_words, embed_text, rough_tokens

__all__ = ["GeminiMock"]

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_MESSAGES = {429: "Resource has been exhausted (e.g. check quota).",
             503: "The model is overloaded. Please try again later.",
             500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"}


def _prompt_tokens(body: dict) -> int:
    total = 1
    for content in [body.get("systemInstruction") or {}] + list(body.get("contents") or ()):
        for part in content.get("parts") or ():
            total += rough_tokens(part["text"]) if "text" in part else (
                rough_tokens(orjson.dumps(part).decode()) if "inlineData" not in part else 258)
    for tool in body.get("tools") or ():
        total += rough_tokens(orjson.dumps(tool).decode())
    return total


def _function_call(body: dict) -> dict | None:
    decls = [d for t in body.get("tools") or () for d in t.get("functionDeclarations") or ()]
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if not decls or config.get("mode") == "NONE":
        return None
    allowed = config.get("allowedFunctionNames") or [decls[0].get("name", "tool")]
    decl = next((d for d in decls if d.get("name") == allowed[0]), decls[0])
    props = (decl.get("parameters") or {}).get("properties") or {}
    args = {k: ("Oslo" if str((v or {}).get("type", "")).lower() == "string" else 1) for k, v in props.items()}
    return {"functionCall": {"name": decl.get("name", "tool"), "args": args}}


def _answer(body: dict, beh: Behavior) -> list[str]:
    if beh.text is not None:
        return [beh.text[i:i + 16] for i in range(0, len(beh.text), 16)] or [""]
    words = answer_words(beh.chunks)
    if (body.get("generationConfig") or {}).get("responseMimeType") == "application/json":
        text = "".join(words)
        doc = '{"answer": "' + text + '"' if beh.invalid_json else orjson.dumps({"answer": text}).decode()
        return [doc[i:i + 16] for i in range(0, len(doc), 16)]
    return words


class GeminiMock(MockProvider):
    format = "gemini"

    def add_routes(self, app: web.Application) -> None:
        for version in ("v1beta", "v1"):
            app.router.add_post(f"/{version}/models/{{target}}", self.model_action)
            app.router.add_get(f"/{version}/models", self.list_models)
            app.router.add_get(f"/{version}/models/{{name}}", self.get_model)

    def error_response(self, status: int, message: str | None, retry_after: float | None = None,
                       count_fault: bool = True) -> web.Response:
        if count_fault:
            self.stats["faults"] += 1
        self.note_status(status)
        err: dict = {"code": status, "message": message or _MESSAGES.get(status, f"mock upstream error {status}"),
                     "status": _STATUS.get(status, "UNKNOWN")}
        if retry_after is not None:
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                               "retryDelay": f"{retry_after:g}s"}]
        return web.Response(status=status, body=orjson.dumps({"error": err}),
                            content_type="application/json")

    async def model_action(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].partition(":")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self.error_response(400, "Invalid JSON payload received.", count_fault=False)
        self.note_request(request, model, body)
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return self.error_response(403, "Method doesn't allow unregistered callers (callers without "
                                       "established identity). Please use API Key or other form of API "
                                       "consumer identity to call this API.", count_fault=False)
        if self.models is not None and model not in self.models:
            return self.error_response(404, f"models/{model} is not found for API version v1beta, or is "
                                       "not supported for generateContent.", count_fault=False)
        beh = self.behavior_for(request, model)
        if action not in ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents"):
            return self.error_response(404, f"unknown method {action}", count_fault=False)
        early, fault = await self.apply_fault(request, beh)
        if early is not None:
            return early
        if action == "embedContent":
            return self._embed([body], model, single=True)
        if action == "batchEmbedContents":
            return self._embed(body.get("requests") or [], model, single=False)
        if action == "streamGenerateContent":
            return await self._stream(request, body, model, beh, fault)
        await self.sleep_ms(beh.latency_ms)
        chunks = self._chunks(body, model, beh)
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
        if parts and all("text" in p for p in parts):
            parts = [{"text": "".join(p["text"] for p in parts)}]
        final = chunks[-1]
        final["candidates"][0]["content"]["parts"] = parts
        self.note_status(200)
        return web.Response(body=orjson.dumps(final), content_type="application/json")

    def _chunks(self, body: dict, model: str, beh: Behavior) -> list[dict]:
        """The stream's GenerateContentResponses: new text only, cumulative usage, finishReason last."""
        call = _function_call(body) if beh.tool_calls else None
        pieces = [call] if call else [{"text": t} for t in _answer(body, beh)]
        prompt = _prompt_tokens(body)
        # proto3 JSON: the API takes snake_case too, and the SDK sends thinking_budget
        thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
        budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
        thoughts = 16 if budget else 0
        rid = f"mock{self.stats['requests']:06d}"
        out = []
        done = 0
        for i, part in enumerate(pieces):
            done += rough_tokens(orjson.dumps(part["functionCall"]).decode()) if call else 1
            cand: dict = {"content": {"parts": [part], "role": "model"}, "index": 0}
            chunk: dict = {"candidates": [cand], "modelVersion": model, "responseId": rid}
            if i == len(pieces) - 1:
                cand["finishReason"] = "STOP"
            if beh.usage:
                usage = {"promptTokenCount": prompt, "candidatesTokenCount": done,
                         "totalTokenCount": prompt + done + thoughts,
                         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
                if thoughts:
                    usage["thoughtsTokenCount"] = thoughts
                chunk["usageMetadata"] = usage
            out.append(chunk)
        return out

    async def _stream(self, request: web.Request, body: dict, model: str, beh: Behavior,
                      fault: str | None) -> web.StreamResponse:
        sse = request.query.get("alt") == "sse"
        chunks = self._chunks(body, model, beh)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream" if sse else "application/json"})
        await resp.prepare(request)
        self.note_status(200)
        out = EventWriter(resp)
        with self.streaming():
            await out.pause(beh.ttft_ms)
            for i, chunk in enumerate(chunks):
                if i:
                    await out.pause(beh.chunk_delay_ms)
                if fault == "cut" and i >= beh.cut_after:
                    self.stats["faults"] += 1
                    await out.flush()
                    self.cut_connection(request)
                    return resp
                data = orjson.dumps(chunk)
                if sse:
                    await out.send(b"data: " + data + b"\r\n\r\n")
                else:
                    await out.send((b"[" if i == 0 else b",\r\n") + data)
            if not sse:
                await out.send(b"]")
            await out.close()
            self.stats["completed_streams"] += 1
        return resp

    def _embed(self, requests: list, model: str, *, single: bool) -> web.Response:
        vectors = []
        for req in requests:
            text = " ".join(p.get("text", "") for p in (req.get("content") or {}).get("parts") or ())
            dims = int(req.get("outputDimensionality") or 256)
            vectors.append({"values": embed_text(text, dims)})
        self.note_status(200)
        body = {"embedding": vectors[0]} if single else {"embeddings": vectors}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def _model_info(self, name: str) -> dict:
        return {"name": f"models/{name}", "version": "001", "displayName": name,
                "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens", "embedContent"]}

    async def list_models(self, request: web.Request) -> web.Response:
        ids = self.models or ["gemini-mock"]
        return web.Response(body=orjson.dumps({"models": [self._model_info(m) for m in ids]}),
                            content_type="application/json")

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.models is not None and name not in self.models:
            return self.error_response(404, f"models/{name} is not found", count_fault=False)
        return web.Response(body=orjson.dumps(self._model_info(name)), content_type="application/json")
