"""Live health of one deployment: latency window, circuit breaker, rate-limit damping.

Circuit breaker. CLOSED lets everything through and counts consecutive failures; at
`failures` in a row, or a window error rate of at least `error_rate` over `min_samples`
or more requests, it trips to OPEN. OPEN refuses requests for a cooldown that starts at
`cooldown_s` and doubles each time the breaker trips again without having recovered, up to
`cooldown_max_s`. When the cooldown has passed it is HALF_OPEN: up to `probes` requests
at a time go through as probes (a probe slot is released by its outcome, or after
`probe_timeout_s` if the outcome never arrives). A successful probe closes it; a failed
one opens it again with the longer cooldown. `failures` successes in a row forget past
trips, so the next trip starts from `cooldown_s` again.

Only failures that say something about the deployment count (unreachable, timeouts, 429,
5xx, overloaded, bad key/permission/model, no quota); a request the provider rejects as
bad, too long or against policy says nothing about the deployment.

Rate limits. Providers report what is left of their limits on every response
(`x-ratelimit-remaining-requests` / `-tokens` with `-limit-`, and
`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,limit,reset}`).
When the smallest remaining fraction falls under `ratelimit_low`, the deployment's weight is
scaled by fraction / ratelimit_low (not under `ratelimit_floor`), until the limit's reset
time (or `ratelimit_hold_s` when none is given): traffic moves away before 429s start.
`retry-after` on a failure blocks the deployment until then.

Time is always passed in (`now`, monotonic seconds), so all of this runs on a fake clock.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

from adapters.errors import parse_duration

from ._fast import LatencyWindow
from .routeconfig import BreakerConfig

__all__ = ["BreakerConfig", "Breaker", "RateLimitDamper", "DeploymentHealth", "DEPLOYMENT_FAULTS",
           "ratelimit_state", "CLOSED", "OPEN", "HALF_OPEN"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

DEPLOYMENT_FAULTS = frozenset({"rate_limit", "overloaded", "server", "timeout", "connection",
                               "auth", "permission", "not_found", "quota"})


class Breaker:
    __slots__ = ("cfg", "_state", "consecutive", "successes", "trips", "opened_at", "cooldown",
                 "_probes")

    def __init__(self, cfg: BreakerConfig):
        self.cfg = cfg
        self._state = CLOSED
        self.consecutive = 0
        self.successes = 0
        self.trips = 0
        self.opened_at = 0.0
        self.cooldown = 0.0
        self._probes: list[float] = []

    def state(self, now: float) -> str:
        if self._state == OPEN and now - self.opened_at >= self.cooldown:
            self._state = HALF_OPEN
            self._probes = []
        return self._state

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state(now) != OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - now)

    def allow(self, now: float) -> bool:
        """May a request go now? While half-open this takes a probe slot."""
        state = self.state(now)
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        self._probes = [t for t in self._probes if now - t < self.cfg.probe_timeout_s]
        if len(self._probes) >= self.cfg.probes:
            return False
        self._probes.append(now)
        return True

    def _trip(self, now: float) -> None:
        self.trips += 1
        self.cooldown = min(self.cfg.cooldown_max_s, self.cfg.cooldown_s * 2 ** (self.trips - 1))
        self.opened_at = now
        self._state = OPEN
        self._probes = []
        self.consecutive = 0

    def on_success(self, now: float) -> None:
        state = self.state(now)
        self.consecutive = 0
        self.successes += 1
        if state == HALF_OPEN:
            self._state = CLOSED
            self._probes = []
            self.successes = 1
        if self.successes >= self.cfg.failures:
            self.trips = 0

    def on_failure(self, now: float, error_rate: float | None = None, samples: int = 0) -> None:
        state = self.state(now)
        self.successes = 0
        if state == HALF_OPEN:
            self._trip(now)
            return
        if state == OPEN:
            return
        self.consecutive += 1
        if self.consecutive >= self.cfg.failures or (
                error_rate is not None and samples >= self.cfg.min_samples and error_rate >= self.cfg.error_rate):
            self._trip(now)


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _reset_seconds(value: Any, wall: float) -> float | None:
    if not value:
        return None
    d = parse_duration(value)
    if d is not None:
        return d
    try:
        when = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return _float(value)
    return max(0.0, when.timestamp() - wall)


_OPENAI_KINDS = ("requests", "tokens")
_ANTHROPIC_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")
# (remaining, limit, reset) header names, built once: this runs on every response
_RATELIMIT_HEADERS = tuple(
    [(f"x-ratelimit-remaining-{k}", f"x-ratelimit-limit-{k}", f"x-ratelimit-reset-{k}")
     for k in _OPENAI_KINDS]
    + [(f"anthropic-ratelimit-{k}-remaining", f"anthropic-ratelimit-{k}-limit",
        f"anthropic-ratelimit-{k}-reset") for k in _ANTHROPIC_KINDS])


def ratelimit_state(headers: Mapping[str, str] | None, wall: float) -> tuple[float, float | None] | None:
    """(smallest remaining fraction, seconds until that limit resets) from a response's
    rate-limit headers, or None when it carries none."""
    if not headers:
        return None
    best: tuple[float, float | None] | None = None
    for rem_h, lim_h, reset_h in _RATELIMIT_HEADERS:
        value = headers.get(rem_h)
        if value is None:
            continue
        remaining = _float(value)
        limit = _float(headers.get(lim_h))
        if remaining is None or not limit or limit <= 0:
            continue
        frac = max(0.0, min(1.0, remaining / limit))
        if best is None or frac < best[0]:
            best = (frac, _reset_seconds(headers.get(reset_h), wall))
    return best


class RateLimitDamper:
    __slots__ = ("cfg", "_factor", "_until")

    def __init__(self, cfg: BreakerConfig):
        self.cfg = cfg
        self._factor = 1.0
        self._until = 0.0

    def observe(self, headers: Mapping[str, str] | None, now: float, wall: float) -> None:
        found = ratelimit_state(headers, wall)
        if found is None:
            return
        frac, reset_s = found
        low = self.cfg.ratelimit_low
        if frac >= low:
            self._factor, self._until = 1.0, 0.0
            return
        self._factor = max(self.cfg.ratelimit_floor, frac / low)
        hold = self.cfg.ratelimit_hold_s if reset_s is None else min(reset_s, self.cfg.ratelimit_hold_s)
        self._until = now + max(0.5, hold)

    def factor(self, now: float) -> float:
        if self._factor < 1.0 and now >= self._until:
            self._factor = 1.0
        return self._factor


class DeploymentHealth:
    """Everything the router knows about one deployment right now."""

    __slots__ = ("window", "breaker", "damper", "blocked_until", "max_block_s")

    def __init__(self, cfg: BreakerConfig, window_s: float, slices: int = 10, max_block_s: float = 60.0):
        self.window = LatencyWindow(window_s, slices)
        self.breaker = Breaker(cfg)
        self.damper = RateLimitDamper(cfg)
        self.blocked_until = 0.0
        self.max_block_s = max_block_s

    def report(self, latency_ms: float, ok: bool, kind: str | None, headers: Mapping[str, str] | None,
               now: float, wall: float, retry_after: float | None = None) -> None:
        """One attempt's outcome. `kind` is the ProviderError kind of a failure."""
        self.damper.observe(headers, now, wall)
        if ok:
            self.window.observe(latency_ms, True, now)
            self.breaker.on_success(now)
            return
        if kind not in DEPLOYMENT_FAULTS:
            return
        self.window.observe(latency_ms, False, now)
        if retry_after is not None and retry_after > 0:
            self.blocked_until = max(self.blocked_until, now + min(retry_after, self.max_block_s))
        self.breaker.on_failure(now, self.window.error_rate(now), self.window.count(now))

    def blocked_for(self, now: float) -> float:
        """Seconds this deployment must not be sent to (retry-after, open breaker)."""
        return max(0.0, self.blocked_until - now, self.breaker.retry_in(now))

    def p95(self, now: float) -> float | None:
        return self.window.quantile(0.95, now)
