"""Several runtimes in one process: wasmtime in-process, a second wasmtime copy in its
own linker namespace, and V8, all trapping and calling back into Python, interleaved."""

from __future__ import annotations

import pytest

import proxywasm_vm as pw
from proxywasm_vm import FuncType, Trap, TrapCode, ValType

from _helpers import engine_or_skip, in_ci, loaded_copies

I32 = ValType.I32

WAT = """
(module
  (import "env" "cb" (func $cb (param i32) (result i32)))
  (memory 1)
  (func (export "call") (param i32) (result i32) (call $cb (local.get 0)))
  (func (export "unreachable") unreachable)
  (func (export "oob") (result i32) (i32.load (i32.const 70000)))
  (func $rec (export "recurse") (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1)))))
"""


def _instance(engine: pw.Engine) -> pw.Instance:
    store = pw.Store(engine)
    cb = pw.Func(store, FuncType([I32], [I32]), lambda x: x * 2)
    return pw.Instance(store, pw.Module(engine, WAT), {"env": {"cb": cb}})


def test_namespace_engine_is_a_separate_copy_of_the_library():
    ns = engine_or_skip("wasmtime@namespace")
    inproc = engine_or_skip("wasmtime")
    assert ns.backend.isolation == "namespace" and inproc.backend.isolation == "in-process"
    assert loaded_copies("_libwasmtime.so") >= 2
    # Objects of one copy never reach the other: modules are per engine.
    m = pw.Module(ns, WAT)
    with pytest.raises(ValueError):
        pw.Instance(pw.Store(inproc), m, {})


@pytest.mark.parametrize("rounds", [300])
def test_runtimes_trap_and_call_back_interleaved(rounds):
    engines = [engine_or_skip("wasmtime"), engine_or_skip("wasmtime@namespace")]
    try:
        engines.append(pw.Engine("v8"))
    except pw.BackendUnavailable:
        if in_ci():
            raise
    instances = [_instance(e) for e in engines]
    expected = {"unreachable": TrapCode.UNREACHABLE, "oob": TrapCode.MEMORY_OUT_OF_BOUNDS,
                "recurse": TrapCode.STACK_OVERFLOW}
    kinds = list(expected)
    for i in range(rounds):
        inst = instances[i % len(instances)]
        kind = kinds[(i // len(instances)) % len(kinds)]
        with pytest.raises(Trap) as e:
            fn = inst.exports.func(kind)
            fn(0) if kind == "recurse" else fn()
        assert e.value.code is expected[kind], (inst.store.engine.name, kind, e.value)
        assert inst.exports.func("call")(i) == 2 * i


NS_CAP_SCRIPT = r"""
import os, shutil, sys, tempfile
import proxywasm_vm as pw
src = pw.get_backend("wasmtime").library()
first = pw.Engine("wasmtime@namespace")
d = tempfile.mkdtemp()
loaded = 1
for i in range(20):
    p = os.path.join(d, str(i), "_libwasmtime.so")
    os.makedirs(os.path.dirname(p))
    shutil.copy(src, p)
    try:
        e = pw.Engine("wasmtime@namespace", options=(("library", p),))
    except pw.BackendUnavailable as ex:
        # The cap is reported, and every copy already loaded keeps working.
        inst = pw.Instance(pw.Store(first), pw.Module(first, '(module (func (export "f") (result i32) i32.const 7))'))
        print("CAP", loaded, inst.exports.func("f")(), str(ex).replace("\n", " "))
        shutil.rmtree(d)
        sys.exit(0)
    loaded += 1
print("NOCAP", loaded)
"""


def test_namespace_cap_is_a_clear_error_and_harms_nothing():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", NS_CAP_SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    word, loaded, value, message = out.stdout.split(" ", 3)
    assert word == "CAP" and int(loaded) >= 4 and value == "7"
    assert "linker namespace" in message and "isolation='process'" in message


@pytest.mark.parametrize("name", ["wasmtime@namespace", "v8@namespace"])
def test_a_namespace_copy_survives_this_process_growing_its_environment(name):
    # The copy's libc started with this process's environ array; setenv() here moves and frees
    # it when it grows (pytest and monkeypatch add variables after a runtime was loaded), and the
    # copy's next getenv() (Rust's std reads RUST_MIN_STACK when wasmtime spawns its first
    # compile thread) read freed memory. Each copy now keeps an array of its own.
    from _helpers import load_backend, run_python

    load_backend(name)
    out = run_python(f"""
import os
import proxywasm_vm as pw
os.environ["PWVM_BEFORE_LOAD"] = "1"     # this process's environ is now a heap array
engine = pw.Engine({name!r})
for i in range(300):                     # grown (moved, the old array freed) ...
    os.environ[f"PWVM_GROWN_{{i}}"] = "x" * 64
junk = [bytes([i % 251]) * 24 for i in range(20000)]  # ... and its memory reused
module = pw.Module(engine, {WAT!r})      # the copy's first compile
store = pw.Store(engine)
cb = pw.Func(store, pw.FuncType([pw.ValType.I32], [pw.ValType.I32]), lambda x: x + 1)
assert pw.Instance(store, module, {{"env": {{"cb": cb}}}}).exports["call"](41) == 42
print("ok")
""")
    assert out.strip().splitlines()[-1] == "ok"
