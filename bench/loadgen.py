"""Load generation shared by the benchmarks.

Closed loop (the most a target can do at `connections` concurrent connections) with wrk and a
Lua script for the POST bodies when wrk is installed, else with the built-in client; open loop
(requests sent at a fixed `rate`, latency measured from when each request was due, so a slow
server cannot hide its queueing) with the built-in client, since wrk has no fixed-rate mode.

The built-in client (proxy.httpclient on uvloop, paced by a timerfd: bench/pacer.py) runs in
its own process, `python -m bench.loadgen`, so that it can be pinned to a core with taskset
like wrk. Both return the same `LoadResult`,
with a latency CDF for the report's plots.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import msgspec

from .pacer import Pacer

__all__ = ["LoadResult", "SLIP_NOTE_MS", "run_load", "have_wrk", "pinned", "quantiles",
           "CDF_POINTS", "DEFAULT_HEADERS", "NONCE", "Bodies"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Percentiles at which the latency CDF is sampled (wrk and the built-in client alike).
CDF_POINTS = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99, 100)
DEFAULT_HEADERS = {"content-type": "application/json", "authorization": "Bearer bench"}
# In a body, replaced by a string unique to each request, so that a cache never hits.
NONCE = "{{nonce}}"


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
    mode: str = "closed"                 # closed | open
    connections: int = 0
    rate: float | None = None            # open loop: the requests/s asked for
    cdf: list[tuple[float, float]] = []  # (percentile, ms)
    error_kinds: dict[str, int] = {}     # built-in client: "HTTP 503", "ClientOSError", ...
    slip_p99_ms: float | None = None     # open loop: p99 of how late the client sent (its lag)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """Prefix a command with taskset when available, so processes do not share a core."""
    if cpus and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpus, *cmd]
    return cmd


def quantiles(sorted_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/max and the CDF points of an already sorted list of latencies."""
    if not sorted_ms:
        return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "cdf": []}
    n = len(sorted_ms)

    def q(p: float) -> float:
        return sorted_ms[min(n - 1, int(p / 100 * n))]

    return {"p50_ms": q(50), "p90_ms": q(90), "p99_ms": q(99), "max_ms": sorted_ms[-1],
            "cdf": [(p, q(p) if p < 100 else sorted_ms[-1]) for p in CDF_POINTS]}


# ---- wrk ------------------------------------------------------------------------------------

_LUA = """
local headers = {%(headers)s}
local bodies = {%(bodies)s}
local suffixes = {%(suffixes)s}
local run = "%(run)s"
local reqs = {}
init = function(args)
  -- here, not at load time: wrk.format takes the Host header from wrk.headers once it is set
  for i, b in ipairs(bodies) do reqs[i] = wrk.format("POST", nil, headers, b) end
end
local n = 0
local c = 0
request = function()
  n = n %% #reqs + 1
  local tail = suffixes[n]
  if tail ~= "" then
    -- a body with a nonce: unique per request (a cache never hits)
    c = c + 1
    return wrk.format("POST", nil, headers, bodies[n] .. run .. "-" .. c .. tail)
  end
  return reqs[n]
end
done = function(summary, latency, requests)
  io.write(string.format("FG_STATS %%d %%d %%d %%.3f %%.3f %%.3f %%.3f\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
  local points = {%(points)s}
  io.write("FG_CDF")
  for _, p in ipairs(points) do
    local v
    if p >= 100 then v = latency.max elseif p <= 0 then v = latency.min else v = latency:percentile(p) end
    io.write(string.format(" %%s:%%.3f", p, v / 1000))
  end
  io.write("\\n")
end
"""


def _lua_str(s: str) -> str:
    level = 1
    while f"]{'=' * level}]" in s:
        level += 1
    return f"[{'=' * level}[{s}]{'=' * level}]"


def _wrk(url: str, bodies: list[bytes], headers: dict[str, str], connections: int,
         duration: float, cpus: str | None) -> LoadResult:
    parts = [b.decode().split(NONCE, 1) if NONCE in b.decode() else [b.decode(), ""] for b in bodies]
    script = _LUA % {
        "headers": ", ".join(f"[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in headers.items()),
        "bodies": ", ".join(_lua_str(p[0]) for p in parts),
        "suffixes": ", ".join(_lua_str(p[1]) for p in parts),
        "run": os.urandom(4).hex(),
        "points": ", ".join(str(p) for p in CDF_POINTS)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        path = fh.name
    secs = max(1, round(duration))
    try:
        cmd = pinned(["wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--timeout", "10s",
                      "-s", path, url], cpus)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    finally:
        os.unlink(path)
    out = proc.stdout
    m = re.search(r"FG_STATS (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"could not read wrk's output:\n{out}\n{proc.stderr}")
    n, errs, dur_us = int(m.group(1)), int(m.group(2)), int(m.group(3))
    seconds = dur_us / 1e6
    cdf = []
    c = re.search(r"FG_CDF (.*)", out)
    if c:
        for item in c.group(1).split():
            p, v = item.split(":")
            cdf.append((float(p), float(v)))
    return LoadResult("wrk", n, errs, seconds, n / seconds if seconds else 0.0,
                      float(m.group(4)), float(m.group(5)), float(m.group(6)), float(m.group(7)),
                      mode="closed", connections=connections, cdf=cdf)


# ---- the built-in client ----------------------------------------------------------------------

class Bodies:
    """Request bodies sent in turn; a body holding NONCE gets a fresh value each time."""

    def __init__(self, bodies: list[bytes]):
        self.bodies = bodies
        self.split = [b.split(NONCE.encode(), 1) if NONCE.encode() in b else None for b in bodies]
        self.run = os.urandom(4).hex().encode()
        self.n = 0

    def next(self) -> bytes:
        i = self.n % len(self.bodies)
        self.n += 1
        parts = self.split[i]
        if parts is None:
            return self.bodies[i]
        return parts[0] + self.run + b"-%d" % self.n + parts[1]


async def drive(one, connections: int, duration: float, rate: float | None,
                slips: list[float] | None = None) -> float:
    """Runs `one(due)` for `duration` seconds and returns the seconds it took: closed loop
    (`connections` workers back to back) or, with `rate`, open loop — request i is due at
    t0 + i/rate whatever happened to the ones before, and the time it waited counts. Open
    loop appends to `slips` how late (ms) each request was started: the client's own lag."""
    t0 = time.perf_counter()
    stop_at = t0 + duration
    if rate:
        tasks: set = set()
        pacer = Pacer()
        i = 0
        try:
            while True:
                due = t0 + i / rate
                if due >= stop_at:
                    break
                await pacer.sleep_until(due)
                if slips is not None:
                    slips.append(max(0.0, time.perf_counter() - due) * 1000)
                t = asyncio.ensure_future(one(due))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                i += 1
        finally:
            pacer.close()
        if tasks:
            await asyncio.wait(tasks)
    else:
        async def worker() -> None:
            while (t := time.perf_counter()) < stop_at:
                await one(t)

        await asyncio.gather(*[worker() for _ in range(connections)])
    return time.perf_counter() - t0


def lean_client(connections: int):
    """The built-in clients' HTTP: the gateway's own upstream client (proxy.httpclient), a
    keep-alive pool on httptools that costs a fraction of aiohttp's ClientSession per request.
    The load generator shares a core with the mock on small machines, so its own cost shows
    in every figure; `connections` bounds the requests in flight (late ones wait)."""
    from proxy.httpclient import HTTPClient

    return HTTPClient(connect_timeout=10, read_timeout=60, total_timeout=120,
                      limit=connections, limit_per_host=connections)


async def _aio(url: str, bodies: list[bytes], headers: dict[str, str], connections: int,
               duration: float, rate: float | None) -> LoadResult:
    from proxy.httpclient import HTTPClientError

    lat: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    source = Bodies(bodies)
    client = lean_client(connections)

    async def one(due: float) -> None:
        nonlocal errors
        data = source.next()
        due = min(due, time.perf_counter())  # a timer that fired early
        try:
            r = await client.request("POST", url, headers, data)
            await r.read()
            if r.status != 200:
                errors += 1
                kinds[f"HTTP {r.status}"] = kinds.get(f"HTTP {r.status}", 0) + 1
        except (HTTPClientError, OSError, asyncio.TimeoutError) as exc:
            errors += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        lat.append((time.perf_counter() - due) * 1000)

    slips: list[float] = []
    try:
        secs = await drive(one, connections, duration, rate, slips)
    finally:
        await client.close()
    lat.sort()
    return LoadResult("httptools", len(lat), errors, secs, len(lat) / secs if secs else 0.0,
                      mode="open" if rate else "closed", connections=connections, rate=rate,
                      error_kinds=kinds, slip_p99_ms=slip_p99(slips), **quantiles(lat))


# An open-loop client this late at p99 is part of what its latencies show (reports say so).
SLIP_NOTE_MS = 1.0


def slip_p99(slips: list[float]) -> float | None:
    """The p99 of an open-loop run's send slips (None for a closed-loop run, which has none)."""
    return quantiles(sorted(slips))["p99_ms"] if slips else None


def _child(cmd: list[str], spec: dict, timeout: float) -> bytes:
    """Runs a built-in client process (`python -m bench.loadgen` or `bench.sse_client`) with its
    job in a JSON file and returns what it printed: one JSON document."""
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.encode(spec))
    try:
        proc = subprocess.run([*cmd, path], cwd=ROOT, capture_output=True, timeout=timeout)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def run_load(url: str, body: bytes | None = None, *, bodies: list[bytes] | None = None,
             headers: dict[str, str] | None = None, connections: int = 32,
             duration: float = 5.0, cpus: str | None = None, rate: float | None = None,
             tool: str = "auto") -> LoadResult:
    """Closed loop at `connections` (wrk when installed, unless tool="builtin"), or open loop
    at `rate` requests/s (always the built-in client). `bodies` are sent in turn."""
    bodies = bodies or [body or b"{}"]
    hdrs = {**DEFAULT_HEADERS, **(headers or {})}
    if tool in ("auto", "wrk") and have_wrk() and rate is None and duration >= 1:
        return _wrk(url, bodies, hdrs, connections, duration, cpus)
    if tool == "wrk" and not have_wrk():
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    spec = {"url": url, "bodies": [b.decode() for b in bodies], "headers": hdrs,
            "connections": connections, "duration": duration, "rate": rate}
    out = _child(pinned([sys.executable, "-m", "bench.loadgen"], cpus), spec, duration + 90)
    return msgspec.json.decode(out, type=LoadResult)


def _run_in_loop(coro):
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen",
                                 description="The built-in load client: reads a JSON job, prints a JSON LoadResult.")
    ap.add_argument("job", help="JSON file: url, bodies, headers, connections, duration, rate")
    args = ap.parse_args(argv)
    with open(args.job, "rb") as fh:
        spec = msgspec.json.decode(fh.read())
    res = _run_in_loop(_aio(spec["url"], [b.encode() for b in spec["bodies"]], spec["headers"],
                            spec["connections"], spec["duration"], spec.get("rate")))
    sys.stdout.buffer.write(msgspec.json.encode(res))


if __name__ == "__main__":
    main()
