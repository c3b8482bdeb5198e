"""Prometheus metrics: a request sink that counts, and `GET /metrics`.

Metric names start with ``faregate_``:

=========================================  ========  ========================================
name                                       type      labels
=========================================  ========  ========================================
faregate_requests_total                    counter   endpoint, route, provider, model, status
faregate_request_duration_seconds          histogram endpoint, provider, model
faregate_time_to_first_token_seconds       histogram provider, model (streams)
faregate_tokens_total                      counter   provider, model, type (prompt, completion, cached)
faregate_cost_usd_total                    counter   provider, model
faregate_saved_usd_total                   counter   provider, model (gateway cache hits)
faregate_cache_requests_total              counter   endpoint, result (hit, miss, ...; not "off")
faregate_retries_total                     counter   route (upstream tries after a failed one)
faregate_fallbacks_total                   counter   route, provider, model (served after a failure)
faregate_upstream_errors_total             counter   provider, error_class (every failed try,
                                                     and streams cut after the first byte)
faregate_ledger_rows_written_total         counter   —
faregate_ledger_rows_dropped_total         counter   reason (queue_full, write_error, closed)
=========================================  ========  ========================================

``route`` is the model name the client asked for when the gateway serves it, else
``_unknown`` (so made-up names cannot grow the label set); ``provider``/``model`` are
``_none`` when no upstream answered.

Several workers: the ``faregate serve`` master sets ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory before it forks (:func:`prepare_multiprocess_dir`), every worker's
prometheus-client then keeps its values in files there, ``/metrics`` on any worker adds up
all of them (``MultiProcessCollector``), and the master calls :func:`worker_exited` for a
worker that ended. One worker: a plain in-process registry.

prometheus_client is imported lazily: it picks its storage from the environment when it is
first imported, which must happen after the master has set the directory.
"""
from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
from typing import Any, Iterable

from aiohttp import web

from .record import RequestRecord

__all__ = ["Metrics", "metrics_handler", "prepare_multiprocess_dir", "worker_exited",
           "remove_multiprocess_dir", "MULTIPROC_ENV"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                   300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class _Children:
    """The label children of one (endpoint, route, provider, model, status), resolved once."""
    __slots__ = ("requests", "latency", "ttft", "prompt", "completion", "cached", "cost", "saved",
                 "fallbacks", "retries")


class Metrics:
    def __init__(self, routes: Iterable[str] = ()):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = reg = CollectorRegistry()
        if not self.multiprocess:
            from prometheus_client import PlatformCollector, ProcessCollector
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
        self._routes = frozenset(routes)
        self.requests = Counter("faregate_requests", "Requests by route, serving provider and model, "
                                "and HTTP status", ["endpoint", "route", "provider", "model", "status"],
                                registry=reg)
        self.latency = Histogram("faregate_request_duration_seconds", "Time from request to the end "
                                 "of the response (streams: the last byte)",
                                 ["endpoint", "provider", "model"], buckets=LATENCY_BUCKETS, registry=reg)
        self.ttft = Histogram("faregate_time_to_first_token_seconds", "Streams: time from request to "
                              "the first byte sent to the client", ["provider", "model"],
                              buckets=TTFT_BUCKETS, registry=reg)
        self.tokens = Counter("faregate_tokens", "Tokens (reported by the provider, or counted when it "
                              "sent none); cached is a part of prompt", ["provider", "model", "type"],
                              registry=reg)
        self.cost = Counter("faregate_cost_usd", "Upstream cost in USD at catalog prices",
                            ["provider", "model"], registry=reg)
        self.saved = Counter("faregate_saved_usd", "USD saved by answers from the gateway's cache",
                             ["provider", "model"], registry=reg)
        self.cache = Counter("faregate_cache_requests", "Gateway cache outcomes",
                             ["endpoint", "result"], registry=reg)
        self.retries = Counter("faregate_retries", "Upstream tries made after a failed one",
                               ["route"], registry=reg)
        self.fallbacks = Counter("faregate_fallbacks", "Requests served after at least one failed try",
                                 ["route", "provider", "model"], registry=reg)
        self.upstream_errors = Counter("faregate_upstream_errors", "Failed upstream tries by error class",
                                       ["provider", "error_class"], registry=reg)
        self.ledger_rows = Counter("faregate_ledger_rows_written", "Rows written to the spend ledger",
                                   registry=reg)
        self.ledger_drops = Counter("faregate_ledger_rows_dropped", "Ledger rows lost (never silently: "
                                    "each is logged too)", ["reason"], registry=reg)
        self._children: dict[tuple, _Children] = {}
        self._errors: dict[tuple[str, str], Any] = {}
        self._cache: dict[tuple[str, str], Any] = {}
        self._retries: dict[str, Any] = {}

    # ---- the request sink ---------------------------------------------------------------
    def _make(self, endpoint: str, route: str, provider: str, model: str, status: str) -> _Children:
        c = _Children()
        c.requests = self.requests.labels(endpoint, route, provider, model, status)
        c.latency = self.latency.labels(endpoint, provider, model)
        c.ttft = self.ttft.labels(provider, model)
        c.prompt = self.tokens.labels(provider, model, "prompt")
        c.completion = self.tokens.labels(provider, model, "completion")
        c.cached = self.tokens.labels(provider, model, "cached")
        c.cost = self.cost.labels(provider, model)
        c.saved = self.saved.labels(provider, model)
        c.fallbacks = self.fallbacks.labels(route, provider, model)
        c.retries = self.retries.labels(route)
        return c

    def __call__(self, rec: RequestRecord) -> None:
        route = rec.route
        if route not in self._routes:
            route = "_unknown" if route else "_none"
        key = (rec.endpoint, route, rec.provider, rec.model, rec.status)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = self._make(rec.endpoint, route, rec.provider or "_none",
                                                 rec.model or "_none", str(rec.status))
        c.requests.inc()
        c.latency.observe(rec.latency_ms / 1000.0)
        if rec.ttft_ms is not None:
            c.ttft.observe(rec.ttft_ms / 1000.0)
        if rec.prompt_tokens:
            c.prompt.inc(rec.prompt_tokens)
        if rec.completion_tokens:
            c.completion.inc(rec.completion_tokens)
        if rec.cached_tokens:
            c.cached.inc(rec.cached_tokens)
        if rec.cost_usd:
            c.cost.inc(rec.cost_usd)
        if rec.saved_usd:
            c.saved.inc(rec.saved_usd)
        if rec.cache != "off":
            self._count_cache(rec.endpoint, rec.cache)
        failures = rec.failures
        if failures:
            for attempt in failures:
                self._count_error(attempt.dep.provider, attempt.error.kind)
            if rec.attempts > 1:
                c.retries.inc(rec.attempts - 1)
            if rec.provider is not None and rec.status < 400:
                c.fallbacks.inc()
        if rec.error_class and rec.ttft_ms is not None and rec.error_class != "client_disconnected":
            self._count_error(rec.provider or "_none", rec.error_class)  # failed after the first byte

    def _count_error(self, provider: str, kind: str) -> None:
        child = self._errors.get((provider, kind))
        if child is None:
            child = self._errors[(provider, kind)] = self.upstream_errors.labels(provider, kind)
        child.inc()

    def _count_cache(self, endpoint: str, result: str) -> None:
        child = self._cache.get((endpoint, result))
        if child is None:
            child = self._cache[(endpoint, result)] = self.cache.labels(endpoint, result)
        child.inc()

    # ---- ledger hooks (see ledger.py) ---------------------------------------------------
    def ledger_written(self, n: int) -> None:
        self.ledger_rows.inc(n)

    def ledger_dropped(self, reason: str, n: int) -> None:
        self.ledger_drops.labels(reason).inc(n)

    # ---- exposition ---------------------------------------------------------------------
    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        reg = CollectorRegistry()
        MultiProcessCollector(reg)
        return generate_latest(reg)


async def metrics_handler(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from .app import STATE

    metrics = request.app[STATE].metrics
    if metrics is None:
        return web.Response(status=404, text="metrics are disabled (metrics.enabled in the config)\n")
    # several workers: reading every worker's files is disk I/O, so off the event loop
    body = await asyncio.to_thread(metrics.render) if metrics.multiprocess else metrics.render()
    return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})


# ---- the master process of `faregate serve --workers N` -----------------------------------

def prepare_multiprocess_dir() -> str | None:
    """Before forking workers: an empty directory for their metric files, in
    PROMETHEUS_MULTIPROC_DIR. A directory the user named there is emptied of old files;
    otherwise a temporary one is made. Returns the path to remove at exit (None when the
    directory is the user's)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for path in glob.glob(os.path.join(given, "*.db")):
            os.unlink(path)
        return None
    path = tempfile.mkdtemp(prefix="faregate-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def worker_exited(pid: int) -> None:
    """A worker ended: its counters stay (totals must not go down), its live gauges go."""
    if not os.environ.get(MULTIPROC_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def remove_multiprocess_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
