"""python -m bench.mocks --format openai --port 9000 [--latency-ms 50 ...]: run one mock provider."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal

import msgspec

from . import MOCKS, Behavior


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.mocks", description=__doc__)
    ap.add_argument("--format", choices=sorted(MOCKS), default="openai")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    ap.add_argument("--models", default=None, help="comma-separated model ids to accept (default: any)")
    for field in msgspec.structs.fields(Behavior):
        ap.add_argument("--" + field.name.replace("_", "-"), dest=field.name, default=None)
    args = ap.parse_args(argv)
    patch = {f.name: getattr(args, f.name) for f in msgspec.structs.fields(Behavior)
             if getattr(args, f.name) is not None}
    behavior = msgspec.convert(patch, Behavior, strict=False)
    models = args.models.split(",") if args.models else None
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args.format, args.host, args.port, behavior, models))


async def _serve(fmt: str, host: str, port: int, behavior: Behavior, models: list[str] | None) -> None:
    mock = MOCKS[fmt](behavior, models=models)
    await mock.start(host, port)
    print(f"mock {fmt} provider listening on {mock.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await mock.stop()


if __name__ == "__main__":
    main()
