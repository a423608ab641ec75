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
The host runs in this process (``host_here``): the host functions are the same code in a
worker host, and this way the test reaches the VM's exports on the worker engines too.
"""

from __future__ import annotations

import json
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


_CALLS = st.lists(st.sampled_from(_NAMES).flatmap(_call), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=_CALLS)
@example(calls=[("env.proxy_set_buffer_bytes", [0, 0, 0xFFFFFFFF, 0, 16]),
                ("env.proxy_get_buffer_bytes", [0, 0, 0xFFFFFFFF, 64, 68])])
@example(calls=[("env.proxy_send_local_response", [500, 0, 4, 0, 16, 0, 0, 0xFFFFFFFF]),
                ("env.proxy_continue_stream", [0]), ("env.proxy_close_stream", [1])])
def test_random_host_calls(fuzz, calls):
    fuzz.run(calls)
