import asyncio
import logging

import pytest

from proxy.cache.store import ENTRY_OVERHEAD, MemoryStore, RedisStore, StoreUnavailable


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


async def test_memory_get_set_delete():
    s = MemoryStore(10_000)
    assert await s.get(b"k") is None
    await s.set(b"k", b"value", 60)
    assert await s.get(b"k") == b"value"
    assert s.bytes == 1 + 5 + ENTRY_OVERHEAD
    await s.set(b"k", b"other", 60)
    assert await s.get(b"k") == b"other" and len(s) == 1 and s.bytes == 1 + 5 + ENTRY_OVERHEAD
    await s.delete(b"k")
    assert await s.get(b"k") is None and s.bytes == 0


async def test_memory_ttl_expiry():
    clock = Clock()
    s = MemoryStore(10_000, clock=clock)
    await s.set(b"a", b"1", 10)
    await s.set(b"b", b"2", 30)
    clock.t += 9.9
    assert await s.get(b"a") == b"1"
    clock.t += 0.2
    assert await s.get(b"a") is None
    assert await s.get(b"b") == b"2"
    assert len(s) == 1  # the expired entry is gone, not just hidden


async def test_memory_evicts_least_recently_used_by_bytes():
    per = 2 + 100 + ENTRY_OVERHEAD
    s = MemoryStore(per * 3)
    for k in (b"k1", b"k2", b"k3"):
        await s.set(k, b"x" * 100, 60)
    assert await s.get(b"k1") is not None  # k1 is now the most recently used
    await s.set(b"k4", b"x" * 100, 60)
    assert await s.get(b"k2") is None
    assert all([await s.get(k) for k in (b"k1", b"k3", b"k4")])
    assert s.bytes <= s.max_bytes and s.evictions == 1
    await s.set(b"k5", b"x" * per, 60)  # a bigger one pushes out the two least recently used
    assert s.bytes <= s.max_bytes and s.evictions == 3
    assert await s.get(b"k4") is not None and await s.get(b"k1") is None
    await s.set(b"huge", b"x" * (per * 4), 60)  # larger than the bound: not stored, nothing evicted
    assert await s.get(b"huge") is None and await s.get(b"k5") is not None


async def test_redis_store_roundtrip_and_ttl(redis_server):
    s = RedisStore(redis_server.url, prefix=b"t:")
    try:
        assert await s.get(b"k") is None
        await s.set(b"k", b"\x00binary\xff", 60)
        assert await s.get(b"k") == b"\x00binary\xff"
        await s.set(b"short", b"v", 0.05)
        await asyncio.sleep(0.15)
        assert await s.get(b"short") is None
        await s.delete(b"k")
        assert await s.get(b"k") is None
        assert await s.client.ttl(b"t:k") == -2
    finally:
        await s.close()


async def test_redis_down_opens_circuit_logs_once_and_recovers(redis_server, caplog):
    clock = Clock()
    s = RedisStore(redis_server.url, prefix=b"t:", timeout_s=0.2, retry_s=5.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="faregate.cache")
    try:
        await s.set(b"k", b"v", 60)
        redis_server.kill()
        with pytest.raises(StoreUnavailable):
            await s.get(b"k")
        assert s.failures == 1 and s.down
        for _ in range(20):  # the circuit is open: no socket is touched, no more logging
            with pytest.raises(StoreUnavailable):
                await s.get(b"k")
        assert s.failures == 1 and s.unavailable == 21
        assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
        redis_server.start()  # same port, empty (no persistence)
        with pytest.raises(StoreUnavailable):
            await s.get(b"k")  # still inside the retry interval
        clock.t += 5.1
        assert await s.get(b"k") is None  # reconnected by itself
        await s.set(b"k", b"v2", 60)
        assert await s.get(b"k") == b"v2" and not s.down
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await s.close()


def test_memory_store_holds_no_more_than_its_bound_in_real_memory():
    """max_bytes is what the entries really take (tracemalloc), small answers included."""
    import os
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        s = MemoryStore(2_000_000)
        for i in range(20_000):   # ~5x the bound: the store evicts down to it
            s.set_now(os.urandom(16), b"x" * 300 + str(i).encode(), 60)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert s.bytes <= 2_000_000 and s.evictions > 0
    assert used <= 2_000_000 * 1.1, used
