"""Load generation shared by the benchmarks: wrk (with a Lua script for POST bodies) when it
is installed, else a built-in closed-loop aiohttp client. Both return the same `LoadResult`."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time

import msgspec

__all__ = ["LoadResult", "run_load", "have_wrk", "pinned"]


class LoadResult(msgspec.Struct):
    tool: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """Prefix a command with taskset when available, so processes do not share a core."""
    if cpus and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpus, *cmd]
    return cmd


_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
wrk.body = [[%s]]
done_errors = 0
response = function(status, headers, body)
  if status ~= 200 then done_errors = done_errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("FG_STATS %%d %%d %%d %%.3f %%.3f %%.3f %%.3f\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def _wrk(url: str, body: bytes, connections: int, duration: float, cpus: str | None,
         rate: float | None = None) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_LUA % body.decode())
        script = fh.name
    try:
        cmd = pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(duration))}s",
                      "--timeout", "10s", "-s", script, url], cpus)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    finally:
        os.unlink(script)
    m = re.search(r"FG_STATS (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    n, errs, dur_us = int(m.group(1)), int(m.group(2)), int(m.group(3))
    secs = dur_us / 1e6
    return LoadResult("wrk", n, errs, secs, n / secs if secs else 0.0, float(m.group(4)),
                      float(m.group(5)), float(m.group(6)), float(m.group(7)))


async def _aio(url: str, body: bytes, connections: int, duration: float,
               rate: float | None) -> LoadResult:
    import aiohttp

    lat: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration
    headers = {"content-type": "application/json", "authorization": "Bearer bench"}
    interval = connections / rate if rate else 0.0

    async def worker(session: aiohttp.ClientSession, offset: float) -> None:
        nonlocal errors
        next_at = time.perf_counter() + offset
        while True:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            t = time.perf_counter()
            if t >= stop_at:
                return
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            lat.append((time.perf_counter() - (next_at - interval if interval else t)) * 1000)

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(session, i * interval / connections if interval else 0)
                               for i in range(connections)])
        secs = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    return LoadResult("aiohttp", len(lat), errors, secs, len(lat) / secs, q(0.5), q(0.9), q(0.99),
                      lat[-1] if lat else 0.0)


def run_load(url: str, body: bytes, *, connections: int = 32, duration: float = 5.0,
             cpus: str | None = None, rate: float | None = None, tool: str = "auto") -> LoadResult:
    """Closed loop at `connections` (or open loop at `rate` req/s with the built-in client)."""
    if tool in ("auto", "wrk") and have_wrk() and rate is None:
        return _wrk(url, body, connections, duration, cpus)
    return asyncio.run(_aio(url, body, connections, duration, rate))
