"""The bare aiohttp passthrough (the targets' reference) really relays, plain and streamed,
so the suite's `bare` column measures a working passthrough."""
from __future__ import annotations

from bench import peers
from bench.bench_gateway import body, free_port, start_mock


def test_bare_passthrough_relays_plain_and_stream():
    mock_port = free_port()
    mock = start_mock(mock_port, None, chunks=5)
    try:
        st = peers.peer_status("bare")
        assert st.found and st.version.startswith("aiohttp ")
        target = peers.start_peer("bare", free_port(), f"http://127.0.0.1:{mock_port}/v1", None)
        try:
            assert peers.probe(target, body(False), body(True)) is None
            assert target.stream_ok, target.note
        finally:
            target.stop()
        assert target.proc.poll() is not None
    finally:
        mock.terminate()
        mock.wait(10)
