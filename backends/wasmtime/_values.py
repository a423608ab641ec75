"""Conversions between Python values, wasmtime's raw slots and typed values."""

from __future__ import annotations

from operator import index
from typing import TYPE_CHECKING, Any

from proxywasm_vm._types import FuncType, GlobalType, Limits, MemoryType, TableType, ValType

from ._ffi import api, ffi

if TYPE_CHECKING:
    from ._store import WasmtimeStore

# wasm.h value kinds (wasm_valtype_new) and wasmtime_val_t kinds
WASM_KIND = {ValType.I32: 0, ValType.I64: 1, ValType.F32: 2, ValType.F64: 3, ValType.V128: 4,
             ValType.EXTERNREF: 128, ValType.FUNCREF: 129}
FROM_WASM_KIND = {v: k for k, v in WASM_KIND.items()}
VAL_KIND = {ValType.I32: 0, ValType.I64: 1, ValType.F32: 2, ValType.F64: 3, ValType.V128: 4,
            ValType.FUNCREF: 5, ValType.EXTERNREF: 6}
FROM_VAL_KIND = {v: k for k, v in VAL_KIND.items()}
_MASK64 = (1 << 64) - 1
_MASK128 = (1 << 128) - 1


def wrap_i32(v: int) -> int:
    """Accept -2**31 .. 2**32-1 and return the signed i32 with the same bits.

    Integers only (``operator.index``): ``"3"`` or ``1.5`` raise ``TypeError``
    here as they do on the shim's scalar path.
    """
    v = index(v)
    if not -(1 << 31) <= v < (1 << 32):
        raise OverflowError(f"{v} does not fit in i32")
    return v - (1 << 32) if v >= (1 << 31) else v


def wrap_i64(v: int) -> int:
    v = index(v)
    if not -(1 << 63) <= v < (1 << 64):
        raise OverflowError(f"{v} does not fit in i64")
    return v - (1 << 64) if v >= (1 << 63) else v


def to_float(v: Any) -> float:
    """A float for f32/f64 (ints and floats; text is refused, not parsed)."""
    if isinstance(v, (str, bytes, bytearray)):
        raise TypeError(f"expected a number for a float value, got {type(v).__name__}")
    return float(v)


def _v128_bytes(v: Any) -> bytes:
    v = index(v)
    if not -(1 << 127) <= v <= _MASK128:
        raise OverflowError(f"{v} does not fit in v128")
    return (v & _MASK128).to_bytes(16, "little")


# ---- type objects ------------------------------------------------------------

def new_valtype(t: ValType) -> Any:
    """An owned ``wasm_valtype_t*`` (wasmtime's ``wasm_valtype_new`` aborts the process for v128)."""
    if t is ValType.V128:
        return api.wasmtime_wasm_valtype_v128()
    return api.wasm_valtype_new(WASM_KIND[t])


def _valtype_vec(types: tuple[ValType, ...]) -> Any:
    vec = ffi.new("wasm_valtype_vec_t*")
    arr = ffi.new("wasm_valtype_t*[]", [new_valtype(t) for t in types] or [ffi.NULL])
    api.wasm_valtype_vec_new(vec, len(types), arr)
    return vec


def new_functype(ty: FuncType) -> Any:
    """An owned ``wasm_functype_t*`` (deleted when collected)."""
    ft = api.wasm_functype_new(_valtype_vec(ty.params), _valtype_vec(ty.results))
    return ffi.gc(ft, api.wasm_functype_delete)


def _limits(lim: Limits) -> Any:
    return ffi.new("wasm_limits_t*", (lim.min, 0xFFFFFFFF if lim.max is None else lim.max))


def new_memorytype(ty: MemoryType) -> Any:
    if ty.is_64 or ty.shared:
        raise ValueError("64-bit and shared memories cannot be created from Python")
    lim = ty.limits
    if lim.min > 65536 or (lim.max is not None and lim.max > 65536):
        # wasm_memorytype_new panics (aborting the process) past 4 GiB of 32-bit memory
        raise ValueError(f"a 32-bit memory has at most 65536 pages, got limits {lim.min}..{lim.max}")
    return ffi.gc(api.wasm_memorytype_new(_limits(lim)), api.wasm_memorytype_delete)


def new_globaltype(ty: GlobalType) -> Any:
    gt = api.wasm_globaltype_new(new_valtype(ty.content), 1 if ty.mutable else 0)
    return ffi.gc(gt, api.wasm_globaltype_delete)


def new_tabletype(ty: TableType) -> Any:
    tt = api.wasm_tabletype_new(new_valtype(ty.element), _limits(ty.limits))
    return ffi.gc(tt, api.wasm_tabletype_delete)


#: One owned valtype per ValType, to recognise borrowed ones (never freed).
_KNOWN_VALTYPES: list[tuple[Any, ValType]] = []


def valtype(vt: Any) -> ValType:
    """The ValType of a borrowed ``wasm_valtype_t*``.

    Not ``wasm_valtype_kind``: wasmtime aborts the process in it for v128 (and
    for GC reference types), so the type is compared with known ones instead.
    """
    if not _KNOWN_VALTYPES:
        _KNOWN_VALTYPES.extend((new_valtype(t), t) for t in ValType)
    for known, t in _KNOWN_VALTYPES:
        if api.wasmtime_wasm_valtype_equal(vt, known):
            return t
    raise TypeError("unsupported value type (only i32, i64, f32, f64, v128, funcref and externref are)")


def _types_of(vec: Any) -> tuple[ValType, ...]:
    return tuple(valtype(vec.data[i]) for i in range(vec.size))


def _functype(ft: Any) -> FuncType:
    return FuncType(_types_of(api.wasm_functype_params(ft)), _types_of(api.wasm_functype_results(ft)))


def _memorytype(mt: Any) -> MemoryType:
    mx = ffi.new("uint64_t*")
    has_max = api.wasmtime_memorytype_maximum(mt, mx)
    return MemoryType(Limits(api.wasmtime_memorytype_minimum(mt), mx[0] if has_max else None),
                      is_64=bool(api.wasmtime_memorytype_is64(mt)))


def _globaltype(gt: Any) -> GlobalType:
    return GlobalType(valtype(api.wasm_globaltype_content(gt)),
                      bool(api.wasm_globaltype_mutability(gt)))


def _tabletype(tt: Any) -> TableType:
    lim = api.wasm_tabletype_limits(tt)
    return TableType(valtype(api.wasm_tabletype_element(tt)),
                     Limits(lim.min, None if lim.max == 0xFFFFFFFF else lim.max))


def externtype(et: Any) -> Any:
    """The public type of a borrowed ``wasm_externtype_t*``."""
    kind = api.wasm_externtype_kind(et)
    if kind == 0:
        return _functype(api.wasm_externtype_as_functype_const(et))
    if kind == 1:
        return _globaltype(api.wasm_externtype_as_globaltype_const(et))
    if kind == 2:
        return _tabletype(api.wasm_externtype_as_tabletype_const(et))
    if kind == 3:
        return _memorytype(api.wasm_externtype_as_memorytype_const(et))
    raise TypeError(f"unsupported extern kind {kind}")


def functype_of(ctx: Any, f: Any) -> FuncType:
    ft = api.wasmtime_func_type(ctx, f)
    try:
        return _functype(ft)
    finally:
        api.wasm_functype_delete(ft)


def memorytype_of(ctx: Any, m: Any) -> MemoryType:
    mt = api.wasmtime_memory_type(ctx, m)
    try:
        return _memorytype(mt)
    finally:
        api.wasm_memorytype_delete(mt)


def globaltype_of(ctx: Any, g: Any) -> GlobalType:
    gt = api.wasmtime_global_type(ctx, g)
    try:
        return _globaltype(gt)
    finally:
        api.wasm_globaltype_delete(gt)


def tabletype_of(ctx: Any, t: Any) -> TableType:
    tt = api.wasmtime_table_type(ctx, t)
    try:
        return _tabletype(tt)
    finally:
        api.wasm_tabletype_delete(tt)


# ---- typed values (wasmtime_val_t), for globals and tables -----------------

def to_val(store: WasmtimeStore, ty: ValType, v: Any, out: Any) -> None:
    """Fill ``out`` (a ``wasmtime_val_t*``) with ``v`` of type ``ty``."""
    out.kind = VAL_KIND[ty]
    if ty is ValType.I32:
        out.of.i32 = wrap_i32(v)
    elif ty is ValType.I64:
        out.of.i64 = wrap_i64(v)
    elif ty is ValType.F32:
        out.of.f32 = to_float(v)
    elif ty is ValType.F64:
        out.of.f64 = to_float(v)
    elif ty is ValType.V128:
        ffi.memmove(out.of.v128, _v128_bytes(v), 16)
    elif ty is ValType.FUNCREF:
        store._funcref_to_val(v, out)
    else:
        store._externref_to_val(v, out)


def from_val(store: WasmtimeStore, val: Any) -> Any:
    kind = val.kind
    if kind == 0:
        return val.of.i32
    if kind == 1:
        return val.of.i64
    if kind == 2:
        return val.of.f32
    if kind == 3:
        return val.of.f64
    if kind == 4:
        return int.from_bytes(bytes(ffi.buffer(val.of.v128, 16)), "little")
    if kind == 5:
        return store._funcref_from_val(val)
    if kind == 6:
        return store._externref_from_val(val)
    raise TypeError(f"unsupported wasmtime value kind {kind}")


# ---- raw slots (wasmtime_val_raw_t), for calls --------------------------------

def to_raw(store: WasmtimeStore, ty: ValType, v: Any, slot: Any) -> None:
    if ty is ValType.I32:
        slot.i32 = wrap_i32(v)
    elif ty is ValType.I64:
        slot.i64 = wrap_i64(v)
    elif ty is ValType.F32:
        slot.f32 = to_float(v)
    elif ty is ValType.F64:
        slot.f64 = to_float(v)
    elif ty is ValType.V128:
        ffi.memmove(slot.v128, _v128_bytes(v), 16)
    elif ty is ValType.FUNCREF:
        slot.funcref = store._funcref_to_raw(v)
    else:
        slot.externref = store._externref_to_raw(v)


def from_raw(store: WasmtimeStore, ty: ValType, slot: Any) -> Any:
    if ty is ValType.I32:
        return slot.i32
    if ty is ValType.I64:
        return slot.i64
    if ty is ValType.F32:
        return slot.f32
    if ty is ValType.F64:
        return slot.f64
    if ty is ValType.V128:
        return int.from_bytes(bytes(ffi.buffer(slot.v128, 16)), "little")
    if ty is ValType.FUNCREF:
        return store._funcref_from_raw(slot.funcref)
    return store._externref_from_raw(slot.externref)
