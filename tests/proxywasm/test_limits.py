"""HostLimits: every store a plugin can grow in the host is bounded, and a plugin past a bound
gets a status code (or the stream gets what Envoy does at its buffer limit); refusals are counted.

Each bound is driven by a real plugin on every backend (c_http_all, c_tcp, c_bad_guest,
wat_uncompress), with small limits so that the tests stay fast.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action, HostLimits

from .conftest import REQUEST, plugin_path


@pytest.fixture
def make_host(engine: pw.Engine):
    """``make_host(**limits)``: a deterministic host on the backend under test with those HostLimits."""
    hosts = []

    def make(*, logger: Any = None, **kw: Any) -> pw.ProxyWasmHost:
        extra = {k: kw.pop(k) for k in ("http", "grpc") if k in kw}
        h = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(), limits=HostLimits(**kw),
                             logger=logger or pw.MemoryLogger(level=pw.LogLevel.TRACE), **extra)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


def load(host: pw.ProxyWasmHost, module: str, configuration: str = "", **config: Any) -> pw.Plugin:
    config.setdefault("vm_id", "limits")
    config.setdefault("root_id", "limits")
    return pw.Plugin(pw.PluginConfig(name=module, configuration=configuration, **config), plugin_path(module),
                     host=host)


def headers_run(p: pw.Plugin, test: str, *extra: tuple[str, str]) -> pw.HttpStream:
    s = p.http_stream()
    s.request_headers(REQUEST + [("x-pwvm-test", test), *extra], True)
    s.response_headers({":status": "200"}, True)
    return s


# ------------------------------------------------------------------------------------- the dataclass


def test_defaults_protect_and_none_means_no_limit():
    lim = HostLimits()
    for f in dataclasses.fields(HostLimits):
        assert isinstance(getattr(lim, f.name), int) and getattr(lim, f.name) > 0, f.name
    assert lim.body_buffer_max_bytes == 1 << 20  # Envoy's default per_connection_buffer_limit_bytes
    free = HostLimits.unlimited()
    assert all(getattr(free, f.name) is None for f in dataclasses.fields(HostLimits))
    assert HostLimits(queue_max_items=None).queue_max_items is None
    assert lim.with_(queue_max_items=3).queue_max_items == 3 and lim.queue_max_items == 10_000
    with pytest.raises(ValueError):
        HostLimits(body_buffer_max_bytes=0)
    with pytest.raises(TypeError):
        HostLimits(queue_max_items="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pw.ProxyWasmHost(limits={"queue_max_items": 1})  # type: ignore[arg-type]
    h = pw.ProxyWasmHost(limits=HostLimits(log_max_bytes=1000, queue_max_items=2, uncompress_max_bytes=5))
    assert h.logger.max_bytes == 1000 and h.queues.limits.queue_max_items == 2
    assert h.foreign_functions.uncompress_max_bytes == 5 and h.limit_hits() == {}
    assert pw.ProxyWasmHost().limits == HostLimits()


# ------------------------------------------------------------------------------------------ uncompress


def test_uncompress_output_is_capped(make_host):
    data = b"pwvm" * 25_000  # 100 kB that deflate to ~130 bytes
    host = make_host(uncompress_max_bytes=64 << 10)
    p = load(host, "wat_uncompress")
    with p.http_stream() as s:
        s.request_headers(REQUEST)
        assert s.request_body(zlib.compress(data), True) is Action.PAUSE
        assert s.local_response.status == 200 + pw.Status.SERIALIZATION_FAILURE
    assert host.limit_hits() == {"uncompress": 1}
    assert any("host limit uncompress" in m for m in p.logs)
    host2 = make_host(uncompress_max_bytes=len(data))  # exactly enough
    p2 = load(host2, "wat_uncompress")
    with p2.http_stream() as s:
        s.request_headers(REQUEST)
        s.request_body(zlib.compress(data), True)
        assert s.local_response.status == 200 and s.local_response.body == data
    with p2.http_stream() as s:  # data that does not inflate: SERIALIZATION_FAILURE, as Envoy
        s.request_headers(REQUEST)
        s.request_body(b"not zlib at all", True)
        assert s.local_response.status == 200 + pw.Status.SERIALIZATION_FAILURE
    assert host2.limit_hits() == {}


def test_uncompress_default_cap_stops_a_bomb(make_host):
    bomb = zlib.compress(bytes(32 << 20), 9)  # 32 KiB that inflate to 32 MiB
    host = make_host()
    p = load(host, "wat_uncompress")
    with p.http_stream() as s:
        s.request_headers(REQUEST)
        s.request_body(bomb, True)
        assert s.local_response.status == 200 + pw.Status.SERIALIZATION_FAILURE
    assert host.limit_hits() == {"uncompress": 1}


# -------------------------------------------------------------------------------------------- logger


def test_memory_logger_is_a_ring_in_bytes():
    log = pw.MemoryLogger(max_bytes=100)
    rec = pw.LogRecord(pw.LogLevel.INFO, "", "p", "", "", 0)
    for i in range(30):
        log.emit(rec._replace(message=f"line {i:04d}"))  # 9 characters each
    assert log.size_bytes <= 100 and len(log.records) == 11
    assert log.messages()[-1] == "line 0029" and log.messages()[0] == "line 0019"
    assert log.dropped == 19 and log.dropped_bytes == 19 * 9
    log.emit(rec._replace(message="x" * 500))
    assert log.messages() == ["x" * 100] and log.truncated == 1 and log.size_bytes == 100
    with pytest.raises(ValueError):
        pw.MemoryLogger(max_bytes=0)
    assert pw.MemoryLogger().max_bytes == HostLimits().log_max_bytes


def test_plugin_logs_stay_within_the_ring(make_host):
    log = pw.MemoryLogger(level=pw.LogLevel.TRACE, max_bytes=64 << 10)
    host = make_host(logger=log)
    p = load(host, "c_bad_guest")
    with p.http_stream() as s:
        s.request_headers(REQUEST + [("x-pwvm-bad", "huge_log")], True)
        assert s.request.headers["x-pwvm-bad-results"] == "log_1mib=0"
    # the 1 MiB line was cut to the ring's size, then made room for the next line: counted, not silent
    assert log.truncated == 1 and log.dropped_bytes >= 64 << 10 and log.size_bytes <= 64 << 10
    assert log.messages()[-1].startswith("c_bad_guest: huge_log context=")
    for _ in range(3):
        with p.http_stream() as s:
            s.request_headers(REQUEST + [("x-pwvm-bad", "huge_log")], True)
    assert log.size_bytes <= 64 << 10 and log.dropped >= 3  # older records went, counted


# ---------------------------------------------------------------------------------------- header maps


def test_header_map_pair_count(make_host):
    host = make_host(header_map_max_pairs=len(REQUEST) + 1)  # the request + x-pwvm-test fill it
    p = load(host, "c_http_all")
    s = headers_run(p, "headers", ("x-pwvm-remove", "1"))
    # full: add and replace-of-a-missing-name refused, remove fine
    assert f"c_http_all: headers pairs={len(REQUEST) + 2} add=2 replace=2 remove=0" in p.logs
    assert "x-pwvm-added" not in s.request.headers and "x-pwvm-remove" not in s.request.headers
    assert host.limit_hits()["header_map"] >= 2
    s.close()


def test_header_map_bytes(make_host):
    base = sum(len(k) + len(v) for k, v in REQUEST) + len("x-pwvm-test") + len("headers")
    host = make_host(header_map_max_bytes=base + 5)
    p = load(host, "c_http_all")
    s = headers_run(p, "headers", ("x-pwvm-replace", "r"))
    base += len("x-pwvm-replace") + 1
    # x-pwvm-added: 1 (13 bytes) does not fit; replacing "r" by "replaced" (+7) does not either
    assert f"c_http_all: headers pairs={len(REQUEST) + 2} add=2 replace=2 remove=0" in p.logs
    assert s.request.headers["x-pwvm-replace"] == "r"
    assert host.limit_hits()["header_map"] >= 2
    s.close()


# --------------------------------------------------------------------------------------------- bodies


def test_request_body_past_the_buffer_limit_is_413(make_host):
    host = make_host(body_buffer_max_bytes=1000)
    p = load(host, "c_http_all", "test=body")
    s = p.http_stream()
    assert s.request_headers(REQUEST) is Action.CONTINUE
    assert s.request_body(b"a" * 400) is Action.PAUSE  # the plugin buffers until end of stream
    assert s.request_body(b"b" * 400) is Action.PAUSE
    assert s.local_response is None and len(s.request.buffered) == 800
    assert s.request_body(b"c" * 400) is Action.PAUSE  # 1200 held > 1000
    lr = s.local_response
    assert lr.status == 413 and lr.details == "request_payload_too_large" and lr.body == b"Payload Too Large"
    assert s.request.buffered == b"" and s.request.body == b""
    assert s.request_body(b"d" * 5000, True) is Action.PAUSE and s.request.buffered == b""  # bounded after too
    s.close()
    assert host.limit_hits()["body_buffer"] >= 1
    assert any("host limit body_buffer" in m for m in p.logs)
    with p.http_stream() as s2:  # within the limit: the plugin's body rewrite as usual
        s2.request_headers(REQUEST)
        s2.request_body(b"hello ")
        assert s2.request_body(b"world", True) is Action.CONTINUE and s2.request.body == b"HELLO WORLD"


def test_response_body_past_the_limit_resets_a_started_response(make_host):
    host = make_host(body_buffer_max_bytes=1000)
    p = load(host, "c_http_all", "test=body")
    s = p.http_stream()
    s.request_headers(REQUEST + [("x-pwvm-body-target", "response")], True)
    assert s.response_headers({":status": "200"}) is Action.CONTINUE  # headers went downstream
    assert s.response_body(b"x" * 600) is Action.PAUSE
    assert s.response_body(b"y" * 600) is Action.PAUSE
    assert s.reset and s.local_response is None and s.response.buffered == b""  # as Envoy: reset, not 500
    s.close()
    assert host.limit_hits()["body_buffer"] == 1


def test_response_body_past_the_limit_is_500_while_its_headers_are_held(make_host):
    host = make_host(body_buffer_max_bytes=1000)
    p = load(host, "wat_hold")
    s = p.http_stream()
    assert s.request_headers(REQUEST, True) is Action.PAUSE
    assert s.response_headers({":status": "200"}) is Action.PAUSE  # held: nothing went downstream
    assert s.response_body(b"x" * 1000) is Action.PAUSE and s.local_response is None  # at the limit
    assert s.response_body(b"y") is Action.PAUSE
    lr = s.local_response
    assert lr.status == 500 and lr.details == "response_payload_too_large" and not s.reset
    assert s.response.buffered == b""
    s.close()
    s2 = p.http_stream()  # the request side of the same plugin: 413
    s2.request_headers(REQUEST)
    assert s2.request_body(b"z" * 1001) is Action.PAUSE and s2.local_response.status == 413
    s2.close()
    assert host.limit_hits() == {"body_buffer": 2}


def test_default_body_limit_is_envoys_1_mib(make_host):
    host = make_host()
    p = load(host, "wat_hold")
    s = p.http_stream()
    s.request_headers(REQUEST)
    for _ in range(4):
        assert s.request_body(b"q" * (256 << 10)) is Action.PAUSE
    assert s.local_response is None and len(s.request.buffered) == 1 << 20
    s.request_body(b"q")
    assert s.local_response.status == 413
    s.close()


def test_set_buffer_bytes_cannot_grow_past_the_limit(make_host):
    host = make_host(body_buffer_max_bytes=8)
    p = load(host, "c_http_all", "test=body")
    with p.http_stream() as s:
        s.request_headers(REQUEST + [("x-pwvm-body-mode", "prepend")])
        assert s.request_body(b"abcdefgh", True) is Action.CONTINUE
        assert s.request.body == b"abcdefgh"  # "<<" refused: 10 bytes > 8
    assert "c_http_all: request body prepend status=2" in p.logs
    assert host.limit_hits() == {"body_buffer": 1}


def test_tcp_data_past_the_limit_closes_the_connection(make_host):
    host = make_host(body_buffer_max_bytes=1000)
    p = load(host, "c_tcp", "line_mode=1")
    with p.tcp_stream() as s:
        assert s.downstream_data(b"a" * 600) is Action.PAUSE  # no newline yet: the plugin waits
        assert s.closed_by_host is None
        assert s.downstream_data(b"b" * 600) is Action.PAUSE
        assert s.closed_by_host == "buffer_limit" and s.downstream.buffered == b""
        assert s.downstream_data(b"c" * 5000) is Action.PAUSE and s.downstream.buffered == b""
    with p.tcp_stream() as s2:  # a line within the limit goes through
        s2.downstream_data(b"hello ")
        assert s2.downstream_data(b"world\n") is Action.CONTINUE and s2.downstream.data == b"HELLO WORLD\n"
    assert host.limit_hits() == {"body_buffer": 2}  # the overflow, and the chunk dropped after the close


# ------------------------------------------------------------------------------- shared data and queues


def test_shared_data_keys(make_host):
    host = make_host(shared_data_max_keys=1)
    p = load(host, "c_http_all")
    s = headers_run(p, "shared", ("x-pwvm-shared-key", "k1"))
    assert s.response.headers["x-pwvm-shared-set"] == "0"
    s = headers_run(p, "shared", ("x-pwvm-shared-key", "k2"))
    assert s.response.headers["x-pwvm-shared-set"] == "2"  # a second key does not fit
    assert s.response.headers["x-pwvm-shared-final"] == "!1"
    s = headers_run(p, "shared", ("x-pwvm-shared-key", "k1"))  # the existing key still updates
    assert s.response.headers["x-pwvm-shared-set"] == "0" and s.response.headers["x-pwvm-shared-value"] == "2"
    assert host.shared_data.items("limits") == {b"k1": b"2"}
    assert host.limit_hits() == {"shared_data": 2}  # k2's set, and its "stale" set (no CAS on a missing key)


def test_shared_data_value_and_total_bytes():
    sd = pw.SharedData(HostLimits(shared_data_max_value_bytes=10, shared_data_max_bytes=30))
    assert sd.set("v", b"a", b"x" * 10) is pw.Status.OK
    assert sd.set("v", b"b", b"x" * 11) is pw.Status.BAD_ARGUMENT
    assert sd.set("v", b"c", b"x" * 10) is pw.Status.OK  # 11 + 11 bytes held
    assert sd.set("v", b"d", b"x" * 8) is pw.Status.BAD_ARGUMENT  # 22 + 9 > 30
    assert sd.set("v", b"a", b"y") is pw.Status.OK and sd.size_bytes == 13  # shrinking frees room
    assert sd.set("v", b"d", b"x" * 8) is pw.Status.OK
    sd.delete("v", b"d")
    assert sd.size_bytes == 13 and sd.refused == 2


def test_queue_items(make_host):
    host = make_host(queue_max_items=1)
    p = load(host, "c_http_all", "queue=jobs")
    s = headers_run(p, "queue", ("x-pwvm-queue-item", "one"))
    assert s.response.headers["x-pwvm-queue-enqueue"] == "0"
    s = headers_run(p, "queue", ("x-pwvm-queue-item", "two"))
    assert s.response.headers["x-pwvm-queue-enqueue"] == "2"  # full: refused, "one" kept
    assert host.queues.size("limits", "jobs") == 1
    host.run_until_idle(5)  # the root drains the queue
    assert "c_http_all: dequeued one" in p.logs and "c_http_all: dequeued two" not in p.logs
    s = headers_run(p, "queue", ("x-pwvm-queue-item", "three"))
    assert s.response.headers["x-pwvm-queue-enqueue"] == "0"
    assert host.limit_hits() == {"queue": 1}


def test_queue_count_and_names(make_host):
    host = make_host(queues_max=1)
    p1 = load(host, "c_http_all", "queue=a", vm_id="one")
    assert any(m.startswith("c_http_all: registered queue a token=") and m.endswith("status=0") for m in p1.logs)
    p2 = load(host, "c_http_all", "queue=b", vm_id="two")  # a second queue does not fit
    assert "c_http_all: registered queue b token=0 status=2" in p2.logs
    assert host.limit_hits() == {"queues": 1}
    host2 = make_host()  # the default name bound: 1 KiB
    p3 = load(host2, "c_http_all", "queue=" + "n" * 1025)
    assert any(m.startswith("c_http_all: registered queue nnn") and m.endswith("token=0 status=2") for m in p3.logs)
    assert host2.limit_hits() == {"name": 1}


def test_queue_bytes():
    q = pw.SharedQueues(HostLimits(queue_max_bytes=10))
    tok = q.register("v", "q", None)
    assert q.enqueue(tok, b"x" * 6) is pw.Status.OK
    assert q.enqueue(tok, b"y" * 5) is pw.Status.BAD_ARGUMENT
    assert q.dequeue(tok) == (pw.Status.OK, b"x" * 6)
    assert q.enqueue(tok, b"y" * 10) is pw.Status.OK and q.refused == 1


# ------------------------------------------------------------------------------------------- callouts


def test_callout_response_too_large_is_a_failed_call(make_host):
    big = b"z" * 2000
    http = pw.CallbackHttpDispatcher(lambda req: (200, {}, big))
    host = make_host(callout_response_max_bytes=1000, http=http)
    p = load(host, "c_http_all", "test=callout")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE
        assert s.wait(10)
        assert s.local_response.status == 503 and s.local_response.details == "pwvm_callout_failed"
    assert host.limit_hits() == {"callout_response": 1}
    http.handler = lambda req: (200, {}, b"z" * 1000)  # at the limit: delivered
    with p.http_stream() as s:
        s.request_headers(REQUEST)
        assert s.wait(10) and s.local_response is None
        assert s.request.headers["x-pwvm-callout-body"] == "z" * 256  # (the plugin cuts values to 256)


def test_pending_calls(make_host):
    http = pw.CallbackHttpDispatcher(lambda req: (200, {}, b"ok"))
    host = make_host(max_pending_calls=1, http=http)
    p = load(host, "c_http_all", "test=callout")
    s1 = p.http_stream()
    assert s1.request_headers(REQUEST) is Action.PAUSE  # its response waits for the next poll
    s2 = p.http_stream()
    assert s2.request_headers(REQUEST) is Action.CONTINUE
    assert s2.request.headers["x-pwvm-callout-dispatch"] == "2"
    assert s1.wait(10) and s1.request.headers["x-pwvm-callout-body"] == "ok"
    s1.close()
    s2.close()
    with p.http_stream() as s3:  # room again
        assert s3.request_headers(REQUEST) is Action.PAUSE and s3.wait(10)
    assert host.limit_hits() == {"pending_calls": 1}


class _BigGrpc(pw.GrpcDispatcher):
    """Answers every unary call at once with one message of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size

    def call(self, upstream, service, method, metadata, message, timeout_ms, events):
        events.initial_metadata(pw.HeaderMap())
        events.message(b"m" * self.size)
        events.trailing_metadata(pw.HeaderMap())
        events.close(0, "")
        return pw.GrpcHandle()


def test_grpc_message_too_large_closes_the_call(make_host):
    host = make_host(callout_response_max_bytes=1000, grpc=_BigGrpc(1001))
    p = load(host, "c_http_all", "test=grpc")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE
        assert s.wait(10)
        h = s.request.headers
        assert h["x-pwvm-grpc-status"] == "8" and h["x-pwvm-grpc-messages"] == "0"  # RESOURCE_EXHAUSTED
    assert host.limit_hits() == {"callout_response": 1}
    host2 = make_host(callout_response_max_bytes=1000, grpc=_BigGrpc(1000))
    p2 = load(host2, "c_http_all", "test=grpc")
    with p2.http_stream() as s:
        s.request_headers(REQUEST)
        assert s.wait(10) and s.request.headers["x-pwvm-grpc-status"] == "0"
        assert s.request.headers["x-pwvm-grpc-messages"] == "1"


def test_properties_a_plugin_sets(make_host):
    host = make_host(properties_max_bytes=20)
    p = load(host, "c_http_all")
    s = headers_run(p, "properties", ("x-pwvm-prop-value", "v1"))
    assert s.response.headers["x-pwvm-prop-set"] == "0" and s.response.headers["x-pwvm-prop-user"] == "v1"
    s.close()
    s = headers_run(p, "properties", ("x-pwvm-prop-value", "v" * 12))  # pwvm_user + 12 > 20
    assert s.response.headers["x-pwvm-prop-set"] == "2"
    s.close()
    assert host.limit_hits() == {"properties": 1}


# -------------------------------------------------------------------------------------- metrics, ticks


def test_metrics_count_and_histogram_values(make_host):
    host = make_host(metrics_max=2, histogram_max_values=2)
    p = load(host, "c_http_all")
    for v in ("1", "2", "3"):
        s = headers_run(p, "metrics", ("x-pwvm-metric-value", v))
        assert s.response.headers["x-pwvm-metric-define"] == "0,0,2"  # the histogram does not fit
        s.close()
    assert host.limit_hits() == {"metrics": 1}  # defined once per root: one refusal
    host2 = make_host(histogram_max_values=2)
    p2 = load(host2, "c_http_all")
    for v in ("1", "2", "3"):
        headers_run(p2, "metrics", ("x-pwvm-metric-value", v)).close()
    assert host2.metrics.snapshot()["pwvm_histogram"] == [2, 3]
    assert host2.metrics["pwvm_histogram"].dropped == 1


def test_metric_names(make_host):
    host = make_host(name_max_bytes=10)
    p = load(host, "c_http_all")
    s = headers_run(p, "metrics")
    assert s.response.headers["x-pwvm-metric-define"] == "2,0,2"  # pwvm_requests, pwvm_histogram too long
    s.close()
    assert host.limit_hits() == {"name": 2}


def test_tick_period_floor(make_host):
    host = make_host(tick_min_period_ms=10)
    p = load(host, "c_http_all", "tick_ms=1\ntick_max=5")
    assert host.advance(ms=9) == 0  # 1 ms asked, raised to 10
    assert host.advance(ms=1) == 1 and "c_http_all: tick 1" in p.logs
    assert host.advance(ms=10) == 1
    assert host.limit_hits() == {"tick_period": 1}
    host2 = make_host(tick_min_period_ms=None)  # explicitly no floor
    load(host2, "c_http_all", "tick_ms=1\ntick_max=5")
    assert host2.advance(ms=3) == 3 and host2.limit_hits() == {}
