"""HTTP callouts (``proxy_http_call``): the dispatcher interface and its defaults.

A dispatcher starts a call and later hands the response to ``deliver`` (from
any thread, exactly once). The host queues it and runs
``proxy_on_http_call_response`` on the VM's own thread, from
:meth:`ProxyWasmHost.poll` (or :meth:`HttpStream.wait`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from ._pairs import HeaderMap

__all__ = ["HttpCallRequest", "HttpCallResponse", "HttpDispatcher", "HttpxDispatcher", "CallbackHttpDispatcher",
           "UnknownUpstream"]


class UnknownUpstream(LookupError):
    """The plugin named an upstream (cluster) the dispatcher does not know."""


@dataclass
class HttpCallRequest:
    """A plugin's HTTP call: ``headers`` include the ``:method``, ``:path`` and ``:authority`` pseudo-headers."""

    upstream: str
    headers: HeaderMap
    body: bytes = b""
    trailers: HeaderMap = field(default_factory=HeaderMap)
    timeout_ms: int = 0

    @property
    def method(self) -> str:
        return self.headers.get(":method", "GET")

    @property
    def path(self) -> str:
        return self.headers.get(":path", "/")

    @property
    def authority(self) -> str:
        return self.headers.get(":authority", "")


@dataclass
class HttpCallResponse:
    """The answer to a call. ``error`` set means the call failed (the plugin sees 0 headers).

    ``headers`` may be a :class:`HeaderMap`, a dict or a list of pairs; a
    ``:status`` pseudo-header is added from ``status`` when missing. Names of a dict or
    list are lower-cased (what Envoy's codecs give a plugin); a ``HeaderMap(...,
    preserve_case=True)`` keeps them as written.
    """

    status: int = 200
    headers: Any = None
    body: bytes = b""
    trailers: Any = None
    error: str | None = None

    def __post_init__(self) -> None:
        h = self.headers if isinstance(self.headers, HeaderMap) else HeaderMap(self.headers)
        if self.error is None and ":status" not in h:
            h._flat[0:0] = [b":status", str(self.status).encode()]
        self.headers = h
        self.trailers = self.trailers if isinstance(self.trailers, HeaderMap) else HeaderMap(self.trailers)
        if isinstance(self.body, str):
            self.body = self.body.encode()

    @classmethod
    def failure(cls, reason: str = "reset") -> HttpCallResponse:
        """A failed call (connection reset, timeout ...)."""
        return cls(status=0, headers=HeaderMap(), error=reason)


Deliver = Callable[[HttpCallResponse], None]


class HttpDispatcher:
    """Interface: carry out plugins' HTTP calls."""

    def dispatch(self, request: HttpCallRequest, deliver: Deliver) -> Any:
        """Start ``request``; call ``deliver(response)`` once when done (any thread).

        Raise :class:`UnknownUpstream` for an unknown ``request.upstream``.
        Returns a handle for :meth:`cancel`.
        """
        raise UnknownUpstream(request.upstream)

    def cancel(self, handle: Any) -> None:
        """Best-effort cancel (the host ignores a late response anyway)."""

    def close(self) -> None:
        """Release resources."""


class HttpxDispatcher(HttpDispatcher):
    """Real HTTP requests with :mod:`httpx` to named upstreams.

    ``upstreams`` maps a cluster name to a base URL (``{"auth": "http://127.0.0.1:8080"}``);
    the request goes to base URL + ``:path``, with ``:authority`` as the Host
    header. ``transport`` is passed to ``httpx.Client`` (an
    ``httpx.MockTransport`` makes tests hermetic). With ``background=True``
    (default) calls run on a small thread pool; with ``False`` they run at
    dispatch time (still delivered later, from :meth:`ProxyWasmHost.poll`).
    """

    def __init__(self, upstreams: Mapping[str, str] | None = None, *, transport: Any = None,
                 background: bool = True, max_workers: int = 4, verify: Any = True) -> None:
        self.upstreams = dict(upstreams or {})
        self._transport = transport
        self._verify = verify
        self._background = background
        self._max_workers = max_workers
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(transport=self._transport, verify=self._verify, follow_redirects=False)
            return self._client

    def dispatch(self, request: HttpCallRequest, deliver: Deliver) -> Any:
        if request.upstream not in self.upstreams:
            raise UnknownUpstream(request.upstream)
        if not self._background:
            deliver(self._perform(request))
            return None
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="pwvm-http")
            pool = self._pool
        return pool.submit(lambda: deliver(self._perform(request)))

    def cancel(self, handle: Any) -> None:
        if handle is not None:
            handle.cancel()

    def _perform(self, request: HttpCallRequest) -> HttpCallResponse:
        import httpx

        base = self.upstreams[request.upstream].rstrip("/")
        headers = [(k, v) for k, v in request.headers.raw_items() if not k.startswith(b":")]
        if request.authority and request.headers.get_bytes("host") is None:
            headers.append((b"host", request.authority.encode()))
        timeout = request.timeout_ms / 1000 if request.timeout_ms else None
        try:
            r = self._get_client().request(request.method, base + request.path, headers=headers,
                                           content=request.body or None, timeout=timeout)
        except httpx.TimeoutException:
            return HttpCallResponse.failure("timeout")
        except httpx.HTTPError as e:
            return HttpCallResponse.failure(f"reset: {e}")
        resp_headers = HeaderMap([(":status", str(r.status_code))] + [(k.lower(), v) for k, v in r.headers.raw])
        return HttpCallResponse(r.status_code, resp_headers, r.content)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            if self._client is not None:
                self._client.close()
                self._client = None


HandlerResult = Union[HttpCallResponse, tuple, None]


class CallbackHttpDispatcher(HttpDispatcher):
    """Answers calls with a Python function: ``handler(request) -> HttpCallResponse``.

    The handler may also return ``(status, headers, body)`` or ``None`` (a
    failed call). It runs at dispatch time; the response is delivered from the
    next :meth:`ProxyWasmHost.poll`. ``upstreams`` (optional) limits the known
    names; every call is kept in :attr:`requests`.
    """

    def __init__(self, handler: Callable[[HttpCallRequest], HandlerResult],
                 upstreams: set[str] | None = None) -> None:
        self.handler = handler
        self.upstreams = upstreams
        self.requests: list[HttpCallRequest] = []

    def dispatch(self, request: HttpCallRequest, deliver: Deliver) -> Any:
        if self.upstreams is not None and request.upstream not in self.upstreams:
            raise UnknownUpstream(request.upstream)
        self.requests.append(request)
        r = self.handler(request)
        if r is None:
            r = HttpCallResponse.failure("reset")
        elif isinstance(r, tuple):
            r = HttpCallResponse(*r)
        deliver(r)
        return None
