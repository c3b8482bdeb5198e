"""The bare aiohttp passthrough (the targets' reference) really relays, plain and streamed,
so the suite's `bare` column measures a working passthrough."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bench import peers
from bench.bench_gateway import ROOT, body, free_port, start_mock, wait_http
from bench.loadgen import have_wrk, run_load


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
