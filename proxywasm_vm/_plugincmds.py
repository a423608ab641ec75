"""The plugin commands of ``pwvm``: ``inspect``, ``run`` and ``diff`` (argument parsing and output).

The work is done by :mod:`._inspect` (reading a module) and :mod:`._drive` (driving requests);
this module turns command lines into calls and results into a report, a table or JSON.
Exit status: 0 done (``diff``: the backends agree), 1 the plugin failed (``run``) or the
backends differ (``diff``), 2 a bad command line or an unreadable / invalid file.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ._cli import UsageError
from ._cli import _read_file as _read
from ._errors import CompileError

__all__ = ["add_commands"]

_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(highlight=False, stderr=stderr)


def _esc(text: Any) -> str:
    from rich.markup import escape

    return escape(str(text))


def _json_file(path: str, what: str) -> Any:
    try:
        return json.loads(_read(path, what))
    except ValueError as e:
        raise UsageError(f"{what} {path} is not valid JSON: {e}") from None


def _wasm(path: str) -> bytes:
    from ._inspect import read_wasm_file
    from ._wasmparse import parse_module

    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a WebAssembly module")
    try:
        data = read_wasm_file(path)
        parse_module(data)  # a truncated or malformed module is a bad file (exit 2), not a plugin failure
        return data
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except CompileError as e:
        raise UsageError(f"{path}: {e}") from None


def _backend_list(text: str | None) -> list[str]:
    """Backend ids from ``--backends`` (checked against the registry), or every available one."""
    from ._backend import available_backends, backend_names

    if not text:
        return [b.name for b in available_backends() if b.available]
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))  # (duplicates once)
    if not names:
        raise UsageError("--backends: no backend named")
    for n in names:
        if n not in backend_names():
            raise UsageError(f"unknown backend {n!r}; choose from {', '.join(backend_names())}")
    return names


def _unavailable(name: str) -> str | None:
    from ._backend import get_backend
    from ._errors import BackendUnavailable

    try:
        get_backend(name)
    except BackendUnavailable as e:
        return str(e).splitlines()[0]
    return None


def _progress(total: int, label: str) -> Any:
    """A transient progress bar on stderr (shown only on a terminal)."""
    from rich.progress import Progress

    progress = Progress(console=_console(stderr=True), transient=True)
    task = progress.add_task(label, total=total)
    return progress, task


# ---- pwvm inspect --------------------------------------------------------------------------

def cmd_inspect(args: argparse.Namespace) -> int:
    from ._inspect import compile_times, inspect_wasm

    data = _wasm(args.file)
    try:
        report = inspect_wasm(data)
    except CompileError as e:
        raise UsageError(f"{args.file}: {e}") from None
    if args.compile:
        backends = _backend_list(args.backends)
        progress, task = _progress(len(backends), "compiling")
        with progress:
            def step(name: str) -> None:  # called before each backend: the bar counts those done
                progress.update(task, description=f"compiling on {name}", completed=backends.index(name))

            report.compile = compile_times(data, backends, progress=step)
    elif args.backends:
        raise UsageError("--backends needs --compile")
    if args.json:
        print(json.dumps({"file": args.file, **report.to_json()}, indent=2))
        return 0
    _print_inspect(args.file, report)
    return 0


def _print_inspect(path: str, r: Any) -> None:
    from rich.table import Table

    c = _console()
    abi = r.abi or "[red]none[/] (no proxy_abi_version_* export: not a Proxy-Wasm plugin, or a very old one)"
    c.print(f"[bold]{_esc(os.path.basename(path))}[/]  {r.size:,} bytes")
    c.print(f"  ABI        {abi}" + (f" (markers: {', '.join(r.abi_markers)})" if len(r.abi_markers) > 1 else ""))
    c.print(f"  language   {_esc(r.language)}")
    c.print(f"  SDK        {_esc(r.sdk or 'none recognised')}")
    for e in r.evidence:
        c.print(f"             [dim]{_esc(e)}[/]")
    kinds = {"http": "HTTP filter", "network": "network (TCP) filter"}
    c.print(f"  filters    {' and '.join(kinds[k] for k in r.filter_kinds) or 'no stream callbacks'}")
    c.print(f"  start-up   {_esc(', '.join(r.startup) or 'none')}")
    c.print(f"  memory     {_esc(r.memory)}")
    c.print(f"  features   {_esc(', '.join(r.features) or 'MVP only (as far as types and sections show)')}")
    c.print(f"  sections   {_esc(', '.join(f'{k} {v:,}' for k, v in r.sections.items()))}")
    for group, title in (("proxy-wasm", "Proxy-Wasm imports"), ("wasi", "WASI imports"), ("other", "other imports")):
        items = [i for i in r.imports if i.group == group]
        if not items:
            continue
        c.print(f"[bold]{title}[/] ({len(items)})")
        width = max(len(f"{i.module}.{i.name}") for i in items)
        pad = " " * 10 if any(i.missing for i in items) else ""  # "ok" as wide as "NOT PROVIDED" when both show
        for i in items:
            mark = "[red]NOT PROVIDED[/]" if i.missing else "[green]ok[/]" + pad
            c.print(f"  {mark} {_esc(f'{i.module}.{i.name}'):<{width}}  {_esc(i.type)}")
            if i.missing:
                c.print(f"      {_esc(i.missing)}")
    c.print(f"[bold]callbacks[/] ({len(r.callbacks)}): {_esc(', '.join(r.callbacks) or 'none')}")
    if r.uncalled_callbacks:
        c.print(f"  [yellow]never called by this host[/]: {_esc(', '.join(r.uncalled_callbacks))}")
    for why in r.bad_callbacks:
        c.print(f"  [red]refused at load:[/] {_esc(why)}")
    if r.other_exports:
        c.print(f"[bold]other exports[/] ({len(r.other_exports)}): {_esc(', '.join(r.other_exports))}")
    if r.missing_imports:
        c.print(f"[red]this host cannot load the plugin:[/] {len(r.missing_imports)} import(s) not provided")
    if r.compile:
        t = Table(title="compile time (no cache)", title_justify="left")
        t.add_column("backend")
        t.add_column("time", justify="right")
        for name, res in r.compile.items():
            t.add_row(name, f"{res['ms']:.1f} ms" if "ms" in res else f"[red]{_esc(res['error'])}[/]")
        c.print(t)


# ---- the request options of run and diff ----------------------------------------------------

def _header(text: str, opt: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"{opt} {text!r}: expected 'name: value'")
    return name.strip().lower(), value.strip()


def _plugin_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The plugin file, its configuration and the requests, from the options (exit 2 when bad)."""
    import logging

    # Plugin log records are in the report: keep the MemoryLogger's copy on Python logging quiet.
    plugin_log = logging.getLogger("proxywasm_vm.plugin")
    plugin_log.addHandler(logging.NullHandler())
    plugin_log.propagate = False
    from ._drive import Request, parse_callouts, parse_requests
    from ._proxywasm._abi import LogLevel

    data = _wasm(args.file)
    if args.body is not None and args.body_file:
        raise UsageError("give --body or --body-file, not both")
    body = _read(args.body_file, "--body-file") if args.body_file else (args.body or "").encode()
    base = Request(method=args.method, path=args.path, authority=args.authority,
                   headers=[_header(h, "--header") for h in args.header or []], body=body,
                   response_status=args.response_status,
                   response_headers=[_header(h, "--response-header") for h in args.response_header or []],
                   response_body=(args.response_body or "").encode())
    if not 100 <= args.response_status <= 999:
        raise UsageError("--response-status must be 100..999")
    requests = [base]
    if args.request:
        try:
            requests = parse_requests(_json_file(args.request, "--request"), base)
        except ValueError as e:
            raise UsageError(f"--request {args.request}: {e}") from None
    callouts = None
    if args.callouts:
        try:
            callouts = parse_callouts(_json_file(args.callouts, "--callouts"))
        except ValueError as e:
            raise UsageError(f"--callouts {args.callouts}: {e}") from None
    name = args.name or os.path.splitext(os.path.basename(args.file))[0] or "plugin"
    return {
        "wasm": data, "requests": requests, "name": name, "root_id": args.root_id,
        "configuration": _read(args.config, "--config") if args.config else b"",
        "vm_config": _read(args.vm_config, "--vm-config") if args.vm_config else b"",
        "callouts": callouts, "log_level": LogLevel[args.log_level.upper()], "tcp": args.tcp,
    }


def _add_request_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the request")
    g.add_argument("--method", default="GET", help="request method (default GET)")
    g.add_argument("--path", default="/", help="request path (default /)")
    g.add_argument("--authority", default="example.com", help=":authority / host (default example.com)")
    g.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'", help="a request header (repeatable)")
    g.add_argument("--body", help="request body text")
    g.add_argument("--body-file", metavar="FILE", help="request body from a file")
    g.add_argument("--response-status", type=int, default=200, help="status of the upstream's response (default 200)")
    g.add_argument("--response-header", action="append", metavar="'NAME: VALUE'",
                   help="a header of the upstream's response (repeatable)")
    g.add_argument("--response-body", help="body of the upstream's response")
    g.add_argument("--request", metavar="FILE",
                   help="requests from a JSON file: an object or a list of objects with method, path, authority, "
                        "headers, body, trailers, response {status, headers, body}; missing keys come from the options")
    g = p.add_argument_group("the plugin")
    g.add_argument("--config", metavar="FILE", help="plugin configuration (proxy_on_configure) from a file")
    g.add_argument("--vm-config", metavar="FILE", help="VM configuration (proxy_on_vm_start) from a file")
    g.add_argument("--root-id", default="", help="the plugin's root id (plugin_root_id property)")
    g.add_argument("--name", help="the plugin's name (default: the file name without extension)")
    g.add_argument("--callouts", metavar="FILE",
                   help="answers to HTTP callouts, JSON {upstream: {status, headers, body}} ('*' for any upstream, "
                        "null for a failed call); without it callouts stay pending: nothing goes to the network")
    g.add_argument("--tcp", action="store_true",
                   help="a TCP connection through a network filter instead: the request body is the client's "
                        "data, the response body the upstream's")
    g.add_argument("--log-level", choices=_LEVELS, default="info", help="lowest plugin log level kept (default info)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a report")


# ---- pwvm run ---------------------------------------------------------------------------------

_HTTP_CALLBACKS = {"proxy_on_request_headers", "proxy_on_request_body", "proxy_on_response_headers",
                   "proxy_on_response_body"}


def cmd_run(args: argparse.Namespace) -> int:
    from ._backend import backend_names
    from ._drive import drive
    from ._wasmparse import parse_module

    inputs = _plugin_inputs(args)
    if args.backend not in backend_names():
        raise UsageError(f"unknown backend {args.backend!r}; choose from {', '.join(backend_names())}")
    why = _unavailable(args.backend)
    if why is not None:
        raise UsageError(f"backend {args.backend} is unavailable: {why}")
    out = drive(backend=args.backend, **inputs)
    failed = not out["loaded"] or any(r["error"] for r in out["requests"])
    if args.json:
        print(json.dumps({"file": args.file, **out}, indent=2))
    else:
        _print_run(args.file, out)
        exports = {e.name for e in parse_module(inputs["wasm"]).exports}
        if not args.tcp and "proxy_on_new_connection" in exports and not exports & _HTTP_CALLBACKS:
            _console().print("[yellow]note[/]: this plugin has network (TCP) callbacks and no HTTP ones: try --tcp")
    return 1 if failed else 0


def _fmt_headers(pairs: list) -> str:
    return ", ".join(f"{k}: {v}" for k, v in pairs)


def _print_changes(c: Any, label: str, part: dict[str, Any]) -> None:
    if part.get("final") is None:
        return
    changes = [f"[green]+[/] {_esc(k)}: {_esc(v)}" for k, v in part["added"]]
    changes += [f"[red]-[/] {_esc(k)}" for k in part["removed"]]
    changes += [f"[yellow]~[/] {_esc(k)}: {_esc(', '.join(a))} -> {_esc(', '.join(b))}" for k, a, b in part["changed"]]
    c.print(f"  {label}: " + ("unchanged" if not changes else ""))
    for line in changes:
        c.print(f"    {line}")


def _print_run(path: str, out: dict[str, Any]) -> None:
    c = _console()
    head = f"[bold]{_esc(os.path.basename(path))}[/] on {_esc(out['backend'])}"
    if not out["loaded"]:
        c.print(f"{head}: [red]the plugin did not load[/]: {_esc(out['load_error'])}")
    else:
        c.print(f"{head}, ABI {out['abi']}")
    for n, r in enumerate(out["requests"], 1):
        c.print(f"[bold]{'connection' if r.get('kind') == 'tcp' else 'request'} {n}[/]")
        for s in r["steps"]:
            colour = {"continue": "green", "resumed": "green", "pause": "yellow"}.get(s["action"], "red")
            c.print(f"  {s['callback']:<18} [{colour}]{s['action']}[/]")
        if r["error"]:
            c.print(f"  [red]plugin failed[/]: {_esc(r['error'])}")
        if r.get("kind") == "tcp":
            for side, what in (("downstream", "client -> upstream"), ("upstream", "upstream -> client")):
                d = r[side]
                c.print(f"  {side} ({what}): forwarded {_esc(repr(d['data']))}"
                        + (f", held back {_esc(repr(d['buffered']))}" if d["buffered"] else ""))
            if r["closed_by_plugin"]:
                c.print("  [yellow]the plugin closed the connection[/]")
            continue
        req = r["request"]
        lr = r["local_response"]
        if lr is not None:
            c.print(f"  [bold]local response {lr['status']}[/] ({_esc(lr['details'] or 'no details')}), "
                    f"body {_esc(repr(lr['body']))}" + (f", headers {_esc(_fmt_headers(lr['headers']))}"
                                                         if lr["headers"] else ""))
        _print_changes(c, "request headers", req)
        if req["body"] or req["buffered"]:
            c.print(f"  request body: {_esc(repr(req['body']))}"
                    + (f" (held back: {_esc(repr(req['buffered']))})" if req["buffered"] else ""))
        if not req["forwarded"] and lr is None and not r["error"]:
            c.print("  [yellow]the request is paused[/]: the plugin did not let it through to the upstream")
        if r["response"] is not None:
            _print_changes(c, "response headers", r["response"])
            if r["response"]["body"]:
                c.print(f"  response body: {_esc(repr(r['response']['body']))}")
        for call in r["callouts"]:
            c.print(f"  HTTP callout to {_esc(call['upstream'])}: {_esc(_fmt_headers(call['headers']))}"
                    f"{', body ' + _esc(repr(call['body'])) if call['body'] else ''} -> {_esc(call['state'])}")
        for call in r["grpc_calls"]:
            c.print(f"  gRPC {call['kind']} to {_esc(call['upstream'])}: {_esc(call['service'])}/"
                    f"{_esc(call['method'])} -> {call['state']}")
    logs = out.get("logs", [])
    c.print(f"[bold]logs[/] ({len(logs)})")
    for rec in logs:
        colour = {"warn": "yellow", "error": "red", "critical": "red"}.get(rec["level"], "dim")
        c.print(f"  [{colour}]{rec['level']:<8}[/] {_esc(rec['message'])}")
    metrics = out.get("metrics", {})
    if metrics:
        c.print("[bold]metrics[/]")
        for k, v in metrics.items():
            c.print(f"  {_esc(k)} = {_esc(v)}")


# ---- pwvm diff --------------------------------------------------------------------------------

def cmd_diff(args: argparse.Namespace) -> int:
    from ._drive import comparable, compare, drive

    inputs = _plugin_inputs(args)
    wanted = _backend_list(args.backends)
    skipped = {n: why for n in wanted if (why := _unavailable(n)) is not None}
    backends = [n for n in wanted if n not in skipped]
    if len(backends) < 2:
        raise UsageError(f"diff needs two available backends, got {', '.join(backends) or 'none'}"
                         + (f" ({', '.join(f'{n}: {w}' for n, w in skipped.items())})" if skipped else ""))
    outcomes: dict[str, Any] = {}
    progress, task = _progress(len(backends), "running")
    with progress:
        for name in backends:
            progress.update(task, description=f"running on {name}")
            outcomes[name] = drive(backend=name, **inputs)
            progress.advance(task)
    ref = backends[0]
    diffs = {name: compare(comparable(outcomes[ref]), comparable(outcomes[name])) for name in backends[1:]}
    differ = any(diffs.values())
    if args.json:
        print(json.dumps({"file": args.file, "reference": ref, "equal": not differ, "skipped": skipped,
                          "differences": {n: [{"path": p, ref: a, n: b} for p, a, b in d] for n, d in diffs.items()},
                          "outcomes": outcomes}, indent=2))
    else:
        _print_diff(args.file, ref, diffs, outcomes, skipped)
    return 1 if differ else 0


def _short(v: Any, width: int = 100) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= width else text[:width - 3] + "..."


def _print_diff(path: str, ref: str, diffs: dict[str, list], outcomes: dict[str, Any], skipped: dict[str, str]) -> None:
    c = _console()
    n_req = len(outcomes[ref]["requests"])
    c.print(f"[bold]{_esc(os.path.basename(path))}[/]: {n_req} request(s) on {len(outcomes)} backends, "
            f"compared with {ref}")
    if not outcomes[ref]["loaded"]:
        c.print(f"  the plugin did not load on {ref}: {_esc(outcomes[ref]['load_error'])}")
    for name, d in diffs.items():
        if not d:
            c.print(f"  [green]same[/]     {name}")
            continue
        c.print(f"  [red]differs[/]  {name}: {len(d)} difference(s)")
        for p, a, b in d:
            c.print(f"    {_esc(p)}")
            c.print(f"      {ref}: {_esc(_short(a))}")
            c.print(f"      {name}: {_esc(_short(b))}")
    for name, why in skipped.items():
        c.print(f"  [yellow]skipped[/]  {name}: {_esc(why)}")
    if not any(diffs.values()):
        c.print("[green]all backends agree[/] (actions, headers, bodies, local responses, callouts, logs, metrics; "
                "a trap's wording by the runtime is not compared, its kind is)")


# ---- registration ---------------------------------------------------------------------------

def add_commands(sub: Any) -> None:
    """Register ``inspect``, ``run`` and ``diff`` on the ``pwvm`` subparsers ``sub``."""
    i = sub.add_parser("inspect", help="what a Proxy-Wasm module is: ABI, SDK, imports, callbacks, features",
                       description="Read a Proxy-Wasm module: ABI version, likely language and SDK, imports "
                                   "(flagging any this host does not provide), exported callbacks, wasm features, "
                                   "sizes, and with --compile the compile time on each backend.")
    i.add_argument("file", metavar="FILE", help="the plugin (.wasm, or .wat text)")
    i.add_argument("--compile", action="store_true", help="also compile it once on each backend and time it")
    i.add_argument("--backends", help="comma-separated backend ids for --compile (default: every available one)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a report")
    i.set_defaults(fn=cmd_inspect)

    r = sub.add_parser("run", help="send one request through a plugin and show what it did",
                       description="Send a request (and the upstream's response, if the plugin lets the request "
                                   "through) through a plugin, and show each callback's action, changed headers "
                                   "and bodies, any local response, callouts, logs and metrics. HTTP callouts are "
                                   "not sent: they stay pending unless --callouts answers them. Exit status 1 when "
                                   "the plugin fails to load or fails in a callback.")
    r.add_argument("file", metavar="FILE", help="the plugin (.wasm, or .wat text)")
    r.add_argument("--backend", default="wasmtime", help="backend id (default wasmtime)")
    _add_request_options(r)
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("diff", help="run the same requests on several backends and report differences",
                       description="Send the same requests through the plugin on each backend (default: every "
                                   "available one) and compare actions, headers, bodies, local responses, callouts, "
                                   "logs and metrics with the first backend. Exit status 1 when they differ, 0 when "
                                   "they agree.")
    d.add_argument("file", metavar="FILE", help="the plugin (.wasm, or .wat text)")
    d.add_argument("--backends", help="comma-separated backend ids (default: every available one)")
    _add_request_options(d)
    d.set_defaults(fn=cmd_diff)
