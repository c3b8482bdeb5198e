"""python -m bench (also `faregate bench`): the bench suite and the other benchmarks.

    python -m bench [SUITE OPTIONS]      the suite (python -m bench --help); --smoke for CI
    python -m bench profile [...]        py-spy of the gateway worker under load
    python -m bench peers [--install]    which peer gateways are installed
    python -m bench list                 every benchmark
    python -m bench NAME [ARGS]          another benchmark: fast, cache, accounting, routing,
                                         gateway, mocks (runs bench/<module>.py)
"""
from __future__ import annotations

import importlib.util
import runpy
import sys

# name -> (module, what it measures)
OTHERS = {
    "fast": ("bench.bench_fast", "the compiled hot path vs its pure-Python twin (micro)"),
    "cache": ("bench.bench_cache", "the response cache"),
    "accounting": ("bench.bench_accounting", "cost accounting and the ledger"),
    "routing": ("bench.sim_routing", "routing simulation"),
    "gateway": ("bench.bench_gateway", "gateway vs direct, non-stream and stream (a short suite run)"),
    "mocks": ("bench.mocks", "run a mock provider"),
}


def _list() -> int:
    print("python -m bench [options]      the suite: scenarios x gateways, report in bench/reports/")
    print("python -m bench profile        py-spy flame graph and top frames of the gateway under load")
    print("python -m bench peers          peer gateways (LiteLLM, Portkey): installed or not")
    for name, (mod, what) in OTHERS.items():
        there = importlib.util.find_spec(mod) is not None
        print(f"python -m bench {name:<13} {what}{'' if there else '  (not in this checkout)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(__doc__)
        from .suite import parser
        parser().print_help()
        return 0
    cmd = argv[0] if argv and not argv[0].startswith("-") else "run"
    rest = argv[1:] if argv and argv[0] == cmd else argv
    if cmd == "run":
        from .suite import main as suite_main
        return suite_main(rest)
    if cmd == "profile":
        from .pyspy import main as profile_main
        return profile_main(rest)
    if cmd == "peers":
        from .peers import main as peers_main
        return peers_main(rest)
    if cmd == "list":
        return _list()
    if cmd in OTHERS:
        mod = OTHERS[cmd][0]
        if importlib.util.find_spec(mod) is None:
            print(f"python -m bench {cmd}: {mod} is not in this checkout", file=sys.stderr)
            return 2
        sys.argv = [f"python -m bench {cmd}", *rest]
        try:
            runpy.run_module(mod, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0
    print(f"python -m bench: unknown command {cmd!r}; try `python -m bench list`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
