"""``pwvm run`` and ``pwvm diff``: drive HTTP requests through a plugin and record what it did.

One :func:`drive` loads the plugin on one backend into a fresh :class:`ProxyWasmHost` (a
:class:`ManualClock`, so time only moves when we say, and an in-memory logger) and sends each
request as a proxy would: request headers, body, trailers; then, if the request got through,
the response. HTTP and gRPC callouts are never sent to the network: they stay pending, or are
answered from a file. The outcome is plain JSON data, so :func:`compare` can diff two runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._errors import TrapCode, WasmError
from ._proxywasm._abi import LogLevel
from ._proxywasm._errors import ProxyWasmError
from ._proxywasm._grpc import GrpcDispatcher, GrpcEvents, GrpcHandle
from ._proxywasm._http import HttpCallRequest, HttpCallResponse, HttpDispatcher
from ._proxywasm._plugin import Plugin, PluginConfig, ProxyWasmHost
from ._proxywasm._services import ManualClock, MemoryLogger

__all__ = ["Request", "drive", "compare", "comparable", "parse_requests", "parse_callouts"]

# How long a stream waits for answered callouts to be delivered (wall clock; the answers are
# already queued, so this is only a "did not hang" bound).
_WAIT_S = 5.0


@dataclass
class Request:
    """One request to send, and the upstream response to send back if the plugin lets it through."""

    method: str = "GET"
    path: str = "/"
    authority: str = "example.com"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    response_status: int = 200
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""

    def request_map(self) -> list[tuple[str, str]]:
        return [(":method", self.method), (":path", self.path), (":authority", self.authority),
                (":scheme", "http"), *self.headers]

    def response_map(self) -> list[tuple[str, str]]:
        return [(":status", str(self.response_status)), *self.response_headers]


def _pairs(value: Any, what: str) -> list[tuple[str, str]]:
    """Headers from JSON: an object ``{name: value}`` or a list of ``[name, value]`` pairs."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        items = [tuple(p) for p in value]
    else:
        raise ValueError(f"{what}: expected an object or a list of [name, value] pairs")
    for k, v in items:
        if not isinstance(k, str) or not isinstance(v, (str, int)):
            raise ValueError(f"{what}: header names and values must be strings")
    return [(str(k).lower(), str(v)) for k, v in items]


def _text(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a string")
    return value.encode()


def parse_requests(doc: Any, base: Request) -> list[Request]:
    """Requests from a JSON document: one object or a list of them. Keys (all optional; a missing
    one keeps ``base``'s value): method, path, authority, headers, body, trailers, and
    ``response``: {status, headers, body}."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise ValueError("the request file holds no request")
    out = []
    known = {"method", "path", "authority", "headers", "body", "trailers", "response"}
    for n, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            raise ValueError(f"request {n}: expected a JSON object")
        unknown = set(item) - known
        if unknown:
            raise ValueError(f"request {n}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        resp = item.get("response") or {}
        if not isinstance(resp, Mapping):
            raise ValueError(f"request {n}: response: expected a JSON object")
        status = resp.get("status", base.response_status)
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError(f"request {n}: response status must be an integer 100..999")
        for key in ("method", "path", "authority"):
            if key in item and not isinstance(item[key], str):
                raise ValueError(f"request {n}: {key}: expected a string")
        out.append(Request(
            method=item.get("method", base.method), path=item.get("path", base.path),
            authority=item.get("authority", base.authority),
            headers=_pairs(item["headers"], f"request {n} headers") if "headers" in item else base.headers,
            body=_text(item["body"], f"request {n} body") if "body" in item else base.body,
            trailers=_pairs(item.get("trailers"), f"request {n} trailers"),
            response_status=status,
            response_headers=_pairs(resp["headers"], f"request {n} response headers") if "headers" in resp
            else base.response_headers,
            response_body=_text(resp["body"], f"request {n} response body") if "body" in resp else base.response_body,
        ))
    return out


def parse_callouts(doc: Any) -> dict[str, HttpCallResponse]:
    """Answers to HTTP callouts from JSON: ``{upstream: {status, headers, body}}``, ``"*"`` for any
    upstream, ``null`` (or ``{"error": "..."}``) for a failed call."""
    if not isinstance(doc, Mapping):
        raise ValueError("the callouts file must hold a JSON object {upstream: response}")
    out = {}
    for upstream, r in doc.items():
        if r is None:
            out[upstream] = HttpCallResponse.failure("failed (callouts file)")
            continue
        if not isinstance(r, Mapping):
            raise ValueError(f"callout {upstream!r}: expected an object or null")
        if r.get("error"):
            out[upstream] = HttpCallResponse.failure(str(r["error"]))
            continue
        status = r.get("status", 200)
        if not isinstance(status, int):
            raise ValueError(f"callout {upstream!r}: status must be an integer")
        out[upstream] = HttpCallResponse(status, _pairs(r.get("headers"), f"callout {upstream!r} headers"),
                                         _text(r.get("body"), f"callout {upstream!r} body"))
    return out


def _show(b: bytes) -> str:
    """Bytes as text for the report: UTF-8, with undecodable bytes escaped (``\\xNN``)."""
    return b.decode("utf-8", "backslashreplace")


class _Callouts(HttpDispatcher):
    """Records every HTTP callout; answers those the callouts file answers, leaves the rest pending."""

    def __init__(self, answers: Mapping[str, HttpCallResponse]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def dispatch(self, request: HttpCallRequest, deliver: Any) -> Any:
        answer = self.answers.get(request.upstream, self.answers.get("*"))
        call = {"upstream": request.upstream, "headers": request.headers.items(), "body": _show(request.body),
                "timeout_ms": request.timeout_ms,
                "state": "pending (not sent: pass --callouts FILE to answer it)" if answer is None else
                ("answered: failed" if answer.error else f"answered: {answer.status}")}
        self.calls.append(call)
        if answer is not None:
            deliver(answer)  # (the plugin sees it at the next poll)
        return None


class _GrpcCalls(GrpcDispatcher):
    """Records gRPC calls and streams; none is answered (they stay pending)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def _record(self, kind: str, upstream: str, service: str, method: str, message: bytes | None) -> GrpcHandle:
        self.calls.append({"kind": kind, "upstream": upstream, "service": service, "method": method,
                           **({"message": _show(message)} if message is not None else {}), "state": "pending"})
        return GrpcHandle()

    def call(self, upstream: str, service: str, method: str, metadata: Any, message: bytes, timeout_ms: int,
             events: GrpcEvents) -> GrpcHandle:
        return self._record("call", upstream, service, method, message)

    def stream(self, upstream: str, service: str, method: str, metadata: Any, events: GrpcEvents) -> GrpcHandle:
        return self._record("stream", upstream, service, method, None)


def _header_changes(before: list[tuple[str, str]], after: Any) -> dict[str, Any]:
    """What the plugin did to a header map: the final map and the added / removed / changed names."""
    if after is None:
        return {"final": None}
    final = after.items()
    old: dict[str, list[str]] = {}
    new: dict[str, list[str]] = {}
    for k, v in before:
        old.setdefault(k, []).append(v)
    for k, v in final:
        new.setdefault(k, []).append(v)
    return {
        "final": [list(p) for p in final],
        "added": [[k, v] for k in new if k not in old for v in new[k]],
        "removed": [k for k in old if k not in new],
        "changed": [[k, old[k], new[k]] for k in new if k in old and old[k] != new[k]],
    }


def _step(steps: list, stream: Any, callback: str, action: Any) -> bool:
    """Record one callback's result; False when the stream cannot go on (failed or answered)."""
    failed = stream.error is not None
    steps.append({"callback": callback, "action": "failed" if failed else action.name.lower()})
    return not failed and stream.local_response is None


def _one_request(plugin: Plugin, req: Request, http: _Callouts, grpc: _GrpcCalls) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    first_call, first_grpc = len(http.calls), len(grpc.calls)
    headers = req.request_map()
    with plugin.http_stream() as s:
        go = _step(steps, s, "request_headers",
                   s.request_headers(headers, end_of_stream=not req.body and not req.trailers))
        if go and req.body:
            go = _step(steps, s, "request_body", s.request_body(req.body, end_of_stream=not req.trailers))
        if go and req.trailers:
            go = _step(steps, s, "request_trailers", s.request_trailers(req.trailers))
        answered = any(not c["state"].startswith("pending") for c in http.calls[first_call:])
        if go and s.request.paused and answered:
            s.wait(timeout=_WAIT_S)  # deliver the answered callouts (proxy_on_http_call_response)
            steps.append({"callback": "http_call_response",
                          "action": "failed" if s.error else ("still paused" if s.request.paused else "resumed")})
            go = s.error is None and s.local_response is None
        # The upstream sees the request only if the plugin let it through (as Envoy forwards it).
        forwarded = go and not s.request.paused
        if forwarded:
            rh = req.response_map()
            go = _step(steps, s, "response_headers", s.response_headers(rh, end_of_stream=not req.response_body))
            if go and req.response_body:
                _step(steps, s, "response_body", s.response_body(req.response_body, end_of_stream=True))
        lr = s.local_response
        out: dict[str, Any] = {
            "steps": steps,
            "request": {**_header_changes(headers, s.request.headers), "body": _show(s.request.body),
                        "buffered": _show(s.request.buffered), "paused": s.request.paused,
                        "forwarded": forwarded},
            "response": ({**_header_changes(req.response_map(), s.response.headers), "body": _show(s.response.body),
                          "paused": s.response.paused} if forwarded else None),
            "local_response": None if lr is None else {
                "status": lr.status, "details": lr.details, "headers": [list(p) for p in lr.headers.items()],
                "body": _show(lr.body), "grpc_status": lr.grpc_status},
            "error": None if s.error is None else f"{type(s.error).__name__}: {s.error}",
        }
    out["callouts"] = http.calls[first_call:]
    out["grpc_calls"] = grpc.calls[first_grpc:]
    return out


def _one_connection(plugin: Plugin, req: Request, http: _Callouts, grpc: _GrpcCalls) -> dict[str, Any]:
    """A TCP connection through a network filter: the request body is the client's data, the
    response body the upstream's; then both sides close (the client first)."""
    steps: list[dict[str, Any]] = []
    first_call, first_grpc = len(http.calls), len(grpc.calls)

    def step(callback: str, action: Any) -> bool:
        failed = s.error is not None
        steps.append({"callback": callback, "action": "failed" if failed else action.name.lower()})
        return not failed and not s.connection_closed_by_plugin

    with plugin.tcp_stream() as s:
        go = step("new_connection", s.new_connection())
        if go and req.body:
            go = step("downstream_data", s.downstream_data(req.body, end_of_stream=False))
        if go and req.response_body:
            go = step("upstream_data", s.upstream_data(req.response_body, end_of_stream=False))
        if go:
            s.downstream_close()
            s.upstream_close()
        out: dict[str, Any] = {
            "kind": "tcp", "steps": steps,
            "downstream": {"data": _show(s.downstream.data), "buffered": _show(s.downstream.buffered),
                           "paused": s.downstream.paused},
            "upstream": {"data": _show(s.upstream.data), "buffered": _show(s.upstream.buffered),
                         "paused": s.upstream.paused},
            "closed_by_plugin": s.connection_closed_by_plugin,
            "error": None if s.error is None else f"{type(s.error).__name__}: {s.error}",
        }
    out["callouts"] = http.calls[first_call:]
    out["grpc_calls"] = grpc.calls[first_grpc:]
    return out


def drive(wasm: bytes, requests: list[Request], *, backend: str, name: str = "plugin", root_id: str = "",
          configuration: bytes = b"", vm_config: bytes = b"", callouts: Mapping[str, HttpCallResponse] | None = None,
          log_level: LogLevel = LogLevel.INFO, tcp: bool = False) -> dict[str, Any]:
    """Send ``requests`` through the plugin ``wasm`` on ``backend`` (``tcp``: each as a TCP
    connection through a network filter); the outcome as JSON data."""
    http = _Callouts(callouts or {})
    grpc = _GrpcCalls()
    logger = MemoryLogger(level=log_level)
    host = ProxyWasmHost(backend=backend, clock=ManualClock(), logger=logger, http=http, grpc=grpc)
    out: dict[str, Any] = {"backend": backend, "loaded": False, "load_error": None, "abi": None, "requests": []}
    try:
        try:
            # fail_closed, as Envoy's default; no reload: one failure is the outcome of this run
            plugin = Plugin(PluginConfig(name=name, root_id=root_id, configuration=configuration,
                                         vm_config=vm_config, backend=backend, reload_on_failure=False),
                            wasm, host=host)
        except (ProxyWasmError, WasmError) as e:
            out["load_error"] = f"{type(e).__name__}: {e}"
        else:
            out["loaded"] = True
            out["abi"] = plugin.abi.value
            try:
                one = _one_connection if tcp else _one_request
                for req in requests:
                    out["requests"].append(one(plugin, req, http, grpc))
            finally:
                plugin.close()
        out["logs"] = [{"level": r.level.name.lower(), "message": r.message} for r in logger.records]
        out["metrics"] = {k: v for k, v in sorted(host.metrics.snapshot().items())}
    finally:
        host.close()
    return out


# A trap's text is "wasm trap: <code>: <the runtime's own words>"; the words (a wasmtime backtrace,
# V8's "RuntimeError: unreachable", wasm3's "[trap] ...") differ by runtime for the same trap, so
# diff compares the code only. The full text stays in each outcome.
_TRAP_WORDS = re.compile(r"(wasm trap: (?:%s))(?:: .*?)?(?=; the |\Z)" % "|".join(re.escape(c.value) for c in TrapCode),
                         re.S)


def _same_trap(value: Any) -> Any:
    return _TRAP_WORDS.sub(r"\1", value) if isinstance(value, str) else value


def _hdrs(pairs: Any) -> list[str] | None:
    return None if pairs is None else [f"{k}: {v}" for k, v in pairs]


def comparable(outcome: dict[str, Any]) -> dict[str, Any]:
    """What ``diff`` compares of an outcome (everything but the backend's name), keyed by readable
    names: per request the actions, headers and bodies as the plugin left them, the local response,
    callouts and errors; the logs and metrics of the whole run."""
    requests: dict[str, Any] = {}
    for n, r in enumerate(outcome["requests"], 1):
        if r.get("kind") == "tcp":
            requests[f"connection {n}"] = {
                "actions": [f"{s['callback']}: {s['action']}" for s in r["steps"]],
                "downstream": r["downstream"], "upstream": r["upstream"],
                "closed by the plugin": r["closed_by_plugin"], "plugin failure": _same_trap(r["error"]),
                "HTTP callouts": [{**c, "headers": _hdrs(c["headers"])} for c in r["callouts"]],
                "gRPC calls": r["grpc_calls"],
            }
            continue
        req, resp, lr = r["request"], r["response"], r["local_response"]
        requests[f"request {n}"] = {
            "actions": [f"{s['callback']}: {s['action']}" for s in r["steps"]],
            "request headers": _hdrs(req["final"]), "request body": req["body"],
            "request body held back": req["buffered"], "request paused": req["paused"],
            "forwarded upstream": req["forwarded"],
            "response headers": _hdrs(resp["final"]) if resp else None, "response body": resp["body"] if resp else None,
            "local response": None if lr is None else {**lr, "headers": _hdrs(lr["headers"])},
            "plugin failure": _same_trap(r["error"]),
            "HTTP callouts": [{**c, "headers": _hdrs(c["headers"])} for c in r["callouts"]],
            "gRPC calls": r["grpc_calls"],
        }
    return {"load error": _same_trap(outcome["load_error"]), "ABI": outcome["abi"], **requests,
            "logs": [_same_trap(f"{rec['level']}: {rec['message']}") for rec in outcome.get("logs", [])],
            "metrics": outcome.get("metrics", {})}


def compare(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where two values differ: ``[(path, a's part, b's part)]``, at the deepest differing level.
    Lists of equal length are compared item by item; of different lengths, by the items only
    one of them holds."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += compare(a.get(k), b.get(k), f"{path} / {k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) == len(b):
            out = []
            for i, (x, y) in enumerate(zip(a, b)):
                out += compare(x, y, f"{path}[{i}]")
            return out
        return [(f"{path} ({len(a)} vs {len(b)} items; the items only one side has)",
                 [x for x in a if x not in b], [y for y in b if y not in a])]
    return [(path, a, b)]
