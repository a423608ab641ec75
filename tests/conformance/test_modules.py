"""Compiling, validating, linking, serializing and caching modules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm import FuncType, GlobalType, Limits, MemoryType, TableType, ValType

from ._support import SETTINGS

I32 = ValType.I32

GOOD = """
(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "data segment")
  (global $g (mut i32) (i32.const 3))
  (func (export "f") (param i32) (result i32) (i32.add (call $h (local.get 0)) (global.get $g)))
)
"""


@pytest.fixture(scope="module")
def good_wasm():
    return pw.wat2wasm(GOOD)


def _host(store):
    return {"env": {"h": pw.Func(store, FuncType([I32], [I32]), lambda x: x * 10)}}


# ---- compile errors --------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\0", b"\0asm", b"\0asm\x01\0\0", b"garbage bytes, not wasm",
                                  b"\0asn\x01\0\0\0", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
                                  b"\0asm\x02\0\0\0", b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f",
                                  b"\0asm\x01\0\0\0\x7f\x01\x00", bytes(range(256)) * 4])
def test_bad_bytes_are_a_compile_error(engine, data):
    with pytest.raises(pw.CompileError):
        pw.Module(engine, data)
    assert pw.Module.validate(engine, data) is False


def test_invalid_text_is_a_compile_error(engine):
    with pytest.raises(pw.CompileError):
        pw.Module(engine, "(module (func (result i32)))")  # valid syntax, fails validation
    with pytest.raises(pw.CompileError):
        pw.Module(engine, "(module (fnuc))")  # not even text
    with pytest.raises(TypeError):
        pw.Module(engine, 12345)  # type: ignore[arg-type]


def test_type_error_in_body_is_a_compile_error(engine):
    # Well-formed binary that does not validate: i32.add on an empty stack.
    wasm = b"\0asm\x01\0\0\0" + b"\x01\x04\x01\x60\x00\x00" + b"\x03\x02\x01\x00" + b"\x0a\x05\x01\x03\x00\x6a\x0b"
    assert pw.Module.validate(engine, wasm) is False
    with pytest.raises(pw.CompileError):
        pw.Module(engine, wasm)


def test_truncated_module_is_a_compile_error(engine, good_wasm):
    for cut in (1, 2, 5, len(good_wasm) // 2, len(good_wasm) - 9):
        with pytest.raises(pw.CompileError):
            pw.Module(engine, good_wasm[:-cut])


def test_every_prefix_compiles_or_raises_compile_error(engine, good_wasm):
    """Cutting a module anywhere gives a CompileError (or, at a section boundary, a smaller valid module)."""
    for n in range(len(good_wasm)):
        prefix = good_wasm[:n]
        valid = pw.Module.validate(engine, prefix)
        try:
            pw.Module(engine, prefix)
        except pw.CompileError:
            assert not valid, n
        else:
            assert valid, n


def test_validate(engine, good_wasm):
    assert pw.Module.validate(engine, good_wasm) is True
    assert pw.Module.validate(engine, GOOD) is True  # text is accepted too
    assert pw.Module.validate(engine, "(module (func (result i32)))") is False
    assert pw.Module.validate(engine, "not wasm at all") is False
    assert pw.Module.validate(engine, good_wasm[:-1]) is False


@given(st.binary(max_size=64))
@SETTINGS
def test_random_bytes_never_crash(engine, data):
    valid = pw.Module.validate(engine, data)
    try:
        pw.Module(engine, data)
    except pw.CompileError:
        assert not valid
    else:
        assert valid


@given(st.data())
@SETTINGS
def test_corrupted_module_never_crashes(engine, good_wasm, data):
    """Flip bytes of a real module: compile or CompileError, and if it compiles it may be run."""
    buf = bytearray(good_wasm)
    for _ in range(data.draw(st.integers(1, 4))):
        buf[data.draw(st.integers(8, len(buf) - 1))] = data.draw(st.integers(0, 255))
    try:
        m = pw.Module(engine, bytes(buf))
    except pw.CompileError:
        return
    store = pw.Store(engine)
    try:
        inst = pw.Instance(store, m, _host(store))
    except (pw.LinkError, pw.Trap):
        return
    f = inst.exports.get("f")
    if isinstance(f, pw.Func) and f.type == FuncType([I32], [I32]):
        try:
            f(1)
        except pw.Trap:
            pass


# ---- link errors ---------------------------------------------------------------------------


def test_missing_import_is_a_link_error_naming_it(engine, good_wasm):
    m = pw.Module(engine, good_wasm)
    for imports in (None, {}, {"env": {}}, {"other": {"h": None}}):
        with pytest.raises(pw.LinkError) as e:
            pw.Instance(pw.Store(engine), m, imports)
        assert e.value.module == "env" and e.value.name == "h"
        assert "env" in str(e.value) and "h" in str(e.value)
    with pytest.raises(pw.LinkError):
        pw.Instance(pw.Store(engine), m, [])


@pytest.mark.parametrize("wrong", ["functype", "memory", "global", "arity"])
def test_wrong_import_type_is_a_link_error(engine, good_wasm, wrong):
    store = pw.Store(engine)
    item = {
        "functype": lambda: pw.Func(store, FuncType([ValType.I64], [I32]), lambda x: 0),
        "memory": lambda: pw.Memory(store, MemoryType(Limits(1))),
        "global": lambda: pw.Global(store, GlobalType(I32, False), 0),
        "arity": lambda: pw.Func(store, FuncType([I32], []), lambda x: None),
    }[wrong]()
    with pytest.raises(pw.LinkError) as e:
        pw.Instance(store, pw.Module(engine, good_wasm), {"env": {"h": item}})
    assert e.value.module == "env" and e.value.name == "h"


def test_too_small_memory_import_is_a_link_error(engine, wat_module):
    store = pw.Store(engine)
    m = wat_module('(module (import "env" "mem" (memory 2)))')
    with pytest.raises(pw.LinkError) as e:
        pw.Instance(store, m, {"env": {"mem": pw.Memory(store, MemoryType(Limits(1)))}})
    assert (e.value.module, e.value.name) == ("env", "mem")
    assert pw.Instance(store, m, {"env": {"mem": pw.Memory(store, MemoryType(Limits(2)))}}) is not None


@pytest.mark.capability("table_access")
def test_too_small_table_import_is_a_link_error(engine, wat_module):
    store = pw.Store(engine)
    table_mod = wat_module('(module (import "env" "t" (table 1 2 funcref)))')
    with pytest.raises(pw.LinkError) as e:
        pw.Instance(store, table_mod, {"env": {"t": pw.Table(store, TableType(ValType.FUNCREF, Limits(1)), None)}})
    assert (e.value.module, e.value.name) == ("env", "t")
    big_enough = pw.Table(store, TableType(ValType.FUNCREF, Limits(1, 2)), None)
    assert pw.Instance(store, table_mod, {"env": {"t": big_enough}}) is not None


def test_import_from_another_store_is_refused(engine, good_wasm):
    other = pw.Store(engine)
    with pytest.raises((pw.LinkError, ValueError)):
        pw.Instance(pw.Store(engine), pw.Module(engine, good_wasm), _host(other))


def test_module_from_another_engine_is_refused(make_engine, engine, good_wasm):
    other = make_engine(deadlines=False)
    with pytest.raises((ValueError, pw.LinkError)):
        pw.Instance(pw.Store(engine), pw.Module(other, good_wasm), None)


# ---- one module, many stores --------------------------------------------------------------------


def test_one_module_instantiated_in_many_stores_is_isolated(engine, good_wasm):
    m = pw.Module(engine, good_wasm)
    instances = []
    for i in range(5):
        s = pw.Store(engine)
        inst = pw.Instance(s, m, _host(s))
        inst.exports["memory"].write(100, bytes([i]))
        instances.append(inst)
    for i, inst in enumerate(instances):
        assert inst.exports["memory"].read(100, 1) == bytes([i])
        assert inst.exports["memory"].read(0, 12) == b"data segment"
        assert inst.exports["f"](i) == i * 10 + 3


# ---- serialize and cache -------------------------------------------------------------------------


@pytest.mark.capability("serialize")
def test_serialize_deserialize(engine, good_wasm):
    m = pw.Module(engine, good_wasm)
    data = m.serialize()
    assert isinstance(data, bytes) and data
    m2 = pw.Module.deserialize(engine, data)
    assert isinstance(m2, pw.Module)
    assert m2.imports == m.imports and m2.exports == m.exports
    store = pw.Store(engine)
    inst = pw.Instance(store, m2, _host(store))
    assert inst.exports["f"](4) == 43
    assert inst.exports["memory"].read(0, 12) == b"data segment"


@pytest.mark.capability("serialize")
def test_deserialize_file(engine, good_wasm, tmp_path):
    path = tmp_path / "mod.cwasm"
    path.write_bytes(pw.Module(engine, good_wasm).serialize())
    m = pw.Module.deserialize_file(engine, path)
    store = pw.Store(engine)
    assert pw.Instance(store, m, _host(store)).exports["f"](1) == 13


@pytest.mark.capability("serialize")
@pytest.mark.parametrize("data", [b"", b"garbage", b"\0asm\x01\0\0\0", b"\x7fELF" + bytes(60)])
def test_deserialize_garbage_is_a_compile_error(engine, data, tmp_path):
    with pytest.raises(pw.CompileError):
        pw.Module.deserialize(engine, data)
    path = tmp_path / "bad.cwasm"
    path.write_bytes(data)
    with pytest.raises(pw.CompileError):
        pw.Module.deserialize_file(engine, path)


def test_cached_returns_a_working_module(make_engine, good_wasm, tmp_path):
    eng = make_engine(cache_dir=tmp_path)
    for _ in range(3):  # compile, then load from the cache (twice)
        m = pw.Module.cached(eng, good_wasm)
        store = pw.Store(eng)
        inst = pw.Instance(store, m, _host(store))
        assert inst.exports["f"](2) == 23
        assert m.exports == pw.Module(eng, good_wasm).exports


@pytest.mark.capability("serialize")
def test_cached_writes_under_the_engine_cache_dir(make_engine, good_wasm, tmp_path):
    eng = make_engine(cache_dir=tmp_path / "cache")
    assert eng.cache_dir.is_relative_to(tmp_path / "cache")
    pw.Module.cached(eng, good_wasm)
    files = [p for p in eng.cache_dir.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].stat().st_size > 0
    m = pw.Module.cached(eng, good_wasm)  # from the file
    assert [p for p in eng.cache_dir.rglob("*") if p.is_file()] == files
    store = pw.Store(eng)
    assert pw.Instance(store, m, _host(store)).exports["f"](3) == 33
    # a different module gets its own entry
    pw.Module.cached(eng, '(module (func (export "g")))')
    assert len([p for p in eng.cache_dir.rglob("*") if p.is_file()]) == 2


@pytest.mark.capability("serialize")
def test_cache_dir_from_environment(backend_name, good_wasm, tmp_path, monkeypatch):
    monkeypatch.setenv("PWVM_CACHE_DIR", str(tmp_path / "env-cache"))
    eng = pw.Engine(backend_name)
    assert eng.cache_dir.is_relative_to(tmp_path / "env-cache")
    pw.Module.cached(eng, good_wasm)
    assert any(p.is_file() for p in eng.cache_dir.rglob("*"))


@pytest.mark.capability("serialize")
def test_corrupt_cache_entry_is_rebuilt(make_engine, good_wasm, tmp_path):
    eng = make_engine(cache_dir=tmp_path)
    pw.Module.cached(eng, good_wasm)
    (entry,) = [p for p in eng.cache_dir.rglob("*") if p.is_file()]
    entry.write_bytes(b"corrupted")
    m = pw.Module.cached(eng, good_wasm)
    store = pw.Store(eng)
    assert pw.Instance(store, m, _host(store)).exports["f"](5) == 53
    assert entry.read_bytes() != b"corrupted"


def test_from_file(engine, good_wasm, tmp_path):
    (tmp_path / "m.wasm").write_bytes(good_wasm)
    (tmp_path / "m.wat").write_text(GOOD)
    for name in ("m.wasm", "m.wat"):
        m = pw.Module.from_file(engine, tmp_path / name, cache=False)
        store = pw.Store(engine)
        assert pw.Instance(store, m, _host(store)).exports["f"](0) == 3
