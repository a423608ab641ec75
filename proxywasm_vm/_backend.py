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
    exact_memory_limit: bool = True
    """With ``memory_limit``: ``memory.grow`` returns -1 exactly where it would pass the cap
    (wasmer in a worker process: within 16 MiB past it, see :mod:`proxywasm_vm._isolation._guard`)."""
    interrupt_keeps_store: bool = True
    """With ``deadline``: after ``Trap(INTERRUPTED)`` the store stays usable (wasmer in a worker
    process: the worker is stopped at the deadline and replaced, its stores are lost)."""
    max_wasm_stack: bool = False
    """A configurable wasm stack size (``EngineConfig.max_wasm_stack``)."""
    serialize: bool = False
    """Compiled modules can be serialized and loaded again (the module cache)."""
    table_access: bool = False
    """Tables support get, set and grow from Python."""
    reference_values: bool = False
    """funcref and externref values can cross into and out of wasm."""
    reference_types: bool = True
    """Modules using the reference-types proposal in their code compile (funcref/externref
    params, results and locals, ``table.get``, ``ref.null`` ...; wasm3 0.5.0 refuses them)."""
    v128_values: bool = False
    """v128 values can cross into and out of wasm."""
    multi_value: bool = True
    """Functions may return several results."""
    host_memory_access: bool = True
    """Host functions can reach the calling instance's memory."""
    memory_view: bool = True
    """``Memory.view()`` is a zero-copy view (not across a process boundary)."""
    threads: bool = True
    """Stores of one engine can be used from several Python threads (a store per thread)."""
    concurrent_stores: bool = True
    """Those threads' calls run at the same time (not one after the other)."""
    wasm_threads: bool = True
    """The WebAssembly threads proposal (shared memories, atomic instructions) is enabled."""
    lazy_memory_growth: bool = True
    """``memory.grow`` only reserves the new pages (the kernel zeroes each when first touched).
    wasm3 reallocates and zeroes every grown page: growing to hundreds of MiB takes a sizeable
    fraction of a second, so a memory bomb may meet a short deadline before the memory cap."""
    shared_externs: bool = True
    """A memory or global can be imported by several instances at once, which then share it
    (wasm3: each instance has its own memory and globals, so one made in Python goes to one instance)."""


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
    isolation: str = "in-process"
    """How this backend object runs its runtime: ``"in-process"`` or ``"process"`` (a worker)."""

    def with_isolation(self, mode: str) -> Backend:
        """This backend's runtime run with isolation ``mode`` (``"in-process"`` or ``"process"``)."""
        if mode == self.isolation:
            return self
        base, _ = parse_backend(self.name)
        return get_backend(f"{base}@{mode}")

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
    "wasmer": ("proxywasm_vm.backends.wasmer",
               "bash ci/setup_wasmer.sh (a Python 3.10 env for wasmer's worker process), "
               "or set PWVM_WORKER_PYTHON to a Python 3.10 with wasmer==1.1.0 and proxywasm-vm installed"),
    "wasm3": ("proxywasm_vm.backends.wasm3", "pip install 'pywasm3==0.5.0' (builds from source: needs gcc)"),
}
_LOADED: dict[str, Backend] = {}

#: Isolation modes a backend id may name after "@": "wasmtime@process" runs wasmtime in a worker.
ISOLATION_MODES = ("in-process", "namespace", "process")
#: Isolated variants listed by backend_names() (and so run by the backend-parametrised suites).
_VARIANTS: list[str] = ["wasmtime@namespace", "wasmtime@process", "v8@namespace", "v8@process"]


def parse_backend(name: str, isolation: str | None = None) -> tuple[str, str | None]:
    """Split a backend id ``"<runtime>[@<isolation>]"`` into ``(runtime, isolation)``.

    The one place a backend string is parsed: where the user hands it in (``Engine``,
    ``PluginConfig.backend``, ``ProxyWasmHost(backend=...)``). ``isolation`` is the
    mode named separately (``Engine(base, isolation=...)``); ``None`` in the result
    means the runtime's default. Raises :class:`ValueError` for an unknown isolation
    mode or two that conflict; the runtime itself is checked by :func:`get_backend`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a backend is a non-empty name such as 'wasmtime' or 'wasmtime@process', not {name!r}")
    base, at, named = name.partition("@")
    if not base:
        raise ValueError(f"backend {name!r} names no runtime")
    mode = named if at else None
    if mode is not None and mode not in ISOLATION_MODES:
        raise ValueError(f"unknown isolation {mode!r} in {name!r}; choose from {', '.join(ISOLATION_MODES)}")
    if isolation is not None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"unknown isolation {isolation!r}; choose from {', '.join(ISOLATION_MODES)}")
        if mode is not None and mode != isolation:
            raise ValueError(f"backend {name!r} conflicts with isolation={isolation!r}")
        mode = isolation
    return base, mode


def register_backend(name: str, module: str, how_to_enable: str = "") -> None:
    """Make a third-party backend selectable by ``name``.

    ``module`` is imported on first use and must define ``BACKEND``, a
    :class:`Backend` instance, or raise :class:`BackendUnavailable`.
    """
    _REGISTRY[name] = (module, how_to_enable)


def backend_names() -> list[str]:
    """Every registered backend name, available or not, then the listed isolated variants (``"wasmtime@process"``)."""
    return list(_REGISTRY) + [v for v in _VARIANTS if v.split("@", 1)[0] in _REGISTRY]


def get_backend(name: str) -> Backend:
    """Load and return the backend called ``name``.

    Raises :class:`BackendUnavailable` (with how to enable it) when the backend
    cannot run here, and :class:`ValueError` for an unknown name.
    """
    try:
        return _LOADED[name]
    except KeyError:
        pass
    if "@" in name:
        return _get_variant(name)
    if not name:
        parse_backend(name)  # the error
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
    for name in backend_names():
        how = _REGISTRY[parse_backend(name)[0]][1]
        try:
            b = get_backend(name)
        except BackendUnavailable as e:
            rows.append(BackendInfo(name, False, "", None, e.reason, e.how_to_enable or how))
            continue
        rows.append(BackendInfo(name, True, b.version(), b.capabilities()))
    return rows


def _get_variant(name: str) -> Backend:
    """``"<backend>@<isolation>"``: the backend run in-process or in a worker process."""
    base, mode = parse_backend(name)
    if base not in _REGISTRY:
        raise ValueError(f"unknown backend {base!r}; known backends: {', '.join(sorted(_REGISTRY))}")
    if mode == "namespace":
        base_backend = get_backend(base)
        make = getattr(base_backend, "namespace_variant", None)
        if make is None:
            raise BackendUnavailable(name, f"{base} cannot be loaded into a linker namespace",
                                     f"use Engine({base!r}) or isolation='process'")
        try:
            backend = make()
        except BackendUnavailable as e:
            raise BackendUnavailable(name, e.reason, e.how_to_enable) from e
        _LOADED[name] = backend
        return backend
    if mode == "process":
        from ._isolation import process_backend

        backend = process_backend(base, name=name)
    else:
        backend = get_backend(base)
        if backend.isolation != "in-process":
            reason = getattr(backend, "in_process_reason", "") or "it runs in a worker process here"
            raise BackendUnavailable(name, f"{base} cannot run in this process: {reason}",
                                     f"use Engine({base!r}) or isolation='process'")
    _LOADED[name] = backend
    return backend
