"""The open-loop pacer (bench/pacer.py) and the send slip the built-in clients report."""
from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from bench import pacer as pacer_mod
from bench.loadgen import drive, slip_p99
from bench.pacer import Pacer
from bench.suite import SLIP_NOTE_MS, slip_note


async def test_sleep_until_never_returns_early_and_past_times_return_at_once():
    p = Pacer()
    try:
        t0 = time.perf_counter()
        targets = [t0 + 0.0003 * i for i in range(1, 40)]
        for t in targets:
            await p.sleep_until(t)
            assert time.perf_counter() >= t
        before = time.perf_counter()
        await p.sleep_until(before - 1.0)
        assert time.perf_counter() - before < 0.05
    finally:
        p.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux-only")
async def test_on_linux_the_pacer_uses_a_timerfd_and_close_releases_it():
    p = Pacer()
    assert p.precise
    fd = p._fd
    os.fstat(fd)
    p.close()
    assert not p.precise
    with pytest.raises(OSError):
        os.fstat(fd)
    p.close()   # twice is harmless


async def test_without_timerfd_it_falls_back_to_the_loops_timers(monkeypatch):
    monkeypatch.setattr(pacer_mod, "_libc", lambda: None)
    p = Pacer()
    assert not p.precise
    t = time.perf_counter() + 0.003
    await p.sleep_until(t)
    assert time.perf_counter() >= t - 0.001   # loop timers may round a hair early
    p.close()


async def test_a_cancelled_sleep_leaves_the_pacer_usable():
    p = Pacer()
    try:
        task = asyncio.ensure_future(p.sleep_until(time.perf_counter() + 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t = time.perf_counter() + 0.002
        await p.sleep_until(t)
        assert time.perf_counter() >= t
    finally:
        p.close()


async def test_open_loop_drive_records_a_slip_per_request_and_closed_loop_none():
    started: list[float] = []

    async def one(due: float) -> None:
        started.append(due)

    slips: list[float] = []
    await drive(one, 4, 0.05, 400.0, slips)
    assert len(slips) == len(started) == 20
    assert all(s >= 0 for s in slips)
    assert started == sorted(started)
    closed: list[float] = []
    await drive(one, 2, 0.01, None, closed)
    assert closed == []


def test_slip_p99_and_the_report_note():
    assert slip_p99([]) is None
    assert slip_p99([float(i) for i in range(100, 0, -1)]) == 100.0
    assert slip_note([("a", 0.2), ("b", SLIP_NOTE_MS)]) is None
    note = slip_note([("direct x", 0.3), ("faregate x", 2.5), ("bare x", 1.2)])
    assert note is not None
    assert "2 of 3 runs" in note and "2.50 ms" in note and "faregate x" in note
