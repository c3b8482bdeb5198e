"""The idle-core stall probe (bench/stalls.py) and its line in the report."""
from __future__ import annotations

import sys

import msgspec

from bench.report import summary_text
from bench.stalls import Stalls, _sample, measure


async def test_the_probe_wakes_every_millisecond_and_records_how_late():
    res = await _sample(0.2)
    assert 50 <= res.wakeups <= 200
    assert 0.0 <= res.p50_ms <= res.p99_ms <= res.p999_ms <= res.max_ms
    assert res.over_1ms_per_s >= 0.0
    assert res.precise == sys.platform.startswith("linux")


def test_measure_runs_the_probe_in_a_child_process():
    res = measure(0.3, None)
    assert isinstance(res, Stalls) and res.seconds == 0.3 and res.wakeups > 50


def test_the_report_states_the_stalls_under_its_header():
    from tests.bench.test_bench_units import _results

    res = _results()
    stalls = Stalls(3.0, 2900, 0.05, 0.2, 2.3, 7.66, 5.0, True)
    res.meta["stalls"] = msgspec.to_builtins(stalls)
    text = summary_text(res)
    assert ("The gateway's core, idle, its timer wake-ups came more than 1 ms late 5.0 times a "
            "second (p99.9 2.30 ms, max 7.66 ms)") in text
    del res.meta["stalls"]
    assert "timer wake-ups" not in summary_text(res)
