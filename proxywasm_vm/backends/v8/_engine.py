"""Engine and Module of the V8 backend.

Serialized modules (``Module.serialize``, and so the compiled-module cache): V8's
public API cannot load compiled code, and it needs none: its compile is lazy
(Liftoff compiles a function when it is first called), so compiling a module's
bytes costs V8 a fraction of a millisecond even for a large module. What makes
``Module(engine, wasm)`` cost milliseconds here is our front end: the
validation, :func:`~proxywasm_vm._wasmparse.parse_module` and the rewrite (see
``_rewrite``). A serialized V8 module is therefore the rewritten bytes with
what the front end found (the synthesized imports, the types): loading it
compiles the rewritten bytes and reads the types only when first asked for.
Like any serialized module it is trusted input (only the project's own
classes are unpickled from it).
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import TYPE_CHECKING, Any

from proxywasm_vm._engine import Engine, EngineConfig
from proxywasm_vm._errors import CompileError
from proxywasm_vm._lifetime import release_after_finalizers
from proxywasm_vm._module import Module
from proxywasm_vm._store import StoreLimits
from proxywasm_vm._types import GlobalType, ValType
from proxywasm_vm._wasmparse import parse_module

from ._ffi import ffi, last_error, lib, start, version
from ._rewrite import Rewritten, Synth, rewrite, v128_const_exports

#: How a serialized V8 module begins: a magic, the format and the V8 version that made it.
_MAGIC = b"pwvm-v8-module\0"
_FORMAT = 1


def _tag() -> bytes:
    return _MAGIC + f"{_FORMAT} {version()}\0".encode()


class _Unpickler(pickle.Unpickler):
    """Reads only what serialize() writes: plain data and the project's own classes."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("proxywasm_vm.") or (module == "builtins" and name in ("frozenset", "set")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a serialized V8 module")


def _loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()

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
        # In a worker process (v8@process) every store gets an isolate of its own: the worker's
        # threads serve whichever stores the parent's threads call, so stores one worker thread
        # made must still run at the same time (see pwv8_set_isolate_sharing).
        worker = sys.modules.get("proxywasm_vm._isolation._conn")
        lib.pwv8_set_isolate_sharing(0 if getattr(worker, "IN_WORKER", False) else 1)
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
        mod = V8Module._wrap(self, self._compile_rewritten(rw.wasm), rw)
        mod._info = info
        if any(isinstance(e.type, GlobalType) and e.type.content is ValType.V128 and not e.type.mutable
               for e in info.exports):
            mod._v128_consts = v128_const_exports(wasm)
        return mod

    def _compile_rewritten(self, wasm: bytes) -> Any:
        out = ffi.new("pwv8_module**")
        if lib.pwv8_module_new(self._ptr, ffi.from_buffer("uint8_t[]", wasm), len(wasm), out):
            raise CompileError(last_error())
        return out[0]

    def _module_deserialize(self, data: bytes) -> Module:
        tag = _tag()
        if not data.startswith(tag):
            why = "made by another V8 or format" if data.startswith(_MAGIC) else "not a serialized V8 module"
            raise CompileError(f"cannot load the serialized module: {why}")
        try:
            wasm, synth, memory_export, v128, info = _loads(data[len(tag):])
            if not isinstance(wasm, bytes) or not isinstance(info, bytes):
                raise TypeError("bad layout")
        except Exception as e:  # noqa: BLE001 - any damage is a CompileError
            raise CompileError(f"cannot load the serialized module: corrupt ({e})") from None
        mod = V8Module._wrap(self, self._compile_rewritten(wasm), Rewritten(wasm, tuple(synth), ()))
        mod._memory_export = memory_export
        if v128:
            mod._v128_consts = v128
        mod._info_blob = info
        mod._serialized = data
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

    _info_blob: bytes | None = None  # the pickled ModuleInfo of a deserialized module, read on first use
    _serialized: bytes | None = None  # what a deserialized module was loaded from

    def _module_info(self) -> Any:
        if self._info is None and self._info_blob is not None:
            self._info = _loads(self._info_blob)
        return super()._module_info()

    def serialize(self) -> bytes:
        """The rewritten bytes and what the front end read (see the module docstring)."""
        if self._serialized is not None:
            return self._serialized
        if self._wasm is None:
            raise CompileError("this module has no bytes to serialize")
        rw = rewrite(self._wasm)  # again: the compiled module keeps no copy (the cache calls this once)
        info = pickle.dumps(self._module_info(), protocol=5)
        return _tag() + pickle.dumps((rw.wasm, list(self._synth), self._memory_export, self._v128_consts, info),
                                     protocol=5)
