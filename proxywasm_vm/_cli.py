"""The ``pwvm`` command: ``pwvm backends``, ``pwvm bench``, ``pwvm setup``; ``inspect``, ``run``, ``diff``
(in ``_plugincmds``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict
from typing import Any, Iterator, NoReturn, Sequence

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
    """List the backends: a table that fits 80 columns (``--json``: every field, for scripts)."""
    from rich.console import Console

    status = Console(stderr=True, highlight=False)
    if status.is_terminal:
        with status.status("checking the backends (the first use of one builds its native shim)"):
            rows = available_backends()
    else:
        rows = available_backends()
    if args.json:
        print(json.dumps([_info_dict(r) for r in rows], indent=2))
        return 0
    _print_backends(rows, _console())
    return 0


def _print_backends(rows: list[BackendInfo], console: Any) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="proxywasm-vm backends", title_justify="left")
    for col in ("backend", "status", "runs", "runtime version"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        if r.available:
            table.add_row(r.name, "[green]available[/]", _isolation_of(r.name), r.version)
        else:
            table.add_row(r.name, "[yellow]unavailable[/]", "-", "-")
    console.print(table)
    # Capabilities: backends with the same set share one paragraph (wasmtime and wasmtime@namespace ...).
    groups: dict[tuple[str, ...], list[str]] = {}
    for r in rows:
        if r.available and r.capabilities is not None:
            caps = tuple(_capability_text(k, v) for k, v in asdict(r.capabilities).items() if v)
            groups.setdefault(caps, []).append(r.name)
    if groups:
        caps_table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        caps_table.add_column("backends", no_wrap=True)
        caps_table.add_column("capabilities")
        for caps, names in groups.items():
            caps_table.add_row("\n".join(names), ", ".join(caps) or "none")
        console.print(caps_table)
    off = [r for r in rows if not r.available]
    if off:
        why = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        why.add_column("unavailable", no_wrap=True)
        why.add_column("why, and how to enable it")
        for r in off:
            why.add_row(f"[yellow]{r.name}[/]", f"{r.reason}\n[dim]enable:[/] {r.how_to_enable}")
        console.print(why)


def _capability_text(name: str, value: Any) -> str:
    """A capability as the table shows it: its name (a flag), or its name and values (a set)."""
    if not isinstance(value, frozenset):
        return name
    if name == "unsupported_instructions" and len(value) > 3:
        shown = sorted(value)
        return f"{name} ({len(shown)}: {', '.join(shown[:3])}, ...)"
    return f"{name} ({', '.join(sorted(value))})"


def _info_dict(r: BackendInfo) -> dict[str, Any]:
    info = asdict(r)
    caps = info.get("capabilities")
    if caps:  # sets (features, unsupported_instructions) as sorted lists, for JSON
        info["capabilities"] = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in caps.items()}
    return info


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
        _check_backend_id(name)
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
    """Run the benchmark. Exit status: 0 every cell measured; 1 a cell failed or was not timed,
    a ``--require``d backend is unavailable, or (``--check``) a target was missed or any
    backend is unavailable; 2 bad arguments (all checked before anything runs)."""
    from ._bench import all_workloads, plot, run_bench

    if args.list:
        return _list_workloads(args)
    request = _request_from_args(args)
    extra = {}
    if args.config is not None and args.plugin is None:
        raise UsageError("--config is the configuration of --plugin's plugin: give --plugin too")
    if args.plugin is not None:
        from ._workloads import user_plugin_workloads

        configuration = _read_file(args.config, "--config") if args.config is not None else b""
        try:
            extra = user_plugin_workloads(args.plugin, args.root_id, configuration, request)
        except ValueError as e:
            raise UsageError(str(e)) from None
    known = list(extra) + [w for w in all_workloads() if w not in extra]
    default = list(extra) + ["call", "host_call", "instantiate", "rss_per_vm"] if extra else known
    selected = _names(args.workloads, "--workloads") if args.workloads is not None else default
    for w in selected:
        if w not in known:
            raise UsageError(f"unknown workload {w!r}; choose from {', '.join(known)}")
    if request is not _default_request() and "plugin_request" not in selected:
        raise UsageError("the request options set what plugin_request sends, and --workloads leaves it out")
    runners = _names(args.backends, "--backends") if args.backends is not None else backend_names()
    for r in runners + (args.require or []):
        _check_backend_id(r)
    if args.isolation is not None:
        runners = _select_isolation(runners, _names(args.isolation, "--isolation"), explicit=args.backends is not None)
    for r in args.require or []:
        if r not in runners:
            raise UsageError(f"--require {r}: {r} is not among the selected backends ({', '.join(runners)})")
    to_stdout = args.json == "-"
    if args.json is not None and not to_stdout:
        _check_output(args.json, "--json")
    if args.plot is not None:
        _check_plot(args.plot)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)

    with _progress() as tell:
        result = run_bench(runners, selected, repeats=repeats, quick=args.quick, baseline=not args.no_baseline,
                           progress=tell, extra=extra, time_stopped=args.time_stopped,
                           request=request if args.plugin is not None else None)
    if args.json is not None:
        text = json.dumps(result.to_json(), indent=2)
        if to_stdout:
            print(text)
        else:
            try:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
            except OSError as e:  # checked before the run; the disk can still fill up
                raise UsageError(f"cannot write --json {args.json}: {e.strerror}") from None
    if args.plot is not None:
        try:
            plot(result, args.plot)
        except OSError as e:
            raise UsageError(f"cannot write --plot {args.plot}: {e.strerror}") from None
    if not to_stdout:  # with --json -, stdout is the JSON document only
        console = _console()
        _print_table(result, console)
        _print_ratios(result, console)
        missed = _print_targets(result, console)
    else:
        from ._bench import judge_targets

        missed = sum(not met for _, _, met in judge_targets(result))
    return _exit_status(result, args, missed)


def _exit_status(result: Any, args: argparse.Namespace, missed: int) -> int:
    """Say on stderr, one line each, what keeps this run from being complete; 0 when nothing does."""
    problems = []
    for c in result.failed:
        problems.append(f"{c.workload} on {c.runner}: {c.summary}")
    for r in args.require or []:
        if r in result.missing:
            problems.append(f"required backend {r} is unavailable: {result.missing[r]}")
    if args.check:
        if missed:
            problems.append(f"{missed} speed target(s) missed")
        problems += [f"backend {name} is unavailable" for name in result.missing if name not in (args.require or [])]
    if not problems:
        return 0
    failed = len(result.failed)
    head = f"pwvm bench: {failed} cell(s) not measured" if failed else "pwvm bench: incomplete"
    print(f"{head}; {len(problems)} problem(s):", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1


def _list_workloads(args: argparse.Namespace) -> int:
    from ._bench import MEMORY_WORKLOADS
    from ._workloads import WORKLOADS

    rows = [{"name": w.name, "group": w.group, "unit": w.unit, "description": w.description}
            for w in WORKLOADS.values()]
    rows += [{"name": m, "group": "memory", "unit": "vm", "description": "resident bytes each live VM adds"}
             for m in MEMORY_WORKLOADS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(box=None, show_header=True, pad_edge=False)
    for col in ("workload", "group", "per", "what is timed"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["group"], r["unit"], r["description"])
    _console().print(table)
    return 0


def _names(text: str, option: str) -> list[str]:
    """A comma-separated list of names: no empty entry, no repeat."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UsageError(f"{option} {text!r}: give comma-separated names, none empty")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"{option}: {', '.join(dup)} given twice")
    return names


def _check_backend_id(name: str) -> None:
    """An exact backend id: a registered runtime, optionally ``@`` an isolation mode."""
    from ._backend import parse_backend

    try:
        base, _ = parse_backend(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if base not in backend_names():
        raise UsageError(f"unknown backend {name!r}; choose from {', '.join(backend_names())}")


def _read_file(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {option} {path}: {e.strerror or e}") from None


def _check_output(path: str, option: str) -> None:
    """An output file this run can write, checked before any work: its folder must exist
    (it is not created: a mistyped folder is an error, not a new folder)."""
    import os

    if not path:
        raise UsageError(f"{option}: give a file name")
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: folder {folder} is not writable")


def _check_plot(path: str) -> None:
    import os

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'proxywasm-vm[plot]'") from None
    _check_output(path, "--plot")
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    kinds = FigureCanvasAgg.get_supported_filetypes()
    if ext not in kinds:
        raise UsageError(f"--plot {path}: name the file with one of the extensions "
                         f"{', '.join('.' + k for k in sorted(kinds))}")


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _default_request() -> Any:
    from ._workloads import DEFAULT_REQUEST

    return DEFAULT_REQUEST


def _request_from_args(args: argparse.Namespace) -> Any:
    """The request ``plugin_request`` sends: ``--request FILE`` (JSON), then the options over it."""
    from ._workloads import DEFAULT_REQUEST, RequestSpec

    given = [o for o, v in (("--request", args.request), ("--method", args.method), ("--path", args.path),
                            ("--header", args.header), ("--body", args.body), ("--body-file", args.body_file))
             if v is not None]
    if not given:
        return DEFAULT_REQUEST
    if args.plugin is None:
        raise UsageError(f"{given[0]} sets the request of --plugin's plugin_request workload: give --plugin too")
    if args.body is not None and args.body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    fields: dict[str, Any] = {}
    if args.request is not None:
        fields = _request_file(args.request)
    if args.method is not None:
        fields["method"] = args.method
    if args.path is not None:
        fields["path"] = args.path
    if args.header:
        fields["headers"] = fields.get("headers", []) + [_header(h, "--header") for h in args.header]
    if args.body is not None:
        fields["body"] = args.body.encode()
    if args.body_file is not None:
        fields["body"] = _read_file(args.body_file, "--body-file")
    method = fields.get("method", DEFAULT_REQUEST.method)
    if not method or not set(method) <= _TOKEN:
        raise UsageError(f"--method {method!r} is not an HTTP method (a token such as GET or POST)")
    path = fields.get("path", DEFAULT_REQUEST.path)
    if not path.startswith("/") or any(ch in path for ch in " \r\n"):
        raise UsageError(f"--path {path!r}: a request path starts with '/' and has no spaces")
    headers = tuple(fields.get("headers", ()))
    return RequestSpec(method=method, path=path, headers=headers, body=fields.get("body", b""))


def _header(text: str, option: str) -> tuple[str, str]:
    """``"name: value"`` -> ``("name", "value")``, the name lower-cased (as HTTP/2 and Envoy do)."""
    name, sep, value = text[1:].partition(":") if text.startswith(":") else text.partition(":")
    if text.startswith(":"):
        name = ":" + name
    bare = name[1:] if name.startswith(":") else name
    if not sep or not bare or not set(bare) <= _TOKEN:
        raise UsageError(f"{option} {text!r}: write a header as 'name: value'")
    return name.lower(), value.strip()


def _request_file(path: str) -> dict[str, Any]:
    """``--request FILE``: a JSON object with any of method, path, headers (an object, or a list
    of [name, value] pairs) and body (text)."""
    raw = _read_file(path, "--request")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise UsageError(f"--request {path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or set(doc) - {"method", "path", "headers", "body"}:
        raise UsageError(f"--request {path}: give a JSON object with only method, path, headers, body")
    out: dict[str, Any] = {}
    for key in ("method", "path", "body"):
        if key in doc:
            if not isinstance(doc[key], str):
                raise UsageError(f"--request {path}: {key} must be a string")
            out[key] = doc[key].encode() if key == "body" else doc[key]
    headers = doc.get("headers", [])
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    if not isinstance(pairs, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                              and all(isinstance(x, str) for x in p) for p in pairs):
        raise UsageError(f"--request {path}: headers must be an object or a list of [name, value] strings")
    out["headers"] = [_header(f"{k}: {v}", f"--request {path}:") for k, v in pairs]
    return out


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    """A progress bar on stderr while a terminal shows it (nothing otherwise); yields the
    ``progress(done, total, what)`` callback of :func:`~proxywasm_vm._bench.run_bench`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        yield lambda done, total, what: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda done, total, what: bar.update(task, completed=done, total=total, description=what)


def _print_targets(result: Any, console: Any) -> int:
    """Print the speed targets this run could judge; returns how many were missed."""
    from ._bench import fmt_value, judge_targets

    judged = judge_targets(result)
    if not judged:
        return 0
    console.print("[bold]targets[/] (judged on this run's medians; `--check` exits 1 when one is missed)")
    for t, value, met in judged:
        shown = f"{value:.1f}x" if t.versus else fmt_value(value, "s")
        console.print(f"  {'[green]met[/]   ' if met else '[red]missed[/]'} {t.describe()}: {shown}")
    return sum(not met for _, _, met in judged)


def _print_ratios(result: Any, console: Any) -> None:
    """The ratios of :data:`~proxywasm_vm._bench.RATIOS` this run measured (both cells), with
    their goals: reported only; they never change the exit status."""
    from ._bench import fmt_value, ratios

    rows: list[list[str] | None] = []
    for rv in ratios(result):
        if rv.value is None:
            continue
        r = rv.ratio
        top, bottom = result.cell(*r.top), result.cell(*r.bottom)
        shown = f"{rv.value:.3g}" if rv.value < 100 else f"{rv.value:.0f}"
        mark = "" if rv.met is None else ("[green]met[/]" if rv.met else "[yellow]not yet[/]")
        rows.append([r.name, shown + r.unit, r.describe_goal(), mark,
                     f"{fmt_value(top.median, top.unit)} / {fmt_value(bottom.median, bottom.unit)}"])
    if rows:
        console.print(_fitted_table(console, ["ratio", "measured:r", "goal:r", "", "medians:r"], rows,
                                    optional=["medians"], title="ratios of this run's medians (reported, not judged)"))


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


def _fitted_table(console: Any, columns: list[str], rows: list[list[str] | None], *, optional: list[str],
                  title: str | None = None, caption: str | None = None) -> Any:
    """A table of ``rows`` (``None``: a section break) that fits the console: columns named in
    ``optional`` are left out, in that order, while it is wider (a narrow terminal). A column
    name ending in ``:r`` is right-aligned. Cells never wrap: a row is one line."""
    from rich import box
    from rich.table import Table

    names = [c.split(":")[0] for c in columns]
    keep = list(names)
    while True:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left", caption=caption,
                      caption_justify="left")
        for col, name in zip(columns, names):
            if name in keep:
                table.add_column(name, justify="right" if col.endswith(":r") else "left", no_wrap=True)
        for row in rows:
            if row is None:
                table.add_section()
            else:
                table.add_row(*[v for v, name in zip(row, names) if name in keep])
        drop = [n for n in optional if n in keep]
        if not drop or console.measure(table, options=console.options.update_width(1 << 16)).maximum \
                <= console.width:
            return table
        keep.remove(drop[0])


def _print_table(result: Any, console: Any) -> None:
    """The results, readable in 80 columns: one line per cell (the workload's name on its first
    line, what one unit is on the second); values carry their own units; why a cell has no
    numbers goes to numbered notes under the table."""
    from rich import box
    from rich.table import Table

    from ._bench import fmt_range, fmt_value

    h = result.header
    console.print(f"[bold]pwvm bench[/] on {h['machine']}, Python {h['python']}")
    console.print("runtimes: " + ", ".join(f"{k} {v}" for k, v in h["runtimes"].items()), overflow="fold")
    notes: list[str] = []

    def note(text: str) -> str:
        notes.append(text)
        return f"note {len(notes)}"

    rows: list[list[str] | None] = []  # None: a section break
    for w in result.workloads:
        cells = [c for c in result.cells if c.workload == w]
        if not cells:
            continue
        best = min((c.median for c in cells if c.samples), default=float("nan"))
        per = "per " + cells[0].unit.split("/", 1)[1]
        labels = [w, f"[dim]{per}[/]"] if len(cells) > 1 else [f"{w}\n[dim]{per}[/]"]
        for i, c in enumerate(cells):
            label = labels[i] if i < len(labels) else ""
            if c.summary:
                shown = "not timed" if not c.timed and not c.error else "error"
                rows.append([label, c.runner, f"[red]{shown}[/]", "", note(f"{w} on {c.runner}: {c.summary}")])
                continue
            if c.median <= best:
                versus = "[green]fastest[/]"
            else:
                versus = f"{c.median / best:.1f}×" if best > 0 else "-"
            median = fmt_value(c.median, c.unit)
            if c.not_passed:  # timed on request (--time-stopped): say what was timed
                note(f"{w} on {c.runner}: timed although the plugin {c.not_passed}")
                median += "*"
            rows.append([label, c.runner, median, fmt_range(min(c.samples), max(c.samples), c.unit), versus])
        rows.append(None)
    for name in result.missing:
        rows.append(["", name, "[yellow]absent[/]", "", note(f"{name}: {result.missing[name]}")])
    console.print(_fitted_table(console, ["workload", "runner", "median:r", "min–max:r", "vs best:r"], rows,
                                optional=["min–max"],
                                caption="lower is better; ×: times the fastest median"
                                        + ("; *: see the notes" if any(c.not_passed and c.timed for c in result.cells)
                                           else "")))
    requests = [c for c in result.cells if c.latencies and not c.error]
    if requests:
        lat_rows: list[list[str] | None] = []
        last = ""
        for c in requests:
            lat_rows.append([c.workload if c.workload != last else "", c.runner, fmt_value(c.percentile(50), "s"),
                             fmt_value(c.percentile(90), "s"), fmt_value(c.percentile(99), "s"),
                             f"{c.requests_per_second:,.0f}"])
            last = c.workload
        console.print(_fitted_table(console, ["workload", "runner", "p50:r", "p90:r", "p99:r", "req/s:r"], lat_rows,
                                    optional=["p90", "p50"], title="single requests: latency, one-thread throughput"))
    if result.request:
        console.print(f"request sent: {result.request}", overflow="fold")
    for i, text in enumerate(notes, 1):
        console.print(f"[dim]{i}.[/] {text}", overflow="fold")
    if any(not c.timed and c.not_passed and not c.error for c in result.cells):
        console.print("A request the plugin did not pass through is not timed: send one it passes "
                      "(--method, --path, --header, --body, --request) or add --time-stopped to time it anyway.")


# ---- pwvm serve ---------------------------------------------------------------------

class _PluginOption(argparse.Action):
    """``--plugin FILE`` starts a plugin of the chain; ``--config``, ``--root-id``, ``--vm-id``,
    ``--name``, ``--failure-policy`` and ``--plugin-backend`` after it set that plugin's fields."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any,
                 option: str | None = None) -> None:
        plugins = getattr(ns, "plugins", None) or []
        if self.dest == "plugin":
            plugins.append({"path": value})
        else:
            if not plugins:
                raise UsageError(f"{option} sets a field of the plugin before it: give --plugin FILE first")
            key = self.dest.rstrip("_")
            if key in plugins[-1]:
                raise UsageError(f"{option} is given twice for --plugin {plugins[-1]['path']}")
            plugins[-1][key] = value
        ns.plugins = plugins


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the reverse proxy until SIGTERM; exit status 2 on a bad configuration."""
    from ._serve import serve
    from ._serve_config import ConfigError, config_from_flags, load_config_file

    flags = [o for o, v in (("--listen", args.listen), ("--upstream", args.upstream), ("--cluster", args.cluster),
                            ("--plugin", args.plugins), ("--admin", args.admin), ("--backend", args.backend),
                            ("--timeout", args.timeout), ("--grace", args.grace), ("--access-log", args.access_log),
                            ("--log-level", args.log_level), ("--deadline", args.deadline),
                            ("--redis", args.redis), ("--redis-prefix", args.redis_prefix)) if v]
    if args.config_file is not None and flags:
        raise UsageError(f"{flags[0]}: with -c FILE the configuration file says everything; drop the flag "
                         "or the file")
    if args.config_file is None and args.upstream is None:
        raise UsageError("give --upstream URL (and --plugin FILE ...), or a configuration file: -c pwvm.toml")
    if args.watch is not None and not args.watch > 0:
        raise UsageError(f"--watch {args.watch}: give a positive number of seconds")

    def load() -> Any:
        if args.config_file is not None:
            return load_config_file(args.config_file)
        return config_from_flags(listen=args.listen or [], upstream=args.upstream, clusters=args.cluster or [],
                                 plugins=args.plugins or [], backend=args.backend or "wasmtime", admin=args.admin,
                                 access_log=args.access_log or "-", timeout=args.timeout,
                                 grace=args.grace if args.grace is not None else 30.0,
                                 log_level=args.log_level or "info", deadline=args.deadline, redis=args.redis,
                                 redis_prefix=args.redis_prefix or "pwvm:")

    try:
        return serve(load, watch=args.watch)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def _add_serve(sub: Any) -> None:
    sv = sub.add_parser("serve", help="run a reverse proxy with a chain of Proxy-Wasm plugins",
                        description="A reverse proxy (uvicorn + httpx) that runs Proxy-Wasm plugins in front of "
                                    "upstream clusters. Simple form: --listen ADDR --upstream URL --plugin FILE "
                                    "[--config FILE] ...; full form: -c pwvm.toml (or .yaml). SIGTERM/SIGINT: "
                                    "drain and stop; SIGHUP: reload. Exit status 2 on a bad configuration.")
    sv.add_argument("-c", "--config-file", metavar="FILE", help="the configuration file (TOML, or YAML with PyYAML)")
    sv.add_argument("--listen", action="append", metavar="HOST:PORT",
                    help="where to accept requests (repeatable; default 127.0.0.1:8080; port 0: any free port)")
    sv.add_argument("--upstream", metavar="URL", help="where requests go, e.g. http://127.0.0.1:9000 "
                                                     "(cluster 'upstream')")
    sv.add_argument("--cluster", action="append", metavar="NAME=URL",
                    help="another upstream cluster, a target of plugin HTTP callouts (repeatable)")
    sv.add_argument("--plugin", action=_PluginOption, dest="plugin", metavar="FILE",
                    help="a plugin's .wasm (repeatable: a chain, in request order)")
    sv.add_argument("--config", action=_PluginOption, dest="config", metavar="FILE",
                    help="the configuration of the --plugin before it (read in proxy_on_configure)")
    sv.add_argument("--root-id", action=_PluginOption, dest="root_id", help="the root id of the --plugin before it")
    sv.add_argument("--vm-id", action=_PluginOption, dest="vm_id", help="the vm id of the --plugin before it")
    sv.add_argument("--name", action=_PluginOption, dest="name", help="the name of the --plugin before it")
    sv.add_argument("--failure-policy", action=_PluginOption, dest="failure_policy",
                    choices=("fail_closed", "fail_open", "fail_reload"),
                    help="what a request gets when the --plugin before it fails (default fail_closed: a 503)")
    sv.add_argument("--plugin-backend", action=_PluginOption, dest="backend_", metavar="BACKEND",
                    help="the backend of the --plugin before it (default --backend)")
    sv.add_argument("--backend", help="the backend of every plugin, e.g. wasmtime, v8, wasmtime@process "
                                      "(default wasmtime)")
    sv.add_argument("--admin", metavar="HOST:PORT", help="the admin listener: /metrics (Prometheus), /healthz")
    sv.add_argument("--access-log", metavar="FILE", help="one line per request: '-' stdout (default), 'off', or a file")
    sv.add_argument("--timeout", type=float, metavar="SECONDS",
                    help="how long an upstream may take to answer (default 15, as Envoy's route timeout)")
    sv.add_argument("--deadline", type=float, metavar="SECONDS",
                    help="how long each plugin callback may run (default 0.5; past it: the failure policy)")
    sv.add_argument("--grace", type=float, metavar="SECONDS",
                    help="how long requests in flight may take to finish at shutdown (default 30)")
    sv.add_argument("--log-level", choices=("trace", "debug", "info", "warn", "error", "critical"),
                    help="the lowest plugin log level written (default info)")
    sv.add_argument("--redis", metavar="URL", help="keep shared data and queues in this Redis, shared with every "
                                                  "process using it (redis://HOST:PORT/DB; default: in memory)")
    sv.add_argument("--redis-prefix", metavar="PREFIX", help="the prefix of the Redis keys (default 'pwvm:')")
    sv.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                    help="reload when the configuration or a plugin file changes (checked every SECONDS, default 1)")
    sv.set_defaults(fn=cmd_serve, plugins=None)


# ---- entry point ------------------------------------------------------------------

def _count(low: int, high: int) -> Any:
    """An argparse type: an integer in ``low..high``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{n} is out of range {low}..{high}")
        return n

    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pwvm", description="Run and compare WebAssembly runtimes and Proxy-Wasm plugins.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("backends", help="list the backends, their versions and capabilities",
                       description="List every registered backend: available or not (and how to enable it), "
                                   "where it runs, its runtime version and capabilities. Exit status 0.")
    b.add_argument("--json", action="store_true", help="print JSON (every field) instead of a table")
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

    be = sub.add_parser("bench", help="compare the backends side by side",
                        description="Time the same workloads on every backend (and wasmtime-py) in interleaved "
                                    "rounds. Exit status: 0 every cell measured; 1 a cell failed or was not "
                                    "timed, a --require'd backend is unavailable, or --check found a problem; "
                                    "2 bad arguments.")
    be.add_argument("--backends", help="comma-separated backend ids, e.g. wasmtime,v8,wasmtime@process "
                                       "(default: every registered one; unavailable ones are listed, not fatal)")
    be.add_argument("--require", action="append", metavar="BACKEND",
                    help="exit 1 unless this backend (exact id, repeatable) is available and measured")
    be.add_argument("--isolation", help="comma-separated isolation modes to keep: in-process, namespace, process")
    be.add_argument("--workloads", help="comma-separated workloads (default: all; see --list)")
    be.add_argument("--list", action="store_true", help="list the workloads and exit")
    be.add_argument("--repeats", type=_count(1, 1000), help="timed repeats per cell, 1..1000 (default 7; 3 with --quick)")
    be.add_argument("--quick", action="store_true", help="few, short repeats: a smoke run")
    be.add_argument("--json", metavar="FILE", nargs="?", const="-",
                    help="write every raw sample to FILE (its folder must exist); without FILE or with '-': "
                         "print the JSON to stdout instead of the table")
    be.add_argument("--plot", metavar="FILE.png", help="draw the results (needs matplotlib; .png, .svg, .pdf ...)")
    be.add_argument("--plugin", metavar="FILE", help="benchmark your own Proxy-Wasm plugin (.wasm)")
    be.add_argument("--config", metavar="FILE", help="the plugin configuration given to proxy_on_configure")
    be.add_argument("--root-id", default="", help="the plugin's root id (plugin_root_id property)")
    req = be.add_argument_group("the request --plugin's plugin_request sends (default: GET /bench, 10 headers)")
    req.add_argument("--request", metavar="FILE",
                     help='a JSON file: {"method": "POST", "path": "/x", "headers": {"name": "value"}, "body": "text"}'
                          "; the options below override it")
    req.add_argument("--method", help="the :method (default GET)")
    req.add_argument("--path", help="the :path (default /bench)")
    req.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'",
                     help="a request header (repeatable; replaces a default header of the same name)")
    req.add_argument("--body", metavar="TEXT", help="a request body (sent in one chunk)")
    req.add_argument("--body-file", metavar="FILE", help="the request body, read from FILE")
    req.add_argument("--time-stopped", action="store_true",
                     help="also time a plugin that does not pass the request through (answers it locally, pauses "
                          "or resets it); by default that is reported and not timed")
    be.add_argument("--no-baseline", action="store_true", help="leave out the wasmtime-py baseline")
    be.add_argument("--check", action="store_true",
                    help="also exit 1 when a speed target is missed or any backend is unavailable")
    be.set_defaults(fn=cmd_bench)

    _add_serve(sub)

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
