"""python -m bench profile: where the gateway worker spends its time under load.

Starts the mock and Faregate (pinned as in the suite), puts closed-loop load on it, and has
py-spy sample the worker: first as raw collapsed stacks (for the top frames printed here and
written to top.md), then as a flame graph (flame.svg). py-spy attaches with ptrace, so it
needs root or CAP_SYS_PTRACE. With --workers > 1 it samples every worker (--subprocesses).

    python -m bench profile [--scenario nonstream|stream|mixed] [--duration 10] [--native]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from .bench_gateway import ROOT, body, faregate_config, free_port, start_gateway, start_mock
from .loadgen import run_load
from .suite import plan_cpus

__all__ = ["main", "top_frames"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    """`handle (proxy/handlers.py:42)` -> `handle (proxy/handlers.py)`, paths cut at site-packages."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for cut in ("site-packages/", "/work/main/", ROOT + "/"):
        if cut in path:
            path = path.split(cut, 1)[1]
    return f"{m.group('func')} ({path})"


def top_frames(raw_path: str, n: int = 25) -> dict:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    by_file: dict[str, int] = {}
    total = 0
    with open(raw_path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                c = int(count)
            except ValueError:
                continue
            frames = [_short(f) for f in stack.split(";")[1:]]   # the first is the thread
            if not frames:
                continue
            total += c
            leaf = frames[-1]
            self_c[leaf] = self_c.get(leaf, 0) + c
            m = re.search(r"\(([^()]*)\)$", leaf)
            f = m.group(1) if m else leaf
            by_file[f] = by_file.get(f, 0) + c
            for fr in set(frames):
                incl[fr] = incl.get(fr, 0) + c

    # the frames every stack shares (runpy, cli.main, the event loop's run) say nothing
    root = max(incl.values(), default=0)
    incl = {k: v for k, v in incl.items() if v < root}

    def top(d: dict[str, int]) -> list[tuple[str, int, float]]:
        return [(k, v, 100 * v / total if total else 0.0)
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "self": top(self_c), "inclusive": top(incl), "files": top(by_file)}


def _render(tops: dict, title: str) -> str:
    out = [f"# {title}", "", f"{tops['samples']:,} samples (idle time not sampled)", ""]
    for key, head in (("self", "Top frames by own time (self)"),
                      ("inclusive", "Top frames including callees (inclusive)"),
                      ("files", "Own time by file")):
        out += [f"## {head}", "", "| % | samples | frame |", "|---:|---:|---|"]
        out += [f"| {pct:.1f} | {cnt:,} | `{name}` |" for name, cnt, pct in tops[key]]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=("nonstream", "stream", "mixed"), default="nonstream")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sampling (each of two recordings)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--impl", choices=("c", "py"), default="c")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--native", action="store_true", help="also sample native (C/Cython) frames")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--cpus", default="auto")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "reports"))
    args = ap.parse_args(argv)
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    gw_cpu, mock_cpu, load_cpu = plan_cpus(args.cpus, args.workers)
    folder = os.path.join(args.out, "profile-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(folder, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="faregate-profile-")
    mock_port = free_port()
    mock = start_mock(mock_port, mock_cpu, chunks=args.chunks)
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    env = {"FAREGATE_NO_EXTENSIONS": "1"} if args.impl == "py" else {}
    port = free_port()
    gw, cfg_path = start_gateway(port, upstream, gw_cpu, env, workers=args.workers,
                                 config=faregate_config(upstream, workdir=workdir))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    bodies = {"nonstream": [body(False, True)], "stream": [body(True, True)],
              "mixed": [body(False, True), body(True, True)]}[args.scenario]
    load_s = 2 * args.duration + 6
    result: dict = {}

    def load() -> None:
        result["load"] = run_load(url, bodies=bodies, connections=args.connections,
                                  duration=load_s, cpus=load_cpu)

    raw = os.path.join(folder, "stacks.txt")
    svg = os.path.join(folder, "flame.svg")
    common = ["--pid", str(gw.pid), "--rate", str(args.rate)]
    if args.workers > 1:
        common.append("--subprocesses")
    # --nonblocking keeps py-spy from pausing the worker (the figures stay honest), but
    # py-spy cannot unwind native stacks without pausing, so --native trades it away
    common.append("--native" if args.native else "--nonblocking")
    try:
        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(2)   # warm-up under load
        print(f"py-spy: {args.duration:.0f}s of {args.scenario} load on pid {gw.pid} ...", file=sys.stderr)
        rc1 = subprocess.run([pyspy, "record", *common, "--duration", str(int(args.duration)),
                              "--format", "raw", "--output", raw], capture_output=True, text=True)
        rc2 = subprocess.run([pyspy, "record", *common, "--duration", str(int(args.duration)),
                              "--format", "flamegraph", "--output", svg], capture_output=True, text=True)
        t.join(load_s + 60)
    finally:
        gw.terminate()
        gw.wait(30)
        mock.terminate()
        mock.wait(30)
        os.unlink(cfg_path)
        shutil.rmtree(workdir, ignore_errors=True)
    if rc1.returncode != 0 or not os.path.exists(raw):
        print(f"py-spy failed ({rc1.returncode}): {rc1.stderr.strip()[-800:]}", file=sys.stderr)
        return 1
    tops = top_frames(raw, args.top)
    lr = result.get("load")
    title = (f"Faregate worker under {args.scenario} load"
             + (f": {lr.rps:,.0f} req/s, p50 {lr.p50_ms:.2f} ms, {lr.errors} errors" if lr else ""))
    text = _render(tops, title)
    with open(os.path.join(folder, "top.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)
    print(f"\nflame graph: {svg if rc2.returncode == 0 else '(failed: ' + rc2.stderr.strip()[-200:] + ')'}")
    print(f"stacks: {raw}\ntop frames: {os.path.join(folder, 'top.md')}")
    return 0
