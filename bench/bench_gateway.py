"""Gateway overhead: the same load against the mock provider directly and through Faregate.

python -m bench.bench_gateway [--duration 10] [--connections 32] [--chunks 20]

The mock runs in its own process, the gateway in another (1 worker), each pinned to its own
core with taskset where there are two; the load generator shares the mock's core. Prints
requests/s and p50/p99 for non-stream and stream requests, direct vs gateway, and the ratio.
Caveat: on a 2-core machine the load generator competes with the mock; compare ratios from
one run, not absolute figures across machines.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request

import orjson
import yaml

from .loadgen import LoadResult, pinned, run_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def start_mock(port: int, cpus: str | None, **behavior) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.mocks", "--format", "openai", "--port", str(port)]
    for k, v in behavior.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    proc = subprocess.Popen(pinned(cmd, cpus), cwd=ROOT, stdout=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/_mock/stats")
    return proc


def start_gateway(port: int, upstream: str, cpus: str | None, extra_env: dict | None = None,
                  config_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    cfg = {"server": {"access_log": False}, "models": [
        {"name": "bench-model", "provider": "openai", "base_url": upstream, "api_key": "k"}]}
    for k, v in (config_extra or {}).items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(cfg, fh)
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(pinned([sys.executable, "-m", "proxy", "serve", "--config", path,
                                    "--port", str(port), "--no-access-log"], cpus),
                            cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/readyz")
    return proc, path


def body(stream: bool) -> bytes:
    return orjson.dumps({"model": "bench-model", "stream": stream,
                         "messages": [{"role": "user", "content": "Benchmark me, please."}]})


def row(name: str, r: LoadResult, base: LoadResult | None) -> str:
    ratio = f"{r.rps / base.rps:6.2f}x" if base and base.rps else "      "
    added = f"{r.p50_ms - base.p50_ms:+7.2f}" if base else "       "
    return (f"{name:<28} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {added} {ratio} "
            f"{r.errors:6d}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_gateway", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    ap.add_argument("--tool", choices=("auto", "wrk", "aiohttp"), default="auto")
    ap.add_argument("--impl", choices=("c", "py", "both"), default="c",
                    help="hot path of the gateway: compiled, pure-Python twin, or both")
    args = ap.parse_args(argv)
    multi = (os.cpu_count() or 1) > 1
    gw_cpu, other_cpu = ("0", "1") if multi else (None, None)
    mock_port = _free_port()
    mock = start_mock(mock_port, other_cpu, chunks=args.chunks)
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    procs = [mock]
    print(f"# Faregate gateway overhead — {platform.node()} {platform.machine()} "
          f"{os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# {args.duration:.0f}s per run, {args.connections} connections, {args.chunks} chunks per stream")
    print(f"{'scenario':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'ratio':>7} {'errors':>6}")
    try:
        impls = ("c", "py") if args.impl == "both" else (args.impl,)
        direct = {}
        for stream in (False, True):
            kind = "stream" if stream else "non-stream"
            run_load(upstream + "/chat/completions", body(stream), connections=args.connections,
                     duration=1, cpus=other_cpu, tool=args.tool)  # warm-up
            direct[stream] = run_load(upstream + "/chat/completions", body(stream),
                                      connections=args.connections, duration=args.duration,
                                      cpus=other_cpu, tool=args.tool)
            print(row(f"direct-to-mock {kind}", direct[stream], None), flush=True)
        for impl in impls:
            env = {"FAREGATE_NO_EXTENSIONS": "1"} if impl == "py" else {}
            port = _free_port()
            gw, cfg_path = start_gateway(port, upstream, gw_cpu, env)
            procs.append(gw)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            for stream in (False, True):
                kind = "stream" if stream else "non-stream"
                run_load(url, body(stream), connections=args.connections, duration=1,
                         cpus=other_cpu, tool=args.tool)
                r = run_load(url, body(stream), connections=args.connections,
                             duration=args.duration, cpus=other_cpu, tool=args.tool)
                print(row(f"faregate[{impl}] {kind}", r, direct[stream]), flush=True)
            gw.terminate()
            gw.wait(30)
            os.unlink(cfg_path)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)


if __name__ == "__main__":
    main()
