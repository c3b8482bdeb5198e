"""Byte stores behind the response cache: an in-process LRU and Redis, one async interface.

`get(key) -> bytes | None`, `set(key, value, ttl_s)`, `delete(key)`. Keys and values are
bytes (the caller encodes). `MemoryStore` is bounded in bytes (key + value + a fixed
per-entry overhead) and evicts least-recently-used entries; an entry past its TTL is a miss
and is dropped when seen. `RedisStore` gives several replicas one shared cache: SET with PX,
short socket timeouts, and a circuit: the first failure opens it, every call then raises
`StoreUnavailable` at once (no socket touched) until `retry_s` has passed, when one call
tries Redis again (redis-py reconnects on it). A failure is logged at most once per
`retry_s`; `unavailable` counts the calls that were bypassed.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable

__all__ = ["MemoryStore", "RedisStore", "StoreUnavailable", "ENTRY_OVERHEAD"]

log = logging.getLogger("faregate.cache")

# Bytes charged per entry beyond its key's and value's lengths: the two bytes objects' headers,
# the (expiry, value) tuple, the float and the OrderedDict's slot and link, as tracemalloc
# measures them: 217-250 bytes per entry when filled once, 270-310 once evictions churned the
# table (CPython 3.11). Charged 96 before, a cache of small answers held a quarter more than
# its max_bytes.
ENTRY_OVERHEAD = 300


class StoreUnavailable(Exception):
    """The shared store cannot be reached now; the caller serves without the cache."""


class MemoryStore:
    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._clock = clock
        self._data: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get_now(self, key: bytes) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return item[1]

    def set_now(self, key: bytes, value: bytes, ttl_s: float) -> None:
        size = len(key) + len(value) + ENTRY_OVERHEAD
        if ttl_s <= 0 or size > self.max_bytes:
            self._drop(key)
            return
        self._drop(key)
        self._data[key] = (self._clock() + ttl_s, value)
        self.bytes += size
        while self.bytes > self.max_bytes:
            old, _ = next(iter(self._data.items()))
            self._drop(old)
            self.evictions += 1

    def _drop(self, key: bytes) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.bytes -= len(key) + len(item[1]) + ENTRY_OVERHEAD

    async def get(self, key: bytes) -> bytes | None:
        return self.get_now(key)

    async def set(self, key: bytes, value: bytes, ttl_s: float) -> None:
        self.set_now(key, value, ttl_s)

    async def delete(self, key: bytes) -> None:
        self._drop(key)

    async def close(self) -> None:
        self._data.clear()
        self.bytes = 0


class RedisStore:
    def __init__(self, url: str, *, prefix: bytes = b"faregate:c:", timeout_s: float = 0.25,
                 retry_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.unavailable = 0      # calls bypassed or failed because Redis was down
        self.failures = 0         # calls that reached for Redis and failed
        self._clock = clock
        self._down_until = 0.0
        self._logged_at = -1e18
        self._client = None

    @property
    def client(self):
        """The redis.asyncio client, created on first use (inside the running loop)."""
        if self._client is None:
            import redis.asyncio as aioredis  # noqa: PLC0415 (optional until a redis backend is configured)
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415

            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
                max_connections=512)
        return self._client

    @property
    def down(self) -> bool:
        return self._down_until > self._clock()

    def check(self) -> None:
        """Raises StoreUnavailable while the circuit is open."""
        if self._down_until and self._down_until > self._clock():
            self.unavailable += 1
            raise StoreUnavailable("redis is unavailable")

    def failed(self, exc: BaseException) -> StoreUnavailable:
        """Opens the circuit after a failed call; returns the exception to raise."""
        now = self._clock()
        self.failures += 1
        self.unavailable += 1
        self._down_until = now + self.retry_s
        if now - self._logged_at >= self.retry_s:
            self._logged_at = now
            log.warning("cache: redis at %s is unavailable (%s: %s); serving without the shared "
                        "cache, retrying every %.1fs", _safe_url(self.url), type(exc).__name__,
                        exc, self.retry_s)
        return StoreUnavailable(str(exc))

    def recovered(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            log.warning("cache: redis at %s is reachable again", _safe_url(self.url))

    async def run(self, op: Callable, *args):
        """Calls `op(client, *args)` through the circuit."""
        self.check()
        try:
            result = await op(self.client, *args)
        except StoreUnavailable:
            raise
        except Exception as exc:  # connection refused/reset, timeout, LOADING, READONLY, ...
            raise self.failed(exc) from None
        self.recovered()
        return result

    async def get(self, key: bytes) -> bytes | None:
        return await self.run(_get, self.prefix + key)

    async def set(self, key: bytes, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        await self.run(_set, self.prefix + key, value, max(1, int(ttl_s * 1000)))

    async def delete(self, key: bytes) -> None:
        await self.run(_delete, self.prefix + key)

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception:  # closing a client whose server died must not fail shutdown
                pass
            self._client = None


async def _get(client, key):
    return await client.get(key)


async def _set(client, key, value, px):
    await client.set(key, value, px=px)


async def _delete(client, key):
    await client.delete(key)


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
