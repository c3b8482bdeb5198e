"""Pieces of the bench suite that need no server: nonce bodies, CPU plans, py-spy stacks,
quantiles, the targets verdicts and the README update."""
from __future__ import annotations

from bench.loadgen import NONCE, SLIP_NOTE_MS, Bodies, LoadResult, quantiles
from bench.pyspy import top_frames
from bench.report import README_BEGIN, README_END, targets, update_readme
from bench.suite import Memory, Results, Row, plan_cpus


def test_bodies_with_a_nonce_are_unique_and_plain_ones_repeat():
    b = Bodies([b'{"c": "x ' + NONCE.encode() + b'"}', b'{"c": "y"}'])
    sent = [b.next() for _ in range(6)]
    assert len({s for s in sent[0::2]}) == 3 and all(NONCE.encode() not in s for s in sent)
    assert sent[1] == sent[3] == sent[5] == b'{"c": "y"}'


def test_quantiles_of_a_known_list():
    q = quantiles([float(i) for i in range(1, 101)])
    assert (q["p50_ms"], q["p90_ms"], q["p99_ms"], q["max_ms"]) == (51.0, 91.0, 100.0, 100.0)
    assert q["cdf"][0] == (0, 1.0) and q["cdf"][-1] == (100, 100.0)
    assert quantiles([])["p50_ms"] == 0.0


def test_plan_cpus(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert plan_cpus("auto", 1) == ("0", "1", "1")
    assert plan_cpus("auto", 2) == (None, None, None)
    assert plan_cpus("none", 1) == (None, None, None)
    assert plan_cpus("0/1/", 1) == ("0", "1", None)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert plan_cpus("auto", 2) == ("0-1", "2", "3")


def test_top_frames_from_collapsed_stacks(tmp_path):
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "MainThread (1);main (proxy/cli.py:10);handle (proxy/handlers.py:5);dumps (orjson.py:1) 30\n"
        "MainThread (1);main (proxy/cli.py:10);handle (proxy/handlers.py:7) 10\n"
        "MainThread (1);main (proxy/cli.py:10);write (/x/site-packages/aiohttp/http_writer.py:3) 60\n")
    t = top_frames(str(raw))
    assert t["samples"] == 100
    assert t["self"][0] == ("write (aiohttp/http_writer.py)", 60, 60.0)
    assert ("handle (proxy/handlers.py)", 10, 10.0) in t["self"]
    incl = dict((k, v) for k, v, _ in t["inclusive"])
    assert incl["handle (proxy/handlers.py)"] == 40       # self 10 + callee 30, lines merged
    assert "main (proxy/cli.py)" not in incl              # in every stack: dropped


def _lr(rps, p50, p99, requests=1000, errors=0, rate=None):
    return LoadResult("wrk", requests, errors, 1.0, rps, p50, p50, p99, p99, rate=rate)


def _results(gw_errors=0):
    rows = [Row("nonstream", "direct", closed=_lr(9000, 1.0, 2.0)),
            Row("nonstream", "faregate", closed=_lr(4200, 2.0, 4.0),
                open=_lr(2100, 1.3, 2.0, errors=gw_errors, rate=2100),
                direct_open=_lr(2100, 1.0, 1.0, rate=2100))]
    mem = [Memory("faregate", 1, 50.0, 51.0, 60.0, 60.0, 2_000_000, 0.05)]
    return Results({"workers": 1, "date": "d", "command": "c", "cores": 2, "cpu": "x",
                    "load_average_at_end": "0"}, rows, mem, [])


def test_targets_pass_fail_and_errors():
    t = {name: (measured, verdict) for name, _, measured, verdict in targets(_results())}
    assert t["non-stream requests/s per worker"] == ("4,200", "PASS")
    assert t["added latency p50, half of max load (at 2100/s)"] == ("0.30 ms", "PASS")
    assert t["added latency p99, half of max load (at 2100/s)"] == ("1.00 ms", "PASS")
    assert t["streams/s per worker"][1] == "n/a"
    assert t["RSS per worker (max)"] == ("60.0 MB", "PASS")
    assert t["RSS flat (growth per 100k requests)"][1] == "PASS"
    t = {name: verdict for name, _, _, verdict in targets(_results(gw_errors=500))}
    assert t["added latency p50, half of max load (at 2100/s)"].startswith("FAIL")


def test_the_relays_added_latency_is_shown_beside_faregates_only_at_the_same_rate():
    res = _results()
    res.rows.append(Row("nonstream", "relay", closed=_lr(14000, 1.0, 2.0),
                        open=_lr(2100, 1.1, 1.9, rate=2100),
                        direct_open=_lr(2100, 1.0, 1.0, rate=2100)))
    t = {name: measured for name, _, measured, _ in targets(res)}
    assert t["added latency p50, half of max load (at 2100/s)"] == "0.30 ms (a bare byte relay: 0.10 ms)"
    assert t["added latency p99, half of max load (at 2100/s)"] == "1.00 ms (a bare byte relay: 0.90 ms)"
    res.rows[-1].open = _lr(7000, 1.1, 1.9, rate=7000)   # at its own rate: not comparable
    t = {name: measured for name, _, measured, _ in targets(res)}
    assert t["added latency p50, half of max load (at 2100/s)"] == "0.30 ms"


def test_a_load_client_behind_its_schedule_is_named_beside_the_figure_it_spoilt():
    res = _results()
    fg = res.rows[1]
    fg.direct_open.slip_p99_ms = 0.4
    fg.open.slip_p99_ms = SLIP_NOTE_MS          # at the limit: fine
    t = {name: measured for name, _, measured, _ in targets(res)}
    assert t["added latency p50, half of max load (at 2100/s)"] == "0.30 ms"
    fg.direct_open.slip_p99_ms = 4.2
    t = {name: (measured, verdict) for name, _, measured, verdict in targets(res)}
    assert t["added latency p99, half of max load (at 2100/s)"] == (
        "1.00 ms (the load client ran 4.20 ms late at p99)", "PASS")   # said, not judged


def test_a_target_with_rate_of_runs_its_open_loop_at_that_targets_rate():
    from bench.suite import Suite, parser

    suite = Suite(parser().parse_args(["--peers", "none"]))
    suite.rows = _results().rows
    assert suite._open_rate("nonstream", "faregate") == 2100
    assert suite._open_rate("stream", "faregate") is None
    assert suite._open_rate("nonstream", "direct") is None


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# X\n\nbefore\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    assert update_readme(_results(), str(readme), "folder")
    text = readme.read_text()
    assert "old table" not in text and "before" in text and "after" in text
    assert "| non-stream requests/s per worker | ≥ 4,000 | 4,200 | PASS |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not update_readme(_results(), str(plain), "folder")
    assert plain.read_text() == "no markers\n"


def test_repeat_reports_the_median_run():
    from bench.suite import _median, parser

    runs = [(5.0, "a"), (1.0, "b"), (3.0, "c"), (9.0, "d")]
    assert _median(runs, lambda r: r[0]) == (3.0, "c")        # the lower middle of an even count
    assert _median([(2.0, "x")], lambda r: r[0]) == (2.0, "x")
    assert parser().parse_args(["--repeat", "3"]).repeat == 3
    assert parser().parse_args([]).repeat == 1


def test_rss_growth_leaves_out_the_warm_fill_but_not_a_leak():
    from bench.suite import rss_growth_per_100k

    # a bounded cache filling in the first 100k requests, flat after it
    warm_then_flat = [(0, 56.0), (30_000, 70.0), (100_000, 75.6)] + [(n, 75.6) for n in range(200_000, 1_100_001, 100_000)]
    assert abs(rss_growth_per_100k(warm_then_flat)) < 0.01
    # a leak of 0.6 MB per 100k all along, warm-up included
    leak = [(n, 50.0 + 6.0 * n / 1_000_000) for n in range(0, 1_000_001, 50_000)]
    assert abs(rss_growth_per_100k(leak) - 0.6) < 1e-9
    assert rss_growth_per_100k([(0, 1.0)]) is None
    assert rss_growth_per_100k([(0, 1.0), (10, 2.0)]) == 10_000.0   # too few late samples: all of them
