"""The `faregate` command (also `python -m proxy`).

serve: aiohttp on uvloop. With --workers N the master forks N worker processes that bind
the same port with SO_REUSEPORT, so the kernel spreads connections over every core; SIGTERM
to the master is passed to the workers. Each worker stops accepting, lets in-flight requests
and streams finish within the grace period, then exits; the master exits 0 when all did.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .config import Config, ConfigError, config_from_env, load_config

__all__ = ["main"]

log = logging.getLogger("faregate")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="faregate", description="A cost-optimizing, OpenAI-compatible LLM gateway.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", "-c", help="YAML config file (default: providers from API keys in the environment)")
    s.add_argument("--host", help="address to bind (default: 127.0.0.1 without client keys, else 0.0.0.0)")
    s.add_argument("--port", "-p", type=int, help="port (default 8080)")
    s.add_argument("--workers", "-w", type=int, help="worker processes sharing the port (default 1)")
    s.add_argument("--demo", action="store_true", help="serve built-in simulated providers (no keys needed)")
    s.add_argument("--no-access-log", action="store_true", help="do not print one JSON line per request")
    s.add_argument("--log-level", default=os.environ.get("FAREGATE_LOG_LEVEL", "INFO"))
    sub.add_parser("bench", add_help=False,
                   help="the bench suite: load tests on the mock providers, side by side with "
                        "LiteLLM and Portkey (faregate bench --help; same as python -m bench)")
    sp = sub.add_parser("spend", help="print the spend ledger grouped, as a table")
    sp.add_argument("--db", help="ledger file (default: ledger.path of --config, else ./faregate-ledger.sqlite3)")
    sp.add_argument("--config", "-c", help="read the ledger path from this config file")
    sp.add_argument("--group-by", "-g", default="model",
                    choices=["model", "provider", "key", "user", "tag", "route", "day", "hour"])
    sp.add_argument("--since", help="start: ISO date or date-time, epoch seconds, or a duration "
                    "back from now (7d, 24h); default: the beginning")
    sp.add_argument("--until", help="end (exclusive; a bare date includes that day); default: now")
    sp.add_argument("--limit", type=int, default=1000, help="most groups shown (default 1000)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.add_argument("--log-level", default="WARNING")
    return ap


def _load(args: argparse.Namespace) -> Config:
    if args.config:
        cfg = load_config(args.config)
    else:
        cfg = config_from_env()
    if args.demo:
        cfg.demo = True
    if args.port is not None:
        cfg.server.port = args.port
    if args.workers is not None:
        cfg.server.workers = args.workers
    if args.host is not None:
        cfg.server.host = args.host
    if args.no_access_log:
        cfg.server.access_log = False
    if not cfg.models and not cfg.demo:
        raise ConfigError("no models are configured: give --config FILE, set a provider key such as "
                          "OPENAI_API_KEY or ANTHROPIC_API_KEY, or try `faregate serve --demo`")
    return cfg


def _bind_host(cfg: Config) -> str:
    if cfg.server.host:
        if not cfg.keys and cfg.server.host not in ("127.0.0.1", "localhost", "::1") \
                and not cfg.server.allow_public_without_keys:
            log.warning("no client keys are configured and --host %s exposes the gateway; anyone who "
                        "can reach it can spend your provider credit", cfg.server.host)
        return cfg.server.host
    if not cfg.keys:
        log.warning("no client keys are configured (keys: in the config): the gateway is open, so it "
                    "listens on 127.0.0.1 only; set server.host to expose it")
        return "127.0.0.1"
    return "0.0.0.0"


async def _serve_worker(cfg: Config, host: str) -> None:
    from aiohttp import web

    from .app import create_app

    mocks = []
    if cfg.demo:
        from .demo import start_demo_providers
        cfg, mocks = await start_demo_providers(cfg)
    app = create_app(cfg)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True,
                           shutdown_timeout=cfg.server.shutdown_grace_s)
    await runner.setup()
    site = web.TCPSite(runner, host, cfg.server.port, reuse_port=True, backlog=4096)
    await site.start()
    log.info("faregate worker %d listening on http://%s:%d (%d models%s)", os.getpid(), host,
             cfg.server.port, len({m.name for m in cfg.models}), ", demo providers" if cfg.demo else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("worker %d draining (grace %.0fs)", os.getpid(), cfg.server.shutdown_grace_s)
    await runner.cleanup()
    for mock in mocks:
        await mock.stop()


def _run_worker(cfg: Config, host: str) -> int:
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(_serve_worker(cfg, host))
    else:
        asyncio.run(_serve_worker(cfg, host))
    return 0


def _supervise(cfg: Config, host: str) -> int:
    """Forks the workers and waits; restarts one that dies unless we are stopping."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = _run_worker(cfg, host)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        children[pid] = slot

    def forward(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    from .metrics import worker_exited
    for slot in range(cfg.server.workers):
        spawn(slot)
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        worker_exited(pid)
        if stopping or slot is None:
            worst = worst or (code if code > 0 else 0)
            continue
        log.error("worker %d exited with %d; starting a new one", pid, code)
        spawn(slot)
    return worst


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # everything after `bench` belongs to the bench suite's own parser (python -m bench)
        from bench.__main__ import main as bench_main
        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "serve":
        try:
            cfg = _load(args)
        except ConfigError as exc:
            print(f"faregate: config error: {exc}", file=sys.stderr)
            return 2
        host = _bind_host(cfg)
        if cfg.ledger.enabled:
            from .ledger import prepare_database
            try:
                prepare_database(cfg.ledger.path)
            except Exception as exc:  # OSError, sqlite3.Error: say which file and why
                print(f"faregate: cannot open the ledger {cfg.ledger.path}: {exc} "
                      f"(ledger.path in the config, or ledger.enabled: false)", file=sys.stderr)
                return 2
        from .metrics import MULTIPROC_ENV, prepare_multiprocess_dir, remove_multiprocess_dir
        metrics_dir = None
        if cfg.metrics.enabled and (cfg.server.workers > 1 or os.environ.get(MULTIPROC_ENV)):
            metrics_dir = prepare_multiprocess_dir()  # before prometheus-client is imported
        try:
            if cfg.server.workers <= 1:
                return _run_worker(cfg, host)
            return _supervise(cfg, host)
        finally:
            remove_multiprocess_dir(metrics_dir)
    if args.command == "spend":
        from .spend import spend_command
        return spend_command(args.db, args.config, args.group_by, args.since, args.until,
                             args.limit, args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
