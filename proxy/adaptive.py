"""The adaptive weight updater: live latency and errors move each route's weights.

Every `interval_s` the updater looks at each route's deployments and computes a target
multiplier per deployment from its latency window:

    target = clamp((ref_p95 / p95) ** latency_exponent * (1 - error_rate) ** error_exponent,
                   floor, 1)

where ref_p95 is the best P95 among the route's deployments, so the fastest healthy one
keeps its full weight. A deployment with fewer than `min_samples` requests in its window has
no target: its multiplier drifts back toward 1 at `idle_smoothing` per tick (a long-idle
deployment is given the benefit of the doubt, slowly).

The multiplier moves toward the target, never jumps: down by `smoothing_down` of the gap
per tick (a slow or failing deployment loses traffic within a few ticks), up by
`smoothing_up` of the gap and at most x`max_step_up` per tick (a recovered deployment wins
traffic back gradually). Targets within `deadband` (relative) of the current multiplier are
ignored, so noise in the P95 does not make weights flap. `floor` keeps a little traffic
flowing to a slow deployment; that traffic is what shows it has recovered.

The route's effective weight of deployment i is base_weight_i x multiplier_i x its
rate-limit damping, or 0 while its breaker is open or a retry-after blocks it. The
updater builds a new weight list and installs it into the route's `WeightedPicker` with
`replace()` (one assignment: a concurrent pick sees the old or the new weights).
Everything takes `now`; tests drive `tick(now)` with a fake clock.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Sequence

from ._fast import WeightedPicker

from .health import DeploymentHealth
from .routeconfig import AdaptiveConfig

__all__ = ["AdaptiveConfig", "WeightedSet", "AdaptiveUpdater"]

log = logging.getLogger("faregate.adaptive")


class WeightedSet:
    """A route's deployments, their smoothed multipliers and the picker over their weights."""

    __slots__ = ("health", "base", "mult", "picker")

    def __init__(self, health: Sequence[DeploymentHealth], base: Sequence[float]):
        self.health = list(health)
        self.base = [float(b) for b in base]
        self.mult = [1.0] * len(self.base)
        self.picker = WeightedPicker(self.base)

    def targets(self, now: float, cfg: AdaptiveConfig) -> list[float | None]:
        p95: list[float | None] = []
        errs: list[float] = []
        for h in self.health:
            if h.window.count(now) >= cfg.min_samples:
                p95.append(h.p95(now))
                errs.append(h.window.error_rate(now) or 0.0)
            else:
                p95.append(None)
                errs.append(0.0)
        known = [p for p in p95 if p]
        ref = min(known) if known else None
        out: list[float | None] = []
        for p, err in zip(p95, errs):
            if p is None or ref is None:
                out.append(None)
                continue
            t = (ref / p) ** cfg.latency_exponent * (1.0 - err) ** cfg.error_exponent
            out.append(min(1.0, max(cfg.floor, t)))
        return out

    def step(self, now: float, cfg: AdaptiveConfig) -> None:
        for i, target in enumerate(self.targets(now, cfg)):
            cur = self.mult[i]
            if target is None:
                new = cur + cfg.idle_smoothing * (1.0 - cur)
            elif abs(target - cur) <= cfg.deadband * cur:
                new = cur
            elif target < cur:
                new = cur + cfg.smoothing_down * (target - cur)
            else:
                new = min(cur + cfg.smoothing_up * (target - cur), cur * cfg.max_step_up)
            self.mult[i] = min(1.0, max(cfg.floor, new))
        self.refresh(now)

    def effective(self, now: float) -> list[float]:
        out = []
        for h, b, m in zip(self.health, self.base, self.mult):
            out.append(0.0 if h.blocked_for(now) > 0 else b * m * h.damper.factor(now))
        return out

    def refresh(self, now: float) -> None:
        """Install the current effective weights (also called when a breaker changes)."""
        self.picker.replace(self.effective(now))


class AdaptiveUpdater:
    """Runs `tick` every `interval_s` on the event loop, for every route's WeightedSet."""

    def __init__(self, sets: Sequence[WeightedSet], cfg: AdaptiveConfig, clock=time.monotonic):
        self.sets = list(sets)
        self.cfg = cfg
        self.clock = clock
        self._task: asyncio.Task | None = None

    def tick(self, now: float) -> None:
        for s in self.sets:
            s.step(now, self.cfg)

    async def run(self) -> None:
        while True:
            try:
                self.tick(self.clock())
            except Exception:  # a bad tick must not stop the updater; weights stay as they were
                log.exception("adaptive weight update failed")
            await asyncio.sleep(self.cfg.interval_s)

    def start(self) -> asyncio.Task | None:
        if self.cfg.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="faregate-adaptive")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
