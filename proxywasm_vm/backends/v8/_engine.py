"""Engine and Module of the V8 backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxywasm_vm._engine import Engine, EngineConfig
from proxywasm_vm._errors import CompileError
from proxywasm_vm._lifetime import release_after_finalizers
from proxywasm_vm._module import Module
from proxywasm_vm._store import StoreLimits
from proxywasm_vm._types import GlobalType, ValType
from proxywasm_vm._wasmparse import parse_module

from ._ffi import ffi, last_error, lib, start
from ._rewrite import Rewritten, Synth, rewrite, v128_const_exports

if TYPE_CHECKING:
    from . import V8Backend
    from ._store import V8Store


class V8Engine(Engine):
    """A private compile isolate; modules compiled there are shared by every store."""

    # Set by _create (engines are made with object.__new__, not __init__).
    backend: V8Backend
    _ptr: Any  # cffi pwv8_engine* (cdata)

    @classmethod
    def _create(cls, backend: V8Backend, config: EngineConfig) -> V8Engine:
        self = object.__new__(cls)
        self.backend = backend
        self.config = config
        start(config.signals_based_traps)  # the first engine of the process decides the trap mode
        ptr = lib.pwv8_engine_new()
        if ptr == ffi.NULL:
            raise CompileError("cannot create a V8 engine")
        self._ptr = ptr
        release_after_finalizers(self, lib.pwv8_engine_delete, ptr)
        return self

    def _module_new(self, wasm: bytes) -> Module:
        # Validate before rewriting: the rewrite re-encodes the import, table and memory
        # sections and moves sections around, so V8 never sees how they were written. Our
        # reader checks them (and the section framing and order) as strictly as the spec does;
        # V8 validates everything else in the rewritten bytes, which it gets unchanged.
        try:
            info = parse_module(wasm)
            rw = rewrite(wasm)
        except CompileError:
            # Say why in V8's words when V8 rejects the original bytes too, else in ours.
            out = ffi.new("pwv8_module**")
            if lib.pwv8_module_new(self._ptr, ffi.from_buffer("uint8_t[]", wasm), len(wasm), out):
                raise CompileError(last_error()) from None
            lib.pwv8_module_delete(out[0])
            raise
        out = ffi.new("pwv8_module**")
        if lib.pwv8_module_new(self._ptr, ffi.from_buffer("uint8_t[]", rw.wasm), len(rw.wasm), out):
            raise CompileError(last_error())
        mod = V8Module._wrap(self, out[0], rw)
        mod._info = info
        if any(isinstance(e.type, GlobalType) and e.type.content is ValType.V128 and not e.type.mutable
               for e in info.exports):
            mod._v128_consts = v128_const_exports(wasm)
        return mod

    def _module_validate(self, wasm: bytes) -> bool:
        # Module.validate also runs parse_module, so this agrees with _module_new.
        return lib.pwv8_module_validate(self._ptr, ffi.from_buffer("uint8_t[]", wasm), len(wasm)) == 0

    def _store_new(self, limits: StoreLimits, data: Any) -> V8Store:
        from ._store import V8Store

        return V8Store._create(self, limits, data)


class V8Module(Module):
    """A module compiled from the rewritten bytes (see ``_rewrite``)."""

    engine: V8Engine
    _ptr: Any  # cffi pwv8_module*
    _synth: tuple[Synth, ...]  # memories and tables the host makes for each instance
    _memory_export: int | None  # index of the memory exported as "memory", if any
    _v128_consts: dict[str, int] = {}  # exported immutable v128 globals' values (see v128_const_exports)

    @classmethod
    def _wrap(cls, engine: V8Engine, ptr: Any, rw: Rewritten) -> V8Module:
        m = object.__new__(cls)
        m.engine = engine
        m._ptr = ptr
        release_after_finalizers(m, lib.pwv8_module_delete, ptr)
        m._synth = rw.synth
        # The export named "memory", if it is a memory: host functions' Caller
        # can reach it even while the start function runs.
        m._memory_export = next((i for n, k, i in rw.exports if n == "memory" and k == 2), None)
        return m

    def serialize(self) -> bytes:
        raise NotImplementedError("the v8 backend cannot serialize modules (V8 has no public API to load them)")
