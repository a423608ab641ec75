"""Conversions between Python values, wasmtime's raw slots and typed values.

f32/f64 given raw (``F32Bits``/``F64Bits``) are written as their bits through the i32/i64
member of the same union, and read that way in raw mode (``raw=True``): a C ``float``
read into a Python float would quiet a signalling NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxywasm_vm._types import ValType

from proxywasm_vm._values import V128, F32Bits, F64Bits, to_float, v128_bytes, wrap_i32, wrap_i64

from ._ffi import ffi

if TYPE_CHECKING:
    from ._store import WasmtimeStore

# wasm.h value kinds (wasm_valtype_new) and wasmtime_val_t kinds
WASM_KIND = {ValType.I32: 0, ValType.I64: 1, ValType.F32: 2, ValType.F64: 3, ValType.V128: 4,
             ValType.EXTERNREF: 128, ValType.FUNCREF: 129}
VAL_KIND = {ValType.I32: 0, ValType.I64: 1, ValType.F32: 2, ValType.F64: 3, ValType.V128: 4,
            ValType.FUNCREF: 5, ValType.EXTERNREF: 6}


# ---- typed values (wasmtime_val_t), for globals and tables -----------------

def to_val(store: WasmtimeStore, ty: ValType, v: Any, out: Any) -> None:
    """Fill ``out`` (a ``wasmtime_val_t*``) with ``v`` of type ``ty``."""
    out.kind = VAL_KIND[ty]
    if ty is ValType.I32:
        out.of.i32 = wrap_i32(v)
    elif ty is ValType.I64:
        out.of.i64 = wrap_i64(v)
    elif ty is ValType.F32:
        if v.__class__ is F32Bits:
            out.of.i32 = _s32(v.bits)
        else:
            out.of.f32 = to_float(v)
    elif ty is ValType.F64:
        if v.__class__ is F64Bits:
            out.of.i64 = _s64(v.bits)
        else:
            out.of.f64 = to_float(v)
    elif ty is ValType.V128:
        ffi.memmove(out.of.v128, v128_bytes(v), 16)
    elif ty is ValType.FUNCREF:
        store._funcref_to_val(v, out)
    else:
        store._externref_to_val(v, out)


def _s32(bits: int) -> int:
    return bits - (1 << 32) if bits >> 31 else bits


def _s64(bits: int) -> int:
    return bits - (1 << 64) if bits >> 63 else bits


def from_val(store: WasmtimeStore, val: Any, raw: bool = False) -> Any:
    kind = val.kind
    if kind == 0:
        return val.of.i32
    if kind == 1:
        return val.of.i64
    if kind == 2:
        return F32Bits(val.of.i32 & 0xFFFFFFFF) if raw else val.of.f32
    if kind == 3:
        return F64Bits(val.of.i64 & 0xFFFFFFFFFFFFFFFF) if raw else val.of.f64
    if kind == 4:
        v = int.from_bytes(bytes(ffi.buffer(val.of.v128, 16)), "little")
        return V128(v) if raw else v
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
        if v.__class__ is F32Bits:
            slot.i32 = _s32(v.bits)
        else:
            slot.f32 = to_float(v)
    elif ty is ValType.F64:
        if v.__class__ is F64Bits:
            slot.i64 = _s64(v.bits)
        else:
            slot.f64 = to_float(v)
    elif ty is ValType.V128:
        ffi.memmove(slot.v128, v128_bytes(v), 16)
    elif ty is ValType.FUNCREF:
        slot.funcref = store._funcref_to_raw(v)
    else:
        slot.externref = store._externref_to_raw(v)


def from_raw(store: WasmtimeStore, ty: ValType, slot: Any, raw: bool = False) -> Any:
    """The value in ``slot``; with ``raw``, f32/f64 as bits and v128 as ``V128``."""
    if ty is ValType.I32:
        return slot.i32
    if ty is ValType.I64:
        return slot.i64
    if ty is ValType.F32:
        return F32Bits(slot.i32 & 0xFFFFFFFF) if raw else slot.f32
    if ty is ValType.F64:
        return F64Bits(slot.i64 & 0xFFFFFFFFFFFFFFFF) if raw else slot.f64
    if ty is ValType.V128:
        v = int.from_bytes(bytes(ffi.buffer(slot.v128, 16)), "little")
        return V128(v) if raw else v
    if ty is ValType.FUNCREF:
        return store._funcref_from_raw(slot.funcref)
    return store._externref_from_raw(slot.externref)
