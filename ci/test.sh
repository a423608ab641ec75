#!/usr/bin/env bash
# Set up everything (idempotently) and run the whole test suite, then the
# benchmark suite, whose speed targets are measured against baselines in the
# same run and reported (not enforced: a busy machine must not turn CI red;
# `bash ci/bench.sh --check` or PWVM_BENCH_CHECK=1 enforce them). Extra
# arguments go to the test run's pytest.
#
# With CI=true every backend is required: a missing one fails its tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash ci/setup.sh --all
# The committed test plugins must be what their sources build to.
PWVM_PLUGIN_VENV="$ROOT/.venv" bash ci/build_plugins.sh --check

# The package's public API is typed (py.typed): keep it so.
.venv/bin/python -m mypy
# The layers import one way only (pyproject's [tool.importlinter] contracts).
.venv/bin/lint-imports --no-cache

# What a pip user gets: the wheel, installed on Python 3.11 and a newer one, runs with no compiler.
bash ci/test_wheel.sh

PYTEST=(.venv/bin/python -m pytest)
status=0
# (the wheel test of tests/test_packaging.py runs ci/test_wheel.sh: done just above)
"${PYTEST[@]}" tests -q -p no:cacheprovider \
  --deselect tests/test_packaging.py::test_installed_wheel_runs_wasmtime_without_a_compiler "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
if [ "$status" -ne 0 ]; then echo "test suite failed (pytest exit $status)"; exit "$status"; fi

# (--capture=sys: what native code writes to stderr, such as a runtime's fatal error message,
# reaches the log even when it takes the process down)
"${PYTEST[@]}" bench -q -p no:cacheprovider --capture=sys --benchmark-columns=median,min,max,rounds \
  --benchmark-sort=name || status=$?
if [ "$status" -ne 0 ]; then echo "the benchmark suite failed (pytest exit $status)"; exit "$status"; fi
