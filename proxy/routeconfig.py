"""The `routes:` and `routing:` configuration sections, and their checks.

Plain msgspec structs with defaults, imported by config.py (and by the routing modules that
use them), so loading a config does not import the hot path or the adapters.

    routes:
      - name: cheap                      # what clients send as `model`
        policy: cheapest                 # weighted | cheapest | cascade | auto
        deployments: [gpt-4o-mini, {use: deepseek-chat, weight: 2},
                      {name: local, provider: openai, model: llama3, base_url: http://gpu:8000/v1}]
        fallback: claude-haiku-4-5       # route for content-policy refusals
        min_tier: 2
        providers: [openai, deepseek]    # allow list;  deny_providers: [...]
        max_cost_usd: 0.01               # per request, estimated before sending
        latency_budget_ms: 3000          # a deployment's live P95 must be under it
        cascade: {checks: [non_empty, no_refusal, json, schema, regex], regex: "^OK"}
    routing:
      deadline_s: 60
      backoff_base_ms: 100
      breaker: {failures: 5, cooldown_s: 5}
      adaptive: {interval_s: 0.5, window_s: 30}
      complexity: {tiers: [1, 2, 3, 4], rules: {code: {weight: 1.5}}}
"""
from __future__ import annotations

import re
from typing import Any, Callable

import msgspec

__all__ = ["Rule", "ExtraRule", "DEFAULT_RULES", "ComplexityConfig", "BreakerConfig", "AdaptiveConfig",
           "CascadeConfig", "RouteDeployment", "RouteConfig", "RoutingConfig", "POLICIES", "CHECKS",
           "check_routing"]

POLICIES = ("weighted", "cheapest", "cascade", "auto")
CHECKS = ("non_empty", "no_refusal", "json", "schema", "regex")


class Rule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    weight: float
    above: float = 0.0      # the rule's threshold (tokens, messages, steps...), where it has one


class ExtraRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A user rule: a regular expression over the scanned text, and the weight it adds."""
    name: str
    pattern: str
    weight: float = 1.0


DEFAULT_RULES: dict[str, Rule] = {
    "long_prompt": Rule(weight=1.0, above=3000),        # prompt tokens
    "very_long_prompt": Rule(weight=1.0, above=20000),  # prompt tokens
    "code": Rule(weight=1.0),
    "math": Rule(weight=1.0),
    "multi_step": Rule(weight=1.0, above=3),            # numbered steps or sequencing words
    "reasoning": Rule(weight=1.0),
    "deep_conversation": Rule(weight=0.5, above=8),     # messages
    "tools": Rule(weight=0.5),
    "long_output": Rule(weight=1.0, above=2000),        # max_tokens requested
    "simple_task": Rule(weight=-1.0, above=200),        # classify/extract on a prompt under N tokens
}


class ComplexityConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    base: float = 1.0
    tiers: list[float] = msgspec.field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0])  # score thresholds for tiers 2, 3, 4, 5
    rules: dict[str, Rule] = {}                 # overrides of DEFAULT_RULES, by name
    extra: list[ExtraRule] = []
    scan_chars: int = 3000


class BreakerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    failures: int = 5            # consecutive failures that open the breaker
    error_rate: float = 0.5      # ... or this window error rate
    min_samples: int = 10        # ... over at least this many requests
    cooldown_s: float = 5.0
    cooldown_max_s: float = 120.0
    probes: int = 1              # requests let through at a time while half-open
    probe_timeout_s: float = 30.0
    ratelimit_low: float = 0.1   # remaining fraction under which the weight is damped
    ratelimit_floor: float = 0.05
    ratelimit_hold_s: float = 10.0


class AdaptiveConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    interval_s: float = 0.5
    window_s: float = 30.0         # latency/error window per deployment
    min_samples: int = 3
    latency_exponent: float = 2.0
    error_exponent: float = 3.0
    floor: float = 0.05
    smoothing_down: float = 0.5
    smoothing_up: float = 0.2
    idle_smoothing: float = 0.05
    max_step_up: float = 1.5
    deadband: float = 0.1


class CascadeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    checks: list[str] = msgspec.field(default_factory=lambda: ["non_empty", "no_refusal", "json", "schema"])
    regex: str | None = None
    schema: dict[str, Any] | None = None
    json_always: bool = False


class RouteDeployment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A route member: `use` names model entries (all entries of that name), or the fields
    describe one deployment inline (as under `models:`)."""
    use: str | None = None
    name: str | None = None           # catalog name for prices/capabilities; defaults to `model`
    provider: str = "openai"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    options: dict[str, Any] = {}
    weight: float | None = None       # None: the model entry's own weight (1.0 inline)


class RouteConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    deployments: list[str | RouteDeployment] = []    # empty with policy auto: every chat deployment
    policy: str = "weighted"
    fallback: str | None = None
    min_tier: int | None = None
    providers: list[str] | None = None
    deny_providers: list[str] = []
    max_cost_usd: float | None = None
    latency_budget_ms: float | None = None
    cascade: CascadeConfig = msgspec.field(default_factory=CascadeConfig)


class RoutingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    deadline_s: float = 60.0           # bounds every attempt and wait of one request
    max_attempts: int = 4
    backoff_base_ms: float = 100.0     # before retrying the same provider: base x 2^n, jittered
    backoff_max_ms: float = 2000.0
    max_retry_wait_s: float = 10.0     # the longest retry-after the gateway waits out itself
    price_tie: float = 0.1             # candidates within 10% of each other's price share load
    expected_output_tokens: int = 400  # output estimate for costs when max_tokens is not given
    complexity: ComplexityConfig = msgspec.field(default_factory=ComplexityConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    adaptive: AdaptiveConfig = msgspec.field(default_factory=AdaptiveConfig)


def check_routing(routes: list[RouteConfig], routing: RoutingConfig, model_names: set[str],
                  known_provider: Callable[[str], bool], fail: Callable[[list, str], None]) -> None:
    """Semantic checks; `fail(path, message)` raises the config error naming key and line."""
    r = routing
    for key in ("deadline_s", "backoff_base_ms", "backoff_max_ms"):
        if getattr(r, key) <= 0:
            fail(["routing", key], f"expected a positive number, found {getattr(r, key)}")
    if r.max_attempts < 1:
        fail(["routing", "max_attempts"], f"expected at least 1, found {r.max_attempts}")
    if r.max_retry_wait_s < 0 or r.price_tie < 0 or r.expected_output_tokens < 1:
        key = "max_retry_wait_s" if r.max_retry_wait_s < 0 else "price_tie" if r.price_tie < 0 else "expected_output_tokens"
        fail(["routing", key], f"expected a non-negative number, found {getattr(r, key)}")
    c = r.complexity
    if len(c.tiers) != 4 or any(b < a for a, b in zip(c.tiers, c.tiers[1:])):
        fail(["routing", "complexity", "tiers"], f"expected 4 ascending score thresholds (for tiers 2-5), found {c.tiers}")
    for name in c.rules:
        if name not in DEFAULT_RULES:
            fail(["routing", "complexity", "rules", name], f"unknown rule; known rules: {', '.join(DEFAULT_RULES)}")
    for i, extra in enumerate(c.extra):
        try:
            re.compile(extra.pattern)
        except re.error as exc:
            fail(["routing", "complexity", "extra", i, "pattern"], f"not a valid regular expression: {exc}")
    b = r.breaker
    if b.failures < 1 or b.probes < 1 or b.min_samples < 1:
        key = "failures" if b.failures < 1 else "probes" if b.probes < 1 else "min_samples"
        fail(["routing", "breaker", key], f"expected at least 1, found {getattr(b, key)}")
    for key in ("cooldown_s", "cooldown_max_s", "probe_timeout_s", "ratelimit_hold_s"):
        if getattr(b, key) <= 0:
            fail(["routing", "breaker", key], f"expected a positive number of seconds, found {getattr(b, key)}")
    for key in ("error_rate", "ratelimit_low", "ratelimit_floor"):
        if not 0 < getattr(b, key) <= 1:
            fail(["routing", "breaker", key], f"expected a fraction in (0, 1], found {getattr(b, key)}")
    a = r.adaptive
    for key in ("interval_s", "window_s", "max_step_up"):
        if getattr(a, key) <= 0:
            fail(["routing", "adaptive", key], f"expected a positive number, found {getattr(a, key)}")
    for key in ("floor", "smoothing_down", "smoothing_up", "idle_smoothing", "deadband"):
        if not 0 <= getattr(a, key) <= 1:
            fail(["routing", "adaptive", key], f"expected a fraction in [0, 1], found {getattr(a, key)}")

    route_names = {rt.name for rt in routes} | model_names | {"auto"}
    seen: set[str] = set()
    for i, rt in enumerate(routes):
        at = ["routes", i]
        if not rt.name:
            fail(at + ["name"], "expected a non-empty route name")
        if rt.name in seen:
            fail(at + ["name"], f"route {rt.name!r} is defined twice")
        seen.add(rt.name)
        if rt.policy not in POLICIES:
            fail(at + ["policy"], f"expected one of {', '.join(POLICIES)}, found {rt.policy!r}")
        if not rt.deployments and rt.policy != "auto":
            fail(at + ["deployments"], "a route needs at least one deployment (only policy auto may leave it empty)")
        if rt.fallback is not None and (rt.fallback == rt.name or rt.fallback not in route_names):
            fail(at + ["fallback"], f"expected the name of another route or model, found {rt.fallback!r}")
        if rt.min_tier is not None and not 1 <= rt.min_tier <= 5:
            fail(at + ["min_tier"], f"expected a tier from 1 to 5, found {rt.min_tier}")
        if rt.max_cost_usd is not None and rt.max_cost_usd <= 0:
            fail(at + ["max_cost_usd"], f"expected a positive amount, found {rt.max_cost_usd}")
        if rt.latency_budget_ms is not None and rt.latency_budget_ms <= 0:
            fail(at + ["latency_budget_ms"], f"expected a positive number of ms, found {rt.latency_budget_ms}")
        for j, dep in enumerate(rt.deployments):
            where = at + ["deployments", j]
            if isinstance(dep, str):
                if dep not in model_names:
                    fail(where, f"no model entry is named {dep!r} (names under models: {', '.join(sorted(model_names)) or 'none'})")
                continue
            if (dep.use is None) == (dep.model is None):
                fail(where, "give either `use: <model entry name>` or an inline deployment with `model:`")
            if dep.use is not None and dep.use not in model_names:
                fail(where + ["use"], f"no model entry is named {dep.use!r}")
            if dep.weight is not None and dep.weight < 0:
                fail(where + ["weight"], f"expected a weight >= 0, found {dep.weight}")
            if dep.model is not None:
                if dep.base_url is None and not known_provider(dep.provider):
                    fail(where + ["provider"], f"unknown provider {dep.provider!r} and no base_url given")
                if dep.base_url is not None and not dep.base_url.startswith(("http://", "https://")):
                    fail(where + ["base_url"], f"expected an http:// or https:// URL, found {dep.base_url!r}")
        for check in rt.cascade.checks:
            if check not in CHECKS:
                fail(at + ["cascade", "checks"], f"unknown check {check!r}; known: {', '.join(CHECKS)}")
        if rt.cascade.regex is not None:
            try:
                re.compile(rt.cascade.regex)
            except re.error as exc:
                fail(at + ["cascade", "regex"], f"not a valid regular expression: {exc}")
        if rt.cascade.schema is not None:
            import jsonschema  # noqa: PLC0415

            try:
                jsonschema.Draft202012Validator.check_schema(rt.cascade.schema)
            except jsonschema.SchemaError as exc:
                fail(at + ["cascade", "schema"], f"not a valid JSON schema: {exc.message}")
