"""Fixtures of the benchmark suites.

Results are collected in ``RESULTS`` as seconds per unit operation (the fastest round), keyed by
(workload, runner), so that the target checks at the end of each module
compare numbers measured in the same run.

Speed targets are *reported*, not asserted: :func:`target` records each one and the
session ends with a table of them. A benchmark run on a busy machine measures the
machine as much as the code, so a missed target fails the run only when asked to,
with ``--check-targets`` (or ``PWVM_BENCH_CHECK=1``); ``bash ci/test.sh`` reports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from proxywasm_vm import BackendUnavailable, Engine, backend_names
from proxywasm_vm._bench import calibrate
from proxywasm_vm._settings import bench_check, in_ci, selected_backends

RESULTS: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class Target:
    """One speed target, as measured in this run."""

    name: str
    measured: str
    goal: str
    met: bool


TARGETS: list[Target] = []


def target(name: str, met: bool, measured: str, goal: str) -> bool:
    """Record a speed target (``met`` or not) for the end-of-session report; returns ``met``."""
    TARGETS.append(Target(name, measured, goal, bool(met)))
    return met


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--check-targets", action="store_true", default=False,
                     help="fail the run when a speed target is missed (default: report only)")


def _checking(config: Any) -> bool:
    return bool(config.getoption("--check-targets")) or bench_check()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not TARGETS:
        return
    tr = terminalreporter
    tr.section("speed targets (measured in this run)")
    width = max(len(t.name) for t in TARGETS)
    for t in TARGETS:
        tr.write_line(f"{'met   ' if t.met else 'MISSED'}  {t.name:<{width}}  {t.measured}  (goal {t.goal})")
    missed = sum(not t.met for t in TARGETS)
    mode = "these fail the run (--check-targets)" if _checking(config) else "reported, not enforced"
    tr.write_line(f"{len(TARGETS) - missed} met, {missed} missed: {mode}")


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _checking(session.config) and any(not t.met for t in TARGETS) and exitstatus == 0:
        session.exitstatus = 1


def backends() -> list[str]:
    """The backends to benchmark: ``$PWVM_BACKENDS`` or every registered one."""
    return selected_backends() or backend_names()


_ENGINES: dict[str, Engine] = {}


def engine_for(name: str) -> Engine:
    """A shared engine per backend. A missing backend fails in CI and is skipped elsewhere.

    (Plain parametrisation plus this cache, rather than a parametrised session
    fixture, keeps the tests in file order: the target checks run last.)
    """
    if name not in _ENGINES:
        try:
            _ENGINES[name] = Engine(name)
        except BackendUnavailable as e:
            if in_ci():
                pytest.fail(f"CI requires every backend: {e}")
            pytest.skip(str(e))
    return _ENGINES[name]


def measure(benchmark: Any, key: tuple[str, str], run: Callable[[], Any], units: int = 1,
            rounds: int = 15, target: float = 0.005) -> float:
    """Benchmark ``run`` and record the median seconds per unit under ``key``."""
    run()
    iterations = calibrate(run, target)
    benchmark.pedantic(run, rounds=rounds, iterations=iterations, warmup_rounds=1)
    # The minimum round: the least disturbed by other load on the machine, so ratios
    # between cells measured at different moments stay meaningful.
    per_unit = benchmark.stats.stats.min / units
    RESULTS[key] = per_unit
    benchmark.extra_info["seconds_per_unit"] = per_unit
    return per_unit


def paired_min(ops: list[Any], rounds: int = 21, target: float = 0.005) -> list[float]:
    """Fastest seconds per unit of each operation, timed in alternating rounds.

    Alternating the operations round by round exposes them to the same machine
    conditions, so their ratio holds even while other work shares the cores.
    """
    plans = []
    for op in ops:
        op.run()
        plans.append((op, calibrate(op.run, target)))
    best = [float("inf")] * len(ops)
    for r in range(rounds):
        order = range(len(plans)) if r % 2 == 0 else reversed(range(len(plans)))
        for i in order:
            op, n = plans[i]
            t0 = time.perf_counter()
            for _ in range(n):
                op.run()
            best[i] = min(best[i], (time.perf_counter() - t0) / (n * op.units))
    return best
