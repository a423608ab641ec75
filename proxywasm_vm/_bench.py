"""The engine of ``pwvm bench``: run workloads on runners, interleaved, and report.

A *runner* is a backend id (``"wasmtime"``, ``"v8"``, ``"wasmtime@process"``
...) or the external baseline ``"wasmtime-py"``. Every (workload, runner) cell
is prepared first; then the timed repeats go round all cells, alternating the
order, so that drift of the machine (other load, frequency changes) reaches
every runner alike. Each sample is seconds per unit operation (or bytes, for
memory workloads).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ._engine import Engine
from ._errors import BackendUnavailable

__all__ = ["BASELINE", "Cell", "BenchResult", "run_bench", "MEMORY_WORKLOADS", "TARGETS", "Target", "judge_targets",
           "RATIOS", "Ratio", "RatioValue", "ratios"]

BASELINE = "wasmtime-py"
#: Workloads that measure bytes rather than seconds.
MEMORY_WORKLOADS = ("rss_per_vm",)


@dataclass
class Cell:
    """The samples of one (workload, runner) pair."""

    workload: str
    runner: str
    unit: str
    samples: list[float] = field(default_factory=list)
    error: str = ""
    #: Request workloads: single-request latencies (seconds), timed one by one.
    latencies: list[float] = field(default_factory=list)
    #: Request workloads: what the plugin did instead of passing the probe request through
    #: (``"answered locally with 401"``), or ``""`` when it passed it through.
    not_passed: str = ""
    #: The cell was measured (``False``: an error, or a request that did not pass through
    #: and was not timed).
    timed: bool = True

    @property
    def summary(self) -> str:
        """One line saying why the cell has no numbers, or ``""``."""
        if self.error:
            return self.error.strip().splitlines()[0] if self.error.strip() else "error"
        if not self.timed:
            return f"not timed: the plugin {self.not_passed}"
        if not self.samples:
            return "no sample"
        return ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of single-request latency."""
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]

    @property
    def requests_per_second(self) -> float:
        """Sustained rate on one thread: the inverse of the median batch time per request."""
        return 1.0 / self.median if self.samples and self.median > 0 else float("nan")


@dataclass
class BenchResult:
    header: dict[str, Any]
    workloads: list[str]
    runners: list[str]
    cells: list[Cell]
    missing: dict[str, str]
    #: The workloads that send HTTP requests, and the request they send (``describe()``).
    request_workloads: list[str] = field(default_factory=list)
    request: str = ""

    @property
    def failed(self) -> list[Cell]:
        """Cells that hold no measurement: an error, or a request not passed through and not timed."""
        return [c for c in self.cells if c.error or not c.timed or not c.samples]

    def cell(self, workload: str, runner: str) -> Cell | None:
        for c in self.cells:
            if c.workload == workload and c.runner == runner:
                return c
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "ratios": [r.to_json() for r in ratios(self)],
            "missing": self.missing,
            "request": self.request,
            "results": [{"workload": c.workload, "runner": c.runner, "unit": c.unit, "samples": c.samples,
                         "median": c.median if c.samples else None, "error": c.error, "timed": c.timed,
                         **({"passed_through": not c.not_passed, "not_passed_through": c.not_passed}
                            if c.workload in self.request_workloads else {}),
                         **({"latency_seconds": c.latencies,
                             "p50": c.percentile(50), "p90": c.percentile(90), "p99": c.percentile(99),
                             "requests_per_second": c.requests_per_second} if c.latencies else {})}
                        for c in self.cells],
        }


@dataclass(frozen=True)
class Target:
    """A speed goal for one cell: at most ``goal`` seconds per unit, or, with ``versus``,
    at least ``goal`` times faster than that runner's cell of the same workload."""

    workload: str
    runner: str
    goal: float
    versus: str = ""

    def describe(self) -> str:
        if self.versus:
            return f"{self.workload} on {self.runner}: >= {self.goal:g}x {self.versus}"
        return f"{self.workload} on {self.runner}: <= {fmt_value(self.goal, 's')}"


#: The project's speed goals that ``pwvm bench`` can judge from one run (the bench/ suite has more).
TARGETS = (
    Target("call", "wasmtime", 50.0, versus=BASELINE),
    Target("host_call", "wasmtime", 3.0, versus=BASELINE),
    Target("request_c", "wasmtime", 20e-6),
)


def judge_targets(result: BenchResult) -> list[tuple[Target, float, bool]]:
    """``(target, measured, met)`` for each target whose cells this run measured: the measured
    value is a ratio for a target with ``versus``, else seconds per unit."""
    out = []
    for t in TARGETS:
        cell = result.cell(t.workload, t.runner)
        if cell is None or not cell.samples:
            continue
        if t.versus:
            other = result.cell(t.workload, t.versus)
            if other is None or not other.samples:
                continue
            ratio = other.median / cell.median
            out.append((t, ratio, ratio >= t.goal))
        else:
            out.append((t, cell.median, cell.median <= t.goal))
    return out


@dataclass(frozen=True)
class Ratio:
    """One row of the ratio report: the median of cell ``top`` divided by the median of cell
    ``bottom`` (each a ``(workload, runner)`` pair), against a goal: at least ``goal`` when
    ``at_least`` (a speed-up), else at most ``goal``; ``goal`` 0 means none is set.

    Reported (table and ``--json``), never judged by ``--check`` nor asserted in tests: a ratio
    of two timings moves with the machine's load."""

    name: str
    top: tuple[str, str]
    bottom: tuple[str, str]
    goal: float = 0.0
    at_least: bool = False
    unit: str = "×"

    def describe_goal(self) -> str:
        if not self.goal:
            return ""
        return f"{'≥' if self.at_least else '≤'} {self.goal:g}{self.unit}"


@dataclass(frozen=True)
class RatioValue:
    """A :class:`Ratio` as one run measured it: ``value`` is ``None`` when a cell was not measured."""

    ratio: Ratio
    value: float | None

    @property
    def met(self) -> bool | None:
        if self.value is None or not self.ratio.goal:
            return None
        return self.value >= self.ratio.goal if self.ratio.at_least else self.value <= self.ratio.goal

    def to_json(self) -> dict[str, Any]:
        r = self.ratio
        return {"name": r.name, "value": self.value, "unit": r.unit.strip(),
                "numerator": {"workload": r.top[0], "runner": r.top[1]},
                "denominator": {"workload": r.bottom[0], "runner": r.bottom[1]},
                "goal": r.goal or None, "goal_is": ("at least" if r.at_least else "at most") if r.goal else None,
                "met": self.met}


def _speedup(workload: str, goal: float) -> Ratio:
    return Ratio(f"{workload}: wasmtime-py / wasmtime", (workload, BASELINE), (workload, "wasmtime"), goal, True)


#: The ratios of issue 16's table, each computed from two cells of the same run (so both
#: saw the same machine load). Goals are the issue's; rows whose cells a run did not
#: measure are left out of the table (``value`` ``None`` in the JSON).
RATIOS: tuple[Ratio, ...] = (
    _speedup("call", 100.0),            # a call into wasm
    _speedup("host_call", 4.0),         # a host call out of wasm
    _speedup("host_read_100", 8.0),     # a host function reading 100 guest bytes
    # the request cycle in "calls' worth": how many bare calls into wasm it costs
    Ratio("request_c / call, wasmtime", ("request_c", "wasmtime"), ("call", "wasmtime"), 24.0, unit=" calls"),
    *(Ratio(f"{w} / request_c, {r}", (w, r), ("request_c", r), goal)
      for r in ("wasmtime", "v8")
      for w, goal in (("request_gcore", 2.0), ("request_solo", 2.0), ("request_go", 3.0))),
    *(Ratio(f"{w}: {r}@process / {r}", (w, f"{r}@process"), (w, r), goal)
      for r in ("wasmtime", "v8") for w, goal in (("request_c", 0.0), ("request_go", 2.0))),
    # wasmer runs in its worker process: compared with the other runtime in one
    Ratio("request_c: wasmer / wasmtime@process", ("request_c", "wasmer"), ("request_c", "wasmtime@process"), 1.0),
    Ratio("request_go: wasmer / wasmtime@process", ("request_go", "wasmer"), ("request_go", "wasmtime@process")),
    # issue 16: a worker engine driven from 8 threads at once (streams of one plugin) makes at least
    # the requests one thread makes ("8t / 1t": the 8-thread rate over the 1-thread rate, this run)
    *(Ratio(f"request_c 8t / 1t, {r}", ("request_c", r), ("request_c_8t", r), 1.0, True)
      for r in ("wasmtime@process", "v8@process", "wasmer")),
    # V8's cost per VM (a store and an instance, the memory each live one holds) against wasmtime's,
    # and whether loading a module from the compiled cache pays against compiling it again
    Ratio("instantiate: v8 / wasmtime", ("instantiate", "v8"), ("instantiate", "wasmtime"), 10.0),
    Ratio("rss_per_vm: v8 / wasmtime", ("rss_per_vm", "v8"), ("rss_per_vm", "wasmtime"), 10.0),
    Ratio("cached_load_500k / compile_500k, v8", ("cached_load_500k", "v8"), ("compile_500k", "v8"), 1.0),
)


def ratios(result: BenchResult) -> list[RatioValue]:
    """Every :data:`RATIOS` row for ``result``: a value where both of its cells were measured."""
    out = []
    for r in RATIOS:
        top, bottom = result.cell(*r.top), result.cell(*r.bottom)
        value = None
        if top is not None and bottom is not None and top.samples and bottom.samples and bottom.median > 0:
            value = top.median / bottom.median
        out.append(RatioValue(r, value))
    return out


def all_workloads() -> list[str]:
    from ._workloads import WORKLOADS

    return list(WORKLOADS) + list(MEMORY_WORKLOADS)


def calibrate(run: Callable[[], Any], target: float) -> int:
    """How many invocations of ``run`` take about ``target`` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= 1 << 20:
            return max(1, int(n * target / max(dt, 1e-9)))
        n *= 4


#: ``progress(done, total, what)``: ``what`` names the step (``"preparing call on v8"``).
Progress = Callable[[int, int, str], None]


def run_bench(runners: Sequence[str], workloads: Sequence[str], *, repeats: int = 7, quick: bool = False,
              baseline: bool = True, progress: Progress | None = None,
              extra: dict[str, Any] | None = None, time_stopped: bool = False,
              request: Any = None) -> BenchResult:
    """Measure ``workloads`` on ``runners`` (backend ids); see the module docstring.

    ``extra`` adds workloads by name (a user's plugin), taking precedence; ``request``
    (a :class:`~proxywasm_vm._workloads.RequestSpec`) is what they send, for the report.
    Each request workload first sends one probe request: a plugin that does not pass it
    through (answers it locally, pauses or resets it) is reported in :attr:`Cell.not_passed`
    and not timed, unless ``time_stopped``.
    """
    from ._workloads import BASELINES, DEFAULT_REQUEST, WORKLOADS, rss_per_vm

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    WORKLOADS = {**WORKLOADS, **(extra or {})}
    target = 0.01 if quick else 0.05
    engines: dict[str, Engine] = {}
    missing: dict[str, str] = {}
    steps = len(runners) + len(workloads) * (len(runners) + int(baseline))
    step = 0

    def tell(what: str) -> None:
        nonlocal step
        if progress:
            progress(step, steps, what)
        step += 1

    for r in runners:
        tell(f"starting {r}")
        try:
            engines[r] = Engine(r)
        except BackendUnavailable as e:
            missing[r] = str(e)
    names = list(engines) + ([BASELINE] if baseline else [])

    plans: list[tuple[Cell, Callable[[], float]]] = []
    cells: list[Cell] = []
    for w in workloads:
        for r in names:
            tell(f"preparing {w} on {r}")
            if w in MEMORY_WORKLOADS:
                if r == BASELINE:
                    continue
                cell = Cell(w, r, "B/vm")
                # 200 VMs even with --quick: 50 could all fit in memory the runtime kept from the
                # workloads before (V8 in-process then measured 0-4 KB/VM instead of ~8-17 KB)
                plans.append((cell, (lambda e: (lambda: rss_per_vm(e, 200)))(engines[r])))
                cells.append(cell)
                continue
            if r == BASELINE and w not in BASELINES:
                continue
            cell = Cell(w, r, "s/" + WORKLOADS[w].unit)
            cells.append(cell)
            try:
                op = BASELINES[w]() if r == BASELINE else WORKLOADS[w].setup(engines[r])
                if op.probe is not None:
                    cell.not_passed = op.probe()
                    if cell.not_passed and not time_stopped:
                        cell.timed = False
                        continue
                op.run()  # warm-up
                number = calibrate(op.run, target)
            except Exception as e:  # a workload one runner cannot run is reported, not fatal
                cell.error = f"{type(e).__name__}: {e}"
                cell.timed = False
                continue

            def sample(op: Any = op, number: int = number) -> float:
                t0 = time.perf_counter()
                for _ in range(number):
                    op.run()
                return (time.perf_counter() - t0) / (number * op.units)

            plans.append((cell, sample))
            if WORKLOADS[w].group == "request":
                def latencies(op: Any = op, cell: Cell = cell, n: int = 200 if quick else 2000) -> float:
                    # Single requests, each timed on its own, for the latency percentiles.
                    clock = time.perf_counter_ns
                    for _ in range(n):
                        t0 = clock()
                        op.run()
                        cell.latencies.append((clock() - t0) * 1e-9)
                    return float("nan")

                plans.append((cell, latencies))
    total = repeats * len(plans)
    done = 0
    for rep in range(repeats):
        order = plans if rep % 2 == 0 else list(reversed(plans))
        for cell, measure in order:
            if progress:
                progress(done, total, f"round {rep + 1}/{repeats}: {cell.workload} on {cell.runner}")
            try:
                value = measure()
                if value == value:  # NaN: a latency pass, which records its own samples
                    cell.samples.append(value)
            except Exception as e:
                cell.error = f"{type(e).__name__}: {e}"
            done += 1
    if progress:
        progress(total, total, "done")
    request_workloads = [w for w in workloads if w in WORKLOADS and WORKLOADS[w].group == "request"]
    return BenchResult(machine_header(engines), list(workloads), names, cells, missing, request_workloads,
                       (request or DEFAULT_REQUEST).describe() if request_workloads else "")


def machine_header(engines: dict[str, Engine]) -> dict[str, Any]:
    """What a reader needs to judge the numbers: machine, OS, Python, runtime versions."""
    return {
        "machine": f"{platform.machine()}, {_cpu_model()}, {os.cpu_count() or 1} cores",
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtimes": {n: e.backend.version() for n, e in engines.items()},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def fmt_value(v: float, unit: str) -> str:
    """A human-readable value: seconds scaled to s/ms/µs/ns, bytes to KiB/MiB."""
    if v != v:
        return "-"
    scale: float
    if unit.startswith("B"):
        for u, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if v >= scale:
                return f"{_num(v / scale)} {u}"
        return f"{v:.0f} B"
    for u, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if v >= scale:
            return f"{_num(v / scale)} {u}"
    return f"{v * 1e9:.0f} ns"


def _num(x: float) -> str:
    """Three significant digits, never an exponent (``1023.9`` -> ``"1024"``)."""
    text = f"{x:.3g}"
    return f"{x:.0f}" if "e" in text else text


def fmt_range(lo: float, hi: float, unit: str) -> str:
    """``"246–248 ns"`` (one unit when both ends share it), else ``"18.8 µs–1.2 ms"``."""
    a, b = fmt_value(lo, unit), fmt_value(hi, unit)
    ua, ub = a.rpartition(" ")[2], b.rpartition(" ")[2]
    if ua == ub:
        return f"{a.rpartition(' ')[0]}–{b}"
    return f"{a}–{b}"


def _tick_formatter(unit: str) -> Any:
    """Axis labels in the units people read: ``100 ns``, ``10 µs``, ``1 ms``; ``8 KiB``."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: fmt_value(v, unit) if v > 0 else "")


def figure(result: BenchResult) -> Any:
    """The chart of :func:`plot` as a matplotlib ``Figure``: a panel per measured workload, a
    bar per runner (median, min..max whiskers) on a log axis labelled in ns/µs/ms (or B/KiB/MiB),
    runner names on the left, the median and its ratio to the fastest on the right. Laid out by
    matplotlib's constrained layout, so no label overlaps another or leaves the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter

    shown = [w for w in result.workloads if any(c.samples for c in result.cells if c.workload == w)]
    cols = min(3, max(1, len(shown)))
    rows = max(1, (len(shown) + cols - 1) // cols)
    bars = max([sum(1 for c in result.cells if c.workload == w) for w in shown] or [1])
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, (0.28 * bars + 1.3) * rows + 0.5), squeeze=False,
                             layout="constrained")
    palette = plt.get_cmap("tab10")
    colors = {r: palette(i % 10) for i, r in enumerate(result.runners)}
    for ax, w in zip(axes.flat, shown):
        cells = [c for c in result.cells if c.workload == w and c.samples]
        unit = cells[0].unit
        memory = unit.startswith("B")
        # A log axis cannot show 0 (a memory workload can measure nothing new): floor it.
        floor = 1.0 if memory else 1e-10
        meds = [max(c.median, floor) for c in cells]
        best = min(meds)
        y = list(range(len(cells)))
        lo = [max(0.0, m - max(min(c.samples), floor)) for c, m in zip(cells, meds)]
        hi = [max(0.0, max(max(c.samples), floor) - m) for c, m in zip(cells, meds)]
        ax.barh(y, meds, xerr=[lo, hi], color=[colors[c.runner] for c in cells], capsize=3)
        ax.set_yticks(y, [c.runner for c in cells], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        # At most ~5 labelled ticks: decades for time; powers of 4 for bytes (8 KiB, 32 KiB, ...).
        ax.xaxis.set_major_locator(LogLocator(base=4.0 if memory else 10.0, numticks=6))
        ax.xaxis.set_major_formatter(_tick_formatter(unit))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=8)
        # The numbers go on a right-hand axis of their own: tick labels, which the layout keeps clear.
        right = ax.secondary_yaxis("right")
        right.set_yticks(y, [fmt_value(m, unit) + ("  fastest" if m == best else f"  {m / best:.1f}×")
                             for m in meds], fontsize=8)
        right.tick_params(length=0)
        ax.set_title(f"{w} (per {unit.split('/', 1)[1]})", fontsize=10)
        failed = [c.runner for c in result.cells if c.workload == w and not c.samples]
        if failed:
            ax.set_xlabel("not measured: " + ", ".join(failed), fontsize=8, wrap=True)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    h = result.header
    fig.suptitle(f"pwvm bench: {h.get('machine', '')}, Python {h.get('python', '')} (lower is better)",
                 fontsize=11)
    return fig


def plot(result: BenchResult, path: str) -> None:
    """Draw :func:`figure` into ``path`` (the file type follows the extension: .png, .svg ...)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'proxywasm-vm[plot]'") from e
    fig = figure(result)
    fig.savefig(path, dpi=110)
    plt.close(fig)
