"""V8 next to wasmtime in one process, V8 stores across threads, and V8 deadlines.

Both runtimes catch out-of-bounds accesses with SIGSEGV handlers; V8's is our
chaining handler in proxywasm_vm/backends/v8/_shim.cpp. The mixed-trap tests run in child
processes, in both orders of engine creation, so a broken handler chain fails
one test instead of killing the run.
"""

from __future__ import annotations

import threading
import time

import pytest

import proxywasm_vm as pw
from proxywasm_vm import FuncType, StoreLimits, TrapCode, ValType

from _helpers import HANG_GUARD, TRAP_ROUNDS, TRAP_WAT, load_backend, run_python


I32 = ValType.I32

TRAPS = TRAP_WAT


@pytest.fixture(scope="module")
def v8() -> pw.Engine:
    load_backend("v8")
    return pw.Engine("v8")


def _instance(engine: pw.Engine, store: pw.Store | None = None) -> pw.Instance:
    store = store or pw.Store(engine)
    host = pw.Func(store, FuncType([I32], [I32]), lambda x: x + 1)
    return pw.Instance(store, pw.Module(engine, pw.wat2wasm(TRAPS)), {"env": {"host": host}})


ALTERNATE = """
order = {order!r}
insts = {{name: trap_instance(pw.Engine(name)) for name in order}}
n = rounds(insts, order, 0, {rounds})
# A fault outside any wasm still reaches the default action: not tested here (it kills).
print("traps", n)
print("ok")
"""


@pytest.mark.parametrize("order", [("v8", "wasmtime"), ("wasmtime", "v8")], ids=["v8-first", "wasmtime-first"])
def test_v8_and_wasmtime_trap_alternately(v8, order):
    load_backend("wasmtime")
    out = run_python(TRAP_ROUNDS + ALTERNATE.format(order=order, rounds=300))
    assert "traps 600" in out


def test_faulthandler_enabled_after_v8_keeps_traps_working(v8):
    run_python(f"""
    import faulthandler
    import proxywasm_vm as pw
    from proxywasm_vm import FuncType, TrapCode, ValType
    eng = pw.Engine("v8")
    pw.Store(eng)                 # V8 installs its chaining SIGSEGV handler here
    faulthandler.enable()         # ... and faulthandler replaces it
    store = pw.Store(eng)         # a new store puts ours back on top (chaining to faulthandler)
    host = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), lambda x: x)
    ex = pw.Instance(store, pw.Module(eng, pw.wat2wasm({TRAPS!r})), {{"env": {{"host": host}}}}).exports
    for _ in range(50):
        try:
            ex["oob"]()
        except pw.Trap as e:
            assert e.code is TrapCode.MEMORY_OUT_OF_BOUNDS
    print("ok")
    """)


def test_stores_in_two_threads(v8):
    """Each thread its own store, plus one store handed back and forth between the threads."""
    shared = _instance(v8)
    shared_lock = threading.Lock()
    errors: list[BaseException] = []
    depths: dict[str, list[int]] = {"a": [], "b": []}

    def depth_of(ex: pw.Exports) -> int:
        # how deep recursion gets before STACK_OVERFLOW: the stack limit is right on this thread
        for n in (100, 1000, 10000, 100000):
            try:
                ex["recurse"](0)
            except pw.Trap as e:
                assert e.code is TrapCode.STACK_OVERFLOW
                return n
        raise AssertionError("no stack overflow")

    def run(tag: str) -> None:
        try:
            own = _instance(v8).exports
            for i in range(300):
                assert own["ok"](i) == i + 1
                with pytest.raises(pw.Trap) as e:
                    own[("oob", "unreachable")[i % 2]]()
                assert e.value.code in (TrapCode.MEMORY_OUT_OF_BOUNDS, TrapCode.UNREACHABLE)
                with shared_lock:
                    ex = shared.exports
                    assert ex["ok"](i) == i + 1
                    if i % 50 == 0:
                        depths[tag].append(depth_of(ex))
                    ex["memory"].write(4 * (i % 100), i.to_bytes(4, "little"))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert depths["a"] and depths["b"]


SHARED_STORE_TRAPS = """
import threading
import proxywasm_vm as pw
from proxywasm_vm import FuncType, TrapCode, ValType
eng = pw.Engine("v8")
store = pw.Store(eng)  # made here, in the main thread
host = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), lambda x: x + 1)
ex = pw.Instance(store, pw.Module(eng, pw.wat2wasm({wat!r})), {{"env": {{"host": host}}}}).exports
lock = threading.Lock()
errors = []
cases = [("oob", (), TrapCode.MEMORY_OUT_OF_BOUNDS), ("unreachable", (), TrapCode.UNREACHABLE),
         ("recurse", (0,), TrapCode.STACK_OVERFLOW)]

def run(k):
    for i in range(60):
        export, args, code = cases[(i + k) % 3]
        with lock:  # the shared store, one thread at a time
            try:
                ex[export](*args)
            except pw.Trap as e:
                assert e.code is code, (k, export, e)
            else:
                errors.append(f"{{k}} {{export}} did not trap")
            assert ex["ok"](i) == i + 1
            ex["memory"].write(4 * k, i.to_bytes(4, "little"))

threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
run(3)  # and the creating thread, at the same time
for t in threads:
    t.join(120)
assert not errors, errors
assert int.from_bytes(ex["memory"].read(12, 4), "little") == 59
print("ok")
"""


def test_a_store_handed_between_threads_still_traps_cleanly(v8):
    """Out-of-bounds traps in a store made by another thread (signal-based traps): V8's handler
    must see the faulting thread as in wasm, or the fault would kill the process."""
    run_python(SHARED_STORE_TRAPS.format(wat=TRAPS))


def test_deadline_interrupts_a_runaway_loop(v8):
    store = pw.Store(v8, limits=StoreLimits(deadline=0.2))
    ex = _instance(v8, store).exports
    for export in ("spin", "spin_host"):
        t0 = time.monotonic()
        with pytest.raises(pw.Trap) as e:
            ex[export]()
        took = time.monotonic() - t0
        assert e.value.code is TrapCode.INTERRUPTED
        assert 0.15 < took < HANG_GUARD, took
        assert ex["ok"](41) == 42  # the store is usable right after
    # a deadline is per call: many short calls never trip it
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        assert ex["ok"](1) == 2


def test_deadline_in_one_thread_leaves_the_other_alone(v8):
    # Each store made by the thread that uses it (stores made by different threads have
    # different isolates): they run at the same time, and one's deadline stops only its call.
    fast = _instance(v8).exports
    result: dict[str, object] = {}
    ready = threading.Event()

    def spin() -> None:
        slow = _instance(v8, pw.Store(v8, limits=StoreLimits(deadline=0.3))).exports
        ready.set()
        try:
            slow["spin"]()
        except pw.Trap as e:
            result["code"] = e.code

    t = threading.Thread(target=spin)
    t.start()
    assert ready.wait(HANG_GUARD)
    calls = 0
    while t.is_alive():
        assert fast["ok"](calls) == calls + 1
        calls += 1
    t.join()
    assert result.get("code") is TrapCode.INTERRUPTED and calls > 100


def test_deadline_of_a_store_of_the_same_thread_used_elsewhere(v8):
    # Both stores made by this thread (they share its isolate): while the other thread's call
    # spins, this thread's calls wait their turn; the deadline stops the spinning call only.
    slow = _instance(v8, pw.Store(v8, limits=StoreLimits(deadline=0.3))).exports
    fast = _instance(v8).exports
    result: dict[str, object] = {}
    started = threading.Event()

    def spin() -> None:
        started.set()
        try:
            slow["spin"]()
        except pw.Trap as e:
            result["code"] = e.code

    t = threading.Thread(target=spin)
    t.start()
    assert started.wait(HANG_GUARD)
    calls = 0
    while t.is_alive() or calls < 10:
        assert fast["ok"](calls) == calls + 1
        calls += 1
    t.join()
    assert result.get("code") is TrapCode.INTERRUPTED
    assert slow["ok"](1) == 2


def test_interrupt_from_another_thread(v8):
    store = pw.Store(v8)
    ex = _instance(v8, store).exports
    timer = threading.Timer(0.2, store.interrupt)
    timer.start()
    with pytest.raises(pw.Trap) as e:
        ex["spin"]()
    timer.join()
    assert e.value.code is TrapCode.INTERRUPTED
    assert ex["ok"](1) == 2
    assert store.interrupt() is False  # nothing running: no effect on the next call
    assert ex["ok"](2) == 3
