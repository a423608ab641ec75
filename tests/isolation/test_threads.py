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
from _helpers import load_backend, wait_exited
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


def _run_threads(n: int, body: Callable[[int], None]) -> list[BaseException]:
    """Run ``body(i)`` in ``n`` threads started together; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            body(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(GUARD)
        assert not t.is_alive(), "a thread hung"
    return errors


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

    assert _run_threads(THREADS, body) == []


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

    assert _run_threads(THREADS, body) == []
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

    assert _run_threads(THREADS, body) == []
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

    assert _run_threads(THREADS, body) == []
    assert failed and len(set(failed)) == len(failed)
    assert worker_engine.worker_pid != pid
    assert plugin.stats()["vm_failed"] >= 1
    host.close()
