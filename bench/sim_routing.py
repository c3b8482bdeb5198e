"""What `auto` routing saves: a seeded mixed workload, routed by the real planner, priced at
catalog prices, against sending everything to one frontier model or to the cheapest one.

    python -m bench.sim_routing [--requests 5000] [--seed 42] [--frontier claude-sonnet-4-5]

The workload mixes short classification, JSON extraction, chat questions, long-document
summaries, tool-using agent turns, code generation and long multi-step reasoning, with prompts
written so the complexity estimator sees what a real one would (code fences, numbered steps,
math, conversation depth, tools, requested output length). Each request is planned by
`proxy.routing.Router.plan` over a typical multi-provider set of deployments; the simulated
provider answers with the workload's output length (lognormal noise, capped by max_tokens),
and the answer is priced with `proxy.cost.cost_usd`. No network: the figures are about the
routing decision and prices, not about provider latency.
"""
from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from adapters.base import Deployment
from proxy.catalog import default_catalog
from proxy.cost import cost_usd
from proxy.routing import Router

DEPLOYMENTS = ["gpt-5.1", "gpt-5-mini", "gpt-4o-mini", "gpt-4.1-nano", "claude-sonnet-4-5",
               "claude-haiku-4-5", "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
               "deepseek-chat", "mistral-small-latest", "ministral-8b-latest", "groq/llama-3.1-8b-instant"]

_FILLER = ("the quarterly report covers revenue growth churn regional performance customer feedback "
           "and operating costs across several product lines with notes from the sales team").split()
TOOLS = [{"type": "function", "function": {"name": "search_orders", "description": "Find orders",
                                           "parameters": {"type": "object", "properties": {
                                               "customer": {"type": "string"}, "status": {"type": "string"}}}}}]


def filler(rng: random.Random, tokens: int) -> str:
    return " ".join(rng.choice(_FILLER) for _ in range(max(1, int(tokens * 0.75))))


def _classify(rng):
    review = filler(rng, rng.randint(20, 90))
    return ({"messages": [{"role": "user", "content": f"Classify the sentiment of this review as positive, "
                                                      f"negative or neutral: {review}"}], "max_tokens": 5}, 3)


def _extract(rng):
    doc = filler(rng, rng.randint(200, 600))
    return ({"messages": [{"role": "system", "content": "Extract the fields as JSON."},
                          {"role": "user", "content": f"Extract customer name, date and total from: {doc}"}],
             "response_format": {"type": "json_object"}}, 80)


def _chat(rng):
    return ({"messages": [{"role": "user", "content": f"What should I know about {filler(rng, rng.randint(10, 60))}?"}]},
            150)


def _summarise(rng):
    doc = filler(rng, rng.randint(2000, 12000))
    return ({"messages": [{"role": "user", "content": f"Summarise this document in a paragraph:\n{doc}"}]}, 300)


def _agent(rng):
    turns = rng.randint(3, 7)
    msgs = [{"role": "system", "content": "You are a support agent."}]
    for _ in range(turns):
        msgs.append({"role": "user", "content": filler(rng, rng.randint(40, 200))})
        msgs.append({"role": "assistant", "content": filler(rng, rng.randint(40, 200))})
    msgs.append({"role": "user", "content": "Find my last order and tell me its status."})
    return {"messages": msgs, "tools": TOOLS}, 120


def _code(rng):
    spec = filler(rng, rng.randint(200, 1200))
    text = (f"Refactor this function and add unit tests:\n```python\ndef load(path):\n    data = open(path).read()\n"
            f"    return parse(data)\n```\n1. keep the API\n2. handle missing files\n3. then write tests\n{spec}")
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 3000}, 800


def _reason(rng):
    ctx = filler(rng, rng.randint(400, 1500))
    text = (f"Prove that the sum of the first n odd numbers is n^2, then derive a bound for the integral "
            f"and analyze the trade-offs step by step.\n1. state the lemma\n2. prove it\n3. apply it\n"
            f"4. finally discuss\n{ctx}")
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 6000}, 2200


WORKLOAD = [("classification", 0.30, _classify), ("extraction", 0.15, _extract), ("chat", 0.20, _chat),
            ("summary", 0.10, _summarise), ("agent+tools", 0.10, _agent), ("code", 0.10, _code),
            ("reasoning", 0.05, _reason)]


def build_router() -> Router:
    cat = default_catalog()
    deps = [Deployment(name=n, provider=cat[n].provider, model=cat[n].model, base_url="http://sim")
            for n in DEPLOYMENTS]
    return Router(deps, rng=random.Random(1))


def simulate(n: int, seed: int, frontier: str) -> dict:
    rng = random.Random(seed)
    router = build_router()
    cat = default_catalog()
    front = cat[frontier]
    chat_entries = [cat[d] for d in DEPLOYMENTS]
    cheapest = min(chat_entries, key=lambda e: e.input * 3 + e.output)   # blended 3:1 input:output
    totals = Counter()
    tiers, served, kinds = Counter(), Counter(), Counter()
    plan_s = 0.0
    names, weights, makers = zip(*WORKLOAD)
    for _ in range(n):
        i = rng.choices(range(len(names)), weights)[0]
        body, out_mean = makers[i](rng)
        body["model"] = "auto"
        kinds[names[i]] += 1
        t0 = time.perf_counter()
        plan = router.plan(body, {})
        plan_s += time.perf_counter() - t0
        member = plan.members[0]
        entry = router.facts(member)[0]
        completion = max(1, int(out_mean * rng.lognormvariate(0, 0.35)))
        if body.get("max_tokens"):
            completion = min(completion, body["max_tokens"])
        usage = {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion}
        totals["auto"] += cost_usd(usage, entry).total_usd
        totals["frontier"] += cost_usd(usage, front).total_usd
        totals["cheapest"] += cost_usd(usage, cheapest).total_usd
        tiers[plan.min_tier] += 1
        served[entry.name] += 1
    return {"n": n, "totals": totals, "tiers": tiers, "served": served, "kinds": kinds,
            "frontier": frontier, "cheapest": cheapest.name, "plan_us": plan_s / n * 1e6}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--frontier", default="claude-sonnet-4-5")
    args = ap.parse_args(argv)
    r = simulate(args.requests, args.seed, args.frontier)
    n, t = r["n"], r["totals"]
    print(f"{n} requests (seed {args.seed}), {len(DEPLOYMENTS)} deployments, catalog prices; "
          f"planner {r['plan_us']:.0f} us/request")
    print("workload: " + ", ".join(f"{k} {v / n:.0%}" for k, v in r["kinds"].most_common()))
    print(f"{'strategy':<46}{'total USD':>12}{'per 1k req':>12}{'vs auto':>10}")
    for label, key in ((f"auto (cheapest adequate)", "auto"), (f"all to {r['frontier']} (frontier)", "frontier"),
                       (f"all to {r['cheapest']} (cheapest)", "cheapest")):
        print(f"{label:<46}{t[key]:>12.4f}{t[key] / n * 1000:>12.4f}{t[key] / t['auto']:>9.2f}x")
    print(f"auto saves {1 - t['auto'] / t['frontier']:.1%} against the frontier model")
    print("minimum tier per request: " + ", ".join(f"tier {k}: {v / n:.1%}" for k, v in sorted(r["tiers"].items())))
    print("served by: " + ", ".join(f"{k} {v / n:.1%}" for k, v in r["served"].most_common()))


if __name__ == "__main__":
    main()
