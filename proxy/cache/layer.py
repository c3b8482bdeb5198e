"""The response cache as the request path sees it: look up before routing, store after.

`ResponseCache.lookup(...)` runs after authentication and validation. It decides whether
the request may use the cache (route policy, temperature, the `x-faregate-cache` request
header), looks for the exact key and then, where the route opted in, for a semantically
close earlier question in the same context. A hit is answered at once — JSON, or the stored
answer replayed as an SSE stream — with cost 0 and the cost it saved on the record. A miss
returns a `Pending` that the forward path calls with the finished answer (a non-stream
result, or the chat.completion assembled from the relayed stream); only complete,
successful answers get there, and they are stored in the background.

Stored value: one JSON line of metadata (`p` provider, `m` upstream model, `d` deployment
name, `u` usage, `e` whether usage was estimated, `t` the question for semantic entries),
a newline, then the chat.completion JSON exactly as it was sent, so an exact non-stream
hit is served without re-encoding.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ..errors import GatewayError
from ..record import RequestRecord
from .guard import near_miss
from .keys import context_key, exact_key, last_user_text
from .replay import StreamAssembler, replay_sse
from .settings import DEFAULT_THRESHOLDS, CacheConfig
from .store import MemoryStore, RedisStore, StoreUnavailable

if TYPE_CHECKING:
    from adapters.base import Deployment

    from .embedders import Embedder
    from .semantic import SharedIndex, VectorIndex

__all__ = ["ResponseCache", "Pending", "Policy", "parse_directives"]

log = logging.getLogger("faregate.cache")

HEADER = "x-faregate-cache"


class Policy:
    __slots__ = ("enabled", "ttl_s", "any_temperature", "shared", "semantic")

    def __init__(self, cfg: CacheConfig, route: str):
        r = cfg.routes.get(route)

        def pick(name: str, default):
            v = getattr(r, name) if r is not None else None
            return default if v is None else v

        self.enabled = pick("enabled", True)
        self.ttl_s = pick("ttl_s", cfg.default_ttl_s)
        self.any_temperature = pick("any_temperature", cfg.any_temperature)
        self.shared = pick("shared_across_keys", cfg.shared_across_keys)
        self.semantic = pick("semantic", cfg.semantic.enabled)


def parse_directives(value: str | None) -> tuple[bool, bool, float | None]:
    """`x-faregate-cache` request header -> (no_cache, no_store, ttl_s).

    no-cache: do not answer from the cache (the fresh answer is stored); no-store: do not
    store this answer; ttl=SECONDS: store it for that long. Comma-separated, any order."""
    if not value:
        return False, False, None
    no_cache = no_store = False
    ttl = None
    for part in value.split(","):
        d = part.strip().lower()
        if not d:
            continue
        if d == "no-cache":
            no_cache = True
        elif d == "no-store":
            no_store = True
        elif d.startswith("ttl="):
            try:
                ttl = float(d[4:])
            except ValueError:
                ttl = -1.0
            if not ttl > 0 or ttl != ttl or ttl > 10 * 365 * 86400:
                raise GatewayError(400, f"invalid {HEADER} header: ttl must be a positive number of "
                                        f"seconds, got {d[4:]!r}", param=HEADER, code="invalid_cache_directive")
        else:
            raise GatewayError(400, f"invalid {HEADER} header directive {d!r}: expected no-store, "
                                    f"no-cache or ttl=SECONDS", param=HEADER, code="invalid_cache_directive")
    return no_cache, no_store, ttl


class Pending:
    """A miss that may be stored: call it with the finished answer and its deployment."""
    __slots__ = ("cache", "key", "ttl_s", "body", "semantic", "assembler")

    def __init__(self, cache: "ResponseCache", key: bytes, ttl_s: float, body: dict, semantic):
        self.cache = cache
        self.key = key
        self.ttl_s = ttl_s
        self.body = body
        self.semantic = semantic  # (partition, vector, question) or None
        self.assembler: StreamAssembler | None = None

    def tap(self) -> StreamAssembler:
        """An assembler for the stream translator to tell the chunks it writes."""
        self.assembler = StreamAssembler()
        return self.assembler

    def __call__(self, result: dict | None, dep: "Deployment", usage: dict | None = None) -> None:
        """The answer to store: `result`, or None for the tapped stream, which the caller
        saw complete (the translator's end, no error, no broken connection)."""
        if result is None and self.assembler is not None:
            self.assembler.finish()
            result = self.assembler.result()
        if result is None:
            return
        if usage and not result.get("usage"):  # the provider counted; the client did not ask
            result["usage"] = usage
        self.cache.spawn(self.cache.save(self, result, dep))


class ResponseCache:
    def __init__(self, cfg: CacheConfig, state=None):
        self.cfg = cfg
        self.state = state
        self.counts = {"hit": 0, "semantic_hit": 0, "miss": 0, "off": 0, "bypass": 0, "stored": 0,
                       "store_failed": 0, "too_large": 0, "guard_rejected": 0, "embed_failed": 0}
        self._policies: dict[str, Policy] = {}
        self._tasks: set[asyncio.Task] = set()
        if cfg.backend == "redis":
            self.store: MemoryStore | RedisStore = RedisStore(
                cfg.redis_url, prefix=cfg.key_prefix.encode() + b"c:", timeout_s=cfg.redis_timeout_s,
                retry_s=cfg.redis_retry_s)
        else:
            self.store = MemoryStore(cfg.max_bytes)
        sem = cfg.semantic
        self.semantic_on = sem.enabled or any(r.semantic for r in cfg.routes.values())
        self.embedder: Embedder | None = None
        self.index: VectorIndex | None = None
        self.shared: SharedIndex | None = None
        self.threshold = sem.threshold if sem.threshold is not None else DEFAULT_THRESHOLDS[sem.embedder]
        if self.semantic_on:
            # numpy and the index load only here: ~11 MB of every worker's RSS otherwise
            from .embedders import GatewayEmbedder, HashedEmbedder, MiniLMEmbedder
            from .semantic import SharedIndex, VectorIndex

            if sem.embedder == "gateway":
                self.embedder = GatewayEmbedder(sem.model or "", self._embed_via_gateway)
            elif sem.embedder == "minilm":
                self.embedder = MiniLMEmbedder()
            else:
                self.embedder = HashedEmbedder()
            self.index = VectorIndex(sem.max_entries)
            if isinstance(self.store, RedisStore):
                self.shared = SharedIndex(self.index, self.store, refresh_s=sem.refresh_s)

    # ---- lifecycle ---------------------------------------------------------------------
    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.store.close()

    def stats(self) -> dict:
        out = dict(self.counts)
        out["backend"] = self.cfg.backend
        if isinstance(self.store, MemoryStore):
            out.update(entries=len(self.store), bytes=self.store.bytes, evictions=self.store.evictions)
        else:
            out.update(redis_unavailable=self.store.unavailable, redis_down=self.store.down)
        if self.index is not None:
            out.update(semantic_entries=len(self.index), semantic_evictions=self.index.evictions)
        return out

    def policy(self, route: str) -> Policy:
        p = self._policies.get(route)
        if p is None:
            if len(self._policies) > 10_000:  # unknown names must not grow this forever
                self._policies.clear()
            p = self._policies[route] = Policy(self.cfg, route)
        return p

    # ---- lookup ------------------------------------------------------------------------
    async def lookup(self, request: web.Request, body: dict, route: str, rec: RequestRecord,
                     headers: dict[str, str], t0: float) -> tuple[web.StreamResponse | None, Pending | None]:
        no_cache, no_store, ttl = parse_directives(request.headers.get(HEADER))
        pol = self.policy(route)
        temp = body.get("temperature")
        if not pol.enabled or (temp not in (None, 0) and not pol.any_temperature) or (no_cache and no_store):
            return self._mark(rec, headers, "off"), None
        scope = "" if pol.shared else (rec.key_id or "")
        key = exact_key(body, route, scope)
        semantic = None
        try:
            if not no_cache:
                raw = await self.store.get(key)
                if raw is not None:
                    return self._hit(request, body, raw, rec, headers, t0, route), None
            if pol.semantic and self.embedder is not None and self._semantic_ok(body):
                question = last_user_text(body)
                if question is not None:
                    semantic = await self._semantic(request, body, route, scope, question, rec, headers,
                                                    t0, no_cache)
                    if isinstance(semantic, web.StreamResponse):
                        return semantic, None
        except StoreUnavailable:
            return self._mark(rec, headers, "bypass"), None
        self._mark(rec, headers, "miss")
        if no_store:
            return None, None
        return None, Pending(self, key, ttl or pol.ttl_s, body, semantic)

    def _mark(self, rec: RequestRecord, headers: dict[str, str], what: str) -> None:
        rec.cache = what
        self.counts[what] += 1
        headers[HEADER] = what
        return None

    def _semantic_ok(self, body: dict) -> bool:
        s = self.cfg.semantic
        if body.get("tools") and not s.allow_tools:
            return False
        n = body.get("n")
        return not (isinstance(n, int) and n > 1 and not s.allow_n)

    async def _semantic(self, request, body, route, scope, question, rec, headers, t0, no_cache):
        """A semantic hit response, or the (partition, vector, question) to store on a miss."""
        try:
            vec = (await self.embedder.embed([question]))[0]
        except StoreUnavailable:
            raise
        except Exception as exc:  # embeddings upstream down: the exact cache still works
            self.counts["embed_failed"] += 1
            log.debug("cache: embedding failed: %s", exc)
            return None
        partition = context_key(body, route, scope)
        if not no_cache:
            finder = self.shared.search if self.shared is not None else _local_search(self.index)
            for cand in await finder(partition, vec, self.threshold):
                if self.cfg.semantic.guard:
                    why = near_miss(question, cand.text)
                    if why is not None:
                        self.counts["guard_rejected"] += 1
                        continue
                raw = await self.store.get(cand.entry_id)
                if raw is None:  # the answer expired or was evicted before its vector
                    self.index.remove(cand.entry_id)
                    continue
                self.index.touch(cand.entry_id)
                resp = self._hit(request, body, raw, rec, headers, t0, route, similarity=cand.score)
                return resp
        return (partition, vec, question)

    def _hit(self, request, body, raw: bytes, rec: RequestRecord, headers: dict[str, str], t0: float,
             route: str, similarity: float | None = None) -> web.StreamResponse:
        meta_raw, _, payload = raw.partition(b"\n")
        meta = orjson.loads(meta_raw)
        what = "semantic-hit" if similarity is not None else "hit"
        rec.cache = what
        self.counts["semantic_hit" if similarity is not None else "hit"] += 1
        rec.provider, rec.model, rec.status, rec.attempts = meta.get("p"), meta.get("m"), 200, 0
        rec.cost_usd = 0.0
        rec.saved_usd = self._saved(meta, route)
        h = dict(headers)
        h[HEADER] = what
        if similarity is not None:
            h["x-faregate-cache-similarity"] = f"{similarity:.4f}"
        h["x-faregate-model"] = meta.get("m") or ""
        h["x-faregate-provider"] = meta.get("p") or ""
        h["x-faregate-attempts"] = "0"
        h["x-faregate-cost-usd"] = "0"
        h["x-faregate-saved-usd"] = _usd(rec.saved_usd)
        rec.latency_ms = (time.perf_counter() - t0) * 1000.0
        h["x-faregate-latency-ms"] = f"{rec.latency_ms:.2f}"
        if body.get("stream"):
            rec.stream = True
            rec.ttft_ms = rec.latency_ms
            opts = body.get("stream_options")
            include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
            h["cache-control"] = "no-cache"
            return web.Response(body=replay_sse(orjson.loads(payload), include_usage), headers=h,
                                content_type="text/event-stream")
        return web.Response(body=payload, headers=h, content_type="application/json")

    def _saved(self, meta: dict, route: str) -> float:
        usage = meta.get("u")
        if not usage:
            return 0.0
        price = None
        state = self.state
        pricing = getattr(state, "pricing", None)
        if state is not None and pricing is not None:
            for dep in state.router.routes.get(route, ()):
                if dep.provider == meta.get("p") and dep.model == meta.get("m"):
                    price = pricing.price(dep)
                    break
        if price is None:
            from ..catalog import default_catalog  # noqa: PLC0415
            price = default_catalog().find(meta.get("p") or "", meta.get("m") or "")
        if price is None:
            return 0.0
        from ..cost import saved_cost  # noqa: PLC0415
        return saved_cost(usage, price)

    # ---- store -------------------------------------------------------------------------
    async def save(self, pending: Pending, result: dict, dep: "Deployment") -> None:
        usage = result.get("usage")
        estimated = not usage
        if estimated:
            text = "".join((c.get("message") or {}).get("content") or "" for c in result.get("choices") or ())
            usage = _estimated_usage(pending.body, text)
        meta = {"p": dep.provider, "m": dep.model, "d": dep.name, "u": usage, "e": estimated}
        if pending.semantic is not None:
            meta["t"] = pending.semantic[2]
        value = orjson.dumps(meta) + b"\n" + orjson.dumps(result)
        if len(value) > self.cfg.max_entry_bytes:
            self.counts["too_large"] += 1
            return
        try:
            await self.store.set(pending.key, value, pending.ttl_s)
            if pending.semantic is not None and self.index is not None:
                partition, vec, question = pending.semantic
                expires = time.time() + pending.ttl_s
                if self.shared is not None:
                    await self.shared.add(partition, pending.key, vec, question, expires)
                else:
                    self.index.add(partition, pending.key, vec, question, expires)
        except StoreUnavailable:
            self.counts["store_failed"] += 1
            return
        self.counts["stored"] += 1

    # ---- the gateway embedder ----------------------------------------------------------
    async def _embed_via_gateway(self, model: str, texts: list[str]) -> list[list[float]]:
        """Routes an embeddings request for `model` like a client's, and records it."""
        from ..forward import forward_embeddings  # noqa: PLC0415

        state = self.state
        candidates = state.router.candidates(model)
        if not candidates:
            raise LookupError(f"cache.semantic.model {model!r} is not a model this gateway serves")
        rec = RequestRecord(time.time(), "cache_" + model, "embeddings")
        rec.route, rec.tags = model, ["faregate:semantic-cache"]
        t0 = time.perf_counter()
        kwargs = {"pricing": state.pricing} if getattr(state, "pricing", None) is not None else {}
        try:
            resp = await forward_embeddings(state.upstream, {"model": model, "input": texts}, candidates,
                                            rec, {}, t0, **kwargs)
        finally:
            if not rec.latency_ms:
                rec.latency_ms = (time.perf_counter() - t0) * 1000.0
            state.emit(rec)
        if resp.status != 200:
            raise RuntimeError(f"embeddings model {model} answered {resp.status}")
        data = orjson.loads(resp.body)["data"]
        return [d["embedding"] for d in sorted(data, key=lambda d: d.get("index", 0))]


def _local_search(index: VectorIndex):
    return index.search_async


def _estimated_usage(body: dict, text: str) -> dict:
    try:
        from ..accounting import estimated_usage  # noqa: PLC0415
    except ImportError:  # the accounting module is newer than this tree
        prompt = sum(len(m.get("content") or "") for m in body.get("messages") or () if isinstance(m, dict)
                     and isinstance(m.get("content"), str)) // 4
        completion = (len(text) + 3) // 4
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return estimated_usage(body, text)


def _usd(value: float) -> str:
    s = f"{value:.9f}".rstrip("0").rstrip(".")
    return s or "0"
