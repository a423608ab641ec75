"""Stores in different Python threads run at the same time, each with its own state."""

from __future__ import annotations

import threading

import pytest

import proxywasm_vm as pw
from proxywasm_vm import FuncType, TrapCode, ValType

I32 = ValType.I32

pytestmark = pytest.mark.capability("threads")

#: Waits inside wasm until the host says the other thread is inside wasm too (or gives up).
RENDEZVOUS = """
(module
  (import "env" "arrived" (func $arrived))
  (import "env" "peer_here" (func $peer_here (result i32)))
  (memory (export "memory") 1)
  (func (export "meet") (param $tries i32) (result i32)
    call $arrived
    (block $met
      (loop $wait
        (br_if $met (call $peer_here))
        (local.set $tries (i32.sub (local.get $tries) (i32.const 1)))
        (br_if $wait (i32.gt_s (local.get $tries) (i32.const 0)))))
    call $peer_here)
  (func (export "work") (param $n i32) (result i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
    local.get $acc)
)
"""


def _expected_work(n: int) -> int:
    acc = 0
    while True:
        acc = (acc * 31 + n) & 0xFFFFFFFF
        n -= 1
        if n <= 0:
            break
    return acc - (1 << 32) if acc >= 1 << 31 else acc


@pytest.mark.capability("concurrent_stores")
def test_two_stores_run_concurrently_in_two_threads(engine, wat_module):
    module = wat_module(RENDEZVOUS)
    inside = [threading.Event(), threading.Event()]
    results: list = [None, None]
    errors: list = []

    def run(me: int) -> None:
        try:
            store = pw.Store(engine)
            imports = {"env": {
                "arrived": pw.Func(store, FuncType(), lambda: inside[me].set()),
                "peer_here": pw.Func(store, FuncType([], [I32]), lambda: int(inside[1 - me].is_set())),
            }}
            inst = pw.Instance(store, module, imports)
            # Both calls must be inside wasm at the same moment for either to see the other.
            results[me] = inst.exports["meet"](2_000_000)
            assert inst.exports["work"](10_000) == _expected_work(10_000)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert results == [1, 1]


def test_threads_each_with_their_own_store_and_traps(engine, wat_module):
    module = wat_module(RENDEZVOUS)
    trap_mod = wat_module('(module (func (export "boom") unreachable) (func (export "ok") (result i32) i32.const 9))')
    errors: list = []
    barrier = threading.Barrier(4)

    def run(seed: int) -> None:
        try:
            store = pw.Store(engine)
            imports = {"env": {"arrived": pw.Func(store, FuncType(), lambda: None),
                               "peer_here": pw.Func(store, FuncType([], [I32]), lambda: 1)}}
            inst = pw.Instance(store, module, imports)
            traps = pw.Instance(store, trap_mod)
            mem = inst.exports["memory"]
            barrier.wait(timeout=30)
            for i in range(200):
                mem.write_u32(4 * i, seed * 1000 + i)
                assert inst.exports["work"](50 + seed) == _expected_work(50 + seed)
                if i % 20 == 0:
                    with pytest.raises(pw.Trap) as e:
                        traps.exports["boom"]()
                    assert e.value.code is TrapCode.UNREACHABLE
                    assert traps.exports["ok"]() == 9
            assert [mem.read_u32(4 * i) for i in range(200)] == [seed * 1000 + i for i in range(200)]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


@pytest.mark.capability("concurrent_stores")
def test_host_exception_stays_in_its_thread(engine, wat_module):
    module = wat_module(RENDEZVOUS)
    caught: dict = {}
    barrier = threading.Barrier(2)

    def run(me: int) -> None:
        err = RuntimeError(f"thread {me}")
        store = pw.Store(engine)

        def arrived():
            barrier.wait(timeout=30)
            if me == 0:
                raise err

        inst = pw.Instance(store, module, {"env": {"arrived": pw.Func(store, FuncType(), arrived),
                                                   "peer_here": pw.Func(store, FuncType([], [I32]), lambda: 1)}})
        try:
            caught[me] = inst.exports["meet"](1)
        except RuntimeError as e:
            caught[me] = e if e is err else ("wrong exception", e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert isinstance(caught[0], RuntimeError) and str(caught[0]) == "thread 0"
    assert caught[1] == 1


CALLS_HOST = """
(module
  (import "env" "h" (func $h))
  (func (export "f") call $h))
"""


def test_a_host_function_waiting_for_another_threads_call_does_not_hang(engine, wat_module, capabilities):
    # A host function of store A waits for another thread's call into store B, both stores made
    # by this thread. The call into B either runs (the stores run at the same time), or gives up
    # at B's deadline with a Trap where it must wait for A's call to end: in-process V8, whose
    # stores share their thread's isolate, and a worker that runs one call at a time
    # (wasmer, wasm3), which is killed then, taking A's call with it. Never a deadlock.
    b = pw.Store(engine, limits=pw.StoreLimits(deadline=1.0))
    work = pw.Instance(b, wat_module(RENDEZVOUS), {"env": {
        "arrived": pw.Func(b, FuncType(), lambda: None),
        "peer_here": pw.Func(b, FuncType([], [I32]), lambda: 1)}}).exports["work"]
    outcome: list = []

    def call_b() -> None:
        try:
            outcome.append(work(1000))
        except BaseException as e:  # noqa: BLE001 - checked below
            outcome.append(e)

    def h() -> None:
        t = threading.Thread(target=call_b, daemon=True)
        t.start()
        t.join(timeout=30)
        assert not t.is_alive(), "the call into store B hung"

    a = pw.Store(engine)
    f = pw.Instance(a, wat_module(CALLS_HOST), {"env": {"h": pw.Func(a, FuncType(), h)}}).exports["f"]
    try:
        f()
        lost = False
    except pw.WorkerCrashed:
        assert not capabilities.concurrent_stores  # (the killed worker: see above)
        lost = True
    assert len(outcome) == 1
    got = outcome[0]
    if isinstance(got, pw.Trap):
        assert got.code is TrapCode.INTERRUPTED, got
    else:
        assert got == _expected_work(1000) and not lost, got
    if not lost:
        assert work(1000) == _expected_work(1000)  # B runs once A's call is over
