"""Every environment setting of proxywasm-vm, read in this one module.

Nothing else in the package (nor its tests and benchmarks) reads ``os.environ``
for a ``PWVM_*`` variable or for ``CI``: it asks a function here. Each function
reads the environment when it is called, so a value changed by a test
(``monkeypatch.setenv``) or between two V8 copies is seen by the next caller;
none is on a hot path (each is read when an engine, worker, build or plugin
starts, never per call).

The settings, by who uses them:

========================  ========================================================
variable                  meaning (function)
========================  ========================================================
``PWVM_CACHE_DIR``        where compiled modules and native shims are kept
                          (:func:`cache_dir`); else ``$XDG_CACHE_HOME/proxywasm-vm``,
                          else ``~/.cache/proxywasm-vm``
``PWVM_WORKER_PYTHON``    the interpreter of worker processes (:func:`worker_python`)
``PWVM_REMOTE_HOST``      ``0``: a Proxy-Wasm plugin on a worker engine keeps its
                          host in this process (:func:`remote_host_enabled`)
``PWVM_CHANNEL_NO_HELPER``  set: workers talk without the compiled wake-up helper
                          (:func:`channel_helper_disabled`)
``PWVM_GUARD_NO_HELPER``  set: a wasmer worker arms its calls' limits from Python, without
                          the compiled helper (:func:`guard_helper_disabled`)
``PWVM_V8_FLAGS``         extra V8 flags, read when a V8 copy starts (:func:`v8_flags`)
``PWVM_LIBNODE_PREFIX``   a ``usr``-style prefix holding libnode (:func:`libnode_prefix`)
``PWVM_WASMTIME_LIBRARY``  a ``libwasmtime.so`` to use instead of the wheel's
                          (:func:`wasmtime_library`)
``CI``                    ``true``/``1``/``yes``: running in CI, where every backend is
                          required (:func:`in_ci`)
``PWVM_BACKENDS``         tests and benchmarks: the backends to run (:func:`selected_backends`)
``PWVM_BENCH_CHECK``      benchmarks: ``1`` makes a missed speed target fail the run
                          (:func:`bench_check`)
``PWVM_TIMINGS_DIR``      tests: where measured latencies are appended (:func:`timings_dir`)
``PWVM_FUZZ_SCALE``       tests: how many times the default number of mutated modules
                          the fuzz tests try (:func:`fuzz_scale`)
``PWVM_FUZZ_SEED``        tests: other seeds for the fuzz tests (:func:`fuzz_seed`)
========================  ========================================================
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = [
    "bench_check", "cache_dir", "channel_helper_disabled", "fuzz_scale", "fuzz_seed", "guard_helper_disabled",
    "in_ci", "libnode_prefix", "remote_host_enabled", "selected_backends", "timings_dir", "v8_flags",
    "wasmtime_library", "worker_python",
]


def _get(name: str) -> str:
    """The variable's value, ``""`` when unset."""
    return os.environ.get(name, "")


def cache_dir() -> Path:
    """The cache folder: ``$PWVM_CACHE_DIR`` as given, else ``proxywasm-vm`` under
    ``$XDG_CACHE_HOME`` (or ``~/.cache``). Compiled modules (:meth:`Module.cached`, the
    default ``EngineConfig.cache_dir``), built native shims (``<cache>/native``) and the
    wasmer worker interpreter's record live there."""
    own = _get("PWVM_CACHE_DIR")
    if own:
        return Path(own)
    return Path(_get("XDG_CACHE_HOME") or Path.home() / ".cache") / "proxywasm-vm"


def worker_python() -> str | None:
    """``$PWVM_WORKER_PYTHON``: the interpreter worker processes run under, for every backend
    (the engine option ``worker_python`` overrides it); ``None`` when unset (each backend's
    default: this interpreter, or the one the backend asks for, see ``Backend.worker_python``)."""
    return _get("PWVM_WORKER_PYTHON") or None


def remote_host_enabled() -> bool:
    """``$PWVM_REMOTE_HOST`` (default ``1``): whether a Proxy-Wasm plugin on a worker engine may
    run with its host in the worker; ``0`` keeps the host here (every host call crosses)."""
    return _get("PWVM_REMOTE_HOST") != "0"


def channel_helper_disabled() -> bool:
    """``$PWVM_CHANNEL_NO_HELPER`` set (to anything): worker channels run without their compiled
    wake-up helper (eventfd-only wake-ups, as where no C compiler is found)."""
    return bool(_get("PWVM_CHANNEL_NO_HELPER"))


def guard_helper_disabled() -> bool:
    """``$PWVM_GUARD_NO_HELPER`` set (to anything): a wasmer worker makes the system calls that arm
    and disarm each call's deadline and memory cap from Python (as where no C compiler is found),
    not through its compiled helper (``backends/wasmer/_guard.c``)."""
    return bool(_get("PWVM_GUARD_NO_HELPER"))


def v8_flags() -> str:
    """``$PWVM_V8_FLAGS``: V8 flags appended to the defaults when a V8 copy starts (``""``: none)."""
    return _get("PWVM_V8_FLAGS")


def libnode_prefix() -> str | None:
    """``$PWVM_LIBNODE_PREFIX``: a ``usr``-style prefix searched first for libnode's headers and
    library when the V8 shim is built; ``None`` when unset."""
    return _get("PWVM_LIBNODE_PREFIX") or None


def wasmtime_library() -> str | None:
    """``$PWVM_WASMTIME_LIBRARY``: a ``libwasmtime.so`` loaded instead of the one in the ``wasmtime``
    wheel; ``None`` when unset."""
    return _get("PWVM_WASMTIME_LIBRARY") or None


def in_ci() -> bool:
    """Whether this runs in CI: ``$CI`` is ``true``, ``1`` or ``yes`` (any case). There every
    backend is required (a missing one fails its tests instead of skipping them) and property
    tests run a fixed set of examples."""
    return _get("CI").strip().lower() in ("true", "1", "yes")


def selected_backends() -> list[str] | None:
    """``$PWVM_BACKENDS`` (comma-separated backend ids): the backends the tests and benchmarks
    run; ``None`` when unset or empty (every registered one)."""
    names = [n.strip() for n in _get("PWVM_BACKENDS").split(",") if n.strip()]
    return names or None


def bench_check() -> bool:
    """``$PWVM_BENCH_CHECK=1``: a missed speed target fails the benchmark run (default: reported only)."""
    return _get("PWVM_BENCH_CHECK") == "1"


def timings_dir() -> Path:
    """``$PWVM_TIMINGS_DIR``: where tests append the latencies they measure (never assert);
    default ``pwvm_timings`` in the temporary folder."""
    return Path(_get("PWVM_TIMINGS_DIR") or os.path.join(tempfile.gettempdir(), "pwvm_timings"))


def fuzz_scale() -> int:
    """``$PWVM_FUZZ_SCALE`` (default 1, at least 1): the fuzz tests try this many times their
    default number of mutated modules."""
    return max(1, int(_get("PWVM_FUZZ_SCALE") or "1"))


def fuzz_seed() -> str | None:
    """``$PWVM_FUZZ_SEED``: run the fuzz tests from other seeds than the default ones; ``None`` when unset."""
    return _get("PWVM_FUZZ_SEED") or None
