"""The planner (filters, ranking, overrides, explanation) and the failover run, in-process
with a fake clock; and the routes/routing config checks."""
from __future__ import annotations

import random

import pytest

from adapters.base import Deployment, ProviderError, openai_error_body
from proxy.catalog import default_catalog, load_catalog
from proxy.config import ConfigError, parse_config
from proxy.cost import estimate_cost
from proxy.errors import GatewayError
from proxy.failover import FailoverRun
from proxy.routeconfig import RouteConfig, RouteDeployment, RoutingConfig
from proxy.routing import Router, quick_cost

KNOWN = ("openai", "anthropic", "gemini", "deepseek", "mistral", "groq")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def dep(name: str, provider: str, url: str = "http://x", **kw) -> Deployment:
    return Deployment(name=name, provider=provider, model=name, base_url=url, **kw)


POOL = [dep("gpt-4o-mini", "openai"), dep("gpt-4o", "openai"), dep("claude-sonnet-4-5", "anthropic"),
        dep("ministral-8b-latest", "mistral"), dep("deepseek-chat", "deepseek"),
        dep("gemini-2.5-flash", "gemini")]


def router(routes=(), deployments=POOL, catalog=None, **kw) -> Router:
    return Router(list(deployments), list(routes), RoutingConfig(**kw), catalog=catalog,
                  rng=random.Random(7), clock=Clock(), known_providers=KNOWN)


def chat(text="hi", model="auto", **kw) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def labels(plan) -> list[str]:
    return [m.label for m in plan.members]


def test_every_model_entry_is_a_route_and_auto_is_built_in():
    r = router()
    assert set(r.routes) == {d.name for d in POOL} | {"auto"}
    assert len(r.routes["auto"]) == len(POOL)
    with pytest.raises(GatewayError) as exc:
        r.plan(chat(model="nope"), {})
    assert exc.value.status == 404 and exc.value.param == "model"


def test_auto_sends_a_classification_to_the_cheapest_and_reasoning_higher():
    r = router()
    cheap = r.plan(chat("Classify the sentiment: 'love it'"), {})
    assert labels(cheap)[0] == "mistral/ministral-8b-latest" and cheap.min_tier == 1
    hard = r.plan(chat("Prove the theorem step by step, then analyze the trade-offs.\n1. a\n2. b\n3. c"), {})
    tiers = {r.tier_of(m) for m in hard.members}
    assert min(tiers) >= hard.min_tier >= 4
    costs = [hard.costs[m.index] for m in hard.members]
    assert costs == sorted(costs)
    assert hard.explanation.startswith(f"auto: auto, tier>={hard.min_tier} (math, 4 steps, reasoning)")
    assert "dropped by tier)" in hard.explanation and "cheapest adequate" in hard.explanation


def test_tools_never_reach_a_model_without_tools():
    cat = load_catalog(None, {"ministral-8b-latest": {"capabilities": {"tools": False}}})
    r = router(catalog=cat, routes=[RouteConfig(name="cheap", policy="cheapest",
                                                deployments=["ministral-8b-latest", "gpt-4o-mini"])])
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    for _ in range(20):
        p = r.plan(chat(model="cheap", tools=tools), {})
        assert labels(p) == ["openai/gpt-4o-mini"]
    assert "1/2 candidates (1 dropped by tools)" in p.explanation
    with pytest.raises(GatewayError) as exc:
        r.plan(chat(model="ministral-8b-latest", tools=tools), {})
    assert exc.value.status == 400 and exc.value.param == "tools"
    assert "no tool support" in exc.value.message


def test_long_prompt_never_reaches_a_small_context_window():
    r = router(routes=[RouteConfig(name="any", policy="cheapest",
                                   deployments=["deepseek-chat", "gpt-4o-mini", "gemini-2.5-flash"])])
    long = "word " * 150_000
    p = r.plan(chat(long, model="any"), {})
    assert labels(p) == ["gemini/gemini-2.5-flash"]
    p = r.plan(chat("short", model="any", max_tokens=10_000), {})
    assert "deepseek/deepseek-chat" not in labels(p)          # max output 8192
    with pytest.raises(GatewayError) as exc:
        r.plan(chat(long, model="gpt-4o-mini"), {})
    assert exc.value.param == "messages" and "context window" in exc.value.message


def test_images_and_json_schema_need_their_capabilities():
    r = router()
    img = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "http://i"}}]}]}
    assert "deepseek/deepseek-chat" not in labels(r.plan(img, {}))
    schema = chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    assert "deepseek/deepseek-chat" not in labels(r.plan(schema, {}))
    assert "deepseek/deepseek-chat" in labels(r.plan(chat(response_format={"type": "json_object"}), {}))


def test_header_overrides():
    r = router()
    p = r.plan(chat(), {"x-faregate-min-tier": "5"})
    assert labels(p) == ["anthropic/claude-sonnet-4-5"]
    p = r.plan(chat(), {"x-faregate-providers": "openai, anthropic"})
    assert {m.dep.provider for m in p.members} == {"openai", "anthropic"}
    p = r.plan(chat(), {"x-faregate-providers": "-openai,!mistral"})
    assert {m.dep.provider for m in p.members} == {"anthropic", "deepseek", "gemini"}
    p = r.plan(chat(max_tokens=1000), {"x-faregate-max-cost-usd": "0.001"})
    assert all(p.costs[m.index] <= 0.001 for m in p.members) and "openai/gpt-4o" not in labels(p)
    for header, value in [("x-faregate-max-cost-usd", "-1"), ("x-faregate-max-cost-usd", "cheap"),
                          ("x-faregate-latency-budget-ms", "0"), ("x-faregate-min-tier", "6"),
                          ("x-faregate-min-tier", "2.5"), ("x-faregate-providers", "openai,nope"),
                          ("x-faregate-providers", " , ")]:
        with pytest.raises(GatewayError) as exc:
            r.plan(chat(), {header: value})
        assert exc.value.status == 400 and exc.value.param == header and header in exc.value.message


def test_cost_ceiling_that_nothing_meets_names_the_header():
    r = router()
    with pytest.raises(GatewayError) as exc:
        r.plan(chat(max_tokens=4000), {"x-faregate-max-cost-usd": "0.0000001"})
    assert exc.value.status == 400 and exc.value.param == "x-faregate-max-cost-usd"
    assert exc.value.code == "no_eligible_deployment" and "the cost ceiling ruled out" in exc.value.message


def test_latency_budget_uses_live_p95():
    r = router(routes=[RouteConfig(name="pair", policy="weighted", deployments=["gpt-4o-mini", "gpt-4o"])])
    now = r.clock()
    for _ in range(20):
        r.report(r.routes["pair"][0], 900.0, True)
        r.report(r.routes["pair"][1], 100.0, True)
    p = r.plan(chat(model="pair"), {"x-faregate-latency-budget-ms": "500"})
    assert labels(p) == ["openai/gpt-4o"]
    with pytest.raises(GatewayError) as exc:
        r.plan(chat(model="pair"), {"x-faregate-latency-budget-ms": "50"})
    assert exc.value.status == 503 and exc.value.code == "latency_budget_unmet"
    assert now == r.clock()


def test_equal_prices_share_load_by_weight():
    a = dep("gpt-4o-mini", "openai", "http://a")
    b = dep("gpt-4o-mini", "openai", "http://b", weight=3.0)
    r = router(deployments=[a, b], routes=[RouteConfig(name="c", policy="cheapest", deployments=["gpt-4o-mini"])])
    firsts = [r.plan(chat(model="c"), {}).members[0].dep.base_url for _ in range(2000)]
    assert 0.70 < firsts.count("http://b") / 2000 < 0.80


def test_inline_deployments_and_use_with_weight():
    built = []

    def build(d: RouteDeployment) -> Deployment:
        built.append(d)
        return dep(d.name or d.model, d.provider, d.base_url or "http://inline")

    r = Router(list(POOL), [RouteConfig(name="mix", deployments=[
        RouteDeployment(use="gpt-4o", weight=0.0), RouteDeployment(model="gpt-4o-mini", base_url="http://y")])],
        RoutingConfig(), build=build, rng=random.Random(1), clock=Clock())
    assert [d.base_url for d in r.routes["mix"]] == ["http://x", "http://y"]
    assert r.plan(chat(model="mix"), {}).members[0].dep.base_url == "http://y"   # weight 0 goes last


def test_quick_cost_agrees_with_cost_module():
    for entry in default_catalog().values():
        for p, o in ((10, 5), (150_000, 700), (300_000, 10)):
            assert quick_cost(p, o, entry) == pytest.approx(estimate_cost(p, o, entry), rel=1e-6, abs=1e-9)


# ---- failover run ---------------------------------------------------------------------------

def err(kind: str, status: int, retryable: bool, retry_after: float | None = None) -> ProviderError:
    return ProviderError(status=status, kind=kind, retryable=retryable, retry_after=retry_after,
                         body=openai_error_body(kind))


def two_provider_router(**kw) -> Router:
    deps = [dep("gpt-4o-mini", "openai", "http://a"), dep("gpt-4o-mini", "openai", "http://b"),
            dep("claude-haiku-4-5", "anthropic", "http://c")]
    return router(deployments=deps, routes=[RouteConfig(name="r", policy="cheapest",
                                                        deployments=["gpt-4o-mini", "claude-haiku-4-5"])], **kw)


def test_failover_prefers_another_provider_then_backs_off_on_the_same():
    r = two_provider_router(backoff_base_ms=100, backoff_max_ms=1000)
    run = FailoverRun(r, r.plan(chat(model="r"), {}), chat(model="r"), random.Random(3))
    m1, w1 = run.next()
    assert m1.dep.provider == "openai" and w1 == 0
    run.sending(m1)
    run.failed(m1, err("server", 500, True), 10.0)
    m2, w2 = run.next()
    assert m2.dep.provider == "anthropic" and w2 == 0          # another provider, at once
    run.sending(m2)
    run.failed(m2, err("overloaded", 529, True), 10.0)
    m3, w3 = run.next()
    assert m3.dep.provider == "openai" and m3.dep.base_url != m1.dep.base_url
    assert 0.05 <= w3 <= 0.1                                    # same provider again: backoff


def test_retry_after_blocks_the_deployment_and_is_waited_out_when_it_is_the_only_one():
    r = router(deployments=[dep("gpt-4o-mini", "openai")], max_retry_wait_s=5)
    run = FailoverRun(r, r.plan(chat(model="gpt-4o-mini"), {}), chat(), random.Random(1))
    m, _ = run.next()
    run.sending(m)
    run.failed(m, err("rate_limit", 429, True, retry_after=2.0), 5.0)
    m2, wait = run.next()
    assert m2 is m and wait == pytest.approx(2.0)
    run.sending(m2)
    run.failed(m2, err("rate_limit", 429, True, retry_after=30.0), 5.0)
    assert run.next() is None                                   # tried twice: give up
    # another request meanwhile does not send to it either
    other = FailoverRun(r, r.plan(chat(model="gpt-4o-mini"), {}), chat(), random.Random(1))
    assert other.next() is None and other.unavailable()[0].error.status == 503


def test_deadline_and_max_attempts_bound_the_run():
    r = two_provider_router(max_attempts=2)
    run = FailoverRun(r, r.plan(chat(model="r"), {}), chat(model="r"))
    for _ in range(2):
        m, _ = run.next()
        run.sending(m)
        run.failed(m, err("server", 500, True), 1.0)
    assert run.next() is None
    r = two_provider_router(deadline_s=5)
    run = FailoverRun(r, r.plan(chat(model="r"), {}), chat(model="r"))
    r.clock.t += 6
    assert run.next() is None and "deadline reached" in run.route_header()


def test_bad_request_stops_but_auth_fails_over():
    r = two_provider_router()
    run = FailoverRun(r, r.plan(chat(model="r"), {}), chat(model="r"))
    m, _ = run.next()
    run.sending(m)
    run.failed(m, err("auth", 401, False), 1.0)
    m2, _ = run.next()
    run.sending(m2)
    run.failed(m2, err("bad_request", 400, False), 1.0)
    assert run.next() is None


def test_context_window_error_moves_to_a_larger_model():
    r = router(routes=[RouteConfig(name="r", policy="cheapest", deployments=["deepseek-chat", "gpt-4o-mini"])])
    body = chat(model="r")
    run = FailoverRun(r, r.plan(body, {}), body)
    m, _ = run.next()
    assert m.label == "deepseek/deepseek-chat"
    run.sending(m)
    run.failed(m, err("context_window", 400, False), 1.0)
    m2, _ = run.next()
    facts = r.facts(m2)[0]
    assert facts.context_window > 128_000 and facts.tier >= 4    # outside the route: any larger chat model
    assert "context window exceeded" in run.route_header()


def test_content_policy_goes_to_the_fallback_route_once():
    r = router(routes=[RouteConfig(name="r", deployments=["gpt-4o-mini"], fallback="safe"),
                       RouteConfig(name="safe", deployments=["claude-sonnet-4-5"])])
    body = chat(model="r")
    run = FailoverRun(r, r.plan(body, {}), body)
    m, _ = run.next()
    run.sending(m)
    run.failed(m, err("content_policy", 400, False), 1.0)
    m2, _ = run.next()
    assert m2.label == "anthropic/claude-sonnet-4-5"
    run.sending(m2)
    run.failed(m2, err("content_policy", 400, False), 1.0)
    assert run.next() is None


def test_cascade_escalates_to_a_higher_tier_only():
    r = router(routes=[RouteConfig(name="c", policy="cascade",
                                   deployments=["gpt-4o-mini", "ministral-8b-latest", "gpt-4o", "claude-sonnet-4-5"])])
    body = chat(model="c", response_format={"type": "json_object"})
    run = FailoverRun(r, r.plan(body, {}), body)
    m, _ = run.next()
    assert m.label == "mistral/ministral-8b-latest"
    run.sending(m)
    bad = {"choices": [{"message": {"content": "{oops"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 10}}
    assert run.escalate(m, bad)
    m2, _ = run.next()
    assert r.tier_of(m2) > r.tier_of(m)
    run.sending(m2)
    good = {"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}]}
    assert not run.escalate(m2, good)
    assert run.billed and run.billed_usd(None) == 0.0
    from proxy.accounting import Pricing
    assert run.billed_usd(Pricing(default_catalog())) > 0


# ---- config -------------------------------------------------------------------------------

BASE = "models:\n  - {name: gpt-4o-mini}\n  - {name: gpt-4o}\n"


@pytest.mark.parametrize("text, where", [
    ("routes:\n  - name: r\n    policy: fastest\n    deployments: [gpt-4o]\n", "line 6: routes[0].policy"),
    ("routes:\n  - name: r\n    deployments: [gpt-5]\n", "line 6: routes[0].deployments[0]"),
    ("routes:\n  - name: r\n    deployments: [gpt-4o]\n    fallback: nowhere\n", "line 7: routes[0].fallback"),
    ("routes:\n  - name: r\n    deployments: [gpt-4o]\n    cascade: {regex: '('}\n", "line 7: routes[0].cascade.regex"),
    ("routes:\n  - name: r\n    deployments: [{use: gpt-4o, weight: -1}]\n", "routes[0].deployments[0].weight"),
    ("routes:\n  - name: r\n    deployments: [gpt-4o]\n    min_tier: 7\n", "line 7: routes[0].min_tier"),
    ("routes:\n  - name: r\n    deployments: [gpt-4o]\n    colour: red\n", "line 7: routes[0].colour"),
    ("routing:\n  breaker:\n    failures: 0\n", "line 6: routing.breaker.failures"),
    ("routing:\n  complexity:\n    rules: {vibes: {weight: 1}}\n", "line 6: routing.complexity.rules.vibes"),
    ("routing:\n  adaptive:\n    floor: 2\n", "line 6: routing.adaptive.floor"),
])
def test_config_errors_name_key_and_line(text, where):
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + text, source="f.yaml")
    assert where in str(exc.value) and str(exc.value).startswith("f.yaml, line ")


def test_routes_config_parses():
    cfg = parse_config(BASE + "routes:\n  - name: cheap\n    policy: cheapest\n"
                              "    deployments: [gpt-4o-mini, {use: gpt-4o, weight: 2}]\n"
                              "    max_cost_usd: 0.01\n    providers: [openai]\n"
                              "routing:\n  deadline_s: 5\n  adaptive: {interval_s: 1}\n")
    assert cfg.routes[0].deployments[1].weight == 2 and cfg.routing.deadline_s == 5
