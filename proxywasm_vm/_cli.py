"""The ``pwvm`` command: ``pwvm backends``, ``pwvm bench``, ``pwvm setup``; ``inspect``, ``run``, ``diff``
(in ``_plugincmds``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, NoReturn, Sequence

from ._backend import BackendInfo, available_backends, backend_names, parse_backend
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

#: Runtimes whose set-up is more than loading them (``backends/<runtime>/_build.py``'s ``setup``):
#: the V8 shim is compiled against the machine's libnode; wasmer needs a Python 3.10 worker environment.
_SET_UP = ("v8", "wasmer")


def _setup_module(base: str) -> Any:
    """``backends/<base>/_build.py``, loaded by path: the backend's package raises on import
    while the backend is unavailable, which is exactly when it needs setting up."""
    import importlib.util
    from pathlib import Path

    from . import backends

    spec = importlib.util.spec_from_file_location(f"_pwvm_setup_{base}",
                                                  Path(backends.__file__).parent / base / "_build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cmd_setup(args: argparse.Namespace) -> int:
    """Set up and load the named backends (default: every one): build the V8 shim against the
    machine's libnode, make wasmer's Python 3.10 worker environment, load the others."""
    names = list(args.backends or backend_names())
    required = set(args.require or []) | set(args.backends or [])  # a backend named is a backend wanted
    for name in [*names, *(args.require or [])]:
        try:
            base, _ = parse_backend(name)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if base not in backend_names():
            raise UsageError(f"unknown backend {name!r}; choose from {', '.join(backend_names())}")
    if args.python and not any(parse_backend(n)[0] == "wasmer" for n in names):
        raise UsageError("--python is the Python 3.10 of wasmer's worker environment: name the backend wasmer")
    failed: dict[str, BackendUnavailable | None] = {}  # runtime -> why its set-up failed (None: it did not)
    rows = []
    for name in names:
        base, _ = parse_backend(name)
        if base in _SET_UP and base not in failed:
            failed[base] = _set_up(base, name, args.python)
        try:
            why = failed.get(base)
            if why is not None:
                raise why
            Engine(name)
            rows.append({"name": name, "ready": True, "reason": "", "how_to_enable": ""})
        except BackendUnavailable as e:
            rows.append({"name": name, "ready": False, "reason": e.reason, "how_to_enable": e.how_to_enable})
    if args.json:
        print(json.dumps(rows, indent=2))
    for r in rows if not args.json else []:
        if r["ready"]:
            print(f"{r['name']}: ready")
        else:
            print(f"{r['name']}: unavailable: {r['reason']}" + (f"\n  to enable it: {r['how_to_enable']}"
                                                                  if r["how_to_enable"] else ""))
    return 0 if all(r["ready"] or r["name"] not in required for r in rows) else 1


def _set_up(base: str, name: str, python: str | None) -> BackendUnavailable | None:
    """Run runtime ``base``'s set-up, showing its steps (a spinner on a terminal, else lines
    on stderr); returns why it failed, or None."""
    if base == "wasmer" and not python:
        try:
            Engine(name)
            return None  # a worker environment is there already (made before, or a checkout's .venv310)
        except BackendUnavailable:
            pass
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    with err.status(f"{base}: setting up") as status:
        def step(msg: str) -> None:
            status.update(f"{base}: {msg}")
            if not err.is_terminal:
                print(f"{base}: {msg}", file=sys.stderr, flush=True)

        try:
            if base == "wasmer":
                _setup_module(base).setup(step, python=python)
            else:
                _setup_module(base).setup(step)
        except BackendUnavailable as e:
            return e
    return None


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

    s = sub.add_parser("setup", help="set up backends: build the V8 shim, make wasmer's worker environment",
                       description="Set up and load backends (default: every one). v8: compile the V8 shim "
                                   "against this machine's libnode (apt install libnode-dev g++). wasmer: make a "
                                   "Python 3.10 environment with wasmer-python for its worker process. Exits 1 "
                                   "when a backend named (or --require'd) cannot be set up.")
    s.add_argument("backends", nargs="*", help="backends to set up, e.g. v8 wasmer (default: all)")
    s.add_argument("--require", action="append", metavar="BACKEND",
                   help="exit 1 if this backend is unavailable (a backend named is required anyway)")
    s.add_argument("--python", metavar="PATH", help="the Python 3.10 for wasmer's worker environment "
                                                    "(default: $PYTHON310, python3.10 on PATH, or pyenv's)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
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
