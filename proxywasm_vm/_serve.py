"""``pwvm serve``: a reverse proxy on uvicorn that runs a chain of Proxy-Wasm plugins (the ASGI
middleware of :mod:`proxywasm_vm.asgi`) in front of upstream clusters reached with httpx.

How a request flows: uvicorn -> :class:`_Front` (picks the current :class:`_Chain`, counts,
times and logs the request) -> the chain's ``ProxyWasmMiddleware`` (the plugins) ->
:class:`_Proxy` (routes the request to a cluster, forwards it and streams the answer back).

A reload (SIGHUP, or a watched file that changed) builds a whole new chain first (plugins
started, clients made) and swaps it in with one assignment: a request runs start to end on the
chain it started on; an old chain is closed when its last request ends. A configuration that
fails to build leaves the running chain alone (the reason is logged, and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterator, MutableMapping

from ._serve_config import ClusterConfig, ConfigError, ServeConfig

__all__ = ["serve", "ConfigError"]

_log = logging.getLogger("proxywasm_vm.serve")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Hop-by-hop headers (RFC 9110 7.6.1, and the obsolete ones proxies still strip): they describe
#: one connection, so a proxy drops them both ways, with every header ``connection`` names.
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
                  b"te", b"trailer", b"transfer-encoding", b"upgrade"})

#: Request latency buckets, seconds (Envoy's default histogram buckets, in ms: 0.5, 1, 5, 10, 25,
#: 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000 ...).
_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _hop_names(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The hop-by-hop names of a message: the fixed ones plus those its ``connection`` lists."""
    extra = [t.strip().lower() for k, v in headers if k.lower() == b"connection" for t in v.split(b",")]
    return _HOP.union(extra) if extra else _HOP


# ---- the proxy (innermost app) -------------------------------------------------------------

class _Info:
    """What one request did, for the access log and metrics (set by the inner layers)."""

    __slots__ = ("flags", "upstream", "request_id", "service_ms", "details")

    def __init__(self) -> None:
        self.flags = "-"
        self.upstream = "-"
        self.request_id = "-"
        self.service_ms = "-"
        self.details = "-"


_INFO = "pwvm.serve"  # the scope key of a request's _Info


class _Proxy:
    """Forwards each request to the cluster its route names, with httpx (pooled connections per
    cluster), streaming the request body up and the response body down."""

    def __init__(self, config: ServeConfig, stats: _Stats) -> None:
        import httpx

        self.config = config
        self.stats = stats
        self.clients: dict[str, Any] = {}
        for name, c in config.clusters.items():
            client = httpx.AsyncClient(
                base_url=c.url, trust_env=False, follow_redirects=False,  # a proxy never follows redirects
                timeout=httpx.Timeout(c.timeout, connect=c.connect_timeout, pool=c.connect_timeout),
                limits=httpx.Limits(max_connections=c.max_connections, max_keepalive_connections=min(c.max_connections,
                                                                                                      256)))
            # httpx adds accept, accept-encoding, user-agent ... to what a client sends: a proxy sends
            # the client's headers, no more.
            for k in list(client.headers):
                del client.headers[k]
            self.clients[name] = client

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets are not proxied (Envoy needs upgrade_configs for them)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        info: _Info = scope.get(_INFO) or _Info()
        name = self.config.cluster_for(scope["path"])
        if name is None:  # Envoy: no route matched -> 404, response flag NR
            info.flags, info.details = "NR", "route_not_found"
            await _local(send, 404, b"", info.details)
            return
        cluster = self.config.clusters[name]
        client = self.clients[name]
        import httpx

        in_headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        hop = _hop_names(in_headers)
        headers = [(k, v) for k, v in in_headers if k.lower() not in hop and k.lower() not in _SET_HERE]
        # As Envoy at the edge (use_remote_address): append the client's address to
        # x-forwarded-for, say the downstream scheme in x-forwarded-proto, give the request an
        # x-request-id when it has none, and tell the upstream its deadline.
        client_addr = scope.get("client")
        xff = [v for k, v in in_headers if k.lower() == b"x-forwarded-for"]
        if client_addr:
            xff.append(client_addr[0].encode())
        if xff:
            headers.append((b"x-forwarded-for", b", ".join(xff)))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        rid = next((v for k, v in in_headers if k.lower() == b"x-request-id"), None)
        if rid is None:
            rid = str(uuid.uuid4()).encode()
        headers.append((b"x-request-id", rid))
        info.request_id = rid.decode("latin-1")
        headers.append((b"x-envoy-expected-rq-timeout-ms", str(int(cluster.timeout * 1000)).encode()))

        content = await _request_body(receive, in_headers)
        if isinstance(content, bytes) and content and not any(k.lower() == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(content)).encode()))
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        url = cluster.url + target.decode("latin-1")
        info.upstream = cluster.url
        request = httpx.Request(scope["method"], url, headers=headers, content=content)
        started = time.perf_counter()
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as e:
            status, flags, details, body = _upstream_failure(e)
            info.flags, info.details = flags, details
            self.stats.upstream_error(name, flags)
            _log.warning("%s %s -> cluster %s (%s): %s: %s", scope["method"], scope["path"], name, cluster.url,
                         details, e or type(e).__name__)
            await _local(send, status, body, details)
            return
        try:
            info.service_ms = str(int((time.perf_counter() - started) * 1000))
            raw = response.headers.raw
            rhop = _hop_names(raw)
            out = [(k.lower(), v) for k, v in raw if k.lower() not in rhop]
            out.append((b"x-envoy-upstream-service-time", info.service_ms.encode()))
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            try:
                async for chunk in response.aiter_raw():  # raw: the body as the upstream encoded it
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as e:
                # The answer broke off after its headers went out: as Envoy, reset the
                # downstream (the connection closes; the client sees an incomplete response).
                info.flags = "UT" if isinstance(e, httpx.TimeoutException) else "UC"
                info.details = "upstream_reset_after_response_started"
                self.stats.upstream_error(name, info.flags)
                raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


#: request headers the proxy writes itself (an incoming one is replaced)
_SET_HERE = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id", b"x-envoy-expected-rq-timeout-ms"})


async def _request_body(receive: Receive, headers: list[tuple[bytes, bytes]]) -> Any:
    """The request body for httpx: bytes when it came in one piece (the common case, and what a
    plugin that buffered it hands on), else an async iterator that streams it up as it arrives."""
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone()
    first = msg.get("body", b"")
    if not msg.get("more_body", False):
        return first

    async def rest() -> Any:
        if first:
            yield first
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                raise _ClientGone()
            body = m.get("body", b"")
            if body:
                yield body
            if not m.get("more_body", False):
                return

    return rest()


class _ClientGone(Exception):
    """The client went away before its request body ended."""


def _upstream_failure(e: Exception) -> tuple[int, str, str, bytes]:
    """What the client gets when the upstream cannot be reached or fails before it answers, as
    Envoy's router does: a connection that cannot be made (refused, or connect timeout) is 503
    with response flag UF ("upstream connect error or disconnect/reset before headers. reset
    reason: connection failure"); no answer within the route timeout is 504, flag UT ("upstream
    request timeout"); a connection reset before the answer is 503, flag UC; an answer that is not
    valid HTTP is 502, flag UPE. Returns (status, flags, details, body)."""
    import httpx

    if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return (503, "UF", "upstream_reset_before_response_started{connection_failure}",
                b"upstream connect error or disconnect/reset before headers. reset reason: connection failure")
    if isinstance(e, httpx.TimeoutException):
        return 504, "UT", "upstream_response_timeout", b"upstream request timeout"
    if isinstance(e, httpx.RemoteProtocolError) and "disconnected" not in str(e).lower():
        return 502, "UPE", "upstream_reset_before_response_started{protocol_error}", \
            b"upstream connect error or disconnect/reset before headers. reset reason: protocol error"
    return (503, "UC", "upstream_reset_before_response_started{connection_termination}",
            b"upstream connect error or disconnect/reset before headers. reset reason: connection termination")


async def _local(send: Send, status: int, body: bytes, details: str) -> None:
    """A response the proxy makes itself (Envoy's local reply: text/plain)."""
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# ---- chains and their swaps ----------------------------------------------------------------

class _Chain:
    """One generation: the plugins (started), the middleware over the proxy, the clients."""

    def __init__(self, config: ServeConfig, app: Any, proxy: _Proxy, plugins: list[Any], number: int) -> None:
        self.config = config
        self.app = app
        self.proxy = proxy
        self.plugins = plugins
        self.number = number
        self.inflight = 0
        self.retired = False

    async def close(self) -> None:
        """Retire the plugins, then end the middleware's worker (its plugin thread's VMs close with
        it: root contexts get proxy_on_done / proxy_on_delete), then the upstream clients."""
        for p in self.plugins:
            try:
                p.close()
            except Exception:  # a plugin failing in proxy_on_done must not stop the others closing
                _log.exception("closing plugin %s", p.name)
        close = getattr(self.app, "close", None)
        if close is not None and self.plugins:
            await asyncio.get_running_loop().run_in_executor(None, close)
        if self.plugins:
            self.plugins[0].host.poll()  # the VMs started on this thread at load time close here
        await self.proxy.aclose()


def _plugin_config(spec: Any) -> Any:
    from ._proxywasm import PluginConfig
    from ._store import StoreLimits

    # the plugin's VM limits: what its configuration says (a value, or "unlimited": None), else the
    # library's defaults (DEFAULT_PLUGIN_LIMITS: 0.5 s per callback, 512 MiB of memory ...)
    limits = None
    given = {k: getattr(spec, k) for k in ("deadline", "memory_bytes", "table_elements")
             if getattr(spec, k) is not None or k in spec.unlimited}
    if given:
        from ._proxywasm._plugin import DEFAULT_PLUGIN_LIMITS as d

        limits = StoreLimits(**{k: given.get(k, getattr(d, k)) for k in ("memory_bytes", "table_elements",
                                                                          "deadline")})
    extra: dict[str, Any] = {}
    if spec.start_deadline is not None:
        extra["start_deadline"] = spec.start_deadline
    return PluginConfig(name=spec.name, root_id=spec.root_id, vm_id=spec.vm_id, configuration=spec.configuration,
                        vm_config=spec.vm_config, backend=spec.backend, vm_per_stream=spec.vm_per_stream,
                        failure_policy=spec.failure_policy, limits=limits, **extra)


def build_chain(config: ServeConfig, host: Any, stats: _Stats, number: int) -> _Chain:
    """Start every plugin of ``config`` on ``host`` and put the middleware over a new proxy; a
    plugin that cannot start closes those started and raises :class:`ConfigError`."""
    plugins: list[Any] = []
    where = config.source or "pwvm serve"
    try:
        for i, spec in enumerate(config.plugins):
            try:
                with open(spec.path, "rb") as f:
                    wasm = f.read()
                plugins.append(host.load(_plugin_config(spec), wasm, _vm_group=("pwvm serve", number)))
            except OSError as e:
                raise ConfigError(f"{where}: plugins[{i}] ({spec.name}): cannot read {spec.path}: "
                                  f"{e.strerror or e}") from None
            except ConfigError:
                raise
            except Exception as e:  # CompileError, AbiError, PluginStartError, BackendUnavailable ...
                raise ConfigError(f"{where}: plugins[{i}] ({spec.name}): cannot start {spec.path} on "
                                  f"{spec.backend}: {type(e).__name__}: {e}") from None
    except BaseException:
        for p in plugins:
            p.close()
        raise
    proxy = _Proxy(config, stats)
    app: Any = proxy
    if plugins:
        from .asgi import ProxyWasmMiddleware

        # Callbacks on the event loop when every plugin runs in this process (the middleware's
        # default: a thread hop per event cost half the throughput), else on a plugin thread. Each
        # generation's plugins are a VM group of their own (``_vm_group`` above): in one group with
        # the next generation (same vm_id and code) they would share the loop thread's VM, and
        # retiring the old one (proxy_on_done of its root context) made the AssemblyScript SDK abort
        # that shared VM, failing the requests still in flight on it (tests/serve/test_reload.py).
        app = ProxyWasmMiddleware(proxy, plugins=plugins)
    return _Chain(config, app, proxy, plugins, number)


# ---- metrics -------------------------------------------------------------------------------

class _Stats:
    """The host's own metrics (all touched from the event loop's thread only)."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {f"{c}xx": 0 for c in range(1, 6)}
        self.buckets = [0] * (len(_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.reloads = {"success": 0, "failure": 0}
        self.inflight = 0

    def request(self, status: int, seconds: float) -> None:
        key = f"{min(max(status // 100, 1), 5)}xx"
        self.requests[key] += 1
        i = 0
        while i < len(_BUCKETS) and seconds > _BUCKETS[i]:
            i += 1
        self.buckets[i] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def upstream_error(self, cluster: str, flag: str) -> None:
        self.upstream_errors[(cluster, flag)] = self.upstream_errors.get((cluster, flag), 0) + 1


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metric_name(name: str) -> str:
    out = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_:") else "_" for ch in name)
    return out


def prometheus_text(stats: _Stats, host: Any, generation: int, draining: bool) -> str:
    """The ``/metrics`` page (Prometheus text exposition format 0.0.4).

    Host metrics are ``pwvm_*``; the plugin VM counters (:data:`STAT_COUNTERS`) are
    ``pwvm_plugin_<counter>_total{plugin="..."}``; the metrics plugins define are
    ``wasm_<name>`` (characters Prometheus does not allow become ``_``): counters and gauges as
    such, histograms as a summary over the values the host keeps (``HostLimits.histogram_max_values``)
    with ``_count`` of every value recorded."""
    from ._proxywasm import MetricType
    from ._proxywasm._plugin import STAT_COUNTERS

    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    family("pwvm_requests_total", "counter", "Requests answered, by status class.")
    for k, v in stats.requests.items():
        lines.append(f'pwvm_requests_total{{code_class="{k}"}} {v}')
    family("pwvm_request_duration_seconds", "histogram", "Time from a request's arrival to its response's end.")
    acc = 0
    for le, n in zip([*map(repr, _BUCKETS), "+Inf"], stats.buckets):
        acc += n
        lines.append(f'pwvm_request_duration_seconds_bucket{{le="{le}"}} {acc}')
    lines.append(f"pwvm_request_duration_seconds_sum {stats.duration_sum!r}")
    lines.append(f"pwvm_request_duration_seconds_count {stats.duration_count}")
    family("pwvm_requests_in_flight", "gauge", "Requests being served now.")
    lines.append(f"pwvm_requests_in_flight {stats.inflight}")
    family("pwvm_upstream_errors_total", "counter",
           "Upstream failures, by cluster and Envoy response flag (UF connect, UT timeout, UC reset, UPE protocol).")
    for (cluster, flag), n in sorted(stats.upstream_errors.items()):
        lines.append(f'pwvm_upstream_errors_total{{cluster="{_esc(cluster)}",flag="{flag}"}} {n}')
    family("pwvm_reloads_total", "counter", "Configuration reloads, by result (a failed one keeps the old chain).")
    for k, v in stats.reloads.items():
        lines.append(f'pwvm_reloads_total{{result="{k}"}} {v}')
    family("pwvm_config_generation", "gauge", "The number of the plugin chain serving requests (1 at start).")
    lines.append(f"pwvm_config_generation {generation}")
    family("pwvm_draining", "gauge", "1 while the server shuts down.")
    lines.append(f"pwvm_draining {int(draining)}")

    metrics = list(host.metrics._by_id.values())
    plugin_stats: dict[str, list[tuple[str, int]]] = {c: [] for c in STAT_COUNTERS}
    limits: list[tuple[str, int]] = []
    own = []
    for m in metrics:
        if m.name.startswith(host.LIMIT_METRIC):
            limits.append((m.name[len(host.LIMIT_METRIC):], m.value))
        elif m.name.startswith("pwvm."):
            plugin, _, counter = m.name[5:].rpartition(".")
            if counter in plugin_stats:
                plugin_stats[counter].append((plugin, m.value))
        else:
            own.append(m)
    for counter, rows in plugin_stats.items():
        name = f"pwvm_plugin_{counter}_total"
        family(name, "counter", f"Plugin VM events: {counter} (per plugin name).")
        for plugin, v in sorted(rows):
            lines.append(f'{name}{{plugin="{_esc(plugin)}"}} {v}')
    family("pwvm_host_limit_refusals_total", "counter", "Plugin requests refused past a HostLimits bound.")
    for k, v in sorted(limits):
        lines.append(f'pwvm_host_limit_refusals_total{{limit="{_esc(k)}"}} {v}')
    seen = set()
    for m in sorted(own, key=lambda m: m.name):
        name = "wasm_" + _metric_name(m.name)
        if name in seen:  # two names that differ only in characters Prometheus does not allow
            continue
        seen.add(name)
        if m.type is MetricType.HISTOGRAM:
            values = sorted(m.values or ())
            family(name, "summary", f"Plugin histogram {m.name!r} (quantiles of the latest values kept).")
            for q in (0.5, 0.9, 0.99):
                if values:
                    lines.append(f'{name}{{quantile="{q}"}} {values[min(int(q * len(values)), len(values) - 1)]}')
            lines.append(f"{name}_count {len(values) + m.dropped}")
        else:
            kind = "counter" if m.type is MetricType.COUNTER else "gauge"
            family(name, kind, f"Plugin {kind} {m.name!r}.")
            lines.append(f"{name} {m.value}")
    return "\n".join(lines) + "\n"


# ---- the front: the app uvicorn runs -------------------------------------------------------

class _Front:
    """Counts, times and logs every request, and runs it on the chain current when it arrived."""

    def __init__(self, chain: _Chain, stats: _Stats, access_log: Any) -> None:
        self.chain = chain
        self.stats = stats
        self.access_log = access_log  # a text file, or None
        self.retired: set[_Chain] = set()

    def swap(self, chain: _Chain) -> None:
        """Make ``chain`` serve new requests; the old one closes when its last request ends."""
        old, self.chain = self.chain, chain
        old.retired = True
        if old.inflight == 0:
            asyncio.ensure_future(old.close())
        else:
            self.retired.add(old)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.chain.app(scope, receive, send)
            return
        chain = self.chain
        chain.inflight += 1
        self.stats.inflight += 1
        start = time.perf_counter()
        info = _Info()
        scope[_INFO] = info
        status = 0
        sent = 0
        received = 0

        async def counting_receive() -> MutableMapping[str, Any]:
            nonlocal received
            m = await receive()
            received += len(m.get("body", b""))
            return m

        async def counting_send(m: MutableMapping[str, Any]) -> None:
            nonlocal status, sent
            if m["type"] == "http.response.start":
                status = m["status"]
            elif m["type"] == "http.response.body":
                sent += len(m.get("body", b""))
            await send(m)

        try:
            await chain.app(scope, counting_receive, counting_send)
        except _ClientGone:
            status = status or 499  # Envoy logs 0 / DC; nginx's 499 "client closed request"
            info.flags = "DC"
        except Exception as e:
            from .asgi import StreamReset

            if isinstance(e, StreamReset):  # a plugin reset the stream: uvicorn closes the connection
                info.details = "stream_reset_by_plugin"
                status = status or 500  # (what uvicorn answers when nothing was sent yet)
                raise
            if status == 0:  # nothing was sent yet: answer 500 (Envoy's local reply for a filter error)
                _log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
                info.details = f"internal_error{{{type(e).__name__}}}"
                status = 500
                with contextlib.suppress(Exception):
                    await _local(send, 500, b"internal error", info.details)
            elif info.flags == "-":
                info.flags = "UC"
            if info.flags in ("-", "UC", "UT") and status != 500:
                raise  # the response broke off: uvicorn resets the connection
        finally:
            chain.inflight -= 1
            self.stats.inflight -= 1
            if chain.retired and chain.inflight == 0 and chain in self.retired:
                self.retired.discard(chain)
                asyncio.ensure_future(chain.close())
            elapsed = time.perf_counter() - start
            self.stats.request(status or 500, elapsed)
            if self.access_log is not None:
                self._log_line(scope, status, info, received, sent, elapsed)

    def _log_line(self, scope: Scope, status: int, info: _Info, received: int, sent: int, elapsed: float) -> None:
        """One line per request, in Envoy's default access log format:
        ``[START] "METHOD PATH PROTOCOL" CODE FLAGS BYTES_RECEIVED BYTES_SENT DURATION_MS
        UPSTREAM_SERVICE_TIME "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM"``."""
        h = {k.lower(): v for k, v in scope["headers"]}

        def q(name: bytes) -> str:
            v = h.get(name)
            return v.decode("latin-1") if v is not None else "-"

        now = datetime.now(timezone.utc) - _timedelta(elapsed)
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        xff = q(b"x-forwarded-for")
        client = scope.get("client")
        if client:
            xff = client[0] if xff == "-" else f"{xff}, {client[0]}"
        rid = info.request_id if info.request_id != "-" else q(b"x-request-id")
        line = (f'[{now.isoformat(timespec="milliseconds").replace("+00:00", "Z")}] '
                f'"{scope["method"]} {path.decode("latin-1")} HTTP/{scope.get("http_version", "1.1")}" '
                f'{status} {info.flags} {received} {sent} {int(elapsed * 1000)} {info.service_ms} '
                f'"{xff}" "{q(b"user-agent")}" "{rid}" "{q(b"host")}" "{info.upstream}"\n')
        try:
            self.access_log.write(line)
        except (OSError, ValueError) as e:  # a full disk must not fail requests: say it once, stop logging
            _log.error("access log: cannot write (%s); access logging is off from now", e)
            self.access_log = None


def _timedelta(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


class _Admin:
    """The admin listener: ``/metrics`` (Prometheus text) and ``/healthz``."""

    def __init__(self, server: _Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        s = self.server
        if scope["path"] == "/metrics":
            body = prometheus_text(s.stats, s.host, s.front.chain.number, s.draining).encode()
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
            status = 200
        elif scope["path"] in ("/healthz", "/ready"):
            # Envoy's /ready answers 503 while the server drains: a load balancer stops sending
            status, body = (503, b"DRAINING\n") if s.draining else (200, b"LIVE\n")
            ctype = b"text/plain"
        else:
            status, body, ctype = 404, b"not found: try /metrics or /healthz\n", b"text/plain"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# ---- the server ----------------------------------------------------------------------------

class _PluginLogger:
    """Plugin log records to the ``proxywasm_vm.plugin`` Python logger (stderr), never kept; the
    host's own records (a plugin failure) too, once: the host does not log them again on
    ``proxywasm_vm`` (``forwards_to_logging``)."""

    _LEVELS = {0: 5, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR, 5: logging.CRITICAL}

    @staticmethod
    def make(level: str) -> Any:
        from ._proxywasm import Logger, LogLevel

        py = logging.getLogger("proxywasm_vm.plugin")
        levels = _PluginLogger._LEVELS

        class PluginLogger(Logger):
            forwards_to_logging = True

            def emit(self, record: Any) -> None:
                # (plugin, VM id and context as MemoryLogger writes them)
                py.log(levels.get(int(record.level), logging.INFO), "[%s/%s ctx %d] %s", record.plugin,
                       record.vm_id, record.context_id, record.message)

        return PluginLogger({"trace": LogLevel.TRACE, "debug": LogLevel.DEBUG, "info": LogLevel.INFO,
                             "warn": LogLevel.WARN, "error": LogLevel.ERROR,
                             "critical": LogLevel.CRITICAL}[level])


def _open_log(path: str | None) -> Any:
    if path is None:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"access_log: cannot open {path}: {e.strerror or e}") from None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every response (headers, then body: two writes) waited ~40 ms for the
    # client's delayed ACK (socket.create_server makes sockets with proto 0).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server:
    """The running ``pwvm serve``: listeners, admin, signals, reloads."""

    def __init__(self, config: ServeConfig, load: Callable[[], ServeConfig], *, watch: float | None) -> None:
        from ._proxywasm import HttpxDispatcher, ProxyWasmHost

        self.config = config
        self.load = load  # re-reads the configuration (file or flags) for a reload
        self.watch = watch
        self.stats = _Stats()
        self.draining = False
        # Plugin HTTP callouts go to the clusters by name (the dispatcher's table is replaced on reload).
        self.dispatcher = HttpxDispatcher({n: c.url for n, c in config.clusters.items()}, max_workers=16)
        shared: dict[str, Any] = {}
        if config.redis is not None:  # shared data and queues across every process on this Redis
            from ._proxywasm import redis_shared

            try:
                shared = redis_shared(config.redis, prefix=config.redis_prefix)
            except ImportError as e:
                raise ConfigError(f"{config.source or 'pwvm serve'}: redis: {e}") from None
        self.host = ProxyWasmHost(http=self.dispatcher, logger=_PluginLogger.make(config.log_level),
                                  limits=config.host_limits, **shared)
        self.access_log = _open_log(config.access_log)
        self.front = _Front(build_chain(config, self.host, self.stats, 1), self.stats, self.access_log)
        self._reloading = asyncio.Lock()
        self.servers: list[Any] = []

    async def reload(self, why: str) -> None:
        """Build the new chain, then swap it in; a bad configuration keeps the old one."""
        async with self._reloading:
            try:
                config = self.load()
                if config.listen != self.config.listen or config.admin != self.config.admin:
                    _log.warning("reload: listeners and the admin address change only with a restart; "
                                 "keeping %s", ", ".join(f"{h}:{p}" for h, p in self.config.listen))
                if config.host_limits != self.config.host_limits:
                    _log.warning("reload: the host limits ([limits] but the plugins' deadline, start_deadline, "
                                 "memory_mb and table_elements) change only with a restart; keeping the running ones")
                if (config.redis, config.redis_prefix) != (self.config.redis, self.config.redis_prefix):
                    _log.warning("reload: the Redis of shared data and queues changes only with a restart; "
                                 "keeping %s", self.config.redis or "memory")
                chain = build_chain(config, self.host, self.stats, self.front.chain.number + 1)
            except ConfigError as e:
                self.stats.reloads["failure"] += 1
                _log.error("reload (%s) failed, the running configuration stays: %s", why, e)
                return
            except Exception as e:  # noqa: BLE001 (anything at all: the old chain must keep serving)
                self.stats.reloads["failure"] += 1
                _log.exception("reload (%s) failed, the running configuration stays: %s", why, e)
                return
            self.dispatcher.upstreams = {n: c.url for n, c in config.clusters.items()}
            if config.access_log != self.config.access_log:
                try:
                    log = _open_log(config.access_log)
                except ConfigError as e:
                    _log.error("reload: %s; the access log stays as it was", e)
                else:
                    if self.access_log not in (None, sys.stdout):
                        self.access_log.close()
                    self.access_log = self.front.access_log = log
            self.config = config
            self.front.swap(chain)
            self.stats.reloads["success"] += 1
            _log.info("reloaded (%s): generation %d, %d plugin(s): %s", why, chain.number, len(chain.plugins),
                      ", ".join(p.name for p in chain.plugins) or "none")

    async def _watch(self) -> None:
        """``--watch``: reload when a configuration or plugin file changes (mtime and size, polled)."""
        def state() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for f in self.config.files:
                try:
                    st = os.stat(f)
                    out[f] = (st.st_mtime_ns, st.st_size)
                except OSError:
                    out[f] = None
            return out

        assert self.watch is not None
        seen = state()
        while not self.draining:
            await asyncio.sleep(self.watch)
            now = state()
            if now != seen:
                changed = [f for f in now if now[f] != seen.get(f)]
                await self.reload("changed: " + ", ".join(os.path.basename(f) for f in changed))
                seen = state()

    async def run(self) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # ours are installed by _Server.run
                yield

        cfg = self.config
        socks = [_bind(h, p) for h, p in cfg.listen]
        admin_socks = [_bind(*cfg.admin)] if cfg.admin else []
        # proxy_headers off: x-forwarded-for is the proxy's to write (uvicorn would trust it from 127.0.0.1)
        common: dict[str, Any] = dict(lifespan="off", log_config=None, access_log=False, server_header=False,
                                      date_header=False, timeout_keep_alive=5, interface="asgi3",
                                      proxy_headers=False)
        grace: dict[str, Any] = {"timeout_graceful_shutdown": cfg.shutdown_grace}  # (a float works; typed int)
        proxy = Server(uvicorn.Config(self.front, **grace, **common))
        admin = Server(uvicorn.Config(_Admin(self), timeout_graceful_shutdown=1, **common)) if admin_socks else None
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()

        def stop(sig: int) -> None:
            if self.draining:  # a second signal: stop now, in-flight requests or not
                _log.warning("%s again: stopping now", signal.Signals(sig).name)
                proxy.force_exit = True
                return
            _log.info("%s: draining (up to %g s for requests in flight)", signal.Signals(sig).name,
                      cfg.shutdown_grace)
            self.draining = True
            proxy.should_exit = True

        def hup() -> None:
            t = loop.create_task(self.reload("SIGHUP"))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
        loop.add_signal_handler(signal.SIGHUP, hup)
        if self.watch is not None:
            t = loop.create_task(self._watch())
            tasks.add(t)
        listening = ", ".join(_url_of(s) for s in socks)
        _log.info("pwvm serve: listening on %s%s; %d plugin(s): %s", listening,
                  f"; admin on {_url_of(admin_socks[0])}" if admin_socks else "", len(cfg.plugins),
                  ", ".join(f"{p.name} ({p.backend})" for p in cfg.plugins) or "none")
        admin_task = loop.create_task(admin.serve(sockets=admin_socks)) if admin is not None else None
        try:
            await proxy.serve(sockets=socks)
        finally:
            self.draining = True
            if admin is not None and admin_task is not None:
                admin.should_exit = True
                await admin_task
            for t in list(tasks):
                t.cancel()
            for c in [self.front.chain, *self.front.retired]:
                await c.close()
            self.dispatcher.close()
            for service in (self.host.shared_data, self.host.queues):  # Redis connections, listener thread
                close = getattr(service, "close", None)
                if close is not None:
                    close()
            if self.access_log not in (None, sys.stdout):
                self.access_log.close()
            elif self.access_log is sys.stdout:
                sys.stdout.flush()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        _log.info("pwvm serve: stopped")


def serve(load: Callable[[], ServeConfig], *, watch: float | None = None) -> int:
    """Run ``pwvm serve`` until SIGTERM / SIGINT; returns the exit status (a bad configuration
    raises :class:`ConfigError` before anything listens)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = load()

    async def main() -> None:
        server = _Server(config, load, watch=watch)
        await server.run()

    try:
        asyncio.run(main())
    except OSError as e:
        print(f"pwvm serve: error: {e}", file=sys.stderr)
        return 1
    return 0
