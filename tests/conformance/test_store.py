"""Stores: data, limits, close, and objects of a closed store failing cleanly."""

from __future__ import annotations

import threading
import time

import pytest

import proxywasm_vm as pw
from proxywasm_vm import FuncType, ValType

from _helpers import HANG_GUARD

from ._support import run_child

MOD = """
(module
  (import "env" "h" (func $h (result i32)))
  (memory (export "memory") 1)
  (table (export "table") 1 funcref)
  (global (export "g") (mut i32) (i32.const 1))
  (func (export "f") (result i32) i32.const 1)
  (func (export "fd") (param f64) (result f64) local.get 0)
  (func (export "call_h") (result i32) call $h)
)
"""


def _instance(engine, wat_module, store, h=lambda: 1):
    return pw.Instance(store, wat_module(MOD), {"env": {"h": pw.Func(store, FuncType([], [ValType.I32]), h)}})


def test_store_data_reaches_host_functions(engine, wat_module):
    payload = {"plugin": "x"}
    store = pw.Store(engine, data=payload)
    assert store.data is payload and store.engine is engine
    seen = []
    f = pw.Func(store, FuncType([], [ValType.I32]), lambda c: seen.append(c.store.data) or 5, access_caller=True)
    inst = pw.Instance(store, wat_module(MOD), {"env": {"h": f}})
    assert inst.exports["call_h"]() == 5 and seen == [payload]
    assert store.limits == pw.StoreLimits()


CLOSED_STORE = """
store = pw.Store(engine)
module = pw.Module(engine, pw.wat2wasm(sys.argv[2]))
f = pw.Func(store, FuncType([], [ValType.I32]), lambda: 1)
inst = pw.Instance(store, module, {"env": {"h": f}})
ex = inst.exports
fi, fd, mem, g, t = ex["f"], ex["fd"], ex["memory"], ex["g"], ex["table"]
assert fi() == 1
store.close()
actions = {
    "call i32": fi, "call f64": lambda: fd(1.0), "call host": lambda: ex["call_h"](), "host directly": f,
    "read": lambda: mem.read(0, 4), "write": lambda: mem.write(0, b"x"), "size": lambda: mem.size,
    "data_size": lambda: mem.data_size, "grow": lambda: mem.grow(1), "read_u32": lambda: mem.read_u32(0),
    "global get": lambda: g.value, "global set": lambda: g.set(2), "table size": lambda: t.size,
    "table get": lambda: t.get(0), "instantiate": lambda: pw.Instance(store, module, {"env": {"h": f}}),
    "new func": lambda: pw.Func(store, FuncType(), lambda: None),
    "new memory": lambda: pw.Memory(store, pw.MemoryType(pw.Limits(1))),
}
for name, action in actions.items():
    try:
        action()
    except pw.WasmError:
        continue
    raise AssertionError(f"{name} on a closed store did not raise WasmError")
store.close()  # closing twice is harmless
other = pw.Store(engine)
h = pw.Func(other, FuncType([], [ValType.I32]), lambda: 1)
assert pw.Instance(other, module, {"env": {"h": h}}).exports["f"]() == 1
print("ok")
"""

CLOSE_INSIDE_CALL = """
store = pw.Store(engine)
errors = []

def h():
    try:
        store.close()
    except pw.WasmError as e:
        errors.append(e)
    return 7

inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(sys.argv[2])),
                   {"env": {"h": pw.Func(store, FuncType([], [ValType.I32]), h)}})
assert inst.exports["call_h"]() == 7
assert len(errors) == 1, "close() inside a call into the store must raise WasmError"
assert inst.exports["f"]() == 1  # still open
store.close()
try:
    inst.exports["f"]()
except pw.WasmError:
    print("ok")
"""


# In child processes: a backend that crashes on this misuse fails the test, not the whole run.
def test_objects_of_a_closed_store_raise_instead_of_crashing(backend_name):
    run_child(backend_name, CLOSED_STORE, MOD)


def test_close_from_inside_a_call_is_refused(backend_name):
    run_child(backend_name, CLOSE_INSIDE_CALL, MOD)


# A store, its instance and an object whose __del__ calls into them, in one reference cycle
# (what a Proxy-Wasm Plugin dropped without close() is: its __del__ ends its root contexts).
# The collector runs every finalizer of a cycle before tearing it down, in no set order: the
# store must still be there for the __del__, whatever ran first. Several finalizers per cycle
# and many cycles, so a lucky order does not hide a use-after-free. Host functions without a
# Caller work there, and their exceptions still reach the call; one that takes a Caller gets a
# WasmError saying why (see proxywasm_vm._lifetime), never a crash or a made-up result.
FINALIZER_IN_A_CYCLE = """
import gc
results = []

class Owner:
    def __init__(self, store, inst, linker):
        self.store, self.inst, self.linker = store, inst, linker
        store.data = self  # the cycle: store -> owner -> store

    def __del__(self):
        out = []
        for name in ("call_h", "call_raise", "call_caller"):
            try:
                out.append(self.inst.exports[name]())
            except Exception as e:  # noqa: BLE001 - compared below
                out.append(type(e).__name__ + ": " + str(e)[:35])
        out.append(self.inst.exports["memory"].read(0, 1))
        # a new instance through the cycle's linker (wasmtime caches a pre-instantiation there)
        out.append(self.linker.instantiate(self.store, module).exports["call_h"]())
        results.append(out)

def boom():
    raise KeyError("from the host")

module = pw.Module(engine, pw.wat2wasm(sys.argv[2]))
gc.disable()
for i in range(20):
    store = pw.Store(engine)
    i32 = FuncType([], [ValType.I32])
    linker = pw.Linker(engine)
    linker.define_func("env", "h", i32, lambda i=i: i)
    linker.define_func("env", "boom", i32, boom)
    linker.define_func("env", "hc", i32, lambda caller: caller.memory.read(0, 1)[0], access_caller=True)
    inst = linker.instantiate(store, module)
    owners = [Owner(store, inst, linker) for _ in range(3)]
    owners[0].others = owners  # one cycle holding all three
    del store, inst, owners, linker
gc.collect()
caller_error = "WasmError: a host function that takes a Caller"[:46]
want = [[i, "KeyError: 'from the host'", caller_error, b"\\x00", i] for i in range(20) for _ in range(3)]
assert results == want, results[:3]
print("ok")
"""


def test_a_finalizer_in_a_reference_cycle_may_still_call_into_its_store(backend_name):
    run_child(backend_name, FINALIZER_IN_A_CYCLE, CYCLE_MOD)


CYCLE_MOD = """
(module
  (import "env" "h" (func $h (result i32)))
  (import "env" "boom" (func $boom (result i32)))
  (import "env" "hc" (func $hc (result i32)))
  (memory (export "memory") 1)
  (func (export "call_h") (result i32) call $h)
  (func (export "call_raise") (result i32) call $boom)
  (func (export "call_caller") (result i32) call $hc)
)
"""


def test_many_short_lived_stores(engine, wat_module):
    for i in range(200):
        store = pw.Store(engine)
        inst = _instance(engine, wat_module, store, lambda i=i: i)
        assert inst.exports["call_h"]() == i
        if i % 2:
            store.close()


# A host function of one store calling into another store of the same engine and thread (on V8
# they share an isolate: each keeps its own stack limit, deadline, traps and close).
NEST = """
(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "call_h") (param i32) (result i32) (call $h (local.get 0)))
  (func (export "call_h_then_spin") (param i32) (result i32)
    (drop (call $h (local.get 0)))
    (loop br 0)
    i32.const 0)
  (func $rec (export "rec") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $rec (i32.sub (local.get 0) (i32.const 1)))))))
  (func (export "oob") (result i32) (i32.load (i32.const 0x7ffffff0)))
)
"""


def _nest_instance(store, wat_module, h):
    f = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), h)
    return pw.Instance(store, wat_module(NEST), {"env": {"h": f}}).exports


def test_a_host_function_may_call_into_another_store(engine, wat_module):
    inner_store = pw.Store(engine)
    inner = _nest_instance(inner_store, wat_module, lambda x: x * 2)
    seen = []

    def outer_h(x):
        for name, args in (("oob", ()), ("rec", (10**7,))):  # traps in the inner store stay there
            try:
                inner[name](*args)
            except pw.Trap as e:
                seen.append(e.code)
        return inner["call_h"](x) + inner["rec"](1000) + inner["memory"].read(0, 1)[0]

    outer_store = pw.Store(engine)
    outer = _nest_instance(outer_store, wat_module, outer_h)
    for x in (5, 6):
        assert outer["call_h"](x) == 2 * x + 1000
        assert outer["rec"](100) == 100
    assert seen == [pw.TrapCode.MEMORY_OUT_OF_BOUNDS, pw.TrapCode.STACK_OVERFLOW] * 2
    assert inner["call_h"](3) == 6 and outer["rec"](1000) == 1000


def test_a_store_closed_from_a_call_into_another_store(engine, wat_module):
    inner_store = pw.Store(engine)
    inner = _nest_instance(inner_store, wat_module, lambda x: x)
    keep = pw.Store(engine)  # a third store, untouched
    kept = _nest_instance(keep, wat_module, lambda x: -x)
    errors = []

    def outer_h(x):
        inner_store.close()
        try:
            inner["call_h"](1)
        except pw.WasmError as e:
            errors.append(e)
        return x + 1

    outer = _nest_instance(pw.Store(engine), wat_module, outer_h)
    assert outer["call_h"](41) == 42
    assert len(errors) == 1 and not isinstance(errors[0], pw.Trap)
    assert outer["call_h"](1) == 2 and kept["call_h"](5) == -5


@pytest.mark.capability("deadline", "interrupt_keeps_store")
def test_a_deadline_waits_for_the_call_into_another_store_it_made(engine, wat_module):
    # The outer call's deadline passes while its host function is in a call into another
    # store: that call (with no deadline of its own passing) completes, and the outer call is
    # interrupted once it runs wasm again.
    inner_store = pw.Store(engine)
    inner = _nest_instance(inner_store, wat_module, lambda x: time.sleep(0.3) or x * 3)
    got = []
    outer_store = pw.Store(engine, limits=pw.StoreLimits(deadline=0.05))
    outer = _nest_instance(outer_store, wat_module, lambda x: got.append(inner["call_h"](x)) or 0)
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as e:
        outer["call_h_then_spin"](7)
    assert e.value.code is pw.TrapCode.INTERRUPTED
    assert time.monotonic() - t0 < HANG_GUARD
    assert got == [21]
    assert inner["call_h"](2) == 6 and outer["call_h"](1) == 0  # both stores go on


@pytest.mark.capability("deadline", "interrupt_keeps_store")
def test_the_inner_deadline_interrupts_only_the_inner_call(engine, wat_module):
    inner_store = pw.Store(engine, limits=pw.StoreLimits(deadline=0.05))
    inner = _nest_instance(inner_store, wat_module, lambda x: x)
    codes = []

    def outer_h(x):
        try:
            inner["call_h_then_spin"](x)
        except pw.Trap as e:
            codes.append(e.code)
        return x + 1

    outer = _nest_instance(pw.Store(engine), wat_module, outer_h)
    assert outer["call_h"](1) == 2
    assert codes == [pw.TrapCode.INTERRUPTED]
    assert outer["rec"](50) == 50 and inner["call_h"](4) == 4


@pytest.mark.capability("threads")
def test_stores_of_one_thread_called_from_two_threads(engine, wat_module):
    # Both stores are made by this thread (on V8 they share its isolate); one is then used by
    # another thread while this one uses the other: both run right, traps included.
    stores = [pw.Store(engine), pw.Store(engine)]
    exports = [_nest_instance(s, wat_module, lambda x, i=i: x + i) for i, s in enumerate(stores)]
    errors: list = []

    def work(i: int) -> None:
        try:
            for k in range(200):
                assert exports[i]["call_h"](k) == k + i
                assert exports[i]["rec"](k) == k
                if k % 50 == 0:
                    with pytest.raises(pw.Trap) as e:
                        exports[i]["oob"]()
                    assert e.value.code is pw.TrapCode.MEMORY_OUT_OF_BOUNDS
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=work, args=(1,))
    t.start()
    work(0)
    t.join(timeout=HANG_GUARD)
    assert not t.is_alive() and not errors, errors
    stores[1].close()
    assert exports[0]["call_h"](1) == 1


# What the churn tests below share (child code): how much resident memory the process, or the
# engine's worker, grew over ``run(n)`` after a warm-up ``run(warm)``.
GROWTH = """
import gc
from proxywasm_vm._workloads import rss_bytes

def rss_growth(run, warm, n):
    run(warm)
    gc.collect()
    before = rss_bytes(engine.worker_pid)
    run(n)
    gc.collect()
    return rss_bytes(engine.worker_pid) - before
"""

# Stores made and closed over and over (a plugin reloaded, a VM per request) give their memory
# back: on V8 they share their thread's isolate, and a closed store's objects are its garbage.
CHURN = GROWTH + """
module = pw.Module(engine, pw.wat2wasm(sys.argv[2]))
linker = pw.Linker(engine)
linker.define_func("env", "h", FuncType([ValType.I32], [ValType.I32]), lambda x: x)
keep = pw.Store(engine)  # a store that stays open all along (V8: keeps the isolate)
kept = linker.instantiate(keep, module)
chunk = bytes(range(256)) * 256  # 64 KiB
ty = FuncType([ValType.I32], [ValType.I32])

def cycles(n):
    for i in range(n):
        store = pw.Store(engine)
        # host functions: on V8 each leaves ~1 KiB in the old generation, which V8 alone
        # collects late when little runs in between (without a collection on close, these
        # grew the process by ~150 MiB; with it by ~8)
        funcs = [pw.Func(store, ty, abs) for _ in range(40)]
        if i % 10 == 0:
            inst = linker.instantiate(store, module)
            inst.exports["memory"].write(0, chunk)
            assert inst.exports["call_h"](i) == i
            del inst
        if i % 2:
            store.close()
        del store, funcs

grown = rss_growth(cycles, 300, int(sys.argv[3]))
assert grown < 48 << 20, f"RSS grew by {grown >> 20} MiB over {sys.argv[3]} stores"
assert kept.exports["call_h"](7) == 7
print("ok")
"""

CHURN_MOD = """
(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "call_h") (param i32) (result i32) (call $h (local.get 0)))
)
"""


def test_closed_stores_give_their_memory_back(backend_name):
    # In a worker process (wasmer, wasm3, *@process) too: the worker's RSS is measured there.
    run_child(backend_name, CHURN, CHURN_MOD, "4000", timeout=300)


# A VM per request, as the Proxy-Wasm host makes one: a linker, a host function that takes its
# Caller, an instance whose memory grew to 1 MiB and was written, then the store closed. Nothing of
# it may stay behind, here or in a worker (wasmer-python keeps what a host function holds forever:
# given the host function itself, that pinned the store with its instance and memory; the worker
# also kept every linker made through it).
VM_CHURN = GROWTH + """
module = pw.Module(engine, pw.wat2wasm(sys.argv[2]))
chunk = bytes(range(256)) * 4096  # 1 MiB

def vms(n):
    for i in range(n):
        store = pw.Store(engine)
        linker = pw.Linker(engine)
        linker.define_func("env", "h", FuncType([ValType.I32], [ValType.I32]),
                           lambda caller, x: x + len(caller.get_export("memory").read(0, 4)), access_caller=True)
        inst = linker.instantiate(store, module)
        mem = inst.exports["memory"]
        mem.grow(15)
        mem.write(0, chunk)
        assert inst.exports["call_h"](i) == i + 4
        store.close()
        del store, linker, inst, mem

grown = rss_growth(vms, 50, int(sys.argv[3]))
assert grown < 64 << 20, f"RSS grew by {grown >> 20} MiB over {sys.argv[3]} VMs of 1 MiB"
print("ok")
"""


def test_a_vm_per_request_leaves_nothing_behind(backend_name):
    run_child(backend_name, VM_CHURN, CHURN_MOD, "600", timeout=300)


# Linkers made and dropped (a plugin loaded per tenant, say): under a worker each has a twin there,
# which goes with it.
LINKER_CHURN = GROWTH + """
module = pw.Module(engine, pw.wat2wasm(sys.argv[2]))
ty = FuncType([ValType.I32], [ValType.I32])

def linkers(n):
    for i in range(n):
        store = pw.Store(engine)
        linker = pw.Linker(engine)
        for k in range(40):
            linker.define_func("env", "h" if k == 0 else f"unused{k}", ty, lambda x: x + 1)
        assert linker.instantiate(store, module).exports["call_h"](i) == i + 1
        store.close()
        del linker, store

grown = rss_growth(linkers, 50, int(sys.argv[3]))
assert grown < 24 << 20, f"RSS grew by {grown >> 20} MiB over {sys.argv[3]} linkers"
print("ok")
"""


def test_dropped_linkers_leave_nothing_behind(backend_name):
    run_child(backend_name, LINKER_CHURN, CHURN_MOD, "1000", timeout=300)


# Short-lived threads, each making a store (a thread per request): on V8 each thread's isolate
# outlives its stores for the thread's next one, and goes once the thread ended.
THREAD_CHURN = GROWTH + """
import threading

module = pw.Module(engine, pw.wat2wasm(sys.argv[2]))

def one(i):
    store = pw.Store(engine)
    f = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), lambda x: x + 1)
    assert pw.Instance(store, module, {"env": {"h": f}}).exports["call_h"](i) == i + 1
    if i % 2:
        store.close()

def threads(n):
    for i in range(n):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        t.join()

grown = rss_growth(threads, 30, int(sys.argv[3]))
assert grown < 48 << 20, f"RSS grew by {grown >> 20} MiB over {sys.argv[3]} threads"
print("ok")
"""


def test_stores_of_ended_threads_give_their_memory_back(backend_name):
    run_child(backend_name, THREAD_CHURN, CHURN_MOD, "300", timeout=300)
