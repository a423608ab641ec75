"""The Go plugin (tests/plugins/go/go_http: GOOS=wasip1 c-shared, ABI 0.2.1 by hand) on every
backend: a garbage-collected runtime that reads the WASI clocks at start (it aborts on a zero
monotonic clock), allocates per request and panics through many fd_write calls per line.

The 2.2 MB module is compiled once per engine (``Module.cached``) and shared by every test.
Start-up and request times are printed (``-s``), never asserted."""

from __future__ import annotations

import time
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST, plugin_path

_MODULES: dict[int, pw.Module] = {}


def go_module(engine: pw.Engine) -> pw.Module:
    mod = _MODULES.get(id(engine))
    if mod is None:
        mod = _MODULES[id(engine)] = pw.Module.cached(engine, plugin_path("go_http").read_bytes())
    return mod


@pytest.fixture(params=["system", "manual"])
def go_host(request: pytest.FixtureRequest, engine: pw.Engine) -> Any:
    """A host with the default clock (SystemClock) or a ManualClock."""
    clock = pw.ManualClock() if request.param == "manual" else None
    h = pw.ProxyWasmHost(engine=engine, clock=clock, logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    yield h
    h.close()


def load(host: Any, configuration: str = "", **config: Any) -> pw.Plugin:
    return pw.Plugin(pw.PluginConfig(name="go_http", configuration=configuration, **config),
                     go_module(host.engine()), host=host)


def request(p: pw.Plugin, path: str = "/go", *extra: tuple[str, str]) -> pw.HttpStream:
    s = p.http_stream()
    headers = [(k, path if k == ":path" else v) for k, v in REQUEST] + list(extra)
    s.request_headers(headers, True)
    if s.local_response is None:
        s.response_headers([(":status", "200")], True)
    s.close()
    return s


def test_go_plugin_starts_and_serves(go_host, backend_name):
    go_module(go_host.engine())  # compiled (or loaded from the cache) before timing start-up
    t0 = time.perf_counter()
    p = load(go_host, "response_header=x-go-added")
    t_start = time.perf_counter() - t0
    assert "go_http: vm_start root=1 go1.27.3" in p.logs
    assert any(m.startswith("go_http: configured root=1 local_path=/go-local") for m in p.logs)

    times = []
    for i in range(1, 4):
        t0 = time.perf_counter()
        s = request(p, f"/r{i}")
        times.append(time.perf_counter() - t0)
        assert s.request.headers["x-pwvm-go"] == "1"
        h = s.response.headers
        assert h["x-go-added"] == "1" and h["x-pwvm-go-path"] == f"/r{i}" and h["x-pwvm-go-requests"] == str(i)
        assert h["x-pwvm-go-alloc"].startswith("65536,")
        assert h["x-pwvm-go-host-time-status"] == "0"
        # one proxy_log call (one record) per request header, in order
        assert s.logs == [f"go_http: header {k}: {f'/r{i}' if k == ':path' else v}" for k, v in REQUEST]
    print(f"\ngo_http {backend_name} clock={type(go_host.clock).__name__}: start {t_start * 1e3:.1f} ms, "
          f"request {min(times) * 1e3:.2f} ms (best of 3, first {times[0] * 1e3:.2f} ms)")

    s = request(p, "/go-local")
    lr = s.local_response
    assert (lr.status, lr.body, lr.details, lr.headers["x-pwvm-go-local"]) == (200, b"go local 4", "go_local", "1")
    assert "go_http: local response status=0" in s.logs


def test_go_clocks(go_host):
    p = load(go_host)
    clock = go_host.clock
    before = clock.now_ns()
    h = request(p).response.headers
    after = clock.now_ns()
    host_ns, go_now = int(h["x-pwvm-go-host-time-ns"]), int(h["x-pwvm-go-now-ns"])
    since = int(h["x-pwvm-go-since-configure-ns"])
    assert before <= host_ns <= after and before <= go_now <= after  # proxy_get_current_time / time.Now
    if isinstance(clock, pw.ManualClock):
        assert host_ns == go_now == clock.now_ns() and since == 0  # nothing moves unless advanced
    else:
        assert since > 0


def test_go_time_since_follows_manual_clock_advance(host):
    p = load(host, "tick_ms=100")
    host.advance(0.35)  # ticks at 100, 200, 300 ms
    h = request(p).response.headers
    assert h["x-pwvm-go-ticks"] == "3"
    assert h["x-pwvm-go-since-configure-ns"] == "350000000"  # time.Since through WASI's monotonic clock
    assert h["x-pwvm-go-last-tick-ns"] == "300000000"
    assert int(h["x-pwvm-go-now-ns"]) == host.clock.now_ns() == pw.ManualClock.WALL_START_NS + 350_000_000
    host.advance(2)
    h = request(p).response.headers
    assert h["x-pwvm-go-ticks"] == "23" and h["x-pwvm-go-since-configure-ns"] == "2350000000"
    assert [m for m in p.logs if m.startswith("go_http: tick ")][:2] == ["go_http: tick 1 since_configure_ms=100",
                                                      "go_http: tick 2 since_configure_ms=200"]


def test_go_garbage_collection_under_load(host):
    p = load(host, "alloc_kb=1024")  # 1 MiB of garbage per request: the Go GC has to run
    for _ in range(12):
        h = request(p).response.headers
    assert int(h["x-pwvm-go-gc"]) > 0 and h["x-pwvm-go-requests"] == "12"
    assert h["x-pwvm-go-alloc"].startswith("1048576,")


def test_go_stdout_fragments_are_logged_per_line(host):
    p = load(host)
    s = request(p, "/go-print", ("x-pwvm-go-print", r"first line\nsecond\nno newline"))  # one byte per fd_write
    recs = [(r.level, r.message) for r in p.log_records() if r.context_id == s.context_id
            and not r.message.startswith("go_http: ")]
    assert recs == [(pw.LogLevel.INFO, "first line"), (pw.LogLevel.INFO, "second"), (pw.LogLevel.INFO, "no newline")]


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_go_panic_gives_the_failure_policy_and_one_record_per_line(traps_survive, host, policy):
    p = load(host, failure_policy=policy)
    request(p, "/before")
    s = p.http_stream()
    a = s.request_headers([(":path", "/go-panic"), (":method", "GET")], True)
    assert isinstance(s.error, pw.PluginCrash) and isinstance(s.error.cause, pw.Trap)  # runtime.abort
    if policy == "fail_closed":
        assert a is Action.PAUSE and s.local_response.status == 503
    else:
        assert a is Action.CONTINUE and s.local_response is None
    s.close()
    recs = p.log_records(pw.LogLevel.ERROR)
    # The host's own failure record comes last: one record (plugin, callback, cause and the wasm
    # backtrace), not split. Everything before it is what the plugin wrote.
    failure = recs[-1]
    assert "proxy_on_request_headers" in failure.message and "go_http" in failure.message
    assert sum("failed in" in r.message for r in recs) == 1
    errors = [r.message for r in recs[:-1]]
    # The Go runtime prints the panic in many fd_write calls per line; each line is one record.
    assert errors[0] == "panic: go_http: panic on /go-panic"
    assert "goroutine 1 [running]:" in errors
    assert any(m.startswith("main.proxyOnRequestHeaders(") for m in errors)
    assert any(m.startswith("\tpwvm.test/go_http/main.go:") for m in errors)
    assert all("\n" not in m for m in errors)
    # the panic lines come before the failure record, all in the stream's context
    assert {r.context_id for r in recs} == {s.context_id}
    # after the reload backoff (1 s on the host's manual clock) the next stream is served by a fresh VM
    host.advance(1.0)
    s2 = request(p, "/after")
    assert s2.response.headers["x-pwvm-go-requests"] == "1" and s2.request.headers["x-pwvm-go"] == "1"
