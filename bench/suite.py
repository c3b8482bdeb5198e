"""The bench suite: Faregate (and LiteLLM's proxy and Portkey's gateway when installed) in
front of the same mock provider, under the same load, side by side.

    python -m bench [--scenarios nonstream,stream,mixed,cache-hit,faults] [--mode both]
                    [--duration 10] [--warmup 2] [--connections 32] [--workers 1]
                    [--peers auto|none|bare,relay,litellm,portkey] [--soak-requests N] [--smoke]

For each scenario: the mock alone (direct), then each gateway in turn (one running at a
time), each pinned to its own core with taskset where there are cores enough:

- closed loop: the most requests/s at `--connections` (wrk, else the built-in client), with
  p50/p90/p99/max, errors, and the gateway's CPU time per request (/proc/PID/stat);
- open loop at half of that maximum (or `--rate`): the gateway's latency and the mock's alone
  at the same rate, whose difference is the latency the gateway adds; for streams the same
  with the SSE client, for the time to first byte, to first token, and the whole stream;
- the gateway's RSS (/proc/PID/status) sampled all along, and with --soak-requests a long
  closed-loop run for the leak check (RSS growth per 100k requests).

Results go to bench/reports/<date>/ (report.md, results.json, plots) via bench/report.py.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import msgspec

from . import peers as peers_mod
from .bench_gateway import ROOT, body, faregate_config, free_port, start_gateway, start_mock
from .loadgen import SLIP_NOTE_MS, LoadResult, have_wrk, run_load
from .stalls import measure as measure_stalls
from .peers import Target
from .sse_client import SSEResult, run_sse

__all__ = ["SCENARIOS", "Row", "Memory", "Results", "main", "run_suite", "ProcWatch", "plan_cpus"]

SCENARIOS = ("nonstream", "stream", "mixed", "cache-hit", "faults")
DEFAULT_SCENARIOS = ("nonstream", "stream", "mixed", "cache-hit", "faults")
# faults: the share of requests the mock answers with a 503
FAULT_PATCH = {"fault": "status", "status": 503, "fault_rate": 0.05}


# ---- results --------------------------------------------------------------------------------

class Row(msgspec.Struct, omit_defaults=True):
    """One scenario on one target."""
    scenario: str
    target: str
    closed: LoadResult | None = None
    open: LoadResult | None = None           # at `open.rate`
    direct_open: LoadResult | None = None    # the mock alone at the same rate
    sse: SSEResult | None = None
    direct_sse: SSEResult | None = None
    cpu_ms_per_req: float | None = None
    skipped: str | None = None
    closed_rps_runs: list[float] = []         # every closed-loop run with --repeat (closed: the median)


class Memory(msgspec.Struct):
    target: str
    workers: int
    start_mb: float                 # after the first warm-up
    end_mb: float
    max_mb: float                   # the whole process tree
    max_proc_mb: float              # the largest single process (a worker)
    requests: int                   # sent to it after the first warm-up
    growth_per_100k_mb: float | None
    samples: list[tuple[int, float]] = []   # (requests so far, RSS MB)


class Results(msgspec.Struct):
    meta: dict
    rows: list[Row]
    memory: list[Memory]
    peers: list[dict]
    notes: list[str] = []


# ---- processes --------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


class ProcWatch:
    """RSS and CPU time of a process and its descendants (workers, node children), from /proc."""

    def __init__(self, pid: int):
        self.pid = pid

    def pids(self) -> list[int]:
        kids = _children_map()
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, ()))
        return out

    @staticmethod
    def _rss_mb(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    @staticmethod
    def _cpu_s(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            return 0.0
        fields = data[data.rindex(b")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / _TICK   # utime + stime

    def rss(self) -> tuple[float, float]:
        """(total MB, largest single process MB)."""
        vals = [self._rss_mb(p) for p in self.pids()]
        return sum(vals), max(vals, default=0.0)

    def cpu_s(self) -> float:
        return sum(self._cpu_s(p) for p in self.pids())


class RssSampler:
    """Samples a target's RSS in a thread for its whole life; phases tell it how many requests
    have been sent so far, so growth can be read per request."""

    def __init__(self, watch: ProcWatch, interval: float = 0.25):
        self.watch = watch
        self.interval = interval
        self.max_mb = 0.0
        self.max_proc_mb = 0.0
        self.points: list[tuple[int, float]] = []   # (requests, MB) at phase boundaries
        self.requests = 0
        self.baseline_requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total, one = self.watch.rss()
            self.max_mb = max(self.max_mb, total)
            self.max_proc_mb = max(self.max_proc_mb, one)

    def mark(self, requests_sent: int) -> None:
        self.requests += requests_sent
        total, one = self.watch.rss()
        self.max_mb = max(self.max_mb, total)
        self.max_proc_mb = max(self.max_proc_mb, one)
        self.points.append((self.requests, round(total, 2)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def memory(self, name: str, workers: int) -> Memory | None:
        if len(self.points) < 2:
            return None
        base_req, base_mb = self.points[0]
        end_req, end_mb = self.points[-1]
        n = end_req - base_req
        return Memory(name, workers, base_mb, end_mb, self.max_mb, self.max_proc_mb, n,
                      rss_growth_per_100k(self.points), self.points)


STALL_PROBE_S = 3.0   # seconds of the idle-core probe (bench/stalls.py); --smoke: 0.5
WARM_SHARE = 0.2   # the first fifth of a run's requests fill bounded caches and the allocator


def rss_growth_per_100k(points: list[tuple[int, float]]) -> float | None:
    """MB of RSS per 100k requests: the least-squares slope over the samples after the first
    WARM_SHARE of the requests. A leak grows all along; what a worker fills once (the response
    cache up to its bound, allocator arenas, lazily imported code) grows only at the start, so
    it is left out, not averaged in (seen here: +19 MB in the first 100k requests, then
    75.67 -> 75.68 MB over the next million). Too few samples after the warm part: the slope
    over all of them."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    start = points[0][0] + WARM_SHARE * (points[-1][0] - points[0][0])
    late = [p for p in points if p[0] >= start]
    use = late if len(late) >= 3 else points
    xs = [p[0] for p in use]
    ys = [p[1] for p in use]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if not den:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 100_000


def plan_cpus(spec: str, workers: int) -> tuple[str | None, str | None, str | None]:
    """(gateway, mock, load generator) CPU lists for taskset. auto: the gateway's workers on
    the first cores, the mock on the next, the load generator on the one after, or sharing the
    mock's when there is none; with fewer cores than gateway workers + 1, no pinning."""
    if spec == "none" or not shutil.which("taskset"):
        return None, None, None
    n = os.cpu_count() or 1
    if spec == "auto":
        if n < workers + 1:
            return None, None, None
        gw = "0" if workers == 1 else f"0-{workers - 1}"
        mock = str(workers)
        load = str(workers + 1) if n > workers + 1 else mock
        return gw, mock, load
    parts = spec.split("/")
    if len(parts) != 3:
        raise SystemExit("--cpus: expected auto, none or GATEWAY/MOCK/LOAD (e.g. 0/1/1 or 0-1/2/3)")
    return tuple(p or None for p in parts)  # type: ignore[return-value]


# ---- progress -----------------------------------------------------------------------------------

class Progress:
    """A progress bar on stderr for long runs: redrawn in place on a terminal, one line per
    phase otherwise. `advance(seconds)` when a phase of that planned length is done."""

    def __init__(self, planned_s: float, enabled: bool):
        self.planned = max(planned_s, 1.0)
        self.done = 0.0
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.label = ""
        self.t0 = time.monotonic()
        self.phase_t0 = self.t0
        self.phase_len = 0.0
        self._stop = threading.Event()
        if enabled and self.tty:
            threading.Thread(target=self._tick, daemon=True).start()

    def phase(self, label: str, seconds: float) -> None:
        self.label, self.phase_len, self.phase_t0 = label, seconds, time.monotonic()
        if self.enabled and not self.tty:
            pct = 100 * self.done / self.planned
            print(f"[{pct:3.0f}%] {label} ({seconds:.0f}s)", file=sys.stderr, flush=True)

    def advance(self) -> None:
        self.done += self.phase_len
        self.phase_len = 0.0

    def _render(self) -> None:
        within = min(self.phase_len, time.monotonic() - self.phase_t0)
        frac = min(1.0, (self.done + within) / self.planned)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        left = max(0.0, self.planned - self.done - within)
        sys.stderr.write(f"\r[{bar}] {frac * 100:3.0f}% ~{left / 60:4.1f} min left  {self.label[:40]:<40}")
        sys.stderr.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._render()

    def close(self) -> None:
        self._stop.set()
        if self.enabled and self.tty:
            self._render()
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---- the run ------------------------------------------------------------------------------------

def _mock_behavior(mock_url: str, patch: dict) -> None:
    req = urllib.request.Request(mock_url + "/_mock/behavior", data=msgspec.json.encode(patch),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def _cache_reason() -> str | None:
    """Why the cache-hit scenario cannot run against Faregate, or None."""
    from proxy.config import Config
    if "cache" not in Config.__struct_fields__:
        return "the gateway has no `cache:` config section yet (issue 7)"
    return None


def _bodies(scenario: str) -> list[bytes]:
    if scenario == "stream":
        return [body(True, unique=True)]
    if scenario == "mixed":
        return [body(False, unique=True), body(True, unique=True)]
    if scenario == "cache-hit":
        return [body(False, unique=False)]
    return [body(False, unique=True)]


def slip_note(slips: list[tuple[str, float]]) -> str | None:
    """A report note when open-loop clients fell behind their schedule by more than
    SLIP_NOTE_MS at p99: those runs' latencies include the client's own lag (on a machine with
    few cores it shares one with the mock)."""
    late = [(slip, label) for label, slip in slips if slip > SLIP_NOTE_MS]
    if not late:
        return None
    worst, where = max(late)
    return (f"open loop: in {len(late)} of {len(slips)} runs the load client sent more than "
            f"{SLIP_NOTE_MS:g} ms late at p99 (worst {worst:.2f} ms, {where}); their latencies "
            "include the client's own lag")


def _median(items: list, key):
    """The item whose key is the median (the lower one of an even count)."""
    ranked = sorted(items, key=key)
    return ranked[(len(ranked) - 1) // 2]


def _nth(k: int, n: int) -> str:
    return f" ({k + 1}/{n})" if n > 1 else ""


class Suite:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.gw_cpu, self.mock_cpu, self.load_cpu = plan_cpus(args.cpus, args.workers)
        self.rows: list[Row] = []
        self.memory: list[Memory] = []
        self.peer_info: list[dict] = []
        self.notes: list[str] = []
        self.direct_closed: dict[str, LoadResult] = {}
        self.direct_runs: dict[tuple, LoadResult | SSEResult] = {}   # open loop / SSE, by rate
        self.slips: list[tuple[str, float]] = []   # (open-loop run, client's p99 send slip ms)
        self.workdir = tempfile.mkdtemp(prefix="faregate-bench-")
        self.progress: Progress | None = None

    # -- load helpers --
    def _closed(self, url: str, bodies: list[bytes], headers: dict, duration: float) -> LoadResult:
        return run_load(url, bodies=bodies, headers=headers, connections=self.a.connections,
                        duration=duration, cpus=self.load_cpu, tool=self.a.tool)

    def _open(self, url: str, bodies: list[bytes], headers: dict, rate: float) -> LoadResult:
        return run_load(url, bodies=bodies, headers=headers, connections=self.a.open_connections,
                        duration=self.a.open_duration, cpus=self.load_cpu, rate=rate,
                        tool=self.a.tool)

    def _sse(self, url: str, headers: dict, rate: float) -> SSEResult:
        return run_sse(url, [body(True, unique=True)], headers=headers,
                       connections=self.a.open_connections, duration=self.a.open_duration,
                       rate=rate, cpus=self.load_cpu)

    def _direct(self, key: tuple, label: str, measure):
        """The mock alone, measured by `measure()`: once per key, or, with --repeat, afresh
        for every repeat (each target run is then paired with a direct run made just after)."""
        if self.a.repeat > 1 or key not in self.direct_runs:
            self._phase(label, self.a.open_duration)
            self.direct_runs[key] = self._watch_slip(label, measure())
            self.progress.advance()
        return self.direct_runs[key]

    def _watch_slip(self, label: str, result):
        """Keeps how far behind its own schedule an open-loop client fell (see slip_note)."""
        slip = getattr(result, "slip_p99_ms", None)
        if slip is not None:
            self.slips.append((label, slip))
        return result

    def _paired(self, label: str, measure, direct, done, added) -> tuple:
        """--repeat runs of the target at one rate (`done(result)` after each), each paired
        with `direct()`; the pair whose `added` (target minus direct) is the median."""
        pairs = []
        for k in range(self.a.repeat):
            self._phase(f"{label}{_nth(k, self.a.repeat)}", self.a.open_duration)
            got = self._watch_slip(label, measure())
            self.progress.advance()
            done(got)
            pairs.append((got, direct()))
        return _median(pairs, lambda p: added(*p))

    def _open_rate(self, scenario: str, target: str) -> float | None:
        """The rate `target`'s open loop ran at in `scenario` (None when it has not run)."""
        for row in self.rows:
            if row.scenario == scenario and row.target == target:
                return row.open.rate if row.open is not None else None
        return None

    def _phase(self, label: str, seconds: float):
        assert self.progress is not None
        self.progress.phase(label, seconds)

    def planned_seconds(self, scenarios: list[str], n_targets: int) -> float:
        a = self.a
        per = 0.0
        for sc in scenarios:
            opens = 0 if a.mode == "closed" else (2 if sc != "stream" else 4)
            gw = max(a.warmup, 0) + a.repeat * ((a.duration if a.mode != "open" else 0)
                                               + opens * a.open_duration)
            per += a.duration + n_targets * gw
        soak = a.soak_requests / 3000 if a.soak_requests else 0
        return per + soak + 5 * n_targets + STALL_PROBE_S

    # -- one target --
    def run_target(self, target: Target, scenarios: list[str], mock_url: str) -> None:
        a = self.a
        watch = ProcWatch(target.pid) if target.pid else None
        sampler = RssSampler(watch) if watch else None
        first = True

        def mark(requests: int) -> None:
            """Tells the RSS sampler how many requests a run sent (the first run starts at 0)."""
            nonlocal first
            if sampler:
                sampler.mark(0 if first else requests)
                first = False
        for sc in scenarios:
            row = Row(sc, target.name)
            self.rows.append(row)
            if sc == "cache-hit" and target.name != "faregate" and not target.name.startswith("faregate"):
                row.skipped = "the peers are run without a cache"
                continue
            if sc == "cache-hit" and _cache_reason():
                row.skipped = _cache_reason()
                continue
            if sc in ("stream", "mixed") and not target.stream_ok:
                row.skipped = target.note
                continue
            bodies = _bodies(sc)
            if sc == "faults":
                _mock_behavior(mock_url, FAULT_PATCH)
            try:
                if a.warmup > 0:
                    self._phase(f"{target.name} {sc} warm-up", a.warmup)
                    w = self._closed(target.url, bodies, target.headers, a.warmup)
                    self.progress.advance()
                    mark(w.requests)
                rate = a.rate
                if a.mode != "open":
                    runs: list[tuple[LoadResult, float | None]] = []
                    for k in range(a.repeat):
                        self._phase(f"{target.name} {sc} closed loop{_nth(k, a.repeat)}", a.duration)
                        cpu0 = watch.cpu_s() if watch else 0.0
                        res = self._closed(target.url, bodies, target.headers, a.duration)
                        cpu = ((watch.cpu_s() - cpu0) * 1000 / res.requests
                               if watch and res.requests else None)
                        runs.append((res, cpu))
                        self.progress.advance()
                        mark(res.requests)
                    row.closed, _ = _median(runs, lambda run: run[0].rps)
                    cpus = [c for _, c in runs if c is not None]
                    row.cpu_ms_per_req = _median(cpus, float) if cpus else None
                    if a.repeat > 1:
                        row.closed_rps_runs = [r.rps for r, _ in runs]
                    rate = rate or max(1.0, round(row.closed.rps / 2))
                if target.rate_of and not a.rate:
                    rate = self._open_rate(sc, target.rate_of) or rate
                if a.mode != "closed" and rate:
                    at = f"at {rate:.0f}/s"
                    if sc == "stream":
                        row.sse, row.direct_sse = self._paired(
                            f"{target.name} {sc} SSE {at}",
                            lambda: self._sse(target.url, target.headers, rate),
                            lambda: self._direct(("sse", int(rate)), f"direct {sc} SSE {at}",
                                                 lambda: self._sse(self.direct_url, {}, rate)),
                            lambda r: sampler and sampler.mark(r.streams),
                            lambda t, d: t.ttft_p50_ms - d.ttft_p50_ms)
                    row.open, row.direct_open = self._paired(
                        f"{target.name} {sc} open loop {at}",
                        lambda: self._open(target.url, bodies, target.headers, rate),
                        lambda: self._direct((sc, int(rate)), f"direct {sc} open loop {at}",
                                             lambda: self._open(self.direct_url, bodies, {}, rate)),
                        lambda r: sampler and sampler.mark(r.requests),
                        lambda t, d: t.p50_ms - d.p50_ms)
            except RuntimeError as exc:
                row.skipped = f"failed: {str(exc).strip().splitlines()[0][:200]}"
            finally:
                if sc == "faults":
                    _mock_behavior(mock_url, {"fault": None, "status": 200, "fault_rate": 1.0})
        if sampler and a.soak_requests and target.name.startswith("faregate"):
            self.soak(target, sampler)
        if sampler:
            sampler.stop()
            mem = sampler.memory(target.name, target.workers)
            if mem:
                self.memory.append(mem)

    def soak(self, target: Target, sampler: RssSampler) -> None:
        """Non-stream closed-loop load in slices until --soak-requests were sent, marking RSS
        after each slice (the leak check)."""
        bodies = _bodies("nonstream")
        sent = 0
        slice_s = max(1.0, self.a.soak_slice)
        while sent < self.a.soak_requests:
            self._phase(f"{target.name} soak {sent:,}/{self.a.soak_requests:,} requests", slice_s)
            r = self._closed(target.url, bodies, target.headers, slice_s)
            self.progress.advance()
            if r.requests == 0:
                self.notes.append(f"soak stopped: a slice sent no request ({r.errors} errors)")
                break
            sent += r.requests
            sampler.mark(r.requests)
        self.notes.append(f"soak: {sent:,} non-stream requests to {target.name}")

    # -- everything --
    def run(self) -> Results:
        a = self.a
        scenarios = [s for s in a.scenarios.split(",") if s]
        for s in scenarios:
            if s not in SCENARIOS:
                raise SystemExit(f"unknown scenario {s!r} (choose from {', '.join(SCENARIOS)})")
        wanted_peers = self._wanted_peers()
        n_targets = len(self._impls()) + len(wanted_peers)
        planned = self.planned_seconds(scenarios, n_targets)
        show = a.progress == "on" or (a.progress == "auto" and planned >= 30)
        self.progress = Progress(planned, show)
        mock_port = free_port()
        mock = start_mock(mock_port, self.mock_cpu, chunks=a.chunks, chunk_delay_ms=a.chunk_delay_ms,
                          workers=a.mock_workers)
        mock_url = f"http://127.0.0.1:{mock_port}"
        upstream = mock_url + "/v1"
        self.direct_url = upstream + "/chat/completions"
        started = time.time()
        try:
            # how often the machine takes the gateway's core away, before any load
            probe_s = 0.5 if a.smoke else STALL_PROBE_S
            self._phase("the gateway's core, idle: stalls", probe_s)
            stalls = measure_stalls(probe_s, self.gw_cpu)
            self.progress.advance()
            # the mock alone, closed loop
            direct_row: dict[str, Row] = {}
            for sc in scenarios:
                row = Row(sc, "direct")
                direct_row[sc] = row
                if sc == "cache-hit":
                    row.skipped = "the mock has no cache"
                    self.rows.append(row)
                    continue
                if a.mode == "open":
                    self.rows.append(row)
                    continue
                if sc == "faults":
                    _mock_behavior(mock_url, FAULT_PATCH)
                try:
                    self._phase(f"direct {sc} closed loop", a.duration)
                    if a.warmup > 0:
                        self._closed(self.direct_url, _bodies(sc), {}, min(a.warmup, 1.0))
                    row.closed = self._closed(self.direct_url, _bodies(sc), {}, a.duration)
                    self.progress.advance()
                finally:
                    if sc == "faults":
                        _mock_behavior(mock_url, {"fault": None, "status": 200, "fault_rate": 1.0})
                self.rows.append(row)
            # Faregate
            for impl in self._impls():
                name = "faregate" if impl == "c" else "faregate-py"
                env = {"FAREGATE_NO_EXTENSIONS": "1"} if impl == "py" else {}
                port = free_port()
                self._phase(f"starting {name}", 2)
                cfg = faregate_config(upstream, workdir=self.workdir)
                proc, cfg_path = start_gateway(port, upstream, self.gw_cpu, env, workers=a.workers,
                                               config=cfg)
                self.progress.advance()
                target = Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", {}, proc,
                                a.workers, _faregate_version(impl), [cfg_path])
                try:
                    self.run_target(target, scenarios, mock_url)
                finally:
                    target.stop()
            # peers
            for name in wanted_peers:
                info = {"name": name}
                self.peer_info.append(info)
                st = peers_mod.peer_status(name)
                info.update(found=st.found, where=st.where, version=st.version)
                if not st.found:
                    info["skipped"] = st.reason
                    continue
                self._phase(f"starting {name}", 5)
                try:
                    target = peers_mod.start_peer(name, free_port(), upstream, self.gw_cpu, a.workers)
                except RuntimeError as exc:
                    info["skipped"] = str(exc).strip()[:600]
                    continue
                finally:
                    self.progress.advance()
                try:
                    why = peers_mod.probe(target, body(False), body(True))
                    if why:
                        info["skipped"] = why
                        continue
                    info["version"] = target.version
                    if target.note:
                        info["note"] = target.note
                    self.run_target(target, scenarios, mock_url)
                finally:
                    target.stop()
        finally:
            self.progress.close()
            mock.terminate()
            mock.wait(30)
            shutil.rmtree(self.workdir, ignore_errors=True)
        meta = machine_meta(a, started, self.gw_cpu, self.mock_cpu, self.load_cpu)
        meta["stalls"] = msgspec.to_builtins(stalls)
        note = slip_note(self.slips)
        if note:
            self.notes.append(note)
        return Results(meta, self.rows, self.memory, self.peer_info, self.notes)

    def _impls(self) -> list[str]:
        return ["c", "py"] if self.a.impl == "both" else [self.a.impl]

    def _wanted_peers(self) -> list[str]:
        p = self.a.peers
        if p == "none":
            return []
        if p == "auto":
            return [n for n in peers_mod.PEERS if peers_mod.peer_status(n).found]
        names = [n for n in p.split(",") if n]
        for n in names:
            if n not in peers_mod.PEERS:
                raise SystemExit(f"unknown peer {n!r} (choose from {', '.join(peers_mod.PEERS)})")
        return names


# ---- what the report says about where it ran ------------------------------------------------------

def _cmd_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return ""


def _faregate_version(impl: str) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        sha, dirty = "", ""
    from proxy import _fast
    if impl == "py":
        hot = "pure Python (FAREGATE_NO_EXTENSIONS=1)"
    else:
        hot = "compiled" if getattr(_fast, "IMPLEMENTATION", "py") == "c" else "pure Python (not built)"
    return f"git {sha or '?'}{'+dirty' if dirty else ''}, hot path {hot}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta(a: argparse.Namespace, started: float, gw_cpu, mock_cpu, load_cpu) -> dict:
    import aiohttp
    try:
        import uvloop
        uv = uvloop.__version__
    except ImportError:
        uv = "not installed"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "?"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "command": a.command_line,
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uv,
        "faregate": _faregate_version(a.impl if a.impl != "both" else "c"),
        "load_tool": ("wrk " + _cmd_version(["wrk", "--version"]).split(" [")[0].replace("wrk ", ""))
                     if have_wrk() and a.tool != "builtin" else "built-in client (proxy.httpclient)",
        "node": _cmd_version(["node", "--version"]) if shutil.which("node") else "",
        "pinning": (f"gateway cpu {gw_cpu}, mock cpu {mock_cpu}, load generator cpu {load_cpu}"
                    if gw_cpu else "none"),
        "load_average_at_end": load,
        "duration_s": a.duration, "warmup_s": a.warmup, "open_duration_s": a.open_duration,
        "connections": a.connections, "open_connections": a.open_connections,
        "workers": a.workers, "mock_workers": a.mock_workers, "chunks": a.chunks,
        "chunk_delay_ms": a.chunk_delay_ms, "mode": a.mode, "smoke": a.smoke,
        "wall_s": round(time.time() - started, 1),
    }


# ---- command line -------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                    help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)")
    ap.add_argument("--mode", choices=("both", "closed", "open"), default="both",
                    help="closed: max throughput; open: latency at --rate; both (default): "
                         "closed, then open at half the measured maximum")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per closed-loop run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each measurement (closed loop; open loop paired with a direct "
                         "run each time); the median is reported, the spread noted. On a shared "
                         "machine use 3 or more")
    ap.add_argument("--open-duration", type=float, default=None,
                    help="seconds per open-loop run (default: --duration)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    ap.add_argument("--connections", type=int, default=32, help="closed loop: concurrent connections")
    ap.add_argument("--open-connections", type=int, default=64,
                    help="open loop: most requests in flight (late ones wait, and it counts)")
    ap.add_argument("--rate", type=float, default=None,
                    help="open loop: requests/s (default: half the closed-loop maximum)")
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0, help="the mock's delay between chunks")
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes (peers too)")
    ap.add_argument("--mock-workers", type=int, default=1)
    ap.add_argument("--impl", choices=("c", "py", "both"), default="c",
                    help="Faregate's hot path: compiled, pure-Python twin, or both")
    ap.add_argument("--peers", default="auto",
                    help="auto (bare, relay and those installed), none, or a list: "
                         "bare,relay,litellm,portkey")
    ap.add_argument("--tool", choices=("auto", "wrk", "builtin"), default="auto",
                    help="closed-loop load: wrk when installed (auto), or the built-in client")
    ap.add_argument("--cpus", default="auto",
                    help="taskset CPU lists GATEWAY/MOCK/LOAD (e.g. 0/1/1), auto, or none")
    ap.add_argument("--soak-requests", type=int, default=0,
                    help="after the scenarios, this many non-stream requests to Faregate for "
                         "the RSS leak check (e.g. 1000000)")
    ap.add_argument("--soak-slice", type=float, default=15.0, help="seconds per soak slice")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "reports"),
                    help="reports go to OUT/<date-time>/ (and OUT/latest)")
    ap.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                    help="progress bar on stderr (auto: for runs planned over 30 s)")
    ap.add_argument("--no-plots", action="store_true", help="markdown only, even with matplotlib")
    ap.add_argument("--update-readme", action="store_true",
                    help="put the summary table between the bench markers in README.md")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds: non-stream and stream, 1 s runs, no peers (for CI)")
    return ap


def run_suite(argv: list[str]) -> tuple[Results, str]:
    from . import report

    args = parser().parse_args(argv)
    args.command_line = "python -m bench " + shlex.join(argv) if argv else "python -m bench"
    if args.smoke:
        args.scenarios = "nonstream,stream" if args.scenarios == ",".join(DEFAULT_SCENARIOS) else args.scenarios
        args.duration = 1.0
        args.open_duration = args.open_duration or 0.5
        args.warmup = 0.3
        args.connections = min(args.connections, 16)
        if args.peers == "auto":
            args.peers = "none"
    if args.open_duration is None:
        args.open_duration = args.duration
    results = Suite(args).run()
    folder = report.write(results, args.out, plots=not args.no_plots)
    if args.update_readme:
        report.update_readme(results, os.path.join(ROOT, "README.md"), folder)
    return results, folder


def main(argv: list[str] | None = None) -> int:
    from . import report

    argv = list(sys.argv[1:] if argv is None else argv)
    results, folder = run_suite(argv)
    print(report.summary_text(results))
    print(f"\nreport: {os.path.join(folder, 'report.md')}")
    return 0
