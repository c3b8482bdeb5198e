"""Exact and semantic response caching (in memory, or shared through Redis).

`ResponseCache` (layer.py) is what the request path uses; the pieces are importable on
their own: stores (store.py), keys (keys.py), SSE replay and stream assembly (replay.py),
the vector index (semantic.py), embedders (embedders.py) and the near-miss guard (guard.py).
"""
from .guard import near_miss
from .layer import Pending, ResponseCache, parse_directives
from .replay import StreamAssembler, replay_sse
from .settings import CacheConfig, RouteCacheConfig, SemanticConfig
from .store import MemoryStore, RedisStore, StoreUnavailable

__all__ = ["ResponseCache", "Pending", "parse_directives", "CacheConfig", "SemanticConfig",
           "RouteCacheConfig", "MemoryStore", "RedisStore", "StoreUnavailable", "StreamAssembler",
           "replay_sse", "near_miss"]
