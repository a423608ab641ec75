"""Where a request's time goes: a sampling profile of ``pwvm bench``'s request workloads.

    python -m bench.profile_request                                  # request_c, request_gcore, request_go on wasmtime
    python -m bench.profile_request --workloads request_c --backends wasmtime,v8 --seconds 5 --top 25
    python -m bench.profile_request --native                         # also the runtimes' C/C++/Rust frames
    python -m bench.profile_request --profiler cprofile              # no py-spy (or no ptrace): cProfile

Each (workload, backend) pair runs in a child process that prepares the workload exactly as
``pwvm bench`` does (``proxywasm_vm._workloads.WORKLOADS[...].setup``: the same plugin, host and
request driver), times it unprofiled, then runs request cycles in a loop for ``--seconds`` under
py-spy (``py-spy record`` starts the child itself, so it needs no extra ptrace permission; the
``profile`` extra installs it). Only samples taken inside that loop count. The table shows, per
function, its own time (samples where it is the innermost frame) and its cumulative time
(samples where it is anywhere on the stack), as a share of the loop and in µs per request (the
share times the request time measured while profiling, which sampling slows a little: the
unprofiled time is printed too).

With ``--native`` py-spy also unwinds native frames (the wasm runtime, the C shims, CPython's
own C functions); without it, time spent in native code is charged to the Python line that
called it. ``--profiler cprofile`` (the fallback when py-spy is missing or cannot run) counts
every Python call exactly but adds its own cost per call, which inflates small functions.
Backends that run the runtime in a worker process (``@process``, wasmer) are profiled from this
side only: the worker's time shows as the wait on the channel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

DEFAULT_WORKLOADS = ("request_c", "request_gcore", "request_go")
LOOP = "_profiled_loop"  # the child's timed loop: only samples under this frame count


# ---- the child: one workload on one backend -----------------------------------------------------

def _prepare(workload: str, backend: str) -> Any:
    from proxywasm_vm import Engine
    from proxywasm_vm._workloads import WORKLOADS

    if WORKLOADS[workload].group != "request":
        raise SystemExit(f"{workload} is not a request workload")
    op = WORKLOADS[workload].setup(Engine(backend))
    if op.probe is not None:
        why = op.probe()
        if why:
            raise SystemExit(f"{workload} on {backend}: the plugin {why}; nothing to profile")
    return op


def _profiled_loop(run: Any, seconds: float) -> int:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            run()
        n += 50
    return n


def _child(workload: str, backend: str, seconds: float, out: str, use_cprofile: bool) -> None:
    from proxywasm_vm._bench import calibrate

    op = _prepare(workload, backend)
    for _ in range(200):  # warm up: caches, the Go runtime's first allocations, the JITs
        op.run()
    number = calibrate(op.run, 0.2)
    t0 = time.perf_counter()
    for _ in range(number):
        op.run()
    plain = (time.perf_counter() - t0) / number
    profiler = None
    if use_cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    n = _profiled_loop(op.run, seconds)
    elapsed = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(out + ".pstats")
    with open(out, "w") as f:
        json.dump({"requests": n, "seconds": elapsed, "unprofiled": plain}, f)


# ---- the parent: run, parse, print --------------------------------------------------------------

@dataclass
class Profile:
    workload: str
    backend: str
    profiler: str
    requests: int
    seconds: float
    unprofiled: float
    samples: int
    own: Counter[str]
    cumulative: Counter[str]

    @property
    def per_request(self) -> float:
        return self.seconds / self.requests if self.requests else float("nan")


_FRAME = re.compile(r"^(?P<name>.*?) \((?P<where>[^()]*)\)$")


_GENERATED = re.compile(r"<pwvm-generated (?P<what>[^()]*?) (?:\([^()]*\) )?for FuncType(?P<sig>.*)>:\d+\)$")


def short_frame(frame: str) -> str:
    """``"fn (/long/path/proxywasm_vm/_x.py:12)"`` -> ``"fn (proxywasm_vm/_x.py:12)"``; a generated
    trampoline ``"__call__ (<pwvm-generated call trampoline (...) for FuncType((i32) -> ())>:1)"``
    -> ``"__call__ [call trampoline (i32) -> ()]"``."""
    g = _GENERATED.search(frame)
    if g:
        return f"{frame.partition(' (')[0]} [{g['what']} {g['sig'][1:-1]}]"
    m = _FRAME.match(frame)
    if not m:
        return frame
    where = m["where"]
    for marker in ("proxywasm_vm/", "site-packages/", "bench/", "lib/python"):
        i = where.find(marker)
        if i >= 0:
            where = where[i:]
            break
    where = re.sub(r"^0x[0-9a-f]+ ", "", where)
    name = m["name"]
    if name.startswith("0x"):
        name = "?"  # a native frame without a symbol: the library is what tells
    return f"{name} ({where})"


def parse_raw(text: str) -> tuple[int, Counter[str], Counter[str]]:
    """py-spy's raw (collapsed) stacks -> (samples in the loop, own, cumulative)."""
    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        at = next((i for i, f in enumerate(frames) if f.startswith(LOOP + " ")), -1)
        if at < 0:
            continue
        inner = [short_frame(f) for f in frames[at + 1:]]
        n = int(count)
        total += n
        if not inner:
            continue  # the loop's own lines (perf_counter, range)
        own[inner[-1]] += n
        for f in set(inner):
            cum[f] += n
    return total, own, cum


def parse_pstats(path: str) -> tuple[int, Counter[str], Counter[str]]:
    """cProfile's stats -> (total in µs-ticks, own, cumulative), in integer microseconds."""
    import pstats

    st = pstats.Stats(path)
    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    total = 0
    for (file, line, name), (_cc, _nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        key = short_frame(f"{name} ({file}:{line})")
        own[key] += int(tt * 1e6)
        cum[key] += int(ct * 1e6)
        if name == LOOP:
            total = int(ct * 1e6)
    cum.pop(next((k for k in cum if k.startswith(LOOP + " ")), ""), None)
    own.pop(next((k for k in own if k.startswith(LOOP + " ")), ""), None)
    return total, own, cum


def find_py_spy() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.path.exists(here) else shutil.which("py-spy")


def profile(workload: str, backend: str, seconds: float, *, profiler: str = "py-spy", native: bool = False,
            rate: int = 250) -> Profile:
    """Profile ``workload`` on ``backend`` in a child process (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pwvm-profile-") as tmp:
        out, raw = os.path.join(tmp, "result.json"), os.path.join(tmp, "stacks.txt")
        child = [sys.executable, "-m", "bench.profile_request", "--child", workload, backend, str(seconds), out]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        if profiler == "py-spy":
            spy = find_py_spy()
            if spy is None:
                raise RuntimeError("py-spy is not installed (pip install 'proxywasm-vm[profile]')")
            cmd = [spy, "record", "--format", "raw", "--function", "--rate", str(rate), "--output", raw]
            cmd += ["--native"] if native else []
            done = subprocess.run(cmd + ["--", *child], capture_output=True, text=True, env=env, cwd=root,
                                  timeout=seconds + 300)
        else:
            done = subprocess.run(child + ["--cprofile"], capture_output=True, text=True, env=env, cwd=root,
                                  timeout=seconds + 300)
        if done.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"{profiler} on {workload}/{backend} failed (exit {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        with open(out) as f:
            info = json.load(f)
        if profiler == "py-spy":
            with open(raw) as f:
                total, own, cum = parse_raw(f.read())
            if total == 0:
                raise RuntimeError(f"py-spy took no sample inside the loop:\n{done.stderr[-2000:]}")
        else:
            total, own, cum = parse_pstats(out + ".pstats")
    return Profile(workload, backend, profiler + (" --native" if native else ""), info["requests"],
                   info["seconds"], info["unprofiled"], total, own, cum)


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def report(p: Profile, top: int) -> str:
    """Two tables (own time, cumulative time) of the ``top`` functions, plain text."""
    lines = [f"== {p.workload} on {p.backend} ({p.profiler}): {p.requests} requests in {p.seconds:.2f} s, "
             f"{fmt_us(p.per_request)} µs/request while profiled, {fmt_us(p.unprofiled)} µs unprofiled; "
             f"{p.samples} {'samples' if p.profiler.startswith('py-spy') else 'µs profiled'}"]
    for title, counter in (("own time", p.own), ("cumulative time", p.cumulative)):
        lines.append(f"-- top {top} by {title}")
        lines.append(f"{'share':>7} {'µs/req':>7}  function (where)")
        for frame, n in counter.most_common(top):
            share = n / p.samples if p.samples else 0.0
            lines.append(f"{share * 100:6.1f}% {fmt_us(share * p.per_request):>7}  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_request", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help="request workloads of pwvm bench (default: %(default)s)")
    ap.add_argument("--backends", default="wasmtime", help="backend ids (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=4.0, help="profiled seconds per pair (default: %(default)s)")
    ap.add_argument("--top", type=int, default=20, help="rows per table (default: %(default)s)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default: %(default)s)")
    ap.add_argument("--native", action="store_true", help="py-spy: unwind native frames too")
    ap.add_argument("--profiler", choices=("py-spy", "cprofile"), default="py-spy",
                    help="py-spy (sampling; falls back to cprofile when it cannot run) or cprofile")
    ap.add_argument("--json", metavar="FILE", help="also write the profiles as JSON")
    ap.add_argument("--child", nargs=4, metavar=("WORKLOAD", "BACKEND", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--cprofile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        w, b, s, out = args.child
        _child(w, b, float(s), out, args.cprofile)
        return 0
    profiles = []
    for b in args.backends.split(","):
        for w in args.workloads.split(","):
            try:
                p = profile(w, b, args.seconds, profiler=args.profiler, native=args.native, rate=args.rate)
            except RuntimeError as e:
                if args.profiler != "py-spy":
                    raise
                print(f"py-spy could not profile {w} on {b} ({str(e).splitlines()[0]}); using cProfile",
                      file=sys.stderr)
                p = profile(w, b, args.seconds, profiler="cprofile")
            profiles.append(p)
            print(report(p, args.top), flush=True)
            print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"workload": p.workload, "backend": p.backend, "profiler": p.profiler,
                        "requests": p.requests, "seconds": p.seconds, "unprofiled_seconds": p.unprofiled,
                        "samples": p.samples, "own": p.own.most_common(), "cumulative": p.cumulative.most_common()}
                       for p in profiles], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
