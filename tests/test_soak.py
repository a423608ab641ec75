"""The soak test's short form (the long one is ``python -m bench.soak``): many request cycles
on every backend leave resident memory where it was, in this process and in the worker."""

from __future__ import annotations

import pytest

from proxywasm_vm._workloads import soak

#: Cycles in the CI form: a leak of 150 bytes per request passes the slack.
CYCLES = 20_000
#: Allowed growth: allocator slack and caches that fill once (interned keys, compiled adapters).
SLACK = 3 << 20


@pytest.mark.parametrize("plugin", ["c"])
def test_request_cycles_do_not_grow_memory(engine, plugin):
    r = soak(engine, CYCLES, plugin=plugin, warmup=2000)
    print(f"\nsoak {engine.name}: {r.requests} cycles, this process {r.parent_growth / 2**20:+.2f} MB, "
          f"worker {'-' if r.worker_growth is None else f'{r.worker_growth / 2**20:+.2f} MB'}")
    assert r.requests == CYCLES
    assert r.parent_growth <= SLACK, f"this process grew {r.parent_growth / 2**20:.1f} MB over {CYCLES} cycles"
    if r.worker_growth is not None:
        assert r.worker_growth <= SLACK, f"the worker grew {r.worker_growth / 2**20:.1f} MB over {CYCLES} cycles"


def test_soak_command_with_threads_and_updates():
    """The README's form: ``python -m bench.soak`` with threads running streams while the plugin is
    updated; ``--check`` exits 0 only when every backend stayed within the growth goal."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "bench.soak", "--requests", "4000", "--threads", "2",
                          "--updates", "10", "--backends", "wasmtime,wasmtime@process", "--check"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"wasmtime", "wasmtime@process"} and rows["wasmtime"][1] == "4000"
