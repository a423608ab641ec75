"""Globals: get/set from Python and wasm, mutability, imported and exported."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm import FuncType, GlobalType, ValType

from ._support import I64_MAX, I64_MIN, SETTINGS, U32_MAX, U64_MAX, as_f32, signed64

EXPORTED = """
(module
  (global $c (export "counter") (mut i32) (i32.const 5))
  (global $big (export "big") (mut i64) (i64.const -9223372036854775808))
  (global $pi (export "pi") f64 (f64.const 3.25))
  (global $f (export "f") (mut f32) (f32.const -0.5))
  (func (export "get_counter") (result i32) global.get $c)
  (func (export "bump") (result i32) (global.set $c (i32.add (global.get $c) (i32.const 1))) global.get $c)
  (func (export "get_big") (result i64) global.get $big)
  (func (export "get_f") (result f32) global.get $f)
)
"""

IMPORTED = """
(module
  (import "env" "g" (global $g (mut i64)))
  (import "env" "k" (global $k f64))
  (func (export "get") (result i64) global.get $g)
  (func (export "set") (param i64) local.get 0 global.set $g)
  (func (export "k") (result f64) global.get $k)
)
"""


def test_exported_globals_get_and_set(instantiate):
    ex = instantiate(EXPORTED).exports
    c, big, pi, f = ex["counter"], ex["big"], ex["pi"], ex["f"]
    assert (c.value, big.value, pi.value, f.value) == (5, I64_MIN, 3.25, -0.5)
    assert c.get() == 5
    assert c.type == GlobalType(ValType.I32, True) and pi.type == GlobalType(ValType.F64, False)
    assert ex["bump"]() == 6 and c.value == 6  # wasm writes, Python reads
    c.value = 41
    assert ex["get_counter"]() == 41  # Python writes, wasm reads
    c.set(U32_MAX)  # unsigned in, signed out
    assert c.value == -1 and ex["get_counter"]() == -1
    big.set(U64_MAX)
    assert big.value == -1 and ex["get_big"]() == -1
    f.value = 0.1
    assert f.value == as_f32(0.1) and ex["get_f"]() == as_f32(0.1)


def test_immutable_global_cannot_be_set(instantiate):
    ex = instantiate(EXPORTED).exports
    with pytest.raises(TypeError):
        ex["pi"].set(1.0)
    with pytest.raises(TypeError):
        ex["pi"].value = 2.0
    assert ex["pi"].value == 3.25


def test_global_set_refuses_bad_values(instantiate):
    ex = instantiate(EXPORTED).exports
    for bad in (2**32, "1", None, 1.5):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            ex["counter"].set(bad)
    assert ex["counter"].value == 5


def test_imported_globals(instantiate, store):
    g = pw.Global(store, GlobalType(ValType.I64, True), -5)
    k = pw.Global(store, GlobalType(ValType.F64, False), math.inf)
    assert g.type == GlobalType(ValType.I64, True) and g.store is store
    ex = instantiate(IMPORTED, {"env": {"g": g, "k": k}}).exports
    assert ex["get"]() == -5 and ex["k"]() == math.inf
    ex["set"](I64_MAX)
    assert g.value == I64_MAX  # the host object sees the guest's write
    g.value = 7
    assert ex["get"]() == 7


@pytest.mark.capability("shared_externs")
def test_one_global_shared_by_two_instances(instantiate, store):
    g = pw.Global(store, GlobalType(ValType.I64, True), 0)
    k = pw.Global(store, GlobalType(ValType.F64, False), 0.0)
    a = instantiate(IMPORTED, {"env": {"g": g, "k": k}}).exports
    b = instantiate(IMPORTED, {"env": {"g": g, "k": k}}).exports
    a["set"](123)
    assert b["get"]() == 123


@pytest.mark.parametrize("given_type", [GlobalType(ValType.I64, False), GlobalType(ValType.I32, True),
                                        GlobalType(ValType.F64, True)])
def test_global_import_of_the_wrong_type_is_a_link_error(instantiate, store, given_type):
    wrong = pw.Global(store, given_type, 0)
    k = pw.Global(store, GlobalType(ValType.F64, False), 0.0)
    with pytest.raises(pw.LinkError) as e:
        instantiate(IMPORTED, {"env": {"g": wrong, "k": k}})
    assert "g" in str(e.value)


def test_global_of_each_number_type(store):
    for ty, v, expect in [(ValType.I32, U32_MAX, -1), (ValType.I64, 2**63, -(2**63)), (ValType.F32, 1.5, 1.5),
                          (ValType.F64, -0.0, -0.0)]:
        g = pw.Global(store, GlobalType(ty, True), v)
        assert g.value == expect
        if ty is ValType.F64:
            assert math.copysign(1, g.value) == -1
    nan = pw.Global(store, GlobalType(ValType.F64, True), math.nan)
    assert math.isnan(nan.value)


def test_global_constructor_validates(store):
    with pytest.raises(TypeError):
        pw.Global(store, ValType.I32, 0)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError, OverflowError)):
        pw.Global(store, GlobalType(ValType.I32), 2**40)


@given(st.integers(min_value=I64_MIN, max_value=U64_MAX))
@SETTINGS
def test_i64_global_property(instantiate, v):
    ex = instantiate(EXPORTED).exports
    ex["big"].value = v
    assert ex["big"].value == signed64(v) == ex["get_big"]()


@pytest.mark.capability("v128_values")
def test_v128_global(instantiate, store):
    g = pw.Global(store, GlobalType(ValType.V128, True), 2**127 + 5)
    assert g.value == 2**127 + 5
    ex = instantiate(
        """(module (import "env" "g" (global $g (mut v128)))
             (func (export "lane0") (result i32) global.get $g i32x4.extract_lane 0)
             (global (export "c") v128 (v128.const i32x4 1 2 3 4)))""",
        {"env": {"g": g}},
    ).exports
    assert ex["lane0"]() == 5
    assert ex["c"].value == (4 << 96) | (3 << 64) | (2 << 32) | 1


@pytest.mark.capability("reference_values")
def test_reference_globals(instantiate, store):
    obj = object()
    eg = pw.Global(store, GlobalType(ValType.EXTERNREF, True), obj)
    assert eg.value is obj
    eg.value = None
    assert eg.value is None
    f = pw.Func(store, FuncType([], [ValType.I32]), lambda: 11)
    fg = pw.Global(store, GlobalType(ValType.FUNCREF, True), f)
    assert fg.value() == 11
    ex = instantiate(
        """(module (import "env" "e" (global $e (mut externref))) (import "env" "f" (global $f (mut funcref)))
             (func (export "get_e") (result externref) global.get $e)
             (func (export "set_e") (param externref) local.get 0 global.set $e)
             (func (export "get_f") (result funcref) global.get $f))""",
        {"env": {"e": eg, "f": fg}},
    ).exports
    marker = ["m"]
    ex["set_e"](marker)
    assert eg.value is marker and ex["get_e"]() is marker
    assert ex["get_f"]()() == 11
