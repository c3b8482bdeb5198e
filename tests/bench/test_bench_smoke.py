"""The bench suite's smoke mode (CI): `python -m bench --smoke` runs the mock, direct and
through Faregate, non-stream and stream, in a few seconds, and writes its report."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--no-plots"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(folders) == 1
    return proc.stdout, folders[0]


def test_report_and_tables_exist(smoke):
    stdout, folder = smoke
    report = (folder / "report.md").read_text()
    for heading in ("## Machine and versions", "### Targets (Faregate, per worker)",
                    "## Throughput (closed loop", "## Latency at a fixed rate", "## Streams (SSE client",
                    "## Memory (RSS"):
        assert heading in report, heading
    assert "python -m bench --smoke" in report
    assert "| non-stream requests/s per worker | ≥ 4,000 |" in report
    assert "### Targets" in stdout and "report:" in stdout


def test_figures_are_positive(smoke):
    _, folder = smoke
    res = msgspec.json.decode((folder / "results.json").read_bytes())
    rows = {(r["scenario"], r["target"]): r for r in res["rows"]}
    assert set(rows) == {("nonstream", "direct"), ("stream", "direct"),
                         ("nonstream", "faregate"), ("stream", "faregate")}
    for (scenario, target), row in rows.items():
        c = row["closed"]
        assert c["requests"] > 0 and c["rps"] > 0, (scenario, target)
        assert 0 < c["p50_ms"] <= c["p99_ms"] <= c["max_ms"], (scenario, target)
        assert c["cdf"] and c["cdf"][-1][0] == 100
    for scenario in ("nonstream", "stream"):
        row = rows[(scenario, "faregate")]
        assert row["cpu_ms_per_req"] > 0
        assert row["open"]["rate"] > 0 and row["open"]["requests"] > 0
        assert row["direct_open"]["rate"] == row["open"]["rate"]   # the same rate, direct
    sse = rows[("stream", "faregate")]["sse"]
    assert sse["streams"] > 0
    mem = res["memory"][0]
    assert mem["target"] == "faregate"
    assert 5 < mem["max_proc_mb"] <= mem["max_mb"] < 4096
    assert mem["requests"] > 0
