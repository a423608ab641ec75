"""HTTP callouts and gRPC: dispatch, pause, response on the root context, effective context, resume."""

from __future__ import annotations

import threading
from concurrent import futures

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST, plugin_path


def callout_plugin(host, upstream_conf=""):
    return pw.Plugin(pw.PluginConfig(name="callout", root_id="r", configuration="test=callout\n" + upstream_conf),
                     plugin_path("c_http_all"), host=host)


def test_callout_resumes_paused_request(engine):
    seen = []

    def handler(r: pw.HttpCallRequest):
        seen.append(r)
        return pw.HttpCallResponse(201, {"x-pwvm-callout-value": "v42"}, b"pong")

    host = pw.ProxyWasmHost(engine=engine, http=pw.CallbackHttpDispatcher(handler, {"pwvm_upstream"}),
                            clock=pw.ManualClock())
    p = callout_plugin(host)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE
        assert s.request.paused
        assert s.request_body(b"payload", True) is Action.CONTINUE  # body arrives while headers wait
        assert s.request.body == b"" and s.request.buffered == b"payload"
        assert s.wait(5)
        h = s.request.headers
        assert h["x-pwvm-callout-status"] == "201" and h["x-pwvm-callout-value"] == "v42"
        assert h["x-pwvm-callout-body"] == "pong" and h["x-pwvm-callout-code"] == "0"
        assert h["x-pwvm-callout-headers"] == "2" and h["x-pwvm-callout-trailers"] == "0"
        assert s.request.body == b"payload" and not s.request.paused
    r = seen[0]
    assert (r.upstream, r.method, r.path, r.authority, r.body) == ("pwvm_upstream", "POST", "/callout", "pwvm.test",
                                                                   b"ping")
    assert r.headers["x-pwvm-context"] == str(s.context_id)


def test_callout_through_httpx_mock_transport(engine):
    httpx = pytest.importorskip("httpx")

    def handle(request):
        assert request.url == "http://auth.local:8080/callout"
        assert request.headers["host"] == "pwvm.test"
        return httpx.Response(200, headers={"x-pwvm-callout-value": "ok"}, content=b"from-httpx")

    http = pw.HttpxDispatcher({"authz": "http://auth.local:8080"}, transport=httpx.MockTransport(handle))
    host = pw.ProxyWasmHost(engine=engine, http=http)
    p = callout_plugin(host, "callout_upstream=authz")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE
        assert s.wait(10)
        assert s.request.headers["x-pwvm-callout-body"] == "from-httpx"
        assert s.request.headers["x-pwvm-callout-status"] == "200"
    host.close()


def test_callout_against_a_real_loopback_server(engine):
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("content-length", 0))
            body = self.rfile.read(n)
            self.send_response(200)
            self.send_header("x-pwvm-callout-value", body.decode())
            self.send_header("content-length", "4")
            self.end_headers()
            self.wfile.write(b"real")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        host = pw.ProxyWasmHost(engine=engine, upstreams={"pwvm_upstream": f"http://127.0.0.1:{srv.server_port}"})
        p = callout_plugin(host)
        with p.http_stream() as s:
            assert s.request_headers(REQUEST) is Action.PAUSE
            assert s.wait(10)
            assert s.request.headers["x-pwvm-callout-value"] == "ping"
            assert s.request.headers["x-pwvm-callout-body"] == "real"
        host.close()
    finally:
        srv.shutdown()


def test_failed_callout_sends_503(engine):
    host = pw.ProxyWasmHost(engine=engine, http=pw.CallbackHttpDispatcher(lambda r: None))
    p = callout_plugin(host)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE
        host.poll()
        assert s.local_response.status == 503 and s.local_response.details == "pwvm_callout_failed"


def test_unknown_upstream_and_missing_pseudo_headers(engine):
    host = pw.ProxyWasmHost(engine=engine, http=pw.CallbackHttpDispatcher(lambda r: (200, {}, b""), {"known"}))
    p = callout_plugin(host)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.CONTINUE
        assert s.request.headers["x-pwvm-callout-dispatch"] == "2"  # BAD_ARGUMENT


def test_response_for_a_closed_stream_is_dropped_by_the_plugin(engine):
    host = pw.ProxyWasmHost(engine=engine, http=pw.CallbackHttpDispatcher(lambda r: (200, {}, b"")))
    p = callout_plugin(host)
    s = p.http_stream()
    s.request_headers(REQUEST)
    cid = s.context_id
    s.close()
    host.poll()
    assert f"c_http_all: callout response for gone context={cid}" in p.logs


def test_tick_dispatches_a_callout(engine):
    calls = []
    host = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(),
                            http=pw.CallbackHttpDispatcher(lambda r: calls.append(r.path) or (204, {}, b"")))
    p = pw.Plugin(pw.PluginConfig(name="tick", vm_id="t", configuration="tick_ms=100\ntick_max=2\n"
                                  "tick_callout_upstream=pwvm_upstream"), plugin_path("c_http_all"), host=host)
    assert host.advance(ms=99) == 0
    host.advance(ms=1)
    assert calls == ["/tick"]
    assert host.shared_data.get("t", b"pwvm.tick.callout")[0] == b"204"
    host.advance(ms=1000)
    assert calls == ["/tick", "/tick"]  # stopped after tick_max
    assert "c_http_all: ticks stopped after 2" in p.logs


# ---------------------------------------------------------------------------------------------- gRPC


@pytest.fixture(scope="module")
def grpc_server():
    grpc = pytest.importorskip("grpc")

    def say(request: bytes, context):
        context.send_initial_metadata((("x-init", "1"),))
        context.set_trailing_metadata((("x-trail", "1"), ("x-more", "2")))
        return b"echo:" + request

    def chat(it, context):
        for m in it:
            yield b"got:" + m

    handler = grpc.method_handlers_generic_handler("pwvm.test.Echo", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def grpc_plugin(engine, target, extra=""):
    host = pw.ProxyWasmHost(engine=engine, grpc_upstreams={"pwvm_grpc": target})
    return host, pw.Plugin(pw.PluginConfig(name="grpc", vm_id="g", configuration="test=grpc\n" + extra),
                           plugin_path("c_http_all"), host=host)


def test_grpc_unary_call(engine, grpc_server):
    host, p = grpc_plugin(engine, grpc_server)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-grpc-message", "hi")]) is Action.PAUSE
        assert s.wait(10)
        h = s.request.headers
        assert h["x-pwvm-grpc-dispatch"] == "0" and h["x-pwvm-grpc-status"] == "0"
        assert h["x-pwvm-grpc-messages"] == "1" and h["x-pwvm-grpc-last-message"] == "echo:hi"
        assert h["x-pwvm-grpc-initial-metadata"] == "1" and h["x-pwvm-grpc-trailing-metadata"] == "2"
        assert h["x-pwvm-grpc-get-status"] == "0"
    host.close()


def test_grpc_stream(engine, grpc_server):
    host, p = grpc_plugin(engine, grpc_server, "grpc_method=Chat")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-grpc-mode", "stream")]) is Action.PAUSE
        assert s.wait(10)
        h = s.request.headers
        assert h["x-pwvm-grpc-send"] == "0,0" and h["x-pwvm-grpc-messages"] == "2"
        assert h["x-pwvm-grpc-last-message"] == "got:end" and h["x-pwvm-grpc-status"] == "0"
    host.close()


def test_grpc_cancel_close_and_errors(engine, grpc_server):
    host, p = grpc_plugin(engine, grpc_server)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-grpc-mode", "cancel")]) is Action.CONTINUE
        assert s.request.headers["x-pwvm-grpc-cancel"] == "0"
    with p.http_stream() as s:
        s.request_headers(REQUEST + [("x-pwvm-grpc-mode", "close")])
        assert s.request.headers["x-pwvm-grpc-close"] == "0"
    host.run_until_idle(5)
    host2, p2 = grpc_plugin(engine, grpc_server, "grpc_method=Missing")
    with p2.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE
        assert s.wait(10)
        assert s.request.headers["x-pwvm-grpc-status"] == "12"  # UNIMPLEMENTED
    host3, p3 = grpc_plugin(engine, grpc_server, "grpc_upstream=nowhere")
    with p3.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.CONTINUE
        assert s.request.headers["x-pwvm-grpc-dispatch"] == "4"  # PARSE_FAILURE for an unknown upstream
    for h in (host, host2, host3):
        h.close()
