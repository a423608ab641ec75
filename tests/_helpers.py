"""Helpers for test files that name their backends themselves (the parametrised suites use the
fixtures of ``conftest.py``, which takes its backend rule from here)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import proxywasm_vm as pw


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def load_backend(name: str) -> pw.Backend:
    """``get_backend(name)``, or skip (locally) / fail (in CI) with how to enable it."""
    try:
        return pw.get_backend(name)
    except pw.BackendUnavailable as e:
        reason = " ".join(str(e).split())
        if in_ci():
            pytest.fail(f"CI=true requires every backend: {reason}", pytrace=False)
        pytest.skip(reason)


def engine_or_skip(name: str) -> pw.Engine:
    """``Engine(name)`` under the same rule as :func:`load_backend`."""
    load_backend(name)
    return pw.Engine(name)


def run_python(code: str, *args: str, timeout: float = 240) -> str:
    """Run ``code`` in a fresh interpreter (``sys.argv[1:] == args``) and return its output.

    For tests that could crash the process (signal handlers, misuse of a backend): a crash
    then fails that one test with its exit status instead of ending the run. ``code`` must
    print ``ok`` last.
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (
        f"child exited with status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def loaded_copies(file_prefix: str) -> int:
    """How many copies of a shared library this process has loaded (file name from its start):
    each copy maps its file once at offset 0."""
    with open("/proc/self/maps") as f:
        rows = [line.split() for line in f]
    return sum(1 for r in rows if len(r) == 6 and os.path.basename(r[5]).startswith(file_prefix)
               and int(r[2], 16) == 0)
