"""Routes: which deployments may serve a request, in which order, and why.

The `model` a client names is a route. Every model entry name is one (its entries are its
deployments, policy `weighted`); `routes:` in the config adds named routes over model
entries or inline deployments; `auto` (built in unless configured) is every chat deployment
the catalog prices, with the `auto` policy.

`Router.plan(body, headers)` turns a request into a `RoutePlan`:

1. Filters drop the deployments that cannot serve it, in this order: provider allow/deny
   lists (route, `x-faregate-providers`); capabilities the request needs (tools, images,
   json_object/json_schema, streaming); context window (prompt token count + max tokens)
   and max output; minimum tier (route `min_tier`, `x-faregate-min-tier`, and for `auto`
   the complexity estimate); cost ceiling (estimated from tokens and prices); latency budget
   (the deployment's live P95). A deployment the catalog does not know passes the capability,
   context and tier filters (nothing says it cannot) but not a cost ceiling.
2. Ranking: `weighted` orders by the live weights (weighted random order); `cheapest` and
   `auto` order by estimated cost, and deployments within `price_tie` of each other form a
   group ordered by weight, so equally cheap deployments share the load; `cascade` orders
   by cost and escalates by tier (see failover.py). Deployments cooling down (open breaker,
   retry-after) go last.
3. `explanation` is the one line sent as `x-faregate-route`.

Weights are the adaptive updater's (adaptive.py), health is per upstream deployment
(health.py) and shared by every route that contains it.
"""
from __future__ import annotations

import math
import random
import re
import time
from typing import Any, Callable, Iterable, Mapping

from adapters.base import Deployment

from ._fast import count_chat_tokens
from .adaptive import AdaptiveUpdater, WeightedSet
from .catalog import Catalog, CatalogEntry, default_catalog
from .complexity import ComplexityEstimator, Estimate
from .errors import GatewayError, bad_request
from .health import DeploymentHealth
from .routeconfig import CascadeConfig, RouteConfig, RoutingConfig

__all__ = ["Router", "Route", "RoutePlan", "Member", "Overrides", "parse_overrides", "request_needs",
           "quick_cost"]

H_MAX_COST = "x-faregate-max-cost-usd"
H_LATENCY = "x-faregate-latency-budget-ms"
H_MIN_TIER = "x-faregate-min-tier"
H_PROVIDERS = "x-faregate-providers"

_PROVIDER_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class Member:
    """One deployment in the router's pool, with the live health of its upstream."""

    __slots__ = ("dep", "health", "index", "label")

    def __init__(self, dep: Deployment, health: DeploymentHealth, index: int):
        self.dep = dep
        self.health = health
        self.index = index
        self.label = f"{dep.provider}/{dep.model}"


class Route:
    __slots__ = ("name", "policy", "members", "wset", "cfg", "regex")

    def __init__(self, name: str, policy: str, members: list[Member], weights: list[float],
                 cfg: RouteConfig | None = None):
        self.name = name
        self.policy = policy
        self.members = members
        self.wset = WeightedSet([m.health for m in members], weights)
        self.cfg = cfg
        self.regex = re.compile(cfg.cascade.regex) if cfg is not None and cfg.cascade.regex else None

    @property
    def fallback(self) -> str | None:
        return self.cfg.fallback if self.cfg is not None else None

    @property
    def cascade(self) -> CascadeConfig:
        return self.cfg.cascade if self.cfg is not None else CascadeConfig()


class Overrides:
    __slots__ = ("max_cost", "latency_budget", "min_tier", "allow", "deny")

    def __init__(self, max_cost: float | None = None, latency_budget: float | None = None,
                 min_tier: int | None = None, allow: frozenset[str] | None = None,
                 deny: frozenset[str] = frozenset()):
        self.max_cost = max_cost
        self.latency_budget = latency_budget
        self.min_tier = min_tier
        self.allow = allow
        self.deny = deny


class RoutePlan:
    """The outcome of routing one request: candidates in the order to try them, and why."""

    __slots__ = ("route", "members", "min_tier", "estimate", "prompt_tokens", "max_output",
                 "output_tokens", "needs", "explanation", "costs", "overrides")

    def __init__(self, route: Route, members: list[Member], min_tier: int | None,
                 estimate: Estimate | None, prompt_tokens: int, max_output: int | None,
                 output_tokens: int, needs: tuple[str, ...], explanation: str,
                 costs: dict[int, float], overrides: Overrides):
        self.route = route
        self.members = members
        self.min_tier = min_tier
        self.estimate = estimate
        self.prompt_tokens = prompt_tokens
        self.max_output = max_output
        self.output_tokens = output_tokens
        self.needs = needs
        self.explanation = explanation
        self.costs = costs              # member index -> estimated USD
        self.overrides = overrides

    @property
    def candidates(self) -> list[Deployment]:
        return [m.dep for m in self.members]

    @property
    def policy(self) -> str:
        return self.route.policy


# ---- request inspection -----------------------------------------------------------------

def _has_image(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image"):
                    return True
    return False


def request_needs(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The catalog capabilities a chat request needs."""
    needs = []
    if body.get("tools") and body.get("tool_choice") != "none":
        needs.append("tools")
    if _has_image(body.get("messages")):
        needs.append("vision")
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        needs.append("json_mode")
    elif kind == "json_schema":
        needs.append("structured_output")
    if body.get("stream"):
        needs.append("streaming")
    return tuple(needs)


_NEED_TEXT = {"tools": "no tool support", "vision": "no image input", "json_mode": "no JSON mode",
              "structured_output": "no structured output", "streaming": "no streaming",
              "embeddings": "not an embeddings model", "chat": "an embeddings model"}
_NEED_PARAM = {"tools": "tools", "vision": "messages", "json_mode": "response_format",
               "structured_output": "response_format", "streaming": "stream", "embeddings": "model",
               "chat": "model"}


def _number(headers: Mapping[str, str], name: str, what: str, *, integer: bool = False,
            lo: float = 0.0, hi: float = math.inf) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip()) if integer else float(raw.strip())
    except ValueError:
        value = None
    if value is None or not (lo < value <= hi if not integer else lo <= value <= hi) or value != value:
        raise bad_request(f"header {name} must be {what}, found {raw!r}", param=name, code="invalid_header")
    return value


def parse_overrides(headers: Mapping[str, str], known_providers: Iterable[str]) -> Overrides:
    """The per-request routing headers; a bad value is a 400 naming the header."""
    max_cost = _number(headers, H_MAX_COST, "a positive number of US dollars, e.g. 0.01")
    budget = _number(headers, H_LATENCY, "a positive number of milliseconds, e.g. 2000")
    tier = _number(headers, H_MIN_TIER, "a tier from 1 to 5", integer=True, lo=1, hi=5)
    allow: set[str] | None = None
    deny: set[str] = set()
    raw = headers.get(H_PROVIDERS)
    if raw is not None:
        known = set(known_providers)
        names = [p.strip() for p in raw.split(",")]
        if not any(names):
            raise bad_request(f"header {H_PROVIDERS} must list providers, e.g. 'openai,anthropic' "
                              f"or '-deepseek' to exclude one, found {raw!r}", param=H_PROVIDERS,
                              code="invalid_header")
        for name in names:
            negate = name.startswith(("-", "!"))
            bare = name[1:].strip() if negate else name
            if not bare or not _PROVIDER_RE.match(bare) or bare not in known:
                raise bad_request(f"header {H_PROVIDERS}: unknown provider {bare!r}; known: "
                                  f"{', '.join(sorted(known))}", param=H_PROVIDERS, code="invalid_header")
            if negate:
                deny.add(bare)
            else:
                allow = (allow or set()) | {bare}
    return Overrides(max_cost, budget, tier if tier is None else int(tier),
                     frozenset(allow) if allow is not None else None, frozenset(deny))


def quick_cost(prompt_tokens: int, output_tokens: int, price: CatalogEntry) -> float:
    """`cost.estimate_cost` without a cache hit, in a few float operations: the planner
    prices every candidate of every request (a test checks the two agree)."""
    lc = price.long_context
    if lc is not None and prompt_tokens > lc.threshold:
        return (prompt_tokens * lc.input + output_tokens * lc.output) / 1e6
    return (prompt_tokens * price.input + output_tokens * price.output) / 1e6


def _usd(v: float) -> str:
    return f"${v:.2g}" if v < 0.0001 else f"${v:.6f}".rstrip("0")


# ---- the router ---------------------------------------------------------------------------

class Router:
    """Routes, their members' health and weights, and the planner.

    `deployments` are the model entries (built by app.build_deployments); `build` turns an
    inline route deployment's fields into a Deployment the same way. `catalog` is a Catalog
    or a CatalogWatcher (anything with a live `.catalog`); `pricing` (accounting.Pricing)
    supplies prices where a model entry sets its own."""

    def __init__(self, deployments: list[Deployment], routes: Iterable[RouteConfig] = (),
                 routing: RoutingConfig | None = None, *, catalog: Any = None, pricing: Any = None,
                 build: Callable[[Any], Deployment] | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, known_providers: Iterable[str] = ()):
        self.cfg = routing or RoutingConfig()
        self._catalog_source = catalog if catalog is not None else default_catalog()
        self._pricing = pricing
        self.rng = rng or random.Random()
        self.clock = clock
        self.complexity = ComplexityEstimator(self.cfg.complexity)
        self.pool: list[Member] = []
        self._health: dict[tuple, DeploymentHealth] = {}
        self._by_dep: dict[int, Member] = {}
        self._facts_cat: Any = None
        self._facts: dict[int, tuple[CatalogEntry | None, CatalogEntry | None]] = {}
        by_name: dict[str, list[Member]] = {}
        for dep in deployments:
            by_name.setdefault(dep.name, []).append(self._add(dep))
        self.table: dict[str, Route] = {
            name: Route(name, "weighted", ms, [m.dep.weight for m in ms]) for name, ms in by_name.items()}
        for rc in routes:
            members, weights = [], []
            for d in rc.deployments:
                if isinstance(d, str) or d.use is not None:
                    ref = d if isinstance(d, str) else d.use
                    for m in by_name.get(ref, ()):
                        members.append(m)
                        weights.append(m.dep.weight if isinstance(d, str) or d.weight is None else d.weight)
                else:
                    if build is None:
                        raise ValueError(f"route {rc.name!r}: inline deployments need a build function")
                    members.append(self._add(build(d)))
                    weights.append(1.0 if d.weight is None else d.weight)
            if not members and rc.policy == "auto":
                members = self._auto_members()
                weights = [m.dep.weight for m in members]
            self.table[rc.name] = Route(rc.name, rc.policy, members, weights, rc)
        if "auto" not in self.table:
            members = self._auto_members()
            if members:
                self.table["auto"] = Route("auto", "auto", members, [m.dep.weight for m in members])
        self.routes: dict[str, list[Deployment]] = {
            name: [m.dep for m in r.members] for name, r in self.table.items()}
        self.known_providers = frozenset(known_providers) | {m.dep.provider for m in self.pool}
        self.updater = AdaptiveUpdater([r.wset for r in self.table.values()], self.cfg.adaptive, clock)

    def _add(self, dep: Deployment) -> Member:
        key = (dep.provider, dep.model, dep.base_url, dep.api_key)
        health = self._health.get(key)
        if health is None:
            a = self.cfg.adaptive
            health = self._health[key] = DeploymentHealth(self.cfg.breaker, a.window_s, 10,
                                                          max_block_s=max(60.0, self.cfg.max_retry_wait_s))
        m = Member(dep, health, len(self.pool))
        self.pool.append(m)
        self._by_dep[id(dep)] = m
        return m

    def _auto_members(self) -> list[Member]:
        out, seen = [], set()
        for m in self.pool:
            facts, price = self.facts(m)
            if facts is None or price is None or facts.capabilities.embeddings or id(m.health) in seen:
                continue
            seen.add(id(m.health))
            out.append(m)
        return out

    # ---- lookups ----------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        src = self._catalog_source
        return src if isinstance(src, Catalog) else src.catalog

    def facts(self, m: Member) -> tuple[CatalogEntry | None, CatalogEntry | None]:
        """(catalog entry for capabilities/context/tier, entry for prices) of a member."""
        cat = self.catalog
        if cat is not self._facts_cat:
            self._facts, self._facts_cat = {}, cat
        got = self._facts.get(m.index)
        if got is None:
            dep = m.dep
            entry = cat.find(dep.provider, dep.model) or cat.get(dep.name)
            price = self._pricing.price(dep) if self._pricing is not None else entry
            got = self._facts[m.index] = (entry, price)
        return got

    def member(self, dep: Deployment) -> Member | None:
        return self._by_dep.get(id(dep))

    def __contains__(self, name: str) -> bool:
        return name in self.table

    def names(self) -> list[str]:
        return list(self.table)

    def candidates(self, name: str) -> list[Deployment]:
        """The route's deployments in weighted order, no request filters (embeddings, tools)."""
        route = self.table.get(name)
        if route is None:
            return []
        order = self._weighted_order(route, list(range(len(route.members))), self.clock())
        return [route.members[i].dep for i in order]

    def report(self, dep: Deployment, latency_ms: float, ok: bool, kind: str | None = None,
               headers: Mapping[str, str] | None = None, retry_after: float | None = None) -> None:
        """One attempt's outcome, into the deployment's window, breaker and damping."""
        m = self._by_dep.get(id(dep))
        if m is not None:
            m.health.report(latency_ms, ok, kind, headers, self.clock(), time.time(), retry_after)

    # ---- planning ---------------------------------------------------------------------------
    def plan(self, body: dict, headers: Mapping[str, str], endpoint: str = "chat",
             route_name: str | None = None) -> RoutePlan:
        name = route_name or body.get("model")
        route = self.table.get(name)
        if route is None:
            raise GatewayError(404, f"the model '{name}' does not exist on this gateway; "
                                    f"GET /v1/models lists the models it serves",
                               param="model", code="model_not_found")
        ov = parse_overrides(headers, self.known_providers)
        return self.plan_route(route, body, ov, endpoint)

    def plan_route(self, route: Route, body: dict, ov: Overrides, endpoint: str = "chat") -> RoutePlan:
        now = self.clock()
        rc = route.cfg
        chat = endpoint == "chat"
        prompt_tokens = count_chat_tokens(body) if chat else 0
        max_out = body.get("max_completion_tokens") or body.get("max_tokens") if chat else None
        max_out = max_out if isinstance(max_out, int) and max_out > 0 else None
        out_tokens = max_out or (self.cfg.expected_output_tokens if chat else 0)
        needs = request_needs(body) if chat else ("embeddings",)
        estimate = None
        tiers = [rc.min_tier if rc is not None else None, ov.min_tier]
        if route.policy == "auto" and chat:
            estimate = self.complexity.estimate(body, prompt_tokens)
            tiers.append(estimate.tier)
        min_tier = max((t for t in tiers if t), default=None)
        allow = rc.providers if rc is not None and rc.providers is not None else None
        if ov.allow is not None:
            allow = [p for p in (allow if allow is not None else ov.allow) if p in ov.allow]
        deny = set(rc.deny_providers if rc is not None else ()) | ov.deny
        max_cost = min((c for c in (rc.max_cost_usd if rc else None, ov.max_cost) if c), default=None)
        budget = min((b for b in (rc.latency_budget_ms if rc else None, ov.latency_budget) if b), default=None)
        ranked = route.policy in ("cheapest", "auto", "cascade")

        eligible: list[int] = []
        costs: dict[int, float] = {}
        dropped: dict[str, list[str]] = {}
        for k, m in enumerate(route.members):
            facts, price = self.facts(m)
            cost = quick_cost(prompt_tokens, out_tokens, price) if price is not None and (ranked or max_cost) else None
            why = self._reject(m, facts, cost, price, chat, needs, prompt_tokens, max_out, min_tier,
                               allow, deny, max_cost, budget, now)
            if why is not None:
                dropped.setdefault(why[0], []).append(why[1])
                continue
            eligible.append(k)
            if cost is not None:
                costs[m.index] = cost
        if not eligible:
            raise self._no_candidates(route, dropped, ov)

        if ranked:
            order = self._cheapest_order(route, eligible, costs, now)
        else:
            order = self._weighted_order(route, eligible, now)
        blocked = [k for k in order if route.members[k].health.blocked_for(now) > 0]
        if blocked:
            order = [k for k in order if k not in blocked] + blocked
        members = [route.members[k] for k in order]
        explanation = self._explain(route, members, min_tier, estimate, len(eligible), dropped, costs)
        return RoutePlan(route, members, min_tier, estimate, prompt_tokens, max_out, out_tokens,
                         needs, explanation, costs, ov)

    def _reject(self, m: Member, facts: CatalogEntry | None, cost: float | None,
                price: CatalogEntry | None, chat: bool, needs: tuple[str, ...], prompt_tokens: int,
                max_out: int | None, min_tier: int | None, allow, deny, max_cost: float | None,
                budget: float | None, now: float) -> tuple[str, str] | None:
        dep = m.dep
        if (allow is not None and dep.provider not in allow) or dep.provider in deny:
            return "provider", m.label
        if facts is not None:
            caps = facts.capabilities
            if chat and caps.embeddings:
                return "capability", f"{m.label} ({_NEED_TEXT['chat']})"
            for need in needs:
                if not getattr(caps, need):
                    return "capability:" + need, f"{m.label} ({_NEED_TEXT[need]})"
            if chat:
                need_ctx = prompt_tokens + (max_out or 0)
                if need_ctx > facts.context_window:
                    return "context", f"{m.label} ({facts.context_window:,}-token window < {need_ctx:,})"
                if max_out and facts.max_output and max_out > facts.max_output:
                    return "max_tokens", f"{m.label} (max output {facts.max_output:,} < {max_out:,})"
            if min_tier and facts.tier < min_tier:
                return "tier", f"{m.label} (tier {facts.tier})"
        if max_cost is not None:
            if cost is None:
                return "cost", f"{m.label} (no price)"
            if cost > max_cost:
                return "cost", f"{m.label} (~{_usd(cost)})"
        if budget is not None:
            p95 = m.health.p95(now)
            if p95 is not None and p95 > budget:
                return "latency", f"{m.label} (P95 {p95:.0f} ms)"
        return None

    def _no_candidates(self, route: Route, dropped: dict[str, list[str]], ov: Overrides) -> GatewayError:
        if not route.members:
            return GatewayError(503, f"the route '{route.name}' has no deployments",
                                param="model", code="no_deployments")
        parts = []
        for kind, items in dropped.items():
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            parts.append(f"{_FILTER_TEXT.get(kind.split(':')[0], kind)} ruled out {shown}")
        main = max(dropped, key=lambda k: len(dropped[k]))
        param = _filter_param(main, ov)
        msg = f"no deployment of '{route.name}' can serve this request: " + "; ".join(parts)
        if set(dropped) == {"latency"}:
            return GatewayError(503, msg, param=param, code="latency_budget_unmet", headers={"retry-after": "1"})
        return GatewayError(400, msg, param=param, code="no_eligible_deployment")

    def _weighted_order(self, route: Route, idxs: list[int], now: float) -> list[int]:
        if len(idxs) <= 1:
            return list(idxs)
        picker = route.wset.picker
        rng = self.rng
        excluded = set(range(len(route.members))).difference(idxs)
        out: list[int] = []
        while True:
            i = picker.pick_excluding(rng.random(), excluded) if excluded else picker.pick(rng.random())
            if i < 0:
                break
            out.append(i)
            excluded.add(i)
        if len(out) < len(idxs):
            out += [i for i in idxs if i not in excluded]
        return out

    def _cheapest_order(self, route: Route, idxs: list[int], costs: dict[int, float], now: float) -> list[int]:
        def cost(k: int) -> float:
            return costs.get(route.members[k].index, math.inf)

        ranked = sorted(idxs, key=cost)
        tie = 1.0 + self.cfg.price_tie
        out: list[int] = []
        i = 0
        while i < len(ranked):
            low = cost(ranked[i])
            j = i + 1
            while j < len(ranked) and (cost(ranked[j]) <= low * tie if low != math.inf else True):
                j += 1
            out += self._weighted_order(route, ranked[i:j], now)
            i = j
        return out

    def _explain(self, route: Route, members: list[Member], min_tier: int | None,
                 estimate: Estimate | None, n_eligible: int, dropped: dict[str, list[str]],
                 costs: dict[int, float]) -> str:
        s = f"{route.name}: {route.policy}"
        if min_tier:
            s += f", tier>={min_tier}"
        if estimate is not None:
            s += f" ({', '.join(estimate.reasons)})"
        s += f"; {n_eligible}/{len(route.members)} candidates"
        if dropped:
            s += " (" + ", ".join(f"{len(v)} dropped by {k.split(':')[-1]}" for k, v in dropped.items()) + ")"
        first = members[0]
        how = {"weighted": "weighted pick", "cheapest": "cheapest", "auto": "cheapest adequate",
               "cascade": "cascade from"}[route.policy]
        s += f"; {how} {first.label}"
        if first.index in costs:
            s += f" ~{_usd(costs[first.index])}"
        return s.encode("ascii", "replace").decode()

    # ---- failover helpers ---------------------------------------------------------------------
    def larger_context(self, plan: RoutePlan, than: Member, exclude: set[int]) -> list[Member]:
        """Chat deployments with a larger context window than `than`'s, at least its tier and
        able to serve the request, cheapest first (the route's own first)."""
        facts, _ = self.facts(than)
        if facts is None:
            return []
        pool = list(plan.route.members)
        if "auto" in self.table:
            pool += self.table["auto"].members
        out, seen = [], set(exclude)
        for m in pool:
            if m.index in seen:
                continue
            seen.add(m.index)
            f, price = self.facts(m)
            if f is None or f.context_window <= facts.context_window or f.tier < facts.tier or f.capabilities.embeddings:
                continue
            if any(not getattr(f.capabilities, n) for n in plan.needs):
                continue
            out.append((0 if m in plan.route.members else 1,
                        quick_cost(plan.prompt_tokens, plan.output_tokens, price) if price else math.inf, m))
        out.sort(key=lambda t: (t[0], t[1]))
        return [m for _, _, m in out]

    def tier_of(self, m: Member) -> int | None:
        facts, _ = self.facts(m)
        return facts.tier if facts is not None else None

    def refresh_weights(self) -> None:
        now = self.clock()
        for r in self.table.values():
            r.wset.refresh(now)


_FILTER_TEXT = {"provider": "the provider filter", "capability": "required capabilities",
                "context": "the context window", "max_tokens": "max_tokens", "tier": "the minimum tier",
                "cost": "the cost ceiling", "latency": "the latency budget"}


def _filter_param(kind: str, ov: Overrides) -> str:
    if kind.startswith("capability:"):
        return _NEED_PARAM[kind.split(":", 1)[1]]
    return {"provider": H_PROVIDERS if (ov.allow is not None or ov.deny) else "model",
            "capability": "model", "context": "messages", "max_tokens": "max_tokens",
            "tier": H_MIN_TIER if ov.min_tier else "model",
            "cost": H_MAX_COST if ov.max_cost else "model",
            "latency": H_LATENCY if ov.latency_budget else "model"}[kind]
