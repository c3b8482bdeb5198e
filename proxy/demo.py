"""`faregate serve --demo`: the gateway in front of built-in simulated providers.

Each worker starts the bench mock providers in its own event loop on loopback ports, with
latencies in the range real providers show, and serves real model names at catalog prices,
so a newcomer sees routing, streaming and cost headers with no keys and no config file.
"""
from __future__ import annotations

from bench.mocks import MOCKS, Behavior, MockProvider

import msgspec

from .config import Config, ModelConfig
from .routeconfig import RouteConfig

__all__ = ["DEMO_MODELS", "DEMO_ROUTES", "start_demo_providers"]

# public name, provider, mock format, behaviour (latency_ms = non-stream total, ttft/chunk for streams)
DEMO_MODELS: list[tuple[str, str, str, Behavior]] = [
    ("gpt-4o-mini", "openai", "openai", Behavior(latency_ms=450, ttft_ms=250, chunk_delay_ms=12, chunks=24)),
    ("gpt-4o", "openai", "openai", Behavior(latency_ms=900, ttft_ms=400, chunk_delay_ms=20, chunks=24)),
    ("deepseek-chat", "deepseek", "openai", Behavior(latency_ms=700, ttft_ms=500, chunk_delay_ms=18, chunks=24)),
    ("claude-sonnet-4-5", "anthropic", "anthropic", Behavior(latency_ms=1100, ttft_ms=600, chunk_delay_ms=22, chunks=24)),
    ("gemini-2.5-flash", "gemini", "gemini", Behavior(latency_ms=500, ttft_ms=300, chunk_delay_ms=10, chunks=24)),
    ("ministral-8b-latest", "mistral", "openai", Behavior(latency_ms=300, ttft_ms=150, chunk_delay_ms=8, chunks=24)),
    ("claude-haiku-4-5", "anthropic", "anthropic", Behavior(latency_ms=600, ttft_ms=350, chunk_delay_ms=12, chunks=24)),
    ("text-embedding-3-small", "openai", "openai", Behavior(latency_ms=60)),
]


# `auto` is built in; these show the other policies (a user route of the same name wins).
DEMO_ROUTES: list[RouteConfig] = [
    RouteConfig(name="cheap", policy="cheapest",
                deployments=["ministral-8b-latest", "gpt-4o-mini", "gemini-2.5-flash", "deepseek-chat"]),
    RouteConfig(name="smart", policy="weighted", deployments=["claude-sonnet-4-5", "gpt-4o"],
                fallback="claude-haiku-4-5"),
    RouteConfig(name="cascade", policy="cascade", deployments=["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"]),
]


async def start_demo_providers(config: Config) -> tuple[Config, list[MockProvider]]:
    """Starts one mock per demo model and returns the config pointing at them."""
    mocks: list[MockProvider] = []
    models = []
    for name, provider, fmt, behavior in DEMO_MODELS:
        if fmt not in MOCKS:  # a format whose mock is not available in this build
            provider, fmt = "openai", "openai"
        mock = MOCKS[fmt](behavior)
        url = await mock.start("127.0.0.1", 0)
        mocks.append(mock)
        base = url + "/v1" if fmt == "openai" else url
        models.append(ModelConfig(name=name, provider=provider, base_url=base, api_key="demo-key"))
    taken = {r.name for r in config.routes} | {m.name for m in config.models}
    routes = list(config.routes) + [r for r in DEMO_ROUTES if r.name not in taken]
    # the demo shows caching too: an exact in-memory cache unless the config set one up
    cache = config.cache if config.cache.enabled else msgspec.structs.replace(
        config.cache, enabled=True, max_bytes=64 * 1024 * 1024)
    cfg = msgspec.structs.replace(config, models=models + list(config.models), routes=routes,
                                  cache=cache, demo=True)
    return cfg, mocks
