"""Checks and conversions of Python values to wasm numbers, shared by the backends.

Integers are taken with ``operator.index`` (so ``"3"`` and ``1.5`` are refused)
and may be given in the signed or the unsigned range of their type; the result
is the signed value with the same bits. Floats accept any real number but not
text. Out-of-range values raise ``OverflowError``, wrong types ``TypeError``.
"""

from __future__ import annotations

from operator import index
from typing import Any

__all__ = ["wrap_i32", "wrap_i64", "to_float", "wrap_v128", "v128_bytes", "int_result", "host_results"]

_MASK128 = (1 << 128) - 1


def wrap_i32(v: Any) -> int:
    """Accept -2**31 .. 2**32-1 and return the signed i32 with the same bits."""
    v = index(v)
    if not -(1 << 31) <= v < (1 << 32):
        raise OverflowError(f"{v} does not fit in i32")
    return v - (1 << 32) if v >= (1 << 31) else v


def wrap_i64(v: Any) -> int:
    """Accept -2**63 .. 2**64-1 and return the signed i64 with the same bits."""
    v = index(v)
    if not -(1 << 63) <= v < (1 << 64):
        raise OverflowError(f"{v} does not fit in i64")
    return v - (1 << 64) if v >= (1 << 63) else v


def to_float(v: Any) -> float:
    """A float for f32/f64 (ints and floats; text is refused, not parsed)."""
    if v is None or isinstance(v, (str, bytes, bytearray)):
        raise TypeError(f"expected a number for a float value, got {type(v).__name__}")
    return float(v)


def wrap_v128(v: Any) -> int:
    """A v128 as an unsigned 128-bit int (lane 0 in the low bits); negatives wrap."""
    v = index(v)
    if not -(1 << 127) <= v <= _MASK128:
        raise OverflowError(f"{v} does not fit in v128")
    return v & _MASK128


def v128_bytes(v: Any) -> bytes:
    """The 16 little-endian bytes of a v128 value."""
    return wrap_v128(v).to_bytes(16, "little")


# ---- what host functions return ----------------------------------------------------------

def int_result(r: Any, is_i32: bool, what: str) -> int:
    """A host function's single integer result (``what``: "i32" or "i64"), also given as a
    1-tuple, wrapped to its signed value; a bool or a non-int is refused."""
    if isinstance(r, tuple) and len(r) == 1:
        r = r[0]
    if isinstance(r, bool) or not isinstance(r, int):
        raise TypeError(f"host function must return an int for its {what} result, got {r!r}")
    return wrap_i32(r) if is_i32 else wrap_i64(r)


def host_results(n: int, r: Any) -> tuple | list:
    """A host function's return value as a sequence of its ``n`` (>= 1) results: one result
    may be returned bare or as a 1-tuple, several as a tuple or list of the right length."""
    if n == 1:
        return (r[0],) if isinstance(r, tuple) and len(r) == 1 else (r,)
    if not isinstance(r, (tuple, list)) or len(r) != n:
        raise TypeError(f"host function must return {n} values, got {r!r}")
    return r
