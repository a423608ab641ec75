"""``pwvm bench`` in-process: the pass-through probe on every backend, the request it sends,
the table at 80 columns, the plot's axes, progress. No timing is asserted anywhere."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm._bench import BASELINE, BenchResult, Cell, figure, fmt_range, fmt_value, run_bench
from proxywasm_vm._workloads import (DEFAULT_REQUEST, REQUEST_HEADERS, PluginFailed, RequestSpec, load_plugin,
                                     plugin_path, probe_request)

# ---- the probe: did the plugin pass the request through? -------------------------------


def test_probe_passes_a_plugin_that_forwards(engine: pw.Engine) -> None:
    assert probe_request(load_plugin(engine, plugin_path("c_bench"), "")) == ""


def test_probe_reports_a_local_401_and_passes_the_authorised_request(engine: pw.Engine) -> None:
    plugin = load_plugin(engine, plugin_path("c_http_all"), "", b"test=auth")
    assert probe_request(plugin) == "answered locally with 401 (pwvm_unauthorized)"
    authorised = RequestSpec(headers=(("authorization", "Bearer secret"),))
    assert probe_request(plugin, authorised) == ""
    wrong = RequestSpec(headers=(("authorization", "Bearer nope"),))
    assert probe_request(plugin, wrong) == "answered locally with 403 (pwvm_forbidden)"


def test_probe_reports_a_pause_the_plugin_never_resumes(engine: pw.Engine) -> None:
    plugin = load_plugin(engine, plugin_path("wat_hold"), "")
    assert probe_request(plugin) == "paused in proxy_on_request_headers and did not resume"


def test_probe_raises_when_the_plugin_fails(engine: pw.Engine) -> None:
    plugin = load_plugin(engine, plugin_path("c_bad_guest"), "", b"fail_in=request_headers")
    with pytest.raises(PluginFailed, match="the plugin failed in proxy_on_request_headers"):
        probe_request(plugin)


def test_a_request_that_is_not_passed_through_is_not_timed_unless_asked(engine: pw.Engine) -> None:
    from proxywasm_vm._workloads import user_plugin_workloads

    extra = user_plugin_workloads(plugin_path("c_http_all"), "", b"test=auth")
    result = run_bench([engine.name], ["plugin_request"], repeats=1, quick=True, baseline=False, extra=extra)
    (cell,) = result.cells
    assert not cell.timed and not cell.samples and not cell.error
    assert cell.summary == "not timed: the plugin answered locally with 401 (pwvm_unauthorized)"
    assert result.failed == [cell]
    row = result.to_json()["results"][0]
    assert row["passed_through"] is False and row["timed"] is False
    timed = run_bench([engine.name], ["plugin_request"], repeats=1, quick=True, baseline=False, extra=extra,
                      time_stopped=True)
    (cell,) = timed.cells
    assert cell.timed and len(cell.samples) == 1 and cell.not_passed and not timed.failed


# ---- the request ----------------------------------------------------------------------------

def test_the_default_request_is_the_bundled_workloads_request() -> None:
    assert DEFAULT_REQUEST.header_list() == REQUEST_HEADERS
    assert DEFAULT_REQUEST.describe() == "GET /bench"


def test_a_request_spec_replaces_defaults_and_keeps_pseudo_headers_first() -> None:
    spec = RequestSpec(method="POST", path="/login", body=b"user=a",
                       headers=(("user-agent", "mine"), (":authority", "api.test"), ("x-extra", "1")))
    headers = spec.header_list()
    names = [k for k, _ in headers]
    assert names[:4] == [":method", ":path", ":scheme", ":authority"]
    assert dict(headers)[":method"] == "POST" and dict(headers)[":path"] == "/login"
    assert dict(headers)[":authority"] == "api.test" and names.count(":authority") == 1
    assert dict(headers)["user-agent"] == "mine" and names.count("user-agent") == 1
    assert dict(headers)["content-length"] == "6" and ("x-extra", "1") in headers
    assert spec.describe() == "POST /login (3 extra headers, 6-byte body)"


def test_a_request_body_reaches_the_plugin(engine: pw.Engine) -> None:
    """The body is sent (c_http_all's body test upper-cases it and passes the request through)."""
    from proxywasm_vm._workloads import request_cycle

    plugin = load_plugin(engine, plugin_path("c_http_all"), "", b"test=body")
    spec = RequestSpec(method="POST", body=b"hello world")
    assert probe_request(plugin, spec) == ""
    seen = []
    original = plugin.http_stream

    def spy() -> Any:
        stream = original()
        seen.append(stream)
        return stream

    plugin.http_stream = spy  # type: ignore[method-assign]
    request_cycle(plugin, spec)()
    assert seen[0].request.body == b"HELLO WORLD"


# ---- progress -------------------------------------------------------------------------------

def test_run_bench_reports_progress_naming_each_step() -> None:
    calls: list[tuple[int, int, str]] = []
    run_bench(["wasmtime"], ["call"], repeats=2, quick=True, baseline=False,
              progress=lambda done, total, what: calls.append((done, total, what)))
    whats = [w for _, _, w in calls]
    assert "starting wasmtime" in whats and "preparing call on wasmtime" in whats
    assert "round 1/2: call on wasmtime" in whats and "round 2/2: call on wasmtime" in whats
    assert calls[-1] == (2, 2, "done")
    timing = [(d, t) for d, t, w in calls if w.startswith("round")]
    assert [d for d, _ in timing] == sorted(d for d, _ in timing) and all(d < t for d, t in timing)


def test_run_bench_refuses_fewer_than_one_repeat() -> None:
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        run_bench(["wasmtime"], ["call"], repeats=0)


# ---- the table at 80 columns ------------------------------------------------------------------

RUNNERS = ["wasmtime", "v8", "wasmer", "wasm3", "wasmtime@namespace", "wasmtime@process", "v8@namespace",
           "v8@process"]


def _result() -> BenchResult:
    """Every runner on the workloads with the longest names and widest values, one failed cell,
    one request not passed through (not timed), one timed anyway, one absent backend."""
    cells = []
    spans = {"cached_load_500k": (1.02e-3, "s/module"), "memory_write_1k": (232e-9, "s/op"),
             "plugin_request": (31.3e-6, "s/request"), "rss_per_vm": (8.02 * 1024, "B/vm"),
             "compile_500k": (5.58e-3, "s/module")}
    for w, (v, unit) in spans.items():
        for i, r in enumerate(RUNNERS + [BASELINE]):
            m = v * (1 + 37.7 * i)
            cell = Cell(w, r, unit, [m * 0.93, m, m * 11.3])
            if w == "plugin_request":
                cell.latencies = [m * 0.9, m, m * 1.5, m * 3]
                if r == "v8@process":
                    cell.samples, cell.latencies, cell.timed = [], [], False
                    cell.not_passed = "answered locally with 401 (pwvm_unauthorized)"
                if r == "wasm3":
                    cell.not_passed = "paused in proxy_on_request_headers and did not resume"
            if w == "compile_500k" and r == "wasmer":
                cell.samples, cell.timed = [], False
                cell.error = "RuntimeError: a long error message " + "that goes on " * 12 + "\nand a second line"
            cells.append(cell)
    header = {"machine": "x86_64, AMD EPYC 7B13 64-Core Processor, 2 cores", "python": "3.11.7",
              "runtimes": {r: "10.2.154.26-node.37" if r.startswith("v8") else "50.0.1" for r in RUNNERS}}
    return BenchResult(header, list(spans), RUNNERS + [BASELINE], cells,
                       {"wasmtime@elsewhere": "backend 'wasmtime@elsewhere' is unavailable: " + "why " * 30},
                       ["plugin_request"], "POST /login (1 extra header, 6-byte body)")


def _render(result: BenchResult, width: int = 80) -> str:
    from rich.console import Console

    from proxywasm_vm._cli import _print_table

    console = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    _print_table(result, console)
    return console.export_text()


def test_the_table_fits_80_columns_with_one_line_per_cell() -> None:
    result = _result()
    text = _render(result)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    table_lines = lines[:next(i for i, line in enumerate(lines) if line.startswith("lower is better"))]
    for c in result.cells:
        # each cell is one line: its runner, and its median (or why it has none), on the same line
        shown = ("error" if c.error else "not timed") if c.summary else fmt_value(c.median, c.unit)
        row = [line for line in table_lines
               if re.search(rf"\s{re.escape(c.runner)}\s", line) and shown in line]
        assert row, (c.workload, c.runner, shown)
    # ... and rows do not wrap: every line of the main table names a runner or a workload, or is a rule
    head = next(i for i, line in enumerate(table_lines) if "workload" in line and "runner" in line)
    for line in table_lines[head + 1:]:
        if line.strip() and not set(line.strip()) <= set("─"):
            assert any(r in line for r in RUNNERS + [BASELINE, "wasmtime@elsewhere"]) or "per " in line, line


def test_a_narrower_terminal_drops_the_range_column_instead_of_cutting_values() -> None:
    text = _render(_result(), width=66)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 66
    table = text[:text.index("lower is better")]
    assert "min–max" not in table and "median" in table and "…" not in table
    assert "1.02 ms" in table and "fastest" in table
    assert "min–max" in _render(_result(), width=80)


def test_the_table_says_why_a_cell_has_no_numbers() -> None:
    text = " ".join(_render(_result()).split())  # notes may wrap: compare with spaces collapsed
    assert "compile_500k on wasmer: RuntimeError: a long error message" in text
    assert "and a second line" not in text  # one line per note
    assert "plugin_request on v8@process: not timed: the plugin answered locally with 401 (pwvm_unauthorized)" \
        in text
    assert "plugin_request on wasm3: timed although the plugin paused in proxy_on_request_headers" in text
    assert "--time-stopped" in text
    assert "request sent: POST /login (1 extra header, 6-byte body)" in text
    assert "wasmtime@elsewhere: backend 'wasmtime@elsewhere' is unavailable" in text


def test_the_backends_table_fits_80_columns() -> None:
    from rich.console import Console

    from proxywasm_vm._cli import _print_backends

    from proxywasm_vm._backend import BackendInfo

    rows = pw.available_backends()
    rows.append(BackendInfo("nowhere@process", False, "", None, "a reason " * 12, "a way to enable it " * 6))
    console = Console(width=80, record=True, file=io.StringIO(), highlight=False)
    _print_backends(rows, console)
    lines = console.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for r in rows:
        assert sum(1 for line in lines if re.match(rf"^\s*{re.escape(r.name)}\s", line)) >= 1, r.name
        if r.available:
            assert any(r.name in line and r.version in line for line in lines)


def test_fmt_value_and_range_use_units_people_read() -> None:
    assert [fmt_value(v, "s/call") for v in (353e-9, 4.9e-6, 1.83e-3, 2.5)] == ["353 ns", "4.9 µs", "1.83 ms",
                                                                                 "2.5 s"]
    assert fmt_value(1023.9 * 1024, "B/vm") == "1024 KiB"  # never "1e+03 KiB"
    assert fmt_range(246e-9, 248e-9, "s/call") == "246–248 ns"
    assert fmt_range(18.8e-6, 1.2e-3, "s/call") == "18.8 µs–1.2 ms"


# ---- the plot -------------------------------------------------------------------------------

UNIT_LABEL = re.compile(r"^\d+(\.\d+)? (ns|µs|ms|s|B|KiB|MiB)$")


def _visible_ticks(ax: Any) -> list[Any]:
    lo, hi = sorted(ax.get_xlim())
    return [t.label1 for t in ax.xaxis.get_major_ticks()
            if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]


def test_the_plot_labels_its_axes_in_readable_units_without_overlap_or_clipping() -> None:
    import matplotlib.pyplot as plt

    result = _result()
    fig = figure(result)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        panels = [ax for ax in fig.axes if ax.get_title()]
        measured = [w for w in result.workloads if any(c.samples for c in result.cells if c.workload == w)]
        assert sorted(ax.get_title().split(" (")[0] for ax in panels) == sorted(measured)
        page = fig.bbox
        texts = []
        for ax in panels:
            ticks = _visible_ticks(ax)
            assert len(ticks) >= 2, ax.get_title()
            for t in ticks:
                assert UNIT_LABEL.match(t.get_text()), (ax.get_title(), t.get_text())
            if "rss_per_vm" in ax.get_title():
                assert all(t.get_text().endswith(("B", "KiB", "MiB")) for t in ticks)
            else:
                assert all(t.get_text().endswith(("ns", "µs", "ms", " s")) for t in ticks)
            boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
            for a, b in zip(boxes, boxes[1:]):
                assert a.x1 <= b.x0, f"tick labels overlap in {ax.get_title()}: {ticks}"
            texts += ticks + ax.get_yticklabels() + [ax.title]
        right = [t for ax in panels for child in ax.child_axes for t in child.get_yticklabels() if t.get_text()]
        texts += right  # the right-hand axes with the medians and ratios
        texts.append(fig._suptitle)
        for t in texts:
            box = t.get_window_extent(renderer)
            assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, f"label clipped: {t.get_text()!r}"
            assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, f"label clipped: {t.get_text()!r}"
        shown = [t.get_text() for t in right]
        assert sum(t.endswith("fastest") for t in shown) == len(panels) and any(t.endswith("×") for t in shown)
        assert "1.02 ms  fastest" in shown
        assert any(ax.get_xlabel() == "not measured: wasmer" for ax in panels)
    finally:
        plt.close(fig)
