"""ProxyWasmMiddleware over real HTTP: a uvicorn server on 127.0.0.1 serving a Starlette app behind
the middleware, httpx as the client, the c_http_all test plugin (tests/plugins/README.md says
what each of its tests does) on every backend."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import proxywasm_vm as pw
from proxywasm_vm.asgi import ProxyWasmMiddleware

from .conftest import plugin_file

GUARD = 30.0  # "did not hang" guard of every wait (seconds)


class App:
    """The Starlette application behind the middleware, recording what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.first_chunk = threading.Event()
        self.client_got_first = threading.Event()
        self.request_chunks: list[bytes] = []
        self.app = Starlette(routes=[
            Route("/echo", self.echo, methods=["GET", "POST"]),
            Route("/shout", self.shout, methods=["POST"]),
            Route("/stream-in", self.stream_in, methods=["POST"]),
            Route("/stream-out", self.stream_out),
        ])

    async def echo(self, request: Request) -> Response:
        self.calls.append(request.url.path)
        body = await request.body()
        return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                             "headers": dict(request.headers), "body": body.decode("latin-1")},
                            headers={"x-pwvm-drop": "yes", "x-app": "1"})

    async def shout(self, request: Request) -> Response:
        """Answers "you said: <body>" (streamed: no content-length, a plugin may change its length)."""
        self.calls.append(request.url.path)
        body = await request.body()

        async def gen():
            yield b"you said: "
            yield body

        return StreamingResponse(gen(), media_type="text/plain")

    async def stream_in(self, request: Request) -> Response:
        self.calls.append(request.url.path)
        async for chunk in request.stream():
            if chunk:
                self.request_chunks.append(chunk)
                self.first_chunk.set()
        return PlainTextResponse(f"{len(self.request_chunks)} chunks")

    async def stream_out(self, request: Request) -> Response:
        self.calls.append(request.url.path)

        async def gen():
            yield b"first "
            # the second chunk only once the client holds the first: a middleware that buffered
            # the response would never let the client see it
            seen = await asyncio.to_thread(self.client_got_first.wait, GUARD)
            yield b"second" if seen else b"(client never saw the first chunk)"

        return StreamingResponse(gen(), media_type="text/plain")


def load(host: pw.ProxyWasmHost, configuration: str, name: str = "all", module: str = "c_http_all",
         **config: Any) -> pw.Plugin:
    return pw.Plugin(pw.PluginConfig(name=name, configuration=configuration, **config), plugin_file(module),
                     host=host)


def front(serve, plugins: list[pw.Plugin], app: App | None = None, **options: Any) -> tuple[Any, App]:
    app = app or App()
    server = serve(ProxyWasmMiddleware(app.app, plugins=plugins, **options))
    return server, app


def closed_contexts(host: pw.ProxyWasmHost) -> tuple[set[str], set[str]]:
    """Context ids of c_http_all's streams that saw request headers, and of those that ended (on_log)."""
    seen, ended = set(), set()
    for r in getattr(host.logger, "records", ()):
        m = re.search(r"request headers context=(\d+)", r.message)
        if m:
            seen.add((r.plugin, m.group(1)))
        m = re.search(r"on_log context=(\d+)", r.message)
        if m:
            ended.add((r.plugin, m.group(1)))
    return seen, ended


def test_headers_rewritten_both_ways(serve, make_host):
    host = make_host()
    server, app = front(serve, [load(host, "test=headers")])
    r = httpx.get(server.url + "/echo?q=1", headers={"x-pwvm-remove": "gone", "x-pwvm-echo": "hi"}, timeout=GUARD)
    assert r.status_code == 200
    seen = r.json()
    h = seen["headers"]
    assert h["x-pwvm-added"] == "1" and h["x-pwvm-replace"] == "replaced" and "x-pwvm-remove" not in h
    assert h["x-pwvm-echoed"] == "hi"
    # the plugin saw Envoy's head: pseudo-headers first, Host as :authority
    assert h["x-pwvm-header-names"].startswith(":authority,:path,:method,:scheme,")
    assert h["host"] == f"127.0.0.1:{server.port}"
    assert seen["path"] == "/echo" and seen["query"] == "q=1"
    # response: rewritten with proxy_set_header_map_pairs, minus x-pwvm-drop
    assert "x-pwvm-drop" not in r.headers and r.headers["x-app"] == "1" and "x-pwvm-set-pairs" in r.headers
    assert app.calls == ["/echo"]


def test_local_response_401_short_circuits_the_app(serve, make_host):
    host = make_host()
    server, app = front(serve, [load(host, "test=auth")])
    r = httpx.post(server.url + "/echo", content=b"payload", timeout=GUARD)
    assert r.status_code == 401 and r.text == "unauthorized"
    assert r.headers["www-authenticate"] == 'Bearer realm="pwvm"'
    assert app.calls == []  # the app never ran
    r = httpx.get(server.url + "/echo", headers={"authorization": "Bearer wrong"}, timeout=GUARD)
    assert r.status_code == 403 and r.text == "forbidden" and app.calls == []
    r = httpx.get(server.url + "/echo", headers={"authorization": "Bearer secret"}, timeout=GUARD)
    assert r.status_code == 200 and r.json()["headers"]["x-pwvm-auth"] == "ok"
    assert app.calls == ["/echo"]


def test_body_rewritten_in_request_and_response(serve, make_host):
    host = make_host()
    server, app = front(serve, [load(host, "test=body")])

    def chunks():
        yield b"hello "
        yield b"wor"
        yield b"ld"

    r = httpx.post(server.url + "/shout", content=chunks(), timeout=GUARD,
                   headers={"x-pwvm-body-target": "both", "x-pwvm-body-mode": "replace"})
    assert r.status_code == 200
    # the request reached the app upper-cased; its answer was upper-cased on the way back
    assert r.text == "YOU SAID: HELLO WORLD"
    logs = "\n".join(host.logger.records[i].message for i in range(len(host.logger.records)))
    assert "request body replaced bytes=11" in logs and "response body replaced bytes=21" in logs


def test_chain_order_request_in_list_order_response_in_reverse(serve, make_host):
    host = make_host()
    a = load(host, "test=body\nbody_prefix=[A]", name="a")
    b = load(host, "test=body\nbody_prefix=[B]", name="b")
    server, app = front(serve, [a, b])
    r = httpx.post(server.url + "/shout", content=b"x", timeout=GUARD,
                   headers={"x-pwvm-body-target": "both", "x-pwvm-body-mode": "prepend"})
    assert r.status_code == 200
    # request: a, then b, then the app; response: the app, then b, then a
    assert r.text == "[A][B]you said: [B][A]x"


@pytest.mark.parametrize("plugin_thread", [None, True], ids=["default", "thread"])
def test_callout_to_a_second_server_resumes_the_request(serve, make_host, plugin_thread):
    hits: list[tuple[str, str, bytes]] = []
    release = threading.Event()

    async def upstream(request: Request) -> Response:
        hits.append((request.method, request.url.path, await request.body()))
        if request.headers.get("x-pwvm-context") and not release.is_set():
            await asyncio.to_thread(release.wait, GUARD)
        return PlainTextResponse("pong", headers={"x-pwvm-callout-value": "42"})

    side = serve(Starlette(routes=[Route("/callout", upstream, methods=["POST"])]))
    host = make_host(upstreams={"pwvm_upstream": side.url})
    server, app = front(serve, [load(host, "")], plugin_thread=plugin_thread)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD) as c:
            paused = asyncio.create_task(c.get("/echo", headers={"x-pwvm-test": "callout"}))
            for _ in range(3000):  # until the callout is in flight
                if hits:
                    break
                await asyncio.sleep(0.01)
            # while that request waits on its callout, the server goes on serving others
            other = await c.get("/echo", headers={"x-pwvm-test": "headers"})
            assert not paused.done()
            release.set()
            return await paused, other

    paused, other = asyncio.run(scenario())
    assert other.status_code == 200 and other.json()["headers"]["x-pwvm-added"] == "1"
    assert paused.status_code == 200
    h = paused.json()["headers"]
    assert h["x-pwvm-callout-status"] == "200" and h["x-pwvm-callout-value"] == "42"
    assert h["x-pwvm-callout-body"] == "pong"
    assert hits[0][:3] == ("POST", "/callout", b"ping")
    assert app.calls == ["/echo", "/echo"]


def test_callout_failure_answers_503(serve, make_host):
    host = make_host(upstreams={"pwvm_upstream": "http://127.0.0.1:9"})  # nothing listens there
    server, app = front(serve, [load(host, "test=callout")])
    r = httpx.get(server.url + "/echo", timeout=GUARD)
    assert r.status_code == 503 and r.text == "callout failed" and app.calls == []


@pytest.mark.parametrize("plugin_thread", [None, True], ids=["default", "thread"])
@pytest.mark.parametrize("policy", ["fail_closed", "fail_open", "raise"])
def test_trapping_plugin_follows_its_failure_policy(serve, make_host, policy, plugin_thread):
    host = make_host()
    trap = load(host, "h", name="trap", module="wat_trap_in", failure_policy=policy)  # traps in request headers
    server, app = front(serve, [trap], plugin_thread=plugin_thread)
    for _ in range(2):  # the failing stream, then one while the VM waits for its reload
        r = httpx.get(server.url + "/echo", timeout=GUARD)
        if policy == "fail_closed":
            assert r.status_code == 503
        elif policy == "raise":  # PluginCrash reaches the server, which answers 500
            assert r.status_code == 500
        else:
            assert r.status_code == 200 and r.json()["path"] == "/echo"
    assert app.calls == (["/echo", "/echo"] if policy == "fail_open" else [])
    assert trap.stats()["vm_failed"] >= 1


def test_request_body_streams_through_unbuffered(serve, make_host):
    host = make_host()
    server, app = front(serve, [load(host, "test=body")])  # body callbacks run, and never pause

    async def scenario() -> httpx.Response:
        async def chunks():
            yield b"one"
            # the second chunk only once the app got the first: buffering would stall here
            seen = await asyncio.to_thread(app.first_chunk.wait, GUARD)
            yield b"two" if seen else b"(app never saw the first chunk)"

        async with httpx.AsyncClient(timeout=GUARD) as c:
            return await c.post(server.url + "/stream-in", content=chunks(),
                                headers={"x-pwvm-body-mode": "none"})

    r = asyncio.run(scenario())
    assert r.status_code == 200
    assert app.request_chunks == [b"one", b"two"]


def test_response_body_streams_through_unbuffered(serve, make_host):
    host = make_host()
    server, app = front(serve, [load(host, "test=body")])
    got = []
    with httpx.stream("GET", server.url + "/stream-out", timeout=GUARD,
                      headers={"x-pwvm-body-target": "response", "x-pwvm-body-mode": "none"}) as r:
        for chunk in r.iter_raw():
            got.append(chunk)
            app.client_got_first.set()
    assert b"".join(got) == b"first second"
    assert any("response body size=6 eos=0" in m for m in (x.message for x in host.logger.records))


@pytest.mark.parametrize("prop,expected", [
    ("request.method", "GET"), ("request.path", "/echo?x=1"), ("request.scheme", "http"),
    ("request.protocol", "HTTP/1.1"), ("request.host", None), ("source.address", None),
    ("destination.address", None)])
def test_properties_come_from_the_scope(serve, make_host, prop, expected):
    host = make_host()
    server, app = front(serve, [load(host, "test=properties")])
    with httpx.Client(timeout=GUARD) as c:
        r = c.get(server.url + "/echo?x=1", headers={"x-pwvm-prop-get": prop})
        assert r.status_code == 200
        value = r.headers["x-pwvm-prop-get-result"]
        if prop == "source.address":
            assert re.fullmatch(r"127\.0\.0\.1:\d+", value), value
        elif prop in ("destination.address", "request.host"):
            assert value == f"127.0.0.1:{server.port}"
        else:
            assert value == expected


def test_streams_end_when_the_app_raises_or_the_client_answer_is_local(serve, make_host):
    host = make_host()
    plugin = load(host, "test=headers")

    async def broken(scope, receive, send):
        if scope["type"] == "http":
            raise RuntimeError("the app fails")

    server = serve(ProxyWasmMiddleware(broken, plugins=[plugin]), lifespan="off")
    r = httpx.get(server.url + "/", timeout=GUARD)
    assert r.status_code == 500  # uvicorn's answer to an app that raised before responding
    seen, ended = closed_contexts(host)
    assert seen and seen <= ended  # every stream of the plugin ended (on_log ran)


@pytest.mark.parametrize("plugin_thread", [False, True], ids=["loop", "thread"])
def test_lifespan_and_websocket_scopes_pass_through(serve, make_host, plugin_thread):
    host = make_host()
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                events.append(m["type"])
                await send({"type": m["type"] + ".complete"})
                if m["type"] == "lifespan.shutdown":
                    return
        await Response("ok")(scope, receive, send)

    mw = ProxyWasmMiddleware(app, plugins=[load(host, "test=headers")], plugin_thread=plugin_thread)
    server = serve(mw)
    assert httpx.get(server.url + "/", timeout=GUARD).text == "ok"
    worker = mw._thread._worker
    assert worker is not None and worker._wake in host._wake_listeners
    if plugin_thread:
        assert worker.thread.is_alive()
    server.stop()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    # at shutdown the worker ended: its thread, or on the loop its host wake-ups
    assert mw._thread._worker is None and worker._wake not in host._wake_listeners
    if plugin_thread:
        assert not worker.thread.is_alive()


def test_a_fastapi_app_with_add_middleware(serve, make_host):
    from fastapi import FastAPI

    host = make_host()
    api = FastAPI()
    api.add_middleware(ProxyWasmMiddleware, plugins=[load(host, "test=auth")])

    @api.get("/hello")
    def hello() -> dict:
        return {"hello": "world"}

    server = serve(api)
    assert httpx.get(server.url + "/hello", timeout=GUARD).status_code == 401
    r = httpx.get(server.url + "/hello", headers={"authorization": "Bearer secret"}, timeout=GUARD)
    assert r.status_code == 200 and r.json() == {"hello": "world"}


def test_request_body_past_the_host_bound_gets_413(serve, make_host):
    host = make_host(limits=pw.HostLimits(body_buffer_max_bytes=1000))
    server, app = front(serve, [load(host, "test=body")])  # replace: the plugin buffers the whole body

    def logged(text: str) -> bool:
        return any(text in r.message for r in host.logger.records)

    async def scenario() -> httpx.Response:
        async def chunks():
            yield b"x" * 600
            # the rest once the plugin holds the first part (paused, buffering): then past the bound
            for _ in range(3000):
                if logged("request body size=600 eos=0"):
                    break
                await asyncio.sleep(0.01)
            yield b"x" * 5000

        async with httpx.AsyncClient(timeout=GUARD) as c:
            return await c.post(server.url + "/shout", content=chunks(), headers={"x-pwvm-body-mode": "replace"})

    r = asyncio.run(scenario())
    assert r.status_code == 413  # (the app had started: its answer never went out)
    assert host.limit_hits().get("body_buffer", 0) >= 1
    # under the bound, the same request goes through
    r = httpx.post(server.url + "/shout", content=b"x" * 500, headers={"x-pwvm-body-mode": "replace"},
                   timeout=GUARD)
    assert r.status_code == 200 and r.text == "you said: " + "X" * 500


def test_response_body_past_the_bound_after_its_head_resets(serve, make_host):
    host = make_host(limits=pw.HostLimits(body_buffer_max_bytes=1000))
    server, app = front(serve, [load(host, "test=body")])
    with pytest.raises(httpx.HTTPError):  # the head went out: the connection is closed mid-body
        r = httpx.post(server.url + "/shout", content=b"y" * 5000, timeout=GUARD,
                       headers={"x-pwvm-body-target": "response", "x-pwvm-body-mode": "replace"})
        r.raise_for_status()
    assert host.limit_hits().get("body_buffer", 0) >= 1


def test_a_plugin_that_never_resumes_gets_envoys_idle_timeout(serve, make_host):
    release = threading.Event()

    async def upstream(request: Request) -> Response:
        await asyncio.to_thread(release.wait, GUARD)
        return PlainTextResponse("late")

    side = serve(Starlette(routes=[Route("/callout", upstream, methods=["POST"])]))
    host = make_host(upstreams={"pwvm_upstream": side.url})
    server, app = front(serve, [load(host, "test=callout\ncallout_timeout_ms=60000")], stream_idle_timeout=0.5)
    try:
        r = httpx.get(server.url + "/echo", timeout=GUARD)
    finally:
        release.set()
    assert r.status_code == 408 and r.text == "stream timeout" and app.calls == []


def test_a_stream_reset_by_the_plugin_never_reaches_the_app(serve, make_host):
    host = make_host()
    server, app = front(serve, [load(host, "test=close")])
    r = httpx.get(server.url + "/echo", timeout=GUARD)
    assert r.status_code == 500  # an ASGI app cannot reset before its response: the server answers 500
    assert app.calls == []


def test_client_leaving_during_a_callout_ends_the_stream(serve, make_host):
    hits: list[str] = []
    release = threading.Event()

    async def upstream(request: Request) -> Response:
        hits.append(request.url.path)
        await asyncio.to_thread(release.wait, GUARD)
        return PlainTextResponse("late")

    side = serve(Starlette(routes=[Route("/callout", upstream, methods=["POST"])]))
    host = make_host(upstreams={"pwvm_upstream": side.url})
    server, app = front(serve, [load(host, "test=callout\ncallout_timeout_ms=60000")])

    async def leave() -> None:
        async with httpx.AsyncClient(timeout=GUARD) as c:
            req = asyncio.create_task(c.get(server.url + "/echo"))
            for _ in range(3000):
                if hits:
                    break
                await asyncio.sleep(0.01)
            req.cancel()  # the client goes away (its connection closes)
            with pytest.raises(asyncio.CancelledError):
                await req

    try:
        asyncio.run(leave())
        assert hits
        for _ in range(3000):  # the stream ends although its callout never answered
            seen, ended = closed_contexts(host)
            if seen and seen <= ended:
                break
            time.sleep(0.01)
        assert seen and seen <= ended
    finally:
        release.set()
    assert app.calls == []


def test_response_trailers_through_the_chain(make_host):
    """Response trailers (the ASGI ``http.response.trailers`` extension, which uvicorn does not
    offer: driven in-process) go through the plugins too."""
    host = make_host()
    mw = ProxyWasmMiddleware(None, plugins=[load(host, "test=headers")])  # type: ignore[arg-type]

    async def app(scope, receive, send):
        assert "http.response.trailers" in scope["extensions"]
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": False})

    mw.app = app
    sent: list[dict] = []

    async def scenario() -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(m):
            sent.append(m)

        scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/", "raw_path": b"/",
                 "query_string": b"", "scheme": "http", "headers": [(b"host", b"t")],
                 "extensions": {"http.response.trailers": {}}, "client": ("127.0.0.1", 1), "server": ("t", 80)}
        await asyncio.wait_for(mw(scope, receive, send), GUARD)

    asyncio.run(scenario())
    mw.close()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.trailers"]
    assert sent[0]["trailers"] is True and sent[1]["body"] == b"data" and sent[1]["more_body"] is True
    assert dict(sent[2]["headers"]) == {b"x-checksum": b"1", b"x-pwvm-trailer": b"1"}


@pytest.mark.parametrize("plugin_thread", [None, False, True])
def test_callbacks_run_on_the_loop_or_the_plugin_thread(serve, make_host, engine, plugin_thread):
    # The default: on the event loop (as an Envoy worker runs its filters) when the plugin runs in
    # this process; on the middleware's thread when each event is a round trip to a worker process.
    host = make_host()
    plugin = load(host, "test=headers")
    where: list[str] = []
    opened = plugin.http_stream

    def http_stream(*args: Any, **kw: Any) -> Any:
        where.append(threading.current_thread().name)
        return opened(*args, **kw)

    plugin.http_stream = http_stream  # type: ignore[method-assign]
    server, app = front(serve, [plugin], plugin_thread=plugin_thread)
    in_worker = engine.backend.isolation == "process"
    expected = in_worker if plugin_thread is None else plugin_thread
    assert server.server.config.app.plugin_thread is expected
    for _ in range(2):
        r = httpx.get(server.url + "/echo", timeout=GUARD)
        assert r.status_code == 200 and r.json()["headers"]["x-pwvm-added"] == "1"
    assert where == (["pwvm-asgi"] * 2 if expected else [server.thread.name] * 2)


def test_a_local_response_goes_through_the_response_callbacks_before_it(serve, make_host):
    """As Envoy: a local reply sent while the request goes through the chain passes the response
    callbacks of the plugin that sent it and of those before it (in reverse order), not of those
    after it (they never saw the request)."""
    host = make_host()
    a = load(host, "test=headers", name="a")  # response headers: rewritten, + x-pwvm-set-pairs: <pairs seen>
    solo = load(host, "", name="solo", module="as_solo_headers", root_id="pwvm_solo_headers")
    c = load(host, "test=misc", name="c")  # response headers: + x-pwvm-log-level
    server, app = front(serve, [a, solo, c])
    r = httpx.get(server.url + "/echo", timeout=GUARD)  # no answer: the app's response passes all three
    assert r.status_code == 200 and "x-pwvm-log-level" in r.headers and r.headers["x-pwvm-response"] == "1"
    assert "x-pwvm-set-pairs" in r.headers and app.calls == ["/echo"]

    r = httpx.get(server.url + "/echo", headers={"x-pwvm-deny": "1"}, timeout=GUARD)  # solo answers 403
    assert r.status_code == 403 and r.text == "denied" and app.calls == ["/echo"]
    assert r.headers["x-pwvm-response"] == "1"  # solo's own response callback saw its answer ...
    # ... then a's, which saw :status, content-type, content-length and solo's header
    assert r.headers["x-pwvm-set-pairs"] == "4"
    assert r.headers["content-type"] == "text/plain" and r.headers["content-length"] == "6"
    assert "x-pwvm-log-level" not in r.headers  # c never ran for this request


def test_a_failing_plugins_503_goes_through_the_plugins_before_it(serve, make_host):
    """Envoy's Wasm filter that failed (fail_closed) skips its own response callbacks
    (failure_local_reply_sent_); the plugins before it see its 503."""
    host = make_host()
    a = load(host, "test=headers", name="a")
    trap = load(host, "h", name="trap", module="wat_trap_in")  # traps in request headers
    server, app = front(serve, [a, trap])
    r = httpx.get(server.url + "/echo", timeout=GUARD)
    assert r.status_code == 503 and app.calls == []
    assert r.headers["x-pwvm-set-pairs"] == "2"  # :status and content-length


def test_a_plugin_failing_on_a_local_response_answers_503_straight_to_the_client(serve, make_host):
    """A plugin whose response callback fails on a local response on its way out answers 503
    instead, sent straight to the client (Envoy's direct local reply: the plugins still ahead
    on the way out do not see it)."""
    host = make_host()
    a = load(host, "test=headers", name="a")
    trap = load(host, "H", name="trap", module="wat_trap_in")  # traps in response headers
    solo = load(host, "", name="solo", module="as_solo_headers", root_id="pwvm_solo_headers")
    server, app = front(serve, [a, trap, solo])
    r = httpx.get(server.url + "/echo", headers={"x-pwvm-deny": "1"}, timeout=GUARD)
    assert r.status_code == 503 and app.calls == []
    assert "x-pwvm-response" not in r.headers and "x-pwvm-set-pairs" not in r.headers
    assert trap.stats()["vm_failed"] >= 1
