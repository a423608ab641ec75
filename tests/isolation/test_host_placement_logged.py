"""On a worker engine a plugin whose Proxy-Wasm host cannot run in the worker takes the slower
path (each host call crosses to the worker and back) only with a logged reason: one record
per plugin, naming the plugin, the backend and why."""

from __future__ import annotations

import logging

import pytest
from proxywasm.conftest import REQUEST, plugin_path

import proxywasm_vm as pw
from proxywasm_vm._proxywasm import _remote_host

_WHY = "its Proxy-Wasm host stays in this process"


@pytest.fixture(params=["wasmtime@process", "v8@process"])
def worker_engine(request: pytest.FixtureRequest) -> pw.Engine:
    try:
        return pw.Engine(request.param)
    except pw.BackendUnavailable as e:
        pytest.skip(str(e))


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "proxywasm_vm" and ("Proxy-Wasm host" in r.getMessage())]


def _solo(engine: pw.Engine, name: str = "solo", **config) -> pw.Plugin:
    return pw.Plugin(pw.PluginConfig(name=name, root_id="pwvm_solo_headers", **config), plugin_path("as_solo_headers"),
                     engine=engine)


def _request_passes(p: pw.Plugin) -> None:
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
        assert s.request.headers["x-pwvm-sdk"] == "solo"


@pytest.mark.parametrize("config, reason", [
    ({"vm_per_stream": True}, "vm_per_stream=True"),
    ({"foreign_functions": {"echo": lambda b: b}}, "foreign_functions"),
])
def test_a_plugin_kept_here_says_why_once(worker_engine, caplog, config, reason):
    caplog.set_level(logging.INFO, logger="proxywasm_vm")
    p = _solo(worker_engine, name="kept", **config)
    assert p._remote is None
    for _ in range(3):
        _request_passes(p)
    recs = _records(caplog)
    assert len(recs) == 1, [r.getMessage() for r in recs]
    msg = recs[0].getMessage()
    assert recs[0].levelno == logging.WARNING
    assert _WHY in msg and "'kept'" in msg and worker_engine.name in msg and reason in msg
    p.close()


def test_switched_off_by_environment_is_logged_at_info(worker_engine, caplog, monkeypatch):
    monkeypatch.setenv("PWVM_REMOTE_HOST", "0")
    caplog.set_level(logging.INFO, logger="proxywasm_vm")
    p = _solo(worker_engine)
    assert p._remote is None
    recs = _records(caplog)
    assert [r.levelno for r in recs] == [logging.INFO]
    assert "PWVM_REMOTE_HOST=0" in recs[0].getMessage() and worker_engine.name in recs[0].getMessage()
    p.close()


def test_a_plugin_whose_host_runs_in_the_worker_logs_nothing(worker_engine, caplog):
    caplog.set_level(logging.INFO, logger="proxywasm_vm")
    p = _solo(worker_engine)
    assert isinstance(p._remote, _remote_host.RemotePlugin)
    _request_passes(p)
    assert _records(caplog) == []
    p.close()


def test_an_update_that_moves_the_host_back_says_why(worker_engine, caplog):
    caplog.set_level(logging.INFO, logger="proxywasm_vm")
    p = _solo(worker_engine, name="moved")
    assert isinstance(p._remote, _remote_host.RemotePlugin)
    p.update(vm_per_stream=True)
    assert p._remote is None
    _request_passes(p)
    recs = _records(caplog)
    assert len(recs) == 1 and recs[0].levelno == logging.WARNING
    assert "'moved'" in recs[0].getMessage() and "vm_per_stream=True" in recs[0].getMessage()
    p.close()


def test_an_in_process_engine_has_no_worker_to_explain(caplog):
    caplog.set_level(logging.INFO, logger="proxywasm_vm")
    p = _solo(pw.Engine("wasmtime"), vm_per_stream=True)
    _request_passes(p)
    assert _records(caplog) == []
    p.close()
