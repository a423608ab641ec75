"""Checks and conversions of Python values to wasm numbers, shared by the backends.

Integers are taken with ``operator.index`` (so ``"3"`` and ``1.5`` are refused)
and may be given in the signed or the unsigned range of their type; the result
is the signed value with the same bits. Floats accept any real number but not
text. Out-of-range values raise ``OverflowError``, wrong types ``TypeError``.

Raw values (public): :class:`F32Bits` and :class:`F64Bits` carry an f32/f64 as its
IEEE-754 bit pattern, so NaN payloads and signalling NaNs survive where a Python
``float`` would not (a float32 signalling NaN is quieted when it becomes a double);
:class:`V128` is a v128 as an unsigned 128-bit ``int`` with lane helpers. Each is
accepted wherever a value of its type goes in; ``Func.call(..., raw=True)``,
``Func(..., raw=True)`` host functions and ``Global.get(raw=True)`` hand them out.
"""

from __future__ import annotations

import struct
from operator import index
from typing import Any, Iterable, Sequence

__all__ = ["F32Bits", "F64Bits", "V128", "wrap_i32", "wrap_i64", "to_float", "wrap_v128", "v128_bytes",
           "int_result", "host_results", "f32_bits", "f64_bits", "f32_from_bits", "f64_from_bits", "raw_value",
           "cooked_value", "raw_results", "RAW_TYPES"]

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
    """A float for f32/f64 (ints and floats; text is refused, not parsed).

    :class:`F32Bits`/:class:`F64Bits` are refused too: a backend takes them with
    :func:`f32_bits`/:func:`f64_bits` before it would call this (never silently rounded)."""
    if v is None or isinstance(v, (str, bytes, bytearray, F32Bits, F64Bits)):
        raise TypeError(f"expected a number for a float value, got {type(v).__name__}")
    return float(v)


# ---- raw values -------------------------------------------------------------------------

class _Bits:
    """Base of :class:`F32Bits` and :class:`F64Bits`: an immutable bit pattern of ``_WIDTH`` bits."""

    __slots__ = ("bits",)
    _WIDTH = 0
    _FMT = ""
    bits: int

    def __init__(self, bits: int) -> None:
        # signed or unsigned range, kept unsigned (like integers given to wasm)
        b = index(bits)
        w = self._WIDTH
        if not -(1 << (w - 1)) <= b < (1 << w):
            raise OverflowError(f"{bits} does not fit in {w} bits")
        object.__setattr__(self, "bits", b & ((1 << w) - 1))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def from_float(cls, x: float) -> Any:
        """The bits of ``x`` rounded to this width (as wasm would get it from a Python float)."""
        return cls(_float_bits(cls._WIDTH, to_float(x)))

    def to_float(self) -> float:
        """The value as a Python float. Exact except for NaNs: an f32 signalling NaN comes back quiet
        (the float32 -> double conversion sets the quiet bit); keep the bits where that matters."""
        return _bits_float(self._WIDTH, self.bits)

    @property
    def is_nan(self) -> bool:
        """Whether the pattern is a NaN (exponent all ones, mantissa not zero)."""
        w = self._WIDTH
        mant = 23 if w == 32 else 52
        exp_mask = ((1 << (w - 1)) - 1) & ~((1 << mant) - 1)
        return self.bits & exp_mask == exp_mask and self.bits & ((1 << mant) - 1) != 0

    @property
    def is_signalling(self) -> bool:
        """Whether the pattern is a signalling NaN (a NaN whose top mantissa bit is clear)."""
        mant = 23 if self._WIDTH == 32 else 52
        return self.is_nan and not self.bits >> (mant - 1) & 1

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.bits == self.bits  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.bits))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(0x{self.bits:0{self._WIDTH // 4}x})"

    def __reduce__(self) -> Any:  # pickles as its bits (the worker boundary: bit for bit)
        return (type(self), (self.bits,))


class F32Bits(_Bits):
    """An f32 given or read as its 32-bit IEEE-754 pattern: ``F32Bits(0x7fa00000)`` is a
    signalling NaN with payload 0x200000, which reaches wasm and comes back bit for bit.

    Accepted wherever an f32 goes in (call arguments, host-function results, ``Global``
    values); ``Func.call(..., raw=True)``, ``Func(..., raw=True)`` and ``Global.get(raw=True)``
    give them out. Not a number itself (no ``__float__``): use :meth:`to_float`.
    """

    __slots__ = ()
    _WIDTH = 32
    _FMT = "<f"


class F64Bits(_Bits):
    """An f64 given or read as its 64-bit IEEE-754 pattern (see :class:`F32Bits`)."""

    __slots__ = ()
    _WIDTH = 64
    _FMT = "<d"


#: v128 lane shapes: (lane count, lane width in bits, float lanes)
_SHAPES = {"i8x16": (16, 8, False), "i16x8": (8, 16, False), "i32x4": (4, 32, False), "i64x2": (2, 64, False),
           "f32x4": (4, 32, True), "f64x2": (2, 64, True)}


class V128(int):
    """A v128 value: an unsigned 128-bit ``int``, lane 0 in the least significant bits (the
    little-endian order of wasm memory). Plain ints are accepted for v128 too (negatives wrap);
    raw reads (``raw=True``) give this type. ``V128.from_bytes16(b)``/``to_bytes16()`` are the
    16 bytes as wasm stores them; ``from_lanes``/``lanes`` build and split by lane shape.

    >>> V128.from_lanes("i32x4", [1, 2, 3, -1]).lanes("i32x4", signed=True)
    (1, 2, 3, -1)
    """

    def __new__(cls, value: Any = 0) -> V128:
        return super().__new__(cls, wrap_v128(value))

    @classmethod
    def from_bytes16(cls, data: bytes) -> V128:
        if len(data) != 16:
            raise ValueError(f"a v128 is 16 bytes, got {len(data)}")
        return cls(int.from_bytes(data, "little"))

    def to_bytes16(self) -> bytes:
        return int(self).to_bytes(16, "little")

    @classmethod
    def from_lanes(cls, shape: str, lanes: Iterable[Any]) -> V128:
        """Build from lanes of ``shape`` (``"i8x16"`` .. ``"i64x2"``: ints, signed or unsigned;
        ``"f32x4"``/``"f64x2"``: floats or :class:`F32Bits`/:class:`F64Bits`)."""
        n, w, is_float = _shape(shape)
        vals = list(lanes)
        if len(vals) != n:
            raise ValueError(f"{shape} has {n} lanes, got {len(vals)}")
        v = 0
        for i, x in enumerate(vals):
            if is_float:
                bits = f32_bits(x) if w == 32 else f64_bits(x)
            else:
                x = index(x)
                if not -(1 << (w - 1)) <= x < (1 << w):
                    raise OverflowError(f"lane {i} ({x}) does not fit in {w} bits")
                bits = x & ((1 << w) - 1)
            v |= bits << (i * w)
        return cls(v)

    def lanes(self, shape: str, *, signed: bool = False) -> tuple:
        """The lanes of ``shape``: ints (unsigned unless ``signed``), or for ``"f32x4"``/``"f64x2"``
        :class:`F32Bits`/:class:`F64Bits` (bit exact; ``.to_float()`` for the number)."""
        n, w, is_float = _shape(shape)
        mask = (1 << w) - 1
        out: list[Any] = []
        for i in range(n):
            bits = (int(self) >> (i * w)) & mask
            if is_float:
                out.append(F32Bits(bits) if w == 32 else F64Bits(bits))
            else:
                out.append(bits - (1 << w) if signed and bits >> (w - 1) else bits)
        return tuple(out)

    def __repr__(self) -> str:
        return f"V128(0x{int(self):032x})"

    def __reduce__(self) -> Any:
        return (V128, (int(self),))


def _shape(shape: str) -> tuple[int, int, bool]:
    try:
        return _SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown v128 shape {shape!r}; choose from {', '.join(_SHAPES)}") from None


def _float_bits(width: int, x: float) -> int:
    if width == 64:
        return int.from_bytes(struct.pack("<d", x), "little")
    try:
        return int.from_bytes(struct.pack("<f", x), "little")
    except OverflowError:  # rounds past the largest f32: infinity, as a C cast gives
        return 0xFF800000 if x < 0 else 0x7F800000


def _bits_float(width: int, bits: int) -> float:
    fmt, n = ("<d", 8) if width == 64 else ("<f", 4)
    x: float = struct.unpack(fmt, bits.to_bytes(n, "little"))[0]
    return x


def f32_bits(v: Any) -> int:
    """The unsigned 32-bit pattern for an f32 value: an :class:`F32Bits` as it is, a number rounded."""
    if v.__class__ is F32Bits:
        return v.bits  # type: ignore[no-any-return]
    if v.__class__ is F64Bits:
        raise TypeError(f"an F64Bits was given for an f32 value: {v!r}")
    return _float_bits(32, to_float(v))


def f64_bits(v: Any) -> int:
    """The unsigned 64-bit pattern for an f64 value: an :class:`F64Bits` as it is, a number converted."""
    if v.__class__ is F64Bits:
        return v.bits  # type: ignore[no-any-return]
    if v.__class__ is F32Bits:
        raise TypeError(f"an F32Bits was given for an f64 value: {v!r}")
    return _float_bits(64, to_float(v))


def f32_from_bits(bits: int) -> float:
    return _bits_float(32, bits & 0xFFFFFFFF)


def f64_from_bits(bits: int) -> float:
    return _bits_float(64, bits & 0xFFFFFFFFFFFFFFFF)


#: the types raw reads give out
RAW_TYPES = (F32Bits, F64Bits, V128)


def raw_value(t: Any, v: Any) -> Any:
    """A value of wasm type ``t`` (a ValType) in raw form: f32/f64 as bits, v128 as :class:`V128`;
    other types unchanged. ``v`` is a Python value, or already raw."""
    name = t.value
    if name == "f32":
        return v if v.__class__ is F32Bits else F32Bits(f32_bits(v))
    if name == "f64":
        return v if v.__class__ is F64Bits else F64Bits(f64_bits(v))
    if name == "v128":
        return v if v.__class__ is V128 else V128(v)
    return v


def cooked_value(v: Any) -> Any:
    """A raw value as the default (non-raw) mode gives it: floats and plain ints."""
    c = v.__class__
    if c is F32Bits or c is F64Bits:
        return v.to_float()
    if c is V128:
        return int(v)
    return v


def raw_results(types: Sequence[Any], r: Any) -> Any:
    """A call's result(s) (``None``, one value, or a tuple) made raw by type."""
    if not types:
        return None
    if len(types) == 1:
        return raw_value(types[0], r)
    return tuple(raw_value(t, v) for t, v in zip(types, r))


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
