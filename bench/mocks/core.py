"""What every mock provider shares: behaviour knobs, fault injection, stats, server start-up.

A mock speaks one provider's exact wire format (see openai.py, anthropic.py, gemini.py) and
behaves as its `Behavior` says. The behaviour of a request is the server default, overridden
by `POST /_mock/behavior` (optionally for one model), overridden by the request header
`x-mock-behavior: <json>`. `GET /_mock/stats` tells what the mock saw (requests per model,
client disconnects, completed streams, the last request), `POST /_mock/reset` clears it.
Format modules supply the request handlers; this module knows no provider.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import socket
import struct
import threading
from typing import Any, Callable

import msgspec
import orjson
from aiohttp import web

__all__ = ["Behavior", "EventWriter", "MockProvider", "MockThread", "answer_words", "embed_text", "rough_tokens",
           "FAULTS"]

FAULTS = ("status", "reset", "cut", "slow_first_byte")


class Behavior(msgspec.Struct, kw_only=True, omit_defaults=True):
    latency_ms: float = 0.0        # non-stream: time before the response
    ttft_ms: float = 0.0           # stream: time from headers to the first content chunk
    chunk_delay_ms: float = 0.0    # stream: time between content chunks
    chunks: int = 8                # answer length in words; one word per stream chunk
    text: str | None = None        # a fixed answer instead of generated words
    status: int = 200              # an error status to answer with (429, 500, 503, 529, ...)
    error_message: str | None = None
    retry_after: float | None = None
    fault: str | None = None       # status | reset | cut | slow_first_byte
    fault_rate: float = 1.0        # share of requests the fault hits (seeded, reproducible)
    cut_after: int = 2             # cut: content chunks sent before the connection drops
    first_byte_ms: float = 0.0     # slow_first_byte: delay before the status line
    usage: bool = True             # report usage (stream: when the format/client asks)
    tool_calls: bool = True        # answer with a tool call when the request offers tools
    invalid_json: bool = False     # JSON mode: answer with broken JSON (cascade tests)
    ratelimit_remaining: int | None = None  # sent as rate-limit headers when set

    def merged(self, patch: dict) -> "Behavior":
        base = msgspec.structs.asdict(self)
        base.update(patch)
        return msgspec.convert(base, Behavior)


_WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge "
          "boxing matches near the old harbour and every answer arrives on time").split()


def answer_words(n: int, seed: int = 0) -> list[str]:
    """n deterministic words, each but the first with a leading space (one stream chunk each)."""
    out = []
    k = len(_WORDS)
    for i in range(max(0, n)):
        w = _WORDS[(i + seed) % k]
        out.append(w if i == 0 else " " + w)
    return out


def rough_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def embed_text(text: str, dims: int = 256) -> list[float]:
    """A deterministic embedding that behaves like one: hashed word unigrams and character
    trigrams, L2-normalised, so paraphrases score closer than unrelated text."""
    vec = [0.0] * dims
    lowered = text.lower()
    words = [w.strip(".,!?;:\"'()") for w in lowered.split()]
    feats = [w for w in words if w] + [lowered[i:i + 3] for i in range(max(0, len(lowered) - 2))]
    for f in feats:
        h = hashlib.blake2b(f.encode(), digest_size=8).digest()
        idx = int.from_bytes(h[:4], "little") % dims
        sign = 1.0 if h[4] & 1 else -1.0
        vec[idx] += sign * (2.0 if " " not in f and len(f) > 3 else 1.0)
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class EventWriter:
    """A mock stream's writes. Events with no pause between them leave in one write, as a
    provider's do when it has them at once; a pause (time to first token, chunk delay)
    sends what is buffered first, so the client sees the configured timing. One write per
    burst instead of per event spares the mock a syscall and aiohttp's chunk framing per
    event: on a benchmark core shared with the load generator that was most of its cost."""

    __slots__ = ("_resp", "_buf", "_size")

    LIMIT = 65536   # a long burst still leaves in pieces of about this size

    def __init__(self, resp: web.StreamResponse):
        self._resp = resp
        self._buf: list[bytes] = []
        self._size = 0

    async def send(self, data: bytes) -> None:
        self._buf.append(data)
        self._size += len(data)
        if self._size >= self.LIMIT:
            await self.flush()

    async def flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            self._size = 0
            await self._resp.write(data)

    async def pause(self, ms: float) -> None:
        if ms > 0:
            await self.flush()
            await asyncio.sleep(ms / 1000)

    async def close(self) -> None:
        await self.flush()
        await self._resp.write_eof()


class MockProvider:
    """An aiohttp app for one provider format. Subclasses add routes in `add_routes`."""

    format = "base"

    def __init__(self, behavior: Behavior | None = None, *, models: list[str] | None = None,
                 seed: int = 0):
        self.behavior = behavior or Behavior()
        self.model_behavior: dict[str, dict] = {}
        self.models = models
        self._rng = random.Random(seed)
        self.stats: dict[str, Any] = {}
        self.reset_stats()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0

    # ---- behaviour and stats -------------------------------------------------------------
    def reset_stats(self) -> None:
        self.stats = {"requests": 0, "by_model": {}, "by_status": {}, "disconnects": 0,
                      "completed_streams": 0, "in_flight": 0, "last_request": None,
                      "last_headers": None, "faults": 0}

    def behavior_for(self, request: web.Request, model: str | None) -> Behavior:
        beh = self.behavior
        patch = self.model_behavior.get(model or "") or self.model_behavior.get("*")
        if patch:
            beh = beh.merged(patch)
        header = request.headers.get("x-mock-behavior")
        if header:
            beh = beh.merged(orjson.loads(header))
        return beh

    def note_request(self, request: web.Request, model: str | None, body: Any) -> None:
        st = self.stats
        st["requests"] += 1
        st["by_model"][model or ""] = st["by_model"].get(model or "", 0) + 1
        st["last_request"] = body
        st["last_headers"] = {str(k): v for k, v in request.headers.items()}

    def note_status(self, status: int) -> None:
        st = self.stats["by_status"]
        st[str(status)] = st.get(str(status), 0) + 1

    def fault_hits(self, beh: Behavior) -> bool:
        if beh.fault is None and beh.status == 200:
            return False
        return beh.fault_rate >= 1.0 or self._rng.random() < beh.fault_rate

    # ---- faults shared by every format ----------------------------------------------------
    @staticmethod
    def reset_connection(request: web.Request) -> web.Response:
        """Drop the TCP connection with a RST, before any byte of a response."""
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            transport.abort()
        return web.Response(status=500)

    @staticmethod
    def cut_connection(request: web.Request) -> None:
        """End the connection mid-response with a FIN: what was sent stays readable, then the
        client meets the end of the stream before the body's end (a RST could discard bytes
        the client had not read yet, which would make a "cut after N chunks" test flaky)."""
        transport = request.transport
        if transport is not None:
            transport.close()

    async def pre_response(self, request: web.Request, beh: Behavior) -> web.Response | None:
        """Apply the faults that happen before a status line: slow first byte and reset."""
        if beh.fault == "slow_first_byte" and beh.first_byte_ms > 0:
            await asyncio.sleep(beh.first_byte_ms / 1000)
        if beh.fault == "reset":
            self.stats["faults"] += 1
            return self.reset_connection(request)
        return None

    async def apply_fault(self, request: web.Request,
                          beh: Behavior) -> tuple[web.StreamResponse | None, str | None]:
        """Rolls the request's fault. A reset or an error status gives the response to send
        instead, `(response, None)`; a fault the answer itself acts on (cut) gives
        `(None, fault)`; no fault `(None, None)`."""
        if not self.fault_hits(beh):
            return None, None
        early = await self.pre_response(request, beh)
        if early is not None:
            return early, None
        if beh.status != 200:
            await self.sleep_ms(beh.latency_ms)
            return self.status_response(beh), None
        return None, beh.fault

    def status_response(self, beh: Behavior) -> web.Response:
        """The error response for `beh.status`, in the format's shape (its `error_response`)."""
        return self.error_response(beh.status, beh.error_message, beh.retry_after)

    @contextlib.contextmanager
    def streaming(self):
        """Counts a stream while it is written; a client that went away mid-stream counts as a
        disconnect (aiohttp raises ConnectionResetError, or RuntimeError on a closed writer)."""
        self.stats["in_flight"] += 1
        try:
            yield
        except (ConnectionError, RuntimeError):
            self.stats["disconnects"] += 1
        finally:
            self.stats["in_flight"] -= 1

    @staticmethod
    async def sleep_ms(ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)

    # ---- control endpoints ----------------------------------------------------------------
    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats, dumps=lambda o: orjson.dumps(o).decode())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response({"ok": True})

    async def _set_behavior(self, request: web.Request) -> web.Response:
        patch = await request.json()
        model = patch.pop("model", None)
        if patch.pop("replace", False):
            if model:
                self.model_behavior[model] = patch
            else:
                self.behavior = msgspec.convert(patch, Behavior)
                self.model_behavior.clear()
        elif model:
            self.model_behavior.setdefault(model, {}).update(patch)
        else:
            self.behavior = self.behavior.merged(patch)
        return web.json_response({"ok": True, "behavior": msgspec.structs.asdict(self.behavior),
                                  "models": self.model_behavior})

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError("format modules add their own routes")

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/_mock/stats", self._get_stats)
        app.router.add_post("/_mock/reset", self._reset)
        app.router.add_post("/_mock/behavior", self._set_behavior)
        self.add_routes(app)
        return app

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=port != 0, backlog=1024)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class MockThread:
    """Runs a mock provider on its own event loop in a thread, for synchronous tests.

    with MockThread(OpenAIMock()) as mock: ... mock.url ...
    """

    def __init__(self, provider: MockProvider, host: str = "127.0.0.1", port: int = 0):
        self.provider = provider
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> "MockThread":
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self.url = loop.run_until_complete(self.provider.start(self._host, self._port))
            except BaseException as exc:  # surfaced to the caller below
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.provider.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"mock-{self.provider.format}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the mock's loop thread and return its result."""
        assert self._loop is not None
        fut: "asyncio.Future[Any]" = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return fut.result(10)

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()
