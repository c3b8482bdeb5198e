import time

import numpy as np

from proxy.cache.keys import context_key, exact_key, last_user_text
from proxy.cache.semantic import SharedIndex, VectorIndex
from proxy.cache.store import RedisStore


def unit(*xs):
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


FAR = time.time() + 3600


def test_search_is_per_partition_with_threshold_and_order():
    idx = VectorIndex(100)
    idx.add(b"p1", b"a", unit(1, 0, 0), "a", FAR)
    idx.add(b"p1", b"b", unit(1, 1, 0), "b", FAR)
    idx.add(b"p2", b"c", unit(1, 0, 0), "c", FAR)
    got = idx.search(b"p1", unit(1, 0.1, 0), 0.5)
    assert [c.entry_id for c in got] == [b"a", b"b"] and got[0].score > 0.99
    assert [c.entry_id for c in idx.search(b"p1", unit(1, 0.1, 0), 0.9)] == [b"a"]
    assert idx.search(b"p3", unit(1, 0, 0), 0.1) == []
    assert idx.search(b"p1", unit(0, 0, 1), 0.1) == []


def test_size_bound_evicts_least_recently_used_and_removal_keeps_rows_right():
    idx = VectorIndex(3)
    rng = np.random.default_rng(1)
    vecs = {bytes([i]): unit(*rng.normal(size=8)) for i in range(5)}
    for i in range(3):
        idx.add(b"p", bytes([i]), vecs[bytes([i])], str(i), FAR)
    idx.touch(b"\x00")
    idx.add(b"p", b"\x03", vecs[b"\x03"], "3", FAR)  # evicts 1, the least recently used
    assert len(idx) == 3 and b"\x01" not in idx and idx.evictions == 1
    idx.remove(b"\x00")
    for k in (b"\x02", b"\x03"):  # every remaining entry still finds itself exactly
        top = idx.search(b"p", vecs[k], 0.999)
        assert top and top[0].entry_id == k
    many = VectorIndex(10_000)
    for i in range(2000):
        many.add(b"q%d" % (i % 3), i.to_bytes(4, "big"), unit(*rng.normal(size=16)), "", FAR)
    for i in range(0, 2000, 2):
        many.remove(i.to_bytes(4, "big"))
    assert len(many) == 1000


def test_expired_entries_are_not_returned():
    now = [1000.0]
    idx = VectorIndex(10, clock=lambda: now[0])
    idx.add(b"p", b"a", unit(1, 0), "a", 1010.0)
    assert idx.search(b"p", unit(1, 0), 0.5)
    now[0] = 1011.0
    assert idx.search(b"p", unit(1, 0), 0.5) == [] and len(idx) == 0


def test_context_key_ignores_only_the_last_user_turn():
    base = {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "turn dark mode on"}]}
    other_q = {**base, "messages": [base["messages"][0], {"role": "user", "content": "enable dark mode"}]}
    other_sys = {**base, "messages": [{"role": "system", "content": "be long"}, base["messages"][1]]}
    tools = {**base, "tools": [{"type": "function", "function": {"name": "f"}}]}
    k = context_key(base, "m", "")
    assert context_key(other_q, "m", "") == k
    assert context_key(other_sys, "m", "") != k
    assert context_key(tools, "m", "") != k
    assert context_key({**base, "temperature": 0.5}, "m", "") != k
    assert context_key(base, "m", "key2") != k and context_key(base, "other", "") != k
    assert exact_key(base, "m", "") != exact_key(other_q, "m", "")
    assert exact_key({**base, "stream": True}, "m", "") == exact_key(base, "m", "")
    assert last_user_text(base) == "turn dark mode on"
    assert last_user_text({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                     {"type": "image_url"}]}]}) is None
    assert last_user_text({"messages": [{"role": "assistant", "content": "x"}]}) is None


async def test_shared_index_propagates_between_replicas(redis_server):
    s1 = RedisStore(redis_server.url, prefix=b"t:")
    s2 = RedisStore(redis_server.url, prefix=b"t:")
    a = SharedIndex(VectorIndex(100), s1, refresh_s=0.0)
    b = SharedIndex(VectorIndex(100), s2, refresh_s=0.0)
    try:
        await a.add(b"p", b"e1", unit(1, 2, 3), "question one", FAR)
        got = await b.search(b"p", unit(1, 2, 3), 0.9)
        assert [(c.entry_id, c.text) for c in got] == [(b"e1", "question one")]
        await b.add(b"p", b"e2", unit(3, 2, 1), "question two", FAR)
        assert [c.entry_id for c in await a.search(b"p", unit(3, 2, 1), 0.99)] == [b"e2"]
        late = SharedIndex(VectorIndex(100), RedisStore(redis_server.url, prefix=b"t:"), refresh_s=0.0)
        assert await late.refresh() == 2  # a replica that starts later reads what is there
        await late.store.close()
    finally:
        await s1.close()
        await s2.close()


async def test_large_partition_is_scored_off_the_loop_with_the_same_answer(monkeypatch):
    import asyncio

    import proxy.cache.semantic as semantic

    rng = np.random.default_rng(7)
    n = semantic.OFFLOAD_ROWS + 500
    vecs = rng.standard_normal((n, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = VectorIndex(n + 10)
    for i in range(n):
        idx.add(b"p", i.to_bytes(4, "big"), vecs[i], f"q{i}", time.time() + 600)
    query = vecs[1234]
    offloaded = []
    real_to_thread = asyncio.to_thread

    async def spy(fn, *args):
        offloaded.append(fn)
        return await real_to_thread(fn, *args)

    monkeypatch.setattr(semantic.asyncio, "to_thread", spy)
    got = await idx.search_async(b"p", query, 0.5)
    assert offloaded, "a large partition must be scored in a worker thread"
    assert [c.entry_id for c in got] == [c.entry_id for c in idx.search(b"p", query, 0.5)]
    assert got[0].entry_id == (1234).to_bytes(4, "big")

    async def removing_spy(fn, *args):  # a removal moves rows while the thread scores
        idx.remove((0).to_bytes(4, "big"))
        return await real_to_thread(fn, *args)

    monkeypatch.setattr(semantic.asyncio, "to_thread", removing_spy)
    got = await idx.search_async(b"p", query, 0.5)
    assert got[0].entry_id == (1234).to_bytes(4, "big") and got[0].text == "q1234"
