"""The ``pwvm`` command: ``pwvm backends``, ``pwvm bench``, ``pwvm setup``."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NoReturn, Sequence

from ._backend import BackendInfo, available_backends, backend_names
from ._engine import Engine
from ._errors import BackendUnavailable

__all__ = ["main"]

BASELINE = "wasmtime-py"


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


# ---- pwvm backends -------------------------------------------------------------

def cmd_backends(args: argparse.Namespace) -> int:
    from rich.table import Table

    rows = available_backends()
    if args.json:
        print(json.dumps([_info_dict(r) for r in rows], indent=2))
        return 0
    table = Table(title="proxywasm-vm backends")
    for col in ("backend", "status", "runtime version", "capabilities"):
        table.add_column(col)
    for r in rows:
        if r.available and r.capabilities is not None:
            caps = ", ".join(k for k, v in asdict(r.capabilities).items() if v)
            table.add_row(r.name, "[green]available[/]", r.version, caps)
        else:
            table.add_row(r.name, "[yellow]unavailable[/]", "-", f"{r.reason}; enable: {r.how_to_enable}")
    _console().print(table)
    return 0


def _info_dict(r: BackendInfo) -> dict[str, Any]:
    d = asdict(r)
    return d


# ---- pwvm setup ------------------------------------------------------------------

def cmd_setup(args: argparse.Namespace) -> int:
    """Load (and so build, once) every available backend's native shim."""
    ok = True
    for name in args.backends or backend_names():
        try:
            Engine(name)
            print(f"{name}: ready")
        except BackendUnavailable as e:
            print(f"{name}: {e}")
            ok = ok and name not in (args.require or [])
    return 0 if ok else 1


# ---- pwvm bench -------------------------------------------------------------------

@dataclass
class Series:
    """The samples of one (workload, runner) cell: seconds per unit operation."""

    workload: str
    runner: str
    samples: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


def _calibrate(run: Callable[[], Any], target: float) -> int:
    """How many invocations take about ``target`` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= 1 << 20:
            return max(1, int(n * target / max(dt, 1e-9)))
        n *= 4


def _time(run: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        run()
    return time.perf_counter() - t0


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from ._workloads import BASELINES, WORKLOADS

    selected = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown:
        raise UsageError(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    names = args.backends.split(",") if args.backends else backend_names()
    for n in names:
        if n not in backend_names():
            raise UsageError(f"unknown backend {n!r}; choose from {', '.join(backend_names())}")

    repeats = 3 if args.quick else args.repeats
    target = 0.01 if args.quick else 0.05
    engines: dict[str, Engine] = {}
    missing: dict[str, str] = {}
    for n in names:
        try:
            engines[n] = Engine(n)
        except BackendUnavailable as e:
            missing[n] = str(e)
    runners = list(engines) + ([BASELINE] if not args.no_baseline else [])

    # Prepare every cell first, then interleave the repeats so drift hits all alike.
    cells: dict[tuple[str, str], tuple[Any, int, Series]] = {}
    for w in selected:
        for r in runners:
            s = Series(w, r)
            try:
                if r == BASELINE:
                    if w not in BASELINES:
                        continue
                    op = BASELINES[w]()
                else:
                    op = WORKLOADS[w].setup(engines[r])
                op.run()  # warm-up
                number = _calibrate(op.run, target)
                cells[(w, r)] = (op, number, s)
            except Exception as e:  # a workload a backend cannot run is reported, not fatal
                s.error = f"{type(e).__name__}: {e}"
                cells[(w, r)] = (None, 0, s)
    with Progress(transient=True, disable=args.json_only) as progress:
        task = progress.add_task("benchmarking", total=repeats * len(cells))
        for rep in range(repeats):
            order = list(cells.items())
            if rep % 2:
                order.reverse()
            for (w, r), (op, number, s) in order:
                if op is not None:
                    s.samples.append(_time(op.run, number) / (number * op.units))
                progress.advance(task)

    results = [c[2] for c in cells.values()]
    header = _header(engines)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "missing": missing,
                       "results": [{"workload": s.workload, "runner": s.runner, "seconds_per_unit": s.samples,
                                    "unit": WORKLOADS[s.workload].unit, "error": s.error} for s in results]},
                      f, indent=2)
    if not args.json_only:
        _print_table(header, selected, runners, results, missing)
    return 0


def _header(engines: dict[str, Engine]) -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()}, {_cpu_model()}, {_ncpu()} cores",
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtimes": {n: e.backend.version() for n, e in engines.items()},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _ncpu() -> int:
    import os

    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def _fmt(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.0f} ns"


def _print_table(header: dict[str, Any], workloads: Sequence[str], runners: Sequence[str], results: list[Series],
                 missing: dict[str, str]) -> None:
    from rich.table import Table

    from ._workloads import WORKLOADS

    console = _console()
    runtimes = ", ".join(f"{k} {v}" for k, v in header["runtimes"].items())
    console.print(f"[bold]pwvm bench[/] — {header['machine']}; Python {header['python']}; {runtimes}")
    table = Table(show_lines=False)
    table.add_column("workload")
    table.add_column("runner")
    table.add_column("median / unit", justify="right")
    table.add_column("min .. max", justify="right")
    table.add_column("vs fastest", justify="right")
    by = {(s.workload, s.runner): s for s in results}
    for w in workloads:
        cells = [by[(w, r)] for r in runners if (w, r) in by]
        best = min((s.median for s in cells if s.samples), default=float("nan"))
        for i, s in enumerate(cells):
            label = f"{w} [dim]({WORKLOADS[w].unit})[/]" if i == 0 else ""
            if s.error:
                table.add_row(label, s.runner, "[red]error[/]", s.error[:60], "")
                continue
            ratio = s.median / best
            table.add_row(label, s.runner, _fmt(s.median), f"{_fmt(min(s.samples))} .. {_fmt(max(s.samples))}",
                          "[green]fastest[/]" if ratio < 1.0005 else f"{ratio:.1f}×")
        for n in missing:
            table.add_row("", n, "[yellow]unavailable[/]", "", "")
        table.add_section()
    console.print(table)
    for n, why in missing.items():
        console.print(f"[yellow]{n}[/]: {why}")


# ---- entry point ------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pwvm", description="Run and compare WebAssembly runtimes and Proxy-Wasm plugins.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("backends", help="list the backends, their versions and capabilities")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(fn=cmd_backends)

    s = sub.add_parser("setup", help="build the native shims of the available backends")
    s.add_argument("backends", nargs="*", help="backends to prepare (default: all)")
    s.add_argument("--require", action="append", help="fail if this backend is unavailable")
    s.set_defaults(fn=cmd_setup)

    be = sub.add_parser("bench", help="compare the backends side by side")
    be.add_argument("--backends", help="comma-separated backends (default: all registered)")
    be.add_argument("--workloads", help="comma-separated workloads (default: all)")
    be.add_argument("--repeats", type=int, default=7, help="timed repeats per cell (default 7)")
    be.add_argument("--quick", action="store_true", help="few, short repeats: a smoke run")
    be.add_argument("--json", metavar="FILE", help="write every raw sample to FILE")
    be.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    be.add_argument("--no-baseline", action="store_true", help="leave out the wasmtime-py baseline")
    be.set_defaults(fn=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.fn(args))
    except UsageError as e:
        print(f"pwvm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
