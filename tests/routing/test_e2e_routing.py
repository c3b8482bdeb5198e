"""End to end: a real `faregate serve` in front of several mock providers (one per deployment
where latency or faults must differ), driven over HTTP. Shares, not exact times, are asserted,
with generous bounds: the machine is shared."""
from __future__ import annotations

import threading
import time
from collections import deque

import openai
import orjson
import pytest

from bench.mocks import AnthropicMock, Behavior, MockThread, OpenAIMock
from gateway import Gateway, http_post, stream_lines

MSG = [{"role": "user", "content": "Say hello"}]


def post(gw, body: dict, headers: dict | None = None):
    return http_post(gw.url + "/v1/chat/completions", orjson.dumps(body), headers)


def behave(mock, model: str | None = None, **patch) -> None:
    if model is None:
        mock.call(lambda: setattr(mock.provider, "behavior", Behavior(**patch)))
    else:
        mock.call(lambda: mock.provider.model_behavior.__setitem__(model, patch))


class Traffic:
    """A steady request stream from a few threads; remembers who served each request."""

    def __init__(self, gw, model: str, threads: int = 3):
        self.gw, self.model = gw, model
        self.served: deque[str] = deque(maxlen=5000)
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        body = orjson.dumps({"model": self.model, "messages": MSG})
        while not self._stop.is_set():
            r = http_post(self.gw.url + "/v1/chat/completions", body)
            if r.status == 200:
                self.served.append(r.headers["x-faregate-provider"])
            else:
                self.failed += 1

    def share(self, provider: str, last: int) -> float | None:
        recent = list(self.served)[-last:]
        return recent.count(provider) / len(recent) if len(recent) >= last else None

    def wait_for(self, provider: str, below: float | None = None, above: float | None = None,
                 last: int = 40, timeout: float = 12.0) -> float:
        start = len(self.served)
        deadline = time.monotonic() + timeout
        share = None
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if len(self.served) - start < last:  # judge only requests made after the change
                continue
            share = self.share(provider, last)
            if share is not None and (below is None or share < below) and (above is None or share > above):
                return share
        raise AssertionError(f"share of {provider} over the last {last} requests is {share}, "
                             f"wanted below={below} above={above}")

    def __enter__(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)


# ---- one route, two deployments on two mocks: adaptive weights and health ------------------

@pytest.fixture(scope="module")
def pair():
    with MockThread(OpenAIMock(Behavior(latency_ms=15))) as a, \
            MockThread(OpenAIMock(Behavior(latency_ms=15))) as b:
        config = {
            "server": {"access_log": False},
            "ledger": {"enabled": False},
            "routing": {"adaptive": {"interval_s": 0.25, "window_s": 3.0},
                        "breaker": {"failures": 3, "cooldown_s": 1.0, "cooldown_max_s": 2.0},
                        "backoff_base_ms": 10},
            "models": [
                {"name": "chat", "provider": "openai", "model": "gpt-4o-mini", "base_url": a.url + "/v1"},
                {"name": "chat", "provider": "deepseek", "model": "deepseek-chat", "base_url": b.url + "/v1"},
            ],
        }
        with Gateway(config) as gw:
            yield gw, a, b


@pytest.fixture
def fresh_pair(pair):
    gw, a, b = pair
    behave(a, latency_ms=15)
    behave(b, latency_ms=15)
    yield gw, a, b
    behave(a, latency_ms=15)
    behave(b, latency_ms=15)


def test_latency_budget_filters_by_live_p95(fresh_pair):
    gw, a, b = fresh_pair
    behave(b, latency_ms=400)
    for _ in range(12):  # both get some of these: the gateway learns b's latency
        assert post(gw, {"model": "chat", "messages": MSG}).status == 200
    budget = {"x-faregate-latency-budget-ms": "200"}
    served = [post(gw, {"model": "chat", "messages": MSG}, budget) for _ in range(15)]
    assert all(r.status == 200 for r in served)
    assert {r.headers["x-faregate-provider"] for r in served} == {"openai"}
    r = post(gw, {"model": "chat", "messages": MSG}, {"x-faregate-latency-budget-ms": "1"})
    assert r.status == 503 and r.json()["error"]["param"] == "x-faregate-latency-budget-ms"


def test_latency_rise_moves_traffic_away_and_recovery_brings_it_back(fresh_pair):
    gw, a, b = fresh_pair
    with Traffic(gw, "chat") as t:
        t.wait_for("deepseek", above=0.3, last=40)          # both share the load
        behave(b, latency_ms=250)
        t0 = time.monotonic()
        t.wait_for("deepseek", below=0.3, last=40, timeout=10)
        assert time.monotonic() - t0 < 10
        behave(b, latency_ms=15)
        t.wait_for("deepseek", above=0.3, last=40, timeout=20)
    assert t.failed == 0


def test_error_storm_cools_the_deployment_down_and_traffic_returns(fresh_pair):
    gw, a, b = fresh_pair
    with Traffic(gw, "chat") as t:
        t.wait_for("deepseek", above=0.3, last=30)
        behave(b, latency_ms=5, status=503)
        t.wait_for("deepseek", below=0.05, last=60, timeout=10)
        sent_during_storm = b.call(lambda: b.provider.stats["requests"])
        time.sleep(1.0)
        probes = b.call(lambda: b.provider.stats["requests"]) - sent_during_storm
        assert probes < 15                                    # cooling down: probes only, not the flow
        behave(b, latency_ms=15)
        t.wait_for("deepseek", above=0.25, last=40, timeout=20)
    assert t.failed == 0                                      # failover hid the storm from clients


def test_rate_limit_headers_move_traffic_before_429s(fresh_pair):
    gw, a, b = fresh_pair
    with Traffic(gw, "chat") as t:
        t.wait_for("deepseek", above=0.3, last=30)
        behave(b, latency_ms=15, ratelimit_remaining=3)     # of 10000: nearly exhausted
        t.wait_for("deepseek", below=0.2, last=60, timeout=10)
        assert b.call(lambda: b.provider.stats["by_status"].get("429", 0)) == 0
        behave(b, latency_ms=15, ratelimit_remaining=9000)
        t.wait_for("deepseek", above=0.3, last=40, timeout=20)
    assert t.failed == 0


# ---- several formats and routes on a few mocks ---------------------------------------------

@pytest.fixture(scope="module")
def mixed():
    with MockThread(OpenAIMock(Behavior(chunks=5))) as oa, \
            MockThread(AnthropicMock(Behavior(chunks=5))) as an:
        o = oa.url + "/v1"
        config = {
            "server": {"access_log": False},
            "ledger": {"enabled": False},
            "catalog": {"overrides": {"ministral-8b-latest": {"capabilities": {"tools": False}}}},
            "routing": {"backoff_base_ms": 10, "max_retry_wait_s": 5},
            "models": [
                {"name": "gpt-4o-mini", "base_url": o},
                {"name": "gpt-4o", "base_url": o},
                {"name": "deepseek-chat", "provider": "deepseek", "base_url": o},
                {"name": "ministral-8b-latest", "provider": "mistral", "base_url": o},
                {"name": "claude-haiku-4-5", "provider": "anthropic", "base_url": an.url, "api_key": "k"},
                {"name": "limited", "model": "limited-model", "base_url": o},
                {"name": "cutter", "model": "cut-model", "base_url": o},
            ],
            "routes": [
                {"name": "xfmt", "policy": "cheapest", "deployments": ["gpt-4o-mini", "claude-haiku-4-5"]},
                {"name": "json-cascade", "policy": "cascade", "deployments": ["gpt-4o-mini", "gpt-4o"]},
                {"name": "cheap", "policy": "cheapest", "deployments": ["ministral-8b-latest", "gpt-4o-mini"]},
                {"name": "longctx", "policy": "cheapest", "deployments": ["deepseek-chat", "claude-haiku-4-5"]},
                {"name": "limited-or-mini", "deployments": [{"use": "limited", "weight": 1},
                                                            {"use": "gpt-4o-mini", "weight": 0}]},
            ],
        }
        with Gateway(config) as gw:
            yield gw, oa, an


@pytest.fixture
def stack(mixed):
    gw, oa, an = mixed
    for m in (oa, an):
        m.call(m.provider.reset_stats)
        m.call(lambda m=m: m.provider.model_behavior.clear())
    return mixed


def test_503_fails_over_from_openai_format_to_anthropic_format(stack):
    gw, oa, an = stack
    behave(oa, "gpt-4o-mini", status=503)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    r = client.chat.completions.with_raw_response.create(model="xfmt", messages=MSG)
    assert r.headers["x-faregate-provider"] == "anthropic" and r.headers["x-faregate-attempts"] == "2"
    assert r.parse().choices[0].message.content
    assert "cheapest openai/gpt-4o-mini" in r.headers["x-faregate-route"]
    stream = client.chat.completions.create(model="xfmt", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert an.call(lambda: an.provider.stats["requests"]) == 2


def test_every_candidate_failing_is_a_503_listing_the_attempts(stack):
    gw, oa, an = stack
    behave(oa, "gpt-4o-mini", status=500)
    behave(an, status=529, error_message="Overloaded")
    r = post(gw, {"model": "xfmt", "messages": MSG})
    assert r.status == 503 and int(r.headers["x-faregate-attempts"]) >= 2
    msg = r.json()["error"]["message"]
    assert "openai/gpt-4o-mini: 500" in msg and "anthropic/claude-haiku-4-5: 529" in msg
    behave(an, chunks=5)


def test_failure_mid_stream_ends_with_an_error_event(stack):
    gw, oa, an = stack
    behave(oa, "cut-model", fault="cut", cut_after=2, chunk_delay_ms=5)
    with stream_lines(gw.url + "/v1/chat/completions",
                      orjson.dumps({"model": "cutter", "messages": MSG, "stream": True})) as lines:
        events = [ln for ln in lines if ln.startswith(b"data: ")]
    assert b'"content":"the"' in b"".join(events)
    assert b"upstream_stream_interrupted" in events[-1] and b"[DONE]" not in events[-1]


def test_429_retry_after_is_honoured(stack):
    gw, oa, an = stack
    behave(oa, "limited-model", status=429, retry_after=1)

    def lift_after_first_request():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if oa.call(lambda: oa.provider.stats["by_model"].get("limited-model", 0)) >= 1:
                behave(oa, "limited-model", latency_ms=1)
                return
            time.sleep(0.01)

    threading.Thread(target=lift_after_first_request, daemon=True).start()
    t0 = time.monotonic()
    r = post(gw, {"model": "limited", "messages": MSG})
    assert r.status == 200 and r.headers["x-faregate-attempts"] == "2"
    assert time.monotonic() - t0 >= 0.9                   # waited for retry-after, single deployment

    behave(oa, "limited-model", status=429, retry_after=30)
    t0 = time.monotonic()
    r = post(gw, {"model": "limited-or-mini", "messages": MSG})
    assert r.status == 200 and r.headers["x-faregate-model"] == "gpt-4o-mini"
    assert r.headers["x-faregate-attempts"] == "2" and time.monotonic() - t0 < 5
    before = oa.call(lambda: oa.provider.stats["by_model"]["limited-model"])
    for _ in range(5):                                     # blocked for 30 s: not even tried
        r = post(gw, {"model": "limited-or-mini", "messages": MSG})
        assert r.status == 200 and r.headers["x-faregate-attempts"] == "1"
    assert oa.call(lambda: oa.provider.stats["by_model"]["limited-model"]) == before


def test_cascade_escalates_on_invalid_json_and_records_both_costs(stack):
    gw, oa, an = stack
    behave(oa, "gpt-4o-mini", invalid_json=True)
    body = {"model": "json-cascade", "messages": MSG, "response_format": {"type": "json_object"}}
    r = post(gw, body)
    assert r.status == 200 and r.headers["x-faregate-model"] == "gpt-4o"
    assert r.headers["x-faregate-cascade"] == "escalated: openai/gpt-4o-mini"
    assert "escalated from openai/gpt-4o-mini (invalid JSON" in r.headers["x-faregate-route"]
    assert orjson.loads(r.json()["choices"][0]["message"]["content"])
    usage = r.json()["usage"]
    alone = (usage["prompt_tokens"] * 2.5 + usage["completion_tokens"] * 10.0) / 1e6   # gpt-4o's share
    assert float(r.headers["x-faregate-cost-usd"]) > alone
    behave(oa, "gpt-4o-mini")
    r = post(gw, body)
    assert r.headers["x-faregate-model"] == "gpt-4o-mini" and "x-faregate-cascade" not in r.headers


def test_tools_never_reach_a_model_without_tools(stack):
    gw, oa, an = stack
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    for _ in range(10):
        r = post(gw, {"model": "cheap", "messages": MSG, "tools": tools})
        assert r.status == 200 and r.headers["x-faregate-model"] == "gpt-4o-mini"
        assert r.json()["choices"][0]["message"]["tool_calls"]
    assert post(gw, {"model": "cheap", "messages": MSG}).headers["x-faregate-model"] == "ministral-8b-latest"
    seen = oa.call(lambda: oa.provider.stats["by_model"])
    assert seen.get("ministral-8b-latest") == 1
    r = post(gw, {"model": "ministral-8b-latest", "messages": MSG, "tools": tools})
    assert r.status == 400 and r.json()["error"]["param"] == "tools"


def test_long_prompt_never_reaches_a_small_context_window(stack):
    gw, oa, an = stack
    long = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 30_000}]   # ~150k tokens
    r = post(gw, {"model": "longctx", "messages": long})
    assert r.status == 200 and r.headers["x-faregate-model"] == "claude-haiku-4-5"
    assert "1 dropped by context" in r.headers["x-faregate-route"]
    assert "deepseek-chat" not in oa.call(lambda: oa.provider.stats["by_model"])
    assert post(gw, {"model": "longctx", "messages": MSG}).headers["x-faregate-model"] == "deepseek-chat"


def test_cost_ceiling_is_respected(stack):
    gw, oa, an = stack
    body = {"model": "auto", "messages": MSG, "max_tokens": 500}
    for _ in range(5):
        r = post(gw, body, {"x-faregate-max-cost-usd": "0.0004", "x-faregate-min-tier": "2"})
        assert r.status == 200 and r.headers["x-faregate-model"] in ("gpt-4o-mini", "deepseek-chat")
        assert float(r.headers["x-faregate-cost-usd"]) <= 0.0004
    r = post(gw, body, {"x-faregate-max-cost-usd": "0.00000001"})
    err = r.json()["error"]
    assert r.status == 400 and err["param"] == "x-faregate-max-cost-usd" and "cost ceiling" in err["message"]


def test_bad_routing_headers_are_400s_naming_them(stack):
    gw, oa, an = stack
    for header, value in [("x-faregate-max-cost-usd", "lots"), ("x-faregate-latency-budget-ms", "-5"),
                          ("x-faregate-min-tier", "0"), ("x-faregate-providers", "openai,acme")]:
        r = post(gw, {"model": "auto", "messages": MSG}, {header: value})
        assert r.status == 400 and r.json()["error"]["param"] == header, (header, r.body)
        assert header in r.json()["error"]["message"] and r.headers["x-faregate-attempts"] == "0"
    r = post(gw, {"model": "auto", "messages": MSG}, {"x-faregate-providers": "anthropic"})
    assert r.status == 200 and r.headers["x-faregate-provider"] == "anthropic"
