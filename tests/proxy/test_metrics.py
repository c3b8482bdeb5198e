"""Prometheus metrics: what the sink counts, and /metrics parsed by prometheus-client's own
parser — one worker, and several workers whose counts add up (multiprocess mode)."""
from __future__ import annotations

import glob
import os
import signal
import time
from types import SimpleNamespace

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.base import Deployment, ProviderError
from bench.mocks import Behavior, MockThread, OpenAIMock
from gateway import Gateway, free_port, http_get, http_post
from proxy.metrics import Metrics
from proxy.record import RequestRecord


def samples(text: str) -> dict[str, list]:
    """{sample name: [(labels, value)]} from the exposition text, via prometheus-client's parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(smp: dict, name: str, **labels) -> float:
    return sum(v for lab, v in smp.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def served(route="m", status=200, **kw) -> RequestRecord:
    rec = RequestRecord(time.time(), "r", "chat")
    rec.route, rec.provider, rec.model, rec.status = route, "openai", "gpt-4o-mini", status
    rec.latency_ms, rec.attempts, rec.prompt_tokens, rec.completion_tokens = 120.0, 1, 50, 7
    rec.cost_usd = 0.0001
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def failed_attempt(provider: str, kind: str, status: int = 503) -> SimpleNamespace:
    """What the forwarding code leaves in rec.failures: .dep and .error of each failed try."""
    dep = Deployment(name="m", provider=provider, model="x", base_url="http://127.0.0.1:9")
    err = ProviderError(status=status, body={"error": {"message": "down"}}, kind=kind, retryable=True)
    return SimpleNamespace(dep=dep, error=err)


# ---- the sink -----------------------------------------------------------------------------------

def test_sink_counts_requests_tokens_cost_and_latency():
    m = Metrics(["m"])
    m(served())
    m(served(stream=True, ttft_ms=40.0, cached_tokens=20))
    m(served(route="nonsense-model-1", status=404, provider=None, model=None, cost_usd=None,
             prompt_tokens=0, completion_tokens=0, attempts=0))
    s = samples(m.render().decode())
    assert total(s, "faregate_requests_total", route="m", status="200", provider="openai") == 2
    assert total(s, "faregate_requests_total", route="_unknown", status="404", provider="_none") == 1
    assert total(s, "faregate_tokens_total", type="prompt") == 100
    assert total(s, "faregate_tokens_total", type="completion") == 14
    assert total(s, "faregate_tokens_total", type="cached") == 20
    assert total(s, "faregate_cost_usd_total") == pytest.approx(0.0002)
    assert total(s, "faregate_request_duration_seconds_count") == 3
    assert total(s, "faregate_request_duration_seconds_sum") == pytest.approx(0.36)
    assert total(s, "faregate_request_duration_seconds_bucket", le="0.1") == 0
    assert total(s, "faregate_request_duration_seconds_bucket", le="0.25") == 3
    assert total(s, "faregate_time_to_first_token_seconds_count") == 1
    assert "faregate_ledger_rows_dropped_total" not in s  # no reason seen yet
    assert "process_cpu_seconds_total" in s  # single process: the process collector too


def test_sink_counts_retries_fallbacks_and_upstream_errors():
    m = Metrics(["m"])
    rec = served(attempts=3)
    rec.failures = [failed_attempt("groq", "rate_limit", 429), failed_attempt("together", "server")]
    m(rec)
    rec = served(status=503, provider=None, model=None, attempts=2)
    rec.failures = [failed_attempt("groq", "connection", 502), failed_attempt("together", "timeout", 504)]
    m(rec)
    m(served(stream=True, ttft_ms=30.0, status=502, error_class="stream_cut"))
    m(served(stream=True, ttft_ms=30.0, status=499, error_class="client_disconnected"))
    s = samples(m.render().decode())
    assert total(s, "faregate_retries_total", route="m") == 3  # 2 then 1 tries after a failed one
    assert total(s, "faregate_fallbacks_total", route="m", provider="openai") == 1
    errors = {(lab["provider"], lab["error_class"]): v for lab, v in s["faregate_upstream_errors_total"]}
    assert errors == {("groq", "rate_limit"): 1, ("together", "server"): 1, ("groq", "connection"): 1,
                      ("together", "timeout"): 1, ("openai", "stream_cut"): 1}


def test_ledger_counters_and_cache_outcomes():
    m = Metrics(["m"])
    m.ledger_written(10)
    m.ledger_dropped("queue_full", 2)
    m(served(cache="hit", saved_usd=0.002, cost_usd=0.0))
    m(served(cache="miss"))
    s = samples(m.render().decode())
    assert total(s, "faregate_ledger_rows_written_total") == 10
    assert total(s, "faregate_ledger_rows_dropped_total", reason="queue_full") == 2
    assert total(s, "faregate_cache_requests_total", result="hit") == 1
    assert total(s, "faregate_cache_requests_total", result="miss") == 1
    assert total(s, "faregate_saved_usd_total") == pytest.approx(0.002)


def test_per_request_cost_is_small():
    """The sink runs on every request: label children are resolved once per label set."""
    m = Metrics(["m"])
    rec = served(stream=True, ttft_ms=40.0)
    m(rec)
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        m(rec)
    per = (time.perf_counter() - t) / n
    assert per < 100e-6, f"{per * 1e6:.1f} us per request"  # ~10 us on a quiet machine


def test_apps_in_one_process_do_not_collide():
    a, b = Metrics(["m"]), Metrics(["m"])  # each has its own registry
    a(served())
    assert total(samples(b.render().decode()), "faregate_requests_total") == 0


# ---- a real gateway -----------------------------------------------------------------------------

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def test_metrics_endpoint_single_worker():
    with MockThread(OpenAIMock(Behavior(chunks=3))) as mock:
        with Gateway({"models": [{"name": "m", "base_url": mock.url + "/v1"}]}) as gw:
            for _ in range(5):
                assert http_post(gw.url + "/v1/chat/completions", BODY).status == 200
            r = http_get(gw.url + "/metrics")
            ctype = {k.lower(): v for k, v in r.headers.items()}["content-type"]
            assert r.status == 200 and ctype.startswith("text/plain; version=")
            s = samples(r.body.decode())
            assert total(s, "faregate_requests_total", route="m", status="200") == 5
            deadline = time.monotonic() + 5  # the ledger's batch is written within its interval
            while total(s, "faregate_ledger_rows_written_total") < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
                s = samples(http_get(gw.url + "/metrics").body.decode())
            assert total(s, "faregate_ledger_rows_written_total") == 5
        with Gateway({"models": [{"name": "m", "base_url": mock.url + "/v1"}],
                      "metrics": {"enabled": False}}) as gw:
            assert http_get(gw.url + "/metrics").status == 404


@pytest.mark.slow
def test_metrics_add_up_across_workers(tmp_path):
    """--workers 2: every worker writes its values to PROMETHEUS_MULTIPROC_DIR, any worker's
    /metrics adds all of them up, and a worker that dies and is replaced loses no count."""
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    (mp_dir / "counter_999999.db").write_bytes(b"stale")  # left by an earlier run: cleaned at start
    with MockThread(OpenAIMock(Behavior(chunks=3))) as mock:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        config = {"server": {"access_log": False},
                  "models": [{"name": "m", "base_url": mock.url + "/v1"}, {"name": "dead", "base_url": dead}]}
        gw = Gateway(config, args=["--workers", "2"], env={"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}).start()
        try:
            for _ in range(40):  # a new connection each: the kernel spreads them over both workers
                assert http_post(gw.url + "/v1/chat/completions", BODY).status == 200
            for _ in range(4):
                assert http_post(gw.url + "/v1/chat/completions",
                                 orjson.dumps({"model": "nope", "messages": [{"role": "user", "content": "x"}]})).status == 404
            for _ in range(3):
                assert http_post(gw.url + "/v1/chat/completions", BODY.replace(b'"m"', b'"dead"')).status == 502
            pids = {int(os.path.basename(p).split("_")[-1][:-3]) for p in glob.glob(str(mp_dir / "counter_*.db"))}
            assert len(pids) == 2 and 999999 not in pids  # both workers counted something
            for _ in range(6):  # whichever worker answers the scrape, it sums both
                s = samples(http_get(gw.url + "/metrics").body.decode())
                assert total(s, "faregate_requests_total", route="m", status="200") == 40
                assert total(s, "faregate_requests_total", route="_unknown", status="404") == 4
                assert total(s, "faregate_requests_total", route="dead", status="502") == 3
                assert total(s, "faregate_request_duration_seconds_count") == 47
                assert total(s, "faregate_tokens_total", type="completion") == 120
                assert total(s, "faregate_upstream_errors_total", provider="openai", error_class="connection") == 3

            # a worker killed outright is replaced; its counts stay in the sum
            victim = pids.pop()
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while "starting a new one" not in gw.stderr() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "starting a new one" in gw.stderr()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if http_post(gw.url + "/v1/chat/completions", BODY).status == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            s = samples(http_get(gw.url + "/metrics").body.decode())
            assert total(s, "faregate_requests_total", route="m", status="200") == 41
            gw.signal(signal.SIGTERM)
            assert gw.wait(20) == 0
        finally:
            gw.stop()
