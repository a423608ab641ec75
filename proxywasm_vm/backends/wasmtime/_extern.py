"""Memory, Global and Table of the wasmtime backend."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from proxywasm_vm._errors import LimitError, WasmError
from proxywasm_vm._global import Global
from proxywasm_vm._memory import Memory
from proxywasm_vm._table import Table
from proxywasm_vm._types import GlobalType, MemoryType, TableType

from ._ffi import ffi, lib
from ._values import from_val, to_val

if TYPE_CHECKING:
    from ._store import WasmtimeStore

_buffer = ffi.buffer
_U32 = struct.Struct("<I")


def _oob(offset: int, length: int, size: int) -> IndexError:
    return IndexError(f"memory access out of bounds: offset {offset} length {length} (memory is {size} bytes)")


class MemCore:
    """One linear memory of a store, read and written in place; shared by every wrapper of it.

    ``view`` is the shim's record of the memory (``pwvm_meminfo``: data, size,
    generation) as three u64s, which the shim keeps current whenever control
    returns to Python (see ``pwvm_mem_track``). ``buf`` is a buffer over the
    ``size`` bytes made at generation ``gen``: usable only while
    ``view[2] == gen``, and rebuilt by :meth:`current` otherwise (the memory
    grew, moved, or its store was closed). It references no Python object of
    the store, so the store can cache it (``WasmtimeStore._cores``) without a
    reference cycle.
    """

    __slots__ = ("m", "info", "view", "gen", "size", "buf")

    def __init__(self, m: Any, info: Any) -> None:
        self.m = m  # cffi wasmtime_memory_t* (owned)
        self.info = info  # cffi pwvm_meminfo* (owned by the shim's store)
        self.view = memoryview(_buffer(info, ffi.sizeof("pwvm_meminfo"))).cast("Q")
        self.gen = -1
        self.size = 0
        self.buf: Any = bytearray()

    def current(self, store: WasmtimeStore) -> Any:
        """``buf``, after making it and ``size`` those of the record's current generation;
        raises when the store is closed."""
        if store._sp.ctx == ffi.NULL:
            raise WasmError("the store is closed")
        view = self.view
        gen = view[2]
        if gen != self.gen:
            size = view[1]
            self.buf = _buffer(self.info.data, size) if size else bytearray()
            self.size = size
            self.gen = gen
        return self.buf


def core_of(store: WasmtimeStore, index: int, m: Any) -> MemCore:
    """The store's core for tracked memory ``index`` (``m``: its wasmtime_memory_t*, kept by a new core)."""
    core = store._cores.get(index)
    if core is None:
        info = lib.pwvm_mem_info(store._sp, index)
        if info == ffi.NULL:  # pragma: no cover - the index came from the shim
            raise WasmError("unknown memory record")
        core = store._cores[index] = MemCore(m, info)
    return core


_new = object.__new__


class WasmtimeMemory(Memory):
    """A linear memory: a light wrapper (its store, its core), cheap to make for every
    ``Caller.memory``. Reads and writes go through the core's buffer over the bytes, used
    only at the generation it was made at: the shim bumps the generation whenever the memory
    grows or moves, or the store is closed, and the buffer and size are then taken again.
    One memoryview read per access checks that."""

    __slots__ = ("store", "_type", "_core")
    store: WasmtimeStore
    _type: MemoryType | None
    _core: MemCore

    @classmethod
    def _wrap(cls, store: WasmtimeStore, m: Any, ty: MemoryType | None) -> WasmtimeMemory:
        """The memory ``m`` (an owned ``wasmtime_memory_t*``, kept by the core if it is new) of ``store``."""
        index = lib.pwvm_mem_track(store._sp, m)
        if index < 0:
            store._ctx  # raises when the store is closed
            raise MemoryError("cannot track a memory")
        mem = _new(cls)
        mem.store = store
        mem._type = ty
        mem._core = core_of(store, index, m)
        return mem

    @property
    def type(self) -> MemoryType:  # type: ignore[override]  # read lazily: a property over the contract's attribute
        if self._type is None:
            self._type = self.store._rt.memorytype_of(self.store._ctx, self._core.m)
        return self._type

    def _to_extern(self, ext: Any) -> None:
        ext.kind = 3
        ext.of.memory = self._core.m[0]

    @property
    def size(self) -> int:
        rt = self.store._rt
        return rt.api.wasmtime_memory_size(self.store._ctx, self._core.m)

    @property
    def data_size(self) -> int:
        core = self._core
        if core.view[2] != core.gen:
            core.current(self.store)  # raises when the store is closed
        return core.size

    def grow(self, delta: int) -> int:
        store = self.store
        rt = store._rt
        if delta < 0:
            raise ValueError("delta must be >= 0")
        store._ctx  # raises when the store is closed
        prev = ffi.new("uint64_t*")
        err = lib.pwvm_mem_grow(store._sp, self._core.m, delta, prev)  # refreshes every tracked record
        if err != ffi.NULL:
            raise LimitError(rt.take_error_message(err))
        return prev[0]

    def read(self, offset: int, length: int) -> bytes:
        core = self._core
        buf = core.buf if core.view[2] == core.gen else core.current(self.store)
        if 0 <= offset and 0 <= length and offset + length <= core.size:
            return buf[offset:offset + length]  # type: ignore[no-any-return]
        raise _oob(offset, length, core.size)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        core = self._core
        buf = core.buf if core.view[2] == core.gen else core.current(self.store)
        cls = data.__class__
        n = len(data) if cls is bytes or cls is bytearray else memoryview(data).nbytes
        if 0 <= offset and offset + n <= core.size:
            buf[offset:offset + n] = data
            return
        raise _oob(offset, n, core.size)

    def read_u32(self, offset: int) -> int:
        core = self._core
        buf = core.buf if core.view[2] == core.gen else core.current(self.store)
        if 0 <= offset and offset + 4 <= core.size:
            return _U32.unpack_from(buf, offset)[0]  # type: ignore[no-any-return]
        raise _oob(offset, 4, core.size)

    def write_u32(self, offset: int, value: int) -> None:
        core = self._core
        buf = core.buf if core.view[2] == core.gen else core.current(self.store)
        if 0 <= offset and offset + 4 <= core.size:
            _U32.pack_into(buf, offset, value & 0xFFFFFFFF)
            return
        raise _oob(offset, 4, core.size)

    def view(self) -> memoryview:
        return memoryview(self._core.current(self.store))


class CallerMemory(WasmtimeMemory):
    """The memory a :class:`~._store.WasmtimeCaller` hands out: one per memory and Caller, reused
    at every host call instead of a new wrapper each time.

    The Caller lives in a module-level table, so a cached wrapper must not hold its store: it
    reaches it through the store's weak reference. A host function may keep the wrapper past its
    call, though, and a Memory holds its store: so at the end of each host call that took it,
    the Caller checks whether anything besides its cache holds the wrapper (``_settle``), and
    if so pins the store to it (``_pin``, a strong reference, as every Memory has) and caches a
    new one from then on. Should a store go while its Caller still caches a wrapper, the wrapper
    is killed (``_kill``): any access raises instead of reading freed memory.
    """

    __slots__ = ("_ref", "_pin")
    _ref: Any  # weakref.ref to the store
    _pin: WasmtimeStore | None  # the store, once the wrapper is held elsewhere

    @property  # type: ignore[override]
    def store(self) -> WasmtimeStore:  # type: ignore[override]
        store = self._pin or self._ref()
        if store is None:
            raise WasmError("the store is closed")
        return store  # type: ignore[no-any-return]

    @classmethod
    def _for(cls, ref: Any, core: MemCore) -> CallerMemory:
        mem = _new(cls)
        mem._ref = ref
        mem._pin = None
        mem._type = None
        mem._core = core
        return mem

    def _kill(self) -> None:
        """The store is gone while this wrapper was only cached: every access raises from now on."""
        self._core = _DEAD


class _DeadCore(MemCore):
    """The core of a killed CallerMemory: its generation never matches, and current() raises."""

    __slots__ = ()

    def __init__(self) -> None:
        self.m = None
        self.info = None
        self.view = memoryview(bytearray(24)).cast("Q")
        self.gen = -1
        self.size = 0
        self.buf = bytearray()

    def current(self, store: Any) -> Any:
        raise WasmError("the store is closed")


_DEAD = _DeadCore()


class WasmtimeGlobal(Global):
    __slots__ = ("store", "type", "_g")
    store: WasmtimeStore
    _g: Any  # cffi wasmtime_global_t*

    @classmethod
    def _wrap(cls, store: WasmtimeStore, g: Any, ty: GlobalType) -> WasmtimeGlobal:
        glob = object.__new__(cls)
        glob.store = store
        glob.type = ty
        glob._g = g
        return glob

    def _to_extern(self, ext: Any) -> None:
        ext.kind = 1
        setattr(ext.of, "global", self._g[0])

    def get(self, raw: bool = False) -> Any:
        rt = self.store._rt
        api = rt.api
        val = ffi.new("wasmtime_val_t*")
        api.wasmtime_global_get(self.store._ctx, self._g, val)
        return from_val(self.store, val, raw)

    def set(self, value: Any) -> None:
        rt = self.store._rt
        api = rt.api
        if not self.type.mutable:
            raise TypeError("cannot set an immutable global")
        val = ffi.new("wasmtime_val_t*")
        to_val(self.store, self.type.content, value, val)
        err = api.wasmtime_global_set(self.store._ctx, self._g, val)
        if err != ffi.NULL:
            raise WasmError(rt.take_error_message(err))


class WasmtimeTable(Table):
    __slots__ = ("store", "type", "_t")
    store: WasmtimeStore
    _t: Any  # cffi wasmtime_table_t*

    @classmethod
    def _wrap(cls, store: WasmtimeStore, t: Any, ty: TableType) -> WasmtimeTable:
        tab = object.__new__(cls)
        tab.store = store
        tab.type = ty
        tab._t = t
        return tab

    def _to_extern(self, ext: Any) -> None:
        ext.kind = 2
        ext.of.table = self._t[0]

    @property
    def size(self) -> int:
        rt = self.store._rt
        api = rt.api
        return api.wasmtime_table_size(self.store._ctx, self._t)

    def get(self, index: int) -> Any:
        rt = self.store._rt
        api = rt.api
        if not 0 <= index < self.size:
            raise IndexError(f"table index {index} out of bounds (size {self.size})")
        val = ffi.new("wasmtime_val_t*")
        if not api.wasmtime_table_get(self.store._ctx, self._t, index, val):
            raise IndexError(f"table index {index} out of bounds")
        return from_val(self.store, val)

    def set(self, index: int, value: Any) -> None:
        rt = self.store._rt
        api = rt.api
        if not 0 <= index < self.size:
            raise IndexError(f"table index {index} out of bounds (size {self.size})")
        val = ffi.new("wasmtime_val_t*")
        to_val(self.store, self.type.element, value, val)
        err = api.wasmtime_table_set(self.store._ctx, self._t, index, val)
        if err != ffi.NULL:
            raise WasmError(rt.take_error_message(err))

    def grow(self, delta: int, init: Any = None) -> int:
        rt = self.store._rt
        api = rt.api
        if delta < 0:
            raise ValueError("delta must be >= 0")
        val = ffi.new("wasmtime_val_t*")
        to_val(self.store, self.type.element, init, val)
        prev = ffi.new("uint64_t*")
        err = api.wasmtime_table_grow(self.store._ctx, self._t, delta, val, prev)
        if err != ffi.NULL:
            raise LimitError(rt.take_error_message(err))
        return prev[0]
