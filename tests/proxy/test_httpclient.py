"""proxy.httpclient against a raw TCP server on loopback that answers exactly as each test
scripts it: framings, keep-alive, broken connections, silences, floods."""
from __future__ import annotations

import asyncio
import gc
import gzip
import zlib

import pytest

from proxy.httpclient import (HTTPClient, UpstreamConnectionError, UpstreamProtocolError,
                              UpstreamTimeout)


class RawServer:
    """Accepts connections; each request's raw bytes go to `handler(req, writer, conn_no)`,
    an async function that writes whatever answer the test wants."""

    def __init__(self, handler):
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_no = self.connections
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                if await self.handler(head + body, writer, conn_no) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def serve():
    started: list[RawServer] = []

    async def make(handler) -> tuple[RawServer, str]:
        srv = RawServer(handler)
        started.append(srv)
        return srv, await srv.start()

    yield make
    for srv in started:
        await srv.stop()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


async def answer(data: bytes):
    async def handler(req, w, n):
        w.write(data)
        await w.drain()
    return handler


async def test_content_length_body_and_keep_alive_reuse(serve):
    srv, url = await serve(await answer(ok()))
    client = HTTPClient()
    try:
        for _ in range(5):
            r = await client.request("POST", url + "/v1/chat/completions", {"x-a": "1"}, b'{"q":1}')
            assert r.status == 200
            assert r.headers["content-type"] == "application/json"
            assert await r.read() == b'{"ok":true}'
        assert srv.connections == 1   # one connection, kept alive
        req = srv.requests[0]
        assert req.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"host: 127.0.0.1:" in req and b"content-length: 7\r\n" in req and b"x-a: 1\r\n" in req
        assert req.endswith(b'\r\n\r\n{"q":1}')
    finally:
        await client.close()


def gated(gate: asyncio.Event, first: bytes, rest: bytes):
    """A handler that sends a chunked answer's head and `first`, and `rest` once `gate` is set."""
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        w.write(first)
        await w.drain()
        await gate.wait()
        w.write(rest)
        await w.drain()
    return handler


async def test_chunked_stream_arrives_as_sent(serve):
    gate = asyncio.Event()
    srv, url = await serve(gated(gate, b"5\r\nhello\r\n", b"6\r\n world\r\n0\r\n\r\n"))
    client = HTTPClient()
    try:
        r = await client.request("POST", url + "/s", {}, b"")
        assert await r.next_chunk() == b"hello"   # before the rest was even written
        gate.set()
        assert await r.next_chunk() == b" world"
        assert await r.next_chunk() == b""
        assert r.done
    finally:
        await client.close()


async def test_a_body_delimited_by_the_connection_end(serve):
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await w.drain()
        return False   # closes

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        assert await r.read() == b"all of it"
        r2 = await client.request("POST", url, {}, b"")   # the closed one is not reused
        assert await r2.read() == b"all of it"
        assert srv.connections == 2
    finally:
        await client.close()


async def test_bytes_received_before_a_cut_come_before_its_error(serve):
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        w.write(b"b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n")   # no terminating chunk
        await w.drain()
        w.transport.abort()
        return False

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        got = b""
        with pytest.raises(UpstreamConnectionError, match="before the response was complete"):
            async for chunk in r:
                got += chunk
        assert got == b"data: one\n\ndata: two\n\n"
    finally:
        await client.close()


async def test_read_of_a_cut_body_raises(serve):
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await w.drain()
        w.transport.abort()
        return False

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        with pytest.raises(UpstreamConnectionError):
            await r.read()
    finally:
        await client.close()


async def test_gzip_and_deflate_bodies_are_decompressed(serve):
    payloads = {b"/gz": (b"gzip", gzip.compress(b'{"a":1}' * 100)),
                b"/df": (b"deflate", zlib.compress(b'{"b":2}' * 100))}

    async def handler(req, w, n):
        path = req.split(b" ")[1]
        enc, data = payloads[path]
        w.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: %d\r\n\r\n%s" % (enc, len(data), data))
        await w.drain()

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        assert await (await client.request("POST", url + "/gz", {}, b"")).read() == b'{"a":1}' * 100
        assert await (await client.request("POST", url + "/df", {}, b"")).read() == b'{"b":2}' * 100
    finally:
        await client.close()


async def test_an_unknown_content_encoding_is_an_error(serve):
    srv, url = await serve(await answer(b"HTTP/1.1 200 OK\r\ncontent-encoding: zstd\r\ncontent-length: 1\r\n\r\nx"))
    client = HTTPClient()
    try:
        with pytest.raises(UpstreamProtocolError, match="zstd"):
            await client.request("POST", url, {}, b"")
    finally:
        await client.close()


async def test_repeated_headers_are_joined_and_names_lowercased(serve):
    srv, url = await serve(await answer(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nX-Thing: a\r\n"
                                        b"X-Thing: b\r\ncontent-length: 0\r\n\r\n"))
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        assert r.status == 429
        assert r.headers["retry-after"] == "3"
        assert r.headers["x-thing"] == "a, b"
        assert await r.read() == b""
    finally:
        await client.close()


async def test_an_interim_100_continue_is_skipped(serve):
    srv, url = await serve(await answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}")))
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        assert r.status == 200 and await r.read() == b"{}"
    finally:
        await client.close()


async def test_a_malformed_answer_is_a_protocol_error(serve):
    srv, url = await serve(await answer(b"SMTP ready\r\n\r\n"))
    client = HTTPClient()
    try:
        with pytest.raises(UpstreamProtocolError, match="malformed"):
            await client.request("POST", url, {}, b"")
    finally:
        await client.close()


async def test_connect_refused_is_a_connection_error():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    client = HTTPClient()
    try:
        with pytest.raises(UpstreamConnectionError, match="cannot connect"):
            await client.request("POST", f"http://127.0.0.1:{port}/", {}, b"")
        assert client._total == 0   # the slot was given back
    finally:
        await client.close()


async def test_connect_timeout(monkeypatch):
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    async def unanswered_syn(*args, **kwargs):   # what a black-holed address does
        started.set()
        await asyncio.sleep(30)

    monkeypatch.setattr(loop, "create_connection", unanswered_syn)
    client = HTTPClient(connect_timeout=0.2)
    try:
        t = loop.time()
        with pytest.raises(UpstreamTimeout, match="connecting to 192.0.2.1:81 timed out"):
            await client.request("POST", "http://192.0.2.1:81/", {}, b"")
        assert started.is_set() and loop.time() - t < 2
        assert client._total == 0
    finally:
        await client.close()


async def test_no_headers_within_the_read_timeout(serve):
    async def handler(req, w, n):
        await asyncio.sleep(5)

    srv, url = await serve(handler)
    client = HTTPClient(read_timeout=0.2)
    try:
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(UpstreamTimeout, match="no headers for 0.2s"):
            await client.request("POST", url, {}, b"")
        assert loop.time() - t < 2
    finally:
        await client.close()


async def test_the_per_request_headers_deadline(serve):
    async def handler(req, w, n):
        await asyncio.sleep(5)

    srv, url = await serve(handler)
    client = HTTPClient(read_timeout=30)
    try:
        with pytest.raises(UpstreamTimeout, match="within the deadline"):
            await client.request("POST", url, {}, b"", timeout=0.2)
    finally:
        await client.close()


async def test_silence_between_chunks_times_out_but_steady_chunks_do_not(serve):
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):   # 0.6 s in all, never silent for 0.3 s
            w.write(b"1\r\nx\r\n")
            await w.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)   # then silent
        w.write(b"0\r\n\r\n")
        await w.drain()

    srv, url = await serve(handler)
    client = HTTPClient(read_timeout=0.3)
    try:
        r = await client.request("POST", url, {}, b"")
        got = b""
        with pytest.raises(UpstreamTimeout, match="no body data for 0.3s"):
            async for chunk in r:
                got += chunk
        assert got == b"x" * 6
    finally:
        await client.close()


async def test_total_timeout(serve):
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            w.write(b"1\r\nx\r\n")
            await w.drain()
            await asyncio.sleep(0.05)

    srv, url = await serve(handler)
    client = HTTPClient(read_timeout=1, total_timeout=0.4)
    try:
        r = await client.request("POST", url, {}, b"")
        with pytest.raises(UpstreamTimeout, match="total timeout"):
            await r.read()
    finally:
        await client.close()


async def test_a_stale_kept_alive_connection_is_replaced_once(serve):
    async def handler(req, w, n):
        w.write(ok())
        await w.drain()
        if n == 1:
            return False   # the server closes the first connection after its answer

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        assert (await client.request("POST", url, {}, b"")).status == 200
        # the close may not have been seen yet; either way the next request must succeed
        r = await client.request("POST", url, {}, b"")
        assert await r.read() == b'{"ok":true}'
        assert srv.connections == 2
    finally:
        await client.close()


async def test_a_connection_that_fails_after_answering_part_is_not_resent(serve):
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await w.drain()
        w.transport.abort()
        return False

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        with pytest.raises(UpstreamConnectionError):
            await r.read()
        assert len(srv.requests) == 1
    finally:
        await client.close()


async def test_pool_limit_per_host_makes_requests_wait(serve):
    gate = asyncio.Event()
    active = 0
    most = 0

    async def handler(req, w, n):
        nonlocal active, most
        active += 1
        most = max(most, active)
        await gate.wait()
        active -= 1
        w.write(ok())
        await w.drain()

    srv, url = await serve(handler)
    client = HTTPClient(limit_per_host=2)
    try:
        async def one():
            r = await client.request("POST", url, {}, b"")
            return await r.read()

        tasks = [asyncio.create_task(one()) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert srv.connections == 2 and most == 2
        gate.set()
        assert await asyncio.gather(*tasks) == [b'{"ok":true}'] * 6
        assert srv.connections == 2
    finally:
        await client.close()


async def test_waiting_for_a_pool_slot_respects_the_deadline(serve):
    async def handler(req, w, n):
        await asyncio.sleep(5)

    srv, url = await serve(handler)
    client = HTTPClient(limit=1)
    try:
        first = asyncio.create_task(client.request("POST", url, {}, b""))
        await asyncio.sleep(0.1)
        with pytest.raises(UpstreamTimeout, match="no free upstream connection"):
            await client.request("POST", url, {}, b"", timeout=0.2)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await client.close()


async def test_cancelling_a_request_drops_its_connection(serve):
    closed = asyncio.Event()

    async def handler(req, w, n):
        try:
            await asyncio.sleep(5)
        finally:
            closed.set()

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        task = asyncio.create_task(client.request("POST", url, {}, b""))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        assert client._total == 0 and not any(client._idle.values())
    finally:
        await client.close()


def stalls_after(chunk: bytes):
    """A handler that starts a chunked answer with one chunk and then says nothing more."""
    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(chunk), chunk))
        await w.drain()
        await asyncio.sleep(5)
    return handler


async def test_abandoning_a_half_read_response_closes_its_connection(serve):
    srv, url = await serve(stalls_after(b"x"))
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        assert await r.next_chunk() == b"x"
        r.close()
        await asyncio.sleep(0.05)
        assert client._total == 0
        r2 = await client.request("POST", url, {}, b"")   # a new connection, not the dirty one
        assert await r2.next_chunk() == b"x"
        assert srv.connections == 2
        r2.close()
    finally:
        await client.close()


async def test_a_released_response_pools_its_connection_when_the_end_comes(serve):
    """After a stream's end event the reader releases the response: the body's end, arriving
    later, puts the connection back in the pool; nothing more is buffered; close() keeps it."""
    gate = asyncio.Event()
    first = gated(gate, b"5\r\n[end]\r\n", b"4\r\nmore\r\n0\r\n\r\n")

    async def handler(req, w, n):
        if req.startswith(b"POST /second"):
            w.write(ok())
            await w.drain()
            return
        await first(req, w, n)

    srv, url = await serve(handler)
    client = HTTPClient()
    try:
        r = await client.request("POST", url + "/first", {}, b"")
        assert await r.next_chunk() == b"[end]"
        r.release(1.0)
        r.close()   # what the caller's cleanup does: a no-op now
        assert not r.complete and client._total == 1
        gate.set()
        for _ in range(100):
            if r.complete:
                break
            await asyncio.sleep(0.01)
        assert r.complete and r._chunks == []
        r2 = await client.request("POST", url + "/second", {}, b"")
        assert await r2.read() == b'{"ok":true}'
        assert srv.connections == 1   # the released connection was reused
    finally:
        await client.close()


async def test_a_released_response_whose_end_never_comes_is_dropped(serve):
    srv, url = await serve(stalls_after(b"[end]"))
    client = HTTPClient()
    try:
        r = await client.request("POST", url, {}, b"")
        assert await r.next_chunk() == b"[end]"
        r.release(0.1)
        await asyncio.sleep(0.3)
        assert client._total == 0 and not r.complete
    finally:
        await client.close()


async def test_finished_responses_are_freed_without_the_garbage_collector(serve):
    """A response's timer and parser point back at it; once it is over they are cut, so it
    is freed by reference counting. (Left as cycles they were ~9 objects per request for
    the collector, most of a loaded worker's GC time.)"""
    srv, url = await serve(await answer(ok()))
    client = HTTPClient()
    gc.collect()
    gc.disable()
    try:
        for _ in range(30):
            r = await client.request("POST", url, {}, b"")
            assert await r.read() == b'{"ok":true}'
            r.close()
            del r
        assert gc.collect() < 10
    finally:
        gc.enable()
        await client.close()


async def test_a_fast_large_body_pauses_reading_and_arrives_whole(serve):
    blob = bytes(range(256)) * (16 * 1024)   # 4 MiB, above the 1 MiB high-water mark

    async def handler(req, w, n):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(blob) + blob)
        await w.drain()

    srv, url = await serve(handler)
    client = HTTPClient(read_timeout=0.5)
    try:
        r = await client.request("POST", url, {}, b"")
        await asyncio.sleep(1.0)   # a slow consumer: longer than the read timeout, no timeout
        assert r._paused
        got = bytearray()
        while chunk := await r.next_chunk():
            got += chunk
        assert bytes(got) == blob
    finally:
        await client.close()


async def test_a_large_request_body_is_sent_whole(serve):
    big = b"y" * (3 * 1024 * 1024)
    srv, url = await serve(await answer(ok()))
    client = HTTPClient()
    try:
        assert (await client.request("POST", url, {}, big)).status == 200
        assert srv.requests[0].endswith(b"\r\n\r\n" + big)
    finally:
        await client.close()


async def test_unsupported_scheme_is_a_connection_error():
    client = HTTPClient()
    with pytest.raises(UpstreamConnectionError, match="unsupported URL scheme"):
        await client.request("POST", "ftp://example.com/x", {}, b"")


async def test_idle_connections_expire_after_keepalive(serve):
    srv, url = await serve(await answer(ok()))
    client = HTTPClient(keepalive=0.1)
    try:
        await (await client.request("POST", url, {}, b"")).read()
        await asyncio.sleep(0.2)
        await (await client.request("POST", url, {}, b"")).read()
        assert srv.connections == 2
    finally:
        await client.close()
