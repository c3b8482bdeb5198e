"""Starting the processes the benchmarks measure: the mock provider and the gateway.

`start_mock` runs `python -m bench.mocks` and `start_gateway` runs `python -m proxy serve`,
each pinned with taskset and waited for; `faregate_config` is the suite's gateway config.
`python -m bench.bench_gateway [suite options]` (also `python -m bench gateway`) is a short
suite run: non-stream and stream, direct vs Faregate, no peers.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import orjson
import yaml

from .loadgen import NONCE, pinned

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Waits until `url` answers at all (any HTTP status), failing early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode} while starting")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def start_mock(port: int, cpus: str | None, **behavior) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.mocks", "--format", "openai", "--port", str(port)]
    for k, v in behavior.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    proc = subprocess.Popen(pinned(cmd, cpus), cwd=ROOT, stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v1/models", proc=proc)
    return proc


def free_port() -> int:
    return _free_port()


def faregate_config(upstream: str, *, workdir: str | None = None, cache: bool = True) -> dict:
    """The benchmark's gateway config: one deployment of `bench-model` at the mock, no access
    log, and every feature the gateway has switched on (the ledger writes to `workdir`; the
    cache is on, so scenarios that must miss send a unique body each time)."""
    from proxy.config import Config

    fields = set(Config.__struct_fields__)
    cfg: dict = {"server": {"access_log": False}, "models": [
        {"name": "bench-model", "provider": "openai", "base_url": upstream, "api_key": "k"}]}
    if "ledger" in fields and workdir:
        cfg["ledger"] = {"enabled": True, "path": os.path.join(workdir, "ledger.sqlite3")}
    if "metrics" in fields:
        cfg["metrics"] = {"enabled": True}
    if "cache" in fields and cache:
        # bounded small: with unique prompts every answer is stored, and an unbounded fill
        # would read as a leak in the RSS check
        cfg["cache"] = {"enabled": True, "max_bytes": 16 * 1024 * 1024}
    return cfg


def start_gateway(port: int, upstream: str, cpus: str | None, extra_env: dict | None = None,
                  config_extra: dict | None = None, *, workers: int = 1,
                  config: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Starts `python -m proxy serve` (pinned) and waits for /readyz. `config` replaces the
    default minimal config; `config_extra` is merged over it."""
    cfg = config or {"server": {"access_log": False}, "models": [
        {"name": "bench-model", "provider": "openai", "base_url": upstream, "api_key": "k"}]}
    for k, v in (config_extra or {}).items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(cfg, fh)
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(pinned([sys.executable, "-m", "proxy", "serve", "--config", path,
                                    "--port", str(port), "--no-access-log",
                                    "--workers", str(workers)], cpus),
                            cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
    except RuntimeError:
        proc.kill()
        proc.wait()
        os.unlink(path)
        raise
    return proc, path


def body(stream: bool, unique: bool = False) -> bytes:
    """A chat request; `unique` puts a nonce in the prompt so that no two are alike."""
    text = "Benchmark me, please." + (" " + NONCE if unique else "")
    return orjson.dumps({"model": "bench-model", "stream": stream,
                         "messages": [{"role": "user", "content": text}]})


def main(argv: list[str] | None = None) -> None:
    """The original gateway-vs-direct run, now a short run of the suite: non-stream and stream,
    Faregate only (the suite's options apply: python -m bench --help)."""
    import sys as _sys

    from .suite import main as suite_main
    args = list(_sys.argv[1:] if argv is None else argv)
    if "--scenarios" not in args:
        args = ["--scenarios", "nonstream,stream", *args]
    if "--peers" not in args:
        args = ["--peers", "none", *args]
    raise SystemExit(suite_main(args))


if __name__ == "__main__":
    main()
