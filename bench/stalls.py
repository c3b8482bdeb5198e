"""How often the gateway's core is taken away from an idle process: the floor under every p99.

A process pinned to the core sleeps 1 ms at a time on a timerfd (bench/pacer.py) and records
how late each wake-up came. With nothing else to do, lateness is the machine's: the host
descheduling a VM's vCPU, kernel threads, interrupts. A request that arrives during such a
stall waits it out whatever the gateway is, and a busy gateway then also works off the
backlog, so at half load (half of its time busy) a stall delays about twice as many requests
as it would an idle relay. Measured on the 2-core VM: 40 wake-ups more than 1 ms late in 8 s
(p99.9 2.3 ms, max 7.7 ms) with the whole machine idle — at 2,400 requests/s, around 1% of
requests meet one, which is p99.

    python -m bench.stalls [--seconds 3]          prints one JSON document
"""
from __future__ import annotations

import argparse
import sys
import time

import msgspec

from .loadgen import _child, _run_in_loop, pinned, quantiles

__all__ = ["Stalls", "measure", "main"]


class Stalls(msgspec.Struct):
    seconds: float
    wakeups: int
    p50_ms: float            # how late a wake-up came
    p99_ms: float
    p999_ms: float
    max_ms: float
    over_1ms_per_s: float    # wake-ups more than 1 ms late, per second
    precise: bool            # timerfd (else the loop's millisecond timers: lateness is coarse)

    def text(self) -> str:
        return (f"idle, its timer wake-ups came more than 1 ms late {self.over_1ms_per_s:.1f} "
                f"times a second (p99.9 {self.p999_ms:.2f} ms, max {self.max_ms:.2f} ms)")


async def _sample(seconds: float, period: float = 0.001) -> Stalls:
    from .pacer import Pacer

    pacer = Pacer()
    late: list[float] = []
    stop = time.perf_counter() + seconds
    try:
        while (due := time.perf_counter() + period) < stop:
            await pacer.sleep_until(due)
            late.append((time.perf_counter() - due) * 1000)
    finally:
        precise = pacer.precise
        pacer.close()
    late.sort()
    q = quantiles(late)
    return Stalls(seconds, len(late), q["p50_ms"], q["p99_ms"], dict(q["cdf"]).get(99.9, 0.0),
                  q["max_ms"], sum(x > 1.0 for x in late) / seconds, precise)


def measure(seconds: float = 3.0, cpus: str | None = None) -> Stalls:
    """Runs the probe in a child process pinned to `cpus` (the gateway's core)."""
    out = _child(pinned([sys.executable, "-m", "bench.stalls"], cpus), {"seconds": seconds},
                 seconds + 60)
    return msgspec.json.decode(out, type=Stalls)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.stalls", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("job", nargs="?", help=argparse.SUPPRESS)  # the suite's: {"seconds": N}
    args = ap.parse_args(argv)
    seconds = args.seconds
    if args.job:
        with open(args.job, "rb") as fh:
            seconds = msgspec.json.decode(fh.read())["seconds"]
    sys.stdout.buffer.write(msgspec.json.encode(_run_in_loop(_sample(seconds))))


if __name__ == "__main__":
    main()
