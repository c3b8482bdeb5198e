"""The bench suite's report: markdown (report.md), the raw results (results.json) and, when
matplotlib is installed (`pip install -e '.[bench]'`), plots: the latency CDF of each scenario
and the throughput of each gateway. The only place results are formatted."""
from __future__ import annotations

import os
import re
import time

import msgspec

from .loadgen import SLIP_NOTE_MS
from .stalls import Stalls

__all__ = ["write", "summary_text", "update_readme", "targets", "TARGETS", "README_BEGIN",
           "README_END"]

README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"

# Faregate's goals, per worker on one core, every feature on, cache miss (issue 8).
TARGETS = {
    "nonstream_rps": 4000.0,
    "streams_per_s": 3000.0,
    "added_p50_ms": 0.5,
    "added_p99_ms": 1.5,
    "added_ttft_ms": 1.0,
    "rss_mb": 80.0,
    "rss_growth_per_100k_mb": 0.5,
}

CAVEATS = """\
Caveats, before any number:

- Everything runs on one machine over loopback: the mock provider, the gateway and the load
  generator share its cores (pinned apart with taskset where there are enough). On a 2-core
  machine the load generator shares the mock's core, so the mock and the client slow each other
  and absolute figures are lower than on a bigger machine. Compare ratios from one run, not
  absolute figures across machines or runs.
- Other work on the machine (other users, tests) depresses and adds noise to every figure; the
  load average at the end of the run is recorded below.
- The mock answers at once (no model latency), so these figures are the gateway's own cost,
  which a real provider's hundreds of milliseconds dwarf in practice.
- Closed-loop figures are the most each target did at the given connections; open-loop latency
  is measured from when each request was due (no coordinated omission), by the built-in Python
  client, whose own overhead is in both the gateway's and the direct figures and cancels out of
  "added" only on average.
- Peers run with the settings in bench/peers.py (LiteLLM: offline cost map, master key, one
  worker per --workers; Portkey: one node process). They are not tuned further."""


def _f(v: float | None, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{nd}f}"


def _rows(results) -> list:
    return [r for r in results.rows if not r.skipped]


def _row(results, scenario: str, target: str):
    for r in results.rows:
        if r.scenario == scenario and r.target == target:
            return r
    return None


def _targets_order(results) -> list[str]:
    seen: list[str] = []
    for r in results.rows:
        if r.target not in seen:
            seen.append(r.target)
    return seen


def _good(r) -> int:
    """Successful requests (or streams) in a LoadResult or SSEResult."""
    n = r.streams if hasattr(r, "streams") else r.requests
    return n - r.errors


def _added(a, b, field: str) -> float | None:
    """a's figure minus b's; None unless both had successes (an all-errors run has no latency)."""
    if a is None or b is None or _good(a) <= 0 or _good(b) <= 0:
        return None
    return getattr(a, field) - getattr(b, field)


def _lag(*runs) -> str:
    """Says so when the open-loop client of these runs (a target's and its direct run) fell
    more than SLIP_NOTE_MS behind its schedule at p99: the latencies then carry its lag."""
    slips = [r.slip_p99_ms for r in runs if r is not None and r.slip_p99_ms is not None]
    worst = max(slips, default=0.0)
    return f"the load client ran {_f(worst)} ms late at p99" if worst > SLIP_NOTE_MS else ""


def _relay_added(results, field: str, fg_row) -> str:
    """What the byte relay (bench/relay.py) added in the same run at the same rate as
    Faregate (the machine's share), or "" when it did not run at that rate."""
    relay = _row(results, "nonstream", "relay")
    if relay is None or relay.open is None or fg_row is None or fg_row.open is None or \
            relay.open.rate != fg_row.open.rate:
        return ""
    v = _added(relay.open, relay.direct_open, field)
    return f"a bare byte relay: {_f(v)} ms" if v is not None else ""


def _aside(*parts: str) -> str:
    """The non-empty parts in parentheses after a figure."""
    said = [p for p in parts if p]
    return f" ({'; '.join(said)})" if said else ""


def _error_share(*results) -> float:
    n = sum((r.streams if hasattr(r, "streams") else r.requests) for r in results if r)
    e = sum(r.errors for r in results if r)
    return e / n if n else 0.0


def _mem(results, target: str):
    return next((m for m in results.memory if m.target == target), None)


def targets(results) -> list[tuple[str, str, str, str]]:
    """(what, goal, measured, PASS/FAIL/n/a) for Faregate (compiled hot path)."""
    out = []
    fg = "faregate" if any(r.target == "faregate" for r in results.rows) else "faregate-py"
    workers = results.meta.get("workers", 1) or 1
    ns = _row(results, "nonstream", fg)
    st = _row(results, "stream", fg)

    def verdict(val: float | None, goal: float, higher: bool, *runs) -> str:
        if val is None:
            return "n/a" if not runs or _error_share(*runs) < 0.01 else "FAIL (errors)"
        if runs and _error_share(*runs) >= 0.01:
            return f"FAIL ({_error_share(*runs):.0%} errors)"
        return "PASS" if (val >= goal if higher else val <= goal) else "FAIL"

    def spread(row) -> str:
        runs = row.closed_rps_runs if row else []
        if len(runs) < 2:
            return ""
        return f" (median of {len(runs)}: {_f(min(runs) / workers)}–{_f(max(runs) / workers)})"

    v = ns.closed.rps / workers if ns and ns.closed else None
    out.append(("non-stream requests/s per worker", f"≥ {TARGETS['nonstream_rps']:,.0f}", _f(v) + spread(ns),
                verdict(v, TARGETS["nonstream_rps"], True, ns.closed if ns else None)))
    v = st.closed.rps / workers if st and st.closed else None
    out.append(("streams/s per worker", f"≥ {TARGETS['streams_per_s']:,.0f}", _f(v) + spread(st),
                verdict(v, TARGETS["streams_per_s"], True, st.closed if st else None)))
    rate = f" (at {ns.open.rate:.0f}/s)" if ns and ns.open else ""
    lag = _lag(ns.open, ns.direct_open) if ns else ""
    for p in ("p50", "p99"):
        v = _added(ns.open, ns.direct_open, f"{p}_ms") if ns else None
        goal = TARGETS[f"added_{p}_ms"]
        measured = _f(v) + " ms" + _aside(_relay_added(results, f"{p}_ms", ns), lag)
        out.append((f"added latency {p}, half of max load{rate}", f"≤ {goal} ms",
                    measured if v is not None else "–",
                    verdict(v, goal, False, ns.open if ns else None)))
    v = _added(st.sse, st.direct_sse, "ttft_p50_ms") if st else None
    lag = _lag(st.sse, st.direct_sse) if st else ""
    out.append(("added time to first token, p50", f"≤ {TARGETS['added_ttft_ms']} ms",
                _f(v) + " ms" + _aside(lag) if v is not None else "–",
                verdict(v, TARGETS["added_ttft_ms"], False, st.sse if st else None)))
    m = _mem(results, fg)
    v = m.max_proc_mb if m else None
    out.append(("RSS per worker (max)", f"≤ {TARGETS['rss_mb']:.0f} MB", _f(v, 1) + " MB" if v else "–",
                verdict(v, TARGETS["rss_mb"], False)))
    if m and m.growth_per_100k_mb is not None:
        g = m.growth_per_100k_mb
        note = f"{g:+.2f} MB per 100k over {m.requests:,} requests"
        status = verdict(g, TARGETS["rss_growth_per_100k_mb"], False)
        if m.requests < 100_000:
            status = "n/a"
            note += " (too few to tell; the goal is over 1M: --soak-requests 1000000)"
        elif m.requests < 1_000_000:
            note += " (the goal is over 1M: --soak-requests 1000000)"
    else:
        note, status = "–", "n/a"
    out.append(("RSS flat (growth per 100k requests)", f"≤ {TARGETS['rss_growth_per_100k_mb']} MB", note,
                status))
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ratio(v: float | None, base: float | None) -> str:
    if v is None or not base:
        return ""
    return f" ({v / base:.2f}×)"


def side_by_side(results) -> str:
    """One table with every gateway: throughput, added latency, TTFT, CPU and memory, each
    peer's figure followed by its ratio to Faregate's."""
    names = [t for t in _targets_order(results) if t != "direct"]
    if not names:
        return ""
    base = names[0]
    metrics = []
    for sc in dict.fromkeys(r.scenario for r in results.rows):
        metrics += [
            (f"{sc}: req/s (closed loop)", lambda r: r.closed.rps if r and r.closed else None),
            (f"{sc}: p50 ms (closed loop)", lambda r: r.closed.p50_ms if r and r.closed and _good(r.closed) > 0 else None),
            (f"{sc}: added p50 ms (open loop)", lambda r: _added(r.open, r.direct_open, "p50_ms") if r else None),
            (f"{sc}: added p99 ms (open loop)", lambda r: _added(r.open, r.direct_open, "p99_ms") if r else None),
            (f"{sc}: errors (closed loop)", lambda r: r.closed.errors if r and r.closed else None),
            (f"{sc}: CPU ms per request", lambda r: r.cpu_ms_per_req if r else None),
        ]
        if sc == "stream":
            metrics += [
                ("stream: TTFT p50 ms (open loop)", lambda r: r.sse.ttft_p50_ms if r and r.sse and _good(r.sse) > 0 else None),
                ("stream: errors (SSE, open loop)", lambda r: r.sse.errors if r and r.sse else None),
                ("stream: added TTFT p50 ms", lambda r: _added(r.sse, r.direct_sse, "ttft_p50_ms") if r else None),
                ("stream: whole stream p50 ms", lambda r: r.sse.total_p50_ms if r and r.sse and _good(r.sse) > 0 else None),
            ]
    rows = []
    for label, get in metrics:
        sc = label.split(":")[0]
        vals = [get(_row(results, sc, n)) for n in names]
        if all(v is None for v in vals):
            continue
        cells = [label]
        for i, v in enumerate(vals):
            cell = _f(v)
            if i and v is not None and vals[0] not in (None, 0) and "added" not in label and "errors" not in label:
                cell += _ratio(v, vals[0])
            cells.append(cell)
        rows.append(cells)
    for label, get in [("RSS max, MB (largest process)", lambda m: m.max_proc_mb if m else None)]:
        vals = [get(_mem(results, n)) for n in names]
        if any(v is not None for v in vals):
            rows.append([label] + [_f(v, 1) + (_ratio(v, vals[0]) if i and v else "")
                                   for i, v in enumerate(vals)])
    head = ["metric"] + [n if i == 0 else f"{n} (× {base})" for i, n in enumerate(names)]
    return _table(head, rows)


def summary_text(results) -> str:
    parts = [f"## Faregate bench — {results.meta['date']}", "",
             f"`{results.meta['command']}` on {results.meta['cores']} × {results.meta['cpu']}, "
             f"load average at the end {results.meta['load_average_at_end']}", ""]
    stalls = results.meta.get("stalls")
    if stalls:
        parts += [f"The gateway's core, {Stalls(**stalls).text()}: a stall delays every request "
                  "that meets it, whatever serves it (bench/stalls.py).", ""]
    parts += ["### Targets (Faregate, per worker)", "",
              _table(["target", "goal", "measured", ""], [list(t) for t in targets(results)]), ""]
    sbs = side_by_side(results)
    if sbs:
        parts += ["### Side by side (same mock, same load)", "", sbs, ""]
    skipped = [f"- {r.target} / {r.scenario}: {r.skipped}" for r in results.rows if r.skipped]
    skipped += [f"- {p['name']}: {p['skipped']}" for p in results.peers if p.get("skipped")]
    skipped += [f"- {p['name']}: {p['note']}" for p in results.peers if p.get("note")]
    if skipped:
        parts += ["Skipped or partial:", ""] + skipped + [""]
    return "\n".join(parts)


def _detail_tables(results) -> list[str]:
    out = []
    rows = []
    direct = {r.scenario: r for r in results.rows if r.target == "direct" and r.closed}
    for r in _rows(results):
        if not r.closed:
            continue
        d = direct.get(r.scenario)
        c = r.closed
        rows.append([r.scenario, r.target, f"{c.rps:,.0f}",
                     f"{c.rps / d.closed.rps:.2f}" if d and r.target != "direct" else "",
                     _f(c.p50_ms), _f(c.p90_ms), _f(c.p99_ms), _f(c.max_ms),
                     str(c.errors) + (f" {c.error_kinds}" if c.error_kinds else ""),
                     _f(r.cpu_ms_per_req, 3), c.tool])
    if rows:
        out += [f"## Throughput (closed loop, {results.meta['connections']} connections)", "",
                _table(["scenario", "target", "req/s", "× direct", "p50 ms", "p90 ms", "p99 ms",
                        "max ms", "errors", "CPU ms/req", "tool"], rows), ""]
    rows = []
    for r in _rows(results):
        if not r.open:
            continue
        o, d = r.open, r.direct_open
        rows.append([r.scenario, r.target, f"{o.rate:,.0f}", f"{o.rps:,.0f}", _f(o.p50_ms),
                     _f(o.p90_ms), _f(o.p99_ms), _f(d.p50_ms if d else None),
                     _f(d.p99_ms if d else None), _f(_added(o, d, "p50_ms")),
                     _f(_added(o, d, "p99_ms")), str(o.errors)])
    if rows:
        out += ["## Latency at a fixed rate (open loop, half of each target's maximum)", "",
                "Added = the target's latency minus the mock's alone at the same rate.", "",
                _table(["scenario", "target", "rate/s", "done/s", "p50 ms", "p90 ms", "p99 ms",
                        "direct p50", "direct p99", "added p50", "added p99", "errors"], rows), ""]
    rows = []
    for r in _rows(results):
        if not r.sse:
            continue
        s, d = r.sse, r.direct_sse
        rows.append([r.target, f"{s.rate:,.0f}", _f(s.ttfb_p50_ms), _f(s.ttft_p50_ms),
                     _f(s.ttft_p99_ms), _f(s.total_p50_ms), _f(s.total_p99_ms),
                     _f(d.ttft_p50_ms if d else None), _f(_added(s, d, "ttft_p50_ms")),
                     _f(_added(s, d, "ttft_p99_ms")), f"{s.events_mean:.0f}",
                     str(s.errors) + (f" {s.error_kinds}" if s.error_kinds else "")])
    if rows:
        out += ["## Streams (SSE client, open loop)", "",
                "TTFB: status line and headers; TTFT: the first chunk with content; whole: "
                "up to `[DONE]`.", "",
                _table(["target", "rate/s", "TTFB p50", "TTFT p50", "TTFT p99", "whole p50",
                        "whole p99", "direct TTFT p50", "added TTFT p50", "added TTFT p99",
                        "events", "errors"], rows), ""]
    if results.memory:
        rows = [[m.target, str(m.workers), _f(m.start_mb, 1), _f(m.end_mb, 1), _f(m.max_mb, 1),
                 _f(m.max_proc_mb, 1), f"{m.requests:,}",
                 f"{m.growth_per_100k_mb:+.2f}" if m.growth_per_100k_mb is not None else "–"]
                for m in results.memory]
        out += ["## Memory (RSS from /proc, whole process tree)", "",
                _table(["target", "workers", "start MB", "end MB", "max MB", "largest process MB",
                        "requests", "growth MB/100k"], rows), ""]
    return out


def _plots(results, folder: str) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    scen = [s for s in dict.fromkeys(r.scenario for r in results.rows)
            if any(r.scenario == s and (r.open or r.closed) for r in _rows(results))]
    if scen:
        fig, axes = plt.subplots(1, len(scen), figsize=(5 * len(scen), 4), squeeze=False)
        for ax, sc in zip(axes[0], scen):
            drawn_direct = set()
            for r in _rows(results):
                if r.scenario != sc or r.target == "direct":   # direct: drawn at each rate below
                    continue
                res = r.open or r.closed
                if res and res.cdf:
                    kind = "open" if r.open else "closed"
                    ax.plot([v for _, v in res.cdf], [p for p, _ in res.cdf],
                            label=f"{r.target} ({kind}{f' {res.rate:.0f}/s' if res.rate else ''})")
                d = r.direct_open
                if d and d.cdf and d.rate not in drawn_direct:
                    drawn_direct.add(d.rate)
                    ax.plot([v for _, v in d.cdf], [p for p, _ in d.cdf], linestyle="--",
                            label=f"direct ({d.rate:.0f}/s)")
            ax.set_xscale("log")
            ax.set_xlabel("latency, ms (log)")
            ax.set_ylabel("percentile")
            ax.set_title(sc)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(folder, "latency_cdf.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append("latency_cdf.png")
    names = _targets_order(results)
    scen = [s for s in dict.fromkeys(r.scenario for r in results.rows)
            if any(r.scenario == s and r.closed for r in _rows(results))]
    if scen:
        fig, ax = plt.subplots(figsize=(max(6, 2 * len(scen)), 4))
        width = 0.8 / max(1, len(names))
        for i, n in enumerate(names):
            vals = []
            for sc in scen:
                r = _row(results, sc, n)
                vals.append(r.closed.rps if r and r.closed else 0)
            ax.bar([x + i * width for x in range(len(scen))], vals, width, label=n)
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(scen))])
        ax.set_xticklabels(scen)
        ax.set_yscale("log")
        ax.set_ylabel("requests/s (closed loop, log)")
        ax.set_title("throughput per gateway")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "throughput.png"), dpi=110)
        plt.close(fig)
        made.append("throughput.png")
    return made


def write(results, out_dir: str, plots: bool = True) -> str:
    """Writes OUT/<date-time>/{report.md,results.json,*.png} and points OUT/latest at it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = os.path.join(out_dir, stamp)
    n = 1
    while os.path.exists(folder):
        n += 1
        folder = os.path.join(out_dir, f"{stamp}-{n}")
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(results)))
    images = _plots(results, folder) if plots else []
    m = results.meta
    machine = [[k, str(v)] for k, v in m.items() if k not in ("command",)]
    parts = [f"# Faregate bench — {m['date']}", "", CAVEATS, "", "## Command", "",
             f"```\n{m['command']}\n```", "", "## Machine and versions", "",
             _table(["", ""], machine), "", summary_text(results).split("\n", 2)[2], ""]
    parts += _detail_tables(results)
    if results.peers:
        rows = [[p["name"], p.get("version", ""), "yes" if p.get("found") else "no",
                 p.get("skipped") or p.get("note") or "ran"] for p in results.peers]
        parts += ["## Peers", "", _table(["peer", "version", "installed", "status"], rows), ""]
    if results.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in results.notes] + [""]
    if images:
        parts += ["## Plots", ""] + [f"![{i}]({i})" for i in images] + [""]
    elif plots:
        parts += ["(No plots: matplotlib is not installed; `pip install -e '.[bench]'`.)", ""]
    with open(os.path.join(folder, "report.md"), "w") as fh:
        fh.write("\n".join(parts))
    latest = os.path.join(out_dir, "latest")
    try:
        if os.path.islink(latest) or os.path.exists(latest):
            os.unlink(latest)
        os.symlink(os.path.basename(folder), latest)
    except OSError:
        pass
    return folder


def update_readme(results, readme: str, folder: str) -> bool:
    """Replaces the text between README_BEGIN and README_END in the README with the summary.
    Returns False (and changes nothing) when the markers are not there."""
    with open(readme) as fh:
        text = fh.read()
    if README_BEGIN not in text or README_END not in text:
        return False
    body = summary_text(results).replace("## Faregate bench — ", "Latest run, ", 1).replace("### ", "#### ")
    new = re.sub(re.escape(README_BEGIN) + r".*?" + re.escape(README_END),
                 lambda _: f"{README_BEGIN}\n{body}\n{README_END}", text, flags=re.S)
    with open(readme, "w") as fh:
        fh.write(new)
    return True
