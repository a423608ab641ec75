"""gRPC calls and streams (``proxy_grpc_call`` / ``proxy_grpc_stream``).

Messages travel as raw bytes: the plugin serializes its protobufs itself. The
default dispatcher uses grpcio generic calls (no generated stubs). Events are
handed to a :class:`GrpcEvents` sink from any thread; the host queues them and
runs the plugin's gRPC callbacks on the VM's thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Mapping

from ._pairs import HeaderMap

__all__ = ["GrpcEvents", "GrpcHandle", "GrpcDispatcher", "GrpcioDispatcher", "UnknownGrpcUpstream"]


class UnknownGrpcUpstream(LookupError):
    """The plugin named a gRPC upstream the dispatcher does not know."""


class GrpcEvents:
    """Where a dispatcher reports what happens on one call or stream (thread-safe)."""

    def initial_metadata(self, metadata: HeaderMap) -> None: ...

    def message(self, data: bytes) -> None: ...

    def trailing_metadata(self, metadata: HeaderMap) -> None: ...

    def close(self, status: int, message: str = "") -> None:
        """The call is over with gRPC ``status`` (0 is OK); no event follows."""


class GrpcHandle:
    """A started call or stream."""

    def send(self, message: bytes, end_stream: bool = False) -> bool:
        """Send one more message (streams only). False when the stream cannot take it."""
        return False

    def cancel(self) -> None:
        """Abort; no further events are delivered."""

    def close(self) -> None:
        """Half-close a stream (no more messages), or cancel a unary call."""
        self.cancel()


class GrpcDispatcher:
    """Interface: carry out plugins' gRPC calls."""

    def call(self, upstream: str, service: str, method: str, metadata: HeaderMap, message: bytes,
             timeout_ms: int, events: GrpcEvents) -> GrpcHandle:
        """Start a unary call. Raise :class:`UnknownGrpcUpstream` for an unknown upstream."""
        raise UnknownGrpcUpstream(upstream)

    def stream(self, upstream: str, service: str, method: str, metadata: HeaderMap,
               events: GrpcEvents) -> GrpcHandle:
        """Open a bidirectional stream."""
        raise UnknownGrpcUpstream(upstream)

    def close(self) -> None:
        """Release resources."""


_END = object()


def _md(metadata: HeaderMap) -> list[tuple[str, Any]]:
    out = []
    for k, v in metadata.raw_items():
        key = k.decode("latin-1")
        out.append((key, v if key.endswith("-bin") else v.decode("latin-1")))
    return out


def _hm(md: Any) -> HeaderMap:
    return HeaderMap([(k, v) for k, v in (md or ())])


class _UnaryHandle(GrpcHandle):
    def __init__(self, fut: Any) -> None:
        self._fut = fut
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self._fut.cancel()


class _StreamHandle(GrpcHandle):
    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self.call: Any = None
        self.cancelled = False
        self.half_closed = False

    def send(self, message: bytes, end_stream: bool = False) -> bool:
        if self.half_closed or self.cancelled:
            return False
        self.q.put(bytes(message))
        if end_stream:
            self.half_closed = True
            self.q.put(_END)
        return True

    def requests(self):
        while True:
            m = self.q.get()
            if m is _END:
                return
            yield m

    def cancel(self) -> None:
        self.cancelled = True
        self.q.put(_END)
        if self.call is not None:
            self.call.cancel()

    def close(self) -> None:
        if not self.half_closed:
            self.half_closed = True
            self.q.put(_END)


class GrpcioDispatcher(GrpcDispatcher):
    """gRPC through :mod:`grpcio` generic calls with raw bytes.

    ``upstreams`` maps a cluster name to a target (``{"echo": "127.0.0.1:50051"}``);
    channels are insecure unless ``credentials`` (a ``grpc.ChannelCredentials``) is given.
    """

    def __init__(self, upstreams: Mapping[str, str] | None = None, *, credentials: Any = None) -> None:
        self.upstreams = dict(upstreams or {})
        self._credentials = credentials
        self._channels: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _channel(self, upstream: str) -> Any:
        if upstream not in self.upstreams:
            raise UnknownGrpcUpstream(upstream)
        import grpc

        with self._lock:
            ch = self._channels.get(upstream)
            if ch is None:
                target = self.upstreams[upstream]
                ch = (grpc.secure_channel(target, self._credentials) if self._credentials
                      else grpc.insecure_channel(target))
                self._channels[upstream] = ch
            return ch

    def call(self, upstream, service, method, metadata, message, timeout_ms, events):
        import grpc

        mc = self._channel(upstream).unary_unary(f"/{service}/{method}")
        fut = mc.future(bytes(message), timeout=timeout_ms / 1000 if timeout_ms else None, metadata=_md(metadata))
        handle = _UnaryHandle(fut)

        def done(f: Any) -> None:
            if handle.cancelled:
                return
            try:
                result = f.result()
            except grpc.RpcError as e:
                try:
                    md = e.initial_metadata()  # type: ignore[attr-defined]
                    if md:
                        events.initial_metadata(_hm(md))
                    tmd = e.trailing_metadata()  # type: ignore[attr-defined]
                    if tmd:
                        events.trailing_metadata(_hm(tmd))
                    code, details = e.code().value[0], e.details() or ""  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 - cancelled futures lack these
                    code, details = 2, str(e)
                events.close(code, details)
                return
            except Exception as e:  # noqa: BLE001
                events.close(2, str(e))
                return
            events.initial_metadata(_hm(f.initial_metadata()))
            events.message(result)
            events.trailing_metadata(_hm(f.trailing_metadata()))
            events.close(0, f.details() or "")

        fut.add_done_callback(done)
        return handle

    def stream(self, upstream, service, method, metadata, events):
        import grpc

        mc = self._channel(upstream).stream_stream(f"/{service}/{method}")
        handle = _StreamHandle()
        call = mc(handle.requests(), metadata=_md(metadata))
        handle.call = call

        def pump() -> None:
            try:
                md = call.initial_metadata()
                if not handle.cancelled:
                    events.initial_metadata(_hm(md))
                for msg in call:
                    if handle.cancelled:
                        return
                    events.message(msg)
                if not handle.cancelled:
                    events.trailing_metadata(_hm(call.trailing_metadata()))
                    events.close(call.code().value[0], call.details() or "")
            except grpc.RpcError as e:
                if not handle.cancelled:
                    try:
                        code, details = e.code().value[0], e.details() or ""  # type: ignore[attr-defined]
                    except Exception:  # noqa: BLE001
                        code, details = 2, str(e)
                    events.close(code, details)

        threading.Thread(target=pump, name="pwvm-grpc-stream", daemon=True).start()
        return handle

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
