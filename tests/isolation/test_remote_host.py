"""A whole Proxy-Wasm host in the worker: plugin-level calls cross, host calls stay in the worker.

The HTTP tests of ``tests/proxywasm/test_http.py`` run here again against a
host made by :func:`proxywasm_vm._proxywasm._remote_host.remote_host` (fixtures below
replace the Proxy-Wasm suite's ``host`` / ``make_plugin`` / ``http_all``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _helpers import in_ci, kill_process
from proxywasm.conftest import REQUEST, plugin_path  # tests/proxywasm (tests/ is on sys.path)
from proxywasm.test_http import (  # noqa: F401 - collected again here, with the fixtures below
    test_abi_0_1_0,
    test_assemblyscript_sdks,
    test_auth_local_responses,
    test_body_prepend_append,
    test_body_replace_across_chunks,
    test_close_stream,
    test_header_rewrite,
    test_local_response_with_headers,
    test_log_levels_and_misc,
    test_properties,
    test_stream_logs_and_lifecycle,
)

import proxywasm_vm as pw
from proxywasm_vm._proxywasm._remote_host import remote_host

_ENGINES: dict[str, pw.Engine] = {}


def _engine(name: str) -> pw.Engine:
    e = _ENGINES.get(name)
    if e is None:
        try:
            e = _ENGINES[name] = pw.Engine(name, isolation="process")
        except pw.BackendUnavailable as err:
            if in_ci():
                raise
            pytest.skip(" ".join(str(err).split()))
    return e


@pytest.fixture(params=["wasmtime", "wasmer"])
def host(request: pytest.FixtureRequest) -> Any:
    h = remote_host(_engine(request.param), clock=pw.ManualClock(),
                    logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    yield h
    h.close()


@pytest.fixture
def make_plugin(host: Any) -> Callable[..., Any]:
    def make(module: str, **config: Any) -> Any:
        config.setdefault("name", module)
        return host.load(pw.PluginConfig(**config), plugin_path(module))

    return make


@pytest.fixture
def http_all(make_plugin: Callable[..., Any]) -> Callable[..., Any]:
    def make(configuration: str = "", **config: Any) -> Any:
        return make_plugin("c_http_all", configuration=configuration, root_id="pwvm_all", vm_id="vm_all", **config)

    return make


def test_shared_services_stay_in_this_process(make_plugin):
    """Shared data and the logger passed in are this process's own objects, shared with an
    in-process plugin; the plugin in the worker reads and writes them."""
    shared = pw.SharedData()
    logger = pw.MemoryLogger(level=pw.LogLevel.TRACE)
    worker_host = remote_host(_engine("wasmtime"), shared_data=shared, logger=logger)
    local_host = pw.ProxyWasmHost(engine=pw.Engine("wasmtime"), shared_data=shared)
    assert worker_host.shared_data is shared and worker_host.logger is logger
    cfg = {"configuration": "test=shared", "root_id": "pwvm_all", "vm_id": "vm_all"}
    remote = worker_host.load(pw.PluginConfig(name="remote", **cfg), plugin_path("c_http_all"))
    local = local_host.load(pw.PluginConfig(name="local", **cfg), plugin_path("c_http_all"))
    values = []
    for plugin in (remote, local, remote):
        with plugin.http_stream() as s:
            s.request_headers(REQUEST)
            s.response_headers({":status": "200"})
            values.append(s.response.headers["x-pwvm-shared-value"])
    assert values == ["1", "2", "3"]  # one counter, in this process, for both
    assert shared.get("vm_all", b"pwvm.shared.counter")[0] == b"3"
    assert any("remote" in r.message or "c_http_all" in r.message for r in logger.records)
    worker_host.close()
    local_host.close()


def test_worker_crash_reaches_the_remote_objects():
    engine = pw.Engine("wasmtime@process")
    h = remote_host(engine)
    p = h.load(pw.PluginConfig(name="p", root_id="pwvm_all"), plugin_path("c_http_all"))
    with p.http_stream() as s:
        s.request_headers(REQUEST)
    kill_process(engine.worker_pid)
    with pytest.raises(pw.WorkerCrashed):
        p.http_stream()
    # a new host in the restarted worker works
    h2 = remote_host(engine)
    p2 = h2.load(pw.PluginConfig(name="p", root_id="pwvm_all"), plugin_path("c_http_all"))
    with p2.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE


def test_the_proxywasm_layer_registers_its_worker_requests():
    """Isolation imports nothing of Proxy-Wasm: the Proxy-Wasm layer registers its requests in
    isolation's hook table, and a worker imports that layer's module only when a host there is
    asked for (once per connection: a restarted worker is asked again)."""
    from proxywasm_vm._isolation import _extensions
    from proxywasm_vm._proxywasm import _remote_host

    assert {"pw_host", "pw_load", "pw_stream", "pw_state"} <= set(_extensions.WORKER_OPS)
    assert {"pw_load", "pw_stream"} <= _extensions.WASM_OPS and "pw_state" not in _extensions.WASM_OPS
    assert {"load", "update"} <= _extensions.COMPILING_METHODS
    engine = pw.Engine("wasmtime@process")
    conn = engine._conn_now()
    assert conn.extensions == set()
    with pytest.raises(Exception, match="pw_host"):  # the worker does not serve it yet
        conn.request("pw_host", ({},))
    remote_host(engine)
    assert conn.extensions == {_remote_host.__name__}
    remote_host(engine)  # asked once per connection
    assert conn.extensions == {_remote_host.__name__}
    engine.restart_worker()
    conn2 = engine._conn_now()
    assert conn2 is not conn and conn2.extensions == set()
    h = remote_host(engine)
    assert conn2.extensions == {_remote_host.__name__}
    p = h.load(pw.PluginConfig(name="p", root_id="pwvm_all"), plugin_path("c_http_all"))
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
