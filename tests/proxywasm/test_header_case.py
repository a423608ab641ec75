"""Header name case, on every backend: names are lower-cased as Envoy does (its codecs give
filters lower-case names; a name a plugin adds is taken as an ``Http::LowerCaseString``), and
``ProxyWasmHost(preserve_header_case=True)`` keeps them as given; lookups match any case
either way."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST, plugin_path

KEEP = pytest.mark.parametrize("keep", [False, True], ids=["lower", "preserve"])


def _wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def _case_wat() -> str:
    """A plugin that uses mixed-case names in every host call that takes a name or a map.

    Request headers: add ``X-Plugin-Added: Yes``; look ``X-CLIENT-ID`` up and add its value
    as ``x-seen-client-id``; replace ``X-REPLACE-ME`` with ``new``; remove ``X-REMOVE-ME``;
    an HTTP call to ``up`` with headers ``:method GET, :path /c, :authority up.test,
    X-Call-Name: 1``; a gRPC call to ``g`` with metadata ``X-Grpc-Md: 2``.
    Response headers: a local response 403 with header ``X-Local: 1``.
    """
    strings: dict[str, bytes] = {
        "added": b"X-Plugin-Added", "yes": b"Yes", "client": b"X-CLIENT-ID", "seen": b"x-seen-client-id",
        "replace": b"X-REPLACE-ME", "new": b"new", "remove": b"X-REMOVE-ME", "up": b"up",
        "call": pw.serialize_pairs([(":method", "GET"), (":path", "/c"), (":authority", "up.test"),
                                    ("X-Call-Name", "1")]),
        "g": b"g", "svc": b"S", "meth": b"M", "md": pw.serialize_pairs([("X-Grpc-Md", "2")]),
        "local": pw.serialize_pairs([("X-Local", "1")]), "details": b"d", "body": b"no",
    }
    at: dict[str, tuple[int, int]] = {}
    segs = []
    off = 64
    for k, v in strings.items():
        at[k] = (off, len(v))
        segs.append(f'(data (i32.const {off}) "{_wat_bytes(v)}")')
        off += len(v) + 8 - len(v) % 8

    def s(k: str) -> str:
        return f"(i32.const {at[k][0]}) (i32.const {at[k][1]})"

    return f"""(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call"
    (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  {' '.join(segs)}
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) {s("added")} {s("yes")}))
    (if (i32.eqz (call $get (i32.const 0) {s("client")} (i32.const 0) (i32.const 4)))
      (then (drop (call $add (i32.const 0) {s("seen")} (i32.load (i32.const 0)) (i32.load (i32.const 4))))))
    (drop (call $replace (i32.const 0) {s("replace")} {s("new")}))
    (drop (call $remove (i32.const 0) {s("remove")}))
    (drop (call $http_call {s("up")} {s("call")} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                           (i32.const 1000) (i32.const 8)))
    (drop (call $grpc_call {s("g")} {s("svc")} {s("meth")} {s("md")} (i32.const 0) (i32.const 0)
                           (i32.const 1000) (i32.const 12)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $local (i32.const 403) {s("details")} {s("body")} {s("local")} (i32.const -1)))
    (i32.const 1))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"""


class _Grpc(pw.GrpcDispatcher):
    """Keeps the metadata of every call (the call never answers)."""

    def __init__(self) -> None:
        self.metadata: list[Any] = []

    def call(self, upstream: str, service: str, method: str, metadata: pw.HeaderMap, message: bytes,
             timeout_ms: int, events: pw.GrpcEvents) -> pw.GrpcHandle:
        self.metadata.append(metadata.raw_items())
        return pw.GrpcHandle()


def _host(engine: pw.Engine, keep: bool, **kw: Any) -> pw.ProxyWasmHost:
    return pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(), preserve_header_case=keep, **kw)


def _case(name: str, keep: bool) -> str:
    return name if keep else name.lower()


@KEEP
def test_names_in_every_host_call(engine, keep):
    http = pw.CallbackHttpDispatcher(lambda r: (200, {}, b""))
    grpc = _Grpc()
    host = _host(engine, keep, http=http, grpc=grpc)
    try:
        p = pw.Plugin(pw.PluginConfig(name="case"), _case_wat(), host=host)
        with p.http_stream() as s:
            req = [(":method", "GET"), (":path", "/"), (":authority", "a"), ("X-Client-Id", "c7"),
                   ("X-Replace-Me", "old"), ("x-replace-me", "old2"), ("X-Remove-Me", "x")]
            assert s.request_headers(req) is Action.CONTINUE
            h = s.request.headers
            # the names the client gave and the plugin added: lower-cased, or kept as written;
            # the plugin's lookup, replace and remove matched names in another case
            assert h.items() == [(":method", "GET"), (":path", "/"), (":authority", "a"),
                                 (_case("X-Client-Id", keep), "c7"), (_case("X-Replace-Me", keep), "new"),
                                 (_case("X-Plugin-Added", keep), "Yes"), ("x-seen-client-id", "c7")]
            assert h.preserve_case is keep
            assert h["X-PLUGIN-ADDED"] == h["x-plugin-added"] == "Yes" and "x-client-ID" in h
            assert s.request_trailers({"X-Trailer": "t"}) is Action.CONTINUE
            assert s.request.trailers.items() == [(_case("X-Trailer", keep), "t")]
            assert s.response_headers({":status": "200", "Server": "up"}) is Action.PAUSE
            assert s.response.headers.keys() == [":status", _case("Server", keep)]
            lr = s.local_response
            assert lr is not None and lr.status == 403
            assert lr.headers.items() == [(_case("X-Local", keep), "1")] and lr.headers["x-local"] == "1"
        call = http.requests[0]
        assert call.headers.items() == [(":method", "GET"), (":path", "/c"), (":authority", "up.test"),
                                        (_case("X-Call-Name", keep), "1")]
        assert call.headers["x-call-name"] == "1"
        # gRPC runs on HTTP/2, whose names must be lower case: lower-cased even when preserving
        assert grpc.metadata == [[(b"x-grpc-md", b"2")]]
    finally:
        host.close()


@KEEP
def test_c_plugin_sees_the_names_the_host_gives(engine, keep):
    """c_http_all (test=headers) lists the names it reads and looks ``x-pwvm-echo`` up in lower case."""
    host = _host(engine, keep)
    try:
        p = pw.Plugin(pw.PluginConfig(name="c_http_all", configuration="test=headers", root_id="pwvm_all",
                                      vm_id="vm_all"), plugin_path("c_http_all"), host=host)
        with p.http_stream() as s:
            s.request_headers(REQUEST + [("X-Pwvm-Echo", "hi"), ("X-Pwvm-Remove", "r")])
            h = s.request.headers
            names = [":method", ":path", ":authority", ":scheme", "user-agent", _case("X-Pwvm-Echo", keep),
                     _case("X-Pwvm-Remove", keep)]
            assert h["x-pwvm-header-names"] == ",".join(names)
            assert h["x-pwvm-echoed"] == "hi"  # found in any case
            assert "x-pwvm-remove" not in h  # removed in any case
            s.response_headers({":status": "200", "X-Pwvm-Drop": "1", "Via": "v"}, True)
            assert s.response.headers.keys() == [":status", _case("Via", keep), "x-pwvm-set-pairs"]
    finally:
        host.close()


def test_a_header_map_passed_in_keeps_its_own_mode(engine):
    host = _host(engine, False)
    try:
        p = pw.Plugin(pw.PluginConfig(name="case"), _case_wat(), host=host)
        with p.http_stream() as s:
            m = pw.HeaderMap([(":method", "GET"), (":path", "/"), (":authority", "a"), ("X-Client-Id", "c")],
                             preserve_case=True)
            s.request_headers(m)
            # names as given, and the plugin's as it wrote them (a worker backend holds a copy of m)
            assert s.request.headers.keys()[3:] == ["X-Client-Id", "X-Plugin-Added", "x-seen-client-id", "X-REPLACE-ME"]
    finally:
        host.close()


def test_preserve_header_case_is_a_bool():
    with pytest.raises(TypeError, match="preserve_header_case"):
        pw.ProxyWasmHost(preserve_header_case="yes")  # type: ignore[arg-type]
    assert pw.ProxyWasmHost().preserve_header_case is False


def test_header_map_case_modes():
    low = pw.HeaderMap({"X-A": "1"})
    keep = pw.HeaderMap({"X-A": "1"}, preserve_case=True)
    assert low.keys() == ["x-a"] and keep.keys() == ["X-A"]
    for m in (low, keep):
        assert m["x-a"] == m["X-a"] == "1" and "X-A" in m
        m.add("X-b", "2")
        m.add("x-B", "3")
        assert m.get_all("X-B") == ["2", "3"]
        m.replace("X-B", "9")  # the first field keeps its place and its name; the second goes
        assert m.get_all("x-b") == ["9"]
        m.remove("X-A")
        assert "x-a" not in m and len(m) == 1
    assert low.items() == [("x-b", "9")] and keep.items() == [("X-b", "9")]
    back = pickle.loads(pickle.dumps(keep))  # how a map crosses to a worker
    assert back.preserve_case and back.items() == [("X-b", "9")] and back == keep
    assert keep.copy().preserve_case and pw.HeaderMap(keep).keys() == ["x-b"]
    assert pw.HeaderMap(low, preserve_case=True).preserve_case
    keep.set_flat([b"Set-Cookie", b"a"])
    low.set_flat([b"Set-Cookie", b"a"])
    assert keep.keys() == ["Set-Cookie"] and low.keys() == ["set-cookie"]
    assert keep == {"Set-Cookie": "a"} and keep != {"set-cookie": "a"} and low == {"Set-Cookie": "a"}


@KEEP
def test_plugin_harness_passes_the_option(engine, keep):
    from proxywasm_vm.testing import PluginHarness

    with PluginHarness(_case_wat(), engine=engine, preserve_header_case=keep) as h:
        assert h.host.preserve_header_case is keep
        with h.http_stream() as s:
            s.request_headers([(":method", "GET"), (":path", "/"), (":authority", "a"), ("X-Client-Id", "c")])
            assert s.request.headers.keys()[3:5] == [_case("X-Client-Id", keep), _case("X-Plugin-Added", keep)]
        call = h.next_http_call("up")
        assert call.request.headers.keys()[3:] == [_case("X-Call-Name", keep)]
        assert call.request.headers["x-call-name"] == "1"
