"""The backend contract and registry.

A backend adapts one WebAssembly runtime to the public classes of this package.
It subclasses the abstract :class:`Engine`, :class:`Store`, :class:`Module`,
:class:`Instance`, :class:`Func`, :class:`Memory`, :class:`Global`,
:class:`Table` and :class:`Linker`, and registers a :class:`Backend` object
here. The public constructors (``Module(engine, wasm)``, ``Func(store, ty, fn)``
...) dispatch to the backend's factory methods, so user code never names a
backend class and every object is an instance of the public class.

Backends are imported lazily, on first use, so that no runtime installs its
signal handlers or loads its library before it is asked for.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import BackendUnavailable

if TYPE_CHECKING:
    from ._engine import Engine, EngineConfig

__all__ = ["Backend", "BackendInfo", "Capabilities", "available_backends", "get_backend", "register_backend"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. Tests and callers check these instead of names."""

    fuel: bool = False
    """Deterministic instruction budgets (``StoreLimits.fuel``)."""
    deadline: bool = False
    """Wall-clock deadlines that interrupt running wasm (``StoreLimits.deadline``)."""
    memory_limit: bool = False
    """A cap on linear-memory bytes per store (``StoreLimits.memory_bytes``)."""
    max_wasm_stack: bool = False
    """A configurable wasm stack size (``EngineConfig.max_wasm_stack``)."""
    serialize: bool = False
    """Compiled modules can be serialized and loaded again (the module cache)."""
    table_access: bool = False
    """Tables support get, set and grow from Python."""
    reference_values: bool = False
    """funcref and externref values can cross into and out of wasm."""
    v128_values: bool = False
    """v128 values can cross into and out of wasm."""
    multi_value: bool = True
    """Functions may return several results."""
    host_memory_access: bool = True
    """Host functions can reach the calling instance's memory."""


@dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`available_backends`."""

    name: str
    available: bool
    version: str
    capabilities: Capabilities | None
    reason: str = ""
    how_to_enable: str = ""


class Backend(ABC):
    """A runtime adapter. Subclass it in ``proxywasm_vm.backends.<name>``."""

    name: str = ""

    @abstractmethod
    def version(self) -> str:
        """The runtime's own version string."""
        raise NotImplementedError

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend supports."""
        raise NotImplementedError

    @abstractmethod
    def new_engine(self, config: EngineConfig) -> Engine:
        """Create an engine (an instance of the backend's :class:`Engine` subclass)."""
        raise NotImplementedError


# name -> (module path, one-line "how to enable it")
_REGISTRY: dict[str, tuple[str, str]] = {
    "wasmtime": ("proxywasm_vm.backends.wasmtime", "pip install 'wasmtime==50.0.1' and reinstall proxywasm-vm"),
    "v8": ("proxywasm_vm.backends.v8", "bash ci/setup_v8.sh (installs libnode and builds the V8 shim)"),
}
_LOADED: dict[str, Backend] = {}


def register_backend(name: str, module: str, how_to_enable: str = "") -> None:
    """Make a third-party backend selectable by ``name``.

    ``module`` is imported on first use and must define ``BACKEND``, a
    :class:`Backend` instance, or raise :class:`BackendUnavailable`.
    """
    _REGISTRY[name] = (module, how_to_enable)


def backend_names() -> list[str]:
    """Every registered backend name, available or not."""
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    """Load and return the backend called ``name``.

    Raises :class:`BackendUnavailable` (with how to enable it) when the backend
    cannot run here, and :class:`ValueError` for an unknown name.
    """
    try:
        return _LOADED[name]
    except KeyError:
        pass
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(sorted(_REGISTRY))}")
    module, how = _REGISTRY[name]
    try:
        mod = importlib.import_module(module)
    except BackendUnavailable:
        raise
    except ImportError as e:
        raise BackendUnavailable(name, f"cannot import {module}: {e}", how) from e
    backend = getattr(mod, "BACKEND", None)
    if not isinstance(backend, Backend):
        raise BackendUnavailable(name, f"{module} defines no BACKEND", how)
    _LOADED[name] = backend
    return backend


def available_backends() -> list[BackendInfo]:
    """Every registered backend with its availability, version and capabilities."""
    rows = []
    for name, (_, how) in _REGISTRY.items():
        try:
            b = get_backend(name)
        except BackendUnavailable as e:
            rows.append(BackendInfo(name, False, "", None, e.reason, e.how_to_enable or how))
            continue
        rows.append(BackendInfo(name, True, b.version(), b.capabilities()))
    return rows
