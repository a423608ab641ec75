"""The objects of :mod:`proxywasm_vm.testing`: a plugin harness and fake HTTP and gRPC upstreams.

Built on the Proxy-Wasm host's replaceable services: the fakes are an
:class:`~proxywasm_vm.HttpDispatcher` and a :class:`~proxywasm_vm.GrpcDispatcher`;
logs, metrics, shared data, queues and time are the host's own
:class:`~proxywasm_vm.MemoryLogger`, :class:`~proxywasm_vm.Metrics`,
:class:`~proxywasm_vm.SharedData`, :class:`~proxywasm_vm.SharedQueues` and
:class:`~proxywasm_vm.ManualClock`. Nothing here imports pytest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Literal, Mapping, Protocol, TypeVar

from .._engine import Engine
from .._proxywasm._abi import LogLevel, Status
from .._proxywasm._grpc import GrpcDispatcher, GrpcEvents, GrpcHandle, UnknownGrpcUpstream
from .._proxywasm._http import HttpCallRequest, HttpCallResponse, HttpDispatcher, UnknownUpstream
from .._proxywasm._limits import HostLimits
from .._proxywasm._pairs import HeaderMap, HeadersLike
from .._proxywasm._plugin import STAT_COUNTERS, Plugin, PluginConfig, ProxyWasmHost
from .._proxywasm._services import Clock, LogRecord, ManualClock, MemoryLogger
from .._proxywasm._streams import HttpStream, TcpStream

__all__ = ["PluginHarness", "FakeHttpDispatcher", "PendingHttpCall", "FakeGrpcDispatcher", "PendingGrpcCall",
           "LogView", "NoPendingCall"]

CallState = Literal["pending", "answered", "failed", "cancelled"]


class NoPendingCall(AssertionError):
    """The test expected a pending callout and the plugin has made none (an assertion failure)."""


def _bytes(v: bytes | str) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


def _copy_map(m: Any) -> HeaderMap:
    """A HeaderMap of this process (a map handed in by a worker's host is copied once, here)."""
    if m is None:
        return HeaderMap()
    return HeaderMap([(bytes(k), bytes(v)) for k, v in m.raw_items()], preserve_case=bool(m.preserve_case))


# ------------------------------------------------------------------------------------------ HTTP


class PendingHttpCall:
    """One HTTP call the plugin made (``proxy_http_call``), held until the test answers it.

    The request is in :attr:`request` (and the shortcuts :attr:`upstream`, :attr:`method`,
    :attr:`path`, :attr:`authority`, :attr:`headers`, :attr:`body`, :attr:`trailers`,
    :attr:`timeout_ms`). :meth:`respond` or :meth:`fail` delivers the answer and, by default,
    runs the host's pending work at once, so the plugin's ``proxy_on_http_call_response``
    has run when it returns. :attr:`state` says where the call is: ``"pending"``,
    ``"answered"``, ``"failed"``, or ``"cancelled"`` (the plugin's context went away first).
    """

    def __init__(self, dispatcher: FakeHttpDispatcher, call_id: int, request: HttpCallRequest,
                 deliver: Callable[[HttpCallResponse], None]) -> None:
        self.id = call_id
        self.request = request
        self.state: CallState = "pending"
        #: the answer given (``None`` while pending or when cancelled)
        self.response: HttpCallResponse | None = None
        self._dispatcher = dispatcher
        self._deliver = deliver

    upstream = property(lambda self: self.request.upstream, doc="The upstream (cluster) the plugin named.")
    method = property(lambda self: self.request.method, doc="``:method``.")
    path = property(lambda self: self.request.path, doc="``:path``.")
    authority = property(lambda self: self.request.authority, doc="``:authority``.")
    headers = property(lambda self: self.request.headers, doc="Every request header, pseudo-headers included.")
    body = property(lambda self: self.request.body, doc="The request body.")
    trailers = property(lambda self: self.request.trailers, doc="The request trailers.")
    timeout_ms = property(lambda self: self.request.timeout_ms, doc="The timeout the plugin asked for (ms).")

    @property
    def pending(self) -> bool:
        """Not answered, failed or cancelled yet."""
        return self.state == "pending"

    def respond(self, status: int = 200, headers: HeadersLike = None, body: bytes | str = b"",
                trailers: HeadersLike = None, *, poll: bool = True) -> None:
        """Answer the call: ``:status`` ``status`` (added to ``headers`` unless given there),
        ``body`` and ``trailers``. With ``poll`` (default) the plugin's callback runs now."""
        self._finish(HttpCallResponse(status, headers, _bytes(body), trailers), "answered", poll)

    def fail(self, reason: str = "reset", *, poll: bool = True) -> None:
        """Fail the call (connection reset, timeout ...): as in Envoy, the plugin gets its response
        callback with no headers, no body and no trailers."""
        self._finish(HttpCallResponse.failure(reason), "failed", poll)

    def _finish(self, response: HttpCallResponse, state: CallState, poll: bool) -> None:
        if self.state != "pending":
            why = ("the plugin cancelled it (its context ended first)" if self.state == "cancelled"
                   else f"it was already {self.state}")
            raise RuntimeError(f"HTTP call #{self.id} to {self.upstream!r} cannot be answered: {why}")
        self.state = state
        self.response = response
        self._deliver(response)
        if poll:
            self._dispatcher._poll()

    def __repr__(self) -> str:
        return f"<PendingHttpCall #{self.id} {self.state} {self.method} {self.upstream}{self.path}>"


class _Call(Protocol):
    @property
    def pending(self) -> bool: ...


_C = TypeVar("_C", bound=_Call)


class _FakeUpstream(Generic[_C]):
    """What the two fakes share: the known upstream names, every call, the hook run after an answer."""

    def __init__(self, upstreams: Iterable[str] | None = None) -> None:
        self.upstreams = None if upstreams is None else frozenset(upstreams)
        #: every call (and gRPC stream), oldest first
        self.calls: list[_C] = []
        #: run after an answer (the harness sets it to its host's ``poll``)
        self.poll: Callable[[], Any] | None = None

    @property
    def pending(self) -> list[_C]:
        """The calls (and gRPC streams) still waiting for an answer, oldest first."""
        return [c for c in self.calls if c.pending]

    def _poll(self) -> None:
        if self.poll is not None:
            self.poll()


class FakeHttpDispatcher(_FakeUpstream["PendingHttpCall"], HttpDispatcher):
    """An HTTP dispatcher that answers nothing by itself: every call becomes a
    :class:`PendingHttpCall` in :attr:`calls` for the test to answer.

    ``upstreams`` (optional) is the set of known upstream names: a call to another one is
    refused (the plugin's ``proxy_http_call`` gets BAD_ARGUMENT, as in Envoy for an unknown
    cluster). ``None`` (the default) accepts every name.
    """

    def dispatch(self, request: HttpCallRequest, deliver: Callable[[HttpCallResponse], None]) -> Any:
        if self.upstreams is not None and request.upstream not in self.upstreams:
            raise UnknownUpstream(request.upstream)
        req = HttpCallRequest(str(request.upstream), _copy_map(request.headers), bytes(request.body),
                              _copy_map(request.trailers), int(request.timeout_ms))
        call = PendingHttpCall(self, len(self.calls) + 1, req, deliver)
        self.calls.append(call)
        return call.id  # the handle: an int, so that a host in a worker process holds a plain value

    def cancel(self, handle: Any) -> None:
        for c in self.calls:
            if c.id == handle and c.pending:
                c.state = "cancelled"


# ------------------------------------------------------------------------------------------ gRPC


class _PluginSide(GrpcHandle):
    """What the host calls when the plugin sends on, half-closes or cancels a call."""

    def __init__(self, call: PendingGrpcCall) -> None:
        self._call = call

    def send(self, message: bytes, end_stream: bool = False) -> bool:
        c = self._call
        if c.state != "pending" or c.half_closed:
            return False
        c.messages.append(bytes(message))
        if end_stream:
            c.half_closed = True
        return True

    def cancel(self) -> None:
        if self._call.state == "pending":
            self._call.state = "cancelled"

    def close(self) -> None:
        if self._call.streaming:
            self._call.half_closed = True
        else:
            self.cancel()


class PendingGrpcCall:
    """One gRPC call (``proxy_grpc_call``) or stream (``proxy_grpc_stream``) the plugin opened,
    held until the test answers it, playing the upstream server.

    What the plugin sent: :attr:`upstream`, :attr:`service`, :attr:`method`, :attr:`metadata`
    (initial metadata), :attr:`timeout_ms`, :attr:`messages` (the request of a unary call, or
    every message sent on a stream) and :attr:`half_closed` (the plugin ended its side).

    The test answers a unary call with :meth:`respond` or :meth:`fail`; on a stream it sends
    :meth:`send_initial_metadata`, :meth:`send` and ends it with :meth:`close`. Each runs the
    host's pending work by default (``poll=True``), so the plugin's callbacks have run when it
    returns. :attr:`state`: ``"pending"``, ``"answered"`` (closed with status 0), ``"failed"``
    (closed with another status) or ``"cancelled"`` (by the plugin, or its context ended).
    """

    def __init__(self, dispatcher: FakeGrpcDispatcher, call_id: int, upstream: str, service: str, method: str,
                 metadata: HeaderMap, message: bytes | None, timeout_ms: int, events: GrpcEvents) -> None:
        self.id = call_id
        self.upstream = upstream
        self.service = service
        self.method = method
        self.metadata = metadata
        self.timeout_ms = timeout_ms
        #: ``True`` for ``proxy_grpc_stream``, ``False`` for a unary ``proxy_grpc_call``
        self.streaming = message is None
        #: messages from the plugin: the unary request, or each message sent on the stream
        self.messages: list[bytes] = [] if message is None else [message]
        self.half_closed = not self.streaming
        self.state: CallState = "pending"
        #: the gRPC status the test closed the call with
        self.status: int | None = None
        self._dispatcher = dispatcher
        self._events = events
        self.handle = _PluginSide(self)

    @property
    def message(self) -> bytes:
        """The request of a unary call (the first message of a stream; ``b""`` if none yet)."""
        return self.messages[0] if self.messages else b""

    @property
    def pending(self) -> bool:
        """Not closed or cancelled yet."""
        return self.state == "pending"

    # -- the upstream's side, driven by the test --------------------------------------------------
    def respond(self, message: bytes | str = b"", *, initial_metadata: HeadersLike = None,
                trailing_metadata: HeadersLike = None, poll: bool = True) -> None:
        """Answer with success: initial metadata, one ``message``, trailing metadata, status 0 (OK)."""
        self._check()
        ev = self._events
        ev.initial_metadata(HeaderMap(initial_metadata))
        ev.message(_bytes(message))
        ev.trailing_metadata(HeaderMap(trailing_metadata))
        self._close(0, "", poll)

    def fail(self, status: int = 14, message: str = "unavailable", *, trailing_metadata: HeadersLike = None,
             poll: bool = True) -> None:
        """End the call with a non-zero gRPC ``status`` (default 14, UNAVAILABLE) and ``message``;
        the plugin's close callback gets them (``proxy_get_status``)."""
        if status == 0:
            raise ValueError("fail() needs a non-zero gRPC status (0 is OK: use respond() or close())")
        self._check()
        if trailing_metadata is not None:
            self._events.trailing_metadata(HeaderMap(trailing_metadata))
        self._close(status, message, poll)

    def send_initial_metadata(self, metadata: HeadersLike = None, *, poll: bool = True) -> None:
        """Send the server's initial metadata."""
        self._check()
        self._events.initial_metadata(HeaderMap(metadata))
        self._poll(poll)

    def send(self, message: bytes | str, *, poll: bool = True) -> None:
        """Send one message to the plugin (``proxy_on_grpc_receive``)."""
        self._check()
        self._events.message(_bytes(message))
        self._poll(poll)

    def close(self, status: int = 0, message: str = "", *, trailing_metadata: HeadersLike = None,
              poll: bool = True) -> None:
        """End the call or stream with ``status`` (trailing metadata first, when given)."""
        self._check()
        if trailing_metadata is not None:
            self._events.trailing_metadata(HeaderMap(trailing_metadata))
        self._close(status, message, poll)

    def _close(self, status: int, message: str, poll: bool) -> None:
        self.state = "answered" if status == 0 else "failed"
        self.status = status
        self._events.close(status, message)
        self._poll(poll)

    def _check(self) -> None:
        if self.state != "pending":
            why = ("the plugin cancelled it (or its context ended)" if self.state == "cancelled"
                   else f"it is already closed ({self.state}, status {self.status})")
            raise RuntimeError(f"gRPC call #{self.id} {self.service}/{self.method} cannot be answered: {why}")

    def _poll(self, poll: bool) -> None:
        if poll:
            self._dispatcher._poll()

    def __repr__(self) -> str:
        kind = "stream" if self.streaming else "call"
        return f"<PendingGrpcCall #{self.id} {kind} {self.state} {self.upstream}:{self.service}/{self.method}>"


class FakeGrpcDispatcher(_FakeUpstream["PendingGrpcCall"], GrpcDispatcher):
    """A gRPC dispatcher that plays the upstream server through the test: each call or stream the
    plugin opens becomes a :class:`PendingGrpcCall` in :attr:`calls`.

    ``upstreams`` (optional) is the set of known upstream names; a call to another one is refused
    (the plugin's ``proxy_grpc_call`` gets PARSE_FAILURE, as Envoy answers for a cluster it cannot
    parse or find). ``None`` (the default) accepts every name.
    """

    def _open(self, upstream: str, service: str, method: str, metadata: HeaderMap, message: bytes | None,
              timeout_ms: int, events: GrpcEvents) -> GrpcHandle:
        if self.upstreams is not None and upstream not in self.upstreams:
            raise UnknownGrpcUpstream(upstream)
        call = PendingGrpcCall(self, len(self.calls) + 1, str(upstream), str(service), str(method),
                               _copy_map(metadata), None if message is None else bytes(message), int(timeout_ms),
                               events)
        self.calls.append(call)
        return call.handle

    def call(self, upstream: str, service: str, method: str, metadata: HeaderMap, message: bytes,
             timeout_ms: int, events: GrpcEvents) -> GrpcHandle:
        return self._open(upstream, service, method, metadata, message, timeout_ms, events)

    def stream(self, upstream: str, service: str, method: str, metadata: HeaderMap,
               events: GrpcEvents) -> GrpcHandle:
        return self._open(upstream, service, method, metadata, None, 0, events)


# ------------------------------------------------------------------------------------------ logs


class LogView(list):  # type: ignore[type-arg]  # a list of str (list[str] subclasses need 3.9+ generics)
    """A plugin's log messages, oldest first (a ``list`` of ``str``), with views by level:
    :attr:`trace` ... :attr:`critical` (exactly that level), :meth:`at_least`, and the
    :class:`~proxywasm_vm.LogRecord` objects in :attr:`records`.

    >>> logs = LogView([LogRecord(LogLevel.WARN, "slow", "p", "", "", 2)])
    >>> logs, logs.warn, logs.info
    (['slow'], ['slow'], [])
    """

    def __init__(self, records: Iterable[LogRecord] = ()) -> None:
        self.records: list[LogRecord] = list(records)
        super().__init__(r.message for r in self.records)

    def at(self, level: LogLevel | int) -> list[str]:
        """Messages logged at exactly ``level``."""
        return [r.message for r in self.records if r.level == level]

    def at_least(self, level: LogLevel | int) -> list[str]:
        """Messages logged at ``level`` or above."""
        return [r.message for r in self.records if r.level >= level]

    trace = property(lambda self: self.at(LogLevel.TRACE), doc="Messages at TRACE.")
    debug = property(lambda self: self.at(LogLevel.DEBUG), doc="Messages at DEBUG.")
    info = property(lambda self: self.at(LogLevel.INFO), doc="Messages at INFO.")
    warn = property(lambda self: self.at(LogLevel.WARN), doc="Messages at WARN.")
    error = property(lambda self: self.at(LogLevel.ERROR), doc="Messages at ERROR.")
    critical = property(lambda self: self.at(LogLevel.CRITICAL), doc="Messages at CRITICAL.")

    def text(self) -> str:
        """One line per record: ``LEVEL [context] message``."""
        return "\n".join(f"{r.level.name:8s} [ctx {r.context_id}] {r.message}" for r in self.records)


# ------------------------------------------------------------------------------------------ harness


def _is_wat_text(wasm: Any) -> bool:
    return isinstance(wasm, str) and wasm.lstrip().startswith("(")


class PluginHarness:
    """One plugin in a host of its own, with every service in view of the test.

    ``wasm`` is a path (``.wasm``/``.wat``), bytes, WebAssembly text or a compiled
    :class:`~proxywasm_vm.Module`. ``backend`` (a backend id such as ``"v8"`` or
    ``"wasmtime@process"``) or ``engine`` picks the runtime. ``configuration``,
    ``root_id``, ``vm_id``, ``vm_config``, ``name`` (default: the file's stem) and
    every other :class:`~proxywasm_vm.PluginConfig` field (``**config``) configure the
    plugin. It starts at once: a plugin that rejects its configuration raises
    :class:`~proxywasm_vm.PluginStartError` here.

    Test defaults, each replaceable:

    - ``failure_policy="raise"``: a trap or abort in the plugin raises
      :class:`~proxywasm_vm.PluginCrash` in the test instead of turning into a local
      503 as in a proxy (pass ``failure_policy="fail_closed"`` to test that);
    - ``http`` / ``grpc``: :class:`FakeHttpDispatcher` / :class:`FakeGrpcDispatcher`
      (any dispatcher works, e.g. ``HttpxDispatcher`` for a real server);
    - ``clock``: a :class:`~proxywasm_vm.ManualClock`: time moves only with :meth:`advance`;
    - the log keeps every level (``log_level=LogLevel.TRACE``, what ``proxy_get_log_level`` reports);
    - ``host_limits`` (:class:`~proxywasm_vm.HostLimits`), ``properties`` and
      ``preserve_header_case`` (default ``False``: names lower-cased, as Envoy) go to the host.

    Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, wasm: Any, *, backend: str | None = None, engine: Engine | None = None,
                 configuration: bytes | str = b"", root_id: str = "", vm_id: str = "", vm_config: bytes | str = b"",
                 name: str | None = None, failure_policy: str = "raise", http: HttpDispatcher | None = None,
                 grpc: GrpcDispatcher | None = None, clock: Clock | None = None,
                 log_level: LogLevel = LogLevel.TRACE, host_limits: HostLimits | None = None,
                 properties: Mapping[str, Any] | None = None, preserve_header_case: bool = False,
                 **config: Any) -> None:
        if isinstance(wasm, (str, os.PathLike)) and not _is_wat_text(wasm):
            path = Path(wasm)
            if not path.is_file():
                raise FileNotFoundError(f"no Proxy-Wasm module at {path}" + (
                    "" if path.is_absolute() else f" (relative to {Path.cwd()})"))
            if name is None:
                name = path.stem
        self.http: HttpDispatcher = http if http is not None else FakeHttpDispatcher()
        self.grpc: GrpcDispatcher = grpc if grpc is not None else FakeGrpcDispatcher()
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.logger = MemoryLogger(level=log_level)
        host_kw: dict[str, Any] = {} if engine is not None or backend is None else {"backend": backend}
        self.host = ProxyWasmHost(engine=engine, logger=self.logger, http=self.http, grpc=self.grpc,
                                  clock=self.clock, limits=host_limits, properties=properties,
                                  preserve_header_case=preserve_header_case, **host_kw)
        for d in (self.http, self.grpc):
            if isinstance(d, (FakeHttpDispatcher, FakeGrpcDispatcher)):
                d.poll = self.host.poll
        self._streams: list[HttpStream | TcpStream] = []
        try:
            cfg = PluginConfig(name=name or "plugin", root_id=root_id, vm_id=vm_id, configuration=configuration,
                               vm_config=vm_config, backend=None if engine is not None else backend,
                               failure_policy=failure_policy, **config)  # type: ignore[arg-type]
            self.plugin = Plugin(cfg, wasm, host=self.host, engine=engine)
        except BaseException:
            self.host.close()
            raise

    # -- what runs --------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend id the plugin runs on (``"wasmtime"``, ``"v8@process"`` ...)."""
        return self.plugin.engine.name

    @property
    def name(self) -> str:
        """The plugin's name (log records, host counters)."""
        return self.plugin.name

    @property
    def vm_id(self) -> str:
        return self.plugin.config.vm_id

    # -- streams ----------------------------------------------------------------------------------
    def http_stream(self, properties: Mapping[str, Any] | None = None) -> HttpStream:
        """A new HTTP stream through the plugin (closed with the harness if still open)."""
        s = self.plugin.http_stream(properties)
        self._streams.append(s)
        return s

    def tcp_stream(self, properties: Mapping[str, Any] | None = None) -> TcpStream:
        """A new TCP connection through a network plugin (closed with the harness if still open)."""
        s = self.plugin.tcp_stream(properties)
        self._streams.append(s)
        return s

    def request(self, headers: HeadersLike, body: bytes | str | None = None, *, trailers: HeadersLike = None,
                properties: Mapping[str, Any] | None = None) -> HttpStream:
        """Send a whole request into a new stream: the headers, then ``body`` and ``trailers``
        when given (the last event ends the request). Returns the stream, still open for the
        response (``stream.response_headers(...)``); what the plugin did is in
        ``stream.request`` and ``stream.local_response``."""
        s = self.http_stream(properties)
        s.request_headers(headers, end_of_stream=body is None and trailers is None)
        if body is not None:
            s.request_body(_bytes(body), end_of_stream=trailers is None)
        if trailers is not None:
            s.request_trailers(trailers)
        return s

    # -- time and pending work --------------------------------------------------------------------
    def poll(self) -> int:
        """Run the pending work now (callout answers, gRPC events, queue events, due ticks);
        returns how many events ran."""
        return self.host.poll()

    def advance(self, seconds: float = 0.0, *, ms: float = 0.0) -> int:
        """Move the :class:`~proxywasm_vm.ManualClock` forward, firing every tick that falls due,
        in order; returns how many events ran."""
        return self.host.advance(seconds, ms=ms)

    # -- callouts ---------------------------------------------------------------------------------
    def _fake_http(self) -> FakeHttpDispatcher:
        if not isinstance(self.http, FakeHttpDispatcher):
            raise TypeError(f"the harness's HTTP dispatcher is a {type(self.http).__name__}, not a "
                            f"FakeHttpDispatcher: it does not record calls")
        return self.http

    def _fake_grpc(self) -> FakeGrpcDispatcher:
        if not isinstance(self.grpc, FakeGrpcDispatcher):
            raise TypeError(f"the harness's gRPC dispatcher is a {type(self.grpc).__name__}, not a "
                            f"FakeGrpcDispatcher: it does not record calls")
        return self.grpc

    @property
    def http_calls(self) -> list[PendingHttpCall]:
        """Every HTTP call the plugin made, oldest first (answered ones too: see ``.state``)."""
        return list(self._fake_http().calls)

    @property
    def pending_http_calls(self) -> list[PendingHttpCall]:
        """The HTTP calls waiting for the test's answer, oldest first."""
        return self._fake_http().pending

    def next_http_call(self, upstream: str | None = None) -> PendingHttpCall:
        """The oldest pending HTTP call (to ``upstream``, when given); :class:`NoPendingCall`
        (an ``AssertionError``) when there is none."""
        for c in self._fake_http().pending:
            if upstream is None or c.upstream == upstream:
                return c
        to = "" if upstream is None else f" to upstream {upstream!r}"
        raise NoPendingCall(f"the plugin has no pending HTTP call{to}; calls so far: {self.http_calls or 'none'}")

    @property
    def grpc_calls(self) -> list[PendingGrpcCall]:
        """Every gRPC call and stream the plugin opened, oldest first."""
        return list(self._fake_grpc().calls)

    @property
    def pending_grpc_calls(self) -> list[PendingGrpcCall]:
        """The gRPC calls and streams still open, oldest first."""
        return self._fake_grpc().pending

    def next_grpc_call(self, service: str | None = None, method: str | None = None) -> PendingGrpcCall:
        """The oldest open gRPC call or stream (of ``service`` / ``method``, when given);
        :class:`NoPendingCall` when there is none."""
        for c in self._fake_grpc().pending:
            if (service is None or c.service == service) and (method is None or c.method == method):
                return c
        what = "/".join(x for x in (service, method) if x)
        raise NoPendingCall(f"the plugin has no open gRPC call{' ' + what if what else ''}; "
                            f"calls so far: {self.grpc_calls or 'none'}")

    # -- logs, metrics, shared data, queues -------------------------------------------------------
    @property
    def logs(self) -> LogView:
        """Everything the plugin logged so far (``proxy_log`` and WASI stdout/stderr), by level."""
        return LogView(r for r in list(self.logger.records) if r.plugin == self.name)

    @property
    def metrics(self) -> dict[str, Any]:
        """The plugin's metrics: ``{name: value}`` for counters and gauges, ``{name: [values]}``
        for histograms (the host's own ``pwvm.*`` counters are in :meth:`stats`)."""
        own = {f"pwvm.{self.name}.{c}" for c in STAT_COUNTERS}
        return {k: v for k, v in self.host.metrics.snapshot().items()
                if k not in own and not k.startswith(ProxyWasmHost.LIMIT_METRIC)}

    def metric(self, name: str) -> Any:
        """The value of metric ``name`` (a list for a histogram); ``KeyError`` naming those defined."""
        m = self.metrics
        if name not in m:
            raise KeyError(f"the plugin defined no metric {name!r}; defined: {sorted(m) or 'none'}")
        return m[name]

    def stats(self) -> dict[str, int]:
        """The host's counters for this plugin: VMs created, failures, reloads (``Plugin.stats``)."""
        return self.plugin.stats()

    @property
    def shared_data(self) -> dict[bytes, bytes]:
        """The shared data of the plugin's ``vm_id``: ``{key: value}``."""
        return self.host.shared_data.items(self.vm_id)

    def set_shared_data(self, key: bytes | str, value: bytes | str) -> None:
        """Store a value the plugin can read (``proxy_get_shared_data``)."""
        st = self.host.shared_data.set(self.vm_id, _bytes(key), _bytes(value))
        if st != Status.OK:
            raise ValueError(f"shared data refused {key!r}: {Status(st).name} (HostLimits)")

    def enqueue(self, queue: str, data: bytes | str, *, poll: bool = True) -> None:
        """Put ``data`` on the plugin's shared queue ``queue`` (of its ``vm_id``); with ``poll``
        the plugin's ``proxy_on_queue_ready`` runs now. ``LookupError`` when no such queue exists."""
        q = self.host.queues
        token = q.resolve(self.vm_id, queue)
        if token is None:
            raise LookupError(f"no shared queue {queue!r} for vm_id {self.vm_id!r}: the plugin registers its "
                              f"queues with proxy_register_shared_queue")
        st = q.enqueue(token, _bytes(data))
        if st != Status.OK:
            raise ValueError(f"queue {queue!r} refused the item: {Status(st).name} (HostLimits)")
        if poll:
            self.host.poll()

    def dequeue(self, queue: str) -> bytes | None:
        """Take the oldest item from shared queue ``queue`` (``None`` when empty or missing)."""
        q = self.host.queues
        token = q.resolve(self.vm_id, queue)
        if token is None:
            return None
        status, data = q.dequeue(token)
        return data if status == Status.OK else None

    # -- end --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the streams still open (best effort) and the host (root contexts get
        ``proxy_on_done`` / ``proxy_on_delete``)."""
        for s in self._streams:
            if not s.closed:
                try:
                    s.close()
                except Exception:  # noqa: BLE001 - the test's outcome is already decided
                    pass
        self._streams.clear()
        self.host.close()

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PluginHarness {self.name!r} on {self.backend}>"
