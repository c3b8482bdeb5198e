"""A lean HTTP/1.1 client for the upstream hop: keep-alive pool, llhttp parsing, timeouts.

Why not aiohttp's ClientSession: under the benchmark its request path was about 30% of a
worker's CPU (bench/README.md, "profile"). A provider call needs little of it: one POST with
a body held in memory, a status, headers, and a body read whole or relayed as it arrives.
This does that on an `asyncio.Protocol` with httptools' parser (llhttp, the parser behind
Node.js), and nothing else per request: one write, one parser feed per received segment,
one timer.

- Pool: idle connections per (scheme, host, port), most recently used first, dropped after
  `keepalive_s` idle or when the server closes them. A connection goes back to the pool the
  moment its response is complete (the body is already buffered), so a response need not
  be released. Limits: `pool_limit` connections in all and `pool_limit_per_host` per host;
  over them a request waits for a slot.
- A reused connection the server had already closed fails before any byte of the answer;
  such a request is sent once more on a new connection. No byte of a response arrived, so
  the server never processed it. Nothing else is retried here: that is failover's job.
- Timeouts: connect; read (the longest silence before the headers and between body bytes,
  which is the stream's inter-chunk limit); total (the whole response); and per request a
  deadline for the headers (failover's). One timer per response, moved lazily.
- Bytes received before a connection broke are handed out before its error, so a
  provider's last chunks are never lost to the error that came with them.
- Flow control: reading pauses while more than 1 MiB is received and not consumed (a slow
  client on a fast stream), and the read timeout does not run while paused.
- gzip and deflate bodies are decompressed (none is asked for; a server may send one anyway).
- TLS through the loop's `create_connection(ssl=...)` with the default trust store.

Every failure is an `HTTPClientError`: `UpstreamTimeout` (also a `TimeoutError`), or a
`ConnectionError` subclass for everything else (connect refused, reset, closed early,
malformed response).
"""
from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from urllib.parse import urlsplit

import httptools

__all__ = ["HTTPClient", "Response", "HTTPClientError", "UpstreamTimeout", "UpstreamConnectionError",
           "UpstreamProtocolError"]

_HIGH_WATER = 1 << 20   # bytes received and not consumed before reading pauses


class HTTPClientError(Exception):
    """Any failure of the upstream hop."""


class UpstreamTimeout(HTTPClientError, TimeoutError):
    pass


class UpstreamConnectionError(HTTPClientError, ConnectionError):
    pass


class UpstreamProtocolError(UpstreamConnectionError):
    """The server answered something that is not HTTP/1.1."""


class _Target:
    """What a URL resolves to, parsed once per distinct URL."""
    __slots__ = ("key", "host", "port", "tls", "target", "host_header")

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UpstreamConnectionError(f"unsupported URL scheme in {url!r} (http or https)")
        if not parts.hostname:
            raise UpstreamConnectionError(f"no host in URL {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.key = (self.tls, self.host, self.port)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        self.host_header = host if self.port == default else f"{host}:{self.port}"


class _Connection(asyncio.Protocol):
    __slots__ = ("pool", "key", "transport", "response", "closed", "idle_since", "reused", "counted")

    def __init__(self, pool: "HTTPClient", key: tuple):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.counted = True   # holds one of the pool's slots until _forget

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None:   # bytes on an idle connection: the server broke the protocol
            self.abort()
            return
        resp._feed(data)

    def eof_received(self) -> bool:
        return False   # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
        resp = self.response
        if resp is not None:
            self.response = None
            resp._connection_lost(exc)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()   # connection_lost follows, which forgets it


class Response:
    """One upstream response: `status` and `headers` (lowercase names; repeated ones joined
    with ", ") once `HTTPClient.request` returns, then the body via `read()` (whole) or
    `next_chunk()` / `async for` (as it arrives; b"" from next_chunk at the end)."""

    __slots__ = ("status", "headers", "_conn", "_parser", "_loop", "_chunks", "_buffered", "_complete",
                 "_error", "_waiter", "_got_bytes", "_has_headers", "_last", "_timer", "_read_timeout",
                 "_deadline", "_headers_deadline", "_decoder", "_until_close", "_keep_alive", "_paused",
                 "_name", "_url", "_released")

    def __init__(self, conn: _Connection, loop: asyncio.AbstractEventLoop, read_timeout: float,
                 deadline: float, headers_deadline: float, url: str):
        self.status = 0
        self.headers: dict[str, str] = {}
        self._conn: _Connection | None = conn
        self._parser = httptools.HttpResponseParser(self)
        self._loop = loop
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._got_bytes = False
        self._has_headers = False
        self._last = loop.time()
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._headers_deadline = headers_deadline
        self._timer = loop.call_at(min(self._last + read_timeout, deadline, headers_deadline), self._on_timer)
        self._decoder = None
        self._until_close = False
        self._keep_alive = False
        self._paused = False
        self._name = b""
        self._url = url
        self._released = False

    # -- the parser's callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp may hand a name or value over in pieces when they span two segments
        if name:
            self._name = name
            key = name.decode("latin-1").lower()
            old = self.headers.get(key)
            self.headers[key] = value.decode("latin-1") if old is None else f"{old}, {value.decode('latin-1')}"
        else:
            key = self._name.decode("latin-1").lower()
            self.headers[key] += value.decode("latin-1")

    def on_headers_complete(self) -> None:
        p = self._parser
        if p is None:   # bytes past the end of a finished response: not ours to read
            return
        self.status = p.get_status_code()
        self._keep_alive = p.should_keep_alive()
        h = self.headers
        if "content-length" not in h and "chunked" not in h.get("transfer-encoding", "").lower() \
                and self.status not in (204, 304) and self.status >= 200:
            self._until_close = True   # the body ends when the server closes the connection
        enc = h.get("content-encoding", "").strip().lower()
        if enc in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(47)   # gzip or zlib, by the header it finds
        elif enc and enc != "identity":
            self._fail(UpstreamProtocolError(f"{self._url} answered with content-encoding {enc!r}, "
                                             f"which is not supported"))
            return
        if self.status >= 200:
            self._has_headers = True
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self._fail(UpstreamProtocolError(f"{self._url} sent a body that does not decompress: {exc}"))
                return
            if not body:
                return
        if self._released:   # nobody reads any more: only the body's end matters
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200:   # 1xx: an interim answer, the real one follows on this parser
            self.headers = {}
            return
        self._finish_body()

    # -- the connection's side --
    def _feed(self, data: bytes) -> None:
        self._got_bytes = True
        self._last = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError(f"{self._url} tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._fail(UpstreamProtocolError(f"{self._url} sent a malformed HTTP response: {exc}"))

    def _finish_body(self) -> None:
        if self._complete:
            return
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._buffered += len(tail)
        self._complete = True
        self._let_go()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.response = None
            if self._paused:
                conn.transport.resume_reading()
            if self._keep_alive and not self._until_close:
                conn.pool._release(conn)
            else:
                conn.abort()
        self._wake()

    def _connection_lost(self, exc: BaseException | None) -> None:
        self._conn = None
        if self._complete or self._error is not None:
            return
        if self._until_close and self._has_headers and exc is None:
            self._finish_body()   # a body delimited by the connection's end
            return
        what = f": {exc}" if exc else ""
        if not self._got_bytes:
            msg = f"{self._url}: the connection closed before any response{what}"
        else:
            msg = f"{self._url}: the connection closed before the response was complete{what}"
        self._fail(UpstreamConnectionError(msg), abort=False)

    def _fail(self, exc: BaseException, abort: bool = True) -> None:
        if self._error is None and not self._complete:
            self._error = exc
        self._let_go()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.response = None
            if abort:
                conn.abort()
        self._wake()

    def _let_go(self) -> None:
        """The response is over: its timer and parser go. Both point back at it (the timer's
        callback, the parser's callbacks), so kept they would make every response a cycle
        for the garbage collector; cut, it is freed by its last reference, not by the GC
        (the cycles were ~9 objects per request and most of the worker's GC time). The parser
        may still be inside feed_data, which holds its own reference."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        self._parser = None

    def _on_timer(self) -> None:
        if self._complete or self._error is not None:
            return
        now = self._loop.time()
        if self._paused:   # the consumer is behind, not the server
            self._last = now
        if now >= self._deadline:
            self._fail(UpstreamTimeout(f"{self._url}: no complete response within the total timeout"))
        elif not self._has_headers and now >= self._headers_deadline:
            self._fail(UpstreamTimeout(f"{self._url}: no response headers within the deadline"))
        elif now - self._last >= self._read_timeout:
            what = "headers" if not self._has_headers else "body data"
            self._fail(UpstreamTimeout(f"{self._url}: no {what} for {self._read_timeout:g}s"))
        else:
            nxt = min(self._last + self._read_timeout, self._deadline)
            if not self._has_headers:
                nxt = min(nxt, self._headers_deadline)
            self._timer = self._loop.call_at(nxt, self._on_timer)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def _wait(self) -> None:
        w = self._waiter = self._loop.create_future()
        try:
            await w
        except BaseException:
            self._waiter = None
            raise

    # -- the consumer's side --
    async def _wait_headers(self) -> None:
        while not self._has_headers:
            if self._error is not None:
                raise self._error
            await self._wait()

    @property
    def complete(self) -> bool:
        """The whole body arrived (the connection is back in the pool)."""
        return self._complete

    @property
    def done(self) -> bool:
        """The whole body arrived (or the response failed) and all of it was consumed."""
        return (self._complete or self._error is not None) and not self._chunks

    async def read(self) -> bytes:
        """The whole body. Raises the response's error (bytes that came first are dropped)."""
        while not self._complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        self._buffered = 0
        return data

    async def next_chunk(self) -> bytes:
        """Everything received since the last call, waiting for something when nothing is
        there; b"" once the body is complete. Raises the response's error only after every
        byte received before it was handed out."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._paused and self._conn is not None:
            self._paused = False
            self._last = self._loop.time()
            self._conn.transport.resume_reading()
        return data

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        data = await self.next_chunk()
        if not data:
            raise StopAsyncIteration
        return data

    def close(self) -> None:
        """Drops the connection unless the response is complete (then it is already pooled)
        or released: for a response abandoned half-read, e.g. when the client went away."""
        if not self._complete and not self._released:
            self._fail(UpstreamConnectionError(f"{self._url}: the response was abandoned"))
        self._chunks = []

    def release(self, grace: float) -> None:
        """The reader has all it wants (a stream's end event came) but the body's end has
        not arrived yet: whatever else arrives is discarded, and the connection goes back to
        the pool when the end comes within `grace` seconds, else it is dropped. Nothing waits
        for it."""
        if self._complete or self._error is not None or self._released:
            return
        self._released = True
        self._chunks = []
        self._buffered = 0
        if self._paused and self._conn is not None:
            self._paused = False
            self._conn.transport.resume_reading()
        now = self._loop.time()
        self._read_timeout = min(self._read_timeout, grace)
        self._deadline = min(self._deadline, now + grace)
        self._last = now
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._deadline, self._on_timer)


class HTTPClient:
    """A pool of keep-alive HTTP/1.1 connections; `request()` sends one request."""

    def __init__(self, *, connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 total_timeout: float = 600.0, limit: int = 1000, limit_per_host: int = 256,
                 keepalive: float = 60.0, ssl_context: ssl.SSLContext | None = None):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.limit = limit or 1 << 30
        self.limit_per_host = limit_per_host or 1 << 30
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple, deque[_Connection]] = {}
        self._count: dict[tuple, int] = {}      # open connections per key, idle ones included
        self._total = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._targets: dict[str, _Target] = {}
        self._closing = False

    def _target(self, url: str) -> _Target:
        t = self._targets.get(url)
        if t is None:
            t = _Target(url)
            if len(self._targets) > 4096:   # URLs are per deployment; this only bounds a misuse
                self._targets.clear()
            self._targets[url] = t
        return t

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"",
                      timeout: float | None = None) -> Response:
        """Sends the request; returns once the status line and headers arrived, within
        `timeout` seconds (connect included) when given. The body is the Response's to read."""
        loop = asyncio.get_running_loop()
        t = self._target(url)
        start = loop.time()
        headers_deadline = start + timeout if timeout is not None else float("inf")
        lines = [f"{method} {t.target} HTTP/1.1\r\nhost: {t.host_header}\r\ncontent-length: {len(body)}\r\n"]
        for k, v in headers.items():
            lines.append(f"{k}: {v}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        for attempt in (0, 1):
            conn = await self._acquire(t, loop, headers_deadline)
            resp = Response(conn, loop, self.read_timeout, start + self.total_timeout,
                            headers_deadline, url)
            conn.response = resp
            if len(body) < 16384:
                conn.transport.write(head + body)
            else:
                conn.transport.writelines((head, body))
            try:
                await resp._wait_headers()
                return resp
            except UpstreamConnectionError:
                # a kept-alive connection the server had closed: nothing of this request was
                # processed, so it is sent once more on a new connection
                if attempt == 0 and conn.reused and not resp._got_bytes:
                    continue
                raise
            except BaseException:   # cancelled (the client went away) or timed out
                resp.close()
                raise
        raise AssertionError("unreachable")

    # -- the pool --
    async def _acquire(self, t: _Target, loop, deadline: float) -> _Connection:
        key = t.key
        idle = self._idle.get(key)
        if idle:
            now = loop.time()
            while idle:
                conn = idle.pop()   # the most recently used: the likeliest to be alive
                if conn.closed:
                    continue
                if now - conn.idle_since > self.keepalive:
                    conn.abort()
                    continue
                conn.reused = True
                return conn
        while self._total >= self.limit or self._count.get(key, 0) >= self.limit_per_host:
            if self._total >= self.limit and self._drop_idle():
                continue
            fut = loop.create_future()
            self._waiters.append(fut)
            left = deadline - loop.time()
            try:
                if left == float("inf"):
                    await fut
                else:
                    await asyncio.wait_for(fut, max(0.0, left))
            except asyncio.TimeoutError:
                raise UpstreamTimeout(f"no free upstream connection to {t.host_header} "
                                      f"(pool limits {self.limit}/{self.limit_per_host}) within the deadline") from None
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    conn.reused = True
                    return conn
        return await self._connect(t, loop, deadline)

    def _drop_idle(self) -> bool:
        """Closes the longest-idle connection of any host to make room; False if none."""
        oldest = None
        for dq in self._idle.values():
            if dq and (oldest is None or dq[0].idle_since < oldest[0].idle_since):
                oldest = dq
        if oldest is None:
            return False
        conn = oldest.popleft()
        conn.abort()
        self._forget(conn)
        return True

    async def _connect(self, t: _Target, loop, deadline: float) -> _Connection:
        if self._closing:
            raise UpstreamConnectionError("the HTTP client is closed")
        key = t.key
        self._total += 1
        self._count[key] = self._count.get(key, 0) + 1
        conn = _Connection(self, key)
        timeout = min(self.connect_timeout, max(0.0, deadline - loop.time()))
        ctx = None
        if t.tls:
            ctx = self._ssl or ssl.create_default_context()
            self._ssl = ctx
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: conn, t.host, t.port, ssl=ctx, server_hostname=t.host if ctx else None), timeout)
        except asyncio.TimeoutError:
            self._forget(conn)
            raise UpstreamTimeout(f"connecting to {t.host_header} timed out after {timeout:g}s") from None
        except OSError as exc:
            self._forget(conn)
            raise UpstreamConnectionError(f"cannot connect to {t.host_header}: {exc}") from exc
        except BaseException:
            self._forget(conn)
            conn.abort()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closing:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.key, deque()).append(conn)
        self._wake_one()

    def _forget(self, conn: _Connection) -> None:
        """A connection is gone (or never came): its slot is free."""
        if not conn.counted:
            return
        conn.counted = False
        self._total -= 1
        n = self._count.get(conn.key, 1) - 1
        if n > 0:
            self._count[conn.key] = n
        else:
            self._count.pop(conn.key, None)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def close(self) -> None:
        self._closing = True
        for dq in self._idle.values():
            for conn in dq:
                conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)   # let the transports run connection_lost
