"""``Plugin`` on a worker engine: the Proxy-Wasm host runs in the worker when the plugin allows it."""

from __future__ import annotations

import os
import signal

import pytest
from _helpers import descendants, kill_process, wait_exited
from proxywasm.conftest import REQUEST, plugin_path

import proxywasm_vm as pw
from proxywasm_vm._proxywasm import _remote_host


@pytest.fixture
def wt_process() -> pw.Engine:
    return pw.Engine("wasmtime@process")


def test_simple_plugin_runs_its_host_in_the_worker(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process, clock=pw.ManualClock(), logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"), host=host)
    assert isinstance(p._remote, _remote_host.RemotePlugin)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
        assert s.request.headers["x-pwvm-sdk"] == "solo" and s.context_id > 1 and not s.closed
    assert s.closed and s.local_response is None
    assert p.logs and not p.failed  # log records reached this process's logger
    host.close()


def _all(host, engine=None, name="all", **config):
    return pw.Plugin(pw.PluginConfig(name=name, root_id="pwvm_all", vm_id=f"vm_{name}", **config),
                     plugin_path("c_http_all"), host=host, engine=engine)


def test_callouts_run_from_the_worker_through_this_process(wt_process):
    seen = []

    def handler(r):
        seen.append(os.getpid())  # the dispatcher and its handler are this process's
        return pw.HttpCallResponse(200, {"x-pwvm-callout-value": "v1"}, b"pong")

    host = pw.ProxyWasmHost(engine=wt_process, http=pw.CallbackHttpDispatcher(handler, {"pwvm_upstream"}))
    p = _all(host, configuration="test=callout")
    assert isinstance(p._remote, _remote_host.RemotePlugin)  # ticks, callouts, queues: still in the worker
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.PAUSE
        assert s.wait(5)
        assert s.request.headers["x-pwvm-callout-body"] == "pong"
        assert s.request.headers["x-pwvm-callout-value"] == "v1"
    assert seen == [os.getpid()]
    host.close()


def test_ticks_of_both_sides_follow_one_clock(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process, clock=pw.ManualClock(), logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    here = _all(host, pw.Engine("wasmtime"), name="here", configuration="tick_ms=30\ntick_max=3")
    there = _all(host, name="there", configuration="tick_ms=50\ntick_max=3")
    assert here._remote is None and there._remote is not None
    assert host.advance(ms=200) == 6
    ticks = [(r.plugin, r.message) for r in host.logger.records
             if r.message.startswith("c_http_all: tick ") and "period" not in r.message]
    # due at 30, 50, 60, 90, 100, 150 ms: one order, whichever process runs the plugin
    assert ticks == [("here", "c_http_all: tick 1"), ("there", "c_http_all: tick 1"),
                     ("here", "c_http_all: tick 2"), ("here", "c_http_all: tick 3"),
                     ("there", "c_http_all: tick 2"), ("there", "c_http_all: tick 3")]
    assert host.shared_data.get("vm_there", b"pwvm.ticks")[0] == b"3"
    host.close()


def test_queue_from_a_plugin_here_to_a_plugin_in_the_worker(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process, logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    consumer = _all(host, name="consumer", configuration="queue=jobs")
    producer = _all(host, pw.Engine("wasmtime"), name="producer", configuration="queue=jobs\nqueue_vm_id=vm_consumer")
    assert consumer._remote is not None and producer._remote is None
    for job in ("job-1", "job-2"):
        with producer.http_stream() as s:
            s.request_headers(REQUEST + [("x-pwvm-test", "queue"), ("x-pwvm-queue-item", job)])
            s.response_headers({":status": "200"})
            assert s.response.headers["x-pwvm-queue-enqueue"] == "0"
    assert host.queues.size("vm_consumer", "jobs") == 2
    assert host.poll() >= 1  # the worker was woken; poll ran proxy_on_queue_ready there
    assert host.shared_data.get("vm_consumer", b"pwvm.queue.count")[0] == b"2"
    assert "c_http_all: dequeued job-1" in consumer.logs
    assert host.run_until_idle(1) == 0
    host.close()


def test_a_dead_workers_timers_and_callbacks_are_dropped(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process, clock=pw.ManualClock())
    p = _all(host, configuration="tick_ms=10\nqueue=jobs")
    token = host.queues.resolve("vm_all", "jobs")
    assert token is not None
    kill_process(wt_process.worker_pid)
    host.advance(ms=100)  # the worker's tick finds it dead (no error here) and is cancelled
    assert host.advance(ms=100) == 0
    assert host.queues.enqueue(token, b"x") == pw.Status.OK  # its notifier does nothing now
    with p.http_stream() as s:  # the death is known: the stream starts a new worker (and the plugin in it)
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
    assert host.advance(ms=10) == 1  # the reloaded plugin's tick
    host.close()


def test_worker_crash_then_reload(wt_process):
    # A worker that died while idle is replaced before the next stream, not by failing it.
    host = pw.ProxyWasmHost(engine=wt_process)
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"), host=host)
    with p.http_stream() as s:
        s.request_headers(REQUEST)
    pid = wt_process.worker_pid
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    with p.http_stream() as s:  # loaded again in the restarted worker, transparently
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
        assert s.request.headers["x-pwvm-sdk"] == "solo" and not s.failed
    assert wt_process.worker_pid != pid and pid not in descendants()  # reaped, no zombie
    host.close()


def test_switch_off(monkeypatch, wt_process):
    monkeypatch.setenv("PWVM_REMOTE_HOST", "0")
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"),
                  engine=wt_process)
    assert p._remote is None
    p.close()


@pytest.mark.parametrize("name, root_id", [("c_bench", ""), ("as_gcore_headers", "pwvm_gcore_headers")])
def test_a_request_crosses_once_per_event(wt_process, monkeypatch, name, root_id):
    # Host calls stay in the worker: a whole request (dozens of host calls) is two crossings,
    # the request headers (which also create the stream) and the response headers (which
    # also complete it), whatever the plugin does.
    from proxywasm_vm._isolation import _conn

    p = pw.Plugin(pw.PluginConfig(name=name, root_id=root_id), plugin_path(name), engine=wt_process)
    with p.http_stream() as s:  # warm: the VM starts in the worker
        s.request_headers(REQUEST, True)
    ops = []
    real = _conn.Connection._request

    def counting(self, lane, op, args, budget, why):
        ops.append(op)
        return real(self, lane, op, args, budget, why)

    monkeypatch.setattr(_conn.Connection, "_request", counting)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST, True) is pw.Action.CONTINUE
        assert s.response_headers({":status": "200"}, True) is pw.Action.CONTINUE
    assert ops == ["pw_stream", "pw_stream"]
    assert s.closed
    p.close()


def test_without_spinning_every_wait_sleeps_and_still_answers():
    # worker_spin / worker_event_spin 0: no busy-waiting on either side (a machine with no
    # core to spare); every message wakes the other side through its eventfd.
    engine = pw.Engine("wasmtime@process", pw.EngineConfig(options=(("worker_spin", 0), ("worker_event_spin", 0))))
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"),
                  engine=engine)
    assert p._remote.conn.lanes[0].chan.min_spin_ns == 0 and p._remote.conn.lanes[0].chan.spin_ns == 0
    for _ in range(20):
        with p.http_stream() as s:
            assert s.request_headers(REQUEST, True) is pw.Action.CONTINUE
            assert s.response_headers({":status": "200"}, True) is pw.Action.CONTINUE
        assert s.closed and s.request.headers["x-pwvm-sdk"] == "solo"
    p.close()


def test_a_stream_outlives_an_event_that_raised(wt_process):
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"),
                  engine=wt_process)
    for engine_side in (p, pw.Plugin(p.config, plugin_path("as_solo_headers"), engine=pw.Engine("wasmtime"))):
        s = engine_side.http_stream()
        with pytest.raises(TypeError):
            s.request_headers(42)  # not headers: the caller's mistake, raised by the first event
        cid = s.context_id
        assert cid == 2  # the plugin's first stream (its root context is 1): not made again
        assert s.request_headers(REQUEST, True) is pw.Action.CONTINUE  # the same stream goes on
        assert s.context_id == cid and s.request.headers["x-pwvm-sdk"] == "solo"
        s.close()
        with engine_side.http_stream() as nxt:  # and no second context was made for it
            nxt.request_headers(REQUEST, True)
            assert nxt.context_id == cid + 1


ONE_CORE = """
import os
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # this process (and so its worker) on one core
import proxywasm_vm as pw
from proxywasm_vm._workloads import _request
engine = pw.Engine("wasmtime@process")
op = _request("c")(engine)
for _ in range(50):
    op.run()  # requests through the worker, with its host there
chan = engine._conn_now().lanes[0].chan
assert chan.spin_ns == 0 and chan.min_spin_ns == 0, (chan.spin_ns, chan.min_spin_ns)
print("ok")
"""


def test_one_core_never_spins():
    # Spinning on the only core would keep the peer from running: every wait sleeps instead.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", ONE_CORE], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_worker_killed_in_the_middle_of_a_stream_event(wt_process):
    # The worker dies while the plugin's request_headers is running there (inside its HTTP
    # callout, which calls this process's dispatcher): the stream gets its failure policy at
    # once (fail_closed: a local 503, as a plugin that trapped), and the next stream after the
    # reload backoff runs in a new worker.
    def handler(r):
        kill_process(wt_process.worker_pid)
        return pw.HttpCallResponse(200, {}, b"never delivered")

    host = pw.ProxyWasmHost(engine=wt_process, http=pw.CallbackHttpDispatcher(handler, {"pwvm_upstream"}),
                            clock=pw.ManualClock())
    p = _all(host, configuration="test=callout")
    pid = wt_process.worker_pid
    s = p.http_stream()
    assert s.request_headers(REQUEST) is pw.Action.PAUSE
    assert s.failed and s.local_response is not None and s.local_response.status == 503
    assert isinstance(s.error, pw.PluginCrash) and isinstance(s.error.cause, pw.WorkerCrashed)
    assert s.request_body(b"x", True) is pw.Action.PAUSE  # the stream went with its worker: answered here
    s.close()
    assert s.closed
    host.http = pw.CallbackHttpDispatcher(lambda r: pw.HttpCallResponse(200, {}, b"pong"), {"pwvm_upstream"})
    host.advance(1.0)  # the reload backoff
    with p.http_stream() as s2:
        assert s2.request_headers(REQUEST) is pw.Action.PAUSE and s2.wait(5)
        assert s2.request.headers["x-pwvm-callout-body"] == "pong"
    assert wt_process.worker_pid != pid
    host.close()


def test_stream_state_read_after_poll_is_fresh(wt_process):
    # A stream's state read before a callout answer must not be served from the cache after
    # host.poll() ran that answer in the worker (it resumed the stream there).
    pending = []

    class Later(pw.HttpDispatcher):
        def dispatch(self, request, deliver):
            pending.append(deliver)
            return 1

    host = pw.ProxyWasmHost(engine=wt_process, http=Later())
    p = _all(host, configuration="test=callout")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.PAUSE
        assert s.request.paused  # (fetched and cached here)
        pending.pop()(pw.HttpCallResponse(200, {}, b"later"))
        host.poll()
        assert not s.request.paused and s.request.headers["x-pwvm-callout-body"] == "later"
    host.close()
