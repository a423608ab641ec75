"""Tables: size, get, set, grow; funcrefs made in Python and called from wasm."""

from __future__ import annotations

import pytest

import proxywasm_vm as pw
from proxywasm_vm import FuncType, Limits, TableType, ValType

pytestmark = pytest.mark.capability("table_access")

V_I = FuncType([], [ValType.I32])

TABLE = """
(module
  (type $v_i (func (result i32)))
  (table $t (export "table") 2 6 funcref)
  (elem (i32.const 0) $forty_two)
  (func $forty_two (export "forty_two") (result i32) i32.const 42)
  (func (export "call") (param i32) (result i32) local.get 0 call_indirect (type $v_i))
  (func (export "size") (result i32) table.size $t)
  (func (export "grow") (param i32) (result i32) ref.null func local.get 0 table.grow $t)
  (func (export "is_null") (param i32) (result i32) local.get 0 table.get $t ref.is_null)
)
"""


@pytest.fixture
def tab(instantiate):
    return instantiate(TABLE).exports


def test_size_get_and_call(tab):
    t = tab["table"]
    assert isinstance(t, pw.Table)
    assert t.type == TableType(ValType.FUNCREF, Limits(2, 6))
    assert t.size == 2 == tab["size"]()
    f0 = t.get(0)
    assert isinstance(f0, pw.Func) and f0() == 42 and f0.type == V_I
    assert t.get(1) is None
    assert tab["call"](0) == 42


def test_set_a_python_function_and_call_it_from_wasm(tab, store):
    calls = []
    host = pw.Func(store, V_I, lambda: calls.append(1) or 99)
    t = tab["table"]
    t.set(1, host)
    assert tab["is_null"](1) == 0
    assert tab["call"](1) == 99 and calls == [1]
    assert t.get(1)() == 99
    t.set(1, tab["forty_two"])
    assert tab["call"](1) == 42
    t.set(0, None)
    assert t.get(0) is None and tab["is_null"](0) == 1


def test_grow_from_python_and_wasm(tab, store):
    t = tab["table"]
    host = pw.Func(store, V_I, lambda: 7)
    assert t.grow(2, host) == 2
    assert t.size == 4 == tab["size"]()
    assert t.get(3)() == 7 and tab["call"](2) == 7
    assert t.grow(0) == 4
    assert tab["grow"](1) == 4 and t.size == 5  # wasm grows, Python sees it
    assert t.get(4) is None


def test_grow_past_maximum(tab):
    t = tab["table"]
    with pytest.raises(pw.LimitError):
        t.grow(5)  # 2 + 5 > 6
    assert t.size == 2
    assert tab["grow"](5) == -1  # inside wasm a failed grow is -1, not a trap
    assert t.grow(4) == 2 and t.size == 6


def test_out_of_range_index_raises_index_error(tab, store):
    t = tab["table"]
    for i in (2, 3, 10**6, -1, 2**64):
        with pytest.raises(IndexError):
            t.get(i)
        with pytest.raises(IndexError):
            t.set(i, None)
    assert tab["call"](0) == 42


def test_set_refuses_values_of_the_wrong_kind(tab, store, engine):
    t = tab["table"]
    for bad in (1, "f", object()):
        with pytest.raises((TypeError, ValueError, pw.WasmError)):
            t.set(0, bad)
    other = pw.Func(pw.Store(engine), V_I, lambda: 1)
    with pytest.raises((TypeError, ValueError, pw.WasmError)):
        t.set(0, other)  # a function of another store
    assert tab["call"](0) == 42
    with pytest.raises((TypeError, ValueError)):
        t.grow(-1)


def test_table_made_in_python_and_imported(instantiate, store):
    t = pw.Table(store, TableType(ValType.FUNCREF, Limits(3)), None)
    assert t.size == 3 and all(t.get(i) is None for i in range(3))
    t.set(2, pw.Func(store, V_I, lambda: -8))
    ex = instantiate(
        """(module (type $v_i (func (result i32))) (import "env" "t" (table 1 funcref))
             (func (export "call") (param i32) (result i32) local.get 0 call_indirect (type $v_i)))""",
        {"env": {"t": t}},
    ).exports
    assert ex["call"](2) == -8


def test_table_grow_past_store_limit(store, engine):
    limited = pw.Store(engine, limits=pw.StoreLimits(table_elements=4))
    t = pw.Table(limited, TableType(ValType.FUNCREF, Limits(1)), None)
    assert t.grow(3) == 1
    with pytest.raises(pw.LimitError):
        t.grow(1)
    assert t.size == 4


@pytest.mark.capability("reference_values")
def test_externref_table(instantiate, store):
    first = {"k": 1}
    t = pw.Table(store, TableType(ValType.EXTERNREF, Limits(2, 4)), first)
    assert t.get(0) is first and t.get(1) is first
    second = object()
    t.set(1, second)
    ex = instantiate(
        """(module (import "env" "t" (table $t 2 externref))
             (func (export "get") (param i32) (result externref) local.get 0 table.get $t)
             (func (export "put") (param i32 externref) local.get 0 local.get 1 table.set $t))""",
        {"env": {"t": t}},
    ).exports
    assert ex["get"](1) is second
    third = ("x",)
    ex["put"](0, third)
    assert t.get(0) is third
    assert t.grow(1, None) == 2 and t.get(2) is None
