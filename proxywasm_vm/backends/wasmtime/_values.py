"""Conversions between Python values, wasmtime's raw slots and typed values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxywasm_vm._types import ValType

from proxywasm_vm._values import to_float, v128_bytes, wrap_i32, wrap_i64

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
        out.of.f32 = to_float(v)
    elif ty is ValType.F64:
        out.of.f64 = to_float(v)
    elif ty is ValType.V128:
        ffi.memmove(out.of.v128, v128_bytes(v), 16)
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
        ffi.memmove(slot.v128, v128_bytes(v), 16)
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
