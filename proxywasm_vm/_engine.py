"""Engines: a backend plus its configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _settings
from ._backend import get_backend, parse_backend
from ._contract import AbstractEngine, Capabilities
from ._store import _DefaultInt

__all__ = ["Engine", "EngineConfig", "DEFAULT_BACKEND", "DEFAULT_MAX_WASM_STACK"]

DEFAULT_BACKEND = "wasmtime"
#: The default ``EngineConfig.max_wasm_stack`` (marked as a default: see :func:`~proxywasm_vm._store.is_default`).
DEFAULT_MAX_WASM_STACK = _DefaultInt(1 << 20)


def _default_cache_dir() -> Path:
    return _settings.cache_dir()


@dataclass(frozen=True)
class EngineConfig:
    """How an engine compiles and runs code. Every field has a safe default.

    - ``deadlines``: allow :attr:`StoreLimits.deadline` (wasmtime: epoch
      interruption, a few percent of run time; V8: a watchdog thread).
    - ``fuel``: allow :attr:`StoreLimits.fuel` (deterministic budgets; slower).
    - ``max_wasm_stack`` (default 1 MiB, :data:`DEFAULT_MAX_WASM_STACK`): bytes of
      native stack wasm may use before a ``STACK_OVERFLOW`` trap, applied on every
      backend that can set it (wasmtime: its engine config; V8: the isolate's stack
      limit, counted from where each call enters wasm). wasmer cannot set it: it
      keeps its own bound and deep recursion still traps with ``STACK_OVERFLOW``
      there; an explicit value on wasmer is an error. ``None``: the runtime's default.
      1 MiB is about 10,000-50,000 frames of real code, and far below the 8 MiB
      stack of Python's threads.
    - ``signals_based_traps``: let the runtime catch out-of-bounds accesses with
      signal handlers (fast). ``False`` uses explicit bounds checks; choose it when
      another library in the process (``faulthandler`` enabled after the engine,
      for example) replaces signal handlers.
    - ``cache_dir``: where :meth:`Module.cached` keeps compiled modules
      (default ``$PWVM_CACHE_DIR`` or ``~/.cache/proxywasm-vm``).
    - ``options``: backend-specific settings, passed through unchanged.
    """

    deadlines: bool = True
    fuel: bool = False
    max_wasm_stack: int | None = DEFAULT_MAX_WASM_STACK
    signals_based_traps: bool = True
    cache_dir: Path | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def fingerprint(self) -> str:
        """A string that changes whenever compiled code would differ."""
        return f"d{int(self.deadlines)}f{int(self.fuel)}s{self.max_wasm_stack}t{int(self.signals_based_traps)}o{sorted(self.options)}"


class Engine(AbstractEngine):
    """A backend with its configuration; compiles modules and creates stores.

    ``Engine()`` uses the default backend (wasmtime); ``Engine("v8")`` picks one
    by name. ``isolation`` chooses where the runtime runs: ``"in-process"``, or
    ``"process"`` (a worker process, possibly another Python: see
    :mod:`proxywasm_vm._isolation`); ``None`` is the backend's default (in-process,
    except wasmer on Python >= 3.11). ``Engine("wasmtime@process")`` is the same
    as ``Engine("wasmtime", isolation="process")``. Engines are thread-safe and
    meant to be long-lived: compile each module once per engine and instantiate
    it in as many stores as needed.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractEngine`.
    """

    def __new__(cls, backend: str = DEFAULT_BACKEND, config: EngineConfig | None = None, *,
                isolation: str | None = None, **options: Any) -> Engine:
        if cls is not Engine:
            return super().__new__(cls)
        cfg = config or EngineConfig()
        if options:
            cfg = EngineConfig(**{**cfg.__dict__, **options})
        base, mode = parse_backend(backend, isolation)  # the one parse of "runtime@isolation"
        return get_backend(base if mode is None else f"{base}@{mode}").new_engine(cfg)

    def __repr__(self) -> str:
        return f"<Engine {self.backend.name} {self.backend.version()}>"

    @property
    def name(self) -> str:
        """The backend's name, e.g. ``"wasmtime"``."""
        return self.backend.name

    @property
    def capabilities(self) -> Capabilities:
        """The backend's capabilities."""
        return self.backend.capabilities()

    @property
    def cache_dir(self) -> Path:
        """The folder of this engine's compiled-module cache."""
        root = self.config.cache_dir or _default_cache_dir()
        return Path(root) / f"{self.backend.name}-{self.backend.version()}"
