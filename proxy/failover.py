"""One request's way through its route's candidates: what to try next, and when.

`FailoverRun` is the state of one request's attempts; forward.py drives it:

    while (step := run.next()) is not None:      # (member, seconds to wait first)
        ... run.sending() ... run.failed(member, err, latency_ms, headers) / run.succeeded(...)

Rules:
- Candidates are taken in the plan's order, but after a failure the next one is on a
  provider that has not failed yet, where there is one.
- A deployment whose breaker is open is skipped; while half-open it takes one probe slot.
  When every candidate's breaker is open, they are all tried anyway ("panic mode"): the
  breaker moves traffic to healthy deployments, it does not turn a route into a 503. A `retry-after` blocks the deployment (for every request) until then; a
  blocked candidate is waited for only when it is the best one left and the wait is under
  `max_retry_wait_s` and the deadline.
- Going back to a provider that already failed in this request waits an exponential backoff
  (`backoff_base_ms` x 2^(n-1), at most `backoff_max_ms`, jittered to 50-100%). When every
  candidate was tried, those that answered 429, 5xx or overloaded are tried once more
  (within `max_attempts` and the deadline); unreachable or timed-out ones are not.
- Connect errors, timeouts, 429, 5xx, overloaded: next candidate. Bad key, no permission,
  unknown model, no quota, a request the adapter cannot send: next candidate, no retry.
  Context window exceeded: only larger-context models from then on (the route's, then any
  chat deployment of at least the same tier). Content-policy refusal: the route's `fallback`
  route (once), else the error. Any other 4xx: the request itself is wrong; stop.
- Cascade routes (non-streaming requests): an answer that fails the route's checks moves on
  to the next candidate of a higher tier; its cost is still paid and recorded.
"""
from __future__ import annotations

import random
from typing import Mapping

from adapters.base import Deployment, ProviderError, openai_error_body

from .cascade import check_answer
from .cost import cost_usd
from .errors import GatewayError
from .health import CLOSED, DEPLOYMENT_FAULTS
from .routing import Member, RoutePlan, Router

__all__ = ["Attempt", "FailoverRun"]

_NEXT_CANDIDATE = frozenset({"auth", "permission", "not_found", "quota", "rejected"})
# Answers worth asking the same deployment again after a backoff; an unreachable or timed-out
# deployment is failed over, not hammered.
_RETRY_SAME = frozenset({"rate_limit", "overloaded", "server"})


class Attempt:
    __slots__ = ("dep", "error")

    def __init__(self, dep: Deployment, error: ProviderError):
        self.dep = dep
        self.error = error

    def describe(self) -> str:
        err = self.error.body.get("error") or {}
        return f"{self.dep.provider}/{self.dep.model}: {self.error.status} {err.get('message', '')}".strip()


class FailoverRun:
    def __init__(self, router: Router, plan: RoutePlan, body: dict, rng: random.Random | None = None):
        self.router = router
        self.plan = plan
        self.body = body
        self.cfg = router.cfg
        self.rng = rng or router.rng  # one generator per worker: Random() seeds from os.urandom
        self.queue: list[Member] = list(plan.members)
        self.again: list[Member] = []          # failed transiently: a second round
        self.attempts: list[Attempt] = []      # every failed try, in order
        self.sent = 0
        self.deadline = router.clock() + self.cfg.deadline_s
        self.tried: dict[int, int] = {}
        self.provider_failures: dict[str, int] = {}
        self.skipped: list[tuple[Member, float]] = []
        self.stopped = False
        self.fallback_used = False
        self.billed: list[tuple[Deployment, dict | None]] = []
        self.notes: list[str] = []
        self.cascade_failed: str | None = None
        # Panic mode (Envoy's term): when every candidate's breaker is open, the breakers are
        # ignored for this request: trying is better than a certain 503.
        now = router.clock()
        self.panic = all(m.health.breaker.state(now) != CLOSED for m in plan.members)

    # ---- choosing ---------------------------------------------------------------------------
    def time_left(self) -> float:
        return self.deadline - self.router.clock()

    def _backoff(self, m: Member) -> float:
        n = self.provider_failures.get(m.dep.provider, 0)
        if not n:
            return 0.0
        delay = min(self.cfg.backoff_max_ms, self.cfg.backoff_base_ms * 2 ** (n - 1)) / 1000.0
        return delay * (0.5 + 0.5 * self.rng.random())

    def _choose(self, now: float) -> Member:
        free = [m for m in self.queue if m.health.blocked_until <= now]
        for m in free:
            if m.dep.provider not in self.provider_failures:
                return m
        if free:
            return free[0]
        return min(self.queue, key=lambda m: m.health.blocked_until)

    def next(self) -> tuple[Member, float] | None:
        """The next candidate and the seconds to wait before sending to it, or None."""
        if self.stopped or self.sent >= self.cfg.max_attempts:
            return None
        while True:
            if not self.queue and self.again:
                self.queue, self.again = self.again, []
            if not self.queue:
                return None
            now = self.router.clock()
            left = self.deadline - now
            if left <= 0:
                self.notes.append("deadline reached")
                return None
            m = self._choose(now)
            self.queue.remove(m)
            wait = max(m.health.blocked_until - now, self._backoff(m), 0.0)
            if wait > min(self.cfg.max_retry_wait_s, left):
                self.skipped.append((m, wait))
                continue
            if not m.health.breaker.allow(now) and not self.panic:
                self.skipped.append((m, m.health.breaker.retry_in(now)))
                continue
            return m, wait

    def sending(self, m: Member) -> int:
        """Call right before the request goes out; returns the attempt number."""
        self.sent += 1
        self.tried[m.index] = self.tried.get(m.index, 0) + 1
        return self.sent

    # ---- outcomes ---------------------------------------------------------------------------
    def succeeded(self, m: Member, latency_ms: float, headers: Mapping[str, str] | None) -> None:
        self.router.report(m.dep, latency_ms, True, None, headers)

    def broke(self, m: Member, latency_ms: float, kind: str | None,
              headers: Mapping[str, str] | None) -> None:
        """A stream that failed after its first byte (the client got an error event)."""
        kind = kind if kind in DEPLOYMENT_FAULTS else "connection"
        self.router.report(m.dep, latency_ms, False, kind, headers)

    def failed(self, m: Member, err: ProviderError, latency_ms: float,
               headers: Mapping[str, str] | None = None, *, sent: bool = True) -> None:
        if sent:
            self.router.report(m.dep, latency_ms, False, err.kind, headers, err.retry_after)
        self.attempts.append(Attempt(m.dep, err))
        kind = err.kind
        if kind in DEPLOYMENT_FAULTS:
            self.provider_failures[m.dep.provider] = self.provider_failures.get(m.dep.provider, 0) + 1
        if kind == "context_window":
            bigger = self.router.larger_context(self.plan, m, set(self.tried))
            self.queue, self.again = bigger, []
            self.notes.append(f"context window exceeded on {m.label}, "
                              + (f"trying {bigger[0].label}" if bigger else "no larger model"))
        elif kind == "content_policy":
            self._fallback(m)
        elif err.retryable:
            if kind in _RETRY_SAME and self.tried.get(m.index, 0) < 2:
                self.again.append(m)
        elif kind not in _NEXT_CANDIDATE:
            self.stopped = True

    def rejected(self, m: Member, err: ProviderError) -> None:
        """The adapter cannot send this request to `m` (RequestRejected): next candidate."""
        self.failed(m, ProviderError(status=err.status, body=err.body, kind="rejected",
                                     retryable=False), 0.0, sent=False)

    def _fallback(self, m: Member) -> None:
        name = self.plan.route.fallback
        if not name or self.fallback_used or name not in self.router.table:
            self.stopped = True
            return
        self.fallback_used = True
        try:
            fplan = self.router.plan_route(self.router.table[name], self.body, self.plan.overrides)
        except GatewayError as exc:
            self.notes.append(f"fallback route '{name}' has no candidate: {exc.message}")
            self.stopped = True
            return
        self.queue = [x for x in fplan.members if x.index not in self.tried]
        self.again = []
        self.notes.append(f"content policy on {m.label}, fallback route '{name}'")

    def escalate(self, m: Member, result: dict) -> bool:
        """Cascade: True when `m`'s answer failed a check and a higher tier is left to try."""
        route = self.plan.route
        if route.policy != "cascade":
            return False
        reason = check_answer(result, self.body, route.cascade, route.regex)
        if reason is None:
            return False
        tier = self.router.tier_of(m)
        higher = [x for x in self.queue + self.again
                  if tier is None or (self.router.tier_of(x) or 0) > tier]
        if not higher:
            self.cascade_failed = f"{m.label}: {reason}"
            self.notes.append(f"{m.label} failed the check ({reason}), no higher tier left")
            return False
        self.billed.append((m.dep, result.get("usage")))
        self.queue, self.again = higher, []
        self.notes.append(f"escalated from {m.label} ({reason})")
        return True

    # ---- reporting --------------------------------------------------------------------------
    def billed_usd(self, pricing) -> float:
        """What the answers that were paid for but not served cost (cascade escalations)."""
        total = 0.0
        for dep, usage in self.billed:
            price = pricing.price(dep) if pricing is not None else None
            if price is not None and usage:
                total += cost_usd(usage, price).total_usd
        return total

    def route_header(self) -> str:
        line = self.plan.explanation
        if self.notes:
            line += "; " + "; ".join(self.notes)
        return line.encode("ascii", "replace").decode()

    def unavailable(self) -> list[Attempt]:
        """What to answer when nothing was sent: every candidate is cooling down or blocked."""
        if not self.skipped:
            return []
        m, wait = min(self.skipped, key=lambda t: t[1])
        names = ", ".join(sorted({s.label for s, _ in self.skipped}))
        err = ProviderError(status=503, kind="cooldown", retryable=True, retry_after=max(wait, 1.0),
                            body=openai_error_body(
                                f"every deployment of '{self.plan.route.name}' is cooling down after "
                                f"repeated failures or rate limits ({names}); retry in {wait:.1f}s",
                                "service_unavailable", None, "deployments_cooling_down"))
        return [Attempt(m.dep, err)]
