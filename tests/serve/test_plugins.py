"""``pwvm serve`` with plugins, started from a configuration file, once per backend: the test
plugin c_http_all rewrites headers, answers 401, rewrites bodies, calls out to a second local
server before it lets a request go on, and defines metrics /metrics shows. Then the failure
policies with a plugin that traps, started from flags."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import proxywasm_vm as pw
from _helpers import load_backend
from ._serve_helpers import PLUGINS, Serve, Upstream, header
from proxywasm_vm import _settings

BACKENDS = _settings.selected_backends() or pw.backend_names()


def config_text(upstream: Upstream, callout: Upstream, backend: str) -> str:
    return f"""
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
access_log = "access.log"

[clusters.app]
url = "{upstream.url}"

[clusters.callout]          # a callout target (plugins name it), not routed to
url = "{callout.url}"

[[routes]]
prefix = "/"
cluster = "app"

[[plugins]]
name = "all"
path = "{PLUGINS / 'c_http_all.wasm'}"
backend = "{backend}"
root_id = "pwvm_all"
configuration = "metrics=1"
limits = {{ deadline = 10 }}   # generous: a busy test machine must not trip the 0.5 s default
"""


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, upstream: Upstream, callout_server: Upstream,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    load_backend(request.param)  # skipped (or, in CI, failed) when the backend is unavailable here
    tmp = tmp_path_factory.mktemp("plugins")
    cfg = tmp / "pwvm.toml"
    cfg.write_text(config_text(upstream, callout_server, request.param))
    s = Serve(["-c", str(cfg)], tmp)
    yield s
    assert s.stop() == 0, s.stderr()


def test_header_rewrite(served: Serve) -> None:
    r = httpx.get(served.url + "/h", headers={"x-pwvm-test": "headers", "x-pwvm-replace": "original",
                                              "x-pwvm-remove": "1", "x-pwvm-echo": "hi"})
    assert r.status_code == 200
    doc = r.json()
    assert header(doc, "x-pwvm-added") == ["1"]
    assert header(doc, "x-pwvm-replace") == ["replaced"]
    assert header(doc, "x-pwvm-remove") == []
    assert header(doc, "x-pwvm-echoed") == ["hi"]
    # the response headers as the plugin rewrote them: x-pwvm-drop gone, its count added
    assert "x-pwvm-drop" not in r.headers and int(r.headers["x-pwvm-set-pairs"]) > 0


def test_local_401(served: Serve, upstream: Upstream) -> None:
    before = upstream.count
    r = httpx.get(served.url + "/private", headers={"x-pwvm-test": "auth"})
    assert (r.status_code, r.text) == (401, "unauthorized")
    assert r.headers["www-authenticate"] == 'Bearer realm="pwvm"'
    assert upstream.count == before  # the request never went upstream
    r = httpx.get(served.url + "/private", headers={"x-pwvm-test": "auth", "authorization": "Bearer secret"})
    assert r.status_code == 200 and header(r.json(), "x-pwvm-auth") == ["ok"]


def test_body_rewrite_both_ways(served: Serve) -> None:
    r = httpx.post(served.url + "/b", content=b"hello body", headers={"x-pwvm-test": "body",
                                                                       "x-pwvm-body-target": "both"})
    assert r.status_code == 200
    # the plugin upper-cased the request body on its way up, and the whole answer on its way down
    assert '"BODY": "HELLO BODY"' in r.text and '"UPSTREAM": "APP"' in r.text


def test_callout_resumes_the_request(served: Serve, callout_server: Upstream) -> None:
    before = callout_server.count
    r = httpx.get(served.url + "/c", headers={"x-pwvm-test": "callout", "x-pwvm-callout-upstream": "callout"},
                  timeout=30)
    assert r.status_code == 200
    doc = r.json()
    assert header(doc, "x-pwvm-callout-status") == ["200"]
    assert header(doc, "x-pwvm-callout-value") == ["from-callout"]
    assert header(doc, "x-pwvm-callout-body") == ["pong"]
    assert callout_server.count == before + 1


def test_plugin_metrics_on_admin(served: Serve) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(served.admin + "/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # the three metrics c_http_all defines (metrics=1), under wasm_
    assert fams["wasm_pwvm_requests"].type == "counter"
    assert fams["wasm_pwvm_gauge"].type == "gauge"
    assert fams["wasm_pwvm_histogram"].type == "summary"
    created = [s for s in fams["pwvm_plugin_vm_created"].samples if s.labels == {"plugin": "all"}]
    assert created and created[0].value >= 1


def test_access_log_file(served: Serve) -> None:
    httpx.get(served.url + "/audited", headers={"x-request-id": "audit-1"})
    log = served.tmp / "access.log"  # relative to the configuration file
    deadline = time.monotonic() + 10
    while not (log.exists() and "audit-1" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"GET /audited HTTP/1.1" 200 ' in log.read_text()


@pytest.fixture(scope="module")
def trap_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("trap") / "trap.conf"
    p.write_text("h")  # wat_trap_in traps (unreachable) in proxy_on_request_headers
    return p


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open", "fail_reload"])
def test_trapping_plugin_follows_its_failure_policy(policy: str, upstream: Upstream, trap_config: Path,
                                                    tmp_path: Path) -> None:
    s = Serve(["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--admin", "127.0.0.1:0",
               "--plugin", str(PLUGINS / "wat_trap_in.wasm"), "--config", str(trap_config), "--name", "trap",
               "--failure-policy", policy, "--deadline", "10"], tmp_path)
    try:
        before = upstream.count
        r = httpx.get(s.url + "/t")
        if policy == "fail_open":  # as if the plugin were not there
            assert r.status_code == 200 and upstream.count == before + 1
        else:  # Envoy's local 503 for a failed plugin
            assert r.status_code == 503 and upstream.count == before
        if policy == "fail_reload":
            time.sleep(1.2)  # the reload backoff (1 s)
            assert httpx.get(s.url + "/t").status_code == 503  # a fresh VM, which traps again
        text = httpx.get(s.admin + "/metrics").text
        assert 'pwvm_plugin_vm_failed_total{plugin="trap"}' in text
        failed = float(text.split('pwvm_plugin_vm_failed_total{plugin="trap"} ')[1].split()[0])
        assert failed >= 1
        if policy == "fail_reload":
            assert 'pwvm_plugin_vm_reload_total{plugin="trap"} 1' in text
    finally:
        assert s.stop() == 0, s.stderr()
    assert "trap" in s.stderr()  # the failure is logged, naming the plugin


def test_plugin_reset_closes_the_stream(served: Serve, upstream: Upstream) -> None:
    before = upstream.count
    try:  # proxy_close_stream: the connection closes (uvicorn answers 500 when nothing was sent yet)
        r = httpx.get(served.url + "/reset", headers={"x-pwvm-test": "close"})
        assert r.status_code == 500
    except httpx.RemoteProtocolError:
        pass
    assert upstream.count == before
    assert httpx.get(served.url + "/after").status_code == 200  # and the server goes on


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_plugin_failure_is_logged_once(backend: str, upstream: Upstream, trap_config: Path,
                                         tmp_path: Path) -> None:
    """One stderr line per failure (it went out twice before: on the plugin logger and on
    ``proxywasm_vm``), with everything both said: level, plugin, VM id, context, callback,
    cause and what happens next."""
    load_backend(backend)
    s = Serve(["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--backend", backend,
               "--plugin", str(PLUGINS / "wat_trap_in.wasm"), "--config", str(trap_config), "--name", "trap",
               "--deadline", "10"], tmp_path)
    try:
        assert httpx.get(s.url + "/t").status_code == 503
        s.wait_for("failed in proxy_on_request_headers")
    finally:
        assert s.stop() == 0, s.stderr()
    err = s.stderr()
    # (a wasmtime trap message carries its wasm backtrace over several lines: one record)
    lines = [ln for ln in err.splitlines() if "failed in" in ln]
    assert len(lines) == 1 and err.count("a fresh VM starts with the first stream after") == 1, err
    assert " ERROR proxywasm_vm.plugin: [trap/" in lines[0] and " ctx " in lines[0]
    assert "plugin 'trap' failed in proxy_on_request_headers" in lines[0] and "unreachable" in lines[0]
    assert " proxywasm_vm: " not in err  # (the host's own logger said it again before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_limits_from_the_configuration_take_effect(backend: str, upstream: Upstream, tmp_path: Path) -> None:
    """``[limits] body_buffer_max_bytes``: a request body the plugin holds past it gets Envoy's 413
    (the default bound, 1 MiB, lets this one through)."""
    load_backend(backend)
    cfg = tmp_path / "pwvm.toml"
    cfg.write_text(f"""
listen = "127.0.0.1:0"

[limits]
body_buffer_max_bytes = 1024

[clusters.app]
url = "{upstream.url}"

[[plugins]]
name = "body"
path = "{PLUGINS / 'c_http_all.wasm'}"
backend = "{backend}"
configuration = "test=body"     # replace: holds the request body until its end, then upper-cases it
limits = {{ deadline = 10 }}
""")
    s = Serve(["-c", str(cfg)], tmp_path)
    try:
        def chunks(rest: int) -> Iterator[bytes]:
            yield b"x" * 600
            # the rest once the plugin holds the first part (paused, buffering: it logs it)
            s.wait_for("request body size=600 eos=0")
            yield b"x" * rest

        before = upstream.count
        r = httpx.post(s.url + "/large", content=chunks(5000), timeout=30)
        assert r.status_code == 413 and upstream.count == before
        r = httpx.post(s.url + "/small", content=chunks(300), timeout=30)  # 900 bytes: under the bound
        assert r.status_code == 200 and '"body": "' + "X" * 900 + '"' in r.text and upstream.count == before + 1
    finally:
        assert s.stop() == 0, s.stderr()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_local_response_goes_back_through_the_plugins_before_it(backend: str, upstream: Upstream,
                                                                  tmp_path: Path) -> None:
    """The chain's local reply as Envoy's: through the response callbacks of the plugin that
    answered (as_solo_headers adds x-pwvm-response) and of those before it (c_http_all's
    ``headers`` test adds x-pwvm-set-pairs), never to the upstream."""
    load_backend(backend)
    cfg = tmp_path / "pwvm.toml"
    cfg.write_text(f"""
listen = "127.0.0.1:0"

[limits]
deadline = 10                   # generous: a busy test machine must not trip the 0.5 s default

[clusters.app]
url = "{upstream.url}"

[[plugins]]
name = "a"
path = "{PLUGINS / 'c_http_all.wasm'}"
backend = "{backend}"
configuration = "test=headers"

[[plugins]]
name = "solo"
path = "{PLUGINS / 'as_solo_headers.wasm'}"
backend = "{backend}"
root_id = "pwvm_solo_headers"
""")
    s = Serve(["-c", str(cfg)], tmp_path)
    try:
        before = upstream.count
        r = httpx.get(s.url + "/d", headers={"x-pwvm-deny": "1"}, timeout=30)
        assert (r.status_code, r.text) == (403, "denied") and upstream.count == before
        assert r.headers["x-pwvm-response"] == "1" and r.headers["x-pwvm-set-pairs"] == "4"
        r = httpx.get(s.url + "/ok", timeout=30)  # no answer: the upstream's response, through both
        assert r.status_code == 200 and upstream.count == before + 1
        assert r.headers["x-pwvm-response"] == "1" and "x-pwvm-set-pairs" in r.headers
    finally:
        assert s.stop() == 0, s.stderr()
