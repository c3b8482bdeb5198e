"""Peer gateways for side-by-side runs: LiteLLM's proxy and Portkey's gateway, and two
references that are part of the suite: `bare` (bench/passthrough.py, aiohttp with no
features) and `relay` (bench/relay.py, a byte relay: the floor of any process in the path).

Neither is a dependency of Faregate. Each is found at a documented place, started on a free
loopback port in front of the same mock provider as Faregate, pinned to the same core, and
probed with one plain and one streaming request before any load; a peer that is missing, or
fails to start or to answer, is skipped with the reason, and the suite goes on without it.

LiteLLM: a venv at $FAREGATE_LITELLM (the venv directory or its `litellm` executable), else
~/.cache/faregate-bench/litellm-venv, holding `pip install 'litellm[proxy]'`. It runs offline
(`LITELLM_LOCAL_MODEL_COST_MAP=True`, telemetry off) from a generated config that maps
`bench-model` to `openai/bench-model` at the mock's api_base; recent versions refuse to start
without a master key, so the config sets a generated one and the load sends it.

Portkey: `@portkey-ai/gateway` installed with npm under $FAREGATE_PORTKEY, else
~/.cache/faregate-bench/portkey, else in npm's global root; started with node
(`build/start-server.js --port=N --headless`). Requests carry `x-portkey-provider: openai` and
`x-portkey-custom-host` pointing at the mock.

`python -m bench peers` says what is found; `python -m bench peers --install` runs the
install commands from bench/README.md.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml

from .bench_gateway import wait_http

__all__ = ["BUILT_IN", "CACHE_DIR", "Target", "PeerStatus", "peer_status", "start_peer", "probe", "PEERS",
           "install", "main"]

CACHE_DIR = Path(os.environ.get("FAREGATE_BENCH_CACHE", Path.home() / ".cache" / "faregate-bench"))
PEERS = ("bare", "relay", "litellm", "portkey")
BUILT_IN = ("bare", "relay")   # part of the suite: always there, nothing to install


@dataclass
class Target:
    """Something to send load to: the mock itself, Faregate, or a peer."""
    name: str
    url: str                                   # the chat completions URL
    headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    workers: int = 1
    version: str = ""
    cleanup: list[str] = field(default_factory=list)   # files to remove on stop
    stream_ok: bool = True
    note: str = ""
    rate_of: str | None = None   # open loop at the rate this other target ran at, not its own

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for path in self.cleanup:
            try:
                os.unlink(path)
            except OSError:
                pass


@dataclass
class PeerStatus:
    name: str
    found: bool
    where: str
    version: str = ""
    reason: str = ""


# ---- finding them ---------------------------------------------------------------------------

def _litellm_exe() -> tuple[Path | None, str]:
    env = os.environ.get("FAREGATE_LITELLM")
    cands = []
    if env:
        p = Path(env).expanduser()
        cands += [p, p / "bin" / "litellm"] if p.is_dir() else [p]
    cands.append(CACHE_DIR / "litellm-venv" / "bin" / "litellm")
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return c, str(c)
    return None, ", ".join(str(c) for c in cands)


def _portkey_script() -> tuple[Path | None, str]:
    rel = Path("node_modules") / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    cands = []
    env = os.environ.get("FAREGATE_PORTKEY")
    if env:
        p = Path(env).expanduser()
        cands += [p] if p.suffix == ".js" else [p / rel, p / "build" / "start-server.js"]
    cands.append(CACHE_DIR / "portkey" / rel)
    if shutil.which("npm"):
        try:
            root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
            if root:
                cands.append(Path(root) / "@portkey-ai" / "gateway" / "build" / "start-server.js")
        except (OSError, subprocess.TimeoutExpired):
            pass
    for c in cands:
        if c.is_file():
            return c, str(c)
    return None, ", ".join(str(c) for c in cands)


def peer_status(name: str) -> PeerStatus:
    if name == "bare":  # bench/passthrough.py: part of the suite, always there
        import aiohttp

        return PeerStatus(name, True, "bench/passthrough.py", f"aiohttp {aiohttp.__version__}")
    if name == "relay":  # bench/relay.py: likewise
        import uvloop

        return PeerStatus(name, True, "bench/relay.py", f"uvloop {uvloop.__version__}")
    if name == "litellm":
        exe, where = _litellm_exe()
        if exe is None:
            return PeerStatus(name, False, where, reason="not installed (see bench/README.md)")
        py = exe.parent / "python"
        try:
            ver = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                                 capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            ver = "?"
        return PeerStatus(name, True, where, ver)
    if name == "portkey":
        script, where = _portkey_script()
        if script is None:
            return PeerStatus(name, False, where, reason="not installed (see bench/README.md)")
        if not shutil.which("node"):
            return PeerStatus(name, False, where, reason="node is not installed")
        try:
            pkg = orjson.loads((script.parent.parent / "package.json").read_bytes())
            ver = pkg.get("version", "?")
        except (OSError, orjson.JSONDecodeError):
            ver = "?"
        return PeerStatus(name, True, str(script), ver)
    raise KeyError(name)


# ---- starting them --------------------------------------------------------------------------

def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def start_litellm(port: int, upstream: str, cpus: str | None, workers: int = 1) -> Target:
    from .loadgen import pinned

    exe, where = _litellm_exe()
    if exe is None:
        raise RuntimeError(f"LiteLLM is not installed (looked at {where})")
    master = "sk-bench-" + secrets.token_hex(16)
    cfg = {"model_list": [{"model_name": "bench-model", "litellm_params": {
               "model": "openai/bench-model", "api_base": upstream, "api_key": "k"}}],
           "litellm_settings": {"telemetry": False},
           "general_settings": {"master_key": master}}
    fd, cfg_path = tempfile.mkstemp(prefix="litellm-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(cfg, fh)
    fd, log_path = tempfile.mkstemp(prefix="litellm-", suffix=".log")
    os.close(fd)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False", "DISABLE_ADMIN_UI": "True", "NO_DOCS": "True"}
    log = open(log_path, "wb")
    proc = subprocess.Popen(pinned([str(exe), "--config", cfg_path, "--host", "127.0.0.1",
                                    "--port", str(port), "--num_workers", str(workers)], cpus),
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    target = Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions",
                    {"authorization": f"Bearer {master}"}, proc, workers,
                    peer_status("litellm").version, [cfg_path, log_path])
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", 120, proc)
    except RuntimeError as exc:
        target.stop()
        raise RuntimeError(f"LiteLLM did not start: {exc}\n{_tail(log_path)}") from None
    return target


def start_portkey(port: int, upstream: str, cpus: str | None, workers: int = 1) -> Target:
    from .loadgen import pinned

    script, where = _portkey_script()
    if script is None:
        raise RuntimeError(f"Portkey's gateway is not installed (looked at {where})")
    fd, log_path = tempfile.mkstemp(prefix="portkey-", suffix=".log")
    os.close(fd)
    log = open(log_path, "wb")
    env = {**os.environ, "NODE_ENV": "production"}
    proc = subprocess.Popen(pinned(["node", str(script), f"--port={port}", "--headless"], cpus),
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    target = Target("portkey", f"http://127.0.0.1:{port}/v1/chat/completions",
                    {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream,
                     "authorization": "Bearer k"}, proc, 1, peer_status("portkey").version,
                    [log_path])
    if workers > 1:
        target.note = "runs one node process (no worker option)"
    try:
        wait_http(f"http://127.0.0.1:{port}/", 60, proc)
    except RuntimeError as exc:
        target.stop()
        raise RuntimeError(f"Portkey did not start: {exc}\n{_tail(log_path)}") from None
    return target


def _start_built_in(name: str, module: str, ready_path: str, port: int, upstream: str,
                    cpus: str | None, workers: int, **fields) -> Target:
    """A reference that is part of the suite (`python -m <module> --port --upstream`): one
    process, like a target's worker."""
    from .bench_gateway import ROOT
    from .loadgen import pinned

    proc = subprocess.Popen(pinned([sys.executable, "-m", module, "--port", str(port),
                                    "--upstream", upstream], cpus),
                            cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
    target = Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", {}, proc, 1,
                    peer_status(name).version, **fields)
    if workers > 1:
        target.note = "runs one process (it is a per-worker reference)"
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", 30, proc)
    except RuntimeError as exc:
        target.stop()
        raise RuntimeError(f"{name} ({module}) did not start: {exc}") from None
    return target


def start_bare(port: int, upstream: str, cpus: str | None, workers: int = 1) -> Target:
    """The bare aiohttp + uvloop passthrough (bench/passthrough.py): the reference the
    targets were set against, measured in the same run."""
    return _start_built_in("bare", "bench.passthrough", "/readyz", port, upstream, cpus, workers)


def start_relay(port: int, upstream: str, cpus: str | None, workers: int = 1) -> Target:
    """The byte relay (bench/relay.py): the floor of any process in the path. Its open loop
    runs at Faregate's rate, so that its added latency is the machine's share of Faregate's.
    It answers whatever the mock answers, so readiness is the mock's /v1/models through it."""
    return _start_built_in("relay", "bench.relay", "/v1/models", port, upstream, cpus, workers,
                           rate_of="faregate")


def start_peer(name: str, port: int, upstream: str, cpus: str | None, workers: int = 1) -> Target:
    return {"bare": start_bare, "relay": start_relay, "litellm": start_litellm,
            "portkey": start_portkey}[name](port, upstream, cpus, workers)


def probe(target: Target, body_plain: bytes, body_stream: bytes) -> str | None:
    """One plain and one streaming request. Returns why the target cannot be benchmarked at
    all (None when the plain request works); sets `target.stream_ok` and `target.note` when
    only streaming fails."""
    from .loadgen import DEFAULT_HEADERS

    headers = {**DEFAULT_HEADERS, **target.headers}
    req = urllib.request.Request(target.url, data=body_plain, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = orjson.loads(r.read())
            if not data.get("choices"):
                return f"plain request: no choices in the answer: {data!r:.200}"
    except urllib.error.HTTPError as e:
        return f"plain request: HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
    except OSError as e:
        return f"plain request: {e}"
    req = urllib.request.Request(target.url, data=body_stream, headers=headers, method="POST")
    why = None
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode(errors="replace")
            if "[DONE]" not in text:
                why = f"no [DONE] in the stream: {text[:200]!r}"
    except urllib.error.HTTPError as e:
        why = f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
    except OSError as e:
        why = str(e)
    if why:
        target.stream_ok = False
        log = next((p for p in target.cleanup if p.endswith(".log")), None)
        detail = ""
        if log:
            lines = [ln for ln in _tail(log, 4000).splitlines() if "Error" in ln or "error" in ln]
            last = lines[-1].rsplit("...", 1)[-1].strip() if lines else ""   # after a spinner
            detail = f" (its log: {last[:200]})" if last else ""
        target.note = f"streaming fails: {why.strip()}{detail}"
    return None


# ---- installing them ------------------------------------------------------------------------

INSTALL_LITELLM = [
    [sys.executable, "-m", "venv", str(CACHE_DIR / "litellm-venv")],
    [str(CACHE_DIR / "litellm-venv" / "bin" / "pip"), "install", "litellm[proxy]"],
]
# On Node 20 Portkey 1.15.2 (and 1.9.8) fails every streamed request with "TypeError: immutable"
# (Portkey-AI/gateway#1389, #1550); pinning @hono/node-server to 1.14.2 as #1389 suggests did not
# help here. The suite then measures Portkey on the plain scenarios only; see bench/README.md.
INSTALL_PORTKEY = [
    ["npm", "install", "--prefix", str(CACHE_DIR / "portkey"), "@portkey-ai/gateway"],
]


def install(names: list[str]) -> int:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    worst = 0
    for name in names:
        if name in BUILT_IN:
            continue  # part of the suite
        cmds = INSTALL_LITELLM if name == "litellm" else INSTALL_PORTKEY
        for cmd in cmds:
            print("$", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                print(f"{name}: install failed with exit code {rc}", file=sys.stderr)
                worst = rc
                break
    return worst


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help="install the peers under " + str(CACHE_DIR))
    ap.add_argument("names", nargs="*", help=", ".join(PEERS) + " (default: all)")
    args = ap.parse_args(argv)
    names = args.names or list(PEERS)
    for name in names:
        if name not in PEERS:
            ap.error(f"unknown peer {name!r} (choose from {', '.join(PEERS)})")
    if args.install:
        rc = install(names)
        if rc:
            return rc
    for name in names:
        st = peer_status(name)
        state = f"found {st.version}" if st.found else f"missing: {st.reason}"
        print(f"{name:<8} {state:<28} {st.where}")
    return 0
