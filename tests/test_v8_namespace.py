"""``v8@namespace``: a second copy of the V8 shim, libnode and V8 in its own linker namespace.

The two copies must really be separate (their own shim mapping, cffi table,
V8 flags), and must coexist with wasmtime (in-process and in a namespace):
all of them trapping through their own SIGSEGV handlers, chained, and calling
back into Python. The mixed runs happen in child processes, so a broken
handler chain (or a clobbered thread key) fails one test instead of killing
the run.
"""

from __future__ import annotations

import sys

import pytest

import proxywasm_vm as pw
from _helpers import TRAP_ROUNDS, engine_or_skip, loaded_copies, run_python


def test_namespace_copy_is_separate():
    ns = engine_or_skip("v8@namespace")
    inproc = engine_or_skip("v8")
    assert ns.name == "v8@namespace" and ns.backend.isolation == "namespace"
    assert inproc.name == "v8" and inproc.backend.isolation == "in-process"
    assert pw.get_backend("v8").namespace_variant() is ns.backend
    # Two cffi modules (two pointer tables) reaching two loaded copies of the shim.
    ffi_in = sys.modules["proxywasm_vm.backends.v8._ffi"]
    ffi_ns = sys.modules["proxywasm_vm.backends._v8_namespace._ffi"]
    assert ffi_in.lib is not ffi_ns.lib and not ffi_in.NAMESPACE and ffi_ns.NAMESPACE
    assert loaded_copies("libpwv8.so") == 2 and loaded_copies("libnode.so.") == 2
    # Objects of one copy never reach the other.
    m = pw.Module(ns, '(module (func (export "f") (result i32) i32.const 7))')
    assert pw.Instance(pw.Store(ns), m).exports.func("f")() == 7
    with pytest.raises(ValueError):
        pw.Instance(pw.Store(inproc), m)


def test_v8_flags_are_per_copy():
    """PWVM_V8_FLAGS is read when a copy starts: a flag given to one copy only changes that one."""
    engine_or_skip("v8@namespace")
    run_python("""
    import os
    import proxywasm_vm as pw
    WAT = '(module (memory 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))'
    def grow(name):
        e = pw.Engine(name)
        return pw.Instance(pw.Store(e), pw.Module(e, WAT)).exports.func("grow")(10)
    os.environ.pop("PWVM_V8_FLAGS", None)
    assert grow("v8") == 1
    os.environ["PWVM_V8_FLAGS"] = "--wasm-max-mem-pages=4"
    assert grow("v8@namespace") == -1  # capped at 4 pages in this copy only
    assert grow("v8") == 1
    print("ok")
    """)


MIX = """
import threading
order = {order!r}
engines = {{name: pw.Engine(name) for name in order}}

n = rounds({{name: trap_instance(e) for name, e in engines.items()}}, order, 0, {rounds})
# Short-lived threads, each with its own stores in every runtime, then exiting:
# each leaves the key slots and TLS of every copy behind it.
errors = []
def worker(k):
    try:
        rounds({{name: trap_instance(e) for name, e in engines.items()}}, order, k, 10)
    except BaseException as e:
        errors.append(e)
for k in range(4):
    t = threading.Thread(target=worker, args=(k,))
    t.start()
    t.join(120)
assert not errors, errors
print("traps", n)
print("ok")
"""


@pytest.mark.parametrize("order", [("v8", "v8@namespace", "wasmtime", "wasmtime@namespace"),
                                   ("wasmtime@namespace", "v8@namespace", "wasmtime", "v8")],
                         ids=["v8-first", "namespaces-first"])
def test_v8_copies_and_wasmtime_trap_and_call_back_interleaved(order):
    for name in order:
        engine_or_skip(name)
    out = run_python(TRAP_ROUNDS + MIX.format(order=order, rounds=150))
    assert f"traps {150 * len(order)}" in out


def test_no_namespace_left_is_a_clear_error():
    """With the namespace table full (wasmtime@namespace copies), v8@namespace is unavailable with
    the reason, every time it is asked for, and in-process V8 is unharmed."""
    engine_or_skip("v8@namespace")
    engine_or_skip("wasmtime@namespace")
    run_python("""
    import os, shutil, tempfile
    import proxywasm_vm as pw
    src = pw.get_backend("wasmtime").library()
    v8 = pw.Engine("v8")
    d = tempfile.mkdtemp()
    try:
        for i in range(20):
            p = os.path.join(d, str(i), "_libwasmtime.so")
            os.makedirs(os.path.dirname(p))
            shutil.copy(src, p)
            try:
                pw.Engine("wasmtime@namespace", options=(("library", p),))
            except pw.BackendUnavailable:
                break
    finally:
        shutil.rmtree(d)
    for _ in range(2):
        try:
            pw.Engine("v8@namespace")
        except pw.BackendUnavailable as e:
            assert e.backend == "v8@namespace" and "linker namespace" in e.reason, e
            assert "isolation='process'" in str(e), e
        else:
            raise AssertionError("v8@namespace loaded with no namespace left")
    inst = pw.Instance(pw.Store(v8), pw.Module(v8, '(module (func (export "f") (result i32) i32.const 7))'))
    assert inst.exports.func("f")() == 7
    print("ok")
    """)


KEYS_TAKEN = """
import ctypes, os, sys
import proxywasm_vm as pw
libc = ctypes.CDLL(None)
key = ctypes.c_uint()
while True:  # this process takes thread keys up to 31, as a big application may
    assert libc.pthread_key_create(ctypes.byref(key), None) == 0
    if key.value >= 31:
        break
try:
    pw.Engine("v8@namespace")
except pw.BackendUnavailable as e:
    assert "pthread keys 24-31" in str(e), e
    print("refused:", " ".join(str(e).split()))
else:
    raise AssertionError("v8@namespace loaded although its thread keys were taken")
v8 = pw.Engine("v8")
inst = pw.Instance(pw.Store(v8), pw.Module(v8, '(module (func (export "f") (result i32) i32.const 7))'))
assert inst.exports["f"]() == 7  # in-process V8 is not affected
print("ok")
"""


def test_thread_keys_in_use_refuse_a_namespace_copy():
    # A copy's libc numbers thread keys on its own, into slots each thread shares with this
    # libc: the copy gets 24-31, which this process must not be using (and then never will).
    engine_or_skip("v8")
    out = run_python(KEYS_TAKEN)
    assert "refused: " in out
