"""Property tests of every host function: random pointers, sizes and ids, on every backend.

A trampoline module (made from ``HOST_FUNCTIONS``, so it never lags behind the host) imports
every host function and exports one function per import that forwards its arguments. During
a request, the test calls these exports with arguments of its choice, in the stream's context
(as a plugin callback would), and checks that:

- the host answers every call with a valid status (``proxy_*``: a :class:`Status`; WASI: an errno),
  never an exception, a crash or a hang, and the VM is not marked failed;
- the stream still completes afterwards (end of both directions, ``close()``), and the next one works.

Two sources of cases: a committed regression corpus (``hostcall_corpus.json``: every host
function with edge arguments, plus cases found before; add what a failure prints), and
hypothesis with random sequences of calls. CI loads the derandomized ``ci`` profile
(``tests/conftest.py``), so a CI run is reproducible; examples per backend are kept modest.
The first runner (``Fuzz``) keeps the host in this process (``host_here``) to reach the VM's
exports on every engine. The second (``ScriptFuzz``) hands the calls to the plugin itself as a
script in the request body, which its ``proxy_on_request_body`` plays: so on ``@process``
backends the host functions run in the worker's host, as plugins normally use them there.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm._proxywasm._hostcalls import HOST_FUNCTIONS

from .conftest import REQUEST

_SKIP = ("proc_exit", "proc_raise", "abort", "seed")  # end or unwind the guest by design
_KEYS = {f"{m}.{n}": (m, n) for (m, n) in HOST_FUNCTIONS if n not in _SKIP}
_NAMES = sorted(_KEYS)
CORPUS = json.loads((Path(__file__).parent / "hostcall_corpus.json").read_text())["cases"]
_STATUSES = {int(s) for s in pw.Status}


def _trampolines() -> str:
    """A module importing every host function, with an export per function forwarding its arguments."""
    imports, exports = [], []
    for i, ((mod, name), (ty, _fn, _err)) in enumerate(sorted(HOST_FUNCTIONS.items())):
        if name in _SKIP:
            continue
        params = " ".join(v.value for v in ty.params)
        res = " ".join(v.value for v in ty.results)
        sig = (f"(param {params})" if params else "") + (f" (result {res})" if res else "")
        imports.append(f'(import "{mod}" "{name}" (func $f{i} {sig}))')
        gets = " ".join(f"(local.get {j})" for j in range(len(ty.params)))
        exports.append(f'(func (export "{mod}.{name}") {sig} (call $f{i} {gets}))')
    return f"""(module {' '.join(imports)}
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 32768))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
        (local.set $p (global.get $heap))
        (if (i32.gt_u (local.get $n) (i32.const 16384)) (then (return (i32.const 0))))
        (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
        (if (i32.gt_u (global.get $heap) (i32.const 65000)) (then (global.set $heap (i32.const 32768))))
        (local.get $p))
      {' '.join(exports)})"""


class Fuzz:
    """The trampoline plugin on one host; :meth:`run` makes calls during one request."""

    def __init__(self, host: pw.ProxyWasmHost) -> None:
        self.host = host
        host.http = pw.CallbackHttpDispatcher(lambda r: (200, {}, b"called back"))
        self.plugin = pw.Plugin(pw.PluginConfig(name="fuzz", vm_id="fuzz", configuration="c=1"), _trampolines(),
                                host=host)
        self.calls = 0

    def run(self, calls: list[tuple[str, list[int]]]) -> list[Any]:
        s = self.plugin.http_stream()
        s.request_headers(REQUEST)
        s.request_body(b"body bytes")
        vm, ctx = s._vm, s._ctx
        vm.memory.write(0, bytes(range(256)) * 64)
        out = []
        for fname, args in calls:
            key = _KEYS[fname]
            ty = HOST_FUNCTIONS[key][0]
            assert len(args) == len(ty.params), (fname, args)
            raw = [a - (1 << 32) if t is pw.ValType.I32 and a >= 1 << 31 else a for a, t in zip(args, ty.params)]
            r = vm.call_in(ctx, key[1], vm.instance.exports[fname], *raw)  # must not raise
            self.calls += 1
            if ty.results:
                r &= 0xFFFFFFFF
                if key[0] == "env":
                    assert r in _STATUSES, (fname, args, r)
                else:
                    assert r < 100, (fname, args, r)  # a WASI errno
            assert vm.failed is None, (fname, args, vm.failed)
            out.append(r)
        # the stream still completes: both directions end, then done/log/delete
        s.request_body(b"", True)
        s.response_headers({":status": "200"}, True)
        s.close()
        self.host.poll()  # callout responses and queue events for a module without callbacks
        assert s.closed and s.error is None and vm.failed is None, (calls, s.error)
        return out


@pytest.fixture
def fuzz(host_here: None, host: pw.ProxyWasmHost) -> Fuzz:
    return Fuzz(host)


def test_corpus_names_every_host_function():
    missing = set(_NAMES) - {c["fn"] for c in CORPUS}
    assert not missing, f"add cases for {sorted(missing)} to hostcall_corpus.json"
    assert all(c["fn"] in _KEYS and c.get("why") for c in CORPUS)


def test_corpus(fuzz):
    for i in range(0, len(CORPUS), 12):  # a dozen calls per request
        fuzz.run([(c["fn"], c["args"]) for c in CORPUS[i:i + 12]])
    with fuzz.plugin.http_stream() as s:  # and the plugin still serves requests
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE


_u32 = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 16, 255, 1024, 32768, 65532, 65535, 65536, 0x7FFFFFFF,
                                  0x80000000, 0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFF]),
                 st.integers(0, 16),  # ids: contexts, tokens, metrics, queues, types
                 st.integers(0, 0xFFFFFFFF))
_i64 = st.one_of(st.sampled_from([0, 1, -1, 2**63 - 1, -2**63]), st.integers(-2**63, 2**63 - 1))


def _call(fname: str) -> st.SearchStrategy:
    ty = HOST_FUNCTIONS[_KEYS[fname]][0]
    return st.tuples(st.just(fname), st.tuples(*[_i64 if t is pw.ValType.I64 else _u32 for t in ty.params])
                     .map(list))


# -- the calls played by the plugin itself ---------------------------------------------------------

_FNS = [(f"{m}.{n}", HOST_FUNCTIONS[(m, n)][0]) for (m, n) in sorted(HOST_FUNCTIONS) if n not in _SKIP]
_INDEX = {name: i for i, (name, _ty) in enumerate(_FNS)}
_MAX_ARGS = max(len(ty.params) for _n, ty in _FNS)
_RECORD = struct.Struct("<I%dQ" % _MAX_ARGS)  # function index, then every argument as a u64 slot


def _script_module() -> str:
    """A plugin whose request body is a script of host calls (:data:`_RECORD` each) that it makes in
    ``proxy_on_request_body``. Each answer is checked in the guest (a status <= 12 for ``env``,
    an errno < 100 for WASI) and the first bad one kept in globals, out of reach of the calls'
    random pointers; at the end it stores ``(calls made, bad function or -1, its answer, the call's
    position)`` in shared data under the key ``fzr``."""
    imports, cases = [], []
    for i, (name, ty) in enumerate(_FNS):
        mod, fn = name.split(".", 1)
        params = " ".join(v.value for v in ty.params)
        res = " ".join(v.value for v in ty.results)
        sig = (f"(param {params})" if params else "") + (f" (result {res})" if res else "")
        imports.append(f'(import "{mod}" "{fn}" (func $f{i} {sig}))')
        args = " ".join(
            (f"(i64.load offset={8 * j} (local.get $a))" if t is pw.ValType.I64
             else f"(i32.wrap_i64 (i64.load offset={8 * j} (local.get $a)))") for j, t in enumerate(ty.params))
        call = f"(call $f{i} {args})"
        limit = 12 if mod == "env" else 99
        body = f"(local.set $r {call})" if ty.results else f"{call} (local.set $r (i32.const 0))"
        cases.append(f"{body} (if (i32.gt_u (local.get $r) (i32.const {limit})) (then (call $bad (local.get $i) "
                     f"(local.get $r)))) (return)")
    n = len(_FNS)
    labels = " ".join(f"$c{i}" for i in range(n))
    dispatch = f"(block $c{n - 1} " + "".join(f"(block $c{i} " for i in reversed(range(n - 1)))
    dispatch += f"(br_table {labels} $c{n - 1} (local.get $i))"
    for i in range(n):
        dispatch += f") {cases[i]} "
    return f"""(module {' '.join(imports)}
      (memory (export "memory") 3)
      (global $heap (mut i32) (i32.const 32768))
      (global $bad_i (mut i32) (i32.const -1))
      (global $bad_r (mut i32) (i32.const 0))
      (global $bad_k (mut i32) (i32.const -1))
      (func (export "proxy_abi_version_0_2_1"))
      ;; allocations in [32768, 131072): the script is copied to page 2, above them
      (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
        (if (i32.gt_u (local.get $n) (i32.const 65536)) (then (return (i32.const 0))))
        (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072))
          (then (global.set $heap (i32.const 32768))))
        (local.set $p (global.get $heap))
        (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
        (local.get $p))
      (func $bad (param $i i32) (param $r i32)
        (if (i32.lt_s (global.get $bad_i) (i32.const 0)) (then (global.set $bad_i (local.get $i))
                                                               (global.set $bad_r (local.get $r)))))
      (func $one (param $i i32) (param $a i32) (local $r i32)
        {dispatch})
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
      (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
      (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
        (local $p i32) (local $n i32) (local $k i32) (local $done i32)
        (global.set $bad_i (i32.const -1))
        (global.set $bad_k (i32.const -1))
        (i32.store (i32.const 256) (i32.const 0)) (i32.store (i32.const 260) (i32.const 0))
        (drop (call $f{_INDEX['env.proxy_get_buffer_bytes']} (i32.const 0) (i32.const 0) (local.get $size)
                                                          (i32.const 256) (i32.const 260)))
        ;; the script goes to page 2, out of reach of small random pointers
        (memory.copy (i32.const 131072) (i32.load (i32.const 256)) (i32.load (i32.const 260)))
        (local.set $n (i32.div_u (i32.load (i32.const 260)) (i32.const {_RECORD.size})))
        (local.set $p (i32.const 131072))
        (block $end (loop $next
          (br_if $end (i32.ge_u (local.get $k) (local.get $n)))
          (call $one (i32.rem_u (i32.load (local.get $p)) (i32.const {n})) (i32.add (local.get $p) (i32.const 4)))
          (if (i32.and (i32.ge_s (global.get $bad_i) (i32.const 0)) (i32.lt_s (global.get $bad_k) (i32.const 0)))
            (then (global.set $bad_k (local.get $k))))
          (local.set $done (i32.add (local.get $done) (i32.const 1)))
          (local.set $p (i32.add (local.get $p) (i32.const {_RECORD.size})))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $next)))
        ;; report: key "fzr" at 1024, value (done, bad index, bad answer) at 1032
        (i32.store (i32.const 1024) (i32.const 0x727a66))
        (i32.store (i32.const 1032) (local.get $done))
        (i32.store (i32.const 1036) (global.get $bad_i))
        (i32.store (i32.const 1040) (global.get $bad_r))
        (i32.store (i32.const 1044) (global.get $bad_k))
        (drop (call $f{_INDEX['env.proxy_set_shared_data']} (i32.const 1024) (i32.const 3) (i32.const 1032)
                                                           (i32.const 16) (i32.const 0)))
        (i32.const 0))
      (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
      (func (export "proxy_on_log") (param i32))
      (func (export "proxy_on_delete") (param i32)))"""


class ScriptFuzz:
    """The script plugin on one host (in the worker on ``@process`` backends); :meth:`run` plays calls."""

    def __init__(self, host: pw.ProxyWasmHost) -> None:
        self.host = host
        host.http = pw.CallbackHttpDispatcher(lambda r: (200, {}, b"called back"))
        self.plugin = pw.Plugin(pw.PluginConfig(name="sfuzz", vm_id="sfuzz"), _script_module(), host=host)

    def run(self, calls: list[tuple[str, list[int]]]) -> None:
        script = b"".join(_RECORD.pack(_INDEX[f], *[a & 0xFFFFFFFFFFFFFFFF for a in args],
                                       *[0] * (_MAX_ARGS - len(args))) for f, args in calls)
        s = self.plugin.http_stream()
        s.request_headers(REQUEST)
        s.request_body(script, True)
        s.response_headers({":status": "200"}, True)
        s.close()
        self.host.poll()
        got = self.host.shared_data.get("sfuzz", b"fzr")
        assert got is not None, "the plugin did not report"
        done, bad, answer, at = struct.unpack("<IiIi", got[0])
        assert done == len(calls), (done, calls)
        assert bad < 0, f"call #{at} {calls[at]} answered {answer}"
        assert s.closed and s.error is None and not self.plugin.failed, (calls, s.error)


@pytest.fixture
def script_fuzz(host: pw.ProxyWasmHost) -> ScriptFuzz:
    return ScriptFuzz(host)


def test_corpus_played_by_the_plugin(script_fuzz):
    for i in range(0, len(CORPUS), 50):
        script_fuzz.run([(c["fn"], c["args"]) for c in CORPUS[i:i + 50]])


_CALLS = st.lists(st.sampled_from(_NAMES).flatmap(_call), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=_CALLS)
@example(calls=[("env.proxy_set_buffer_bytes", [0, 0, 0xFFFFFFFF, 0, 16]),
                ("env.proxy_get_buffer_bytes", [0, 0, 0xFFFFFFFF, 64, 68])])
@example(calls=[("env.proxy_send_local_response", [500, 0, 4, 0, 16, 0, 0, 0xFFFFFFFF]),
                ("env.proxy_continue_stream", [0]), ("env.proxy_close_stream", [1])])
def test_random_host_calls(fuzz, calls):
    fuzz.run(calls)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=_CALLS)
def test_random_host_calls_played_by_the_plugin(script_fuzz, calls):
    script_fuzz.run(calls)
