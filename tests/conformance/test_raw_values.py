"""Raw values: f32/f64 bit patterns (NaN payloads, signalling NaNs) and v128 lanes, bit for bit,
into and out of wasm through exports, host functions, globals and memory, on every backend.

No float arithmetic touches the values (the spec lets arithmetic canonicalise NaNs): they are
moved by ``local.get``, calls, ``reinterpret``, globals, loads and stores, which keep every bit.
"""

from __future__ import annotations

import pickle
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm import V128, F32Bits, F64Bits, FuncType, GlobalType, ValType

from ._support import SETTINGS, signed32, signed64

F32, F64, I32, I64, V = ValType.F32, ValType.F64, ValType.I32, ValType.I64, ValType.V128

#: f32 patterns: quiet and signalling NaNs of both signs with small and large payloads, and the
#: non-NaN edges (negative zero, the smallest denormal, infinities)
NAN32 = [0x7FC00000, 0xFFC00000, 0x7FA00000, 0xFFA00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0xFFBFFFFF,
         0x7FFFFFFF, 0xFFFFFFFF, 0x7FC00001, 0x80000000, 0x00000001, 0x7F800000, 0xFF800000]
NAN64 = [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF4000000000000, 0xFFF4000000000000, 0x7FF0000000000001,
         0xFFF0000000000001, 0x7FF7FFFFFFFFFFFF, 0xFFF7FFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF,
         0x7FF8000000000001, 0x8000000000000000, 0x0000000000000001, 0x7FF0000000000000, 0xFFF0000000000000]

RAW = """
(module
  (import "env" "h32" (func $h32 (param f32) (result f32)))
  (import "env" "h64" (func $h64 (param f64) (result f64)))
  (import "env" "g32" (global $g32 (mut f32)))
  (import "env" "g64" (global $g64 (mut f64)))
  (import "env" "c32" (global $c32 f32))
  (import "env" "c64" (global $c64 f64))
  (memory (export "memory") 1)
  (func (export "id32") (param f32) (result f32) local.get 0)
  (func (export "id64") (param f64) (result f64) local.get 0)
  (func (export "bits32") (param f32) (result i32) local.get 0 i32.reinterpret_f32)
  (func (export "bits64") (param f64) (result i64) local.get 0 i64.reinterpret_f64)
  (func (export "from32") (param i32) (result f32) local.get 0 f32.reinterpret_i32)
  (func (export "from64") (param i64) (result f64) local.get 0 f64.reinterpret_i64)
  (func (export "host32") (param f32) (result f32) local.get 0 call $h32)
  (func (export "host64") (param f64) (result f64) local.get 0 call $h64)
  (func (export "host32_bits") (param i32) (result i32)
    local.get 0 f32.reinterpret_i32 call $h32 i32.reinterpret_f32)
  (func (export "g32_bits") (result i32) global.get $g32 i32.reinterpret_f32)
  (func (export "g64_bits") (result i64) global.get $g64 i64.reinterpret_f64)
  (func (export "set_g32") (param i32) local.get 0 f32.reinterpret_i32 global.set $g32)
  (func (export "set_g64") (param i64) local.get 0 f64.reinterpret_i64 global.set $g64)
  (func (export "c32_bits") (result i32) global.get $c32 i32.reinterpret_f32)
  (func (export "c64_bits") (result i64) global.get $c64 i64.reinterpret_f64)
  (func (export "store32") (param f32) i32.const 0 local.get 0 f32.store)
  (func (export "load32") (result f32) i32.const 0 f32.load)
  (func (export "store64") (param f64) i32.const 8 local.get 0 f64.store)
  (func (export "load64") (result f64) i32.const 8 f64.load)
  (global (export "eg32") (mut f32) (f32.const nan:0x200000))
  (global (export "eg64") (mut f64) (f64.const -nan:0x4000000000001))
  (global (export "ec32") f32 (f32.const -nan:0x1))
  (global (export "ec64") f64 (f64.const nan:0x1))
)
"""

MULTI = """
(module
  (func (export "swap") (param f32 f64) (result f64 f32) local.get 1 local.get 0)
  (func (export "three") (param i32 f32 i64) (result f32 i64 i32) local.get 1 local.get 2 local.get 0)
)
"""


class _Host:
    """The host side of RAW: raw host functions that record what they got and return ``ret``."""

    def __init__(self, store: pw.Store) -> None:
        self.seen: list = []
        self.ret: dict = {}

        def h32(x):
            self.seen.append(x)
            return self.ret.get(F32, x)

        def h64(x):
            self.seen.append(x)
            return self.ret.get(F64, x)

        self.h32 = pw.Func(store, FuncType([F32], [F32]), h32, raw=True)
        self.h64 = pw.Func(store, FuncType([F64], [F64]), h64, raw=True)
        self.g32 = pw.Global(store, GlobalType(F32, True), F32Bits(0x7FA00001))
        self.g64 = pw.Global(store, GlobalType(F64, True), F64Bits(0xFFF0000000000002))
        self.c32 = pw.Global(store, GlobalType(F32, False), F32Bits(0xFF800003))
        self.c64 = pw.Global(store, GlobalType(F64, False), F64Bits(0x7FF0000000000004))

    def imports(self) -> dict:
        return {"env": {"h32": self.h32, "h64": self.h64, "g32": self.g32, "g64": self.g64,
                        "c32": self.c32, "c64": self.c64}}


@pytest.fixture
def q32(capabilities):
    """The bits a runtime gives for f32 bits ``b`` made by ``f32.load`` or ``f32.reinterpret_i32``:
    ``b`` itself, except where ``Capabilities.raw_floats`` is false (wasm3 0.5.0 moves such an
    f32 through a double register): a signalling NaN comes out quiet, its payload kept."""

    def expect(b: int) -> int:
        if capabilities.raw_floats or not F32Bits(b).is_signalling:
            return b
        return b | 0x00400000

    return expect


@pytest.fixture
def raw(instantiate, store):
    host = _Host(store)
    return instantiate(RAW, host.imports()).exports, host


# ---- the types themselves ------------------------------------------------------------------


def test_bits_types():
    a = F32Bits(0x7FA00000)
    assert a.bits == 0x7FA00000 and repr(a) == "F32Bits(0x7fa00000)"
    assert a == F32Bits(0x7FA00000) and a != F32Bits(0x7FC00000) and a != F64Bits(0x7FA00000)
    assert hash(a) == hash(F32Bits(0x7FA00000))
    assert a.is_nan and a.is_signalling and not F32Bits(0x7FC00000).is_signalling
    assert not F32Bits(0x7F800000).is_nan and F32Bits(-1).bits == 0xFFFFFFFF  # signed range accepted
    assert F32Bits.from_float(1.5) == F32Bits(0x3FC00000) and F32Bits(0x3FC00000).to_float() == 1.5
    assert F32Bits.from_float(1e300) == F32Bits(0x7F800000)  # rounds to infinity, like a C cast
    assert F64Bits.from_float(-0.0) == F64Bits(0x8000000000000000)
    assert F64Bits(0x7FF0000000000001).is_signalling and F64Bits(0x7FF8000000000000).is_nan
    assert pickle.loads(pickle.dumps(F64Bits(0xFFF0000000000001))) == F64Bits(0xFFF0000000000001)
    for bad in (1 << 32, -(1 << 31) - 1):
        with pytest.raises(OverflowError):
            F32Bits(bad)
    with pytest.raises(TypeError):
        F32Bits(1.5)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        a.bits = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        float(a)  # type: ignore[arg-type]  # no silent rounding: to_float() says it


def test_v128_type():
    v = V128.from_lanes("i32x4", [1, 2, 3, -1])
    assert isinstance(v, int) and v == (0xFFFFFFFF << 96) | (3 << 64) | (2 << 32) | 1
    assert v.lanes("i32x4") == (1, 2, 3, 0xFFFFFFFF) and v.lanes("i32x4", signed=True) == (1, 2, 3, -1)
    assert V128(-1) == 2**128 - 1 and V128(-1).lanes("i8x16") == (255,) * 16
    assert V128.from_lanes("i8x16", range(16)).to_bytes16() == bytes(range(16))
    assert V128.from_bytes16(bytes(range(16))).lanes("i16x8") == tuple(
        struct.unpack("<8H", bytes(range(16))))
    f = V128.from_lanes("f32x4", [1.0, F32Bits(0x7FA00000), -0.0, 2])
    assert f.lanes("f32x4") == (F32Bits(0x3F800000), F32Bits(0x7FA00000), F32Bits(0x80000000), F32Bits(0x40000000))
    d = V128.from_lanes("f64x2", [F64Bits(0xFFF0000000000001), 0.5])
    assert d.lanes("f64x2") == (F64Bits(0xFFF0000000000001), F64Bits(0x3FE0000000000000))
    assert repr(V128(1)) == "V128(0x00000000000000000000000000000001)"
    assert pickle.loads(pickle.dumps(v)) == v and type(pickle.loads(pickle.dumps(v))) is V128
    with pytest.raises(ValueError):
        V128.from_lanes("i32x4", [1, 2])
    with pytest.raises(ValueError):
        v.lanes("i128x1")
    with pytest.raises(OverflowError):
        V128(1 << 128)
    with pytest.raises(OverflowError):
        V128.from_lanes("i8x16", [256] + [0] * 15)


# ---- exports: params and results -------------------------------------------------------


@pytest.mark.parametrize("b", NAN32, ids=hex)
def test_f32_export_keeps_bits(raw, q32, b):
    ex, _ = raw
    assert ex["id32"].call(F32Bits(b), raw=True) == F32Bits(b)  # in and out
    assert ex["bits32"](F32Bits(b)) == signed32(b)  # in: wasm sees the bits
    out = ex["from32"].call(signed32(b), raw=True)  # out: made in wasm from the bits
    assert type(out) is F32Bits and out.bits == q32(b)


@pytest.mark.parametrize("b", NAN64, ids=hex)
def test_f64_export_keeps_bits(raw, b):
    ex, _ = raw
    assert ex["id64"].call(F64Bits(b), raw=True) == F64Bits(b)
    assert ex["bits64"](F64Bits(b)) == signed64(b)
    out = ex["from64"].call(signed64(b), raw=True)
    assert type(out) is F64Bits and out.bits == b


def test_raw_call_of_plain_values_and_plain_call_of_raw_values(raw):
    ex, _ = raw
    assert ex["id32"].call(1.5, raw=True) == F32Bits(0x3FC00000)
    assert ex["id64"].call(-2, raw=True) == F64Bits.from_float(-2.0)
    assert ex["id32"](F32Bits(0x3FC00000)) == 1.5  # raw in, plain out
    assert ex["id64"](F64Bits(0x8000000000000000)) == 0.0
    assert ex["bits32"].call(F32Bits(5), raw=True) == 5  # integers stay integers
    assert ex["store32"].call(F32Bits(0), raw=True) is None


@pytest.mark.parametrize("name,arg", [("id32", F64Bits(0)), ("id64", F32Bits(0)), ("id32", "1.0"),
                                      ("id64", None)])
def test_wrong_raw_type_is_refused(raw, name, arg):
    ex, _ = raw
    with pytest.raises(TypeError):
        ex[name].call(arg, raw=True)
    with pytest.raises(TypeError):
        ex[name](arg)


@pytest.mark.capability("multi_value")
def test_multi_value_raw(instantiate):
    ex = instantiate(MULTI).exports
    r = ex["swap"].call(F32Bits(0xFF800001), F64Bits(0x7FF4000000000000), raw=True)
    assert r == (F64Bits(0x7FF4000000000000), F32Bits(0xFF800001)) and isinstance(r, tuple)
    assert ex["three"].call(-1, F32Bits(0x7FA00000), 2**64 - 1, raw=True) == (F32Bits(0x7FA00000), -1, -1)
    a, b = ex["swap"](F32Bits(0x3F800000), 0.5)
    assert (a, b) == (0.5, 1.0)


# ---- host functions ------------------------------------------------------------------------


@pytest.mark.parametrize("b", NAN32, ids=hex)
def test_f32_host_function_keeps_bits(raw, q32, b):
    ex, host = raw
    assert ex["host32"].call(F32Bits(b), raw=True) == F32Bits(b)  # param and result
    assert host.seen[-1] == F32Bits(b)
    assert ex["host32_bits"](signed32(b)) & 0xFFFFFFFF == q32(b)  # made in wasm, read back in wasm
    assert host.seen[-1] == F32Bits(q32(b))
    host.ret[F32] = F32Bits(b ^ 0x1)  # a raw result, into wasm
    assert ex["host32_bits"](0) & 0xFFFFFFFF == b ^ 0x1


@pytest.mark.parametrize("b", NAN64, ids=hex)
def test_f64_host_function_keeps_bits(raw, b):
    ex, host = raw
    assert ex["host64"].call(F64Bits(b), raw=True) == F64Bits(b)
    assert host.seen[-1] == F64Bits(b)
    host.ret[F64] = F64Bits(b ^ 0x2)
    assert ex["host64"].call(0.0, raw=True) == F64Bits(b ^ 0x2)


def test_host_function_plain_and_raw_modes(instantiate, store):
    got = []
    plain = pw.Func(store, FuncType([F32, F64], [F32]), lambda a, b: got.append((a, b)) or F32Bits(0x7FA00000))
    ex = instantiate("""(module (import "env" "h" (func $h (param f32 f64) (result f32)))
                          (func (export "go") (param f32 f64) (result i32)
                            local.get 0 local.get 1 call $h i32.reinterpret_f32))""",
                     {"env": {"h": plain}}).exports
    assert ex["go"](1.5, F64Bits(0x4000000000000000)) == 0x7FA00000  # a plain host may return raw
    assert got == [(1.5, 2.0)] and type(got[0][0]) is float and type(got[0][1]) is float
    # calling a host function from Python: raw arguments reach it, raw=True results come back raw
    assert plain.call(F32Bits(0x3F800000), 0.5, raw=True) == F32Bits(0x7FA00000)
    assert got[-1] == (1.0, 0.5)


def test_linker_define_func_raw(engine, store, q32):
    seen = []
    linker = pw.Linker(engine)
    linker.define_func("env", "h", FuncType([F32], [F32]), lambda x: seen.append(x) or x, raw=True)
    linker.define_func("env", "p", FuncType([F64], [F64]), lambda x: seen.append(x) or x)
    mod = pw.Module(engine, pw.wat2wasm(
        """(module (import "env" "h" (func $h (param f32) (result f32)))
             (import "env" "p" (func $p (param f64) (result f64)))
             (func (export "h") (param i32) (result i32) local.get 0 f32.reinterpret_i32 call $h i32.reinterpret_f32)
             (func (export "p") (param f64) (result f64) local.get 0 call $p))"""))
    ex = linker.instantiate(store, mod).exports
    assert ex["h"](0x7FC00003) == 0x7FC00003 and seen[-1] == F32Bits(0x7FC00003)
    assert ex["h"](0x7FA00003) == q32(0x7FA00003) and seen[-1] == F32Bits(q32(0x7FA00003))
    assert ex["p"](2.5) == 2.5 and seen[-1] == 2.5 and type(seen[-1]) is float


# ---- globals ---------------------------------------------------------------------------------


def test_imported_globals_keep_bits(raw, q32):
    ex, host = raw
    # initial values (mutable and immutable), as wasm sees them and as Python reads them
    assert ex["g32_bits"]() & 0xFFFFFFFF == 0x7FA00001 and host.g32.get(raw=True) == F32Bits(0x7FA00001)
    assert ex["g64_bits"]() & 2**64 - 1 == 0xFFF0000000000002
    assert ex["c32_bits"]() & 0xFFFFFFFF == 0xFF800003 and host.c32.get(raw=True) == F32Bits(0xFF800003)
    assert ex["c64_bits"]() & 2**64 - 1 == 0x7FF0000000000004 and host.c64.get(raw=True) == F64Bits(0x7FF0000000000004)
    for b32, b64 in zip(NAN32, NAN64):
        host.g32.value = F32Bits(b32)  # set from Python, read in wasm
        host.g64.set(F64Bits(b64))
        assert ex["g32_bits"]() & 0xFFFFFFFF == b32 and ex["g64_bits"]() & 2**64 - 1 == b64
        ex["set_g32"](signed32(b32 ^ 4))  # set in wasm, read from Python
        ex["set_g64"](signed64(b64 ^ 4))
        assert host.g32.get(raw=True) == F32Bits(q32(b32 ^ 4)) and host.g64.get(raw=True) == F64Bits(b64 ^ 4)
    host.g32.value = 0.25  # plain values still go in, and come out plain
    assert host.g32.value == 0.25 and host.g32.get(raw=True) == F32Bits(0x3E800000)


def test_exported_globals_keep_bits(raw):
    ex, _ = raw
    assert ex["eg32"].get(raw=True) == F32Bits(0x7FA00000)
    assert ex["eg64"].get(raw=True) == F64Bits(0xFFF4000000000001)
    assert ex["ec32"].get(raw=True) == F32Bits(0xFF800001)  # immutable
    assert ex["ec64"].get(raw=True) == F64Bits(0x7FF0000000000001)
    for b in NAN32:
        ex["eg32"].value = F32Bits(b)
        assert ex["eg32"].get(raw=True) == F32Bits(b)
    for b in NAN64:
        ex["eg64"].value = F64Bits(b)
        assert ex["eg64"].get(raw=True) == F64Bits(b)
    with pytest.raises(TypeError):
        ex["eg32"].value = F64Bits(0)
    with pytest.raises(TypeError):
        ex["ec32"].value = F32Bits(0)


def test_global_constructor_refuses_the_wrong_raw_type(store):
    with pytest.raises(TypeError):
        pw.Global(store, GlobalType(F32, True), F64Bits(0))
    with pytest.raises(TypeError):
        pw.Global(store, GlobalType(F64, False), F32Bits(0))


# ---- memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize("b32,b64", list(zip(NAN32, NAN64)), ids=hex)
def test_memory_stores_and_loads_keep_bits(raw, q32, b32, b64):
    ex, _ = raw
    mem = ex["memory"]
    ex["store32"](F32Bits(b32))
    ex["store64"](F64Bits(b64))
    assert mem.read(0, 4) == b32.to_bytes(4, "little") and mem.read(8, 8) == b64.to_bytes(8, "little")
    mem.write(0, (b32 ^ 8).to_bytes(4, "little"))
    mem.write(8, (b64 ^ 8).to_bytes(8, "little"))
    assert ex["load32"].call(raw=True) == F32Bits(q32(b32 ^ 8)) and ex["load64"].call(raw=True) == F64Bits(b64 ^ 8)


# ---- properties: random bit patterns -----------------------------------------------------------

BITS_SETTINGS = settings(SETTINGS, max_examples=60)
any32 = st.integers(min_value=0, max_value=2**32 - 1)
any64 = st.integers(min_value=0, max_value=2**64 - 1)
#: NaN patterns in particular (exponent all ones, any sign and non-zero payload)
nan32 = st.builds(lambda s, p: (s << 31) | 0x7F800000 | p, st.integers(0, 1), st.integers(1, 2**23 - 1))
nan64 = st.builds(lambda s, p: (s << 63) | 0x7FF0000000000000 | p, st.integers(0, 1), st.integers(1, 2**52 - 1))


@given(st.one_of(any32, nan32), st.one_of(any64, nan64))
@BITS_SETTINGS
def test_random_bits_through_exports_property(raw, b32, b64):
    ex, _ = raw
    assert ex["id32"].call(F32Bits(b32), raw=True) == F32Bits(b32)
    assert ex["id64"].call(F64Bits(b64), raw=True) == F64Bits(b64)
    assert ex["from64"].call(b64, raw=True) == F64Bits(b64)


@given(st.one_of(any32, nan32), st.one_of(any64, nan64))
@BITS_SETTINGS
def test_random_bits_through_host_functions_and_globals_property(raw, b32, b64):
    ex, host = raw
    assert ex["host32"].call(F32Bits(b32), raw=True) == F32Bits(b32) == host.seen[-1]
    assert ex["host64"].call(F64Bits(b64), raw=True) == F64Bits(b64) == host.seen[-1]
    host.g32.value = F32Bits(b32)
    assert ex["g32_bits"]() & 0xFFFFFFFF == b32
    ex["set_g64"](signed64(b64))
    assert host.g64.get(raw=True) == F64Bits(b64)


# ---- v128 ------------------------------------------------------------------------------------

V128_WAT = """
(module
  (import "env" "h" (func $h (param v128) (result v128)))
  (import "env" "hg" (global $hg (mut v128)))
  (func (export "id") (param v128) (result v128) local.get 0)
  (func (export "host") (param v128) (result v128) local.get 0 call $h)
  (func (export "halves") (param v128) (result i64 i64)
    local.get 0 i64x2.extract_lane 0 local.get 0 i64x2.extract_lane 1)
  (func (export "make") (param i64 i64) (result v128) local.get 0 i64x2.splat local.get 1 i64x2.replace_lane 1)
  (func (export "host_halves") (param i64 i64) (result i64 i64) (local v128)
    local.get 0 i64x2.splat local.get 1 i64x2.replace_lane 1 call $h local.tee 2
    i64x2.extract_lane 0 local.get 2 i64x2.extract_lane 1)
  (func (export "hg_halves") (result i64 i64) global.get $hg i64x2.extract_lane 0 global.get $hg i64x2.extract_lane 1)
  (func (export "hg_set") (param i64 i64) local.get 0 i64x2.splat local.get 1 i64x2.replace_lane 1 global.set $hg)
  (func (export "mixed") (param i32 v128 f32 v128 f64) (result f64 v128 f32 v128 i32)
    local.get 4 local.get 3 local.get 2 local.get 1 local.get 0)
  (global (export "eg") (mut v128) (v128.const i32x4 1 2 3 0x80000000))
  (global (export "ec") v128 (v128.const i64x2 -1 0x7fa00000))
)
"""

#: v128 patterns: each lane shape with edge values, all ones, sign bits, float lanes holding NaNs
V128S = [
    V128(0), V128(-1), V128(1 << 127), V128(1), V128((1 << 63) | (1 << 127)),
    V128.from_lanes("i8x16", [0, 1, 127, 128, 255, -1, -128, 2, 3, 4, 5, 6, 7, 8, 9, 0x55]),
    V128.from_lanes("i16x8", [0x8000, 0x7FFF, -1, 0, 1, 0xAAAA, 0x5555, 0x1234]),
    V128.from_lanes("i32x4", [-(2**31), 2**31 - 1, 0xDEADBEEF, 0]),
    V128.from_lanes("i64x2", [-(2**63), 2**63 - 1]),
    V128.from_lanes("f32x4", [F32Bits(0x7FA00000), F32Bits(0xFF800001), -0.0, F32Bits(0x7FC00001)]),
    V128.from_lanes("f64x2", [F64Bits(0x7FF0000000000001), F64Bits(0xFFF4000000000000)]),
]


def _not(v: int) -> V128:
    return V128(~int(v) & (2**128 - 1))


def _halves(v: int) -> tuple[int, int]:
    return signed64(v & (2**64 - 1)), signed64(v >> 64)


@pytest.fixture
def v128(instantiate, store):
    seen: list = []
    ret: dict = {}
    h = pw.Func(store, FuncType([V], [V]), lambda x: seen.append(x) or ret.get("v", x), raw=True)
    hg = pw.Global(store, GlobalType(V, True), V128.from_lanes("i32x4", [5, 6, 7, 8]))
    ex = instantiate(V128_WAT, {"env": {"h": h, "hg": hg}}).exports
    return ex, seen, ret, hg


@pytest.mark.capability("v128_values")
@pytest.mark.parametrize("v", V128S, ids=lambda v: f"{int(v):x}")
def test_v128_through_exports(v128, v):
    ex, _, _, _ = v128
    out = ex["id"].call(v, raw=True)
    assert out == v and type(out) is V128
    plain = ex["id"](v)
    assert plain == v and type(plain) is int
    assert ex["halves"](v) == _halves(v)  # in: wasm sees the lanes
    assert ex["make"].call(*_halves(v), raw=True) == v  # out: made in wasm from its halves
    assert ex["id"](int(v) - (1 << 128) if v >> 127 else int(v)) == v  # a negative int wraps to the same bits


@pytest.mark.capability("v128_values")
@pytest.mark.parametrize("v", V128S, ids=lambda v: f"{int(v):x}")
def test_v128_through_host_functions(v128, v):
    ex, seen, ret, _ = v128
    assert ex["host"].call(v, raw=True) == v and seen[-1] == v and type(seen[-1]) is V128
    assert ex["host_halves"](*_halves(v)) == _halves(v)
    ret["v"] = _not(v)  # a result into wasm
    assert ex["host_halves"](0, 0) == _halves(_not(v))


@pytest.mark.capability("v128_values")
def test_v128_host_function_plain_mode_gets_ints(instantiate, store):
    got = []
    h = pw.Func(store, FuncType([V], [V]), lambda x: got.append(x) or x)
    ex = instantiate(V128_WAT, {"env": {"h": h, "hg": pw.Global(store, GlobalType(V, True), 0)}}).exports
    assert ex["host"](2**128 - 1) == 2**128 - 1 and type(got[0]) is int


@pytest.mark.capability("v128_values")
def test_v128_globals(v128):
    ex, _, _, hg = v128
    assert hg.get(raw=True) == V128.from_lanes("i32x4", [5, 6, 7, 8])
    assert ex["hg_halves"]() == _halves(hg.value)
    for v in V128S:
        hg.value = v  # set from Python, read in wasm
        assert ex["hg_halves"]() == _halves(v)
        ex["hg_set"](*_halves(_not(v)))  # set in wasm, read from Python
        assert hg.get(raw=True) == _not(v)
        ex["eg"].value = v
        assert ex["eg"].get(raw=True) == v and type(ex["eg"].get(raw=True)) is V128
    assert ex["ec"].get(raw=True) == V128.from_lanes("i64x2", [-1, 0x7FA00000])
    with pytest.raises(TypeError):
        ex["ec"].value = 0


@pytest.mark.capability("v128_values")
def test_immutable_v128_global_import(instantiate, store, capabilities):
    g = pw.Global(store, GlobalType(V, False), V128S[9])
    assert g.get(raw=True) == V128S[9]
    wat = """(module (import "env" "c" (global $c v128))
               (func (export "lo") (result i64) global.get $c i64x2.extract_lane 0))"""
    if not capabilities.immutable_v128_imports:  # V8: refused (V8 would abort the process)
        with pytest.raises(pw.LinkError, match="immutable v128"):
            instantiate(wat, {"env": {"c": g}})
        return
    assert instantiate(wat, {"env": {"c": g}}).exports["lo"]() == _halves(V128S[9])[0]


@pytest.mark.capability("v128_values", "multi_value")
def test_v128_mixed_multi_value(v128):
    ex, _, _, _ = v128
    a, b = V128S[9], V128S[10]
    r = ex["mixed"].call(-5, a, F32Bits(0x7FA00000), b, F64Bits(0xFFF0000000000001), raw=True)
    assert r == (F64Bits(0xFFF0000000000001), b, F32Bits(0x7FA00000), a, -5)


@pytest.mark.capability("v128_values", "reference_values", "multi_value")
def test_funcref_of_a_raw_function(instantiate):
    # a function reached as a funcref value (its type from the runtime's reflection) is called the same way
    ex = instantiate("""(module
      (func $v (param v128 f32) (result f32 v128) local.get 1 local.get 0)
      (elem declare func $v)
      (func (export "get") (result funcref) ref.func $v))""").exports
    f = ex["get"]()
    assert f.type == FuncType([V, F32], [F32, V])
    assert f.call(V128(-1), F32Bits(0x7FA00000), raw=True) == (F32Bits(0x7FA00000), V128(-1))


@pytest.mark.capability("v128_values")
@given(st.integers(min_value=0, max_value=2**128 - 1))
@BITS_SETTINGS
def test_v128_random_property(v128, v):
    ex, seen, _, hg = v128
    assert ex["id"].call(v, raw=True) == v
    assert ex["host"](v) == v == seen[-1]
    hg.value = v
    assert ex["hg_halves"]() == _halves(v)


# ---- the README's example ------------------------------------------------------------------------


@pytest.mark.capability("v128_values")
def test_readme_exact_values_example(backend_name):
    import os

    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    block = readme.split("### Exact values", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "engine = Engine()\n" in block
    exec(block.replace("engine = Engine()\n", f"engine = Engine({backend_name!r})\n"), {})  # noqa: S102
