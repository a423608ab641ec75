"""ABI 0.1.0 (legacy) modules: the imports of that era, and the answers that differ by ABI version.

Reference behaviour: proxy-wasm-cpp-host defines ``env.pthread_equal`` (and
``env.emscripten_notify_memory_growth``) for every ABI version, which Emscripten builds of the
0.1.0 era import; Envoy answers a header value that is not there with OK and an empty value to
0.1.0 modules, and with NOT_FOUND to 0.2.x ones. Every test runs on every backend.
"""

from __future__ import annotations

import pytest

import proxywasm_vm as pw

from .conftest import REQUEST


def _probe(make_plugin, name: str) -> tuple[dict, list]:
    p = make_plugin("c_abi010")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-legacy", name)], True) is pw.Action.CONTINUE
        headers = dict(s.request.headers)
    return headers, p.logs


def test_missing_header_is_ok_and_empty_under_0_1_0(make_plugin):
    h, logs = _probe(make_plugin, "x-pwvm-absent")
    # No such key: OK, both out-words written (pointer 0, size 0).
    assert (h["x-pwvm-legacy-status"], h["x-pwvm-legacy-size"], h["x-pwvm-legacy-ptr"]) == ("0", "0", "null")
    # No such map (request trailers while the request headers are processed): the same answer.
    assert (h["x-pwvm-legacy-trailer-status"], h["x-pwvm-legacy-trailer-size"],
            h["x-pwvm-legacy-trailer-ptr"]) == ("0", "0", "null")
    assert "x-pwvm-legacy-value" not in h and "x-pwvm-legacy-trailer-value" not in h
    assert "c_abi010: legacy probe x-pwvm-absent status=0 trailer_status=0 pthread_equal=1,0" in logs


def test_present_header_reads_as_before_under_0_1_0(make_plugin):
    h, _ = _probe(make_plugin, "user-agent")
    assert (h["x-pwvm-legacy-status"], h["x-pwvm-legacy-size"], h["x-pwvm-legacy-ptr"],
            h["x-pwvm-legacy-value"]) == ("0", "6", "set", "pytest")


def test_pthread_equal_is_provided(make_plugin):
    h, _ = _probe(make_plugin, "x-pwvm-absent")
    assert h["x-pwvm-pthread-equal"] == "1,0"  # pthread_equal(id, id), pthread_equal(id, id + 1)


def test_missing_header_is_not_found_under_0_2_x(http_all):
    # The same read from a 0.2.1 plugin built with the same toolchain: NOT_FOUND.
    p = http_all("test=headers")
    with p.http_stream() as s:
        s.request_headers(REQUEST, True)
        assert s.request.headers["x-pwvm-echo-status"] == "1"


# One module, the same three reads under each ABI marker: request header "x-absent" (no such
# key), and from request trailers and response headers (no such map during request headers).
# Each read adds request header x-r<map>: <'0' + status><pointer: n(ull) s(et) u(ntouched)>
# <size: 0, x (other) or u(ntouched)>; the out-words are preset to 0xDEAD.
_READS = """(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-absent")
  (data (i32.const 32) "x-r0x-r1x-r2")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_{marker}"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func $read (param $map i32) (local $st i32) (local $p i32) (local $s i32)
    (i32.store (i32.const 64) (i32.const 0xDEAD))
    (i32.store (i32.const 68) (i32.const 0xDEAD))
    (local.set $st (call $get (local.get $map) (i32.const 16) (i32.const 8) (i32.const 64) (i32.const 68)))
    (local.set $p (i32.load (i32.const 64)))
    (local.set $s (i32.load (i32.const 68)))
    (i32.store8 (i32.const 80) (i32.add (i32.const 48) (local.get $st)))
    (i32.store8 (i32.const 81) (select (i32.const 117) (select (i32.const 110) (i32.const 115) (i32.eqz (local.get $p)))
                                      (i32.eq (local.get $p) (i32.const 0xDEAD))))
    (i32.store8 (i32.const 82) (select (i32.const 117) (select (i32.const 48) (i32.const 120) (i32.eqz (local.get $s)))
                                      (i32.eq (local.get $s) (i32.const 0xDEAD))))
    (drop (call $add (i32.const 0) (i32.add (i32.const 32) (i32.mul (local.get $map) (i32.const 4))) (i32.const 4)
                     (i32.const 80) (i32.const 3))))
  (func (export "proxy_on_request_headers") (param {params}) (result i32)
    (call $read (i32.const 0)) (call $read (i32.const 1)) (call $read (i32.const 2)) (i32.const 0)))"""


@pytest.mark.parametrize("abi, answer", [
    (pw.AbiVersion.V0_1_0, "0n0"),  # OK, pointer 0 and size 0 written
    (pw.AbiVersion.V0_2_0, "1uu"),  # NOT_FOUND, out-words untouched
    (pw.AbiVersion.V0_2_1, "1uu"),
])
def test_same_read_answers_by_abi_version(host, abi, answer):
    wat = _READS.format(marker=abi.marker.removeprefix("proxy_abi_version_"),
                        params="i32 i32" if abi is pw.AbiVersion.V0_1_0 else "i32 i32 i32")
    p = pw.Plugin(pw.PluginConfig(name=f"reads_{abi.value}"), wat, host=host)
    assert p.abi is abi
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE
        h = s.request.headers
        assert (h["x-r0"], h["x-r1"], h["x-r2"]) == (answer, answer, answer)


def test_unprovided_import_of_a_0_1_0_module_fails_at_load_naming_it(host):
    # An Emscripten-era module: pthread_equal is provided, emscripten_resize_heap is not (neither
    # by proxy-wasm-cpp-host): the load fails on that one, by name.
    wat = """(module
      (import "env" "pthread_equal" (func (param i32 i32) (result i32)))
      (import "env" "emscripten_resize_heap" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "proxy_abi_version_0_1_0"))
      (func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0)))"""
    with pytest.raises(pw.LinkError, match="env.emscripten_resize_heap") as e:
        pw.Plugin(pw.PluginConfig(), wat, host=host)
    assert (e.value.module, e.value.name) == ("env", "emscripten_resize_heap")


@pytest.mark.parametrize("abi", list(pw.AbiVersion))
def test_foreign_function_callback_is_0_2_x_only(host, abi):
    # proxy-wasm-cpp-host looks proxy_on_foreign_function up in 0.2.x modules only.
    wat = f"""(module
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (data (i32.const 16) "on_foreign_function")
      (func (export "{abi.marker}"))
      (func (export "proxy_on_foreign_function") (param i32 i32 i32)
        (drop (call $log (i32.const 2) (i32.const 16) (i32.const 19)))))"""
    p = pw.Plugin(pw.PluginConfig(name=f"ff_{abi.value}"), wat, host=host)
    if abi is pw.AbiVersion.V0_1_0:
        with pytest.raises(LookupError, match="ABI 0.2.x"):
            p.call_foreign_function(7, b"args")
        assert "on_foreign_function" not in p.logs
    else:
        p.call_foreign_function(7, b"args")
        assert "on_foreign_function" in p.logs
