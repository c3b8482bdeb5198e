"""The semantic index: which earlier question, asked in the same context, is closest.

Entries are partitioned by a context key (route, client scope, system prompt, earlier
turns, tools and every other parameter: everything but the last user turn — see
keys.py), so a lookup only ever compares questions whose answers would otherwise be
interchangeable. Each partition keeps its vectors in one contiguous float32 matrix (rows
L2-normalised, so cosine similarity is one matrix-vector product); removal swaps the last
row into the hole. The index holds at most `max_entries` entries overall, evicting the
least recently used (a hit refreshes an entry), and drops entries past their expiry when it
meets them.

`SharedIndex` adds Redis: every replica appends its new entries to one Redis stream (capped
at `max_entries`) and, before a lookup, at most once per `refresh_s`, reads what other
replicas appended since its last read into its own local index. The vectors of the response
cache's entries are thus shared; the responses themselves are in the shared exact store.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Callable

import numpy as np

from .store import RedisStore, StoreUnavailable

__all__ = ["VectorIndex", "SharedIndex", "Candidate", "OFFLOAD_ROWS"]

OFFLOAD_ROWS = 8192  # partitions at least this large are scored off the event loop (~1 ms here)


class Candidate:
    __slots__ = ("entry_id", "score", "text")

    def __init__(self, entry_id: bytes, score: float, text: str):
        self.entry_id, self.score, self.text = entry_id, score, text

    def __repr__(self) -> str:
        return f"Candidate({self.entry_id.hex()[:8]}, {self.score:.3f}, {self.text!r})"


class _Partition:
    __slots__ = ("matrix", "ids", "texts", "expires", "n", "moves")

    def __init__(self, dim: int):
        self.matrix = np.zeros((4, dim), dtype=np.float32)
        self.ids: list[bytes] = []
        self.texts: list[str] = []
        self.expires: list[float] = []
        self.n = 0
        self.moves = 0  # bumped when rows move, so a search scored off the loop knows it is stale

    def add(self, vec: np.ndarray, entry_id: bytes, text: str, expires: float) -> None:
        if self.n == len(self.matrix):
            grown = np.zeros((len(self.matrix) * 2, self.matrix.shape[1]), dtype=np.float32)
            grown[:self.n] = self.matrix[:self.n]
            self.matrix = grown
        self.matrix[self.n] = vec
        self.ids.append(entry_id)
        self.texts.append(text)
        self.expires.append(expires)
        self.n += 1

    def remove(self, row: int) -> bytes | None:
        """Removes `row`; returns the id of the entry moved into it (the former last row)."""
        last = self.n - 1
        moved = None
        self.moves += 1
        if row != last:
            self.matrix[row] = self.matrix[last]
            self.ids[row] = self.ids[last]
            self.texts[row] = self.texts[last]
            self.expires[row] = self.expires[last]
            moved = self.ids[row]
        self.ids.pop()
        self.texts.pop()
        self.expires.pop()
        self.n = last
        if self.n and self.n * 4 < len(self.matrix) and len(self.matrix) > 64:
            self.matrix = self.matrix[:max(4, self.n * 2)].copy()
        return moved


class VectorIndex:
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.time):
        self.max_entries = max_entries
        self.evictions = 0
        self._clock = clock
        self._parts: dict[bytes, _Partition] = {}
        # entry id -> (partition key, row); ordered oldest use first
        self._where: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: bytes) -> bool:
        return entry_id in self._where

    def add(self, partition: bytes, entry_id: bytes, vec: np.ndarray, text: str, expires: float) -> None:
        if entry_id in self._where:
            self.remove(entry_id)
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(len(vec))
        elif part.matrix.shape[1] != len(vec):  # the embedder changed dimension: start over
            for old in list(part.ids):
                self.remove(old)
            part = self._parts[partition] = _Partition(len(vec))
        part.add(vec, entry_id, text, expires)
        self._where[entry_id] = (partition, part.n - 1)
        while len(self._where) > self.max_entries:
            oldest = next(iter(self._where))
            self.remove(oldest)
            self.evictions += 1

    def remove(self, entry_id: bytes) -> None:
        loc = self._where.pop(entry_id, None)
        if loc is None:
            return
        partition, row = loc
        part = self._parts[partition]
        moved = part.remove(row)
        if moved is not None:
            self._where[moved] = (partition, row)  # keeps its place in the LRU order
        if part.n == 0:
            del self._parts[partition]

    def touch(self, entry_id: bytes) -> None:
        if entry_id in self._where:
            self._where.move_to_end(entry_id)

    def search(self, partition: bytes, vec: np.ndarray, threshold: float, k: int = 3) -> list[Candidate]:
        """Up to k live entries of `partition` with cosine >= threshold, best first."""
        part = self._parts.get(partition)
        if part is None or part.n == 0:
            return []
        return self._pick(part, part.matrix[:part.n] @ vec, threshold, k)

    async def search_async(self, partition: bytes, vec: np.ndarray, threshold: float,
                           k: int = 3) -> list[Candidate]:
        """`search`, with a large partition scored in a worker thread so the event loop keeps
        serving (bench/bench_cache.py: ~16 ms per lookup at 100k entries). Adds only append
        rows past the scored ones; if a removal moved rows meanwhile, it scores again here."""
        part = self._parts.get(partition)
        if part is None or part.n < OFFLOAD_ROWS:
            return self.search(partition, vec, threshold, k)
        moves, n = part.moves, part.n
        scores = await asyncio.to_thread(np.dot, part.matrix[:n], vec)
        if self._parts.get(partition) is not part or part.moves != moves:
            return self.search(partition, vec, threshold, k)
        return self._pick(part, scores, threshold, k)

    def _pick(self, part: _Partition, scores: np.ndarray, threshold: float, k: int) -> list[Candidate]:
        if len(scores) <= k:
            order = np.argsort(-scores)
        else:
            top = np.argpartition(-scores, k)[:k]
            order = top[np.argsort(-scores[top])]
        now = self._clock()
        out: list[Candidate] = []
        expired: list[bytes] = []
        for row in order:
            s = float(scores[row])
            if s < threshold:
                break
            if part.expires[row] <= now:
                expired.append(part.ids[row])
                continue
            out.append(Candidate(part.ids[row], s, part.texts[row]))
        for entry_id in expired:
            self.remove(entry_id)
        return out


class SharedIndex:
    """A VectorIndex whose entries every replica appends to and reads from one Redis stream."""

    def __init__(self, index: VectorIndex, store: RedisStore, *, refresh_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):
        self.index = index
        self.store = store
        self.refresh_s = refresh_s
        self.stream = store.prefix + b"semantic"
        self._cursor = b"0-0"
        self._next_refresh = 0.0
        self._clock = clock

    async def add(self, partition: bytes, entry_id: bytes, vec: np.ndarray, text: str, expires: float) -> None:
        self.index.add(partition, entry_id, vec, text, expires)
        fields = {b"p": partition, b"i": entry_id, b"v": np.asarray(vec, dtype=np.float32).tobytes(),
                  b"t": text.encode("utf-8"), b"e": repr(expires).encode()}
        await self.store.run(_xadd, self.stream, fields, self.index.max_entries)

    async def refresh(self, force: bool = False) -> int:
        """Reads entries other replicas appended; returns how many were new here."""
        now = self._clock()
        if not force and now < self._next_refresh:
            return 0
        self._next_refresh = now + self.refresh_s
        added = 0
        while True:
            batch = await self.store.run(_xread, self.stream, self._cursor, 2000)
            if not batch:
                return added
            for msg_id, fields in batch:
                self._cursor = msg_id
                entry_id = fields.get(b"i")
                if entry_id is None or entry_id in self.index:
                    continue
                try:
                    vec = np.frombuffer(fields[b"v"], dtype=np.float32)
                    expires = float(fields[b"e"])
                    text = fields[b"t"].decode("utf-8")
                except (KeyError, ValueError, UnicodeDecodeError):
                    continue
                if expires > time.time():
                    self.index.add(fields[b"p"], entry_id, vec, text, expires)
                    added += 1
            if len(batch) < 2000:
                return added

    async def search(self, partition: bytes, vec: np.ndarray, threshold: float, k: int = 3) -> list[Candidate]:
        try:
            await self.refresh()
        except StoreUnavailable:
            pass  # the local index still answers; its entries' responses may be unreachable
        return await self.index.search_async(partition, vec, threshold, k)


async def _xadd(client, stream, fields, maxlen):
    await client.xadd(stream, fields, maxlen=maxlen, approximate=True)


async def _xread(client, stream, cursor, count):
    # XRANGE with an exclusive start: non-blocking, so the short socket timeout applies
    start = b"(" + cursor if cursor != b"0-0" else b"-"
    return await client.xrange(stream, min=start, max=b"+", count=count)
