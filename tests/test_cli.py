"""The pwvm command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def pwvm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxywasm_vm", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_backends_json_lists_every_registered_backend():
    from proxywasm_vm import backend_names

    out = pwvm("backends", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(rows) == set(backend_names())
    wt = rows["wasmtime"]
    assert wt["available"] and wt["version"] and wt["capabilities"]["deadline"]
    for r in rows.values():
        if not r["available"]:
            assert r["how_to_enable"], f"{r['name']} is unavailable without saying how to enable it"


def test_bench_quick_writes_samples(tmp_path):
    path = tmp_path / "out.json"
    out = pwvm("bench", "--quick", "--backends", "wasmtime", "--workloads", "call,memory_read_1k",
               "--json", str(path))
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    cells = {(r["workload"], r["runner"]): r for r in data["results"]}
    for w in ("call", "memory_read_1k"):
        for runner in ("wasmtime", "wasmtime-py"):
            samples = cells[(w, runner)]["seconds_per_unit"]
            assert len(samples) == 3 and all(0 < s < 1e-3 for s in samples)
    assert data["header"]["runtimes"]["wasmtime"]
    assert "call" in out.stdout and "wasmtime-py" in out.stdout


@pytest.mark.parametrize("args, needle", [
    (["bench", "--backends", "nosuch"], "unknown backend 'nosuch'"),
    (["bench", "--workloads", "nosuch"], "unknown workload 'nosuch'"),
    (["bench", "--repeats", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, needle):
    out = pwvm(*args)
    assert out.returncode == 2
    assert needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
