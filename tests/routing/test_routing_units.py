"""Pure routing pieces: complexity estimate, breaker, rate-limit damping, adaptive weights,
cascade checks. No server, fake clocks."""
from __future__ import annotations

import random

import pytest

from proxy.adaptive import AdaptiveUpdater, WeightedSet
from proxy.cascade import check_answer
from proxy.complexity import ComplexityEstimator
from proxy.health import CLOSED, HALF_OPEN, OPEN, Breaker, DeploymentHealth, RateLimitDamper, ratelimit_state
from proxy.routeconfig import AdaptiveConfig, BreakerConfig, CascadeConfig, ComplexityConfig, ExtraRule, Rule


def chat(text: str, **kw) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **kw}


# ---- complexity -----------------------------------------------------------------------------

EST = ComplexityEstimator()


def test_short_classification_is_tier_1():
    e = EST.estimate(chat("Classify the sentiment of this review: 'great phone'"), 20)
    assert e.tier == 1 and e.reasons == ("simple task",)


def test_plain_question_is_tier_2():
    e = EST.estimate(chat("What is the capital of Norway?"), 12)
    assert e.tier == 2 and e.reasons == ("plain request",)


def test_code_and_steps_raise_the_tier():
    text = ("Refactor this module:\n```python\ndef f(x):\n    return x\n```\n"
            "1. split it\n2. add unit tests\n3. then document it")
    e = EST.estimate(chat(text), 80)
    assert "code" in e.reasons and any(r.endswith("steps") for r in e.reasons)
    assert e.tier >= 4


def test_math_and_reasoning():
    e = EST.estimate(chat("Prove that the integral of x^2 from 0 to 1 is 1/3, step by step."), 30)
    assert "math" in e.reasons and "reasoning" in e.reasons and e.tier >= 4


def test_long_prompt_and_long_output_and_depth():
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "ok"} for i in range(12)]
    e = EST.estimate({"messages": msgs, "max_tokens": 8000}, 25_000)
    assert "25.0k-token prompt" in e.reasons and "8.0k max output" in e.reasons
    assert "12 messages" in e.reasons and e.tier == 5


def test_tools_count_but_tool_choice_none_does_not():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert "tools" in EST.estimate(chat("hi", tools=tools), 30).reasons
    assert "tools" not in EST.estimate(chat("hi", tools=tools, tool_choice="none"), 30).reasons


def test_rules_and_thresholds_are_configurable():
    est = ComplexityEstimator(ComplexityConfig(base=0.0, tiers=[0.5, 1.0, 1.5, 2.0],
                                               rules={"code": Rule(weight=3.0)},
                                               extra=[ExtraRule(name="legal", pattern=r"\bcontract\b", weight=1.0)]))
    assert est.estimate(chat("hello"), 5).tier == 1
    assert est.estimate(chat("```\nx = 1\n```"), 5).tier == 5
    e = est.estimate(chat("Summarise this contract"), 5)
    assert e.reasons == ("legal",) and e.tier == 3
    with pytest.raises(ValueError, match="unknown complexity rule"):
        ComplexityEstimator(ComplexityConfig(rules={"nope": Rule(weight=1)}))


# ---- breaker --------------------------------------------------------------------------------

def test_breaker_opens_half_opens_and_recovers():
    b = Breaker(BreakerConfig(failures=3, cooldown_s=2.0, cooldown_max_s=10.0))
    for _ in range(3):
        assert b.allow(0.0)
        b.on_failure(0.0)
    assert b.state(0.1) == OPEN and not b.allow(1.0) and b.retry_in(1.0) == pytest.approx(1.0)
    assert b.state(2.0) == HALF_OPEN
    assert b.allow(2.0) and not b.allow(2.0)        # one probe at a time
    b.on_failure(2.1)                                 # failed probe: open again, longer cooldown
    assert b.state(2.2) == OPEN and b.cooldown == 4.0
    assert b.state(6.2) == HALF_OPEN and b.allow(6.2)
    b.on_success(6.3)
    assert b.state(6.3) == CLOSED and b.allow(6.4)


def test_breaker_trips_on_error_rate_and_forgets_after_successes():
    b = Breaker(BreakerConfig(failures=100, error_rate=0.5, min_samples=10, cooldown_s=1.0))
    b.on_failure(0.0, error_rate=0.6, samples=5)
    assert b.state(0.0) == CLOSED                     # too few samples to judge
    b.on_failure(0.0, error_rate=0.6, samples=10)
    assert b.state(0.0) == OPEN
    assert b.state(1.0) == HALF_OPEN and b.allow(1.0)
    for _ in range(100):
        b.on_success(1.5)
    assert b.trips == 0


def test_probe_slot_expires_when_its_outcome_never_comes():
    b = Breaker(BreakerConfig(failures=1, cooldown_s=1.0, probe_timeout_s=5.0))
    b.on_failure(0.0)
    assert b.allow(1.0) and not b.allow(2.0) and b.allow(6.5)


def test_ratelimit_headers_damp_the_weight_until_reset():
    assert ratelimit_state({"content-type": "x"}, 0.0) is None
    frac, reset = ratelimit_state({"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "2",
                                   "x-ratelimit-reset-requests": "3s", "x-ratelimit-limit-tokens": "1000",
                                   "x-ratelimit-remaining-tokens": "900"}, 0.0)
    assert frac == pytest.approx(0.02) and reset == 3.0
    frac, reset = ratelimit_state({"anthropic-ratelimit-requests-limit": "50",
                                   "anthropic-ratelimit-requests-remaining": "1",
                                   "anthropic-ratelimit-requests-reset": "1970-01-01T00:00:10Z"}, 4.0)
    assert frac == pytest.approx(0.02) and reset == pytest.approx(6.0)
    d = RateLimitDamper(BreakerConfig(ratelimit_low=0.1, ratelimit_floor=0.05))
    d.observe({"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "5",
               "x-ratelimit-reset-requests": "2s"}, now=10.0, wall=0.0)
    assert d.factor(10.5) == pytest.approx(0.5)
    assert d.factor(12.5) == 1.0                      # the limit has reset
    d.observe({"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0"}, 20.0, 0.0)
    assert d.factor(20.1) == 0.05
    d.observe({"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "80"}, 21.0, 0.0)
    assert d.factor(21.0) == 1.0


def test_health_counts_deployment_faults_only_and_honours_retry_after():
    h = DeploymentHealth(BreakerConfig(failures=2), window_s=10.0)
    h.report(5.0, False, "bad_request", None, 0.0, 0.0)
    h.report(5.0, False, "context_window", None, 0.0, 0.0)
    assert h.window.count(0.0) == 0 and h.breaker.state(0.0) == CLOSED
    h.report(5.0, False, "rate_limit", None, 1.0, 0.0, retry_after=3.0)
    assert h.blocked_for(2.0) == pytest.approx(2.0) and h.blocked_for(4.0) == 0.0
    h.report(5.0, False, "server", None, 4.0, 0.0)
    assert h.breaker.state(4.0) == OPEN and h.blocked_for(4.0) > 0


# ---- adaptive weights ---------------------------------------------------------------------

def _feed(h: DeploymentHealth, t0: float, t1: float, latency: float, ok: bool = True, per_s: int = 20) -> None:
    n = int((t1 - t0) * per_s)
    for i in range(n):
        h.report(latency, ok, None if ok else "server", None, t0 + i / per_s, 0.0)


def _share(ws: WeightedSet, i: int) -> float:
    w = ws.picker.weights
    return w[i] / sum(w)


def test_slow_deployment_loses_traffic_smoothly_and_wins_it_back_gradually():
    cfg = AdaptiveConfig(window_s=4.0, interval_s=0.5)
    bcfg = BreakerConfig()
    a, b = DeploymentHealth(bcfg, 4.0), DeploymentHealth(bcfg, 4.0)
    ws = WeightedSet([a, b], [1.0, 1.0])
    up = AdaptiveUpdater([ws], cfg)
    t = 0.0
    while t < 4.0:
        _feed(a, t, t + 0.5, 50)
        _feed(b, t, t + 0.5, 50)
        t += 0.5
        up.tick(t)
    assert _share(ws, 1) == pytest.approx(0.5)
    shares = []
    while t < 8.0:                                   # b becomes 10x slower
        _feed(a, t, t + 0.5, 50)
        _feed(b, t, t + 0.5, 500, per_s=2)
        t += 0.5
        up.tick(t)
        shares.append(_share(ws, 1))
    assert shares[-1] < 0.1                          # most traffic moved away
    assert all(y <= x + 1e-9 for x, y in zip(shares, shares[1:]))   # monotone, no flapping
    assert shares[0] > 0.2                           # smoothed: not all at once
    assert ws.mult[1] >= cfg.floor                   # still probed
    recovery = []
    while t < 20.0:                                  # b is fast again
        _feed(a, t, t + 0.5, 50)
        _feed(b, t, t + 0.5, 50, per_s=2)
        t += 0.5
        up.tick(t)
        recovery.append(_share(ws, 1))
    assert recovery[-1] > 0.45
    steps = [y / x for x, y in zip(recovery, recovery[1:]) if x > 0]
    assert max(steps) <= cfg.max_step_up + 1e-9      # gradual


def test_noise_within_the_deadband_does_not_move_weights():
    cfg = AdaptiveConfig(window_s=4.0)
    a, b = DeploymentHealth(BreakerConfig(), 4.0), DeploymentHealth(BreakerConfig(), 4.0)
    ws = WeightedSet([a, b], [1.0, 1.0])
    rng = random.Random(1)
    t = 0.0
    seen = set()
    while t < 10.0:
        for i in range(10):
            a.report(100 + rng.random() * 3, True, None, None, t + i / 20, 0.0)
            b.report(100 + rng.random() * 3, True, None, None, t + i / 20, 0.0)
        t += 0.5
        ws.step(t, cfg)
        seen.add(tuple(ws.picker.weights))
    assert seen == {(1.0, 1.0)}


def test_errors_and_open_breaker_take_weight_away():
    cfg = AdaptiveConfig(window_s=4.0)
    bcfg = BreakerConfig(failures=3, cooldown_s=30)
    a, b = DeploymentHealth(bcfg, 4.0), DeploymentHealth(bcfg, 4.0)
    ws = WeightedSet([a, b], [2.0, 1.0])
    _feed(a, 0, 1, 50)
    _feed(b, 0, 0.2, 50, ok=False)
    ws.step(1.0, cfg)
    assert ws.picker.weights[1] == 0.0 and ws.picker.weights[0] == 2.0   # open breaker: no traffic
    assert ws.picker.pick(0.99) == 0


def test_idle_deployment_drifts_back_toward_full_weight():
    cfg = AdaptiveConfig(idle_smoothing=0.2)
    ws = WeightedSet([DeploymentHealth(BreakerConfig(), 4.0)], [1.0])
    ws.mult[0] = 0.05
    for k in range(30):
        ws.step(100.0 + k, cfg)
    assert ws.mult[0] > 0.95


# ---- cascade checks -----------------------------------------------------------------------

def answer(text, **msg) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text, **msg},
                         "finish_reason": "stop"}]}


JSON_BODY = {"messages": [], "response_format": {"type": "json_object"}}
SCHEMA_BODY = {"messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}}


def test_cascade_checks():
    cfg = CascadeConfig()
    assert check_answer(answer('{"answer": "x"}'), JSON_BODY, cfg) is None
    assert check_answer(answer('{"answer": "x"'), JSON_BODY, cfg).startswith("invalid JSON")
    assert check_answer(answer("not json"), {"messages": []}, cfg) is None      # JSON not asked for
    assert check_answer(answer("   "), {"messages": []}, cfg) == "empty answer"
    assert check_answer(answer("I'm sorry, but I can't help with that."), {"messages": []}, cfg) == "refusal"
    assert check_answer(answer(None, refusal="no"), {"messages": []}, cfg) == "refusal"
    assert check_answer(answer(None, tool_calls=[{"id": "c"}]), JSON_BODY, cfg) is None
    assert check_answer(answer('{"answer": "x"}'), SCHEMA_BODY, cfg) is None
    bad = check_answer(answer('{"answer": 3}'), SCHEMA_BODY, cfg)
    assert bad.startswith("schema mismatch at answer")
    assert check_answer(answer('{"other": 1}'), SCHEMA_BODY, cfg).startswith("schema mismatch at (root)")


def test_cascade_regex_and_route_schema():
    import re
    cfg = CascadeConfig(checks=["regex"], regex=r"^\d+$")
    assert check_answer(answer("42"), {"messages": []}, cfg, re.compile(cfg.regex)) is None
    assert "no match" in check_answer(answer("forty-two"), {"messages": []}, cfg, re.compile(cfg.regex))
    cfg = CascadeConfig(checks=["json", "schema"], json_always=True, schema={"type": "array"})
    assert check_answer(answer("[1]"), {"messages": []}, cfg) is None
    assert check_answer(answer("{}"), {"messages": []}, cfg).startswith("schema mismatch")
