"""Limits are on by default on every backend and isolation mode: with no limits configured, a loop
stops with Trap(INTERRUPTED), a memory bomb stops at the default cap, deep recursion is a
Trap(STACK_OVERFLOW); ``StoreLimits.unlimited()`` turns them off; the README's first example runs.

Times are measured, not asserted (printed, and appended to ``_helpers.TIMINGS_FILE``)."""

from __future__ import annotations

import threading
import time

import pytest
from _helpers import engine_or_skip, report_time
from conftest import BACKENDS

import proxywasm_vm as pw
from proxywasm_vm import Func, FuncType, Instance, Module, Store, StoreLimits, ValType
from proxywasm_vm._store import DEFAULT_DEADLINE, DEFAULT_MEMORY_BYTES, is_default
from proxywasm_vm._workloads import rss_bytes

PAGE = 65536

WAT = """(module (memory (export "memory") 1)
  (func (export "loop") (loop (br 0)))
  (func $r (export "rec") (param i32) (result i32)
    (i32.add (call $r (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "bomb") (result i32) (local $p i32) (local $end i32)
    ;; grow 16 MiB at a time and touch every 4 KiB page of it, until memory.grow fails
    (block (loop
      (local.set $p (memory.grow (i32.const 256)))
      (br_if 1 (i32.eq (local.get $p) (i32.const -1)))
      (local.set $p (i32.mul (local.get $p) (i32.const 65536)))
      (local.set $end (i32.add (local.get $p) (i32.const 16777216)))
      (block (loop
        (i32.store (local.get $p) (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 4096)))
        (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
        (br 0)))
      (br 0)))
    (memory.size)))"""






def test_defaults_are_on_and_marked():
    lim = StoreLimits()
    assert lim.memory_bytes == 1 << 30 and lim.table_elements == 1_000_000 and lim.deadline == 10.0
    assert is_default(lim.deadline) and is_default(lim.memory_bytes)
    assert not is_default(StoreLimits(deadline=10.0).deadline)
    assert StoreLimits.unlimited() == StoreLimits(memory_bytes=None, table_elements=None, deadline=None)
    assert pw.EngineConfig().max_wasm_stack == 1 << 20
    assert DEFAULT_DEADLINE == 10.0 and DEFAULT_MEMORY_BYTES == 1 << 30


def test_store_with_no_limits_has_the_defaults(engine):
    s = Store(engine)
    assert s.limits.deadline == DEFAULT_DEADLINE and s.limits.memory_bytes == DEFAULT_MEMORY_BYTES


def test_loop_is_interrupted_with_no_limits_at_all():
    """Every selected backend at once (the default deadline is 10 s of wall time: run side by side)."""
    names = [n for n in BACKENDS]
    engines = {n: engine_or_skip(n) for n in names}
    outcome: dict[str, object] = {}

    def spin(name: str) -> None:
        engine = engines[name]
        inst = Instance(Store(engine), Module(engine, WAT))  # nothing configured: DEFAULT_DEADLINE
        t0 = time.monotonic()
        try:
            inst.exports["loop"]()
            outcome[name] = "returned"
        except pw.Trap as e:
            outcome[name] = e.code
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            outcome[name] = e
        report_time(name, "core loop (default)", time.monotonic() - t0)

    threads = [threading.Thread(target=spin, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)  # a generous "did not hang" guard
    assert outcome == {n: pw.TrapCode.INTERRUPTED for n in names}
    for name, engine in engines.items():
        # the engine serves the next store (wasmer: in the worker that replaced the stopped one)
        assert Instance(Store(engine), Module(engine, WAT)).exports["memory"].grow(1) == 1, name


def test_explicit_limits_that_cannot_be_enforced_are_errors(make_engine, backend_name):
    no_deadlines = make_engine(deadlines=False)
    Store(no_deadlines)  # the default deadline is not applied where the user turned deadlines off
    with pytest.raises(ValueError):
        Store(no_deadlines, limits=StoreLimits(deadline=1.0))
    if not pw.get_backend(backend_name).capabilities().max_wasm_stack:
        with pytest.raises(ValueError):
            pw.Engine(backend_name, pw.EngineConfig(max_wasm_stack=256 << 10))


def test_memory_bomb_stops_at_the_default_cap(engine, backend_name):
    # The default memory cap is what is tested, not the default deadline: touching 1 GiB page
    # by page took longer than the 10 s default once with both cores busy (the call then ended
    # INTERRUPTED), so the deadline here is generous; the memory bound keeps its default.
    store = Store(engine, limits=StoreLimits(deadline=120.0))
    assert store.limits.memory_bytes == 1 << 30
    inst = Instance(store, Module(engine, WAT))
    before = rss_bytes()
    t0 = time.monotonic()
    try:
        pages = inst.exports["bomb"]()
    except pw.Trap as e:  # wasmer in its worker may abort at the limit: a MEMORY_LIMIT trap
        assert e.code is pw.TrapCode.MEMORY_LIMIT
        pages = None
    report_time(backend_name, "core memory bomb", time.monotonic() - t0)
    if pages is not None:
        slack = 0 if engine.capabilities.exact_memory_limit else (16 << 20) // PAGE + 256
        assert (1 << 30) // PAGE - 256 < pages <= (1 << 30) // PAGE + slack  # grew to the cap, then -1
    # the bomb touched every page it got: in this process, at most the cap (workers hold theirs)
    assert rss_bytes() - before < (1 << 30) + (64 << 20)


def test_deep_recursion_is_a_stack_overflow_trap(engine):
    # The default stack bound is what is tested, not the default deadline: wasmer builds a trap's
    # backtrace of every frame, which on a loaded machine can take longer than the 10 s default
    # (the call would then end INTERRUPTED), so the deadline here is generous.
    inst = Instance(Store(engine, limits=StoreLimits(deadline=120.0)), Module(engine, WAT))
    with pytest.raises(pw.Trap) as e:
        inst.exports["rec"](0)
    assert e.value.code is pw.TrapCode.STACK_OVERFLOW
    assert inst.exports["rec"] is not None


def test_unlimited_means_no_limit(engine):
    store = Store(engine, limits=StoreLimits.unlimited())
    assert store.limits.deadline is None and store.limits.memory_bytes is None
    inst = Instance(store, Module(engine, WAT))
    assert inst.exports["memory"].grow(100) == 1


def test_readme_first_example(backend_name):
    engine = pw.Engine(backend_name)
    module = Module(engine, """
      (module
        (import "env" "log" (func $log (param i32 i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "hello")
        (func (export "run") (result i32) (call $log (i32.const 16) (i32.const 5)) (i32.const 42)))
    """)
    store = Store(engine, limits=StoreLimits(memory_bytes=16 << 20, deadline=0.5))
    seen = []

    def log(caller, ptr, length):
        seen.append(caller.memory.read(ptr, length))

    instance = Instance(store, module, {"env": {"log": Func(store, FuncType([ValType.I32] * 2, []), log,
                                                            access_caller=True)}})
    assert instance.exports["run"]() == 42
    assert seen == [b"hello"]
