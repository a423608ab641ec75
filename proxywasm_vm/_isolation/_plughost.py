"""A :class:`~proxywasm_vm.Plugin` on a worker engine whose Proxy-Wasm host runs in the worker.

``Plugin(config, wasm, host=h)`` on an engine with ``isolation="process"`` loads
the plugin into a :class:`ProxyWasmHost` living in the worker (one per parent
host and worker), so the plugin's host calls stay in the worker. What crosses:

- one request per stream event: ``request_headers(headers, eos)`` sends the
  headers (and, for the first event, the stream's creation) and gets the action
  back; the stream's state (headers as the plugin left them, local response,
  reset ...) is fetched in one more request, only when the caller reads it;
- the parent host's services (logger, shared data, queues, metrics, clock,
  foreign functions, properties) stay parent objects the worker reaches by
  reference, only when the plugin uses them.

Plugins that need the parent host's event loop (ticks, HTTP/gRPC callouts,
shared queues, foreign functions), network (TCP) plugins, ``per_stream``
isolation and configurations that cannot be copied keep the parent-side host
(every host call crosses). ``PWVM_REMOTE_HOST=0`` turns this off.
"""

from __future__ import annotations

import os
import pickle
import weakref
from typing import Any, Mapping

from ._remote import REMOTE_LANE

#: Host functions that need the parent host's event loop (poll/advance), or callables of the parent.
_PARENT_ONLY = ("proxy_set_tick_period_milliseconds", "proxy_http_call", "proxy_grpc_call", "proxy_grpc_stream",
                "proxy_grpc_send", "proxy_grpc_cancel", "proxy_grpc_close", "proxy_register_shared_queue",
                "proxy_resolve_shared_queue", "proxy_enqueue_shared_queue", "proxy_dequeue_shared_queue",
                "proxy_call_foreign_function")

#: How long the parent spins for a plugin-level event's reply before blocking (ns).
EVENT_SPIN_NS = int(float(os.environ.get("PWVM_EVENT_SPIN", "100e-6")) * 1e9)


def eligible(gen: Any) -> bool:
    """Whether this plugin version can run with its host in the worker."""
    if os.environ.get("PWVM_REMOTE_HOST", "1") == "0":
        return False
    code = gen.code
    if any(f"env.{n}" in code.imported for n in _PARENT_ONLY):
        return False
    cfg = gen.config
    if cfg.isolation != "shared" or cfg.foreign_functions:
        return False
    try:
        pickle.dumps(cfg, 5)
    except Exception:  # noqa: BLE001 - holds something that does not copy
        return False
    return True


def _services(host: Any, conn: Any) -> Any:
    t = conn.remote
    kw = {name: getattr(host, name) for name in ("logger", "shared_data", "queues", "metrics")}
    enc = t.encode(kw)
    clock = host.clock
    from .._proxywasm._services import SystemClock

    # a SystemClock is the same clock there; any other (a ManualClock) stays here, by reference
    enc_clock = clock if type(clock) is SystemClock else t.export(clock)
    from ._remote import Packed

    if isinstance(enc, Packed):
        enc.value["clock"] = enc_clock
    else:
        enc = Packed({**enc, "clock": enc_clock})
    enc.value["properties"] = host._props
    return enc


def _worker_host(host: Any, conn: Any) -> int:
    """The key of ``host``'s twin in ``conn``'s worker (made once per connection)."""
    hosts = host.__dict__.setdefault("_pwvm_remote_hosts", weakref.WeakKeyDictionary())
    key = hosts.get(conn)
    if key is None:
        ref = conn.request("remote_host", (_services(host, conn),), lane=REMOTE_LANE)
        key = hosts[conn] = ref.key
    return key


class RemotePlugin:
    """The worker half of a :class:`Plugin` (its key in the worker's table) and how to reach it."""

    def __init__(self, plugin: Any, gen: Any, wasm: bytes) -> None:
        self.plugin_ref = weakref.ref(plugin)
        self.engine = gen.code.engine
        self.config = gen.config
        self.wasm = wasm
        self.conn: Any = None
        self.key = 0
        self._attach()

    def _attach(self) -> None:
        plugin = self.plugin_ref()
        if plugin is None:
            raise ReferenceError("the plugin this worker-side host served is gone")
        conn = self.engine._conn_now()
        hkey = _worker_host(plugin.host, conn)
        self.key = conn.request("pw_load", (hkey, self.config, self.wasm), lane=REMOTE_LANE)
        # A stream event's reply comes after some µs of work in the worker: spin that long
        # here rather than block (waking a sleeping thread costs ~25-100 µs on a VM).
        chan = conn.lanes[REMOTE_LANE].chan
        chan.min_spin_ns = max(chan.min_spin_ns, EVENT_SPIN_NS)
        self.conn = conn

    def live_conn(self) -> Any:
        conn = self.conn
        if conn.dead:  # the worker died (the call that noticed raised WorkerCrashed): load again in a new one
            self._attach()
            conn = self.conn
        return conn

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        conn = self.live_conn()
        t = conn.remote
        return t.decode(conn.request("obj_call", (self.key, name, t.encode(args), t.encode(kwargs)),
                                     lane=REMOTE_LANE))

    def get(self, name: str) -> Any:
        conn = self.live_conn()
        return conn.remote.decode(conn.request("obj_get", (self.key, name), lane=REMOTE_LANE)[1])

    def http_stream(self, plugin: Any, properties: Mapping[str, Any] | None) -> RemoteHttpStream:
        s = RemoteHttpStream(plugin, self, properties)
        if self.config.failure_policy == "raise":
            s._event("")  # creation errors surface here, as in-process
        return s

    def update(self, gen: Any, wasm: bytes) -> None:
        self.call("update", wasm, gen.config)
        self.config = gen.config
        self.wasm = wasm

    def close(self) -> None:
        conn = self.conn
        if conn is None or conn.dead:
            return
        try:
            conn.request("obj_call", (self.key, "close", (), {}), lane=REMOTE_LANE)
        finally:
            conn.remote_released.append(self.key)


_STATE = ("request", "response", "local_response", "reset", "route_cache_cleared", "closed", "error",
          "started_ns", "context_id", "failed")


def _release(conn_ref: Any, key: list) -> None:
    conn = conn_ref()
    if conn is not None and not conn.dead and key[0]:
        conn.remote_released.append(key[0])


class RemoteHttpStream:
    """An HTTP stream of a :class:`RemotePlugin`: events cross once each; state is read on demand.

    Has the attributes and methods of :class:`~proxywasm_vm.HttpStream`.
    """

    _http = True

    def __init__(self, plugin: Any, rp: RemotePlugin, properties: Mapping[str, Any] | None) -> None:
        self.plugin = plugin
        self._rp = rp
        self._conn = rp.live_conn()
        self._key = [0]  # a list: shared with the finalizer
        self._props = dict(properties) if properties else None
        self._state: tuple | None = None
        self._closed = False
        weakref.finalize(self, _release, weakref.ref(self._conn), self._key)

    def _event(self, ev: str, *args: Any) -> Any:
        conn = self._conn
        self._state = None
        key = self._key
        key[0], r = conn.request("pw_http", (self._rp.key, key[0], self._props, ev, args), lane=REMOTE_LANE)
        return r

    def _fetch(self) -> tuple:
        st = self._state
        if st is None:
            if not self._key[0]:
                self._event("")
            st = self._state = self._conn.request("pw_state", (self._key[0],), lane=REMOTE_LANE)
        return st

    # -- events (as HttpStream) -------------------------------------------------------------
    def request_headers(self, headers: Any, end_of_stream: bool = False) -> Any:
        return self._event("request_headers", headers, end_of_stream)

    def response_headers(self, headers: Any, end_of_stream: bool = False) -> Any:
        return self._event("response_headers", headers, end_of_stream)

    def request_body(self, chunk: bytes, end_of_stream: bool = False) -> Any:
        return self._event("request_body", bytes(chunk), end_of_stream)

    def response_body(self, chunk: bytes, end_of_stream: bool = False) -> Any:
        return self._event("response_body", bytes(chunk), end_of_stream)

    def request_trailers(self, trailers: Any) -> Any:
        return self._event("request_trailers", trailers)

    def response_trailers(self, trailers: Any) -> Any:
        return self._event("response_trailers", trailers)

    def wait(self, timeout: float = 5.0) -> bool:
        return self._event("wait", timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._event("close")

    def __enter__(self) -> RemoteHttpStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- state (read from the worker when asked) -----------------------------------------------
    request = property(lambda self: self._fetch()[0])
    response = property(lambda self: self._fetch()[1])
    local_response = property(lambda self: self._fetch()[2])
    reset = property(lambda self: self._fetch()[3])
    route_cache_cleared = property(lambda self: self._fetch()[4])
    closed = property(lambda self: self._fetch()[5])
    error = property(lambda self: self._fetch()[6])
    started_ns = property(lambda self: self._fetch()[7])
    context_id = property(lambda self: self._fetch()[8])
    failed = property(lambda self: self._fetch()[9])

    @property
    def logs(self) -> list[str]:
        cid = self.context_id
        recs = getattr(self.plugin.host.logger, "records", ())
        return [r.message for r in recs if r.context_id == cid and r.plugin == self._rp.config.name]

    def __repr__(self) -> str:
        return f"<HttpStream of {self._rp.config.name!r} in the worker>"
