"""The backend registry.

A backend adapts one WebAssembly runtime to the public classes of this package:
it implements the contract of :mod:`proxywasm_vm._contract` (subclasses of
:class:`Engine`, :class:`Store`, :class:`Module`, :class:`Instance`,
:class:`Func`, :class:`Memory`, :class:`Global`, :class:`Table` and optionally
:class:`Linker`) and registers a :class:`Backend` object here. The public
constructors (``Module(engine, wasm)``, ``Func(store, ty, fn)`` ...) dispatch to
the backend's factory methods, so user code never names a backend class and
every object is an instance of the public class.

Backends are imported lazily, on first use, so that no runtime installs its
signal handlers or loads its library before it is asked for.

The registry is also how this core layer reaches the layers above it without
importing them: a backend id ``"<runtime>@<isolation>"`` names an isolation mode,
and the module that runs a backend that way (``"process"``: the isolation
package's worker processes) is found in a table of module paths, imported with
:mod:`importlib` on first use, like the backends themselves. A backend that
cannot run in this process says so declaratively (:attr:`Backend.default_isolation`,
:attr:`Backend.in_process_reason`), and the registry applies it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ._contract import Backend, Capabilities
from ._errors import BackendUnavailable

__all__ = ["Backend", "BackendInfo", "Capabilities", "available_backends", "get_backend", "register_backend"]


@dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`available_backends`."""

    name: str
    available: bool
    version: str
    capabilities: Capabilities | None
    reason: str = ""
    how_to_enable: str = ""


#: pywasm3 has no wheels: pip builds it from source.
WASM3_HOW_TO_ENABLE = ("pip install 'proxywasm-vm[wasm3]' (builds pywasm3 0.5.0 from source: needs gcc and "
                       "Python's headers, apt install gcc python3-dev)")

# name -> (module path, one-line "how to enable it")
_REGISTRY: dict[str, tuple[str, str]] = {
    # (what a user who installed proxywasm-vm with pip can do; the backends' own errors say more)
    "wasmtime": ("proxywasm_vm.backends.wasmtime", "pip install --force-reinstall proxywasm-vm"),
    "v8": ("proxywasm_vm.backends.v8", "run `pwvm setup v8` (it needs libnode: apt install libnode-dev g++)"),
    "wasmer": ("proxywasm_vm.backends.wasmer",
               "run `pwvm setup wasmer` (it makes a Python 3.10 environment for wasmer's worker process), "
               "or set PWVM_WORKER_PYTHON to a Python 3.10 with wasmer==1.1.0 and proxywasm-vm installed"),
    "wasm3": ("proxywasm_vm.backends.wasm3", WASM3_HOW_TO_ENABLE),
}
_LOADED: dict[str, Backend] = {}  # backend id -> its backend (isolation applied)
_RUNTIMES: dict[str, Backend] = {}  # runtime name -> its module's BACKEND (no isolation applied)

#: isolation mode -> ("module:function", one-line "how to enable it"): ``function(base, *, name,
#: in_process_reason)`` returns the backend ``base`` run that way, registered as ``name``.
#: ``"in-process"`` (the runtime's own backend) and ``"namespace"`` (the backend's
#: ``namespace_variant``) are the core's own and need no entry.
_ISOLATIONS: dict[str, tuple[str, str]] = {
    "process": ("proxywasm_vm._isolation:process_backend", "the worker-process isolation of proxywasm-vm"),
}
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
    modes = isolation_modes()
    if mode is not None and mode not in modes:
        raise ValueError(f"unknown isolation {mode!r} in {name!r}; choose from {', '.join(modes)}")
    if isolation is not None:
        if isolation not in modes:
            raise ValueError(f"unknown isolation {isolation!r}; choose from {', '.join(modes)}")
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


def isolation_modes() -> tuple[str, ...]:
    """Every isolation mode a backend id may name after ``"@"``: the core's own
    (``"in-process"``, ``"namespace"``) and the registered ones (``"process"``)."""
    return ("in-process", "namespace", *_ISOLATIONS)


def register_isolation(mode: str, target: str, how_to_enable: str = "") -> None:
    """Make isolation ``mode`` selectable (``"<runtime>@<mode>"``, ``Engine(..., isolation=mode)``).

    ``target`` is ``"module:function"``; the module is imported on first use and
    ``function(base, *, name, in_process_reason)`` returns the :class:`Backend` running
    runtime ``base`` that way, registered under the backend id ``name``.
    """
    if mode in ("in-process", "namespace"):
        raise ValueError(f"isolation {mode!r} is the core's own")
    _ISOLATIONS[mode] = (target, how_to_enable)


def backend_names() -> list[str]:
    """Every registered backend name, available or not, then the listed isolated variants (``"wasmtime@process"``)."""
    return list(_REGISTRY) + [v for v in _VARIANTS if v.split("@", 1)[0] in _REGISTRY]


def get_backend(name: str) -> Backend:
    """Load and return the backend called ``name`` (``"<runtime>[@<isolation>]"``).

    A bare runtime name runs with the runtime's :attr:`~Backend.default_isolation`.
    Raises :class:`BackendUnavailable` (with how to enable it) when the backend
    cannot run here, and :class:`ValueError` for an unknown name.
    """
    try:
        return _LOADED[name]
    except KeyError:
        pass
    base, mode = parse_backend(name)
    runtime = load_runtime(base)
    if mode is None:
        mode = runtime.default_isolation
    if mode == "in-process":
        if runtime.in_process_reason:
            raise BackendUnavailable(name, f"{base} cannot run in this process: {runtime.in_process_reason}",
                                     f"use Engine({base!r}) or isolation='process'")
        backend = runtime
    elif mode == "namespace":
        try:
            variant = runtime.namespace_variant()
        except BackendUnavailable as e:
            raise BackendUnavailable(name, e.reason, e.how_to_enable) from e
        if variant is None:
            raise BackendUnavailable(name, f"{base} cannot be loaded into a linker namespace",
                                     f"use Engine({base!r}) or isolation='process'")
        backend = variant
    else:
        backend = _isolated(mode, base, name, runtime)
    _LOADED[name] = backend
    return backend


def load_runtime(base: str) -> Backend:
    """The backend object runtime ``base``'s module defines (``BACKEND``), with no isolation
    applied: what runs in-process, or in a worker. Imported on first use.

    Raises :class:`ValueError` for an unknown runtime and :class:`BackendUnavailable`
    when its module cannot be imported here.
    """
    try:
        return _RUNTIMES[base]
    except KeyError:
        pass
    if base not in _REGISTRY:
        raise ValueError(f"unknown backend {base!r}; known backends: {', '.join(sorted(_REGISTRY))}")
    module, how = _REGISTRY[base]
    try:
        mod = importlib.import_module(module)
    except BackendUnavailable:
        raise
    except ImportError as e:
        raise BackendUnavailable(base, f"cannot import {module}: {e}", how) from e
    backend = getattr(mod, "BACKEND", None)
    if not isinstance(backend, Backend):
        raise BackendUnavailable(base, f"{module} defines no BACKEND", how)
    _RUNTIMES[base] = backend
    return backend


def _isolated(mode: str, base: str, name: str, runtime: Backend) -> Backend:
    """Runtime ``base`` run with the registered isolation ``mode``, as backend id ``name``."""
    target, how = _ISOLATIONS[mode]
    module, _, func = target.partition(":")
    try:
        make = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable(name, f"cannot load isolation {mode!r} from {target}: {e}", how) from e
    backend: Backend = make(base, name=name, in_process_reason=runtime.in_process_reason)
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
