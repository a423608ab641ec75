"""Import and export introspection: module types, custom sections, instance exports."""

from __future__ import annotations

import pytest

import proxywasm_vm as pw
from proxywasm_vm import (
    ExportType,
    FuncType,
    GlobalType,
    ImportType,
    Limits,
    MemoryType,
    TableType,
    ValType,
)

from ._support import custom_section

I32, I64, F32, F64 = ValType.I32, ValType.I64, ValType.F32, ValType.F64

KINDS = """
(module
  (import "env" "log" (func (param i32 i64) (result f32)))
  (import "env" "nothing" (func))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "mem" (memory 1 16))
  (import "env" "tab" (table 2 funcref))
  (import "env" "g_const" (global f64))
  (import "env" "g_mut" (global (mut i64)))
  (func $add (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "multi") (param f64) (result f64 i32) local.get 0 i32.const 1)
  (export "add_again" (func $add))
  (table (export "table") 3 9 funcref)
  (global (export "counter") (mut i32) (i32.const 5))
  (global (export "pi") f64 (f64.const 3.25))
  (export "memory" (memory 0))
)
"""

EXPECTED_IMPORTS = [
    ImportType("env", "log", FuncType([I32, I64], [F32])),
    ImportType("env", "nothing", FuncType([], [])),
    ImportType("wasi_snapshot_preview1", "fd_write", FuncType([I32] * 4, [I32])),
    ImportType("env", "mem", MemoryType(Limits(1, 16))),
    ImportType("env", "tab", TableType(ValType.FUNCREF, Limits(2, None))),
    ImportType("env", "g_const", GlobalType(F64, False)),
    ImportType("env", "g_mut", GlobalType(I64, True)),
]

EXPECTED_EXPORTS = [
    ExportType("add", FuncType([I32, I32], [I32])),
    ExportType("multi", FuncType([F64], [F64, I32])),
    ExportType("add_again", FuncType([I32, I32], [I32])),
    ExportType("table", TableType(ValType.FUNCREF, Limits(3, 9))),
    ExportType("counter", GlobalType(I32, True)),
    ExportType("pi", GlobalType(F64, False)),
    ExportType("memory", MemoryType(Limits(1, 16))),
]


def test_module_imports_and_exports_with_types(wat_module, engine):
    if "reference_types" not in engine.features.enabled:
        # KINDS has two tables (an imported one and its own): wasm3 cannot run that, and says so
        with pytest.raises(pw.CompileError) as e:
            wat_module(KINDS)
        assert e.value.feature == "reference_types"
        return
    m = wat_module(KINDS)
    assert m.imports == EXPECTED_IMPORTS
    assert m.exports == EXPECTED_EXPORTS
    assert isinstance(m, pw.Module) and m.engine is not None


def test_empty_module_has_no_imports_or_exports(wat_module):
    m = wat_module("(module)")
    assert m.imports == [] and m.exports == []


def test_custom_sections(engine):
    base = pw.wat2wasm('(module (func (export "f") (result i32) i32.const 3))')
    wasm = (base + custom_section("pwvm.meta", b"first\x00bytes") + custom_section("other", b"x")
            + custom_section("pwvm.meta", b"") + custom_section("pwvm.meta", bytes(range(256))))
    m = pw.Module(engine, wasm)
    assert m.custom_sections("pwvm.meta") == [b"first\x00bytes", b"", bytes(range(256))]
    assert m.custom_sections("other") == [b"x"]
    assert m.custom_sections("missing") == []
    assert m.exports == [ExportType("f", FuncType([], [I32]))]
    # custom sections do not change behaviour
    assert pw.Instance(pw.Store(engine), m).exports["f"]() == 3


def _imports_for(store):
    return {
        "env": {
            "log": pw.Func(store, FuncType([I32, I64], [F32]), lambda a, b: 0.0),
            "nothing": pw.Func(store, FuncType(), lambda: None),
            "mem": pw.Memory(store, MemoryType(Limits(1, 16))),
            "tab": pw.Table(store, TableType(ValType.FUNCREF, Limits(2)), None),
            "g_const": pw.Global(store, GlobalType(F64, False), 1.0),
            "g_mut": pw.Global(store, GlobalType(I64, True), 0),
        },
        "wasi_snapshot_preview1": {
            "fd_write": pw.Func(store, FuncType([I32] * 4, [I32]), lambda *a: 0),
        },
    }


@pytest.mark.capability("table_access")
def test_instance_exports_have_kinds_and_types(instantiate, store):
    inst = instantiate(KINDS, _imports_for(store))
    ex = inst.exports
    assert list(ex) == [e.name for e in EXPECTED_EXPORTS]
    assert len(ex) == len(EXPECTED_EXPORTS)
    classes = {FuncType: pw.Func, TableType: pw.Table, GlobalType: pw.Global, MemoryType: pw.Memory}
    for e in EXPECTED_EXPORTS:
        item = ex[e.name]
        assert isinstance(item, classes[type(e.type)]), e.name
        assert item.type == e.type
        assert item.store is store
    assert ex["add"](2, 3) == 5 and ex["add_again"](4, 5) == 9
    assert inst.store is store and inst.module.exports == EXPECTED_EXPORTS
    assert "add" in ex and "nope" not in ex
    with pytest.raises(KeyError):
        ex["nope"]


@pytest.mark.capability("table_access")
def test_imports_as_a_sequence_in_declaration_order(instantiate, store):
    by_name = _imports_for(store)
    seq = [by_name[i.module][i.name] for i in EXPECTED_IMPORTS]
    inst = instantiate(KINDS, seq)
    assert inst.exports["add"](1, 1) == 2


@pytest.mark.capability("table_access")
def test_imported_memory_is_the_exported_memory(instantiate, store):
    imports = _imports_for(store)
    inst = instantiate(KINDS, imports)
    imports["env"]["mem"].write(100, b"shared")
    assert inst.exports["memory"].read(100, 6) == b"shared"


def test_exported_function_imported_by_another_instance(instantiate, store):
    a = instantiate('(module (func (export "twice") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2))))')
    b = instantiate(
        """(module (import "a" "twice" (func $t (param i32) (result i32)))
             (func (export "quad") (param i32) (result i32) (call $t (call $t (local.get 0)))))""",
        {"a": {"twice": a.exports["twice"]}},
    )
    assert b.exports["quad"](5) == 20


def test_host_func_type_is_kept(store):
    ty = FuncType([I32, F64, I64], [F32, I32])
    f = pw.Func(store, ty, lambda *a: (0.0, 0))
    assert f.type == ty and f.store is store
    with pytest.raises(TypeError):
        pw.Func(store, "not a type", lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pw.Func(store, ty, 42)  # type: ignore[arg-type]


def test_types_are_values():
    assert FuncType(["i32"], ["f64"]) == FuncType([I32], [F64])
    assert hash(FuncType([I32], [])) == hash(FuncType((I32,), ()))
    assert FuncType([I32], []) != FuncType([], [I32])
    with pytest.raises(ValueError):
        Limits(3, 2)
    with pytest.raises(ValueError):
        FuncType(["i33"])
