"""The `cache:` section of the config (see README, "Caching")."""
from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["CacheConfig", "SemanticConfig", "RouteCacheConfig", "check_cache_config"]

# Cosine similarity a candidate needs before the guard even looks at it, per embedder. They
# were picked on the labelled pairs in tests/cache/test_semantic_pairs.py: the lowest value
# at which no near miss gets past the threshold *and* the guard, rounded up.
DEFAULT_THRESHOLDS = {"builtin": 0.80, "gateway": 0.90, "minilm": 0.85}


class SemanticConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False               # opt-in; routes can opt in/out with routes.<name>.semantic
    embedder: Literal["builtin", "gateway", "minilm"] = "builtin"
    model: str | None = None            # embedder "gateway": the embeddings model (a name in models:)
    threshold: float | None = None      # cosine similarity; None: the embedder's default (embedders.py)
    max_entries: int = 100_000
    guard: bool = True                  # reject near misses (numbers, negation, entities, polarity, order)
    allow_tools: bool = False           # semantic-cache requests that offer tools
    allow_n: bool = False               # semantic-cache requests with n > 1
    refresh_s: float = 0.25             # redis backend: how often a replica reads others' entries


class RouteCacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool | None = None
    ttl_s: float | None = None
    any_temperature: bool | None = None
    shared_across_keys: bool | None = None
    semantic: bool | None = None


class CacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "faregate:"
    redis_timeout_s: float = 0.25       # per Redis call; a slow Redis counts as down
    redis_retry_s: float = 2.0          # while down: bypass, try again after this long
    max_bytes: int = 256 * 1024 * 1024  # memory backend bound (Redis: use its maxmemory)
    max_entry_bytes: int = 1024 * 1024  # larger answers are not stored
    default_ttl_s: float = 3600.0
    any_temperature: bool = False       # by default only temperature 0 or absent is cached
    shared_across_keys: bool = False    # by default each client key has its own cache
    semantic: SemanticConfig = msgspec.field(default_factory=SemanticConfig)
    routes: dict[str, RouteCacheConfig] = {}


def check_cache_config(c: CacheConfig, fail) -> None:
    """Semantic checks; `fail(path, message)` is config.py's error reporter."""
    for name in ("redis_timeout_s", "redis_retry_s", "default_ttl_s"):
        if getattr(c, name) <= 0:
            fail(["cache", name], f"expected a positive number of seconds, found {getattr(c, name)}")
    if c.max_bytes <= 0:
        fail(["cache", "max_bytes"], f"expected a positive size in bytes, found {c.max_bytes}")
    if c.max_entry_bytes <= 0:
        fail(["cache", "max_entry_bytes"], f"expected a positive size in bytes, found {c.max_entry_bytes}")
    if c.backend == "redis" and not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        fail(["cache", "redis_url"], f"expected a redis:// or rediss:// URL, found {c.redis_url!r}")
    s = c.semantic
    if s.threshold is not None and not 0.0 < s.threshold <= 1.0:
        fail(["cache", "semantic", "threshold"], f"expected a cosine similarity in (0, 1], found {s.threshold}")
    if s.max_entries < 1:
        fail(["cache", "semantic", "max_entries"], f"expected at least 1, found {s.max_entries}")
    if s.embedder == "gateway" and not s.model:
        fail(["cache", "semantic", "model"], "the gateway embedder needs the name of an embeddings model")
    if s.embedder == "minilm" and (s.enabled or any(r.semantic for r in c.routes.values())):
        from .embedders import minilm_available  # noqa: PLC0415
        why = minilm_available()
        if why:
            fail(["cache", "semantic", "embedder"], why)
    for name, r in c.routes.items():
        if r.ttl_s is not None and r.ttl_s <= 0:
            fail(["cache", "routes", name, "ttl_s"], f"expected a positive number of seconds, found {r.ttl_s}")
