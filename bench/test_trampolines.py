"""Each generated trampoline against its plain-Python equivalent (``bench/_plain.py``).

Generated code (``proxywasm_vm._fastcall.compile_generated``) stays on a hot path only
while it pays: these measure the same workload through the generated trampoline and
through the plain one, in alternating rounds (``paired_min``), and report the saving
per call (reported, never asserted: see ``conftest.target``).

- call into wasm (``Func.__call__`` of integer signatures, wasmtime and V8): ``call``;
- host call (the backend's adapter between its shim and the host function, V8; the wasmtime
  backend has none: its per-arity entries call the host function itself): ``host_call``;
- the Proxy-Wasm host-function guard (finds the VM, masks i32 arguments, maps errors to
  statuses): per call, and in whole request cycles (``request_c``, ``request_gcore``).
"""

from __future__ import annotations

import pytest

from proxywasm_vm import Engine, Instance, Module, Store
from proxywasm_vm._proxywasm import _hostcalls
from proxywasm_vm._types import FuncType, ValType
from proxywasm_vm._workloads import CALL_WAT, HOST_LOOPS, INNER, PLUGINS, Operation, _host_instance, _wasm, \
    load_plugin, plugin_path, request_cycle

from ._plain import plain_call, plain_guard, plain_host_adapters
from .conftest import backends, engine_for, paired_min, target

GENERATED = [b for b in ("wasmtime", "v8") if b in backends()]
I32 = ValType.I32
#: the generated trampoline "pays" when it saves at least this share of the plain one's time
PAYS = 0.05


def _paired(ops: list[Operation]) -> list[float]:
    """``paired_min`` in many short rounds: on a shared machine a short round is the likelier
    to run undisturbed, and the minimum of each side is what is compared."""
    return paired_min(ops, rounds=101, target=0.001)


def _report(what: str, generated: float, plain: float) -> None:
    saved = plain - generated
    share = saved / plain
    line = (f"{what}: generated {generated * 1e9:.0f} ns, plain {plain * 1e9:.0f} ns per unit: "
            f"saves {saved * 1e9:.0f} ns ({share:.0%})")
    print("\n" + line)
    target(f"generated pays: {what}", share >= PAYS, f"saves {saved * 1e9:.0f} ns ({share:.0%})",
           f">= {PAYS:.0%} of the plain code's time")


def _calls(f) -> Operation:
    def run() -> None:
        for _ in INNER:
            f(1, 2)

    return Operation(run, len(INNER))


@pytest.mark.parametrize("backend", GENERATED)
def test_call_trampoline(backend):
    engine = engine_for(backend)
    inst = Instance(Store(engine), Module(engine, _wasm(CALL_WAT)))
    generated = inst.exports.func("add")
    plain = plain_call(generated)
    assert generated(2, 3) == plain(2, 3) == 5
    g, p = _paired([_calls(generated), _calls(plain)])
    _report(f"{backend} call into wasm (i32, i32) -> i32", g, p)


@pytest.mark.parametrize("backend", [b for b in GENERATED if b == "v8"])
def test_host_call_trampoline(backend):
    engine = engine_for(backend)
    generated = _host_instance(engine)
    with plain_host_adapters(backend):
        plain = _host_instance(engine)
    ops = [Operation(i.exports.func("call_nop"), HOST_LOOPS, keep=i) for i in (generated, plain)]
    g, p = _paired(ops)
    _report(f"{backend} host call () -> ()", g, p)


def test_guard_per_call():
    """The guard alone, called as the backend's adapter calls it: five i32 arguments, an i32 status."""
    ty = FuncType([I32] * 5, [I32])

    def impl(vm, t, kp, ks, vp, vs):  # the shape of proxy_add_header_map_value; its work is not timed
        return 0

    previous = _hostcalls.CURRENT.vm
    _hostcalls.CURRENT.vm = object()
    try:
        ops = []
        for make in (_hostcalls._guard, plain_guard):
            host = make("env", "proxy_add_header_map_value", ty, impl, 6, False)

            def run(host=host) -> None:
                for _ in INNER:
                    host(1, 2, 3, 4, 5)

            ops.append(Operation(run, len(INNER)))
        g, p = _paired(ops)
    finally:
        _hostcalls.CURRENT.vm = previous
    _report("Proxy-Wasm host-function guard (i32 x5) -> i32, per call", g, p)


@pytest.mark.parametrize("backend", GENERATED)
@pytest.mark.parametrize("which", ["c", "gcore"])
def test_guard_per_request(backend, which, monkeypatch):
    """The same in whole request cycles (request_c makes 2 host calls, request_gcore 4): the share
    of a request; two plugins on two engines differ by a few % on their own, so this is context."""
    stem, root = PLUGINS[which]
    generated = load_plugin(engine_for(backend), plugin_path(stem), root)
    with monkeypatch.context() as m:
        m.setattr(_hostcalls, "_guard", plain_guard)
        plain = load_plugin(Engine(backend), plugin_path(stem), root)  # its own engine: its own linker
    ops = [Operation(request_cycle(p), keep=p) for p in (generated, plain)]
    g, p = _paired(ops)
    _report(f"{backend} host-function guard, request_{which} (whole request)", g, p)
    generated.close()
    plain.close()
