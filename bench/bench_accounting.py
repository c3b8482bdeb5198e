"""What the spend ledger and Prometheus metrics cost: gateway throughput with both on vs off.

python -m bench.bench_accounting [--duration 8] [--rounds 3] [--connections 32] [--chunks 20]

The same load (bench_gateway's mock, gateway start-up and load generator, reused) against a
1-worker gateway with `ledger` + `metrics` enabled and with both disabled (the gateway's
cache, where the build has one, is off in both, so every request goes upstream and is
booked). The two configurations alternate for --rounds rounds, each run after a warm-up,
because this machine is shared and its speed drifts; the table shows every run, then the
median of each and the ratio on/off (target: >= 0.90). Throughput on a shared machine is
noisy, so it also reports the gateway process's CPU time per request (user + system, its
ledger writer thread included, from /proc): far steadier, and for a CPU-bound gateway
its inverse ratio is the throughput ratio. After each "on" run it checks that the ledger
holds a row for every request the load generator completed and that none was dropped.
Also prints the per-request cost of the two sinks alone, in microseconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
import urllib.request

from .bench_gateway import body, start_gateway, start_mock
from .loadgen import LoadResult, run_load

__all__ = ["main", "sink_cost_us"]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(on: bool, workdir: str) -> dict:
    from proxy.config import Config

    extra: dict = {"ledger": {"enabled": on, "path": os.path.join(workdir, "ledger.sqlite3")},
                   "metrics": {"enabled": on}}
    if "cache" in Config.__struct_fields__:
        extra["cache"] = {"enabled": False}
    return extra


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ledger_rows(path: str) -> int:
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests WHERE status = 200").fetchone()[0]
    finally:
        conn.close()


def _dropped(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "faregate_ledger_rows_dropped_total")


def sink_cost_us(n: int = 20000) -> dict[str, float]:
    """Microseconds per request spent in the metrics and ledger sinks (in this process)."""
    from proxy.config import LedgerConfig
    from proxy.ledger import Ledger
    from proxy.metrics import Metrics
    from proxy.record import RequestRecord

    rec = RequestRecord(time.time(), "req_0123456789abcdef", "chat")
    rec.route, rec.provider, rec.model, rec.status, rec.stream = "m", "openai", "gpt-4o-mini", 200, True
    rec.latency_ms, rec.ttft_ms, rec.attempts, rec.key_id = 120.0, 30.0, 1, "team"
    rec.prompt_tokens, rec.completion_tokens, rec.cost_usd, rec.tags = 50, 20, 1.9e-5, ["web"]
    metrics = Metrics(["m"])
    ledger = Ledger(LedgerConfig(path=os.devnull, batch_size=n + 1, queue_max=n + 1))
    out = {}
    for name, sink in (("metrics", metrics), ("ledger", ledger)):
        sink(rec)
        t = time.perf_counter()
        for _ in range(n):
            sink(rec)
        out[name] = (time.perf_counter() - t) / n * 1e6
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_accounting", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="on/off pairs (alternating)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    ap.add_argument("--tool", choices=("auto", "wrk", "builtin"), default="auto")
    ap.add_argument("--stream", choices=("no", "yes", "both"), default="both")
    args = ap.parse_args(argv)
    multi = (os.cpu_count() or 1) > 1
    gw_cpu, other_cpu = ("0", "1") if multi else (None, None)
    workdir = tempfile.mkdtemp(prefix="faregate-bench-accounting-")
    mock_port = _free_port()
    mock = start_mock(mock_port, other_cpu, chunks=args.chunks)
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    print(f"# Faregate ledger + metrics overhead — {platform.node()} {platform.machine()} "
          f"{os.cpu_count()} cpus, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# {args.duration:.0f}s per run, {args.connections} connections, {args.rounds} alternating "
          f"rounds, 1 gateway worker")
    costs = sink_cost_us()
    print(f"# sinks alone: metrics {costs['metrics']:.1f} us, ledger {costs['ledger']:.1f} us per request "
          f"(+ the SQLite insert in the writer thread)")
    print(f"{'run':<30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'cpu us/req':>10}  ledger check")
    streams = {"no": (False,), "yes": (True,), "both": (False, True)}[args.stream]
    summary = []
    try:
        for stream in streams:
            kind = "stream" if stream else "non-stream"
            results: dict[bool, list[LoadResult]] = {True: [], False: []}
            cpu: dict[bool, list[float]] = {True: [], False: []}
            for rnd in range(args.rounds):
                for on in ((False, True) if rnd % 2 == 0 else (True, False)):
                    port = _free_port()
                    ledger = os.path.join(workdir, "ledger.sqlite3")
                    for suffix in ("", "-wal", "-shm"):
                        if os.path.exists(ledger + suffix):
                            os.unlink(ledger + suffix)
                    gw, cfg_path = start_gateway(port, upstream, gw_cpu, config_extra=_config(on, workdir))
                    try:
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        run_load(url, body(stream), connections=args.connections, duration=1,
                                 cpus=other_cpu, tool=args.tool)
                        before = 0
                        if on:
                            time.sleep(1.0)  # the warm-up's last batch
                            before = _ledger_rows(ledger)
                        c0 = _cpu_s(gw.pid)
                        r = run_load(url, body(stream), connections=args.connections,
                                     duration=args.duration, cpus=other_cpu, tool=args.tool)
                        per_req = (_cpu_s(gw.pid) - c0) / max(1, r.requests) * 1e6
                        check = ""
                        if on:
                            dropped = _dropped(port)
                        gw.terminate()
                        gw.wait(60)
                        if on:
                            # wrk's count stops at its deadline; requests still in flight then
                            # finish too and are booked, so the ledger may hold a few more
                            rows = _ledger_rows(ledger) - before
                            check = (f"{rows} rows for {r.requests - r.errors} ok "
                                     f"({rows - (r.requests - r.errors):+d}), {dropped:.0f} dropped")
                    finally:
                        if gw.poll() is None:
                            gw.kill()
                            gw.wait()
                        os.unlink(cfg_path)
                    results[on].append(r)
                    cpu[on].append(per_req)
                    name = f"{kind} ledger+metrics {'on' if on else 'off'} #{rnd + 1}"
                    print(f"{name:<30} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:6d} "
                          f"{per_req:10.0f}  {check}", flush=True)
            off = statistics.median(x.rps for x in results[False])
            on_ = statistics.median(x.rps for x in results[True])
            ratios = [a.rps / b.rps for a, b in zip(results[True], results[False])]
            c_off, c_on = statistics.median(cpu[False]), statistics.median(cpu[True])
            summary.append(f"{kind:<11} median off {off:6.0f} req/s, on {on_:6.0f} req/s: on/off "
                           f"{on_ / off:5.3f} (rounds {min(ratios):.3f}..{max(ratios):.3f}); "
                           f"cpu per request off {c_off:.0f} us, on {c_on:.0f} us: off/on {c_off / c_on:5.3f}")
    finally:
        if mock.poll() is None:
            mock.terminate()
            mock.wait(30)
    print()
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
