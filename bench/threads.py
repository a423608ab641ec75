"""Throughput from several threads: one plugin (or one function) driven by N threads at once.

    python -m bench.threads                                       # wasmtime@process, v8@process, wasmer
    python -m bench.threads --backends wasmtime@process --threads 1,2,4,8 --seconds 3
    python -m bench.threads --workloads call                      # plain Func calls only

For each backend and workload, N threads run the same operation in a loop for ``--seconds``
(after a warm-up round) and the total rate over all threads is printed, with its ratio to the
one-thread rate measured in the same run and the CPU time spent per unit by this process and
its worker together (what spinning waiters cost shows there). Thread counts are run in alternating rounds
(``--rounds``, the best round counts) so that a burst of load on a shared machine hits every
count alike.

- ``request_c``: the ``pwvm bench`` workload of that name (a full Proxy-Wasm request cycle
  through the minimal C plugin; on a worker engine the Proxy-Wasm host runs in the worker, so a
  request is a few crossings), every thread driving streams of the *same* ``Plugin``;
- ``call``: ``pwvm bench``'s ``call`` workload, 100 calls of a 2-argument export per unit, each
  thread calling a ``Func`` of its own instance and store (a store is used by one thread at a
  time), all on one engine (one worker).

Numbers are reported, never asserted: the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

DEFAULT_BACKENDS = ("wasmtime@process", "v8@process", "wasmer")
DEFAULT_WORKLOADS = ("request_c", "call")


#: workloads whose one operation all threads share (a Plugin: each thread gets its VM); the
#: others get an operation per thread (a store is used by one thread at a time)
SHARED = ("request_c",)


def prepare(engine: Any, workload: str) -> Any:
    """The ``pwvm bench`` operation ``workload`` on ``engine`` (probed, warmed)."""
    from proxywasm_vm._workloads import WORKLOADS

    op = WORKLOADS[workload].setup(engine)
    if op.probe is not None:
        why = op.probe()
        if why:
            raise SystemExit(f"{workload}: the plugin {why}")
    for _ in range(200):
        op.run()
    return op


def _cpu(pid: int | None) -> float:
    """CPU seconds used so far by this process and by ``pid`` (the worker) together."""
    t = time.process_time()
    if pid is not None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return t


def rate(ops: list[Any], threads: int, seconds: float, pid: int | None = None) -> tuple[float, float]:
    """Units per second of ``ops[i]`` run by thread ``i`` of ``threads`` at once for ``seconds``,
    and the CPU time (this process and the worker ``pid``) per unit, in seconds."""
    counts = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def loop(i: int) -> None:
        run = ops[i].run
        n = 0
        try:
            start.wait()
            while not stop.is_set():
                for _ in range(10):
                    run()
                n += 10
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        counts[i] = n

    ts = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0, c0 = time.perf_counter(), _cpu(pid)
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    elapsed, cpu = time.perf_counter() - t0, _cpu(pid) - c0
    if errors:
        raise errors[0]
    units = max(1, sum(counts) * ops[0].units)
    return units / elapsed, cpu / units


def measure(backend: str, workload: str, counts: list[int], seconds: float, rounds: int,
            options: tuple[tuple[str, Any], ...] = ()) -> dict[int, tuple[float, float]]:
    """The best total rate per thread count of ``workload`` on one engine of ``backend`` (and the
    CPU time per unit in that round)."""
    from proxywasm_vm import Engine

    engine = Engine(backend, options=options) if options else Engine(backend)
    if workload in SHARED:
        ops = [prepare(engine, workload)] * max(counts)
    else:
        ops = [prepare(engine, workload) for _ in range(max(counts))]
    pid = getattr(engine, "worker_pid", None)
    best = dict.fromkeys(counts, (0.0, 0.0))
    for _ in range(rounds):
        for n in counts:
            best[n] = max(best[n], rate(ops, n, seconds, pid))
    return best


def _number(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS))
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS))
    ap.add_argument("--threads", default="1,2,4,8", help="thread counts (comma-separated)")
    ap.add_argument("--seconds", type=float, default=2.0, help="per thread count and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="an engine option (worker_lanes=8, worker_spin=0 ...), repeatable")
    a = ap.parse_args(argv)
    options = tuple((k, _number(v)) for k, v in (o.split("=", 1) for o in a.option))
    counts = [int(x) for x in a.threads.split(",")]
    if 1 not in counts:
        counts.insert(0, 1)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    for backend in a.backends.split(","):
        for workload in a.workloads.split(","):
            try:
                best = measure(backend, workload, counts, a.seconds, a.rounds, options)
            except Exception as e:  # noqa: BLE001 - one line per failure, go on with the next
                print(f"{backend:18} {workload:10} failed: {type(e).__name__}: {e}")
                continue
            one = best[1][0]
            row = "  ".join(f"{n}t {best[n][0]:>9,.0f}/s ({best[n][0] / one:4.2f}x, cpu {best[n][1] * 1e6:5.1f} µs)"
                            for n in counts)
            print(f"{backend:18} {workload:10} {row}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
