"""Soak: resident memory over many Proxy-Wasm request cycles, per backend.

    python -m bench.soak                       # 100,000 cycles on every available backend
    python -m bench.soak --requests 20000 --backends wasmtime,v8@process
    python -m bench.soak --threads 4 --updates 50   # plugin.update() while 4 threads run streams

Reports the growth of this process's RSS and, for runtimes in a worker process, of the
worker's, after a warm-up (goal: <= 5 MB per 100,000 cycles). Exits 1 when a backend misses
the goal and ``--check`` is given. The CI gate runs a short form (tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import sys

from proxywasm_vm import BackendUnavailable, Engine, backend_names
from proxywasm_vm._workloads import PLUGINS, soak

GOAL = 5 << 20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--backends", default=",".join(backend_names()))
    p.add_argument("--plugin", default="c", choices=sorted(PLUGINS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=0)
    p.add_argument("--check", action="store_true", help=f"exit 1 when growth passes {GOAL >> 20} MB")
    args = p.parse_args(argv)
    missed = 0
    print(f"{'backend':<22}{'cycles':>9}{'this process':>16}{'worker':>14}{'seconds':>10}")
    for name in args.backends.split(","):
        try:
            engine = Engine(name)
        except BackendUnavailable as e:
            print(f"{name:<22} unavailable: {e.reason}")
            missed += 1
            continue
        r = soak(engine, args.requests, plugin=args.plugin, threads=args.threads, updates=args.updates)
        worst = max(r.parent_growth, r.worker_growth or 0)
        missed += worst > GOAL
        worker = "-" if r.worker_growth is None else f"{r.worker_growth / 2**20:+.2f} MB"
        print(f"{name:<22}{r.requests:>9}{r.parent_growth / 2**20:>+13.2f} MB{worker:>14}{r.seconds:>10.1f}")
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
