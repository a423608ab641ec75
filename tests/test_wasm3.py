"""The wasm3 backend where it differs from the others: what the conformance suite skips for it
(its trap module uses reference types) checked on a module wasm3 can compile, and its own limits
(one instance per memory or global made in Python, no table imports, limits from its worker)."""

from __future__ import annotations

import time

import pytest
from _helpers import HANG_GUARD

import proxywasm_vm as pw
from proxywasm_vm import PAGE_SIZE, FuncType, GlobalType, Limits, MemoryType, TrapCode, ValType

from conformance.test_traps import CASES, TRAPS, reported

I32 = ValType.I32
#: The conformance trap module without its one reference-types function (wasm3 0.5.0 has none).
TRAPS_NO_REFS = "\n".join(line for line in TRAPS.splitlines() if "funcref)" not in line or "table $t" in line)
#: Its cases, each expected exactly as the conformance table says wasm3 reports it (a null entry past
#: the element segments too: the adapter sizes the table, see _size_table0).
CASES_NO_REFS = [case for case in CASES if case[0] != "table_get_oob"]


@pytest.fixture(scope="module")
def engine(require_backend) -> pw.Engine:
    require_backend("wasm3")
    return pw.Engine("wasm3")


@pytest.fixture
def traps(engine):
    return pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm(TRAPS_NO_REFS))).exports


def test_runs_in_a_worker_with_honest_capabilities(engine):
    assert engine.backend.isolation == "process" and engine.worker_info["version"] == "0.5.0"
    caps = engine.capabilities
    assert caps.deadline and caps.memory_limit and not caps.exact_memory_limit and not caps.interrupt_keeps_store
    assert not (caps.fuel or caps.serialize or caps.table_access or caps.reference_values or caps.reference_types
                or caps.v128_values or caps.wasm_threads or caps.shared_externs or caps.concurrent_stores)
    assert caps.max_wasm_stack and caps.multi_value and caps.host_memory_access


@pytest.mark.parametrize("name,args,code,situation", CASES_NO_REFS, ids=[c[0] for c in CASES_NO_REFS])
def test_trap_code_and_recovery(traps, name, args, code, situation):
    mem = traps["memory"]
    mem.write(0, b"state")
    with pytest.raises(pw.Trap) as e:
        traps[name](*args)
    assert e.value.code is reported("wasm3", code, situation), e.value.message
    assert traps["ok"]() == 42 and traps["ok2"]() == 42 and mem.read(0, 5) == b"state"
    with pytest.raises(pw.Trap) as again:
        traps[name](*args)
    assert again.value.code is e.value.code


def test_stack_size_bounds_recursion():
    depths = {}
    for size in (64 * 1024, 256 * 1024):
        eng = pw.Engine("wasm3", pw.EngineConfig(max_wasm_stack=size))
        ex = pw.Instance(pw.Store(eng), pw.Module(eng, pw.wat2wasm(TRAPS_NO_REFS))).exports
        with pytest.raises(pw.Trap) as e:
            ex["recurse"](0)
        assert e.value.code is TrapCode.STACK_OVERFLOW
        depths[size] = ex["depth"]()
        assert ex["ok"]() == 42
    assert depths[64 * 1024] > 1000 and depths[256 * 1024] > depths[64 * 1024] * 2


#: Recursion whose frames hold the least value stack for the most native stack (found by the
#: corrupted-module property test: a call turned into a self-call, then a global read).
SELF_CALLS = {
    "no params, a global read": '(module (global $g (mut i32) (i32.const 3))'
                                ' (func $f (export "f") call $f global.get $g drop))',
    "no params": '(module (func $f (export "f") call $f))',
    "a param, a global read": '(module (global $g (mut i32) (i32.const 3)) (func $f (export "f") (param i32)'
                              ' (result i32) local.get 0 call $f global.get $g i32.add))',
}


@pytest.mark.parametrize("size", [None, 2 << 20])  # the default (1 MiB) and the largest value stack
@pytest.mark.parametrize("wat", list(SELF_CALLS.values()), ids=list(SELF_CALLS))
def test_deepest_recursion_is_a_trap_not_a_crash(size, wat):
    # each wasm call is also a C call in wasm3: the worker's native stack must outlast the value stack
    eng = pw.Engine("wasm3", pw.EngineConfig(max_wasm_stack=size) if size else None)
    inst = pw.Instance(pw.Store(eng), pw.Module(eng, pw.wat2wasm(wat)))
    f = inst.exports["f"]
    with pytest.raises(pw.Trap) as e:
        f(*([1] * len(f.type.params)))
    assert e.value.code is TrapCode.STACK_OVERFLOW
    with pytest.raises(pw.Trap):  # the same worker and store, again
        f(*([1] * len(f.type.params)))


def test_a_value_stack_larger_than_the_native_stack_allows_is_refused():
    with pytest.raises(ValueError, match="max_wasm_stack"):
        pw.Engine("wasm3", pw.EngineConfig(max_wasm_stack=4 << 20))


def test_host_and_wasm_call_each_other_deeply(engine):
    """Every call into wasm made by a host function starts above the running frames."""
    store = pw.Store(engine)
    holder = {}

    def down(n: int) -> int:
        return holder["f"](n - 1) + 1 if n > 0 else 0

    inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(
        """(module (import "env" "down" (func $down (param i32) (result i32)))
             (func (export "f") (param i32) (result i32) (local i32)
               (local.set 1 (i32.mul (local.get 0) (i32.const 3)))
               (i32.add (call $down (local.get 0))
                        (i32.sub (local.get 1) (i32.mul (local.get 0) (i32.const 3))))))""")),
        {"env": {"down": pw.Func(store, FuncType([I32], [I32]), down)}})
    holder["f"] = inst.exports["f"]
    assert inst.exports["f"](40) == 40  # the locals of every outer frame survived the inner calls


def test_memory_and_global_made_in_python_go_to_one_instance(engine):
    store = pw.Store(engine)
    mem = pw.Memory(store, MemoryType(Limits(1, 2)))
    mem.write(8, b"abcd")
    g = pw.Global(store, GlobalType(I32, True), 7)
    mod = pw.Module(engine, pw.wat2wasm(
        """(module (import "env" "m" (memory 1 2)) (import "env" "g" (global $g (mut i32)))
             (func (export "load") (param i32) (result i32) local.get 0 i32.load)
             (func (export "bump") global.get $g i32.const 1 i32.add global.set $g)
             (func (export "grow") (result i32) i32.const 1 memory.grow))"""))
    ex = pw.Instance(store, mod, {"env": {"m": mem, "g": g}}).exports
    assert ex["load"](8) == int.from_bytes(b"abcd", "little")
    ex["bump"]()
    assert g.value == 8  # the Python object is now the instance's global
    assert ex["grow"]() == 1 and mem.size == 2 and mem.read(8, 4) == b"abcd"
    with pytest.raises(pw.LinkError):
        pw.Instance(store, mod, {"env": {"m": mem, "g": pw.Global(store, GlobalType(I32, True), 0)}})
    with pytest.raises(pw.LinkError):
        pw.Instance(store, mod, {"env": {"m": pw.Memory(store, MemoryType(Limits(1, 2))), "g": g}})


def test_a_module_importing_a_table_is_read_but_not_instantiated(engine):
    mod = pw.Module(engine, pw.wat2wasm('(module (import "env" "t" (table 1 funcref)) (func (export "f")))'))
    assert [i.name for i in mod.imports] == ["t"] and [e.name for e in mod.exports] == ["f"]
    store = pw.Store(engine)
    table = pw.Instance(store, pw.Module(engine, pw.wat2wasm('(module (table (export "t") 1 funcref))'))).exports["t"]
    with pytest.raises(pw.LinkError):
        pw.Instance(store, mod, {"env": {"t": table}})


def test_deadline_ends_the_worker_and_the_engine_goes_on(engine):
    mod = pw.Module(engine, pw.wat2wasm('(module (func (export "spin") (loop (br 0))) '
                                        '(func (export "one") (result i32) i32.const 1))'))
    store = pw.Store(engine, limits=pw.StoreLimits(deadline=0.2))
    ex = pw.Instance(store, mod).exports
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as e:
        ex["spin"]()
    assert e.value.code is TrapCode.INTERRUPTED and time.monotonic() - t0 < HANG_GUARD
    assert pw.Instance(pw.Store(engine), mod).exports["one"]() == 1  # a new worker, a new store


def test_memory_cap_makes_memory_grow_fail(engine):
    cap = 8 << 20
    store = pw.Store(engine, limits=pw.StoreLimits(memory_bytes=cap))
    ex = pw.Instance(store, pw.Module(engine, pw.wat2wasm(
        """(module (memory (export "memory") 1)
             (func (export "bomb") (result i32) (local i32)
               (block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                            (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br 0)))
               local.get 0))"""))).exports
    grown = ex["bomb"]()
    slack = (16 << 20) // PAGE_SIZE + 16  # the guard's slack (exact_memory_limit is False)
    assert cap // PAGE_SIZE - 1 - slack <= grown <= cap // PAGE_SIZE + slack
    with pytest.raises(pw.LimitError):
        ex["memory"].grow(cap // PAGE_SIZE + slack)


def test_a_function_exported_under_many_names(engine):
    """wasm3 keeps three names per function; exports are found by index (AssemblyScript SDKs
    export one no-op function under many proxy_on_* names)."""
    names = [f"alias{i}" for i in range(6)]
    exports = " ".join(f'(export "{n}" (func $f))' for n in names)
    ex = pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm(
        f"(module (func $f (param i32) (result i32) local.get 0 i32.const 1 i32.add) {exports})"))).exports
    assert [ex[n](i) for i, n in enumerate(names)] == [1, 2, 3, 4, 5, 6]


def test_invalid_code_is_refused_before_wasm3_sees_it(engine):
    """wasm3 0.5.0 alone compiles this function, which adds an f32 to an i32 (invalid)."""
    bad = bytes.fromhex("0061736d0100000001060160017f017f03020100070501016600000a0c010a002000430000803f6a0b")
    assert not pw.Module.validate(engine, bad)
    with pytest.raises(pw.CompileError):
        pw.Module(engine, bad)
