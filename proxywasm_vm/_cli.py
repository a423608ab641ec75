"""The ``pwvm`` command: ``pwvm backends``, ``pwvm bench``, ``pwvm setup``; ``inspect``, ``run``, ``diff``
(in ``_plugincmds``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, NoReturn, Sequence

from ._backend import BackendInfo, available_backends, backend_names
from ._engine import Engine
from ._errors import BackendUnavailable

__all__ = ["main"]


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
    return asdict(r)


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

def cmd_bench(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from ._bench import all_workloads, plot, run_bench

    extra = {}
    if args.plugin:
        from ._workloads import user_plugin_workloads

        configuration = b""
        if args.config:
            try:
                with open(args.config, "rb") as f:
                    configuration = f.read()
            except OSError as e:
                raise UsageError(f"cannot read --config {args.config}: {e.strerror}") from None
        try:
            extra = user_plugin_workloads(args.plugin, args.root_id, configuration)
        except ValueError as e:
            raise UsageError(str(e)) from None
    known = list(extra) + [w for w in all_workloads() if w not in extra]
    default = list(extra) + ["call", "host_call", "instantiate", "rss_per_vm"] if extra else known
    selected = args.workloads.split(",") if args.workloads else default
    for w in selected:
        if w not in known:
            raise UsageError(f"unknown workload {w!r}; choose from {', '.join(known)}")
    runners = args.backends.split(",") if args.backends else backend_names()
    for r in runners:
        if r.split("@", 1)[0] not in backend_names():
            raise UsageError(f"unknown backend {r!r}; choose from {', '.join(backend_names())}")
    if args.isolation:
        runners = _select_isolation(runners, args.isolation.split(","), explicit=bool(args.backends))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install 'proxywasm-vm[plot]'") from None
    repeats = 3 if args.quick else args.repeats
    with Progress(transient=True) as progress:
        task = progress.add_task("benchmarking", total=None)
        result = run_bench(runners, selected, repeats=repeats, quick=args.quick, baseline=not args.no_baseline,
                           progress=lambda done, total: progress.update(task, completed=done, total=total),
                           extra=extra)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_json(), f, indent=2)
    if args.plot:
        plot(result, args.plot)
    _print_table(result)
    missed = _print_targets(result)
    if args.check:
        errors = sum(1 for c in result.cells if c.error)
        if errors or missed or result.missing:
            print(f"pwvm bench --check: {missed} target(s) missed, {errors} cell(s) failed, "
                  f"{len(result.missing)} backend(s) unavailable", file=sys.stderr)
            return 1
    return 0


def _print_targets(result: Any) -> int:
    """Print the speed targets this run could judge; returns how many were missed."""
    from ._bench import fmt_value, judge_targets

    judged = judge_targets(result)
    if not judged:
        return 0
    console = _console()
    console.print("[bold]targets[/] (judged on this run's medians; `--check` exits 1 when one is missed)")
    for t, value, met in judged:
        shown = f"{value:.1f}x" if t.versus else fmt_value(value, "s")
        console.print(f"  {'[green]met[/]   ' if met else '[red]missed[/]'} {t.describe()}: {shown}")
    return sum(not met for _, _, met in judged)


def _isolation_of(runner: str) -> str:
    """Where a backend id runs its runtime: the part after "@", or the backend's own default."""
    from ._backend import get_backend

    if "@" in runner:
        return runner.partition("@")[2]
    try:
        return get_backend(runner).isolation
    except BackendUnavailable:
        return "in-process"


def _select_isolation(runners: list[str], modes: list[str], *, explicit: bool) -> list[str]:
    """The runners that run with one of ``modes``; a plain backend name given explicitly
    also brings its variants (``--backends wasmtime --isolation process`` -> wasmtime@process)."""
    from ._backend import isolation_modes

    for m in modes:
        if m not in isolation_modes():
            raise UsageError(f"unknown isolation {m!r}; choose from {', '.join(isolation_modes())}")
    names = backend_names()
    chosen: list[str] = []
    for r in runners:
        candidates = [r]
        if explicit and "@" not in r:
            candidates += [f"{r}@{m}" for m in modes if f"{r}@{m}" in names]
        for c in candidates:
            if _isolation_of(c) in modes and c not in chosen:
                chosen.append(c)
    if not chosen:
        raise UsageError(f"no selected backend runs with isolation {','.join(modes)}")
    return chosen


def _print_table(result: Any) -> None:
    from rich.table import Table

    from ._bench import fmt_value

    console = _console()
    h = result.header
    runtimes = ", ".join(f"{k} {v}" for k, v in h["runtimes"].items())
    console.print(f"[bold]pwvm bench[/] — {h['machine']}; Python {h['python']}; {runtimes}")
    table = Table()
    table.add_column("workload")
    table.add_column("runner")
    table.add_column("median", justify="right")
    table.add_column("min .. max", justify="right")
    table.add_column("vs fastest", justify="right")
    for w in result.workloads:
        cells = [c for c in result.cells if c.workload == w]
        best = min((c.median for c in cells if c.samples), default=float("nan"))
        for i, c in enumerate(cells):
            label = f"{w} [dim]({c.unit})[/]" if i == 0 else ""
            if c.error or not c.samples:
                table.add_row(label, c.runner, "[red]error[/]", (c.error or "no sample")[:70], "")
                continue
            if c.median <= best:
                versus = "[green]fastest[/]"
            else:
                versus = f"{c.median / best:.1f}×" if best > 0 else "-"
            table.add_row(label, c.runner, fmt_value(c.median, c.unit),
                          f"{fmt_value(min(c.samples), c.unit)} .. {fmt_value(max(c.samples), c.unit)}", versus)
        for name in result.missing:
            table.add_row("", name, "[yellow]unavailable[/]", "", "")
        table.add_section()
    console.print(table)
    requests = [c for c in result.cells if c.latencies and not c.error]
    if requests:
        lat = Table(title="per request: single-request latency and one-thread throughput")
        for col in ("workload", "runner", "p50", "p90", "p99", "requests/s"):
            lat.add_column(col, justify="left" if col in ("workload", "runner") else "right")
        for c in requests:
            lat.add_row(c.workload, c.runner, fmt_value(c.percentile(50), "s"), fmt_value(c.percentile(90), "s"),
                        fmt_value(c.percentile(99), "s"), f"{c.requests_per_second:,.0f}")
        console.print(lat)
    for name, why in result.missing.items():
        console.print(f"[yellow]{name}[/]: {why}")


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
    be.add_argument("--backends", help="comma-separated backend ids, e.g. wasmtime,v8,wasmtime@process "
                                       "(default: every registered one)")
    be.add_argument("--isolation", help="comma-separated isolation modes to keep: in-process, namespace, process")
    be.add_argument("--workloads", help="comma-separated workloads (default: all)")
    be.add_argument("--repeats", type=int, default=7, help="timed repeats per cell (default 7)")
    be.add_argument("--quick", action="store_true", help="few, short repeats: a smoke run")
    be.add_argument("--json", metavar="FILE", help="write every raw sample to FILE")
    be.add_argument("--plot", metavar="FILE.png", help="draw the results (needs matplotlib)")
    be.add_argument("--plugin", metavar="FILE", help="benchmark your own Proxy-Wasm plugin (.wasm)")
    be.add_argument("--config", metavar="FILE", help="the plugin configuration given to proxy_on_configure")
    be.add_argument("--root-id", default="", help="the plugin's root id (plugin_root_id property)")
    be.add_argument("--no-baseline", action="store_true", help="leave out the wasmtime-py baseline")
    be.add_argument("--check", action="store_true",
                    help="exit 1 when a speed target is missed, a cell fails or a backend is unavailable")
    be.set_defaults(fn=cmd_bench)

    from ._plugincmds import add_commands  # pwvm inspect, run, diff

    add_commands(sub)
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
