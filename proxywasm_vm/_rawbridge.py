"""Adapter modules for runtimes whose API cannot carry some values bit for bit.

V8's JS API passes f32/f64 as JavaScript numbers (a NaN loses its payload; V8 may
canonicalise it) and cannot pass v128 at all; wasmer-python turns f32 into Python floats
(a signalling NaN comes back quiet). Such a backend calls and exposes functions through small
generated wasm modules that change the boundary types and nothing else:

- f32 crosses as an i32 holding its bits (``f32.reinterpret_i32`` / ``i32.reinterpret_f32``),
  f64 as an i64;
- with ``split_v128``, a v128 crosses as two i64 (low lane first: ``i64x2.splat``,
  ``i64x2.replace_lane 1``, ``i64x2.extract_lane``).

Every instruction used moves bits without looking at them (the spec defines reinterpret and
lane moves bit for bit; calls between wasm functions pass values unchanged), so the values
wasm sees are exactly the bits Python gave, and the other way round.

The modules (bytes, cached per signature):

- :func:`call_adapter`: imports ``"t" "f"`` of type ``ty``, exports ``"call"`` of the mapped
  type: how Python calls a function;
- :func:`host_adapter`: imports ``"t" "f"`` of the mapped type (the Python host function),
  exports ``"f"`` of type ``ty``: what wasm imports;
- :func:`global_adapter`: imports ``"t" "g"`` (a global of type ``gty``), exports ``"get"``
  (and ``"set"`` when mutable) of mapped types;
- :func:`global_maker`: exports ``"g"``, a global of type ``gty`` initialised to given bits
  (a constant in the module, so its bits are exact).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from ._types import FuncType, GlobalType, ValType
from ._values import V128, F32Bits, F64Bits, f32_bits, f64_bits, f32_from_bits, f64_from_bits, wrap_v128
from ._wasmparse import uleb128

__all__ = ["mapped_types", "needs_bridge", "call_adapter", "host_adapter", "global_adapter", "global_maker",
           "to_mapped", "from_mapped"]

_I32, _I64, _F32, _F64, _V128 = ValType.I32, ValType.I64, ValType.F32, ValType.F64, ValType.V128
_CODE = {_I32: 0x7F, _I64: 0x7E, _F32: 0x7D, _F64: 0x7C, _V128: 0x7B, ValType.FUNCREF: 0x70,
         ValType.EXTERNREF: 0x6F}
_LOCAL_GET, _LOCAL_SET, _CALL, _GLOBAL_GET, _GLOBAL_SET, _END = 0x20, 0x21, 0x10, 0x23, 0x24, 0x0B
_I32_REINTERPRET_F32, _I64_REINTERPRET_F64 = 0xBC, 0xBD
_F32_REINTERPRET_I32, _F64_REINTERPRET_I64 = 0xBE, 0xBF
_I64X2_SPLAT = b"\xfd" + uleb128(18)
_I64X2_EXTRACT = b"\xfd" + uleb128(29)
_I64X2_REPLACE = b"\xfd" + uleb128(30)


def mapped_types(types: Sequence[ValType], split_v128: bool) -> tuple[ValType, ...]:
    """``types`` as they cross the runtime's API: f32 -> i32, f64 -> i64, v128 -> i64 i64."""
    out: list[ValType] = []
    for t in types:
        if t is _F32:
            out.append(_I32)
        elif t is _F64:
            out.append(_I64)
        elif t is _V128 and split_v128:
            out += [_I64, _I64]
        else:
            out.append(t)
    return tuple(out)


def needs_bridge(types: Sequence[ValType], split_v128: bool) -> bool:
    return any(t is _F32 or t is _F64 or (split_v128 and t is _V128) for t in types)


# ---- values -------------------------------------------------------------------------------

def _s32(b: int) -> int:
    return b - (1 << 32) if b >> 31 else b


def _s64(b: int) -> int:
    return b - (1 << 64) if b >> 63 else b


def to_mapped(types: Sequence[ValType], vals: Sequence[Any], split_v128: bool, convert: Any) -> list[Any]:
    """Values of ``types`` (plain or raw) as the mapped values; ``convert(t, v)`` converts the others."""
    out: list[Any] = []
    for t, v in zip(types, vals):
        if t is _F32:
            out.append(_s32(f32_bits(v)))
        elif t is _F64:
            out.append(_s64(f64_bits(v)))
        elif t is _V128 and split_v128:
            w = wrap_v128(v)
            out += [_s64(w & 0xFFFFFFFFFFFFFFFF), _s64(w >> 64)]
        else:
            out.append(convert(t, v))
    return out


def from_mapped(types: Sequence[ValType], vals: Sequence[Any], split_v128: bool, raw: bool) -> list[Any]:
    """The mapped values ``vals`` as values of ``types``: raw (``F32Bits``...) or plain."""
    out: list[Any] = []
    i = 0
    for t in types:
        v = vals[i]
        i += 1
        if t is _F32:
            b = v & 0xFFFFFFFF
            out.append(F32Bits(b) if raw else f32_from_bits(b))
        elif t is _F64:
            b = v & 0xFFFFFFFFFFFFFFFF
            out.append(F64Bits(b) if raw else f64_from_bits(b))
        elif t is _V128:
            if split_v128:
                v = (v & 0xFFFFFFFFFFFFFFFF) | ((vals[i] & 0xFFFFFFFFFFFFFFFF) << 64)
                i += 1
            out.append(V128(v) if raw else wrap_v128(v))
        else:
            out.append(v)
    return out


# ---- module bytes -------------------------------------------------------------------------

def _vec(items: Sequence[bytes]) -> bytes:
    return uleb128(len(items)) + b"".join(items)


def _name(s: str) -> bytes:
    return uleb128(len(s)) + s.encode()


def _functype(params: Sequence[ValType], results: Sequence[ValType]) -> bytes:
    return b"\x60" + _vec([bytes([_CODE[t]]) for t in params]) + _vec([bytes([_CODE[t]]) for t in results])


def _section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + uleb128(len(body)) + body


def _module(types: list[bytes], imports: list[bytes], funcs: list[int], globals_: list[bytes],
            exports: list[bytes], codes: list[bytes]) -> bytes:
    out = b"\x00asm\x01\x00\x00\x00"
    if types:
        out += _section(1, _vec(types))
    if imports:
        out += _section(2, _vec(imports))
    if funcs:
        out += _section(3, _vec([uleb128(i) for i in funcs]))
    if globals_:
        out += _section(6, _vec(globals_))
    if exports:
        out += _section(7, _vec(exports))
    if codes:
        out += _section(10, _vec([uleb128(len(c)) + c for c in codes]))
    return out


def _body(local_types: Sequence[ValType], code: bytes) -> bytes:
    return _vec([b"\x01" + bytes([_CODE[t]]) for t in local_types]) + code + bytes([_END])


def _op(op: int, idx: int) -> bytes:
    return bytes([op]) + uleb128(idx)


def _push_unmapped(t: ValType, first: int, split_v128: bool) -> tuple[bytes, int]:
    """Code pushing a value of type ``t`` read from mapped local(s) at ``first``; (code, locals used)."""
    if t is _F32:
        return _op(_LOCAL_GET, first) + bytes([_F32_REINTERPRET_I32]), 1
    if t is _F64:
        return _op(_LOCAL_GET, first) + bytes([_F64_REINTERPRET_I64]), 1
    if t is _V128 and split_v128:
        return (_op(_LOCAL_GET, first) + _I64X2_SPLAT + _op(_LOCAL_GET, first + 1) + _I64X2_REPLACE + b"\x01"), 2
    return _op(_LOCAL_GET, first), 1


def _push_mapped(t: ValType, local: int, split_v128: bool) -> bytes:
    """Code pushing the mapped value(s) of local ``local`` of type ``t``."""
    get = _op(_LOCAL_GET, local)
    if t is _F32:
        return get + bytes([_I32_REINTERPRET_F32])
    if t is _F64:
        return get + bytes([_I64_REINTERPRET_F64])
    if t is _V128 and split_v128:
        return get + _I64X2_EXTRACT + b"\x00" + get + _I64X2_EXTRACT + b"\x01"
    return get


def _stash(types: Sequence[ValType], first_local: int) -> bytes:
    """Pop the values of ``types`` (the last on top) into locals ``first_local`` ... in order."""
    return b"".join(_op(_LOCAL_SET, first_local + i) for i in reversed(range(len(types))))


@lru_cache(maxsize=256)
def call_adapter(ty: FuncType, split_v128: bool) -> bytes:
    """Imports ``t.f`` of type ``ty``; exports ``call`` taking and returning the mapped types."""
    mp, mr = mapped_types(ty.params, split_v128), mapped_types(ty.results, split_v128)
    code, j = b"", 0
    for t in ty.params:
        c, used = _push_unmapped(t, j, split_v128)
        code += c
        j += used
    code += _op(_CALL, 0)
    first = len(mp)  # the results' locals follow the (mapped) parameters
    code += _stash(ty.results, first)
    code += b"".join(_push_mapped(t, first + i, split_v128) for i, t in enumerate(ty.results))
    return _module(types=[_functype(ty.params, ty.results), _functype(mp, mr)],
                   imports=[_name("t") + _name("f") + b"\x00" + uleb128(0)], funcs=[1], globals_=[],
                   exports=[_name("call") + b"\x00" + uleb128(1)], codes=[_body(ty.results, code)])


@lru_cache(maxsize=256)
def host_adapter(ty: FuncType, split_v128: bool) -> bytes:
    """Imports ``t.f`` of the mapped type (the host function); exports ``f`` of type ``ty``."""
    mp, mr = mapped_types(ty.params, split_v128), mapped_types(ty.results, split_v128)
    code = b"".join(_push_mapped(t, i, split_v128) for i, t in enumerate(ty.params)) + _op(_CALL, 0)
    first = len(ty.params)
    code += _stash(mr, first)
    j = first
    for t in ty.results:
        c, used = _push_unmapped(t, j, split_v128)
        code += c
        j += used
    return _module(types=[_functype(mp, mr), _functype(ty.params, ty.results)],
                   imports=[_name("t") + _name("f") + b"\x00" + uleb128(0)], funcs=[1], globals_=[],
                   exports=[_name("f") + b"\x00" + uleb128(1)], codes=[_body(mr, code)])


def _globaltype(gty: GlobalType) -> bytes:
    return bytes([_CODE[gty.content], 1 if gty.mutable else 0])


@lru_cache(maxsize=64)
def global_adapter(gty: GlobalType, split_v128: bool) -> bytes:
    """Imports global ``t.g`` of type ``gty``; exports ``get`` (and ``set`` when mutable) of mapped types."""
    t = gty.content
    m = mapped_types([t], split_v128)
    types = [_functype([], m)]
    funcs, codes = [0], []
    exports = [_name("get") + b"\x00" + uleb128(0)]
    # get: the global into a local of its type, then pushed mapped
    codes.append(_body([t], _op(_GLOBAL_GET, 0) + _op(_LOCAL_SET, 0) + _push_mapped(t, 0, split_v128)))
    if gty.mutable:
        types.append(_functype(m, []))
        funcs.append(1)
        exports.append(_name("set") + b"\x00" + uleb128(1))
        push, _ = _push_unmapped(t, 0, split_v128)
        codes.append(_body([], push + _op(_GLOBAL_SET, 0)))
    return _module(types=types, imports=[_name("t") + _name("g") + b"\x03" + _globaltype(gty)], funcs=funcs,
                   globals_=[], exports=exports, codes=codes)


def global_maker(gty: GlobalType, value: Any) -> bytes:
    """Exports ``g``: a global of type ``gty`` (f32, f64 or v128) whose initial value is ``value``
    (plain or raw), written into the module as a constant."""
    t = gty.content
    if t is _F32:
        init = b"\x43" + f32_bits(value).to_bytes(4, "little")
    elif t is _F64:
        init = b"\x44" + f64_bits(value).to_bytes(8, "little")
    elif t is _V128:
        init = b"\xfd" + uleb128(12) + wrap_v128(value).to_bytes(16, "little")
    else:
        raise TypeError(f"global_maker makes f32, f64 and v128 globals, not {t}")
    return _module(types=[], imports=[], funcs=[], globals_=[_globaltype(gty) + init + bytes([_END])],
                   exports=[_name("g") + b"\x03" + uleb128(0)], codes=[])
