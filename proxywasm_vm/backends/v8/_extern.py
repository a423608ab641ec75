"""Memory, Global, Table and Instance of the V8 backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxywasm_vm._errors import LimitError, WasmError
from proxywasm_vm._global import Global
from proxywasm_vm._instance import Instance
from proxywasm_vm._memory import PAGE_SIZE, Memory
from proxywasm_vm._table import Table
from proxywasm_vm._types import FuncType, GlobalType, MemoryType, TableType, ValType
from proxywasm_vm._values import V128
from proxywasm_vm._rawbridge import from_mapped, global_adapter, needs_bridge, to_mapped

from ._ffi import ffi, last_error, lib
from ._values import KIND, from_slot, to_slot

if TYPE_CHECKING:
    from proxywasm_vm._instance import Extern
    from proxywasm_vm._types import ExternType

    from ._engine import V8Module
    from ._store import V8Store

_buffer = ffi.buffer
_from_buffer = ffi.from_buffer


def _oob(offset: int, length: int, size: int) -> IndexError:
    return IndexError(f"memory access out of bounds: offset {offset} length {length} (memory is {size} bytes)")


class _Core:
    """One memory object of a store: the shim's live (data, size) record.

    The shim refreshes it whenever a call returns or a host function is
    entered (memory.grow inside wasm replaces the ArrayBuffer), and empties it
    when the store is closed. ``sizes[1]`` reads the size without a cdata
    attribute lookup.
    """

    __slots__ = ("buf", "info", "ref", "size", "sizes")

    def __init__(self, ref: int, info: Any) -> None:
        self.ref = ref
        self.info = info
        self.sizes = memoryview(ffi.buffer(info, ffi.sizeof("pwv8_meminfo"))).cast("Q")
        self.size = -1  # the buffer last made over the bytes, shared by every wrapper
        self.buf: Any = None


def core_of(store: V8Store, ref: int) -> _Core:
    out = ffi.new("pwv8_meminfo**")
    rc = lib.pwv8_memory_track(store._sp, ref, out)
    if rc:
        store._raise(rc)
    key = int(ffi.cast("uintptr_t", out[0]))
    core = store._cores.get(key)
    if core is None:
        core = store._cores[key] = _Core(ref, out[0])
    return core


class V8Memory(Memory):
    """Reads and writes go through a buffer over the memory's bytes, rebuilt
    whenever the size changed (V8 moves a memory only when it grows)."""

    __slots__ = ("_buf", "_core", "_ref", "_size", "_sizes", "_type", "store")
    store: V8Store
    _type: MemoryType | None  # None until asked, for a memory reached through a Caller
    _ref: int  # the memory's id in its store
    _core: _Core
    _sizes: memoryview  # the core's (data, size) record; [1] is the size in bytes
    _size: int  # the size _buf was made for
    _buf: Any  # cffi buffer (or bytearray) over the bytes

    @classmethod
    def _wrap(cls, store: V8Store, ref: int, ty: MemoryType | None) -> V8Memory:
        mem = cls._from_core(store, core_of(store, ref))
        mem._type = ty
        return mem

    @classmethod
    def _from_core(cls, store: V8Store, core: _Core) -> V8Memory:
        mem = object.__new__(cls)
        mem.store = store
        mem._type = None
        mem._ref = core.ref
        mem._core = core
        mem._sizes = core.sizes
        mem._size = core.size
        mem._buf = core.buf
        return mem

    def _current(self) -> Any:
        if self.store._closed:
            raise WasmError("the store is closed")
        core = self._core
        size = core.info.size
        if size != core.size:
            core.buf = _buffer(core.info.data, size) if size else bytearray()
            core.size = size
        self._buf = core.buf
        self._size = size
        return self._buf

    @property
    def type(self) -> MemoryType:  # type: ignore[override]  # read lazily: a property over the contract's attribute
        if self._type is None:  # not known for a memory reached through a Caller
            from proxywasm_vm._types import Limits

            self._type = MemoryType(Limits(self.size))
        return self._type

    @property
    def size(self) -> int:
        return self.data_size // PAGE_SIZE

    @property
    def data_size(self) -> int:
        if self.store._closed:
            raise WasmError("the store is closed")
        return self._sizes[1]

    def grow(self, delta: int) -> int:
        if delta < 0:
            raise ValueError("delta must be >= 0")
        prev = ffi.new("uint32_t*")
        rc = lib.pwv8_memory_grow(self.store._sp, self._ref, delta, prev)
        if rc == 16:
            raise WasmError("the store is closed")
        if rc:
            raise LimitError(last_error())
        return prev[0]

    def read(self, offset: int, length: int) -> bytes:
        size = self._sizes[1]
        buf = self._buf if size == self._size else self._current()
        if 0 <= offset <= size - length and length >= 0:
            return buf[offset:offset + length]
        if self.store._closed:
            raise WasmError("the store is closed")
        raise _oob(offset, length, size)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        size = self._sizes[1]
        buf = self._buf if size == self._size else self._current()
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if not 0 <= offset <= size - n:
            if self.store._closed:
                raise WasmError("the store is closed")
            raise _oob(offset, n, size)
        buf[offset:offset + n] = data

    def read_u32(self, offset: int) -> int:
        return int.from_bytes(self.read(offset, 4), "little")

    def view(self) -> memoryview:
        return memoryview(self._current())


class V8Global(Global):
    """A global. f32/f64/v128 ones are read and written through a global adapter (see ``_func``):
    a JavaScript number would lose a NaN's payload, and the JS API cannot read a v128."""

    __slots__ = ("_ad", "_const", "_ref", "store", "type")
    store: V8Store
    _ref: int  # the global's id in its store
    _ad: Any  # f32/f64/v128: the exports of its global adapter, made on first use
    _const: int | None  # an immutable v128 global: its value when known (V8 cannot read it, see below)

    @classmethod
    def _wrap(cls, store: V8Store, ref: int, ty: GlobalType) -> V8Global:
        g = object.__new__(cls)
        g.store = store
        g.type = ty
        g._ref = ref
        g._ad = None
        g._const = None
        return g

    def _adapter(self) -> Any:
        if self._ad is None:
            from ._func import bridge

            self._ad = bridge(self.store, global_adapter(self.type, True), [self]).exports
        return self._ad

    def get(self, raw: bool = False) -> Any:
        t = self.type.content
        if t is ValType.V128 and not self.type.mutable:
            # V8 aborts the process when an immutable v128 global is imported (so no adapter can
            # read it) and its JS API cannot read one: known only when the module defines it as
            # a constant, or when it was made here (Capabilities.immutable_v128_imports)
            if self._const is None:
                raise NotImplementedError("V8 cannot read this immutable v128 global (not a v128.const of its "
                                          "module); Capabilities.immutable_v128_imports")
            return V128(self._const) if raw else self._const
        if needs_bridge((t,), True):
            r = self._adapter()["get"]()
            return from_mapped((t,), r if isinstance(r, tuple) else (r,), True, raw)[0]
        val = ffi.new("pwv8_val*")
        if lib.pwv8_global_get(self.store._sp, self._ref, KIND[self.type.content], val):
            raise WasmError(last_error())
        return from_slot(self.store, self.type.content, val)

    def set(self, value: Any) -> None:
        if not self.type.mutable:
            raise TypeError("cannot set an immutable global")
        t = self.type.content
        if needs_bridge((t,), True):
            self._adapter()["set"](*to_mapped((t,), (value,), True, None))
            return
        val = ffi.new("pwv8_val*")
        to_slot(self.store, self.type.content, value, val)
        if lib.pwv8_global_set(self.store._sp, self._ref, KIND[self.type.content], val):
            raise WasmError(last_error())


class V8Table(Table):
    __slots__ = ("_ref", "store", "type")
    store: V8Store
    _ref: int  # the table's id in its store

    @classmethod
    def _wrap(cls, store: V8Store, ref: int, ty: TableType) -> V8Table:
        t = object.__new__(cls)
        t.store = store
        t.type = ty
        t._ref = ref
        return t

    @property
    def size(self) -> int:
        out = ffi.new("uint32_t*")
        if lib.pwv8_table_size(self.store._sp, self._ref, out):
            raise WasmError(last_error())
        return out[0]

    def _check(self, index: int) -> None:
        size = self.size
        if not 0 <= index < size:
            raise IndexError(f"table index {index} out of bounds (size {size})")

    def get(self, index: int) -> Any:
        self._check(index)
        val = ffi.new("pwv8_val*")
        if lib.pwv8_table_get(self.store._sp, self._ref, KIND[self.type.element], index, val):
            raise WasmError(last_error())
        return from_slot(self.store, self.type.element, val)

    def set(self, index: int, value: Any) -> None:
        self._check(index)
        val = ffi.new("pwv8_val*")
        to_slot(self.store, self.type.element, value, val)
        if lib.pwv8_table_set(self.store._sp, self._ref, KIND[self.type.element], index, val):
            raise WasmError(last_error())

    def grow(self, delta: int, init: Any = None) -> int:
        if delta < 0:
            raise ValueError("delta must be >= 0")
        val = ffi.new("pwv8_val*")
        to_slot(self.store, self.type.element, init, val)
        prev = ffi.new("uint32_t*")
        if lib.pwv8_table_grow(self.store._sp, self._ref, KIND[self.type.element], delta, val, prev):
            raise LimitError(last_error())
        return prev[0]


class V8Instance(Instance):
    """An instance of a store (``_ref``: its id there)."""

    store: V8Store
    module: V8Module
    _ref: int
    _types: dict[str, ExternType]  # export types by name

    @classmethod
    def _wrap(cls, store: V8Store, module: V8Module, ref: int) -> V8Instance:
        i = object.__new__(cls)
        i.store = store
        i.module = module
        i._ref = ref
        i._types = {e.name: e.type for e in module.exports}
        return i

    def _export(self, name: str) -> Extern:
        from ._func import wrap_func

        kind, ref = ffi.new("int32_t*"), ffi.new("uint32_t*")
        raw = name.encode()
        rc = lib.pwv8_instance_export(self.store._sp, self._ref, raw, len(raw), kind, ref)
        if rc == 16:
            raise WasmError("the store is closed")
        if rc:
            raise KeyError(f"no export named {name!r}")
        ty = self._types.get(name)
        k = kind[0]
        if k == 0:
            return wrap_func(self.store, ref[0], ty if isinstance(ty, FuncType) else _functype(self.store, ref[0]))
        if k == 1:
            assert isinstance(ty, GlobalType)  # the module's exports name every global's type
            g = V8Global._wrap(self.store, ref[0], ty)
            g._const = self.module._v128_consts.get(name)
            return g
        if k == 2:
            assert isinstance(ty, TableType)
            return V8Table._wrap(self.store, ref[0], ty)
        return V8Memory._wrap(self.store, ref[0], ty if isinstance(ty, MemoryType) else None)


def _functype(store: V8Store, ref: int) -> FuncType:
    from ._func import funcref

    return funcref(store, ref).type
