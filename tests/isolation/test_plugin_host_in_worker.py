"""``Plugin`` on a worker engine: the Proxy-Wasm host runs in the worker when the plugin allows it."""

from __future__ import annotations

import os
import signal

import pytest
from proxywasm.conftest import REQUEST, plugin_path

import proxywasm_vm as pw
from proxywasm_vm._isolation import _plughost


@pytest.fixture
def wt_process() -> pw.Engine:
    return pw.Engine("wasmtime@process")


def test_simple_plugin_runs_its_host_in_the_worker(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process, clock=pw.ManualClock(), logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"), host=host)
    assert isinstance(p._remote, _plughost.RemotePlugin)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
        assert s.request.headers["x-pwvm-sdk"] == "solo" and s.context_id > 1 and not s.closed
    assert s.closed and s.local_response is None
    assert p.logs and not p.failed  # log records reached this process's logger
    host.close()


def test_plugins_using_the_event_loop_keep_the_host_here(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process)
    p = pw.Plugin(pw.PluginConfig(name="all", root_id="pwvm_all"), plugin_path("c_http_all"), host=host)
    assert p._remote is None  # ticks, callouts, queues: parent-side host
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
    host.close()


def test_worker_crash_then_reload(wt_process):
    host = pw.ProxyWasmHost(engine=wt_process)
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"), host=host)
    with p.http_stream() as s:
        s.request_headers(REQUEST)
    os.kill(wt_process.worker_pid, signal.SIGKILL)
    with pytest.raises(pw.WorkerCrashed):
        with p.http_stream() as s:
            s.request_headers(REQUEST)
    with p.http_stream() as s:  # loaded again in the restarted worker
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
    host.close()


def test_switch_off(monkeypatch, wt_process):
    monkeypatch.setenv("PWVM_REMOTE_HOST", "0")
    p = pw.Plugin(pw.PluginConfig(name="solo", root_id="pwvm_solo_headers"), plugin_path("as_solo_headers"),
                  engine=wt_process)
    assert p._remote is None
    p.close()
