"""An async client that reads OpenAI-style SSE streams and times each one.

For every stream: time to first byte (the status line and headers), time to first token (the
first `data:` event whose `choices[0].delta.content` is not empty), whole-stream time (up to
`data: [DONE]` or the end of the body) and the number of events. A stream counts as an error
when its status is not 200, it carries an `error` event, or it ends without `[DONE]`.

Closed loop at `connections`, or open loop at `rate` streams/s with times measured from when
each stream was due. Runs in its own process (`python -m bench.sse_client JOB.json`, started
by `run_sse`) so it can be pinned to a core.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time

import msgspec
import orjson

from .loadgen import (DEFAULT_HEADERS, Bodies, _child, _run_in_loop, drive, lean_client, pinned,
                      quantiles, slip_p99)

__all__ = ["StreamTiming", "SSEResult", "read_stream", "run_sse"]


class StreamTiming(msgspec.Struct, array_like=True):
    ok: bool
    ttfb_ms: float
    ttft_ms: float
    total_ms: float
    events: int
    why: str = ""


class SSEResult(msgspec.Struct):
    streams: int
    errors: int
    seconds: float
    streams_per_s: float
    mode: str
    connections: int
    rate: float | None
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    ttft_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float
    events_mean: float
    error_kinds: dict[str, int] = {}
    ttft_cdf: list[tuple[float, float]] = []
    slip_p99_ms: float | None = None     # open loop: p99 of how late the client started a stream


def _has_content(line: bytes) -> bool:
    if b'"content"' not in line:
        return False
    try:
        ev = orjson.loads(line[5:])
        choices = ev.get("choices") or ()
        return bool(choices and (choices[0].get("delta") or {}).get("content"))
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        return False


async def read_stream(client, url: str, body: bytes, headers: dict[str, str],
                      due: float | None = None) -> StreamTiming:
    """POSTs one streaming request on `client` (loadgen.lean_client) and reads it to the end,
    timing it from `due` (default now)."""
    from proxy.httpclient import HTTPClientError

    # `due` can be a hair in the future (a timer that fired early): never time from later than now
    t0 = time.perf_counter() if due is None else min(due, time.perf_counter())
    ttfb = ttft = -1.0
    events = 0
    ok = False
    why = ""
    r = None
    try:
        r = await client.request("POST", url, headers, body)
        ttfb = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            await r.read()
            return StreamTiming(False, ttfb, -1.0, (time.perf_counter() - t0) * 1000, 0,
                                f"HTTP {r.status}")
        rest = b""
        while not why and (data := await r.next_chunk()):
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                events += 1
                if line.startswith(b"data: [DONE]"):
                    ok = True
                    continue
                if ttft < 0 and _has_content(line):
                    ttft = (time.perf_counter() - t0) * 1000
                elif b'"error"' in line[:12]:
                    why = "error event"
                    break
    except (HTTPClientError, OSError, asyncio.TimeoutError) as exc:
        why = type(exc).__name__
    finally:
        if r is not None:
            r.close()
    if not why and not ok:
        why = "no [DONE]"
    elif not why and ttft < 0:
        why = "no content"
    return StreamTiming(not why, ttfb, ttft, (time.perf_counter() - t0) * 1000, events, why)


async def _run(url: str, bodies: list[bytes], headers: dict[str, str], connections: int,
               duration: float, rate: float | None) -> SSEResult:
    timings: list[StreamTiming] = []
    source = Bodies(bodies)
    client = lean_client(connections)

    async def one(due: float) -> None:
        data = source.next()
        timings.append(await read_stream(client, url, data, headers, due))

    slips: list[float] = []
    try:
        secs = await drive(one, connections, duration, rate, slips)
    finally:
        await client.close()
    good = [t for t in timings if t.ok]
    kinds: dict[str, int] = {}
    for t in timings:
        if not t.ok:
            kinds[t.why] = kinds.get(t.why, 0) + 1
    ttfb = quantiles(sorted(t.ttfb_ms for t in good))
    ttft = quantiles(sorted(t.ttft_ms for t in good))
    total = quantiles(sorted(t.total_ms for t in good))
    return SSEResult(
        streams=len(timings), errors=len(timings) - len(good), seconds=secs,
        streams_per_s=len(timings) / secs if secs else 0.0, mode="open" if rate else "closed",
        connections=connections, rate=rate, ttfb_p50_ms=ttfb["p50_ms"], ttfb_p99_ms=ttfb["p99_ms"],
        ttft_p50_ms=ttft["p50_ms"], ttft_p90_ms=ttft["p90_ms"], ttft_p99_ms=ttft["p99_ms"],
        total_p50_ms=total["p50_ms"], total_p99_ms=total["p99_ms"],
        events_mean=sum(t.events for t in good) / len(good) if good else 0.0, ttft_cdf=ttft["cdf"],
        error_kinds=kinds, slip_p99_ms=slip_p99(slips))


def run_sse(url: str, bodies: list[bytes], *, headers: dict[str, str] | None = None,
            connections: int = 32, duration: float = 5.0, rate: float | None = None,
            cpus: str | None = None) -> SSEResult:
    """Streams against `url` in a pinned child process and returns the timings."""
    spec = {"url": url, "bodies": [b.decode() for b in bodies],
            "headers": {**DEFAULT_HEADERS, **(headers or {})}, "connections": connections,
            "duration": duration, "rate": rate}
    out = _child(pinned([sys.executable, "-m", "bench.sse_client"], cpus), spec, duration + 120)
    return msgspec.json.decode(out, type=SSEResult)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.sse_client",
                                 description="Reads a JSON job, streams, prints a JSON SSEResult.")
    ap.add_argument("job")
    args = ap.parse_args(argv)
    with open(args.job, "rb") as fh:
        spec = msgspec.json.decode(fh.read())
    res = _run_in_loop(_run(spec["url"], [b.encode() for b in spec["bodies"]], spec["headers"],
                            spec["connections"], spec["duration"], spec.get("rate")))
    sys.stdout.buffer.write(msgspec.json.encode(res))


if __name__ == "__main__":
    main()
