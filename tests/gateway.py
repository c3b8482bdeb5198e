"""Starting a real `faregate serve` process for end-to-end tests.

`Gateway` writes a config file, launches `python -m proxy serve` on a free loopback port,
waits for /readyz, and stops it with SIGTERM (or SIGKILL) on exit, keeping its stderr
(the access log and warnings) for assertions. Unless the config names one, the spend ledger
goes to `ledger.sqlite3` in the gateway's temporary directory (`gw.ledger_path`).
"""
from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Gateway", "free_port", "ROOT", "http_get", "http_post", "stream_lines", "HTTPResult"]


class HTTPResult:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        import orjson
        return orjson.loads(self.body)


def _request(method: str, url: str, body: bytes | None, headers: dict | None) -> HTTPResult:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return HTTPResult(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return HTTPResult(e.code, dict(e.headers), e.read())


def http_get(url: str, headers: dict | None = None) -> HTTPResult:
    return _request("GET", url, None, headers)


def http_post(url: str, body: bytes, headers: dict | None = None) -> HTTPResult:
    return _request("POST", url, body, {"content-type": "application/json", **(headers or {})})


@contextlib.contextmanager
def stream_lines(url: str, body: bytes, headers: dict | None = None):
    """POSTs and yields an iterator over the response's lines; leaving the block closes the
    connection at once (a client that walks away mid-stream)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    conn.request("POST", u.path, body=body, headers={"content-type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    try:
        yield iter(resp.readline, b"")
    finally:
        sock = conn.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, config: dict | None = None, *, args: list[str] | None = None,
                 env: dict[str, str] | None = None, port: int | None = None):
        self.config = config
        self.args = args or []
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.env.pop("OPENAI_API_KEY", None)
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="faregate-test-")
        self.stderr_path = Path(self._dir.name) / "stderr.log"
        self.config_path = Path(self._dir.name) / "faregate.yaml"

    @property
    def dir(self) -> Path:
        return Path(self._dir.name)

    @property
    def ledger_path(self) -> Path:
        return Path(((self.config or {}).get("ledger") or {}).get("path") or self.dir / "ledger.sqlite3")

    def start(self, timeout: float = 20.0) -> "Gateway":
        cmd = [sys.executable, "-m", "proxy", "serve", "--port", str(self.port), *self.args]
        if self.config is not None:
            config = dict(self.config)
            config["ledger"] = {"path": str(self.ledger_path), **(config.get("ledger") or {})}
            self.config_path.write_text(yaml.safe_dump(config))
            cmd += ["--config", str(self.config_path)]
        self._stderr = open(self.stderr_path, "wb")
        # Without a config the ledger's default path is relative: run in the temporary
        # directory so nothing lands in the checkout, with the checkout importable.
        cwd, env = ROOT, self.env
        if self.config is None:
            cwd = self.dir
            env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._stderr,
                                     stderr=self._stderr, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"gateway did not become ready in {timeout}s:\n{self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def access_log(self) -> list[dict]:
        import orjson
        out = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    pass
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, kill: bool = False, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if kill:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray workers of a failed test
        except (ProcessLookupError, PermissionError):
            pass
        self._stderr.close()
        return self.proc.returncode

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()
