"""Fault injection into the worker of each worker backend, at the Proxy-Wasm level.

A plugin whose host runs in the worker (``_proxywasm._remote_host``) meets a worker that is
SIGKILLed or SIGSTOPped in the middle of a request (from inside the plugin's HTTP callout,
which this process serves), SIGKILLed while idle, or wedged in a loop. Each time: the stream
gets its failure policy (fail_closed: a local 503; fail_open: it goes on), the next stream is
served by a new worker with the plugin loaded again, and the process count is what it was
(the old worker reaped: no zombie, no leftover). Times from the fault to the policy are
recorded with ``report_time``, never asserted; the guards are did-not-hang bounds only.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import pytest
from _helpers import descendants, kill_process, load_backend, report_time, run_threads, stop_process, wait_exited
from proxywasm.conftest import REQUEST, plugin_path

import proxywasm_vm as pw

WORKER_BACKENDS = ["wasmtime@process", "v8@process", "wasmer"]
#: The bound of one stream event (engine option worker_event_timeout): how long a stopped or
#: wedged worker is waited for. Short here so the suite stays quick; the default is 5 s.
EVENT_TIMEOUT = 2.0
GUARD = 60.0  # did-not-hang bound of one faulty event


def _engine(name: str) -> pw.Engine:
    load_backend(name)
    return pw.Engine(name, pw.EngineConfig(options=(("worker_event_timeout", EVENT_TIMEOUT),)))


class Upstream:
    """The plugin's callout upstream: answers ``pong`` unless a test sets ``fault`` (the host's
    dispatcher is shared with the worker when the plugin loads, so it is set once, here)."""

    def __init__(self) -> None:
        self.fault = None
        self.dispatcher = pw.CallbackHttpDispatcher(self.handle, {"pwvm_upstream"})

    def handle(self, request):
        if self.fault is not None:
            fault, self.fault = self.fault, None
            fault()
        return pw.HttpCallResponse(200, {}, b"pong")


def _host(engine: pw.Engine) -> tuple[pw.ProxyWasmHost, Upstream]:
    up = Upstream()
    # a manual clock: the reload backoff after a worker failure (1 s) passes when a test says so
    return pw.ProxyWasmHost(engine=engine, http=up.dispatcher, clock=pw.ManualClock()), up


def _callout_plugin(host: pw.ProxyWasmHost, policy: str) -> pw.Plugin:
    return pw.Plugin(pw.PluginConfig(name="all", root_id="pwvm_all", vm_id="vm_all", configuration="test=callout",
                                     failure_policy=policy), plugin_path("c_http_all"), host=host)


def _served(p: pw.Plugin) -> None:
    """A whole request through the plugin's callout, answered normally."""
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.PAUSE and s.wait(GUARD)
        assert s.request.headers["x-pwvm-callout-body"] == "pong" and not s.failed


def _policy_applied(s: pw.HttpStream, action: pw.Action, policy: str) -> None:
    assert s.failed and isinstance(s.error, pw.PluginCrash)
    if policy == "fail_closed":
        assert action is pw.Action.PAUSE
        assert s.local_response is not None and s.local_response.status == 503
    else:
        assert action is pw.Action.CONTINUE and s.local_response is None
        assert s.request.headers is not None and s.request.headers[":path"] == dict(REQUEST)[":path"]


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_worker_signalled_mid_request(name, sig, policy):
    engine = _engine(name)
    host, up = _host(engine)
    p = _callout_plugin(host, policy)
    _served(p)
    gc.collect()
    pid = engine.worker_pid
    before = descendants()
    assert pid in before
    stopped_at: list[float] = []

    def fault():
        # while the worker waits in request_headers for this callout
        (kill_process if sig == "SIGKILL" else stop_process)(pid)
        stopped_at.append(time.monotonic())

    up.fault = fault
    s = p.http_stream()
    action = s.request_headers(REQUEST)
    took = time.monotonic() - stopped_at[0]
    assert took < GUARD  # did not hang
    _policy_applied(s, action, policy)
    cause = s.error.cause
    if sig == "SIGKILL":
        assert isinstance(cause, pw.WorkerCrashed), cause
    else:  # a stopped worker does not answer: killed at the event's bound
        assert isinstance(cause, pw.Trap) and cause.code is pw.TrapCode.INTERRUPTED, cause
    s.close()
    assert pid not in descendants()  # killed and reaped
    host.advance(1.0)  # the reload backoff
    _served(p)  # the next stream: a new worker with the plugin loaded again
    after = descendants()
    assert engine.worker_pid != pid and len(after) == len(before), (before, after)
    report_time(name, f"{sig} mid-request -> {policy}", took)
    p.close()
    engine.close()


@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_worker_killed_while_idle_is_replaced_before_the_next_stream(name):
    engine = _engine(name)
    host, up = _host(engine)
    p = _callout_plugin(host, "fail_closed")
    _served(p)
    gc.collect()
    pid = engine.worker_pid
    before = descendants()
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    t0 = time.monotonic()
    _served(p)  # not failed: the dead worker is noticed and replaced first
    took = time.monotonic() - t0
    after = descendants()
    assert pid not in after and engine.worker_pid != pid and len(after) == len(before), (before, after)
    report_time(name, "SIGKILL idle -> next served", took)
    p.close()
    engine.close()


@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_threads_meeting_a_dead_worker_load_the_plugin_once_in_its_replacement(name, monkeypatch):
    # Eight threads start a stream together after the worker died while idle. Each must be served
    # by the replacement, and the plugin loaded there once. Two races did otherwise: every thread
    # that found the worker dead loaded its own copy of the plugin (a VM leaked for the worker's
    # life), and a thread asking whether the worker lived while another reaped it was told "alive"
    # (Popen.poll answers None while another thread waits on the child), so its stream went to
    # the dead worker and failed.
    from proxywasm_vm._proxywasm._remote_host import RemotePlugin

    engine = _engine(name)
    host, up = _host(engine)
    p = _callout_plugin(host, "fail_closed")
    _served(p)
    pid = engine.worker_pid
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    loads: list[int] = []
    attach = RemotePlugin._attach

    def counted(self: RemotePlugin) -> None:
        loads.append(threading.get_ident())
        time.sleep(0.05)  # widen the window in which the other threads find the worker dead
        attach(self)

    monkeypatch.setattr(RemotePlugin, "_attach", counted)

    def run(i: int) -> None:
        with p.http_stream() as s:
            assert s.request_headers(REQUEST) is pw.Action.PAUSE and s.wait(GUARD)
            assert not s.failed, s.error
            assert s.request.headers["x-pwvm-callout-body"] == "pong"

    errors = run_threads(8, run, GUARD)
    assert errors == [] and len(loads) == 1 and engine.worker_pid != pid, (errors, loads)
    assert p.stats()["vm_failed"] == 0
    p.close()
    engine.close()


@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_wedged_worker_is_killed_at_the_event_bound(name):
    # c_bad_guest loops forever in proxy_on_request_headers and the plugin has no deadline (said
    # explicitly: the default one would stop it in the worker): only the bound on the crossing stops it.
    engine = _engine(name)
    host, up = _host(engine)
    bad = pw.Plugin(pw.PluginConfig(name="bad", root_id="bad", configuration="fail_in=request_headers\nfail_mode=loop",
                                    limits=pw.StoreLimits.unlimited()),
                    plugin_path("c_bad_guest"), host=host)
    gc.collect()
    pid = engine.worker_pid
    before = descendants()
    s = bad.http_stream()
    t0 = time.monotonic()
    action = s.request_headers(REQUEST)
    took = time.monotonic() - t0
    assert took < GUARD
    _policy_applied(s, action, "fail_closed")
    assert isinstance(s.error.cause, pw.Trap) and s.error.cause.code is pw.TrapCode.INTERRUPTED
    p = _callout_plugin(host, "fail_closed")  # the engine goes on, in a new worker
    host.advance(1.0)
    _served(p)
    after = descendants()
    assert pid not in after and len(after) == len(before), (before, after)
    report_time(name, "wedged (no deadline) -> policy", took)
    p.close()
    engine.close()


@pytest.mark.parametrize("name", WORKER_BACKENDS)
def test_a_worker_failing_on_every_stream_is_replaced_with_backoff(name):
    """A plugin that takes its worker down on every stream does not start a process per stream:
    as a failed VM, the worker is replaced after the reload backoff (1 s, 2 s, ...); meanwhile
    streams get the policy without a worker. Each failure is one record and one count."""
    engine = _engine(name)
    host, up = _host(engine)
    p = _callout_plugin(host, "fail_closed")
    _served(p)
    before = descendants()
    for round_, wait in enumerate((1.0, 2.0), start=1):
        pid = engine.worker_pid
        up.fault = lambda pid=pid: kill_process(pid)
        s = p.http_stream()
        _policy_applied(s, s.request_headers(REQUEST), "fail_closed")
        s.close()
        for _ in range(3):  # during the backoff: the policy, and no new worker
            s = p.http_stream()
            _policy_applied(s, s.request_headers(REQUEST), "fail_closed")
            s.close()
        assert pid not in descendants() and len(descendants()) == len(before) - 1
        stats = p.stats()
        assert stats["vm_failed"] == round_ and stats["vm_reload_backoff"] == 4 * round_ - 1, stats
        failures = [r for r in host.logger.records if r.level == pw.LogLevel.ERROR and "failed in" in r.message]
        assert len(failures) == round_ and f"after {wait:g} s" in failures[-1].message
        host.advance(wait - 0.001)
        s = p.http_stream()
        _policy_applied(s, s.request_headers(REQUEST), "fail_closed")  # not yet
        s.close()
        host.advance(0.001)
    _served(p)  # the backoff passed: a new worker, the plugin loaded again
    assert len(descendants()) == len(before) and p.stats()["vm_reload"] == 2  # after each backoff
    p.close()
    engine.close()


def test_raise_policy_gets_the_worker_failure_as_a_plugin_crash():
    engine = _engine("wasmtime@process")
    host, up = _host(engine)
    p = _callout_plugin(host, "raise")
    pid = engine.worker_pid
    up.fault = lambda: kill_process(pid)
    s = p.http_stream()
    with pytest.raises(pw.PluginCrash) as e:
        s.request_headers(REQUEST)
    assert isinstance(e.value.cause, pw.WorkerCrashed) and e.value.callback == "request_headers"
    with pytest.raises(pw.PluginCrash, match="waiting for its reload"):  # the backoff, as for a failed VM
        p.http_stream().request_headers(REQUEST)
    host.advance(1.0)
    _served(p)
    p.close()
    engine.close()


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_tcp_stream_whose_worker_died_gets_its_policy(policy):
    # The worker dies between two events of an open connection: the connection's state went with
    # it, so its next event gets the policy (fail_closed: the connection is closed; fail_open: the
    # data goes through), and the next connection after the reload backoff is served by a new worker.
    engine = _engine("wasmtime@process")
    host = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock())
    p = pw.Plugin(pw.PluginConfig(name="tcp", root_id="tcp", configuration="upstream_prefix=up:",
                                  failure_policy=policy), plugin_path("c_tcp"), host=host)
    s = p.tcp_stream()
    assert s.new_connection() is pw.Action.CONTINUE
    pid = engine.worker_pid
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    a = s.downstream_data(b"hello", False)
    assert s.failed and isinstance(s.error.cause, pw.WorkerCrashed)
    if policy == "fail_closed":
        assert a is pw.Action.PAUSE and s.connection_closed_by_plugin
    else:
        assert a is pw.Action.CONTINUE and s.downstream.data == b"hello" and not s.connection_closed_by_plugin
    s.close()
    host.advance(1.0)
    with p.tcp_stream() as s2:
        assert s2.new_connection() is pw.Action.CONTINUE
        assert s2.downstream_data(b"abc", False) is pw.Action.CONTINUE and not s2.failed
    assert engine.worker_pid != pid and pid not in descendants()
    p.close()
    engine.close()
