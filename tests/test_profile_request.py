"""bench/profile_request.py: the per-request profile runs the bench's own request workloads and
prints readable own/cumulative tables. Nothing about the numbers is asserted (they are load)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.profile_request import LOOP, parse_raw, short_frame  # noqa: E402


def test_parse_raw_counts_only_samples_inside_the_loop():
    raw = "\n".join([
        f"<module> (x.py:1);main (x.py:2);{LOOP} (bench/profile_request.py:60);run (a/proxywasm_vm/_w.py:5);"
        "call_in (a/proxywasm_vm/_vm.py:9) 3",
        f"<module> (x.py:1);{LOOP} (bench/profile_request.py:60);run (a/proxywasm_vm/_w.py:5) 2",
        f"<module> (x.py:1);{LOOP} (bench/profile_request.py:60) 1",
        "<module> (x.py:1);setup (a/proxywasm_vm/_w.py:1) 50",  # before the loop: not counted
    ])
    total, own, cum = parse_raw(raw)
    assert total == 6
    assert own == {"call_in (proxywasm_vm/_vm.py:9)": 3, "run (proxywasm_vm/_w.py:5)": 2}
    assert cum == {"call_in (proxywasm_vm/_vm.py:9)": 3, "run (proxywasm_vm/_w.py:5)": 5}


def test_short_frame_names_generated_trampolines_by_signature():
    assert short_frame("__call__ (<pwvm-generated call trampoline (proxywasm_vm.backends.wasmtime._func) for "
                       "FuncType((i32) -> ())>:1)") == "__call__ [call trampoline (i32) -> ()]"
    assert short_frame("VM.call_in (/x/y/proxywasm_vm/_proxywasm/_vm.py:258)") == \
        "VM.call_in (proxywasm_vm/_proxywasm/_vm.py:258)"


@pytest.mark.parametrize("profiler", ["py-spy", "cprofile"])
def test_the_profile_of_request_c_shows_the_host_callbacks(tmp_path, profiler):
    out = tmp_path / "profile.json"
    done = subprocess.run([sys.executable, "-m", "bench.profile_request", "--workloads", "request_c",
                           "--seconds", "0.5", "--top", "8", "--profiler", profiler, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "== request_c on wasmtime" in text and "µs/request" in text
    assert "-- top 8 by own time" in text and "-- top 8 by cumulative time" in text
    (p,) = json.loads(out.read_text())
    assert p["workload"] == "request_c" and p["requests"] > 0 and p["samples"] > 0
    assert p["profiler"] in (profiler, "cprofile")  # py-spy falls back to cProfile where it cannot run
    cumulative = dict((k, v) for k, v in p["cumulative"])
    # the request driver of pwvm bench and the host's callback path are on the stacks
    assert any(k.startswith("request_cycle.<locals>.run") or k.startswith("run (proxywasm_vm/_workloads.py")
               for k in cumulative), list(cumulative)[:10]
    assert any("call_in" in k for k in cumulative), list(cumulative)[:10]
    assert len(p["own"]) >= 5
