"""Every value type into and out of wasm, from Python and from host functions; multi-value."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm import FuncType, ValType

from ._support import I32_MAX, I32_MIN, I64_MAX, I64_MIN, SETTINGS, U32_MAX, U64_MAX, as_f32, signed32, signed64

IDENTITY = """
(module
  (func (export "id_i32") (param i32) (result i32) local.get 0)
  (func (export "id_i64") (param i64) (result i64) local.get 0)
  (func (export "id_f32") (param f32) (result f32) local.get 0)
  (func (export "id_f64") (param f64) (result f64) local.get 0)
  (func (export "add_i32") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "add_i64") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
  (func (export "sum6") (param i32 i64 i32 i64 i32 i64) (result i64)
    (i64.add (i64.add (i64.add (i64.extend_i32_s (local.get 0)) (local.get 1))
                      (i64.add (i64.extend_i32_s (local.get 2)) (local.get 3)))
             (i64.add (i64.extend_i32_s (local.get 4)) (local.get 5))))
  (func (export "sum8") (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (i32.add (i32.add (i32.add (local.get 0) (local.get 1)) (i32.add (local.get 2) (local.get 3)))
             (i32.add (i32.add (local.get 4) (local.get 5)) (i32.add (local.get 6) (local.get 7)))))
  (func (export "mixed") (param i32 f64 i64 f32) (result f64)
    (f64.add (f64.add (f64.convert_i32_s (local.get 0)) (local.get 1))
             (f64.add (f64.convert_i64_s (local.get 2)) (f64.promote_f32 (local.get 3)))))
  (func (export "u32_as_i64") (param i32) (result i64) (i64.extend_i32_u (local.get 0)))
  (func (export "i32_bits_f32") (param i32) (result f32) (f32.reinterpret_i32 (local.get 0)))
  (func (export "f64_bits") (param f64) (result i64) (i64.reinterpret_f64 (local.get 0)))
  (func (export "nothing"))
  (func (export "const_neg") (result i32) i32.const -7)
)
"""

MULTI = """
(module
  (func (export "four") (result i32 i64 f32 f64)
    i32.const -1 i64.const 0x7fffffffffffffff f32.const 1.5 f64.const -2.25)
  (func (export "swap") (param i32 i64) (result i64 i32) local.get 1 local.get 0)
  (func (export "dup3") (param f64) (result f64 f64 f64) local.get 0 local.get 0 local.get 0)
)
"""

I32_EDGES = [0, 1, -1, I32_MIN, I32_MAX, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xDEADBEEF]
I64_EDGES = [0, 1, -1, I64_MIN, I64_MAX, 2**32, -(2**32), 0x8000000000000000, U64_MAX, 0xDEADBEEFCAFEBABE]


@pytest.fixture
def ids(instantiate):
    return instantiate(IDENTITY).exports


# ---- integers --------------------------------------------------------------------


@pytest.mark.parametrize("v", I32_EDGES)
def test_i32_edges_round_trip_as_signed(ids, v):
    # Arguments may be given signed or unsigned; results are the signed value with the same bits.
    assert ids["id_i32"](v) == signed32(v)


@pytest.mark.parametrize("v", I64_EDGES)
def test_i64_edges_round_trip_as_signed(ids, v):
    assert ids["id_i64"](v) == signed64(v)


def test_integer_arithmetic_wraps(ids):
    assert ids["add_i32"](I32_MAX, 1) == I32_MIN
    assert ids["add_i32"](U32_MAX, 1) == 0
    assert ids["add_i64"](I64_MAX, 1) == I64_MIN
    assert ids["add_i64"](-1, -1) == -2
    assert ids["const_neg"]() == -7


def test_unsigned_argument_keeps_its_bits(ids):
    # 0xFFFFFFFF reaches wasm as the bit pattern all-ones, which i64.extend_i32_u reads back unsigned.
    assert ids["u32_as_i64"](U32_MAX) == U32_MAX
    assert ids["u32_as_i64"](-1) == U32_MAX
    assert ids["u32_as_i64"](0x80000000) == 0x80000000


@pytest.mark.parametrize("name,bad", [("id_i32", 2**32), ("id_i32", -(2**31) - 1), ("id_i32", 2**70),
                                      ("id_i64", 2**64), ("id_i64", -(2**63) - 1)])
def test_integer_out_of_range_is_refused(ids, name, bad):
    with pytest.raises(OverflowError):
        ids[name](bad)


@pytest.mark.parametrize("name,args", [("id_i32", ("1",)), ("id_i32", (None,)), ("id_i32", (1.5,)),
                                       ("id_i64", (2.0,)), ("id_f64", ("x",)), ("id_f64", ("2.5",)),
                                       ("id_f32", (None,)), ("mixed", (1, 2.0, "3", 4.0)),
                                       ("mixed", (1.0, 2.0, 3, 4.0)), ("sum6", (1, 2, 3, 4, 5, "6"))])
def test_wrong_argument_type_raises(ids, name, args):
    with pytest.raises((TypeError, ValueError)):
        ids[name](*args)


@pytest.mark.parametrize("name,args", [("id_i32", ()), ("id_i32", (1, 2)), ("nothing", (1,)), ("mixed", (1, 2.0))])
def test_wrong_argument_count_raises_type_error(ids, name, args):
    with pytest.raises(TypeError):
        ids[name](*args)


def test_six_and_eight_integer_params(ids):
    assert ids["sum6"](1, 2, 3, 4, 5, 6) == 21
    assert ids["sum6"](-1, -(2**40), U32_MAX, U64_MAX, I32_MIN, I64_MAX) == (
        -1 - 2**40 + signed32(U32_MAX) + signed64(U64_MAX) + I32_MIN + I64_MAX
    )
    assert ids["sum8"](*range(1, 9)) == 36


def test_no_result_returns_none(ids):
    assert ids["nothing"]() is None


@given(st.integers(min_value=I32_MIN, max_value=U32_MAX))
@SETTINGS
def test_i32_round_trip_property(ids, v):
    assert ids["id_i32"](v) == signed32(v)


@given(st.integers(min_value=I64_MIN, max_value=U64_MAX))
@SETTINGS
def test_i64_round_trip_property(ids, v):
    assert ids["id_i64"](v) == signed64(v)


@given(st.integers(min_value=I32_MIN, max_value=I32_MAX), st.integers(min_value=I32_MIN, max_value=I32_MAX))
@SETTINGS
def test_i32_add_property(ids, a, b):
    assert ids["add_i32"](a, b) == signed32(a + b)


# ---- floats ----------------------------------------------------------------------


@pytest.mark.parametrize("x", [0.0, 1.0, -1.5, 1e300, -1e-300, 5e-324, math.pi, math.inf, -math.inf,
                               1.7976931348623157e308])
def test_f64_round_trip(ids, x):
    assert ids["id_f64"](x) == x


@pytest.mark.parametrize("x", [0.0, 1.0, -1.5, 3.4028234663852886e38, 1.401298464324817e-45, math.inf, -math.inf])
def test_f32_round_trip(ids, x):
    assert ids["id_f32"](x) == x


def test_f32_rounds_to_single_precision(ids):
    assert ids["id_f32"](0.1) == as_f32(0.1)
    assert ids["id_f32"](0.1) != 0.1


def test_negative_zero_keeps_its_sign(ids):
    r64 = ids["id_f64"](-0.0)
    r32 = ids["id_f32"](-0.0)
    assert r64 == 0.0 and math.copysign(1.0, r64) == -1.0
    assert r32 == 0.0 and math.copysign(1.0, r32) == -1.0
    assert ids["f64_bits"](-0.0) == signed64(0x8000000000000000)


def test_nan_in_and_out(ids):
    assert math.isnan(ids["id_f64"](math.nan))
    assert math.isnan(ids["id_f32"](math.nan))
    # a NaN made inside wasm (quiet NaN bit pattern) comes out as a NaN
    assert math.isnan(ids["i32_bits_f32"](0x7FC00000))
    assert ids["i32_bits_f32"](0x7F800000) == math.inf
    assert ids["i32_bits_f32"](0x3F800000) == 1.0


def test_ints_are_accepted_for_floats(ids):
    assert ids["id_f64"](3) == 3.0
    assert ids["id_f32"](-2) == -2.0


def test_mixed_signature(ids):
    assert ids["mixed"](-1, 0.5, 2**40, 0.25) == -1 + 0.5 + 2**40 + 0.25


@given(st.floats(allow_nan=False))
@SETTINGS
def test_f64_round_trip_property(ids, x):
    r = ids["id_f64"](x)
    assert r == x and math.copysign(1.0, r) == math.copysign(1.0, x)


@given(st.floats(width=32, allow_nan=False))
@SETTINGS
def test_f32_round_trip_property(ids, x):
    r = ids["id_f32"](x)
    assert r == x and math.copysign(1.0, r) == math.copysign(1.0, x)


@given(st.floats(allow_nan=True))
@SETTINGS
def test_f64_bits_property(ids, x):
    if math.isnan(x):
        assert math.isnan(ids["id_f64"](x))
    else:
        assert ids["f64_bits"](x) == struct.unpack("<q", struct.pack("<d", x))[0]


# ---- multi-value -----------------------------------------------------------------


@pytest.mark.capability("multi_value")
def test_multi_value_results(instantiate):
    ex = instantiate(MULTI).exports
    assert ex["four"]() == (-1, I64_MAX, 1.5, -2.25)
    assert ex["swap"](U32_MAX, -5) == (-5, -1)
    r = ex["dup3"](math.inf)
    assert isinstance(r, tuple) and r == (math.inf,) * 3


@pytest.mark.capability("multi_value")
def test_multi_value_host_function(instantiate, store):
    seen = []

    def host(a, b, c):
        seen.append((a, b, c))
        return c, b, a

    ty = FuncType([ValType.I32, ValType.I64, ValType.F64], [ValType.F64, ValType.I64, ValType.I32])
    inst = instantiate(
        """(module
             (import "env" "rev" (func $rev (param i32 i64 f64) (result f64 i64 i32)))
             (func (export "go") (param i32 i64 f64) (result f64 i64 i32)
               local.get 0 local.get 1 local.get 2 call $rev))""",
        {"env": {"rev": pw.Func(store, ty, host)}},
    )
    assert inst.exports["go"](-3, U64_MAX, 0.5) == (0.5, -1, -3)
    assert seen == [(-3, -1, 0.5)]


@pytest.mark.capability("multi_value")
def test_multi_value_host_function_wrong_arity_raises(instantiate, store):
    ty = FuncType([], [ValType.I32, ValType.I32])
    inst = instantiate(
        """(module (import "env" "two" (func $two (result i32 i32)))
             (func (export "go") (result i32) call $two i32.add))""",
        {"env": {"two": pw.Func(store, ty, lambda: (1, 2, 3))}},
    )
    with pytest.raises((TypeError, ValueError)):
        inst.exports["go"]()


# ---- host functions see and return every number type ----------------------------

HOST_ECHO = """
(module
  (import "env" "i32" (func $i32 (param i32) (result i32)))
  (import "env" "i64" (func $i64 (param i64) (result i64)))
  (import "env" "f32" (func $f32 (param f32) (result f32)))
  (import "env" "f64" (func $f64 (param f64) (result f64)))
  (func (export "i32") (param i32) (result i32) local.get 0 call $i32)
  (func (export "i64") (param i64) (result i64) local.get 0 call $i64)
  (func (export "f32") (param f32) (result f32) local.get 0 call $f32)
  (func (export "f64") (param f64) (result f64) local.get 0 call $f64)
  (func (export "ret_u32") (result i64) (i64.extend_i32_u (call $i32 (i32.const 0))))
)
"""


@pytest.fixture
def host_echo(instantiate, store):
    seen: list = []
    result: dict = {}

    def make(t):
        def fn(v):
            seen.append(v)
            return result.get(t, v)

        return pw.Func(store, FuncType([t], [t]), fn)

    imports = {"env": {t.value: make(t) for t in (ValType.I32, ValType.I64, ValType.F32, ValType.F64)}}
    return instantiate(HOST_ECHO, imports).exports, seen, result


@pytest.mark.parametrize("t,v", [("i32", v) for v in I32_EDGES] + [("i64", v) for v in I64_EDGES])
def test_host_function_integers(host_echo, t, v):
    ex, seen, _ = host_echo
    expected = signed32(v) if t == "i32" else signed64(v)
    assert ex[t](v) == expected
    assert seen == [expected]  # host functions receive signed values


@pytest.mark.parametrize("t,v", [("f32", 1.5), ("f32", -0.0), ("f32", math.inf), ("f64", -1e300), ("f64", -0.0),
                                 ("f64", 5e-324)])
def test_host_function_floats(host_echo, t, v):
    ex, seen, _ = host_echo
    r = ex[t](v)
    assert r == v and math.copysign(1, r) == math.copysign(1, v)
    assert seen == [v] and math.copysign(1, seen[0]) == math.copysign(1, v)


def test_host_function_nan(host_echo):
    ex, seen, _ = host_echo
    assert math.isnan(ex["f64"](math.nan)) and math.isnan(seen[-1])
    assert math.isnan(ex["f32"](math.nan)) and math.isnan(seen[-1])


def test_host_function_may_return_unsigned_i32(host_echo):
    ex, _, result = host_echo
    result[ValType.I32] = U32_MAX
    assert ex["ret_u32"]() == U32_MAX
    result[ValType.I32] = 0x80000000
    assert ex["i32"](0) == I32_MIN


@pytest.mark.parametrize("t,bad", [(ValType.I32, 2**32), (ValType.I32, "x"), (ValType.I32, None),
                                   (ValType.I64, 2**64), (ValType.F64, "x"), (ValType.F32, None)])
def test_host_function_bad_result_raises(host_echo, t, bad):
    ex, _, result = host_echo
    result[t] = bad
    with pytest.raises((TypeError, ValueError, OverflowError)):
        ex[t.value](0)
    del result[t]
    assert ex[t.value](1) == 1  # the store is fine afterwards


@given(st.integers(min_value=I64_MIN, max_value=U64_MAX))
@SETTINGS
def test_host_i64_property(host_echo, v):
    ex, seen, _ = host_echo
    assert ex["i64"](v) == signed64(v) == seen[-1]


@given(st.floats(allow_nan=False))
@SETTINGS
def test_host_f64_property(host_echo, v):
    ex, seen, _ = host_echo
    assert ex["f64"](v) == v == seen[-1]


# ---- v128 --------------------------------------------------------------------------

V128 = """
(module
  (import "env" "h" (func $h (param v128) (result v128)))
  (func (export "id") (param v128) (result v128) local.get 0)
  (func (export "lane0") (param v128) (result i32) local.get 0 i32x4.extract_lane 0)
  (func (export "lane3") (param v128) (result i32) local.get 0 i32x4.extract_lane 3)
  (func (export "splat") (param i32) (result v128) local.get 0 i32x4.splat)
  (func (export "host") (param v128) (result v128) local.get 0 call $h)
)
"""


@pytest.mark.capability("v128_values")
def test_v128_values(instantiate, store):
    seen = []
    h = pw.Func(store, FuncType([ValType.V128], [ValType.V128]), lambda v: seen.append(v) or v ^ (1 << 127))
    ex = instantiate(V128, {"env": {"h": h}}).exports
    # v128 is an unsigned 128-bit int; lane 0 is its least significant 32 bits.
    v = (4 << 96) | (3 << 64) | (2 << 32) | 1
    assert ex["id"](v) == v
    assert ex["lane0"](v) == 1 and ex["lane3"](v) == 4
    for edge in (0, 1, 2**128 - 1, 1 << 127, 0xDEADBEEF << 64):
        assert ex["id"](edge) == edge
    assert ex["splat"](-1) == 2**128 - 1
    assert ex["splat"](0x01020304) == int("01020304" * 4, 16)
    assert ex["host"](v) == v ^ (1 << 127)
    assert seen == [v]
    with pytest.raises(OverflowError):
        ex["id"](1 << 128)
    with pytest.raises(TypeError):
        ex["id"]("1")


# ---- references --------------------------------------------------------------------

REFS = """
(module
  (import "env" "seven" (func $seven (result i32)))
  (import "env" "keep" (func $keep (param externref) (result externref)))
  (func $eight (export "eight") (result i32) i32.const 8)
  (elem declare func $eight)
  (func (export "id_func") (param funcref) (result funcref) local.get 0)
  (func (export "id_ext") (param externref) (result externref) local.get 0)
  (func (export "is_null_ext") (param externref) (result i32) local.get 0 ref.is_null)
  (func (export "is_null_func") (param funcref) (result i32) local.get 0 ref.is_null)
  (func (export "get_eight") (result funcref) ref.func $eight)
  (func (export "null_func") (result funcref) ref.null func)
  (func (export "via_host") (param externref) (result externref) local.get 0 call $keep)
)
"""


@pytest.mark.capability("reference_values")
def test_funcref_values(instantiate, store):
    seven = pw.Func(store, FuncType([], [ValType.I32]), lambda: 7)
    keep = pw.Func(store, FuncType([ValType.EXTERNREF], [ValType.EXTERNREF]), lambda x: x)
    ex = instantiate(REFS, {"env": {"seven": seven, "keep": keep}}).exports
    back = ex["id_func"](seven)
    assert isinstance(back, pw.Func) and back() == 7
    assert back.type == FuncType([], [ValType.I32])
    assert ex["id_func"](ex["eight"])() == 8
    assert ex["id_func"](None) is None
    assert ex["is_null_func"](None) == 1 and ex["is_null_func"](seven) == 0
    got = ex["get_eight"]()
    assert isinstance(got, pw.Func) and got() == 8
    assert ex["null_func"]() is None


@pytest.mark.capability("reference_values")
def test_externref_values_keep_identity(instantiate, store):
    seven = pw.Func(store, FuncType([], [ValType.I32]), lambda: 7)
    seen = []
    keep = pw.Func(store, FuncType([ValType.EXTERNREF], [ValType.EXTERNREF]), lambda x: seen.append(x) or x)
    ex = instantiate(REFS, {"env": {"seven": seven, "keep": keep}}).exports
    for obj in (object(), {"a": [1, 2]}, "text", 12345678901234567890, ("t",), ex):
        assert ex["id_ext"](obj) is obj
    assert ex["id_ext"](None) is None
    assert ex["is_null_ext"](None) == 1 and ex["is_null_ext"](object()) == 0
    marker = object()
    assert ex["via_host"](marker) is marker
    assert seen[-1] is marker
    assert ex["via_host"](None) is None and seen[-1] is None
