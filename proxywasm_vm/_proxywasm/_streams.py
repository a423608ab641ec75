"""Stream drivers: what a proxy (or a test) calls to push an HTTP or TCP stream through a plugin."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ._abi import Action, LogLevel, PeerType, Status
from ._errors import PluginCrash
from ._pairs import _NAMES, _RAW_NAMES, HeaderMap, HeadersLike, _fast_flatten, _flatten, host_map
from ._properties import flatten_properties

if TYPE_CHECKING:
    from ._plugin import Plugin, _Generation
    from ._vm import VM, _Context

__all__ = ["HttpStream", "TcpStream", "HttpMessage", "LocalResponse", "TcpDirection"]

_M32 = 0xFFFFFFFF
_NO_PROPS: dict = {}
_CONT = Action.CONTINUE
_PAUSE = Action.PAUSE


_GO_ON = (0, 2)  # callback results that mean CONTINUE (0: Continue, 2: ContinueAndEndStream)


def _action(raw: int | None) -> Action:
    if raw is None:  # a callback without a result
        return _CONT
    return _CONT if (raw & _M32) in _GO_ON else _PAUSE


@dataclass
class LocalResponse:
    """A response the plugin sent instead of forwarding the stream (``proxy_send_local_response``)."""

    status: int
    body: bytes = b""
    headers: HeaderMap = field(default_factory=HeaderMap)
    details: str = ""
    grpc_status: int | None = None


class _Buffered:
    """Bytes of one direction: forwarded so far (``_sent``) and held back while paused (``_buf``)."""

    __slots__ = ("_sent", "_buf", "paused", "end_of_stream", "_taken")

    def __init__(self) -> None:
        self._sent = bytearray()
        self._buf = bytearray()
        self.paused = False
        self.end_of_stream = False
        self._taken = 0  # forwarded bytes a consumer took away (_take): still counted in sizes

    def _take(self) -> bytes:
        """The forwarded bytes, handed over and released: an embedder that passes them on (the
        ASGI middleware) keeps the host from holding a streamed body it already forwarded."""
        out = bytes(self._sent)
        self._taken += len(out)
        del self._sent[:]
        return out

    def _size(self) -> int:
        """Bytes of this direction so far: forwarded (also those taken) and held back."""
        return self._taken + len(self._sent) + len(self._buf)

    @property
    def buffered(self) -> bytes:
        """Bytes held back (the plugin paused and has not resumed)."""
        return bytes(self._buf)

    def _flush(self) -> None:
        if self._buf:
            self._sent += self._buf
            del self._buf[:]


class HttpMessage(_Buffered):
    """One direction (request or response) of an HTTP stream, as the plugin left it.

    - ``headers`` / ``trailers``: the (possibly rewritten) maps, ``None`` until received;
    - ``body``: the bytes forwarded so far; ``buffered``: bytes held back while paused;
    - ``paused``: the plugin stopped this direction and has not resumed it.
    """

    __slots__ = ("headers", "trailers", "_hdr_paused", "chunks")

    def __init__(self) -> None:
        _Buffered.__init__(self)
        self.headers: HeaderMap | None = None
        self.trailers: HeaderMap | None = None
        self._hdr_paused = False
        self.chunks = 0

    @property
    def body(self) -> bytes:
        """Body bytes forwarded so far (after the plugin's changes)."""
        return bytes(self._sent)

    def __repr__(self) -> str:
        return (f"<HttpMessage headers={len(self.headers) if self.headers is not None else None} "
                f"body={len(self._sent)}B buffered={len(self._buf)}B paused={self.paused}>")


class _StreamBase:
    _http = False

    def __init__(self, plugin: Plugin, gen: _Generation, vm: VM, root: _Context,
                 properties: Mapping[str, Any] | None) -> None:
        self.plugin = plugin
        self._gen = gen
        self._vm = vm
        self._root = root
        self._props = flatten_properties(properties) if properties else _NO_PROPS
        self._in_cb = False
        self._resume_req = 0
        self.closed = False
        self.error: PluginCrash | None = None
        self.started_ns = vm.host.clock.now_ns()
        self._ctx: _Context | None = None
        if vm.failed is None:
            try:
                self._ctx = vm.new_stream(root, self)
            except PluginCrash as e:
                if gen.config.failure_policy == "raise":
                    raise
                self._vm_failed(e)
        else:
            if gen.config.failure_policy == "raise":
                raise vm.failed
            self._vm_failed(vm.failed)

    @property
    def context_id(self) -> int:
        """The plugin-side context id of this stream (0 if it could not be created)."""
        return self._ctx.id if self._ctx is not None else 0

    @property
    def failed(self) -> bool:
        """The plugin failed during this stream (see :attr:`error`)."""
        return self.error is not None

    def _call(self, name: str, fn: Any, *args: int) -> Action | None:
        """Run a stream callback; None when the plugin failed (the policy decides the outcome)."""
        ctx = self._ctx
        # ``_ctx`` is None only when the plugin failed creating it, and then ``error`` is set:
        # every event method returns before a callback in that case (so in the asserts below).
        assert ctx is not None
        self._in_cb = True
        self._resume_req = 0
        try:
            return _action(self._vm.call_in(ctx, name, fn, *args))
        except PluginCrash as e:
            if self._gen.config.failure_policy == "raise":
                raise
            self._vm_failed(e)
            return None
        finally:
            self._in_cb = False

    def _vm_failed(self, err: PluginCrash) -> None:
        if self.error is None:
            self.error = err
            self._on_failure()

    def _on_failure(self) -> None:
        raise NotImplementedError

    def wait(self, timeout: float = 5.0) -> bool:
        """Run the host's pending work (callout responses, ticks, queue events) until this
        stream is no longer paused, or ``timeout`` seconds pass. Returns True when it is not paused."""
        host = self._vm.host
        deadline = time.monotonic() + timeout
        while self._is_paused() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            host.poll(timeout=min(left, 0.05))
        return not self._is_paused()

    def _is_paused(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """End the stream: ``proxy_on_done``, ``proxy_on_log``, ``proxy_on_delete`` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        ctx = self._ctx
        if ctx is None:
            return
        try:
            self._vm.finish_stream(ctx)
        except PluginCrash as e:
            if self._gen.config.failure_policy == "raise":
                raise
            self._vm_failed(e)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def logs(self) -> list[str]:
        """Messages the plugin logged from this stream's context."""
        cid = self.context_id
        recs = getattr(self._vm.host.logger, "records", ())
        return [r.message for r in recs if r.context_id == cid and r.plugin == self._gen.config.name]


class HttpStream(_StreamBase):
    """One HTTP request/response pair going through a plugin.

    Call the event methods in protocol order; each returns the plugin's
    :class:`Action`. Afterwards :attr:`request` and :attr:`response` hold the
    headers and bodies as the plugin left them, :attr:`local_response` any
    response the plugin sent itself.

    As in Envoy, the stream completes by itself once both directions have ended
    (``end_of_stream``, or trailers) and neither waits: ``proxy_on_done``,
    ``proxy_on_log`` and ``proxy_on_delete`` run then, at the end of the event
    that completed it. Otherwise (a stream the plugin answered, reset or left
    paused, or one abandoned halfway) use it as a context manager or call
    :meth:`close`; closing a completed stream does nothing.

    >>> # with plugin.http_stream() as s:
    >>> #     assert s.request_headers({":path": "/"}) is Action.CONTINUE
    """

    _http = True

    def __init__(self, plugin: Plugin, gen: _Generation, vm: VM, root: _Context,
                 properties: Mapping[str, Any] | None = None) -> None:
        self.request = req = HttpMessage()
        self.response = resp = HttpMessage()
        self.local_response: LocalResponse | None = None
        self.reset = False
        self.route_cache_cleared = 0
        self._encoding_local = False  # its own local response goes through its response callbacks
        _StreamBase.__init__(self, plugin, gen, vm, root, properties)
        ctx = self._ctx
        if ctx is not None:
            bufs = ctx.bufs
            bufs[0] = req._buf
            bufs[1] = resp._buf

    # -- events ------------------------------------------------------------------------
    def request_headers(self, headers: HeadersLike, end_of_stream: bool = False) -> Action:
        """Request headers arrived (``proxy_on_request_headers``)."""
        a = self._headers(self.request, 0, headers, end_of_stream, self._vm.f_request_headers,
                          "proxy_on_request_headers")
        if end_of_stream and self.response.end_of_stream:
            self._complete()
        return a

    def response_headers(self, headers: HeadersLike, end_of_stream: bool = False) -> Action:
        """Response headers arrived (``proxy_on_response_headers``)."""
        a = self._headers(self.response, 2, headers, end_of_stream, self._vm.f_response_headers,
                          "proxy_on_response_headers")
        if end_of_stream and self.request.end_of_stream:
            self._complete()
        return a

    def request_body(self, chunk: bytes, end_of_stream: bool = False) -> Action:
        """A request body chunk arrived (``proxy_on_request_body``)."""
        a = self._body(self.request, chunk, end_of_stream, self._vm.f_request_body, "proxy_on_request_body")
        if end_of_stream and self.response.end_of_stream:
            self._complete()
        return a

    def response_body(self, chunk: bytes, end_of_stream: bool = False) -> Action:
        """A response body chunk arrived (``proxy_on_response_body``)."""
        a = self._body(self.response, chunk, end_of_stream, self._vm.f_response_body, "proxy_on_response_body")
        if end_of_stream and self.request.end_of_stream:
            self._complete()
        return a

    def request_trailers(self, trailers: HeadersLike) -> Action:
        """Request trailers arrived (``proxy_on_request_trailers``)."""
        a = self._trailers(self.request, 1, trailers, self._vm.f_request_trailers, "proxy_on_request_trailers")
        if self.response.end_of_stream:
            self._complete()
        return a

    def response_trailers(self, trailers: HeadersLike) -> Action:
        """Response trailers arrived (``proxy_on_response_trailers``)."""
        a = self._trailers(self.response, 3, trailers, self._vm.f_response_trailers,
                           "proxy_on_response_trailers")
        if self.request.end_of_stream:
            self._complete()
        return a

    def _take_forwarded(self, request: bool) -> bytes:
        """The body bytes forwarded in one direction since the last take, handed over: the host
        keeps none of them (for an embedder that passes them on, as the ASGI middleware does)."""
        return (self.request if request else self.response)._take()

    def _encode_local_reply(self) -> None:
        """The embedder sends this stream's local response through the response callbacks (as
        Envoy runs a local reply through the encoder filters, the answering one included): from
        now on the response events reach the plugin as a response's would. A second local
        response the plugin sends meanwhile replaces the first and goes straight to the client
        (Envoy's direct local reply); the response events are blocked again then."""
        if self.local_response is not None and not self.reset and self.error is None:
            self._encoding_local = True

    def wait(self, timeout: float = 5.0) -> bool:
        resumed = super().wait(timeout)
        if resumed and self.request.end_of_stream and self.response.end_of_stream:
            self._complete()
        return resumed

    wait.__doc__ = _StreamBase.wait.__doc__

    def _complete(self) -> None:
        """Both directions ended: the stream is over, as Envoy ends it (done, log, delete), unless
        a direction still waits (paused) or the plugin answered or reset it (then :meth:`close`)."""
        if self.closed or self.request.paused or self.response.paused or self.local_response is not None \
                or self.reset:
            return
        self.close()

    # -- internals ---------------------------------------------------------------------
    def _blocked(self, msg: HttpMessage) -> Action | None:
        if self.closed:
            raise RuntimeError("the stream is closed")
        if self.error is not None:
            return self._failed_action()
        if self.reset or (self.local_response is not None and not (self._encoding_local and msg is self.response)):
            return _PAUSE
        return None

    def _headers(self, msg: HttpMessage, idx: int, headers: HeadersLike, eos: bool, fn: Any, name: str) -> Action:
        if headers.__class__ is HeaderMap:
            m = headers
        else:  # lower-cased names, as Envoy's codecs, unless the host preserves case
            keep = self._vm.keep_case
            # _flatten's C fast path called straight away for the common input (a list of pairs)
            flat = _fast_flatten(headers, _RAW_NAMES if keep else _NAMES) if headers.__class__ is list else None
            if flat is None:
                flat = _flatten(headers, lower=not keep, fast=headers.__class__ is not list)
            m = HeaderMap._from_flat(flat, keep)
        msg.headers = m
        msg.end_of_stream = eos
        if self.closed or self.error is not None or self.local_response is not None or self.reset:
            blocked = self._blocked(msg)
            if blocked is not None:  # (None: its own local response, through its response callbacks)
                return blocked
        ctx = self._ctx
        assert ctx is not None  # None only with self.error set (see _call)
        ctx.maps[idx] = m
        if fn is None:
            return _CONT
        vm = self._vm
        # self._call(...), written out: the hot path keeps one Python frame (VM.call_in)
        # between this method and the plugin.
        self._in_cb = True
        self._resume_req = 0
        try:
            if vm.hdr_args == 2:
                raw = vm.call_in(ctx, name, fn, ctx.id, len(m._flat) >> 1)
            else:
                raw = vm.call_in(ctx, name, fn, ctx.id, len(m._flat) >> 1, 1 if eos else 0)
        except PluginCrash as e:
            if self._gen.config.failure_policy == "raise":
                raise
            self._vm_failed(e)
            return self._failed_action()
        finally:
            self._in_cb = False
        if raw is None or (raw & _M32) in _GO_ON:  # _action(raw) is CONTINUE
            if not self._resume_req and self.local_response is None and not self.reset:
                # _after(msg, CONTINUE, True) when nothing else happened in the callback
                msg.paused = msg._hdr_paused = False
                if msg._buf:
                    msg._flush()
                return _CONT
            return self._after(msg, _CONT, True)
        return self._after(msg, _PAUSE, True)

    def _after(self, msg: HttpMessage, a: Action, headers: bool) -> Action:
        bit = 1 if msg is self.request else 2
        if self._resume_req & bit:
            a = _CONT
        if self.reset or (self.local_response is not None and not (self._encoding_local and msg is self.response)):
            msg.paused = True
            return _PAUSE
        if a is _PAUSE:
            msg.paused = True
            if headers:
                msg._hdr_paused = True
        else:
            if headers:
                msg._hdr_paused = False
            msg.paused = msg._hdr_paused  # a body may go on while the headers still wait
            if not msg._hdr_paused:
                msg._flush()
        return a

    def _body(self, msg: HttpMessage, chunk: bytes, eos: bool, fn: Any, name: str) -> Action:
        msg._buf += chunk
        msg.end_of_stream = eos
        msg.chunks += 1
        cap = self._vm.body_max
        b = self._blocked(msg)
        if b is not None:
            if self.error is not None and self._gen.config.failure_policy == "fail_open":
                msg._flush()
            elif len(msg._buf) > cap:
                self._overflow(msg)
            return b
        if fn is None:
            if not msg._hdr_paused:
                msg._flush()
            elif len(msg._buf) > cap:
                self._overflow(msg)
                return _PAUSE
            return _CONT
        if msg.paused and len(msg._buf) > cap:  # held since a pause, with this chunk past the limit
            self._overflow(msg)
            return _PAUSE
        ctx = self._ctx
        assert ctx is not None
        # self._call(...), written out as in _headers
        self._in_cb = True
        self._resume_req = 0
        try:
            raw = self._vm.call_in(ctx, name, fn, ctx.id, len(msg._buf), 1 if eos else 0)
        except PluginCrash as e:
            if self._gen.config.failure_policy == "raise":
                raise
            self._vm_failed(e)
            return self._failed_action()
        finally:
            self._in_cb = False
        a = self._after(msg, _action(raw), False)
        if a is _PAUSE and len(msg._buf) > cap:
            self._overflow(msg)
        return a

    def _overflow(self, msg: HttpMessage) -> None:
        """The host holds more of ``msg``'s body than HostLimits.body_buffer_max_bytes while the
        plugin pauses it. As Envoy at its buffer limit: a request is answered 413, a response
        500, or reset when its headers have already gone downstream. The held bytes are
        dropped (counted and logged); a stream already answered only drops them."""
        vm = self._vm
        held = len(msg._buf)
        del msg._buf[:]
        msg.paused = True
        request = msg is self.request
        vm.limit_hit("body_buffer", f"{'request' if request else 'response'} body of {held} bytes held while paused "
                                    f"exceeds {vm.body_max} (HostLimits.body_buffer_max_bytes): dropped")
        if (self.local_response is not None and not self._encoding_local) or self.reset or self.error is not None:
            return
        self._encoding_local = False  # (a new answer replaces its own one on its way out)
        if request:
            self.local_response = LocalResponse(413, b"Payload Too Large", HeaderMap(), "request_payload_too_large")
        elif self.response.headers is not None and not self.response._hdr_paused:
            self.reset = True  # the response has begun downstream: Envoy resets the stream
        else:
            self.local_response = LocalResponse(500, b"Internal Server Error", HeaderMap(),
                                                "response_payload_too_large")

    def _trailers(self, msg: HttpMessage, idx: int, trailers: HeadersLike, fn: Any, name: str) -> Action:
        m = host_map(trailers, self._vm.keep_case)
        msg.trailers = m
        msg.end_of_stream = True
        b = self._blocked(msg)
        if b is not None:
            return b
        ctx = self._ctx
        assert ctx is not None
        ctx.maps[idx] = m
        if fn is None:
            return _CONT
        a = self._call(name, fn, ctx.id, len(m))
        if a is None:
            return self._failed_action()
        return self._after(msg, a, False)

    def _trailers_created(self, idx: int, m: HeaderMap) -> None:
        if idx == 1:
            self.request.trailers = m
        else:
            self.response.trailers = m

    def _failed_action(self) -> Action:
        if self._gen.config.failure_policy == "fail_open":
            return _CONT
        return _PAUSE

    def _on_failure(self) -> None:
        if self._gen.config.failure_policy == "fail_open":
            for msg in (self.request, self.response):
                msg.paused = False
                msg._hdr_paused = False
                msg._flush()
        elif (self.local_response is None or self._encoding_local) and not self.closed:
            # (a stream that ended cannot be answered; one failing while its own local response goes
            # through its response callbacks answers 503 instead, as Envoy's failStream then)
            self._encoding_local = False
            self.local_response = LocalResponse(503, b"", HeaderMap(), "wasm_fail_stream")

    def _is_paused(self) -> bool:
        if self.local_response is not None or self.reset or self.error is not None:
            return False
        return self.request.paused or self.response.paused

    # -- called by host functions ------------------------------------------------------------
    def _continue(self, t: int) -> int:
        if t > 1:
            return Status.BAD_ARGUMENT
        if self._in_cb:
            self._resume_req |= 1 << t
            return Status.OK
        msg = self.request if t == 0 else self.response
        msg.paused = False
        msg._hdr_paused = False
        msg._flush()
        return Status.OK

    def _close(self, t: int) -> int:
        if t > 1:
            return Status.BAD_ARGUMENT
        self.reset = True
        return Status.OK

    def _local_response(self, code: int, body: bytes, headers: HeaderMap, details: bytes, grpc: int) -> int:
        if self.local_response is not None:
            if not self._encoding_local:
                return Status.BAD_ARGUMENT  # a response was already sent: the first one stands
            # its own local response goes through its response callbacks and it answers again:
            # as Envoy (since envoyproxy/envoy#36809), the new one goes straight to the client
            self._encoding_local = False
        headers.set_flat(headers._flat)  # lower-cased unless the host preserves case (Envoy lower-cases)
        grpc = grpc & _M32
        self.local_response = LocalResponse(code, body, headers, details.decode("utf-8", "replace"),
                                            None if grpc == _M32 or grpc > 0x7FFFFFFF else grpc)
        return Status.OK

    # -- well-known attributes -----------------------------------------------------------
    def _wellknown(self, name: str) -> bytes | None:
        from ._properties import encode_property

        req = self.request.headers
        resp = self.response.headers
        if name.startswith("request."):
            key = name[8:]
            if key == "headers":
                return req.serialize() if req is not None else None
            if key == "time":
                return encode_property(self.started_ns)
            if key == "duration":
                return encode_property(self._vm.host.clock.now_ns() - self.started_ns)
            if key == "size":
                return encode_property(self.request._size())
            if key == "total_size":
                return encode_property(self.request._size()
                                       + (req.byte_size() if req is not None else 0))
            if key == "protocol":
                return b"HTTP/1.1"
            if req is None:
                return None
            path = req.get_bytes(":path")
            if key == "path":
                return path
            if key == "url_path":
                return path.split(b"?", 1)[0] if path is not None else None
            if key == "query":
                return path.split(b"?", 1)[1] if path is not None and b"?" in path else (b"" if path else None)
            if key == "host":
                v = req.get_bytes(":authority")
                return v if v is not None else req.get_bytes("host")
            simple = {"scheme": ":scheme", "method": ":method", "referer": "referer", "useragent": "user-agent",
                      "id": "x-request-id"}
            if key in simple:
                return req.get_bytes(simple[key])
            return None
        if name.startswith("response."):
            key = name[9:]
            lr = self.local_response
            if key == "code":
                if lr is not None:
                    return encode_property(lr.status)
                s = resp.get_bytes(":status") if resp is not None else None
                return encode_property(int(s)) if s is not None and s.isdigit() else None
            if key == "code_details":
                return lr.details.encode() if lr is not None else (b"via_upstream" if resp is not None else None)
            if key == "headers":
                if lr is not None:
                    return lr.headers.serialize()
                return resp.serialize() if resp is not None else None
            if key == "trailers":
                t = self.response.trailers
                return t.serialize() if t is not None else None
            if key == "size":
                return encode_property(self.response._size())
            if key == "total_size":
                return encode_property(self.response._size()
                                       + (resp.byte_size() if resp is not None else 0))
            if key == "grpc_status":
                g = resp.get_bytes("grpc-status") if resp is not None else None
                return encode_property(int(g)) if g is not None and g.isdigit() else None
            if key == "flags":
                return encode_property(0)
            return None
        if name in ("source.port", "destination.port"):
            addr = self._props.get(name[:-5] + ".address")
            if addr is not None and b":" in addr:
                port = addr.rsplit(b":", 1)[1]
                if port.isdigit():
                    return encode_property(int(port))
            return None
        if name == "connection.id":
            return encode_property(self.context_id)
        return None

    def __repr__(self) -> str:
        return (f"<HttpStream ctx={self.context_id} request={self.request!r} response={self.response!r}"
                f"{' local=' + str(self.local_response.status) if self.local_response else ''}>")


class TcpDirection(_Buffered):
    """One direction of a TCP connection: ``data`` forwarded so far, ``buffered`` held back."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        _Buffered.__init__(self)
        self.closed = False

    @property
    def data(self) -> bytes:
        """Bytes forwarded so far (after the plugin's changes)."""
        return bytes(self._sent)


class TcpStream(_StreamBase):
    """One TCP connection going through a network (L4) plugin.

    ``downstream`` is client -> upstream data, ``upstream`` upstream -> client.
    """

    def __init__(self, plugin: Plugin, gen: _Generation, vm: VM, root: _Context,
                 properties: Mapping[str, Any] | None = None) -> None:
        self.downstream = TcpDirection()
        self.upstream = TcpDirection()
        self.connection_closed_by_plugin = False
        #: the host closed the connection: ``"buffer_limit"`` when it held more than
        #: HostLimits.body_buffer_max_bytes of one direction while the plugin paused it
        self.closed_by_host: str | None = None
        self._connected = False
        super().__init__(plugin, gen, vm, root, properties)
        ctx = self._ctx
        if ctx is not None:
            ctx.bufs[2] = self.downstream._buf
            ctx.bufs[3] = self.upstream._buf

    def new_connection(self) -> Action:
        """The connection was accepted (``proxy_on_new_connection``)."""
        if self.closed:
            raise RuntimeError("the stream is closed")
        self._connected = True
        if self.error is not None:
            return self._failed_action()
        fn = self._vm.f_new_connection
        if fn is None:
            return _CONT
        ctx = self._ctx
        assert ctx is not None
        a = self._call("proxy_on_new_connection", fn, ctx.id)
        return self._failed_action() if a is None else a

    def downstream_data(self, data: bytes, end_of_stream: bool = False) -> Action:
        """Bytes from the client (``proxy_on_downstream_data``)."""
        return self._data(self.downstream, data, end_of_stream, self._vm.f_downstream_data,
                          "proxy_on_downstream_data", 1)

    def upstream_data(self, data: bytes, end_of_stream: bool = False) -> Action:
        """Bytes from the upstream server (``proxy_on_upstream_data``)."""
        return self._data(self.upstream, data, end_of_stream, self._vm.f_upstream_data,
                          "proxy_on_upstream_data", 2)

    def downstream_close(self, peer: PeerType = PeerType.REMOTE) -> None:
        """The client side closed (``proxy_on_downstream_connection_close``)."""
        self.downstream.closed = True
        self._close_cb(self._vm.f_downstream_close, "proxy_on_downstream_connection_close", peer)

    def upstream_close(self, peer: PeerType = PeerType.REMOTE) -> None:
        """The upstream side closed (``proxy_on_upstream_connection_close``)."""
        self.upstream.closed = True
        self._close_cb(self._vm.f_upstream_close, "proxy_on_upstream_connection_close", peer)

    def _close_cb(self, fn: Any, name: str, peer: PeerType) -> None:
        if self.closed:
            raise RuntimeError("the stream is closed")
        if fn is None or self.error is not None or self._ctx is None:
            return
        self._call(name, fn, self._ctx.id, int(peer))

    def _data(self, d: TcpDirection, data: bytes, eos: bool, fn: Any, name: str, bit: int) -> Action:
        if self.closed:
            raise RuntimeError("the stream is closed")
        if not self._connected:
            self.new_connection()
        d._buf += data
        d.end_of_stream = eos
        cap = self._vm.body_max
        if self.error is not None:
            if self._gen.config.failure_policy == "fail_open":
                d._flush()
            elif len(d._buf) > cap:
                self._overflow(d)
            return self._failed_action()
        if self.connection_closed_by_plugin or self.closed_by_host:
            if len(d._buf) > cap:
                self._overflow(d)
            return _PAUSE
        if fn is None:
            d._flush()
            return _CONT
        if d.paused and len(d._buf) > cap:  # held since a pause, with this chunk past the limit
            self._overflow(d)
            return _PAUSE
        ctx = self._ctx
        assert ctx is not None
        a = self._call(name, fn, ctx.id, len(d._buf), 1 if eos else 0)
        if a is None:
            return self._failed_action()
        if self._resume_req & bit:
            a = _CONT
        if self.connection_closed_by_plugin:
            return _PAUSE
        if a is _CONT:
            d.paused = False
            d._flush()
        else:
            d.paused = True
            if len(d._buf) > cap:
                self._overflow(d)
        return a

    def _overflow(self, d: TcpDirection) -> None:
        """More than HostLimits.body_buffer_max_bytes of ``d`` is held while the plugin pauses it.
        Envoy would stop reading (flow control); a host fed by its embedder cannot, so it closes
        the connection (``closed_by_host = "buffer_limit"``). The held bytes are dropped (counted, logged)."""
        vm = self._vm
        held = len(d._buf)
        del d._buf[:]
        which = "downstream" if d is self.downstream else "upstream"
        vm.limit_hit("body_buffer", f"{which} data of {held} bytes held while paused exceeds {vm.body_max} "
                                    f"(HostLimits.body_buffer_max_bytes): dropped, connection closed")
        if self.closed_by_host is None:
            self.closed_by_host = "buffer_limit"

    def _failed_action(self) -> Action:
        return _CONT if self._gen.config.failure_policy == "fail_open" else _PAUSE

    def _on_failure(self) -> None:
        if self._gen.config.failure_policy == "fail_open":
            for d in (self.downstream, self.upstream):
                d.paused = False
                d._flush()
        else:
            self.connection_closed_by_plugin = True

    def _is_paused(self) -> bool:
        if self.error is not None or self.connection_closed_by_plugin or self.closed_by_host:
            return False
        return self.downstream.paused or self.upstream.paused

    def _continue(self, t: int) -> int:
        if t not in (2, 3):
            return Status.BAD_ARGUMENT
        bit = 1 if t == 2 else 2
        if self._in_cb:
            self._resume_req |= bit
            return Status.OK
        d = self.downstream if t == 2 else self.upstream
        d.paused = False
        d._flush()
        return Status.OK

    def _close(self, t: int) -> int:
        if t not in (2, 3):
            return Status.BAD_ARGUMENT
        self.connection_closed_by_plugin = True
        return Status.OK

    def _wellknown(self, name: str) -> bytes | None:
        from ._properties import encode_property

        if name in ("source.port", "destination.port"):
            addr = self._props.get(name[:-5] + ".address")
            if addr is not None and b":" in addr:
                port = addr.rsplit(b":", 1)[1]
                if port.isdigit():
                    return encode_property(int(port))
            return None
        if name == "connection.id":
            return encode_property(self.context_id)
        if name == "connection.bytes_received":
            return encode_property(self.downstream._size())
        return None

    def __repr__(self) -> str:
        return (f"<TcpStream ctx={self.context_id} downstream={len(self.downstream._sent)}B "
                f"upstream={len(self.upstream._sent)}B>")


_ = LogLevel  # re-exported names used by type checkers only
