"""A :class:`~proxywasm_vm.Plugin` on a worker engine whose Proxy-Wasm host runs in the worker.

The Proxy-Wasm layer's use of the isolation layer (which knows nothing of
Proxy-Wasm): the worker-side host is a remote object (``_isolation._remote``), and
the requests this module adds to the worker protocol (``pw_host``, ``pw_load``,
``pw_stream``, ``pw_state``) are registered with ``_isolation._extensions`` when it
is imported; the parent has the worker import it once per connection
(``Connection.use_extension``) before its first request.

``Plugin(config, wasm, host=h)`` on an engine with ``isolation="process"`` loads
the plugin into a host living in the worker (a :class:`WorkerHost`, one per
parent host and worker), so the plugin's host calls stay in the worker. What crosses:

- one request per stream event: ``request_headers(headers, eos)`` sends the
  headers (and, for the first event, the stream's creation) and gets the action
  back; the event that ends both directions also completes the stream there
  (done, log, delete), so a whole request is two crossings; the stream's state
  (headers as the plugin left them, local response, reset ...) is fetched in
  one more request, only when the caller reads it;
- the parent host's services (logger, shared data, queues, metrics, clock,
  HTTP and gRPC dispatchers, foreign functions, properties) stay parent
  objects the worker reaches by reference, only when the plugin uses them,
  except shared data and queues on Redis, which the worker reaches itself
  (a copy made from their settings; queue registration, and so the delivery
  of queue notifications, stays with the parent's object);
- the event loop stays the parent's: a callout response or queue event for the
  worker is posted in the worker and wakes the parent host, whose
  :meth:`~proxywasm_vm.ProxyWasmHost.poll` then runs the worker's pending work
  (one crossing); the worker's ticks are timers of the parent's scheduler, so
  ``advance()`` with a :class:`~proxywasm_vm.ManualClock` fires the ticks of
  both sides in one order. A callback into a worker that died is dropped.

Per-stream VMs (``PluginConfig.vm_per_stream``), plugin-specific ``foreign_functions``
(they would run in the worker) and configurations that cannot be copied keep the
parent-side host (every host call crosses), as does ``PWVM_REMOTE_HOST=0``; the
Proxy-Wasm plugin decides and logs why (``_plugin._host_stays_here``).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import weakref
from typing import Any, Mapping

from .._errors import Trap, WorkerCrashed
from .._isolation import ProcessEngine
from .._isolation._extensions import remote_by_value, remote_compiling, worker_op
from .._isolation._proxy import crossing_timeout
from .._isolation._remote import REMOTE_LANE, Packed
from .._settings import remote_host_enabled
from ._abi import Action
from ._errors import PluginCrash, PluginStartError
from ._pairs import HeaderMap, host_map
from ._plugin import ProxyWasmHost, plugin_limits, reload_delay
from ._redis import from_worker_spec, is_worker_spec
from ._services import ManualClock, Scheduler, SystemClock
from ._streams import HttpMessage, HttpStream, LocalResponse, TcpDirection, TcpStream

# How the objects of this layer cross the worker boundary (both sides import this module).
# a clock is copied (a host's ManualClock shared with the parent is sent by reference, see _services)
remote_by_value(ManualClock, SystemClock)
remote_compiling("load", "update")  # host.load and plugin.update compile the plugin: the compile bound


#: Bumped whenever work may have run in a worker (a stream event, a poll, a tick): the state a
#: remote stream fetched before then is stale (a callout answer run by ``poll()`` resumes a
#: paused stream, a tick may send a local response ...).
_WORK_EPOCH = [0]


class HostBridge:
    """What a worker's host asks of its parent host (it reaches this object by reference).

    Wake-ups: work was posted in the worker (the parent's next poll runs it).
    Ticks: the worker's timers, kept in the parent's scheduler under keys of
    their own, so one clock orders the ticks of both sides.
    """

    def __init__(self, host: Any, conn: Any) -> None:
        self._host = weakref.ref(host)
        self._conn = weakref.ref(conn)
        self._space = ("pwvm-worker", conn.gen)  # timer keys of this worker, apart from the parent's

    def wake(self) -> None:
        host = self._host()
        if host is not None:
            host._remote_wake()

    def set_tick(self, key: Any, period_ms: int, fn: Any) -> None:
        host = self._host()
        if host is None:
            return
        k = (self._space, key)
        sched = host.scheduler
        conn_ref = self._conn

        def tick() -> None:
            conn = conn_ref()
            if conn is None or conn.dead:  # the worker died: its timers go with it
                sched.cancel(k)
                return
            _WORK_EPOCH[0] += 1
            try:
                fn()
            except WorkerCrashed:  # ... also when this tick is what finds out
                sched.cancel(k)

        sched.set_period(k, period_ms, tick)

    def cancel_tick(self, key: Any) -> None:
        host = self._host()
        if host is not None:
            host.scheduler.cancel((self._space, key))


def _services(host: Any, conn: Any) -> Any:
    t = conn.remote
    kw = {name: getattr(host, name) for name in ("logger", "shared_data", "queues", "metrics", "http", "grpc",
                                                  "foreign_functions")}
    for name in ("shared_data", "queues"):
        # services on a store of their own (Redis) are rebuilt in the worker from their settings and
        # reach it directly: a plugin's shared data and queue calls do not cross (see _redis)
        for_worker = getattr(kw[name], "_for_worker", None)
        if for_worker is not None:
            kw[name] = for_worker()
    kw["bridge"] = HostBridge(host, conn)
    kw["limits"] = host.limits  # a frozen dataclass: crosses by value
    kw["preserve_header_case"] = host.preserve_header_case
    enc = t.encode(kw)
    clock = host.clock
    # a SystemClock is the same clock there; any other (a ManualClock) stays here, by reference
    enc_clock = clock if type(clock) is SystemClock else t.export(clock)
    if isinstance(enc, Packed):
        enc.value["clock"] = enc_clock
    else:
        enc = Packed({**enc, "clock": enc_clock})
    enc.value["properties"] = host._props
    return enc


def _twins(host: Any) -> list[tuple[Any, int]]:
    hosts = host.__dict__.get("_pwvm_remote_hosts")
    return [(c, k) for c, k in list(hosts.items()) if not c.dead] if hosts else []


def poll_workers(host: Any) -> int:
    """Run the pending work of ``host``'s twins in the workers (callout responses, queue events)."""
    _WORK_EPOCH[0] += 1
    n = 0
    for conn, key in _twins(host):
        try:
            n += conn.request("obj_call", (key, "poll", (), {}), *crossing_timeout(conn.bounds, "event"),
                              lane=REMOTE_LANE)
        except (WorkerCrashed, Trap):
            if not conn.dead:
                raise
            # that worker's pending work died with it (the next stream loads the plugin again)
    return n


def workers_busy(host: Any) -> bool:
    """Whether a twin of ``host`` waits for a callout or has events to run."""
    try:
        return any(conn.request("obj_call", (key, "pending", (), {}), lane=REMOTE_LANE) for conn, key in _twins(host))
    except WorkerCrashed:
        return False


def _worker_host(host: Any, conn: Any) -> int:
    """The key of ``host``'s twin in ``conn``'s worker (made once per connection)."""
    hosts = host.__dict__.setdefault("_pwvm_remote_hosts", weakref.WeakKeyDictionary())
    key = hosts.get(conn)
    if key is None:
        conn.use_extension(__name__)
        ref = conn.request("pw_host", (_services(host, conn),), lane=REMOTE_LANE)
        key = hosts[conn] = ref.key
    return key


class _InBackoff(Exception):
    """A plugin's worker failed and its replacement waits for the reload backoff."""


class RemotePlugin:
    """The worker half of a :class:`Plugin` (its key in the worker's table) and how to reach it."""

    def __init__(self, plugin: Any, gen: Any, wasm: bytes) -> None:
        self.plugin_ref = weakref.ref(plugin)
        self.engine = gen.code.engine
        self.config = gen.config
        self.wasm = wasm
        self.conn: Any = None
        self.key = 0
        self.event_budget: tuple[float | None, str] = (None, "")
        #: worker failures in a row under this plugin's streams, and the host-clock time before
        #: which the dead worker is not replaced (the reload backoff, as for a failed VM: a plugin
        #: that takes its worker down on every stream must not start a process per stream)
        self.crashes = 0
        self.retry_ns = 0
        #: held while a dead worker's replacement gets the plugin: threads that find the worker
        #: dead together load the plugin there once (the others then use that load)
        self._reattach = threading.Lock()
        self._attach()

    def _attach(self) -> None:
        plugin = self.plugin_ref()
        if plugin is None:
            raise ReferenceError("the plugin this worker-side host served is gone")
        conn = self.engine._conn_now()
        hkey = _worker_host(plugin.host, conn)
        # A stream event's reply comes after some µs of work in the worker, and the next event
        # soon after a reply: both sides spin that long on this lane rather than block (waking
        # a sleeping thread costs ~25-100 µs on a VM). Engine option ``worker_event_spin``.
        spin_ns = int(self.engine._event_spin * 1e9)
        limits = self.config.limits
        self.event_budget = self.engine._bound("event", limits.deadline if limits is not None else None)
        try:
            sent = dataclasses.replace(self.config, limits=plugin_limits(self.config))
            self.key = conn.request("pw_load", (hkey, sent, self.wasm, spin_ns, plugin._vm_group),
                                    *self.engine._bound("compile"), lane=REMOTE_LANE)
        except Trap as e:  # its worker was stopped at a limit during the start phase (wasmer: see _guard)
            raise PluginStartError(f"plugin {self.config.name!r} failed to start: {e}", phase="start",
                                   cause=e) from None
        chan = conn.lanes[REMOTE_LANE].chan
        chan.min_spin_ns = max(chan.min_spin_ns, spin_ns)
        self.conn = conn

    def live_conn(self, stream: bool = False) -> Any:
        """The worker running this plugin: a worker that died (in a request, or while idle: its
        pidfd is asked once per stream) is replaced and the plugin loaded again there first.

        For a new ``stream`` after the worker failed under a stream, the replacement waits for the
        reload backoff (or never comes, with ``reload_on_failure=False``): :class:`_InBackoff`
        then tells the stream to take the failure policy without a worker."""
        conn = self.conn
        if conn.alive():
            return conn
        with self._reattach:
            conn = self.conn
            if conn.alive():  # another thread brought the replacement meanwhile
                return conn
            if stream and self.crashes:
                cfg = self.config
                host = self.plugin_ref().host  # type: ignore[union-attr]
                if not cfg.reload_on_failure or host.clock.monotonic_ns() < self.retry_ns:
                    if cfg.reload_on_failure:
                        host._count(cfg.name, "vm_reload_backoff")
                    raise _InBackoff()
                host._count(cfg.name, "vm_reload")
            self._attach()
            return self.conn

    def worker_failed(self, err: Any, context_id: int) -> None:
        """The worker failed under one of this plugin's streams: one record, one count, and the
        next replacement waits its backoff (see :func:`~._plugin.reload_delay`)."""
        plugin = self.plugin_ref()
        if plugin is None:
            return
        host, cfg = plugin.host, self.config
        self.crashes += 1
        host._count(cfg.name, "vm_failed")
        if cfg.reload_on_failure:
            delay = reload_delay(cfg, self.crashes)
            self.retry_ns = host.clock.monotonic_ns() + int(delay * 1e9)
            then = (f"a new worker starts with the first stream after {delay:.3g} s (failure {self.crashes} in a "
                    f"row); until then streams get {cfg.failure_policy}")
        else:
            then = f"no new worker: streams get {cfg.failure_policy} (reload_on_failure=False)"
        host._log_failure(cfg, err, context_id, then)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        conn = self.live_conn()
        t = conn.remote
        budget, why = self.engine._bound("compile") if name == "update" else self.event_budget
        return t.decode(conn.request("obj_call", (self.key, name, t.encode(args), t.encode(kwargs)), budget, why,
                                     lane=REMOTE_LANE))

    def get(self, name: str) -> Any:
        conn = self.live_conn()
        return conn.remote.decode(conn.request("obj_get", (self.key, name), lane=REMOTE_LANE)[1])

    def http_stream(self, plugin: Any, properties: Mapping[str, Any] | None) -> RemoteHttpStream:
        return self._stream(RemoteHttpStream(plugin, self, properties))

    def tcp_stream(self, plugin: Any, properties: Mapping[str, Any] | None) -> RemoteTcpStream:
        return self._stream(RemoteTcpStream(plugin, self, properties))

    def _stream(self, s: Any) -> Any:
        if self.config.failure_policy == "raise":
            s._event("")  # creation errors surface here, as in-process
        return s

    def update(self, gen: Any, wasm: bytes) -> None:
        self.call("update", wasm, dataclasses.replace(gen.config, limits=plugin_limits(gen.config)))
        self.config = gen.config
        self.wasm = wasm
        limits = gen.config.limits
        self.event_budget = self.engine._bound("event", limits.deadline if limits is not None else None)

    def close(self) -> None:
        conn = self.conn
        if conn is None or conn.dead:
            return
        try:
            conn.request("obj_call", (self.key, "close", (), {}), *self.event_budget, lane=REMOTE_LANE)
        except (WorkerCrashed, Trap):
            if not conn.dead:
                raise
            # the worker went during the plugin's shutdown: nothing of it is left to close
        finally:
            conn.remote_released.append(self.key)


_ACTIONS = tuple(Action)  # the worker sends an Action as its int
#: Keys of remote streams in the workers' tables: chosen here (negative, apart from the worker's
#: own), so a stream whose first event raised keeps its worker-side twin.
_STREAM_KEYS = itertools.count(-1, -1)


class _RemoteStream:
    """What the remote HTTP and TCP streams share: events cross once each; state is read on demand.

    The worker-side stream is created by the first event (or by :meth:`_fetch`),
    so ``plugin.http_stream()`` itself does not cross.
    """

    _kind = ""
    _state_names: tuple[str, ...] = ()

    def __init__(self, plugin: Any, rp: RemotePlugin, properties: Mapping[str, Any] | None) -> None:
        # (no base __init__: the stream lives in the worker; this object only names it)
        self.plugin = plugin
        self._rp = rp
        self._key = next(_STREAM_KEYS)  # the worker's name for it (made by the first event)
        self._sent = False
        self._stream_props = dict(properties) if properties else None
        self._state: tuple | None = None
        self._state_epoch = 0  # _WORK_EPOCH when _state was fetched
        self._closed = False
        self._lost: Any = None  # the local stand-in once the worker failed under this stream (see _failed)
        self._backoff_err: Any = None  # the worker is down and waits its backoff: the policy from the start
        try:
            self._conn = rp.live_conn(stream=True)
        except _InBackoff:
            self._conn = rp.conn
            self._backoff_err = PluginCrash(f"plugin {rp.config.name!r} is waiting for its reload after its worker "
                                            f"failed", callback="", cause=None)

    def __del__(self) -> None:
        conn = self._conn
        if self._sent and not conn.dead:
            conn.remote_released.append(self._key)  # released in the worker with the next batch

    def _event(self, ev: str, *args: Any) -> Any:
        if self._lost is not None:
            return self._lost_event(ev, args)
        if self._backoff_err is not None:  # no worker for now: the policy answers (as a failed VM's)
            if self._rp.config.failure_policy == "raise":
                raise self._backoff_err
            self._lost = self._local_stand_in(self._backoff_err)
            return self._lost_event(ev, args)
        self._state = None
        _WORK_EPOCH[0] += 1
        self._sent = True
        budget, why = self._rp.event_budget
        conn = self._conn
        try:
            r, closed = conn.request("pw_stream", (self._rp.key, self._key, self._kind, self._stream_props, ev, args),
                                     budget, why, lane=REMOTE_LANE)
        except (WorkerCrashed, Trap) as e:
            if not conn.dead:
                raise  # not the worker's failure (a Trap from the stream itself under "raise")
            return self._failed(ev, args, e)
        if closed:
            self._closed = True  # it completed (or was closed): close() has nothing left to do
        if self._rp.crashes:
            self._rp.crashes = 0  # the replacement worker served an event: the backoff starts over
        return _ACTIONS[r] if r.__class__ is int else r

    def _failed(self, ev: str, args: tuple, exc: BaseException) -> Any:
        """The worker died or was killed (it did not answer in time) during this stream's event
        ``ev``: the stream gets the plugin's failure policy here, as a plugin that trapped does
        (fail_closed: a local 503; fail_open: it goes on without the plugin; raise: PluginCrash).
        Its state in the worker is gone; this process keeps what it saw of the stream. The next
        stream starts a new worker and loads the plugin again there (see RemotePlugin.live_conn)."""
        err = PluginCrash(f"the plugin's worker failed during {ev or 'the stream start'}: {exc}",
                          callback=ev, cause=exc)
        self._rp.worker_failed(err, 0)
        if self._rp.config.failure_policy == "raise":
            raise err from exc
        self._lost = self._local_stand_in(err)
        return self._lost_event(ev, args)

    def _local_stand_in(self, err: Any) -> _LostState:
        """The stream's state here once its worker failed (each stream kind says what it holds)."""
        raise NotImplementedError

    def _lost_event(self, ev: str, args: tuple) -> Any:
        """An event after the worker failed: answered here by the failure policy."""
        raise NotImplementedError

    def _fetch(self, name: str) -> Any:
        if self._lost is not None:
            return getattr(self._lost, name)
        st = self._state
        if st is not None and self._state_epoch != _WORK_EPOCH[0]:
            st = None  # work ran in the worker since it was fetched
        if st is None:
            if not self._sent:
                self._event("")
                if self._lost is not None:
                    return getattr(self._lost, name)
            try:
                self._state_epoch = _WORK_EPOCH[0]
                st = self._state = self._conn.request("pw_state", (self._key, self._state_names), lane=REMOTE_LANE)
            except WorkerCrashed as e:
                if self._rp.config.failure_policy == "raise":
                    raise
                self._failed("", (), e)
                return getattr(self._lost, name)
        return st[self._state_names.index(name)]

    def wait(self, timeout: float = 5.0) -> bool:
        # The parent's loop: callout responses reach the worker through this process's
        # dispatchers, so the parent polls (which runs the worker's share), then asks.
        import time

        host = self.plugin.host
        deadline = time.monotonic() + timeout
        while True:
            host.poll()
            if self._event("wait", 0.0):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            host.poll(timeout=min(left, 0.05))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._event("close")
        if self._lost is not None:
            self._lost.closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def logs(self) -> list[str]:
        cid = self._fetch("context_id")
        recs = getattr(self.plugin.host.logger, "records", ())
        return [r.message for r in recs if r.context_id == cid and r.plugin == self._rp.config.name]

    def __repr__(self) -> str:
        return f"<{type(self).__mro__[2].__name__} of {self._rp.config.name!r} in the worker>"


def _state(name: str) -> property:
    return property(lambda self: self._fetch(name), doc=f"``{name}`` of the worker-side stream (read on demand).")


_COMMON = ("closed", "error", "started_ns", "context_id", "failed")


class _LostState:
    """What a remote stream shows once its worker failed: the failure and what this process saw."""

    # set by the stream kind's _local_stand_in: HTTP ...
    request: Any
    response: Any
    local_response: Any
    reset: Any
    route_cache_cleared: Any
    # ... and TCP
    downstream: Any
    upstream: Any
    connection_closed_by_plugin: Any

    def __init__(self, err: Any, started_ns: int, context_id: int) -> None:
        self.closed = False
        self.error = err
        self.failed = True
        self.started_ns = started_ns
        self.context_id = context_id


class RemoteHttpStream(_RemoteStream, HttpStream):
    """An :class:`~proxywasm_vm.HttpStream` whose plugin runs in the worker (see the module docs)."""

    _kind = "http"
    _state_names = ("request", "response", "local_response", "reset", "route_cache_cleared", *_COMMON)

    def _local_stand_in(self, err: Any) -> _LostState:
        st = _LostState(err, self.plugin.host.clock.now_ns(), 0)
        st.request, st.response = HttpMessage(), HttpMessage()
        st.reset, st.route_cache_cleared = False, 0
        st.local_response = None
        if self._rp.config.failure_policy != "fail_open":  # as HttpStream._on_failure (Envoy: 503)
            st.local_response = LocalResponse(503, b"", HeaderMap(), "wasm_fail_stream")
        return st

    def _lost_event(self, ev: str, args: tuple) -> Any:
        """An event after the worker failed: the policy's answer, what passes recorded here."""
        st = self._lost
        open_ = self._rp.config.failure_policy == "fail_open"
        msg = st.request if ev.startswith("request") else st.response if ev.startswith("response") else None
        if msg is not None:
            if ev.endswith("_headers"):
                msg.headers = host_map(args[0], self.plugin.host.preserve_header_case)
                msg.end_of_stream = bool(args[1]) if len(args) > 1 else False
            elif ev.endswith("_body"):
                msg._buf += args[0]
                msg.end_of_stream = bool(args[1]) if len(args) > 1 else False
                if open_:
                    msg._flush()
            elif ev.endswith("_trailers"):
                msg.trailers = host_map(args[0], self.plugin.host.preserve_header_case)
                msg.end_of_stream = True
            if ev.endswith("_headers") or ev.endswith("_body") or ev.endswith("_trailers"):
                return Action.CONTINUE if open_ else Action.PAUSE
        if ev == "wait":
            return True
        return None

    def _take_forwarded(self, request: bool) -> bytes:
        if self._lost is None and self._sent:
            _WORK_EPOCH[0] += 1  # the worker-side stream changes: fetched copies of its state are stale
            try:
                data: bytes = self._conn.request("pw_take", (self._key, request), lane=REMOTE_LANE)
                return data
            except WorkerCrashed as e:
                if self._rp.config.failure_policy == "raise":
                    raise
                self._failed("", (), e)
        lost = self._lost
        if lost is None:
            return b""  # nothing sent to the worker yet: nothing forwarded
        return (lost.request if request else lost.response)._take()

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

    def _encode_local_reply(self) -> None:
        self._event("_encode_local_reply")


class RemoteTcpStream(_RemoteStream, TcpStream):
    """A :class:`~proxywasm_vm.TcpStream` whose plugin runs in the worker (see the module docs)."""

    _kind = "tcp"
    _state_names = ("downstream", "upstream", "connection_closed_by_plugin", "closed_by_host", *_COMMON)

    def _local_stand_in(self, err: Any) -> _LostState:
        st = _LostState(err, self.plugin.host.clock.now_ns(), 0)
        st.downstream, st.upstream = TcpDirection(), TcpDirection()
        # as TcpStream._on_failure: fail_closed closes the connection
        st.connection_closed_by_plugin = self._rp.config.failure_policy != "fail_open"
        return st

    def _lost_event(self, ev: str, args: tuple) -> Any:
        st = self._lost
        open_ = self._rp.config.failure_policy == "fail_open"
        if ev in ("downstream_data", "upstream_data"):
            d = st.downstream if ev == "downstream_data" else st.upstream
            d._buf += args[0]
            d.end_of_stream = bool(args[1]) if len(args) > 1 else False
            if open_:
                d._flush()
        if ev in ("new_connection", "downstream_data", "upstream_data"):
            return Action.CONTINUE if open_ else Action.PAUSE
        if ev == "wait":
            return True
        return None

    def new_connection(self) -> Any:
        return self._event("new_connection")

    def downstream_data(self, data: bytes, end_of_stream: bool = False) -> Any:
        return self._event("downstream_data", bytes(data), end_of_stream)

    def upstream_data(self, data: bytes, end_of_stream: bool = False) -> Any:
        return self._event("upstream_data", bytes(data), end_of_stream)

    def downstream_close(self, peer: Any = None) -> None:
        self._event("downstream_close", *(() if peer is None else (peer,)))

    def upstream_close(self, peer: Any = None) -> None:
        self._event("upstream_close", *(() if peer is None else (peer,)))


for _cls in (RemoteHttpStream, RemoteTcpStream):
    for _name in _cls._state_names:
        setattr(_cls, _name, _state(_name))


# -- the worker's side -----------------------------------------------------------------------------

class _ParentScheduler(Scheduler):
    """A worker host's timers, kept in the parent host's scheduler (see :class:`HostBridge`)."""

    def __init__(self, bridge: Any, clock: Any) -> None:
        super().__init__(clock)
        self._bridge = bridge

    def set_period(self, key: Any, period_ms: int, fn: Any) -> None:
        self._bridge.set_tick(key, period_ms, fn)

    def cancel(self, key: Any) -> None:
        self._bridge.cancel_tick(key)

    def next_due(self) -> int | None:
        return None  # the parent's poll knows when

    def run_due(self, now: int | None = None) -> int:
        return 0  # the parent's scheduler fires them

    def advance(self, seconds: float = 0.0, *, ms: float = 0.0) -> int:
        raise TypeError("the parent host's advance() moves this host's clock")


class PinnedHost(ProxyWasmHost):
    """A Proxy-Wasm host living in a worker: every plugin runs on the worker's in-process engine.

    The parent already chose the runtime (the worker is that runtime), so a plugin's
    ``PluginConfig.backend`` (``"wasmtime@process"`` ...) is not resolved again here: doing
    so would start a worker from the worker, and so on without end.
    """

    def engine(self, backend: str | None = None) -> Any:
        return self._engines[self.backend]


class WorkerHost(PinnedHost):
    """A parent host's twin in the worker: its event loop is the parent's (see :class:`HostBridge`)."""

    def __init__(self, *, bridge: Any, foreign_functions: Any = None, **kw: Any) -> None:
        for name in ("shared_data", "queues"):
            if is_worker_spec(kw.get(name)):
                kw[name] = from_worker_spec(kw[name])
        super().__init__(scheduler=_ParentScheduler(bridge, kw["clock"]), **kw)
        if foreign_functions is not None:
            self.foreign_functions = foreign_functions  # the parent's (a proxy: its functions run there)
        self._bridge = bridge

    def _wake(self) -> None:
        super()._wake()
        self._bridge.wake()

    def pending(self) -> bool:
        """Whether a VM here waits for a callout or has events to run."""
        return any(vm.calls or vm.inbox for vm in list(self._tls.all))


def remote_host(engine: ProcessEngine, **kwargs: object) -> object:
    """A Proxy-Wasm host (``ProxyWasmHost(engine=..., **kwargs)``) living in ``engine``'s worker.

    Its VMs and host calls stay in the worker; what it returns (plugins,
    streams, header maps) are proxies whose calls cross once each; the objects
    passed in ``kwargs`` cross by reference (a ``MemoryLogger``, ``SharedData``,
    ``Metrics`` of this process stay here and are shared with in-process
    plugins) or by value (clocks, configs, plain data). See ``_isolation._remote``.
    Objects from a worker that died raise :class:`~proxywasm_vm.WorkerCrashed`.
    """
    if not isinstance(engine, ProcessEngine):
        raise TypeError("remote_host needs an engine with isolation='process'")
    conn = engine._conn_now()
    conn.use_extension(__name__)
    return conn.remote.decode(conn.request("pw_host", (conn.remote.encode(kwargs),), lane=REMOTE_LANE))


# -- the worker's requests (served by _isolation._worker.Worker once this module is imported there) -----

@worker_op("pw_host")
def _op_host(worker: Any, kwargs: dict) -> Any:
    """A host in the worker, on its in-process engine: the twin of a parent host, or a free-standing one."""
    kw = worker.remote.decode(kwargs)
    if "bridge" in kw:  # the twin of a parent host (see HostBridge)
        return worker.remote.encode(WorkerHost(engine=worker.engine, **kw))
    return worker.remote.encode(PinnedHost(engine=worker.engine, **kw))


@worker_op("pw_load", runs_wasm=True)
def _op_load(worker: Any, hkey: int, config: Any, wasm: bytes, spin_ns: int, vm_group: Any) -> int:
    """Load a plugin into the worker host ``hkey`` (in VM group ``vm_group``): the plugin's key."""
    chan = worker.channel()  # the parent's next event follows soon after a reply: spin for it
    chan.min_spin_ns = max(chan.min_spin_ns, spin_ns)
    key: int = worker.remote.export(worker.remote.get(hkey).load(config, wasm, _vm_group=vm_group)).key
    return key


@worker_op("pw_stream", runs_wasm=True)
def _op_stream(worker: Any, pkey: int, skey: int, kind: str, props: Any, ev: str, args: tuple) -> tuple:
    """One event of stream ``skey`` (a key the parent chose; the first event creates the
    ``kind`` stream under it): (result, closed)."""
    t = worker.remote
    s = t.objs.get(skey)
    if s is None:
        p = t.get(pkey)
        s = p.http_stream(props) if kind == "http" else p.tcp_stream(props)
        t.objs[skey] = s  # kept even when this event raises: the stream goes on, as in-process
    r = getattr(s, ev)(*args) if ev else None
    # an Action as its int (the reply stays marshal-able: pickling an enum costs µs); whether
    # the stream is over (it completes by itself once both directions ended)
    return (int(r) if r.__class__ is Action else r), s.closed


@worker_op("pw_take")
def _op_take(worker: Any, skey: int, request: bool) -> bytes:
    """The body bytes stream ``skey`` forwarded in one direction since the last take, handed over."""
    s = worker.remote.get(skey)
    data: bytes = s._take_forwarded(request)
    return data


@worker_op("pw_state")
def _op_state(worker: Any, skey: int, names: tuple[str, ...]) -> tuple:
    """The named attributes of stream ``skey``."""
    s = worker.remote.get(skey)
    return tuple(getattr(s, n) for n in names)
