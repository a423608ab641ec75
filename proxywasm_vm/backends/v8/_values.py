"""Conversions between Python values and the shim's pwv8_val slots."""

from __future__ import annotations

from typing import Any

from proxywasm_vm._types import ValType

from proxywasm_vm._values import to_float, wrap_i32, wrap_i64

from ._ffi import ffi

#: pwv8_kind of each value type (v128 cannot cross V8's JS boundary).
KIND = {ValType.I32: 0, ValType.I64: 1, ValType.F32: 2, ValType.F64: 3, ValType.EXTERNREF: 4, ValType.FUNCREF: 5}
#: the value types of pwv8_func_type's kinds (6: v128, named by a funcref's type only)
FROM_KIND = {**{v: k for k, v in KIND.items()}, 6: ValType.V128}


def kinds(types: tuple[ValType, ...]) -> bytes:
    try:
        return bytes(KIND[t] for t in types)
    except KeyError:
        raise TypeError("v128 values cannot cross the V8 boundary (v128_values is not supported)") from None


def to_slot(store: Any, ty: ValType, v: Any, slot: Any) -> None:
    if ty is ValType.I32:
        slot.i32 = wrap_i32(v)
    elif ty is ValType.I64:
        slot.i64 = wrap_i64(v)
    elif ty is ValType.F32:
        slot.f32 = to_float(v)
    elif ty is ValType.F64:
        slot.f64 = to_float(v)
    elif ty is ValType.FUNCREF:
        if v is None:
            slot.ref = 0
        elif getattr(v, "store", None) is store and hasattr(v, "_ref"):
            slot.ref = v._ref
        else:
            raise TypeError("funcref must be a Func of this store or None")
    elif ty is ValType.EXTERNREF:
        if v is None:
            slot.ref = 0
        else:  # the object's id travels through wasm; the store keeps the object
            store._externrefs[id(v)] = v
            slot.ref = id(v)
    else:
        raise TypeError("v128 values cannot cross the V8 boundary (v128_values is not supported)")


def from_slot(store: Any, ty: ValType, slot: Any) -> Any:
    if ty is ValType.I32:
        return slot.i32
    if ty is ValType.I64:
        return slot.i64
    if ty is ValType.F32:
        return slot.f32
    if ty is ValType.F64:
        return slot.f64
    if ty is ValType.FUNCREF:
        ref = slot.ref
        if not ref:
            return None
        from ._func import funcref

        return funcref(store, ref)
    ref = slot.ref
    return store._externrefs.get(ref) if ref else None


def new_slots(n: int) -> Any:
    return ffi.new("pwv8_val[]", max(1, n))
