"""Every trap code wasm can produce, and the store, instance and process surviving each one."""

from __future__ import annotations

import time

import pytest

import proxywasm_vm as pw
from proxywasm_vm import PAGE_SIZE, FuncType, TrapCode, ValType

from _helpers import HANG_GUARD

TRAPS = """
(module
  (type $v_i (func (result i32)))
  (type $i_i (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 3 funcref)
  (elem (i32.const 0) $answer)
  (global $depth (mut i32) (i32.const 0))
  (func $answer (result i32) i32.const 42)
  (func (export "ok") (result i32) call $answer)
  (func (export "ok2") (result i32) (call_indirect (type $v_i) (i32.const 0)))
  (func (export "unreachable") unreachable)
  (func (export "load_oob") (result i32) (i32.load (i32.const 65535)))
  (func (export "store_oob") (i64.store (i32.const 0xFFFFFFF8) (i64.const 1)))
  (func (export "div_by_zero") (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0)))
  (func (export "rem_by_zero") (result i64) (i64.rem_u (i64.const 1) (i64.const 0)))
  (func (export "div_overflow") (result i32) (i32.div_s (i32.const 0x80000000) (i32.const -1)))
  (func (export "trunc_nan") (result i32) (i32.trunc_f64_s (f64.const nan)))
  (func (export "trunc_big") (result i64) (i64.trunc_f32_u (f32.const 1e30)))
  (func $recurse (export "recurse") (param i32) (result i32)
    (global.set $depth (local.get 0))
    (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "depth") (result i32) global.get $depth)
  (func (export "indirect_mismatch") (result i32) (call_indirect (type $i_i) (i32.const 1) (i32.const 0)))
  (func (export "indirect_null") (result i32) (call_indirect (type $v_i) (i32.const 2)))
  (func (export "indirect_oob") (result i32) (call_indirect (type $v_i) (i32.const 3)))
  (func (export "table_get_oob") (result funcref) (table.get $t (i32.const 100)))
)
"""

# ---- what each runtime reports ---------------------------------------------------------------

#: The situations in which some runtime reports another code than the spec's (see REPORTED_AS).
TRUNC_OUT_OF_RANGE = "float-to-integer truncation of an out-of-range value"
NULL_ENTRY = "call_indirect of a null table entry"
REF_TYPES = "an instruction of the reference-types proposal"
BULK_SEGMENTS_TABLES = "a bulk-memory instruction on a segment or a table (memory.init, table.copy, table.init)"

#: Stands in REPORTED_AS for: the runtime refuses the module at compile (CompileError).
REFUSED = "refused at compile"

#: By runtime (a backend id without its "@isolation"), what it reports instead of the spec's code,
#: by situation. Every case of every runtime not listed here must report exactly the spec's code
#: (the one the WebAssembly spec's test suite names for it). Each runtime with a TrapCode here
#: declares ``Capabilities.exact_trap_codes=False`` (test_capabilities_declare_inexact_trap_codes).
REPORTED_AS: dict[str, dict[str, TrapCode | str]] = {
    # V8 10.2 has one message for each pair: "float unrepresentable in integer range" for NaN and
    # out of range, "null function or function signature mismatch" for a null or mistyped entry.
    # The operand that would tell them apart is not in the message (backends/v8/_store.py).
    "v8": {
        TRUNC_OUT_OF_RANGE: TrapCode.BAD_CONVERSION_TO_INTEGER,
        NULL_ENTRY: TrapCode.INDIRECT_CALL_TYPE_MISMATCH,
    },
    # wasm3 0.5.0 has no reference types and no passive segments, and refuses modules that use
    # them at compile. (Its null entries past the element segments are null, not out of bounds,
    # since the adapter sizes the table: see _size_table0 in backends/wasm3/_adapter.py.)
    "wasm3": {
        REF_TYPES: REFUSED,
        BULK_SEGMENTS_TABLES: REFUSED,
    },
}


def reported(backend_name: str, code: TrapCode, situation: str | None) -> TrapCode | str:
    """What ``backend_name`` reports for a trap the spec calls ``code``, in ``situation``."""
    if situation is None:
        return code
    return REPORTED_AS.get(backend_name.split("@")[0], {}).get(situation, code)


# (export, args, code the spec names, situation: see REPORTED_AS)
CASES = [
    ("unreachable", (), TrapCode.UNREACHABLE, None),
    ("load_oob", (), TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("store_oob", (), TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("div_by_zero", (0,), TrapCode.INTEGER_DIVIDE_BY_ZERO, None),
    ("rem_by_zero", (), TrapCode.INTEGER_DIVIDE_BY_ZERO, None),
    ("div_overflow", (), TrapCode.INTEGER_OVERFLOW, None),
    ("trunc_nan", (), TrapCode.BAD_CONVERSION_TO_INTEGER, None),
    ("trunc_big", (), TrapCode.INTEGER_OVERFLOW, TRUNC_OUT_OF_RANGE),
    ("recurse", (0,), TrapCode.STACK_OVERFLOW, None),
    ("indirect_mismatch", (), TrapCode.INDIRECT_CALL_TYPE_MISMATCH, None),
    ("indirect_null", (), TrapCode.INDIRECT_CALL_TO_NULL, NULL_ENTRY),
    ("indirect_oob", (), TrapCode.TABLE_OUT_OF_BOUNDS, None),
    ("table_get_oob", (), TrapCode.TABLE_OUT_OF_BOUNDS, None),
]

#: Codes with a test of their own below (the threads proposal's misaligned atomic, and limits), and
#: codes wasm itself cannot produce in-process:
#: HOST_ERROR carries a host exception across a process boundary (in-process the exception itself
#: is raised, see test_host.py) and UNKNOWN is the fallback for a runtime's unrecognised trap.
ELSEWHERE = {TrapCode.HEAP_MISALIGNED, TrapCode.OUT_OF_FUEL, TrapCode.INTERRUPTED, TrapCode.MEMORY_LIMIT}
NOT_FROM_WASM = {TrapCode.HOST_ERROR, TrapCode.UNKNOWN}


def test_every_trap_code_is_covered():
    primary = {code for _, _, code, _ in CASES}
    assert primary | ELSEWHERE | NOT_FROM_WASM == set(TrapCode)
    assert not primary & (ELSEWHERE | NOT_FROM_WASM)


@pytest.fixture
def traps(instantiate):
    return instantiate(TRAPS).exports


@pytest.mark.capability("reference_types")  # TRAPS uses table.get and funcref results
@pytest.mark.parametrize("name,args,code,situation", CASES, ids=[c[0] for c in CASES])
def test_trap_code_and_recovery(backend_name, traps, name, args, code, situation):
    assert traps["ok"]() == 42
    mem = traps["memory"]
    mem.write(0, b"state")
    with pytest.raises(pw.Trap) as e:
        traps[name](*args)
    assert e.value.code is reported(backend_name, code, situation), e.value.message
    assert isinstance(e.value, pw.WasmError) and isinstance(e.value.message, str) and e.value.message
    # the same store and instance stay usable, with their state intact
    assert traps["ok"]() == 42 and traps["ok2"]() == 42
    assert mem.read(0, 5) == b"state"
    assert traps["div_by_zero"](1) == 1
    # and the same trap happens again the same way
    with pytest.raises(pw.Trap) as again:
        traps[name](*args)
    assert again.value.code is e.value.code


@pytest.mark.capability("reference_types")  # TRAPS uses table.get and funcref results
def test_stack_overflow_happens_deep_and_is_recoverable(traps):
    with pytest.raises(pw.Trap) as e:
        traps["recurse"](0)
    assert e.value.code is TrapCode.STACK_OVERFLOW
    assert traps["depth"]() > 1000  # it really recursed
    for _ in range(3):
        with pytest.raises(pw.Trap):
            traps["recurse"](0)
    assert traps["ok"]() == 42


@pytest.mark.capability("reference_types")  # TRAPS uses table.get and funcref results
@pytest.mark.capability("max_wasm_stack")
def test_max_wasm_stack_bounds_recursion(make_engine, wat_module):
    depths = {}
    for size in (64 * 1024, 256 * 1024):
        eng = make_engine(max_wasm_stack=size)
        ex = pw.Instance(pw.Store(eng), wat_module(TRAPS, eng)).exports
        with pytest.raises(pw.Trap) as e:
            ex["recurse"](0)
        assert e.value.code is TrapCode.STACK_OVERFLOW
        depths[size] = ex["depth"]()
        assert ex["ok"]() == 42
    assert depths[256 * 1024] > depths[64 * 1024] * 2


@pytest.mark.capability("reference_types")  # TRAPS uses table.get and funcref results
def test_traps_in_many_stores_and_the_process_survives(backend_name, engine, wat_module):
    module = wat_module(TRAPS)
    for name, args, code, situation in CASES:
        store = pw.Store(engine)
        inst = pw.Instance(store, module)
        with pytest.raises(pw.Trap) as e:
            inst.exports[name](*args)
        assert e.value.code is reported(backend_name, code, situation), (name, e.value.message)
        store.close()
    assert pw.Instance(pw.Store(engine), module).exports["ok"]() == 42


# ---- instruction by instruction ------------------------------------------------------------

#: Each case's function ``f`` goes in a module of its own, with: a memory of one page, a table of 4
#: whose entries 0 and 2 are set by two element segments (so entry 1 is null inside them, entry 3
#: null past them, and 4 out of bounds), and ``ok``, which must still work after the trap.
INSTRUCTION_MODULE = """(module
  (type $v_i (func (result i32)))
  (type $i_i (func (param i32) (result i32)))
  (memory 1)
  (table $t 4 funcref)
  (elem (i32.const 0) $answer)
  (elem (i32.const 2) $answer)
  (func $answer (result i32) i32.const 42)
  (func (export "ok") (result i32) (call_indirect (type $v_i) (i32.const 2)))
  %s)"""


def _binary(op: str, t: str, a: str, b: str) -> str:
    return f'(func (export "f") (result {t}) ({t}.{op} ({t}.const {a}) ({t}.const {b})))'


def _trunc(op: str, value: str) -> str:
    result, source = op[:3], op[-5:-2]  # "i64.trunc_f32_u" -> i64, f32
    return f'(func (export "f") (result {result}) ({op} ({source}.const {value})))'


_DIVISIONS = [f"{t}.{op}" for t in ("i32", "i64") for op in ("div_s", "div_u", "rem_s", "rem_u")]
_TRUNCATIONS = [f"{r}.trunc_{s}_{u}" for r in ("i32", "i64") for s in ("f32", "f64") for u in ("s", "u")]
#: Per truncation, a value just out of its range (the spec: "integer overflow", not NaN's
#: "invalid conversion to integer"); infinities and the first value past each end among them.
_OUT_OF_RANGE = {
    "i32.trunc_f32_s": "3e9", "i32.trunc_f32_u": "-1", "i32.trunc_f64_s": "2147483648",
    "i32.trunc_f64_u": "4294967296", "i64.trunc_f32_s": "inf", "i64.trunc_f32_u": "-inf",
    "i64.trunc_f64_s": "9223372036854775808", "i64.trunc_f64_u": "18446744073709551616",
}

# (id, the function "f", code the spec names, situation: see REPORTED_AS)
INSTRUCTIONS: list[tuple[str, str, TrapCode, str | None]] = [
    ("unreachable", '(func (export "f") unreachable)', TrapCode.UNREACHABLE, None),
    *[(f"{op} by 0", _binary(op[4:], op[:3], "7", "0"), TrapCode.INTEGER_DIVIDE_BY_ZERO, None) for op in _DIVISIONS],
    ("i32.div_s INT_MIN/-1", _binary("div_s", "i32", "0x80000000", "-1"), TrapCode.INTEGER_OVERFLOW, None),
    ("i64.div_s INT_MIN/-1", _binary("div_s", "i64", "0x8000000000000000", "-1"), TrapCode.INTEGER_OVERFLOW, None),
    *[(f"{op} nan", _trunc(op, "nan"), TrapCode.BAD_CONVERSION_TO_INTEGER, None) for op in _TRUNCATIONS],
    *[(f"{op} {v}", _trunc(op, v), TrapCode.INTEGER_OVERFLOW, TRUNC_OUT_OF_RANGE) for op, v in _OUT_OF_RANGE.items()],
    ("i32.load across the end", '(func (export "f") (result i32) (i32.load (i32.const 65533)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("i64.store at 2**32-8", '(func (export "f") (i64.store (i32.const 0xFFFFFFF8) (i64.const 1)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("i32.load8_u offset=65536", '(func (export "f") (result i32) (i32.load8_u offset=65536 (i32.const 0)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("f64.load offset=2**32-1", '(func (export "f") (result f64) (f64.load offset=0xFFFFFFFF (i32.const 1)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("memory.fill past the end", '(func (export "f") (memory.fill (i32.const 65530) (i32.const 0) (i32.const 7)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("memory.copy from past the end", '(func (export "f") (memory.copy (i32.const 0) (i32.const 65535) (i32.const 2)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, None),
    ("memory.init past the end",
     '(data $d "abcd") (func (export "f") (memory.init $d (i32.const 65534) (i32.const 0) (i32.const 4)))',
     TrapCode.MEMORY_OUT_OF_BOUNDS, BULK_SEGMENTS_TABLES),
    ("call_indirect past the table", '(func (export "f") (result i32) (call_indirect (type $v_i) (i32.const 4)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, None),
    ("call_indirect at -1", '(func (export "f") (result i32) (call_indirect (type $v_i) (i32.const -1)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, None),
    ("table.get past the table", '(func (export "f") (result funcref) (table.get $t (i32.const 4)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, REF_TYPES),
    ("table.set past the table", '(func (export "f") (table.set $t (i32.const 4) (ref.null func)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, REF_TYPES),
    ("table.fill past the table", '(func (export "f") (table.fill $t (i32.const 3) (ref.null func) (i32.const 2)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, REF_TYPES),
    ("table.copy past the table", '(func (export "f") (table.copy $t $t (i32.const 0) (i32.const 3) (i32.const 2)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, BULK_SEGMENTS_TABLES),
    ("table.init past the table",
     '(elem $e func $answer) (func (export "f") (table.init $t $e (i32.const 4) (i32.const 0) (i32.const 1)))',
     TrapCode.TABLE_OUT_OF_BOUNDS, BULK_SEGMENTS_TABLES),
    ("call_indirect with the wrong type",
     '(func (export "f") (result i32) (call_indirect (type $i_i) (i32.const 1) (i32.const 0)))',
     TrapCode.INDIRECT_CALL_TYPE_MISMATCH, None),
    ("call_indirect of a null entry", '(func (export "f") (result i32) (call_indirect (type $v_i) (i32.const 1)))',
     TrapCode.INDIRECT_CALL_TO_NULL, NULL_ENTRY),
    ("call_indirect of a null entry past the elements",
     '(func (export "f") (result i32) (call_indirect (type $v_i) (i32.const 3)))',
     TrapCode.INDIRECT_CALL_TO_NULL, NULL_ENTRY),
    ("infinite recursion", '(func $f (export "f") (result i32) (i32.add (call $f) (i32.const 1)))',
     TrapCode.STACK_OVERFLOW, None),
    ("infinite recursion through the table",
     '(elem (i32.const 3) $f) (func $f (export "f") (result i32) (call_indirect (type $v_i) (i32.const 3)))',
     TrapCode.STACK_OVERFLOW, None),
]


@pytest.mark.parametrize("name,func,code,situation", INSTRUCTIONS, ids=[c[0] for c in INSTRUCTIONS])
def test_each_instruction_traps_with_its_code(backend_name, store, wat_module, name, func, code, situation):
    want = reported(backend_name, code, situation)
    if want == REFUSED:
        with pytest.raises(pw.CompileError):
            wat_module(INSTRUCTION_MODULE % func)
        return
    ex = pw.Instance(store, wat_module(INSTRUCTION_MODULE % func)).exports
    for _ in range(2):  # the same the second time, and the instance stays usable
        with pytest.raises(pw.Trap) as e:
            ex["f"]()
        assert e.value.code is want, e.value.message
        assert ex["ok"]() == 42


def test_call_indirect_of_a_null_entry_in_a_table_without_element_segments(backend_name, instantiate):
    ex = instantiate("""(module (type $v (func)) (table 2 funcref) (memory 1)
      (func (export "f") (param i32) (call_indirect (type $v) (local.get 0)))
      (func (export "ok") (result i32) i32.const 1))""").exports
    for index, code, situation in [(1, TrapCode.INDIRECT_CALL_TO_NULL, NULL_ENTRY),
                                   (2, TrapCode.TABLE_OUT_OF_BOUNDS, None)]:
        with pytest.raises(pw.Trap) as e:
            ex["f"](index)
        assert e.value.code is reported(backend_name, code, situation), e.value.message
        assert ex["ok"]() == 1


def test_the_instruction_table_covers_every_kind_the_spec_names():
    assert {code for _, _, code, _ in INSTRUCTIONS} == {
        TrapCode.UNREACHABLE, TrapCode.MEMORY_OUT_OF_BOUNDS, TrapCode.TABLE_OUT_OF_BOUNDS,
        TrapCode.INDIRECT_CALL_TO_NULL, TrapCode.INDIRECT_CALL_TYPE_MISMATCH, TrapCode.INTEGER_DIVIDE_BY_ZERO,
        TrapCode.INTEGER_OVERFLOW, TrapCode.BAD_CONVERSION_TO_INTEGER, TrapCode.STACK_OVERFLOW,
    }
    assert len({name for name, *_ in INSTRUCTIONS}) == len(INSTRUCTIONS)
    # every exception in REPORTED_AS is one a case meets, names a registered runtime, and differs
    situations = {situation: code for *_, code, situation in [*INSTRUCTIONS, *CASES]}
    runtimes = {name.split("@")[0] for name in pw.backend_names()}
    for runtime, answers in REPORTED_AS.items():
        assert runtime in runtimes
        for situation, answer in answers.items():
            assert situation in situations and answer is not situations[situation]


def test_capabilities_declare_inexact_trap_codes(backend_name, capabilities):
    answers = REPORTED_AS.get(backend_name.split("@")[0], {}).values()
    assert capabilities.exact_trap_codes is not any(isinstance(a, TrapCode) for a in answers)


def test_trap_through_host_function_frames(instantiate, store):
    """A trap in wasm called by a host function called by wasm unwinds everything."""
    holder = {}
    inst = instantiate(
        """(module (import "env" "h" (func $h (result i32)))
             (func (export "outer") (result i32) (i32.add (call $h) (i32.const 1)))
             (func (export "inner") (result i32) (i32.div_u (i32.const 1) (i32.const 0))))""",
        {"env": {"h": pw.Func(store, FuncType([], [ValType.I32]), lambda: holder["inner"]())}},
    )
    holder["inner"] = inst.exports["inner"]
    with pytest.raises(pw.Trap) as e:
        inst.exports["outer"]()
    assert e.value.code is TrapCode.INTEGER_DIVIDE_BY_ZERO


@pytest.mark.capability("wasm_threads")
def test_misaligned_atomic_traps_and_recovers(make_engine):
    engine = make_engine(features=pw.WasmFeatures() | {"threads"})  # (off in the default Wasm 2.0 profile)
    ex = pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm("""(module (memory (export "memory") 1)
      (func (export "misaligned_atomic") (result i32) (i32.atomic.load (i32.const 2)))
      (func (export "aligned_atomic") (result i32) (i32.atomic.load (i32.const 4))))""")), []).exports
    ex["memory"].write_u32(4, 7)
    for _ in range(2):
        with pytest.raises(pw.Trap) as e:
            ex["misaligned_atomic"]()
        assert e.value.code is TrapCode.HEAP_MISALIGNED, e.value.message
        assert isinstance(e.value.message, str) and e.value.message
        assert ex["aligned_atomic"]() == 7


# ---- limits -------------------------------------------------------------------------------

SPIN = """
(module
  (memory (export "memory") 1)
  (func (export "spin") (loop br 0))
  (func (export "count") (param i32) (result i32) (local i32)
    (block (loop
      (br_if 1 (i32.ge_u (local.get 1) (local.get 0)))
      (local.set 1 (i32.add (local.get 1) (i32.const 1)))
      (br 0)))
    local.get 1)
  (func (export "ok") (result i32) i32.const 1)
)
"""


@pytest.mark.capability("fuel")
def test_out_of_fuel(make_engine, wat_module):
    eng = make_engine(fuel=True)
    store = pw.Store(eng, limits=pw.StoreLimits(fuel=10_000))
    ex = pw.Instance(store, wat_module(SPIN, eng)).exports
    assert store.get_fuel() <= 10_000
    assert ex["count"](10) == 10
    left = store.get_fuel()
    assert 0 < left < 10_000
    with pytest.raises(pw.Trap) as e:
        ex["spin"]()
    assert e.value.code is TrapCode.OUT_OF_FUEL
    assert store.get_fuel() == 0
    # a store out of fuel stays out of fuel (deterministic), until refuelled
    with pytest.raises(pw.Trap) as again:
        ex["ok"]()
    assert again.value.code is TrapCode.OUT_OF_FUEL
    store.set_fuel(1_000_000)
    assert store.get_fuel() == 1_000_000
    assert ex["ok"]() == 1 and ex["count"](1000) == 1000
    assert store.get_fuel() < 1_000_000
    with pytest.raises(pw.Trap) as e2:
        ex["count"](10**9)
    assert e2.value.code is TrapCode.OUT_OF_FUEL


@pytest.mark.capability("fuel")
def test_fuel_is_deterministic(make_engine, wat_module):
    eng = make_engine(fuel=True)
    used = []
    for _ in range(2):
        store = pw.Store(eng, limits=pw.StoreLimits(fuel=10**6))
        pw.Instance(store, wat_module(SPIN, eng)).exports["count"](500)
        used.append(10**6 - store.get_fuel())
    assert used[0] == used[1] > 500


@pytest.mark.capability("deadline", "interrupt_keeps_store")
def test_deadline_interrupts_an_infinite_loop(engine, wat_module):
    deadline = 0.2
    store = pw.Store(engine, limits=pw.StoreLimits(deadline=deadline))
    ex = pw.Instance(store, wat_module(SPIN)).exports
    for _ in range(2):  # the deadline applies to each call, not to the store's lifetime
        t0 = time.monotonic()
        with pytest.raises(pw.Trap) as e:
            ex["spin"]()
        elapsed = time.monotonic() - t0
        assert e.value.code is TrapCode.INTERRUPTED
        assert deadline / 2 <= elapsed < HANG_GUARD, f"interrupted after {elapsed:.3f}s, deadline {deadline}s"
        assert ex["ok"]() == 1
    assert ex["count"](100_000) == 100_000  # short calls under a deadline run normally


@pytest.mark.capability("deadline", "interrupt_keeps_store")
def test_deadline_can_be_changed_and_removed(engine, wat_module):
    store = pw.Store(engine)
    ex = pw.Instance(store, wat_module(SPIN)).exports
    store.set_deadline(0.02)
    with pytest.raises(pw.Trap) as e:
        ex["spin"]()
    assert e.value.code is TrapCode.INTERRUPTED
    store.set_deadline(None)
    assert ex["count"](1000) == 1000


@pytest.mark.capability("memory_limit", "exact_memory_limit")
def test_memory_bomb_stops_at_the_limit(engine, wat_module):
    limit = 4 * 1024 * 1024
    store = pw.Store(engine, limits=pw.StoreLimits(memory_bytes=limit))
    inst = pw.Instance(store, wat_module(
        """(module (memory (export "memory") 1)
             (func (export "bomb") (result i32) (local i32)
               (block (loop
                 (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                 (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                 (br 0)))
               local.get 0)
             (func (export "big_grow") (result i32) (memory.grow (i32.const 10000))))"""))
    grown = inst.exports["bomb"]()
    mem = inst.exports["memory"]
    assert grown == limit // PAGE_SIZE - 1  # every page up to the limit, then memory.grow returned -1
    assert mem.data_size == limit
    assert inst.exports["big_grow"]() == -1
    assert inst.exports["bomb"]() == 0
    assert mem.data_size <= limit
    with pytest.raises(pw.LimitError):
        mem.grow(1)
    mem.write(limit - 1, b"\xff")
    assert mem.read(limit - 1, 1) == b"\xff"


@pytest.mark.capability("memory_limit")
def test_initial_memory_over_the_limit_is_a_memory_limit_trap(engine, wat_module):
    store = pw.Store(engine, limits=pw.StoreLimits(memory_bytes=2 * PAGE_SIZE))
    with pytest.raises(pw.Trap) as e:
        pw.Instance(store, wat_module("(module (memory 3))"))
    assert e.value.code is TrapCode.MEMORY_LIMIT
    # the store stays usable for modules within the limit
    inst = pw.Instance(store, wat_module('(module (memory (export "m") 2) (func (export "f") (result i32) i32.const 1))'))
    assert inst.exports["f"]() == 1 and inst.exports["m"].size == 2


def test_limits_need_the_matching_engine_config(make_engine):
    no_fuel = make_engine(fuel=False)
    with pytest.raises(ValueError):
        pw.Store(no_fuel, limits=pw.StoreLimits(fuel=10))
    no_deadlines = make_engine(deadlines=False)
    with pytest.raises(ValueError):
        pw.Store(no_deadlines, limits=pw.StoreLimits(deadline=1.0))
    with pytest.raises(ValueError):
        pw.StoreLimits(memory_bytes=-1)
    with pytest.raises(ValueError):
        pw.StoreLimits(deadline=0)
