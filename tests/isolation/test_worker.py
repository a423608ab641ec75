"""Worker-process isolation: crashes, deadlines, restarts, two runtimes at once, the transport.

The backend-parametrised conformance suite runs on the worker backends through
the ordinary fixtures (``wasmtime@process`` and ``wasmer`` are registered
backend ids); this file covers what only a worker process has.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _helpers import descendants, in_ci, kill_process, run_python, stop_process, wait_exited

import proxywasm_vm as pw
from proxywasm_vm import FuncType, TrapCode, ValType

from _helpers import HANG_GUARD

I32 = ValType.I32

SPIN = """
(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "spin") (loop br 0))
  (func (export "ok") (result i32) i32.const 7)
  (func (export "callh") (param i32) (result i32) local.get 0 call $h)
  (func (export "div") (param i32) (result i32) (i32.div_u (i32.const 100) (local.get 0)))
)
"""

WORKERS = ["wasmtime@process", "wasmer@process"]  # "wasmer" is in-process on Python <= 3.10


def _engine(name: str, **options) -> pw.Engine:
    """A fresh engine (its own worker), or a skip saying how to enable the backend."""
    try:
        return pw.Engine(name, pw.EngineConfig(options=tuple(options.items())))
    except pw.BackendUnavailable as e:
        if in_ci():
            raise
        pytest.skip(" ".join(str(e).split()))


def _instance(engine: pw.Engine, h=lambda x: x + 1):
    store = pw.Store(engine)
    f = pw.Func(store, FuncType([I32], [I32]), h)
    return store, pw.Instance(store, pw.Module(engine, pw.wat2wasm(SPIN)), {"env": {"h": f}})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("name", WORKERS)
def test_sigkill_mid_call_is_a_typed_error_and_the_next_call_gets_a_new_worker(name):
    engine = _engine(name)
    store, inst = _instance(engine)
    assert inst.exports["ok"]() == 7
    pid = engine.worker_pid
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(pw.WorkerCrashed) as e:
        inst.exports["spin"]()  # never returns by itself
    elapsed = time.monotonic() - t0
    killer.join()
    assert elapsed < HANG_GUARD, f"the crash was reported after {elapsed:.2f}s"
    assert e.value.pid == pid and e.value.signal == signal.SIGKILL
    assert isinstance(e.value, pw.WasmError)
    # what lived in the dead worker raises, without hanging
    t0 = time.monotonic()
    for action in (lambda: inst.exports["ok"](), lambda: inst.exports["memory"].read(0, 1),
                   lambda: pw.Func(store, FuncType(), lambda: None)):
        with pytest.raises(pw.WorkerCrashed):
            action()
    assert time.monotonic() - t0 < HANG_GUARD
    # the engine recovers: a new worker serves the next store
    _, inst2 = _instance(engine, h=lambda x: x * 3)
    assert inst2.exports["ok"]() == 7 and inst2.exports["callh"](5) == 15
    assert engine.worker_pid != pid and engine.restarts == 1
    assert not _alive(pid)


@pytest.mark.parametrize("name", WORKERS)
def test_worker_killed_inside_a_host_call(name):
    """The worker dies while the parent runs a host function for it: the outer call fails cleanly."""
    engine = _engine(name)
    holder = {}

    def h(x):
        kill_process(engine.worker_pid)
        holder["nested"] = None
        try:
            holder["inst"].exports["ok"]()  # a nested call into the dead worker
        except pw.WorkerCrashed as e:
            holder["nested"] = e
            raise
        return x

    _store, inst = _instance(engine, h)
    holder["inst"] = inst
    with pytest.raises(pw.WorkerCrashed):
        inst.exports["callh"](1)
    assert isinstance(holder["nested"], pw.WorkerCrashed)
    assert _instance(engine)[1].exports["callh"](1) == 2


def test_runaway_loop_stopped_by_the_runtime_deadline():
    """wasmtime interrupts wasm in the worker itself: the store survives, no restart."""
    engine = _engine("wasmtime@process")
    store = pw.Store(engine, limits=pw.StoreLimits(deadline=0.05))
    inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(SPIN)),
                       {"env": {"h": pw.Func(store, FuncType([I32], [I32]), lambda x: x)}})
    pid = engine.worker_pid
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as e:
        inst.exports["spin"]()
    assert e.value.code is TrapCode.INTERRUPTED and time.monotonic() - t0 < HANG_GUARD
    assert inst.exports["ok"]() == 7 and engine.worker_pid == pid


@pytest.mark.parametrize("name", WORKERS)
def test_runaway_loop_stopped_by_call_timeout(name):
    """A call past the engine's call_timeout kills the worker: Trap(INTERRUPTED), then a new worker."""
    engine = _engine(name, call_timeout=0.3)
    _store, inst = _instance(engine)
    pid = engine.worker_pid
    assert inst.exports["callh"](1) == 2  # short calls are unaffected
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as e:
        inst.exports["spin"]()
    elapsed = time.monotonic() - t0
    assert e.value.code is TrapCode.INTERRUPTED and "call_timeout" in e.value.message
    assert 0.25 < elapsed < HANG_GUARD
    assert not _alive(pid)
    with pytest.raises(pw.WorkerCrashed):
        inst.exports["ok"]()  # its store went with the worker
    assert _instance(engine)[1].exports["ok"]() == 7 and engine.worker_pid != pid


#: Calls the host, then loops a few ms (20M iterations) before it returns the host's answer.
H_THEN_WORK = """
(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (func (export "h_then_work") (param i32) (result i32) (local $i i32)
    (local.set 0 (call $h (local.get 0)))
    (local.set $i (i32.const 20000000))
    (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
    (local.get 0)))
"""

#: Every worker backend (``wasmer`` is the default spelling of wasmer in a worker).
ALL_WORKERS = ["wasmtime@process", "v8@process", "wasmer"]


@pytest.mark.parametrize("name", ALL_WORKERS)
def test_stopped_worker_is_killed_at_the_bound_of_the_crossing(name, capsys):
    """SIGSTOP: the worker never answers. An operation gives WorkerCrashed at worker_op_timeout, a
    call into wasm Trap(INTERRUPTED) at its bound; the worker is killed and reaped each time."""
    engine = _engine(name, worker_op_timeout=1.0, call_timeout=1.0)
    _store, inst = _instance(engine)
    mem = inst.exports["memory"]
    pid = engine.worker_pid
    stop_process(pid)
    t0 = time.monotonic()
    with pytest.raises(pw.WorkerCrashed) as e:
        mem.read(0, 4)
    took_op = time.monotonic() - t0
    assert e.value.pid == pid and e.value.signal == signal.SIGKILL and "worker_op_timeout" in str(e.value)
    assert pid not in descendants()  # killed and reaped: no stopped worker, no zombie
    _store2, inst2 = _instance(engine)  # a new worker
    ok = inst2.exports["ok"]
    pid2 = engine.worker_pid
    stop_process(pid2)
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as t:
        ok()
    took_call = time.monotonic() - t0
    assert t.value.code is TrapCode.INTERRUPTED and "call_timeout" in t.value.message
    assert pid2 not in descendants()
    assert _instance(engine)[1].exports["ok"]() == 7  # new objects on the same engine work
    with capsys.disabled():
        print(f"\n  {name} stopped worker: WorkerCrashed after {took_op * 1e3:.0f} ms (op bound 1 s), "
              f"Trap after {took_call * 1e3:.0f} ms (call_timeout 1 s)")


@pytest.mark.parametrize("name", ALL_WORKERS)
def test_time_in_host_functions_does_not_count_against_the_worker(name):
    """A call's bound pauses while this process serves the worker's requests (a host function)."""
    engine = _engine(name, call_timeout=0.5)

    def slow(x):
        time.sleep(1.0)  # twice the call's bound, spent here, not in the worker
        return x + 1

    store = pw.Store(engine)
    f = pw.Func(store, FuncType([I32], [I32]), slow)
    inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(H_THEN_WORK)), {"env": {"h": f}})
    pid = engine.worker_pid
    # the worker answers some ms after the host function returns (longer than the wait's spin):
    # a bound that had kept running while the host function ran would have expired by then
    assert inst.exports["h_then_work"](1) == 2
    assert engine.worker_pid == pid and engine.restarts == 0


@pytest.mark.parametrize("name", ALL_WORKERS)
def test_worker_dead_while_idle_is_replaced_before_the_next_request(name):
    engine = _engine(name)
    _store, inst = _instance(engine)
    assert inst.exports["ok"]() == 7
    pid = engine.worker_pid
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    _store2, inst2 = _instance(engine)  # not failed: a new worker first
    assert inst2.exports["callh"](4) == 5
    assert engine.worker_pid != pid and engine.restarts == 1 and pid not in descendants()
    with pytest.raises(pw.WorkerCrashed) as e:  # what lived in the dead worker is gone, clearly
        inst.exports["ok"]()
    assert e.value.pid == pid


def test_two_runtimes_interleaved_trapping_and_calling_back():
    """wasmtime in this process and wasmtime in a worker (and wasmer when present), calls interleaved,
    each trapping and calling back into Python, nested through one another."""
    engines = {"in-process": pw.Engine("wasmtime"), "worker": _engine("wasmtime@process")}
    try:
        engines["wasmer"] = pw.Engine("wasmer")
    except pw.BackendUnavailable:
        pass
    names = list(engines)
    insts: dict = {}
    calls: list = []

    def make_host(name):
        def h(x):
            calls.append((name, x))
            if x > 0:  # call the next runtime from inside this one's host function
                nxt = names[(names.index(name) + 1) % len(names)]
                return insts[nxt].exports["callh"](x - 1) + 1
            return 1000
        return h

    for name, eng in engines.items():
        insts[name] = _instance(eng, make_host(name))[1]
    for round_ in range(20):
        for name in names:
            ex = insts[name].exports
            assert ex["div"](4) == 25
            with pytest.raises(pw.Trap) as e:
                ex["div"](0)
            assert e.value.code is TrapCode.INTEGER_DIVIDE_BY_ZERO
            calls.clear()
            depth = 2 * len(names)
            assert ex["callh"](depth) == 1000 + depth
            assert [c[0] for c in calls] == [names[(names.index(name) + i) % len(names)] for i in range(depth + 1)]
    # an exception raised deep in the chain comes out of the outer call as the same object
    boom = LookupError("deep")

    def raiser(x):
        raise boom

    store = pw.Store(engines["worker"])
    deep = pw.Instance(store, pw.Module(engines["worker"], pw.wat2wasm(SPIN)),
                       {"env": {"h": pw.Func(store, FuncType([I32], [I32]), raiser)}})
    insts_outer = _instance(engines["in-process"], lambda x: deep.exports["callh"](x))[1]
    with pytest.raises(LookupError) as e:
        insts_outer.exports["callh"](3)
    assert e.value is boom


def test_large_messages_go_in_chunks():
    engine = _engine("wasmtime@process", worker_mailbox=64 * 1024)
    store = pw.Store(engine)
    mem = pw.Memory(store, pw.MemoryType(pw.Limits(40)))
    data = os.urandom(2 * 1024 * 1024 + 12345)
    mem.write(100, data)
    assert mem.read(100, len(data)) == data
    assert mem.read_u32(100) == int.from_bytes(data[:4], "little")


def test_module_is_reloaded_from_the_compiled_cache_after_a_restart(tmp_path):
    engine = pw.Engine("wasmtime@process", pw.EngineConfig(cache_dir=tmp_path))
    funcs = "".join(f'(func (export "f{i}") (result i32) i32.const {i} i32.const 1 i32.add)' for i in range(1500))
    wasm = pw.wat2wasm(f"(module {funcs})")
    assert len(wasm) >= 16 * 1024
    module = pw.Module(engine, wasm)
    assert list(engine.cache_dir.glob("*.cwasm")), "a big module is cached for restarts"
    assert pw.Instance(pw.Store(engine), module).exports["f5"]() == 6
    pid = engine.worker_pid
    kill_process(pid)
    # the engine notices the idle worker's death when it makes the next store
    assert pw.Instance(pw.Store(engine), module).exports["f1499"]() == 1500
    assert engine.worker_pid != pid


def test_linker_survives_a_restart():
    engine = _engine("wasmtime@process")
    linker = pw.Linker(engine)
    linker.define_func("env", "h", FuncType([I32], [I32]), lambda c, x: x * 2 + (c.memory is not None),
                       access_caller=True)
    module = pw.Module(engine, pw.wat2wasm(SPIN))
    assert linker.instantiate(pw.Store(engine), module).exports["callh"](4) == 9
    engine.restart_worker()
    assert linker.instantiate(pw.Store(engine), module).exports["callh"](5) == 11


def test_isolation_selection():
    e = pw.Engine("wasmtime", isolation="process")
    assert e.name == "wasmtime@process" and isinstance(e, pw.Engine)
    assert e.backend.isolation == "process" and not e.capabilities.memory_view
    assert pw.Engine("wasmtime", isolation="in-process").backend.isolation == "in-process"
    with pytest.raises(ValueError):
        pw.Engine("wasmtime@process", isolation="in-process")
    with pytest.raises(ValueError):
        pw.Engine("wasmtime", isolation="elsewhere")
    if sys.version_info >= (3, 11):
        with pytest.raises(pw.BackendUnavailable):
            pw.Engine("wasmer", isolation="in-process")
    with pytest.raises(pw.BackendUnavailable):
        pw.Engine("wasmtime", pw.EngineConfig(options=(("worker_python", "/nonexistent/python"),)),
                  isolation="process")


def test_worker_exits_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent("""
        import os, sys, time
        import proxywasm_vm as pw
        e = pw.Engine("wasmtime@process")
        store = pw.Store(e)
        inst = pw.Instance(store, pw.Module(e, '(module (func (export "spin") (loop br 0)))'))
        print(e.worker_pid, flush=True)
        import threading
        threading.Thread(target=inst.exports["spin"], daemon=True).start()  # the worker is busy in wasm
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        time.sleep(0.3)
        assert _alive(worker)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        proc.kill()


def test_channel_without_the_compiled_helper():
    script = textwrap.dedent("""
        import logging
        import proxywasm_vm as pw
        from proxywasm_vm import FuncType, ValType
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("proxywasm_vm").addHandler(handler)
        logging.getLogger("proxywasm_vm").setLevel(logging.INFO)
        e = pw.Engine("wasmtime@process")
        assert e.worker_info["channel_helper"] is False
        # the slower path is taken with a logged reason, once
        why = [r for r in records if "eventfd only" in r.getMessage()]
        assert len(why) == 1 and "PWVM_CHANNEL_NO_HELPER" in why[0].getMessage(), [r.getMessage() for r in records]
        s = pw.Store(e)
        holder = {}
        f = pw.Func(s, FuncType([ValType.I32], [ValType.I32]), lambda x: holder["g"](x - 1) * 2 if x else 1)
        i = pw.Instance(s, pw.Module(e, '(module (import "e" "f" (func $f (param i32) (result i32)))'
                                        ' (func (export "g") (param i32) (result i32)'
                                        ' (i32.add (call $f (local.get 0)) (i32.const 1))))'), {"e": {"f": f}})
        holder["g"] = i.exports["g"]
        assert i.exports["g"](3) == 23, i.exports["g"](3)
        print("ok")
    """)
    env = {**os.environ, "PWVM_CHANNEL_NO_HELPER": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.stdout.strip().endswith("ok"), out.stderr


@pytest.mark.parametrize("compiler", ["cranelift", "singlepass", "llvm"])
def test_wasmer_compilers(compiler):
    engine = _engine("wasmer", compiler=compiler)
    _, inst = _instance(engine, h=lambda x: x * 7)
    assert inst.exports["callh"](6) == 42
    with pytest.raises(pw.Trap) as e:
        inst.exports["div"](0)
    assert e.value.code is TrapCode.INTEGER_DIVIDE_BY_ZERO


def test_wasmer_runs_under_python_310():
    engine = _engine("wasmer")
    if sys.version_info < (3, 11) and engine.backend.isolation == "in-process":
        pytest.skip("wasmer runs in-process here")
    info = engine.worker_info
    assert info["python"].startswith("3.10.") and info["version"] == "1.1.0"
    caps = engine.capabilities
    assert not (caps.fuel or caps.table_access or caps.reference_values or caps.memory_view)
    # enforced around each call by the kernel in the worker (proxywasm_vm._guard)
    assert caps.deadline and caps.memory_limit and not caps.exact_memory_limit and not caps.interrupt_keeps_store
    assert caps.serialize and caps.host_memory_access and caps.threads and not caps.concurrent_stores


def _engine_in_cycles() -> int:
    """An engine whose host functions reach it back (store, instance, linker), dropped on return."""
    engine = _engine("wasmtime@process")
    store = pw.Store(engine)
    holder: dict = {}
    f = pw.Func(store, FuncType([I32], [I32]), lambda x: holder["inst"].exports["ok"]() + x)
    holder["inst"] = pw.Instance(store, pw.Module(engine, pw.wat2wasm(SPIN)), {"env": {"h": f}})
    assert holder["inst"].exports["callh"](1) == 8
    linker = pw.Linker(engine)
    linker.define_func("env", "h", FuncType([I32], [I32]), lambda x: engine.worker_pid and x)
    return engine.worker_pid


def test_dropped_engine_stops_its_worker_even_with_cycles_through_host_functions():
    import gc

    pid = _engine_in_cycles()
    gc.collect()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid), "a dropped engine's worker kept running"


@pytest.mark.parametrize("peer_here", [False, True], ids=["peer-elsewhere", "peer-on-this-cpu"])
def test_a_waiter_does_not_spin_while_its_peer_waits_on_its_cpu(peer_here):
    """The channel's waiter spins only while its peer runs on another CPU (``_chan.c``): a peer on the
    waiter's own CPU cannot answer until the waiter lets go of it. Both sides of one lane in a fresh
    interpreter (no other thread of it spins: one spinner per process); the waiter is held on one
    CPU, the peer's CPU word says where the peer last waited, and the message comes after 50 ms: a
    waiter that spins (for up to 20 s) catches it spinning (0), one that blocks at once is woken by
    the post (4)."""
    out = run_python("""
        import os, sys, threading, time
        from proxywasm_vm._isolation._channel import Channel, close_shared, create_shared, load_helper, map_shared

        peer_here = sys.argv[1] == "1"
        helper = load_helper()
        if helper is None:
            print("no helper"); print("ok"); sys.exit(0)
        cpu = min(os.sched_getaffinity(0))
        fd, size = create_shared(1, mailbox=4096)
        mm = map_shared(fd, size)
        efds = [os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK) for _ in range(2)]
        parent = Channel("parent", mm, 0, 4096, efds[0], efds[1], -1)
        worker = Channel("worker", mm, 0, 4096, efds[1], efds[0], -1)
        # the parent's peer is the worker: its CPU word follows its sleeping word
        helper.lib.pwvm_chan_store(worker._my_sleep + 1, cpu + 1 if peer_here else 0)
        got = {}

        def wait():
            os.sched_setaffinity(0, {cpu})
            got["rc"] = helper.lib.pwvm_chan_wait(parent._in_seq, parent._last_in, parent._my_sleep,
                                                  parent._peer_sleep, parent.efd_in, -1, 20_000_000_000,
                                                  60_000_000_000)
            got["cpu"] = helper.lib.pwvm_chan_load(parent._my_sleep + 1)  # where it noted it waited

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.05)
        worker.send(b"hi")
        t.join(60)
        print(got["rc"], got["cpu"] - 1 == cpu)
        parent.close(); worker.close(); close_shared(mm)
        print("ok")
    """, "1" if peer_here else "0")
    first = out.split("\n")[0]
    if first == "no helper":
        pytest.skip("the channel's helper cannot be built here")
    assert first == ("4 True" if peer_here else "0 True"), out
