"""Proxy-Wasm plugins in front of any ASGI application.

>>> # app = ProxyWasmMiddleware(app, plugins=[Plugin(PluginConfig(name="auth"), "auth.wasm")])
>>> # app.add_middleware(ProxyWasmMiddleware, plugins=[...])   # Starlette / FastAPI

Each HTTP request goes through a chain of :class:`~proxywasm_vm.Plugin` objects, as
through an Envoy HTTP filter chain: the request (headers, then body) through the plugins
in list order, then to the application; the response (headers, then body, and trailers
when the server offers the ASGI ``http.response.trailers`` extension) back through them
in reverse order. A plugin that answers (``proxy_send_local_response``) short-circuits
the application and the plugins after it; as Envoy's local reply, its answer then goes back
through the response callbacks of that plugin and of those before it (when it answers before
the response began; later, straight to the client). A plugin that pauses holds its direction
until it resumes (when its HTTP callout answers, for example). Bodies stream chunk by
chunk; the host holds bytes only while a plugin pauses to buffer them, up to its
``HostLimits.body_buffer_max_bytes`` (past it: 413 for a request, 500 or a reset for a
response, as Envoy). ASGI carries no request trailers, so plugins never see any. Lifespan and
WebSocket scopes pass through untouched.

Plugin failures follow each plugin's ``PluginConfig.failure_policy``: ``fail_closed`` a
local 503, ``fail_open`` the request goes on without the plugin, ``raise`` the exception
reaches the server (a 500). A body a plugin changes in length needs its
``content-length`` removed by the plugin, as in Envoy.

Pure ASGI: no web framework is imported here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import weakref
from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Sequence
from urllib.parse import unquote

from ._proxywasm import HeaderMap, LocalResponse, Plugin, ProxyWasmHost

__all__ = ["ProxyWasmMiddleware", "StreamReset"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("proxywasm_vm.asgi")

#: Envoy's default ``stream_idle_timeout`` (5 minutes): how long a request may wait for a paused
#: plugin without any progress before it gets a 408 (or a reset once its response has begun).
DEFAULT_STREAM_IDLE_TIMEOUT = 300.0


class StreamReset(Exception):
    """A plugin reset the stream (``proxy_close_stream``, or a response body past the host's buffer
    bound after its headers went out). Raised to the server, which closes the connection: the
    nearest an ASGI application gets to Envoy's stream reset."""


# -- where plugin callbacks run -------------------------------------------------------------------
# On the event loop (``plugin_thread=False``, the default when every plugin runs in this process):
# as an Envoy worker runs its wasm filters on its own event loop. A callback costs microseconds;
# handing each event to another thread instead costs a thread switch each way, and under load a
# wait for the GIL (measured with bench/load.py: the proxy's throughput halved with one plugin
# on its own thread). The price is Envoy's too: a slow callback (up to its deadline, 0.5 s by
# default) holds every connection of the loop meanwhile. ``_LoopWorker`` below.
#
# On a thread of its own (``plugin_thread=True``, the default when a plugin runs in a worker
# process: @process, wasmer, wasm3, whose every event is a blocking round trip that would stall the
# loop). One thread per middleware (not a pool): VMs are per thread per plugin, so one thread
# means one VM per plugin (Envoy's VM per worker), whose root context, ticks and state serve every
# request; the loop only hands it events (one job per event, the whole chain in each job) and waits
# for the answer without blocking. The same thread runs the host's asynchronous work (callout
# answers, queue events, ticks): a host wake-up queues a poll there, then the requests waiting on a
# paused plugin are told.

_POLL = object()
_STOP = object()


def _next_tick(hosts: list[ProxyWasmHost]) -> float | None:
    """Seconds until the first tick due on this thread's timers of ``hosts`` (None: no tick)."""
    waits = []
    for h in hosts:
        due = h.scheduler.next_due()
        if due is not None:
            waits.append(max(0.0, (due - h.clock.monotonic_ns()) / 1e9))
    return min(waits) if waits else None


def _poll_hosts(hosts: list[ProxyWasmHost]) -> int:
    """Run the hosts' due work (callout answers, queue events, ticks); how much ran."""
    n = 0
    for h in hosts:
        try:
            n += h.poll()
        except Exception:  # noqa: BLE001 - a "raise" plugin failing in a callout answer or tick
            _log.exception("proxy-wasm host work failed")
            n += 1
    return n


def _unhook(hosts: list[ProxyWasmHost], wake: Callable[[], None]) -> None:
    for h in hosts:
        if wake in h._wake_listeners:
            h._wake_listeners.remove(wake)


class _Users:
    """Counts the exchanges using a worker: a worker that is stopped ends (``_end``) only once its
    last exchange has ended (its streams belong to the worker's VMs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.stopping = False

    def acquire(self) -> None:
        with self.lock:
            self.active += 1

    def release(self) -> None:
        with self.lock:
            self.active -= 1
            last = self.stopping and self.active == 0
        if last:
            self._end()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            idle = self.active == 0
        if idle:
            self._end()

    def _end(self) -> None:
        raise NotImplementedError


class _Worker(_Users):
    """The thread, with its own job queue: an exchange stays on the worker it started on (its
    streams belong to that thread's VMs), so a worker that is stopped ends only once its last
    exchange has ended."""

    def __init__(self, hosts: list[ProxyWasmHost]) -> None:
        super().__init__()
        self.hosts = hosts
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.thread = threading.Thread(target=self._main, name="pwvm-asgi", daemon=True)
        for h in hosts:
            h._wake_listeners.append(self._wake)
        self.thread.start()

    def _wake(self) -> None:  # any thread: the host has work for poll()
        self.q.put(_POLL)

    def _end(self) -> None:
        self.q.put(_STOP)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        f: concurrent.futures.Future = concurrent.futures.Future()
        self.q.put((f, fn, args))
        return await asyncio.wrap_future(f)

    def watch(self, loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
        with self.lock:
            self.waiters.add((loop, ev))

    def unwatch(self, loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
        with self.lock:
            self.waiters.discard((loop, ev))

    def _main(self) -> None:
        q = self.q
        try:
            while True:
                try:
                    item = q.get(timeout=_next_tick(self.hosts))
                except queue.Empty:
                    item = _POLL  # a tick is due
                if item is _STOP:
                    return
                if item is _POLL:
                    self._poll()
                    continue
                f, fn, args = item
                if not f.set_running_or_notify_cancel():
                    continue
                try:
                    f.set_result(fn(*args))
                except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                    f.set_exception(e)
        finally:
            _unhook(self.hosts, self._wake)

    def _poll(self) -> None:
        n = _poll_hosts(self.hosts)
        if n:
            with self.lock:
                waiters = list(self.waiters)
            for loop, ev in waiters:
                try:
                    loop.call_soon_threadsafe(ev.set)
                except RuntimeError:  # that loop is closed
                    pass


class _LoopWorker(_Users):
    """:class:`_Worker`'s interface, run on the event loop itself (see the comment above
    ``_POLL``): jobs run inline, a host wake-up (from any thread) schedules a poll on the loop,
    and the next tick is a loop timer."""

    def __init__(self, hosts: list[ProxyWasmHost], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.hosts = hosts
        self.loop = loop
        self.waiters: set[asyncio.Event] = set()
        self._timer: asyncio.TimerHandle | None = None
        for h in hosts:
            h._wake_listeners.append(self._wake)

    def _wake(self) -> None:  # any thread: the host has work for poll()
        try:
            self.loop.call_soon_threadsafe(self._poll)
        except RuntimeError:  # the loop is closed
            pass

    def _end(self) -> None:
        _unhook(self.hosts, self._wake)
        try:
            self.loop.call_soon_threadsafe(self._cancel_timer)
        except RuntimeError:
            pass

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            self._arm()  # the job may have set a tick period

    def watch(self, loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
        self.waiters.add(ev)

    def unwatch(self, loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
        self.waiters.discard(ev)

    def _arm(self) -> None:
        self._cancel_timer()
        if self.stopping and self.active == 0:
            return
        wait = _next_tick(self.hosts)
        if wait is not None:
            self._timer = self.loop.call_later(wait, self._poll)

    def _poll(self) -> None:
        n = _poll_hosts(self.hosts)
        if n:
            for ev in list(self.waiters):
                ev.set()
        self._arm()


class _PluginThread:
    """The middleware's current worker (a new one after :meth:`stop`): a :class:`_Worker` thread,
    or with ``on_loop`` a :class:`_LoopWorker` on the running loop."""

    def __init__(self, hosts: list[ProxyWasmHost], on_loop: bool = False) -> None:
        self._hosts = hosts
        self._on_loop = on_loop
        self._lock = threading.Lock()
        self._worker: _Worker | _LoopWorker | None = None

    def acquire(self) -> _Worker | _LoopWorker:
        loop = asyncio.get_running_loop() if self._on_loop else None
        with self._lock:
            w = self._worker
            if isinstance(w, _LoopWorker) and w.loop is not loop:  # (another event loop: a new worker)
                w.stop()
                w = None
            if w is None:
                w = self._worker = _LoopWorker(self._hosts, loop) if loop is not None else _Worker(self._hosts)
            w.acquire()
            return w

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker once its exchanges ended; its VMs close on its thread (root contexts
        get done/delete). Waits up to ``timeout`` seconds for that."""
        with self._lock:
            w, self._worker = self._worker, None
        if w is None:
            return
        w.stop()
        if isinstance(w, _Worker) and w.thread is not threading.current_thread():
            w.thread.join(timeout)


# -- one request through the chain (runs on the worker: the loop or the plugin thread) ----------------

class _Pipe:
    """One direction through the streams of a chain, in ``order``: the events each stage got, and
    what it forwarded to the next one (the last stage forwards to ``out``)."""

    def __init__(self, streams: list, order: list[int], request: bool) -> None:
        self.streams = streams
        self.order = order
        self.request = request
        n = len(order)
        self.hdr_in = [False] * n  # the stage got headers ...
        self.hdr_eos = [False] * n  # ... with end_of_stream
        self.body_eos = [False] * n  # it got the body's end
        self.trl_in: list[Any] = [None] * n  # it got trailers
        self.hdr_out = [False] * n  # it forwarded its headers
        self.end_out = [False] * n  # it forwarded the end of the stream
        self.out: list[tuple] = []  # ("headers", HeaderMap, eos) / ("body", bytes, eos) / ("trailers", HeaderMap)

    def _msg(self, k: int) -> Any:
        s = self.streams[self.order[k]]
        return s.request if self.request else s.response

    def feed(self, k: int, kind: str, value: Any, eos: bool = False) -> None:
        """Deliver one event to stage ``k`` (``len(order)``: out of the chain)."""
        if k == len(self.order):
            self.out.append((kind, value, eos))
            return
        s = self.streams[self.order[k]]
        if kind == "headers":
            self.hdr_in[k], self.hdr_eos[k] = True, eos
            (s.request_headers if self.request else s.response_headers)(value, eos)
        elif kind == "body":
            self.body_eos[k] = eos
            (s.request_body if self.request else s.response_body)(value, eos)
        else:
            self.trl_in[k] = value
            (s.request_trailers if self.request else s.response_trailers)(value)

    def flow(self, answered: Callable[[], bool]) -> None:
        """Forward what each stage released, stage by stage, until one holds its direction."""
        for k in range(len(self.order)):
            if answered() or not self.hdr_in[k]:
                return
            if self.end_out[k]:
                continue
            m = self._msg(k)
            if not self.hdr_out[k]:
                if getattr(m, "_hdr_paused", False) or m.headers is None:
                    return  # the stage holds the headers (and with them everything after)
                self.hdr_out[k] = True
                eos = self.hdr_eos[k]
                self.end_out[k] = eos
                self.feed(k + 1, "headers", m.headers, eos)
                if eos:
                    continue
            data = self._take(k, m)
            ended = (self.body_eos[k] or self.trl_in[k] is not None) and not m.paused
            if ended and self.trl_in[k] is None:
                self.end_out[k] = True
                self.feed(k + 1, "body", data, True)
                continue
            if data:
                self.feed(k + 1, "body", data, False)
            if ended:
                self.end_out[k] = True
                self.feed(k + 1, "trailers", m.trailers if m.trailers is not None else self.trl_in[k])
                continue
            if m.paused:
                return

    def _take(self, k: int, m: Any) -> bytes:
        # the bytes the stage forwarded since the last take, handed over: its host (here, or in a
        # worker) keeps none of a streamed body. ``m`` is the stage's message as of this flow step
        # (from a worker: a copy fetched since its last work), so nothing forwarded: no crossing.
        if not m._sent:
            return b""
        data: bytes = self.streams[self.order[k]]._take_forwarded(self.request)
        return data


class _Chain:
    """The streams of one request, one per plugin; every method runs on the middleware's worker (the
    event loop, or the plugin thread)."""

    def __init__(self, plugins: Sequence[Plugin], properties: dict) -> None:
        self.streams: list = []
        try:
            for p in plugins:
                self.streams.append(p.http_stream(properties))
        except BaseException:
            self.close()
            raise
        n = len(self.streams)
        self.req = _Pipe(self.streams, list(range(n)), True)
        self.resp = _Pipe(self.streams, list(range(n - 1, -1, -1)), False)
        self.hosts = list(dict.fromkeys(p.host for p in plugins))
        # a local response on its way out through the response callbacks (see _start_local)
        self.local: _Pipe | None = None
        self.local_answer: LocalResponse | None = None
        self.local_index = -1

    def _first(self) -> tuple[int, LocalResponse | str | None]:
        """The first local response a plugin sent (in chain order), ``"reset"``, or None; with the
        index of its stream."""
        for i, s in enumerate(self.streams):
            lr = s.local_response
            if lr is not None:
                return i, lr
            if s.reset:
                return i, "reset"
        return -1, None

    def answer(self) -> LocalResponse | str | None:
        """What goes to the client instead of the response: the first local response a plugin sent
        (in chain order), ``"reset"``, or None. None too for the local response going through the
        response callbacks (its output comes out as a response's: :meth:`_result`)."""
        k, a = self._first()
        la = self.local_answer
        if la is not None and isinstance(a, LocalResponse) and k == self.local_index \
                and (a.status, a.body, a.details) == (la.status, la.body, la.details):
            return None  # (compared by value: a worker's stream hands a new copy at each fetch)
        return a

    def _start_local(self) -> None:
        """Send a local response the way Envoy sends a local reply (FilterManager::sendLocalReply):
        while the response has not begun (no response headers reached the chain), it goes through
        the encoder path (encodeHeaders(nullptr, ...): every encoder filter, last to first).
        Envoy's Wasm filter skips its encode callbacks when its plugin never saw the request
        (``!in_vm_context_created_``: the plugins after the one that answered) or when its plugin
        failed and answered 503 itself (``failure_local_reply_sent_``); the plugin that answered
        does see its own local response in its response callbacks (Envoy's
        source/extensions/common/wasm/context.cc; proxy-wasm/spec#73, envoyproxy/envoy#28826).
        So the response callbacks of the answering plugin, then of those before it, in reverse
        order; each may change the headers and the body. One of them answering in turn, or
        failing fail_closed, sends that answer straight to the client (Envoy's direct local reply:
        the response headers exist), or resets once the response went out. Once response headers
        entered the chain, a local response goes straight to the client (as before)."""
        if self.local is not None or self.resp.hdr_in[0]:
            return
        k, a = self._first()
        if not isinstance(a, LocalResponse):
            return
        s = self.streams[k]
        order = list(range(k - 1, -1, -1))
        if not s.failed:  # (a fail_closed plugin's own 503 skips it, as failure_local_reply_sent_)
            s._encode_local_reply()
            order.insert(0, k)
        if not order:
            return  # the first plugin failed: its 503 goes straight out
        self.local_answer, self.local_index = a, k
        self.local = _Pipe(self.streams, order, False)
        self.local.feed(0, "headers", _local_head(a), not a.body)
        if a.body:
            self.local.feed(0, "body", a.body, True)

    def _result(self) -> tuple:
        a = self.answer()
        req, resp = self.req.out, self.resp.out
        self.req.out, self.resp.out = [], []
        if self.local is not None:  # (the application's response goes nowhere then)
            resp, self.local.out = self.local.out, []
        # every stream completed by itself (both directions ended): closing has nothing left to do
        done = all(s._closed if hasattr(s, "_rp") else s.closed for s in self.streams)
        return a, req, resp, done, self.local is not None

    @classmethod
    def open(cls, plugins: Sequence[Plugin], properties: dict, head: HeaderMap, eos: bool) -> tuple:
        """Start the streams and give them the request head (one job)."""
        chain = cls(plugins, properties)
        try:
            return chain, chain.request("headers", head, eos)
        except BaseException:  # (a plugin with failure_policy="raise")
            chain.close()
            raise

    def _answered(self) -> bool:
        return self._first()[1] is not None

    def _direct(self) -> bool:
        return self.answer() is not None

    def request(self, kind: str, value: Any, eos: bool = False) -> tuple:
        """A request event from the client. Every job lets both directions flow: one a callout
        answer resumed (the worker's poll ran it) goes on with the next job of the exchange."""
        self.req.feed(0, kind, value, eos)
        return self._flow()

    def response(self, kind: str, value: Any, eos: bool = False) -> tuple:
        """A response event from the application."""
        self.resp.feed(0, kind, value, eos)
        return self._flow()

    def progress(self) -> tuple:
        """After host work ran (a callout answered ...): forward what the plugins released."""
        for h in self.hosts:
            h.poll()
        return self._flow()

    def _flow(self) -> tuple:
        self.req.flow(self._answered)
        self.resp.flow(self._answered)
        self._start_local()
        if self.local is not None:
            self.local.flow(self._direct)
        return self._result()

    def close(self) -> None:
        for s in self.streams:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - a "raise" plugin failing in done/log/delete
                _log.exception("closing a proxy-wasm stream failed")


# -- the middleware --------------------------------------------------------------------------------

def _properties(scope: Scope) -> dict:
    """The stream properties Envoy would give for this request, from the ASGI scope (the
    ``request.*`` ones the host derives from the headers)."""
    props: dict[str, Any] = {}
    client = scope.get("client")
    if client:
        props["source.address"] = f"{client[0]}:{client[1]}"
    server = scope.get("server")
    if server and server[1] is not None:
        props["destination.address"] = f"{server[0]}:{server[1]}"
    version = scope.get("http_version", "1.1")
    props["request.protocol"] = "HTTP/" + ("2" if version == "2" else "3" if version == "3" else version)
    tls = (scope.get("extensions") or {}).get("tls")
    if tls:  # the ASGI TLS extension, where the server offers it
        names = {0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
        v = tls.get("tls_version")
        if v is not None:
            props["connection.tls_version"] = names.get(v, str(v))
        props["connection.mtls"] = bool(tls.get("client_cert_chain"))
    return props


def _request_headers(scope: Scope) -> HeaderMap:
    """Envoy's view of the request head: pseudo-headers first, ``host`` as ``:authority``."""
    raw_path = scope.get("raw_path") or scope.get("path", "/").encode("utf-8")
    qs = scope.get("query_string") or b""
    path = raw_path + (b"?" + qs if qs else b"")
    authority = None
    rest = []
    for k, v in scope.get("headers", ()):
        if k.lower() == b"host" and authority is None:
            authority = v
        else:
            rest.append((k, v))
    if authority is None:
        server = scope.get("server")
        authority = (f"{server[0]}:{server[1]}" if server and server[1] else server[0] if server else "").encode()
    head = [(b":authority", authority), (b":path", path), (b":method", scope.get("method", "GET").encode()),
            (b":scheme", scope.get("scheme", "http").encode())]
    return HeaderMap(head + rest)


def _has_body(scope: Scope) -> bool:
    """Whether a request body follows the head (HTTP/1: content-length or transfer-encoding)."""
    for k, v in scope.get("headers", ()):
        k = k.lower()
        if k == b"transfer-encoding":
            return True
        if k == b"content-length":
            return v.strip() not in (b"0", b"")
    return scope.get("http_version") not in ("1.0", "1.1")  # HTTP/2: the head does not tell


def _app_scope(scope: Scope, h: HeaderMap) -> Scope:
    """The scope the application sees: method, path and headers as the plugins left them."""
    new = dict(scope)
    path = h.get_bytes(":path") or b"/"
    raw, _, qs = path.partition(b"?")
    new["method"] = (h.get_bytes(":method") or b"GET").decode("latin-1")
    new["raw_path"] = raw
    new["path"] = unquote(raw.decode("latin-1"))
    new["query_string"] = qs
    headers = []
    authority = h.get_bytes(":authority")
    if authority is not None:
        headers.append((b"host", authority))
    headers += [(k, v) for k, v in h.raw_items() if not k.startswith(b":")]
    new["headers"] = headers
    ext = scope.get("extensions")
    if ext:  # response forms that would bypass the plugins (a file sent by path ...) are not offered
        new["extensions"] = {k: v for k, v in ext.items() if k not in _BYPASSING_EXTENSIONS}
    return new


#: ASGI extensions whose response messages carry no body bytes through ``send``
_BYPASSING_EXTENSIONS = frozenset({"http.response.pathsend", "http.response.zerocopysend"})


def _local_headers(lr: LocalResponse) -> list[tuple[bytes, bytes]]:
    """The headers of a local response (Envoy adds content-length, and a text content-type when
    the body has none)."""
    headers = [(k, v) for k, v in lr.headers.raw_items() if not k.startswith(b":")]
    names = {k.lower() for k, _ in headers}
    if lr.body and b"content-type" not in names:
        headers.append((b"content-type", b"text/plain"))
    if b"content-length" not in names:
        headers.append((b"content-length", str(len(lr.body)).encode()))
    return headers


def _local_head(lr: LocalResponse) -> HeaderMap:
    """A local response's head as the response callbacks see it (``:status`` first)."""
    return HeaderMap([(b":status", str(lr.status).encode())] + _local_headers(lr))


def _local_reply(lr: LocalResponse) -> tuple[dict, dict]:
    """The ASGI messages of a local response sent straight to the client."""
    return ({"type": "http.response.start", "status": lr.status, "headers": _local_headers(lr)},
            {"type": "http.response.body", "body": lr.body, "more_body": False})


def _idle_reply() -> LocalResponse:
    # Envoy's answer when its stream_idle_timeout fires before the response began
    return LocalResponse(408, b"stream timeout", HeaderMap(), "stream_idle_timeout")


class ProxyWasmMiddleware:
    """ASGI middleware running Proxy-Wasm HTTP plugins around ``app``.

    - ``plugins``: the chain, in request order (the response goes through it in reverse);
      loaded :class:`~proxywasm_vm.Plugin` objects, each with its host (callouts go to its
      host's ``upstreams`` with httpx);
    - ``stream_idle_timeout``: seconds a request may wait for a paused plugin without progress
      (Envoy's ``stream_idle_timeout``, default 300): then a 408 ``stream timeout``, or a reset
      once the response began; ``None`` waits without limit;
    - ``close_plugins``: also close the plugins when the server shuts down (lifespan) or on
      :meth:`close` (default False: the caller owns them);
    - ``plugin_thread``: where plugin callbacks run. ``False``: on the event loop, as an Envoy
      worker runs its filters (the cheapest; a callback holds the loop while it runs, at most its
      deadline). ``True``: on one thread of the middleware, so the loop never waits for a plugin.
      The default (``None``) is the loop when every plugin runs in this process, and the thread
      when one runs in a worker process (each of its events is a blocking round trip).

    Non-HTTP scopes go to ``app`` untouched; at lifespan shutdown the middleware's plugin thread
    ends, and with it the plugins' VMs of that thread.
    """

    def __init__(self, app: ASGIApp, plugins: Iterable[Plugin] = (), *,
                 stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT,
                 close_plugins: bool = False, plugin_thread: bool | None = None) -> None:
        self.app = app
        self.plugins: list[Plugin] = list(plugins)
        for p in self.plugins:
            if not isinstance(p, Plugin):
                raise TypeError(f"plugins must be proxywasm_vm.Plugin objects, not {type(p).__name__}")
        if stream_idle_timeout is not None and not stream_idle_timeout > 0:
            raise ValueError(f"stream_idle_timeout must be > 0 seconds or None, got {stream_idle_timeout!r}")
        self.stream_idle_timeout = stream_idle_timeout
        self.close_plugins = close_plugins
        if plugin_thread is None:
            plugin_thread = any(p.engine.backend.isolation == "process" for p in self.plugins)
        self.plugin_thread = plugin_thread
        self._thread = _PluginThread(list(dict.fromkeys(p.host for p in self.plugins)), on_loop=not plugin_thread)
        weakref.finalize(self, self._thread.stop, 0.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self.plugins:
            await _Exchange(self, scope, receive, send).run()
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await asyncio.get_running_loop().run_in_executor(None, self.close)
            await send(message)

        return wrapped

    def close(self) -> None:
        """End the middleware's worker once its requests ended (its plugin thread, or on the loop its
        host wake-ups; a later request starts a new one); with ``close_plugins``, close the plugins too."""
        self._thread.stop()
        if self.close_plugins:
            for p in self.plugins:
                p.close()


class _Exchange:
    """One HTTP request/response through the middleware (event-loop side)."""

    def __init__(self, mw: ProxyWasmMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.mw = mw
        self.t: _Worker | _LoopWorker  # (set by run)
        self.scope = scope
        self.receive = receive
        self.send = send
        self.chain: _Chain | None = None
        self.done = False  # every stream of the chain has completed
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.answer: LocalResponse | str | None = None
        self.local_reply = False  # a local response goes out through the response callbacks
        self.local_sent = False  # ... and the exchange sends what comes out of them
        self.app_in: list[tuple] = []  # request events for the application
        self.app_head: HeaderMap | None = None
        self.app_eos = False  # the chain let the end of the request out
        self.app_told_end = False  # the application got its last http.request
        self.down_ended = False  # the client's request is fully read (or it disconnected)
        self.disconnected = False
        self.down_out: list[tuple] = []  # response events for the client
        self.started = False  # the response head went to the client
        self.finished = False  # the response ended (or was answered) for the client
        self.app_sends = True  # the application's response still goes somewhere
        self.answered_app = False  # a plugin's answer went out instead of the application's
        self.resp_trailers = False  # the application announced trailers (ASGI extension)
        self._head: HeaderMap | None = None  # the application's response head, until its first body
        self.req_lock = asyncio.Lock()
        self._rx_task: asyncio.Future | None = None
        self.resp_lock = asyncio.Lock()

    # -- plumbing --------------------------------------------------------------------------------
    def _take(self, result: tuple) -> None:
        answer, req, resp, self.done, local = result
        self.app_in += req
        self.down_out += resp
        new = bool(req or resp)
        if answer is not None and self.answer is None:
            self.answer = answer
            new = True
        if local and not self.local_reply:
            self.local_reply = new = True
        if new:  # (wakes the other direction too, if it waits)
            self.changed.set()

    async def _job(self, fn: Callable[..., tuple], *args: Any) -> None:
        self.changed.clear()
        self._take(await self.t.run(fn, *args))

    def _rx(self) -> asyncio.Future:
        """The pending ``receive()`` of the client (one at a time, shared by whoever waits on it)."""
        if self._rx_task is None:
            self._rx_task = asyncio.ensure_future(self.receive())
        return self._rx_task

    async def _client_message(self) -> Message:
        t = self._rx()
        msg = await asyncio.shield(t)
        if self._rx_task is t:
            self._rx_task = None
        if msg["type"] == "http.disconnect":
            self.down_ended = self.disconnected = True
        return msg

    async def _wait(self) -> None:
        """Wait for host work to move the chain (a callout answered ...), then forward it. Once the
        client has sent everything, its going away ends the wait too (Envoy resets the stream)."""
        changed = asyncio.ensure_future(self.changed.wait())
        waits: set[asyncio.Future] = {changed}
        if self.down_ended and not self.disconnected:
            waits.add(self._rx())  # (only a disconnect can come now)
        try:
            done, _ = await asyncio.wait(waits, timeout=self.mw.stream_idle_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
        if self._rx_task is not None and self._rx_task in done:
            await self._client_message()
        if self.disconnected:
            return
        if not done:  # no progress for stream_idle_timeout
            if self.answer is None:
                self.answer = _idle_reply() if not self.started else "reset"
            return
        assert self.chain is not None
        await self._job(self.chain.progress)

    async def _read_client(self) -> None:
        """Read one message from the client and push it into the chain."""
        msg = await self._client_message()
        assert self.chain is not None
        if msg["type"] == "http.disconnect":
            self.down_ended = self.disconnected = True
            return
        if msg["type"] != "http.request":
            return
        more = msg.get("more_body", False)
        self.down_ended = not more
        body = msg.get("body", b"")
        if body or not more:
            await self._job(self.chain.request, "body", body, not more)

    async def _send_answer(self) -> None:
        """Send the local response (or reset) once; the application's response goes nowhere."""
        if self.finished:
            return
        self.finished = True
        self.app_sends = False
        a = self.answer
        # (a local response sent before the response began goes through the response callbacks
        # instead: _send_local; this one goes to the client as the plugin sent it)
        if isinstance(a, LocalResponse) and not self.started and not self.disconnected:
            self.started = self.answered_app = True
            start, body = _local_reply(a)
            await self.send(start)
            await self.send(body)
            return
        if not self.disconnected:
            raise StreamReset("a plugin reset the stream" if a == "reset" else
                              f"a plugin answered {getattr(a, 'status', '')} after the response began: stream reset")

    async def _send_local(self) -> None:
        """Send the local response coming out of the response callbacks (see _Chain._start_local),
        once; the application's response goes nowhere."""
        if self.local_sent or self.finished:
            return
        self.local_sent = True
        self.app_sends = False
        self.answered_app = True
        await self._flush_response()

    # -- the request -----------------------------------------------------------------------------
    async def run(self) -> None:
        self.t = self.mw._thread.acquire()
        self.t.watch(self.loop, self.changed)
        try:
            eos = not _has_body(self.scope)
            self.down_ended = eos
            self.changed.clear()
            self.chain, first = await self.t.run(_Chain.open, self.mw.plugins, _properties(self.scope),
                                                 _request_headers(self.scope), eos)
            self._take(first)
            # before the application: until the head leaves the chain (or a plugin answers)
            while self.answer is None and self.app_head is None and not self.local_reply:
                self._app_events()
                if self.app_head is not None:
                    break
                if not self.down_ended:
                    await self._read_client()
                    if self.disconnected:
                        return
                else:
                    await self._wait()
                    if self.disconnected:
                        return
            if self.answer is not None:
                await self._send_answer()
                return
            if self.local_reply:
                await self._send_local()
                return
            assert self.app_head is not None
            try:
                await self.mw.app(_app_scope(self.scope, self.app_head), self._app_receive, self._app_send)
            except Exception:
                if not self.answered_app:
                    raise
                # a plugin answered while the app ran, and the app was told the client left (as
                # Envoy resets the upstream request): what it raises then is no server error
                _log.debug("the ASGI app raised after a plugin answered", exc_info=True)
            if self.answer is not None:
                await self._send_answer()
            elif self.local_reply:
                await self._send_local()
            elif not self.finished and not self.disconnected:
                raise RuntimeError("the ASGI application returned without completing its response")
        finally:
            self.t.unwatch(self.loop, self.changed)
            if self._rx_task is not None and not self._rx_task.done():
                self._rx_task.cancel()
            try:
                if self.chain is not None and not self.done:  # (shielded: a cancelled request still
                    # closes its streams)
                    await asyncio.shield(self.t.run(self.chain.close))
            finally:
                self.t.release()

    def _app_events(self) -> None:
        """Move head events out of ``app_in`` (the body ones stay for _app_receive)."""
        while self.app_head is None and self.app_in and self.app_in[0][0] == "headers":
            _, h, eos = self.app_in.pop(0)
            self.app_head = h
            self.app_eos = eos

    async def _app_receive(self) -> Message:
        async with self.req_lock:
            while True:
                if self.answer is not None:
                    await self._send_answer()
                    return {"type": "http.disconnect"}
                if self.local_reply:
                    await self._send_local()
                    return {"type": "http.disconnect"}
                if self.app_in:
                    kind, value, eos = self.app_in.pop(0)
                    if kind == "body":
                        self.app_eos = self.app_told_end = eos
                        return {"type": "http.request", "body": value, "more_body": not eos}
                    if kind == "trailers":  # ASGI has no request trailers: the end of the body
                        self.app_eos = self.app_told_end = True
                        return {"type": "http.request", "body": b"", "more_body": False}
                    continue
                if self.app_eos and not self.app_told_end:  # (a request without body)
                    self.app_told_end = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if self.disconnected or (self.app_told_end and self.finished):
                    return {"type": "http.disconnect"}
                if self.app_told_end:
                    # the request is over: as a server does, wait for the client to go away
                    msg = await self._client_message()
                    if self.disconnected:
                        return msg
                    continue
                if not self.down_ended:
                    await self._read_client()
                else:
                    await self._wait()

    # -- the response ----------------------------------------------------------------------------
    async def _app_send(self, message: Message) -> None:
        async with self.resp_lock:
            if self.answer is not None:
                await self._send_answer()
            elif self.local_reply:
                await self._send_local()
            if not self.app_sends:
                return  # answered already: the application's response goes nowhere
            assert self.chain is not None
            t = message["type"]
            if t == "http.response.start":
                # held until the first body message tells whether a body follows (Envoy gives
                # the plugins end_of_stream with the headers of a response without body)
                self._head = HeaderMap([(b":status", str(message["status"]).encode())]
                                       + [(k, v) for k, v in message.get("headers", ())])
                self.resp_trailers = bool(message.get("trailers", False))
                return
            if t == "http.response.body":
                body = message.get("body", b"")
                more = message.get("more_body", False)
                head = self._head
                if head is not None:
                    self._head = None
                    eos = not more and not body and not self.resp_trailers
                    await self._job(self.chain.response, "headers", head, eos)
                    if eos:
                        return await self._flush_response()
                if body or not more:
                    await self._job(self.chain.response, "body", body, not more and not self.resp_trailers)
            elif t == "http.response.trailers":
                if message.get("more_trailers", False):
                    return  # (gathered into one trailer map is beyond this host: the last one goes)
                await self._job(self.chain.response, "trailers", HeaderMap(list(message.get("headers", ()))))
            else:
                return
            await self._flush_response()

    async def _flush_response(self) -> None:
        """Send what left the chain to the client; while the chain holds the end, wait for it."""
        ended = False
        while True:
            if self.answer is not None:
                await self._send_answer()
                return
            if self.disconnected:
                self.down_out.clear()
                return
            while self.down_out:
                kind, value, eos = self.down_out.pop(0)
                if kind == "headers":
                    status = int(value.get_bytes(":status") or b"200")
                    headers = [(k, v) for k, v in value.raw_items() if not k.startswith(b":")]
                    self.started = True
                    await self.send({"type": "http.response.start", "status": status, "headers": headers,
                                     "trailers": self.resp_trailers})
                    if eos:
                        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
                        ended = True
                elif kind == "body":
                    await self.send({"type": "http.response.body", "body": value,
                                     "more_body": not eos or self.resp_trailers})
                    ended = ended or (eos and not self.resp_trailers)
                else:
                    await self.send({"type": "http.response.trailers",
                                     "headers": [(k, v) for k, v in value.raw_items()], "more_trailers": False})
                    ended = True
            if ended:
                self.finished = True
                return
            if not self._response_held():
                return
            await self._wait()

    def _response_held(self) -> bool:
        """The application has ended its response but the chain has not let the end out: a plugin
        holds it (waiting on a callout ...), so the application's last send waits too."""
        assert self.chain is not None
        p = self.chain.local or self.chain.resp
        return bool(p.hdr_in[0]) and (p.hdr_eos[0] or p.body_eos[0] or p.trl_in[0] is not None) \
            and not (p.end_out[-1] if p.end_out else True)
