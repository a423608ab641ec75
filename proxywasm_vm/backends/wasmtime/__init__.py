"""The wasmtime backend: wasmtime's C API driven through a compiled cffi shim.

The library is the ``_libwasmtime.so`` bundled in the ``wasmtime`` wheel,
opened by the shim itself with local, deep symbol binding (see ``_shim.c``);
the wheel's own ctypes API is not used on any path.

``wasmtime@namespace`` loads a separate copy of the library into its own
linker namespace (``dlmopen``), so two copies (or two builds with the same C
API) live in one process: ``Engine("wasmtime@namespace",
options=(("library", "/path/to/libwasmtime.so"),))`` picks the copy.
"""

from __future__ import annotations

from proxywasm_vm._backend import Backend, Capabilities
from proxywasm_vm._engine import EngineConfig
from proxywasm_vm._features import ALL_FEATURES

from ._engine import WasmtimeEngine, WasmtimeModule
from ._ffi import library_path, wasmtime_version
from ._runtime import default_runtime, namespace_runtime
from ._func import WasmtimeFunc
from ._extern import WasmtimeGlobal, WasmtimeMemory, WasmtimeTable
from ._instance import WasmtimeInstance, WasmtimeLinker
from ._store import WasmtimeStore

# The concrete classes are imported here so that every module is loaded (and
# _func's cffi callbacks registered) before the first engine exists.
__all__ = ["BACKEND", "WasmtimeBackend", "WasmtimeEngine", "WasmtimeModule", "WasmtimeStore", "WasmtimeFunc",
           "WasmtimeMemory", "WasmtimeGlobal", "WasmtimeTable", "WasmtimeInstance", "WasmtimeLinker"]

_CAPS = Capabilities(
    fuel=True,
    deadline=True,
    memory_limit=True,
    max_wasm_stack=True,
    serialize=True,
    table_access=True,
    reference_values=True,
    v128_values=True,
    multi_value=True,
    host_memory_access=True,
    # every proposal of WasmFeatures but gc and custom page sizes: the interface has no GC types
    # nor memory types with a page size (a module declaring one would fail reading its types)
    features=ALL_FEATURES - {"gc", "custom_page_sizes"},
)


class WasmtimeBackend(Backend):
    """wasmtime in this process: ``isolation`` is ``"in-process"`` or ``"namespace"``."""

    def __init__(self, isolation: str = "in-process") -> None:
        if isolation not in ("in-process", "namespace"):
            raise ValueError(f"unsupported isolation {isolation!r} for the wasmtime backend")
        self.isolation = isolation
        self.name = "wasmtime" if isolation == "in-process" else f"wasmtime@{isolation}"
        if isolation == "namespace":
            namespace_runtime()  # load it now, so an exhausted namespace table shows as unavailable

    def version(self) -> str:
        return wasmtime_version()

    def capabilities(self) -> Capabilities:
        return _CAPS

    def new_engine(self, config: EngineConfig) -> WasmtimeEngine:
        if self.isolation == "namespace":
            rt = namespace_runtime(dict(config.options).get("library"))
        else:
            rt = default_runtime()
        return WasmtimeEngine._create(self, config, rt)

    def namespace_variant(self) -> WasmtimeBackend:
        """The same runtime loaded into its own linker namespace."""
        return WasmtimeBackend("namespace")

    def library(self) -> str:
        """Path of the wasmtime library in use."""
        return library_path()


BACKEND = WasmtimeBackend()
default_runtime()  # fail at import (as BackendUnavailable) if the library cannot be loaded
