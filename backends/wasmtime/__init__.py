"""The wasmtime backend: wasmtime's C API driven through a compiled cffi shim.

The library is the ``_libwasmtime.so`` bundled in the ``wasmtime`` wheel,
opened by the shim itself with local, deep symbol binding (see ``_shim.c``);
the wheel's own ctypes API is not used on any path.
"""

from __future__ import annotations

from proxywasm_vm._backend import Backend, Capabilities
from proxywasm_vm._engine import EngineConfig

from ._engine import WasmtimeEngine, WasmtimeModule
from ._ffi import library_path, wasmtime_version
from ._func import WasmtimeFunc
from ._extern import WasmtimeGlobal, WasmtimeMemory, WasmtimeTable
from ._instance import WasmtimeInstance, WasmtimeLinker
from ._store import WasmtimeStore

__all__ = ["BACKEND", "WasmtimeBackend"]

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
)


class WasmtimeBackend(Backend):
    name = "wasmtime"

    def version(self) -> str:
        return wasmtime_version()

    def capabilities(self) -> Capabilities:
        return _CAPS

    def new_engine(self, config: EngineConfig) -> WasmtimeEngine:
        return WasmtimeEngine._create(self, config)

    def library(self) -> str:
        """Path of the wasmtime library in use."""
        return library_path()


BACKEND = WasmtimeBackend()
