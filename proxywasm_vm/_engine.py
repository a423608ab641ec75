"""Engines: a backend plus its configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _settings
from ._backend import get_backend, parse_backend
from ._contract import AbstractEngine, Capabilities
from ._errors import FeatureUnsupported
from ._features import WASM2_FEATURES, WasmFeatures
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
    - ``features``: the wasm proposals modules may use (:class:`WasmFeatures`). ``None`` (the
      default) is the Wasm 2.0 profile, narrowed to what the backend can run (wasm3 has no
      reference types nor SIMD); an explicit :class:`WasmFeatures` is applied as
      given, and :class:`FeatureUnsupported` is raised when the engine is made if the backend
      cannot run one of them (``Capabilities.features``). Every module is validated under
      these features before any backend sees it (:mod:`proxywasm_vm._validate`).
    - ``options``: backend-specific settings, passed through unchanged.
    """

    deadlines: bool = True
    fuel: bool = False
    max_wasm_stack: int | None = DEFAULT_MAX_WASM_STACK
    signals_based_traps: bool = True
    cache_dir: Path | None = None
    options: tuple[tuple[str, Any], ...] = ()
    features: WasmFeatures | None = None

    def fingerprint(self) -> str:
        """A string that changes whenever compiled code (or the verdict on a module) would differ."""
        return (f"d{int(self.deadlines)}f{int(self.fuel)}s{self.max_wasm_stack}t{int(self.signals_based_traps)}"
                f"o{sorted(self.options)}" + ("" if self.features is None else f"w{self.features}"))


def _resolve_features(asked: WasmFeatures | None, caps: Capabilities,
                      backend: str) -> tuple[WasmFeatures, frozenset[str]]:
    """(the features in force, the profile's features left off because the runtime cannot run them);
    :class:`FeatureUnsupported` when ``asked`` has one the runtime cannot run."""
    from ._validate import validator_for

    can = caps.features
    if asked is None:
        plan = (WasmFeatures().with_only(WASM2_FEATURES & can), WASM2_FEATURES - can)
    else:
        missing = asked.enabled - can
        if missing:
            raise FeatureUnsupported(backend, missing)
        plan = (asked, frozenset())
    validator_for(plan[0])  # ValueError for a combination the validator refuses
    return plan


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
        if cfg.features is not None and not isinstance(cfg.features, WasmFeatures):
            raise TypeError(f"EngineConfig.features must be a WasmFeatures or None, not {type(cfg.features).__name__}")
        base, mode = parse_backend(backend, isolation)  # the one parse of "runtime@isolation"
        be = get_backend(base if mode is None else f"{base}@{mode}")
        _resolve_features(cfg.features, be.capabilities(), be.name)  # FeatureUnsupported now, before any worker starts
        return be.new_engine(cfg)

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
    def features(self) -> WasmFeatures:
        """The wasm features modules of this engine may use (``EngineConfig.features``, resolved)."""
        return self._feature_plan()[0]

    def _feature_plan(self) -> tuple[WasmFeatures, frozenset[str]]:
        """(the features in force, the profile's features left off because the runtime cannot run them)."""
        plan: tuple[WasmFeatures, frozenset[str]] | None = self.__dict__.get("_features_resolved")
        if plan is None:
            plan = self.__dict__["_features_resolved"] = _resolve_features(self.config.features, self.capabilities,
                                                                           self.backend.name)
        return plan

    def _validate_wasm(self, wasm: bytes) -> None:
        """The core's verdict on ``wasm`` under this engine's features (CompileError if invalid)."""
        from ._validate import validate

        features, cannot_run = self._feature_plan()
        validate(wasm, features, backend=self.backend.name, cannot_run=cannot_run)

    @property
    def cache_dir(self) -> Path:
        """The folder of this engine's compiled-module cache."""
        root = self.config.cache_dir or _default_cache_dir()
        return Path(root) / f"{self.backend.name}-{self.backend.version()}"
