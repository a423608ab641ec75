"""Memory, Global and Table of the wasmtime backend."""

from __future__ import annotations

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

_span = lib.pwvm_mem_span
_write = lib.pwvm_mem_write
_unpack = ffi.unpack
_from_buffer = ffi.from_buffer


def _oob(offset: int, length: int, size: int) -> IndexError:
    return IndexError(f"memory access out of bounds: offset {offset} length {length} (memory is {size} bytes)")


class WasmtimeMemory(Memory):
    __slots__ = ("store", "_type", "_sp", "_m", "_keep")
    store: WasmtimeStore
    _type: MemoryType | None
    _sp: Any  # cffi pwvm_store* of the store (cdata)
    _m: Any  # cffi wasmtime_memory_t*
    _keep: Any

    @classmethod
    def _wrap(cls, store: WasmtimeStore, m: Any, ty: MemoryType | None, keep: Any = None) -> WasmtimeMemory:
        mem = object.__new__(cls)
        mem.store = store
        mem._type = ty
        mem._sp = store._sp
        mem._m = m
        mem._keep = keep  # owner of the cdata `m` points into, when it is not `m` itself
        return mem

    @property
    def type(self) -> MemoryType:  # type: ignore[override]  # read lazily: a property over the contract's attribute
        rt = self.store._rt
        if self._type is None:

            self._type = rt.memorytype_of(self.store._ctx, self._m)
        return self._type

    def _to_extern(self, ext: Any) -> None:
        ext.kind = 3
        ext.of.memory = self._m[0]

    @property
    def size(self) -> int:
        rt = self.store._rt
        api = rt.api
        return api.wasmtime_memory_size(self.store._ctx, self._m)

    @property
    def data_size(self) -> int:
        rt = self.store._rt
        api = rt.api
        return api.wasmtime_memory_data_size(self.store._ctx, self._m)

    def grow(self, delta: int) -> int:
        rt = self.store._rt
        api = rt.api
        if delta < 0:
            raise ValueError("delta must be >= 0")
        prev = ffi.new("uint64_t*")
        err = api.wasmtime_memory_grow(self.store._ctx, self._m, delta, prev)
        if err != ffi.NULL:
            raise LimitError(rt.take_error_message(err))
        return prev[0]

    def read(self, offset: int, length: int) -> bytes:
        try:
            p = _span(self._sp, self._m, offset, length)
        except OverflowError:
            p = None
        if not p:
            raise _oob(offset, length, self.data_size)
        return _unpack(p, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes):
            data = _from_buffer(data)
        try:
            rc = _write(self._sp, self._m, offset, data, len(data))
        except OverflowError:
            rc = -1
        if rc:
            raise _oob(offset, len(data), self.data_size)

    def read_u32(self, offset: int) -> int:
        try:
            p = _span(self._sp, self._m, offset, 4)
        except OverflowError:
            p = None
        if not p:
            raise _oob(offset, 4, self.data_size)
        return ffi.cast("uint32_t*", p)[0]

    def write_u32(self, offset: int, value: int) -> None:
        try:
            p = _span(self._sp, self._m, offset, 4)
        except OverflowError:
            p = None
        if not p:
            raise _oob(offset, 4, self.data_size)
        ffi.cast("uint32_t*", p)[0] = value & 0xFFFFFFFF

    def view(self) -> memoryview:
        rt = self.store._rt
        api = rt.api
        ctx = self.store._ctx
        n = api.wasmtime_memory_data_size(ctx, self._m)
        if n == 0:
            return memoryview(bytearray())
        return memoryview(ffi.buffer(api.wasmtime_memory_data(ctx, self._m), n))


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
