"""Engine and Module of the wasmtime backend."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from proxywasm_vm._engine import Engine, EngineConfig
from proxywasm_vm._errors import CompileError
from proxywasm_vm._lifetime import release_after_finalizers
from proxywasm_vm._module import Module
from proxywasm_vm._store import StoreLimits
from proxywasm_vm._types import ExportType, ImportType
from proxywasm_vm._wasmparse import ModuleInfo

from ._ffi import ffi, lib
from ._runtime import Runtime

if TYPE_CHECKING:
    from . import WasmtimeBackend
    from ._instance import WasmtimeLinker
    from ._store import WasmtimeStore

#: WasmFeatures fields (and other wasmtime proposals, always off) with a wasmtime config setter.
#: (component-model-async must be off when reference types are: wasmtime aborts otherwise.)
_FEATURE_SETTERS = ("bulk_memory", "multi_value", "reference_types", "simd", "threads", "tail_call", "multi_memory",
                    "memory64", "relaxed_simd", "exceptions", "function_references", "gc", "wide_arithmetic",
                    "custom_page_sizes", "component_model", "component_model_async", "component_model_async_stackful",
                    "component_model_more_async_builtins", "stack_switching")

#: Epoch tick used for deadlines: deadlines are honoured to about this precision.
TICK_SECONDS = 0.001


class WasmtimeEngine(Engine):
    """A ``wasm_engine_t`` of one loaded libwasmtime (``_rt``)."""

    # Set by _create (engines are made with object.__new__, not __init__).
    backend: WasmtimeBackend
    _rt: Runtime
    _ptr: Any  # cffi wasm_engine_t* (cdata, untyped)
    _ticker_lock: threading.Lock
    _ticker_started: bool

    @classmethod
    def _create(cls, backend: WasmtimeBackend, config: EngineConfig, rt: Runtime) -> WasmtimeEngine:
        api = rt.api
        self = object.__new__(cls)
        self.backend = backend
        self.config = config
        self._rt = rt
        cfg = api.wasm_config_new()
        api.wasmtime_config_epoch_interruption_set(cfg, config.deadlines)
        api.wasmtime_config_consume_fuel_set(cfg, config.fuel)
        api.wasmtime_config_signals_based_traps_set(cfg, config.signals_based_traps)
        if config.max_wasm_stack is not None:
            api.wasmtime_config_max_wasm_stack_set(cfg, config.max_wasm_stack)
        # The engine's features, so wasmtime itself agrees with the core's validator (which has
        # checked every module before it gets here); everything else wasmtime offers stays off.
        features = self.features
        for name in _FEATURE_SETTERS:
            getattr(api, f"wasmtime_config_wasm_{name}_set")(cfg, getattr(features, name, False))
        api.wasmtime_config_shared_memory_set(cfg, features.threads)  # shared memories can be made
        ptr = api.wasm_engine_new_with_config(cfg)  # takes ownership of cfg
        if ptr == ffi.NULL:
            raise CompileError("wasmtime rejected the engine configuration")
        self._ptr = ptr
        release_after_finalizers(self, api.wasm_engine_delete, ptr)
        self._ticker_lock = threading.Lock()
        self._ticker_started = False
        return self

    def _ensure_ticker(self) -> None:
        """Have the process's epoch ticker tick this engine, the first time a store asks for a deadline."""
        if self._ticker_started:
            return
        with self._ticker_lock:
            if not self._ticker_started:
                if lib.pwvm_ticker_start(self._rt.api, self._ptr, int(TICK_SECONDS * 1e6)) != 0:
                    raise OSError("cannot start the wasmtime epoch ticker thread")
                self._ticker_started = True
                # the process's one ticker lets this engine go with it (it holds only the pointer)
                weakref.finalize(self, lib.pwvm_ticker_stop, self._ptr)

    def _module_new(self, wasm: bytes) -> Module:
        rt = self._rt
        api = rt.api
        out = ffi.new("wasmtime_module_t**")
        err = api.wasmtime_module_new(self._ptr, ffi.from_buffer("uint8_t[]", wasm), len(wasm), out)
        if err != ffi.NULL:
            raise CompileError(rt.take_error_message(err))
        return WasmtimeModule._wrap(self, out[0])

    def _module_validate(self, wasm: bytes) -> bool:
        rt = self._rt
        api = rt.api
        err = api.wasmtime_module_validate(self._ptr, ffi.from_buffer("uint8_t[]", wasm), len(wasm))
        if err != ffi.NULL:
            rt.take_error_message(err)
            return False
        return True

    def _module_deserialize(self, data: bytes) -> Module:
        rt = self._rt
        api = rt.api
        out = ffi.new("wasmtime_module_t**")
        err = api.wasmtime_module_deserialize(self._ptr, ffi.from_buffer("uint8_t[]", data), len(data), out)
        if err != ffi.NULL:
            raise CompileError(rt.take_error_message(err))
        return WasmtimeModule._wrap(self, out[0])

    def _module_deserialize_file(self, path: str) -> Module:
        rt = self._rt
        api = rt.api
        out = ffi.new("wasmtime_module_t**")
        err = api.wasmtime_module_deserialize_file(self._ptr, path.encode(), out)
        if err != ffi.NULL:
            raise CompileError(rt.take_error_message(err))
        return WasmtimeModule._wrap(self, out[0])

    def _store_new(self, limits: StoreLimits, data: Any) -> WasmtimeStore:
        from ._store import WasmtimeStore

        return WasmtimeStore._create(self, limits, data)

    def _linker_new(self) -> WasmtimeLinker:
        from ._instance import WasmtimeLinker

        return WasmtimeLinker._create(self)


class WasmtimeModule(Module):
    """A compiled ``wasmtime_module_t``."""

    engine: WasmtimeEngine
    _ptr: Any  # cffi wasmtime_module_t* (cdata)

    @classmethod
    def _wrap(cls, engine: WasmtimeEngine, ptr: Any) -> WasmtimeModule:
        m = object.__new__(cls)
        m.engine = engine
        m._ptr = ptr
        release_after_finalizers(m, engine._rt.api.wasmtime_module_delete, ptr)
        return m

    def _module_info(self) -> ModuleInfo:
        """Parsed from the bytes when we have them; asked from wasmtime after ``deserialize``."""
        if self._info is None and self._wasm is None:
            self._info = _info_from_runtime(self.engine._rt, self._ptr)
        return super()._module_info()

    def serialize(self) -> bytes:
        rt = self.engine._rt
        api = rt.api
        vec = ffi.new("wasm_byte_vec_t*")
        err = api.wasmtime_module_serialize(self._ptr, vec)
        if err != ffi.NULL:
            raise CompileError(rt.take_error_message(err))
        data = ffi.unpack(ffi.cast("char*", vec.data), vec.size)
        api.wasm_byte_vec_delete(vec)
        return data


def _name(vec: Any) -> str:
    return ffi.unpack(ffi.cast("char*", vec.data), vec.size).decode()


def _info_from_runtime(rt: Runtime, ptr: Any) -> ModuleInfo:
    """Import and export types of a compiled module (custom sections are not kept by wasmtime)."""
    api = rt.api
    info = ModuleInfo()
    imps = ffi.new("wasm_importtype_vec_t*")
    api.wasmtime_module_imports(ptr, imps)
    try:
        for i in range(imps.size):
            it = imps.data[i]
            info.imports.append(ImportType(_name(api.wasm_importtype_module(it)), _name(api.wasm_importtype_name(it)),
                                           rt.externtype(api.wasm_importtype_type(it))))
    finally:
        api.wasm_importtype_vec_delete(imps)
    exps = ffi.new("wasm_exporttype_vec_t*")
    api.wasmtime_module_exports(ptr, exps)
    try:
        for i in range(exps.size):
            et = exps.data[i]
            info.exports.append(ExportType(_name(api.wasm_exporttype_name(et)), rt.externtype(api.wasm_exporttype_type(et))))
    finally:
        api.wasm_exporttype_vec_delete(exps)
    return info
