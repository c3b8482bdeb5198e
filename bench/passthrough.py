"""The reference the speed targets are set against: a bare aiohttp + uvloop passthrough.

No features at all: no auth, validation, routing, accounting, cache or translation. It
forwards `POST /v1/chat/completions` to one upstream with one pooled aiohttp ClientSession
and relays the answer, streams chunk by chunk as they arrive. Run in the same suite as
Faregate (peer name `bare`), it says what the HTTP machinery alone costs on this machine, so
Faregate's figures can be read as a ratio to it (the issue quotes ~4,300 req/s and ~3,200
streams/s for it on the machine the targets were set on).

    python -m bench.passthrough --port 8100 --upstream http://127.0.0.1:8200/v1
"""
from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    target = upstream.rstrip("/") + "/chat/completions"
    app = web.Application()
    holder: dict[str, aiohttp.ClientSession] = {}

    async def start(_app: web.Application) -> None:
        holder["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(_app: web.Application) -> None:
        await holder["session"].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with holder["session"].post(target, data=body,
                                          headers={"content-type": "application/json"}) as up:
            ctype = up.headers.get("content-type", "application/json")
            if not ctype.startswith("text/event-stream"):
                return web.Response(body=await up.read(), status=up.status, content_type=None,
                                    headers={"content-type": ctype})
            resp = web.StreamResponse(status=up.status, headers={"content-type": ctype})
            try:
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except ConnectionResetError:
                pass  # the client left mid-stream (wrk ends every run so): not an error
            return resp

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/readyz", ok)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.passthrough", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="the provider's base URL, e.g. http://127.0.0.1:8200/v1")
    args = ap.parse_args(argv)
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
