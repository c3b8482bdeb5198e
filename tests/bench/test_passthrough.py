"""The suite's built-in references, the bare aiohttp passthrough and the byte relay, really
relay, plain and streamed, so their columns measure working passthroughs."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bench import peers
from bench.bench_gateway import ROOT, body, free_port, start_mock, wait_http
from bench.loadgen import have_wrk, run_load


@pytest.mark.parametrize("name, version, rate_of", [("bare", "aiohttp ", None),
                                                     ("relay", "uvloop ", "faregate")])
def test_the_built_in_references_relay_plain_and_stream(name, version, rate_of):
    mock_port = free_port()
    mock = start_mock(mock_port, None, chunks=5)
    try:
        st = peers.peer_status(name)
        assert st.found and st.version.startswith(version)
        target = peers.start_peer(name, free_port(), f"http://127.0.0.1:{mock_port}/v1", None)
        try:
            assert target.rate_of == rate_of
            assert peers.probe(target, body(False), body(True)) is None
            assert target.stream_ok, target.note
            # keep-alive through it: many requests on each connection, streams included
            res = run_load(target.url, bodies=[body(False), body(True)], connections=4,
                           duration=0.5, tool="builtin")
            assert res.requests > 20 and res.errors == 0
        finally:
            target.stop()
        assert target.proc.poll() is not None
    finally:
        mock.terminate()
        mock.wait(10)


@pytest.mark.skipif(not have_wrk(), reason="wrk is not installed (scripts/test installs it)")
def test_wrk_dropping_its_streams_at_the_end_of_a_run_is_not_logged_as_an_error(tmp_path):
    """wrk ends every run by closing its connections, streams in flight; the passthrough
    logged each of those as 'Error handling request' with a traceback (117 in one suite run)."""
    mock_port, port = free_port(), free_port()
    mock = start_mock(mock_port, None, chunks=20)
    log = open(tmp_path / "stderr.txt", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "bench.passthrough", "--port", str(port),
                             "--upstream", f"http://127.0.0.1:{mock_port}/v1"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 30, proc)
        for _ in range(2):
            res = run_load(f"http://127.0.0.1:{port}/v1/chat/completions", bodies=[body(True)],
                           connections=32, duration=1, tool="wrk")
            assert res.requests > 0
    finally:
        proc.terminate()
        proc.wait(10)
        mock.terminate()
        mock.wait(10)
    log.seek(0)
    assert b"Error handling request" not in log.read()


async def test_the_relay_carries_large_transfers_both_ways_and_half_closes():
    """8 MB through an echo upstream: far past the transports' buffers, so the relay's flow
    control pauses and resumes; the client's FIN reaches the upstream, whose close ends it."""
    import asyncio
    import os

    from bench.relay import serve

    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    relay = await serve(0, f"http://127.0.0.1:{up_port}/v1")
    port = relay.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = os.urandom(8 << 20)

        async def send():
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        got = await asyncio.wait_for(reader.read(-1), 30)   # to EOF: the upstream closed
        await sender
        assert got == payload
        writer.close()
    finally:
        relay.close()
        upstream.close()
