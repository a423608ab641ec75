"""Many threads driving one worker at once: every answer reaches the thread that asked for it.

Threads share one engine (and so one worker): plain calls (each thread on a store of its own,
with a host function, so a call crosses back to this process in the middle) and Proxy-Wasm
streams of one plugin whose host runs in the worker (the remote-object lanes, all served by
one worker thread). Each request carries a value of its own thread and round, and its answer
must carry it back: a lost, crossed or duplicated reply shows as a wrong value or a hang. Then
the worker is SIGKILLed while the threads run: each sees a clear failure (WorkerCrashed, or the
plugin's failure policy), and the next requests are served by a new worker. No timing is
asserted; the guards are did-not-hang bounds only.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

import pytest
from _helpers import load_backend, run_threads, wait_exited
from proxywasm.conftest import REQUEST, plugin_path

import proxywasm_vm as pw

WORKER_BACKENDS = ["wasmtime@process", "v8@process", "wasmer"]
THREADS = 8
GUARD = 120.0  # did-not-hang bound of a whole run

CALL_WAT = """
(module
  (import "host" "twice" (func $twice (param i32) (result i32)))
  (func (export "f") (param i32 i32) (result i32)
    (i32.add (call $twice (local.get 0)) (local.get 1))))
"""


def _caller(engine: pw.Engine, module: pw.Module) -> Callable[[int, int], int]:
    """``f(a, b) = twice(a) + b`` on a store of its own; ``twice`` runs in this process."""
    store = pw.Store(engine)
    twice = pw.Func(store, pw.FuncType([pw.ValType.I32], [pw.ValType.I32]), lambda x: 2 * x)
    f = pw.Instance(store, module, [twice]).exports["f"]
    return lambda a, b: f(a, b)


@pytest.fixture(params=WORKER_BACKENDS)
def worker_engine(request: pytest.FixtureRequest) -> pw.Engine:
    load_backend(request.param)
    return pw.Engine(request.param)


def test_threads_calling_one_worker_get_their_own_answers(worker_engine):
    module = pw.Module(worker_engine, pw.wat2wasm(CALL_WAT))
    rounds = 300

    def body(i: int) -> None:
        f = _caller(worker_engine, module)
        for r in range(rounds):
            got = f(i * 1000, r)
            assert got == 2 * i * 1000 + r, (i, r, got)

    assert run_threads(THREADS, body, GUARD) == []


def _plugin(host: pw.ProxyWasmHost, policy: str = "fail_closed") -> pw.Plugin:
    return pw.Plugin(pw.PluginConfig(name="all", root_id="pwvm_all", vm_id="vm_all", failure_policy=policy,
                                     reload_backoff=0.0), plugin_path("c_http_all"), host=host)


def _echo(plugin: pw.Plugin, value: str) -> tuple[Any, Any, Any]:
    """One request through the plugin, which copies ``x-pwvm-echo`` into ``x-pwvm-echoed``:
    (action, the echoed value, the local response)."""
    with plugin.http_stream() as s:
        action = s.request_headers(REQUEST + [("x-pwvm-test", "headers"), ("x-pwvm-echo", value)], True)
        echoed = s.request.headers.get("x-pwvm-echoed")
        local = s.local_response
        s.response_headers([(":status", "200")], True)
    return action, echoed, local


def test_threads_streaming_through_one_plugin_get_their_own_answers(worker_engine):
    host = pw.ProxyWasmHost(engine=worker_engine)
    plugin = _plugin(host)
    assert plugin._remote is not None  # the host runs in the worker: every event takes a remote lane
    rounds = 60

    def body(i: int) -> None:
        for r in range(rounds):
            value = f"t{i}-r{r}"
            action, echoed, local = _echo(plugin, value)
            assert (action, echoed, local) == (pw.Action.CONTINUE, value, None), (value, action, echoed, local)

    assert run_threads(THREADS, body, GUARD) == []
    host.close()


def _kill_after(pid: int, started: threading.Event, delay: float = 0.05) -> threading.Event:
    """SIGKILL ``pid`` ``delay`` s after ``started``; the event set once it has exited."""
    killed = threading.Event()

    def kill() -> None:
        started.wait(GUARD)
        time.sleep(delay)  # the threads are in the middle of their requests
        os.kill(pid, signal.SIGKILL)
        wait_exited(pid)
        killed.set()

    threading.Thread(target=kill, daemon=True).start()
    return killed


def test_worker_killed_under_calling_threads(worker_engine):
    module = pw.Module(worker_engine, pw.wat2wasm(CALL_WAT))
    pid = worker_engine.worker_pid
    started = threading.Event()
    killed = _kill_after(pid, started)
    crashed: list[int] = []

    ready = threading.Barrier(THREADS, action=started.set)  # every thread has its store

    def body(i: int) -> None:
        f = _caller(worker_engine, module)
        ready.wait()
        r = 0
        while True:  # until the worker goes under this thread
            try:
                got = f(i * 1000, r)
            except pw.WorkerCrashed as e:
                assert e.pid == pid
                crashed.append(i)
                break
            assert got == 2 * i * 1000 + r, (i, r, got)
            r += 1
        # (a request made while the worker is still exiting fails as well: wait for the end)
        assert killed.wait(GUARD)
        f = _caller(worker_engine, module)  # a new store: served by a new worker
        for r in range(20):
            assert f(i, r) == 2 * i + r

    assert run_threads(THREADS, body, GUARD) == []
    assert sorted(crashed) == list(range(THREADS))
    assert worker_engine.worker_pid != pid


def test_worker_killed_under_streaming_threads(worker_engine):
    host = pw.ProxyWasmHost(engine=worker_engine)
    plugin = _plugin(host, policy="raise")
    pid = worker_engine.worker_pid
    started = threading.Event()
    killed = _kill_after(pid, started)
    failed: list[int] = []

    def body(i: int) -> None:
        r = 0
        started.set()
        # until a request meets the dead worker (or, for a thread between two streams then, until
        # another thread's stream has already brought the new one)
        while plugin._remote.conn.pid == pid:
            value = f"t{i}-r{r}"
            try:
                action, echoed, local = _echo(plugin, value)
            except pw.PluginCrash as e:
                assert "worker" in str(e), e
                failed.append(i)
                break
            assert (action, echoed, local) == (pw.Action.CONTINUE, value, None), (value, action, echoed, local)
            r += 1
        assert killed.wait(GUARD)
        for r in range(10):  # the next streams: a new worker, the plugin loaded again there
            value = f"t{i}-after{r}"
            assert _echo(plugin, value) == (pw.Action.CONTINUE, value, None)

    assert run_threads(THREADS, body, GUARD) == []
    assert failed and len(set(failed)) == len(failed)
    assert worker_engine.worker_pid != pid
    assert plugin.stats()["vm_failed"] >= 1
    host.close()


# ---- few lanes, the GIL kept while waiting, idle waiters block ---------------------------------

def _engine_with(name: str, **options: Any) -> pw.Engine:
    load_backend(name)
    return pw.Engine(name, pw.EngineConfig(options=tuple(options.items())))


@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_many_threads_on_few_lanes_get_their_own_answers(name):
    """8 threads, one call lane and two remote-object lanes: the threads queue for lanes (a lane
    handed from one to the next), calls and streams interleaved, every answer to its own thread."""
    engine = _engine_with(name, worker_lanes=2, worker_remote_lanes=2)
    module = pw.Module(engine, pw.wat2wasm(CALL_WAT))
    host = pw.ProxyWasmHost(engine=engine)
    plugin = _plugin(host)

    def body(i: int) -> None:
        f = _caller(engine, module)
        for r in range(40):
            assert f(i * 1000, r) == 2 * i * 1000 + r, (i, r)
            value = f"t{i}-r{r}"
            assert _echo(plugin, value) == (pw.Action.CONTINUE, value, None), value

    assert run_threads(THREADS, body, GUARD) == []
    host.close()


def test_other_threads_run_while_threads_keep_the_gil_for_the_worker():
    """A waiting thread spins for its answer keeping the GIL, for a short while only, and gives
    it up at CPython's switch interval like any running thread: a thread of plain Python code
    keeps running while 8 threads drive the worker (16,000 crossings, far longer than the 5 ms
    interval)."""
    engine = _engine_with("wasmtime@process")
    module = pw.Module(engine, pw.wat2wasm(CALL_WAT))
    stop = threading.Event()
    counted = [0]
    seen: list[tuple[int, int]] = []  # the counter at each calling thread's start and end

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    def body(i: int) -> None:
        f = _caller(engine, module)
        first = counted[0]
        for r in range(2000):
            assert f(i, r) == 2 * i + r
        seen.append((first, counted[0]))

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        assert run_threads(THREADS, body, GUARD) == []
    finally:
        stop.set()
        counter.join(GUARD)
    print(f"\nthe plain thread counted {max(e for _, e in seen) - min(s for s, _ in seen):,} while the others called")
    assert max(e for _, e in seen) > min(s for s, _ in seen), "the plain Python thread did not run"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_a_thread_waiting_long_for_the_worker_blocks(name):
    """A waiting side spins some µs, then blocks: this process, waiting ~1 s for a call that
    loops in the worker (stopped by call_timeout), and the worker, idle ~1 s afterwards, each use
    a small fraction of that second. (A blocked waiter uses ~1 ms of CPU whatever the machine's
    load, so the bound, a quarter of the wait, cannot be reached by waiting that blocks; a spinning
    one would use the whole second on an idle machine. The CPU used is printed.)"""
    engine = _engine_with(name, call_timeout=1.0)
    spin = pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm(
        '(module (func (export "spin") (loop br 0)))')), []).exports["spin"]
    t0, c0 = time.monotonic(), time.process_time()
    with pytest.raises(pw.Trap) as e:
        spin()
    waited, used = time.monotonic() - t0, time.process_time() - c0
    assert e.value.code is pw.TrapCode.INTERRUPTED
    print(f"\n{name}: waited {waited:.2f} s for the worker using {used * 1e3:.1f} ms of CPU here")
    assert waited >= 0.9  # the call ran until call_timeout
    assert used < 0.25 * waited, f"the waiting thread used {used:.2f} s of CPU in {waited:.2f} s"
    f = pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm(
        '(module (func (export "f") (result i32) i32.const 7))')), []).exports["f"]
    assert f() == 7  # a new worker, now idle
    pid = engine.worker_pid
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(1.0)
    idle, used = time.monotonic() - t0, _cpu_seconds(pid) - c0
    print(f"{name}: the idle worker used {used * 1e3:.0f} ms of CPU in {idle:.2f} s")
    assert used < 0.25 * idle, f"the idle worker used {used:.2f} s of CPU in {idle:.2f} s"


def test_the_gil_keeping_steps():
    """``_chanpy``: a spin that sees a word change (or gives up after its time), a send that
    copies, publishes and wakes a sleeping peer, and the no-wait readability of a descriptor."""
    import ctypes

    from proxywasm_vm._isolation._channel import load_gil_helper

    gil = load_gil_helper()
    assert gil is not None  # CI has a compiler
    words = (ctypes.c_uint32 * 4)(5, 0, 1, 0)  # seq, peer seq, the peer's sleeping word, -
    box = ctypes.create_string_buffer(64)
    addr = ctypes.addressof(words)
    assert gil.spin(addr, 4, 1_000_000) is True  # already past 4
    t0 = time.monotonic()
    assert gil.spin(addr, 5, 2_000_000) is False  # nothing changes: gives up (after ~2 ms)
    assert time.monotonic() - t0 < GUARD
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        assert gil.readable(efd) is False
        gil.send(ctypes.addressof(box), b"hello", addr + 4, addr + 8, efd)  # the peer sleeps: woken
        assert words[1] == 1 and box.raw[:13] == (5).to_bytes(4, "little") + bytes(4) + b"hello"
        assert gil.readable(efd) is True and os.eventfd_read(efd) == 1
        words[2] = 0
        gil.send(ctypes.addressof(box), b"", addr + 4, addr + 8, efd)  # awake: no eventfd write
        assert words[1] == 2 and box.raw[:4] == bytes(4) and gil.readable(efd) is False
    finally:
        os.close(efd)
    with pytest.raises(TypeError):
        gil.send(ctypes.addressof(box), "not bytes", addr + 4, addr + 8, -1)


def test_the_gil_keeping_spin_gives_way_to_a_peer_on_its_cpu():
    """The GIL-keeping spin follows the channel's same-CPU rule (``_chan.c``): it notes its CPU
    next to its own sleeping word and gives up at once while the peer last waited on that CPU
    (the peer could not answer before the spinner lets go of it). Run in a thread pinned to one
    CPU; a spin of 60 s that did not give up would outlive the guard."""
    import ctypes

    from proxywasm_vm._isolation._channel import load_gil_helper

    gil = load_gil_helper()
    assert gil is not None
    cpu = sorted(os.sched_getaffinity(0))[0]
    # seq, my sleeping word, my cpu word, the peer's sleeping word, the peer's cpu word
    words = (ctypes.c_uint32 * 5)(7, 0, 0, 0, cpu + 1)
    addr = ctypes.addressof(words)
    got: list = []

    def spin() -> None:
        os.sched_setaffinity(0, {cpu})
        got.append(gil.spin(addr, 7, 60_000_000_000, addr + 4, addr + 12))

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    t.join(GUARD)
    assert not t.is_alive(), "the spin did not give way to the peer on its CPU"
    assert got == [False] and words[2] == cpu + 1  # gave up, and noted where it waits


def test_threads_without_the_gil_keeping_steps(monkeypatch):
    """Where ``_chanpy`` cannot be built, the channel sends and waits through the cffi helper
    (releasing the GIL): 8 threads still get their own answers."""
    from proxywasm_vm._isolation import _channel

    monkeypatch.setattr(_channel, "load_gil_helper", lambda: None)
    engine = _engine_with("wasmtime@process")
    assert engine._conn_now().lanes[0].chan._gil is None
    module = pw.Module(engine, pw.wat2wasm(CALL_WAT))
    assert engine.worker_pid is not None

    def body(i: int) -> None:
        f = _caller(engine, module)
        for r in range(200):
            assert f(i * 1000, r) == 2 * i * 1000 + r, (i, r)

    assert run_threads(THREADS, body, GUARD) == []
