"""Response cache: exact hits vs misses vs the upstream itself, and semantic lookup cost.

python -m bench.bench_cache [--duration 5] [--connections 32] [--latency-ms 20]

1. The mock provider answers after `--latency-ms` (a fast real provider); the gateway (1
   worker, in-memory cache) is driven with the same body: as exact hits, as misses
   (`x-faregate-cache: no-cache`: lookup, forward, store) and, for reference, the mock
   directly. A hit must beat the direct call: it never waits for the upstream.
2. In process: one semantic lookup (built-in embedding of the question + cosine top-k over
   one partition + the guard on the candidates) at 10k and 100k entries, all in the same
   partition (the worst case: partitions only make it cheaper).
Caveat: on a 2-core machine the load generator shares a core with the mock.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import numpy as np
import orjson

from .bench_gateway import _free_port, row, start_gateway, start_mock
from .loadgen import run_load


def _body() -> bytes:
    return orjson.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "Cache me, please."}]})


def http_rows(args) -> None:
    multi = (os.cpu_count() or 1) > 1
    gw_cpu, other_cpu = ("0", "1") if multi else (None, None)
    mock_port, gw_port = _free_port(), _free_port()
    mock = start_mock(mock_port, other_cpu, latency_ms=args.latency_ms)
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    gw, cfg_path = start_gateway(gw_port, upstream, gw_cpu, config_extra={
        "cache": {"enabled": True}, "ledger": {"enabled": False}})
    url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
    try:
        kw = dict(connections=args.connections, duration=args.duration, cpus=other_cpu)
        direct = run_load(upstream + "/chat/completions", _body(), **kw)
        print(row(f"direct-to-mock ({args.latency_ms:.0f} ms)", direct, None), flush=True)
        miss = run_load(url, _body(), headers={"x-faregate-cache": "no-cache"}, **kw)
        print(row("faregate miss (no-cache)", miss, direct), flush=True)
        hit = run_load(url, _body(), **kw)
        print(row("faregate exact hit", hit, direct), flush=True)
    finally:
        for p in (gw, mock):
            p.terminate()
            p.wait(30)
        os.unlink(cfg_path)


def semantic_rows(sizes: list[int]) -> None:
    from proxy.cache.embedders import HashedEmbedder
    from proxy.cache.guard import near_miss
    from proxy.cache.semantic import VectorIndex

    emb = HashedEmbedder()
    rng = random.Random(42)
    vocab = ("reset password account email billing invoice refund order shipping delivery dark mode "
             "settings profile photo upload download export report chart table python list sort "
             "string convert miles kilometers weather paris london tokyo recipe bread coffee").split()
    far = time.time() + 86400
    for n in sizes:
        idx = VectorIndex(n)
        questions = [" ".join(rng.choice(vocab) for _ in range(rng.randint(4, 9))) for _ in range(n)]
        vecs = np.stack([emb.vector(q) for q in questions])
        for i in range(n):
            idx.add(b"p", i.to_bytes(8, "big"), vecs[i], questions[i], far)
        probes = [questions[rng.randrange(n)] + " please" for _ in range(200)]
        times = []
        for q in probes:
            t = time.perf_counter()
            v = emb.vector(q)
            for c in idx.search(b"p", v, 0.8):
                if near_miss(q, c.text) is None:
                    break
            times.append((time.perf_counter() - t) * 1e6)
        times.sort()
        print(f"semantic lookup, {n:>7} entries in one partition: p50 {statistics.median(times):8.0f} us   "
              f"p99 {times[int(len(times) * 0.99) - 1]:8.0f} us   (dim {emb.dim})", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_cache", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--skip-http", action="store_true")
    args = ap.parse_args(argv)
    print(f"# Faregate response cache — {platform.node()} {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    if not args.skip_http:
        print(f"{'scenario':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'ratio':>7} {'errors':>6}")
        http_rows(args)
    semantic_rows([int(s) for s in args.sizes.split(",")])


if __name__ == "__main__":
    main()
