"""Generated trampolines have a real name in tracebacks: their file name says what they are,
their lines are shown (registered in linecache), and the host function they call appears
with its own file and line (it is called, never rewritten)."""

from __future__ import annotations

import inspect
import traceback

import pytest

import proxywasm_vm as pw
from proxywasm_vm._module import wat2wasm
from proxywasm_vm._proxywasm import _hostcalls
from proxywasm_vm._types import FuncType, ValType

I32 = ValType.I32

#: the in-process backends whose calls into wasm go through generated trampolines (V8's host
#: calls too; wasmtime's host-call entries are written out per arity)
GENERATED = ["wasmtime", "v8"]


def _engine(name: str) -> pw.Engine:
    try:
        return pw.Engine(name)
    except pw.BackendUnavailable as e:
        pytest.skip(str(e))


def _boom(x: int) -> int:
    raise RuntimeError(f"boom {x}")


_BOOM_LINE = inspect.getsourcelines(_boom)[1] + 1  # the ``raise`` line


@pytest.mark.parametrize("backend", GENERATED)
def test_a_host_function_raising_through_a_generated_trampoline(backend):
    engine = _engine(backend)
    store = pw.Store(engine)
    module = pw.Module(engine, wat2wasm('(module (import "env" "boom" (func $b (param i32) (result i32)))'
                                        ' (func (export "run") (result i32) (call $b (i32.const 7))))'))
    inst = pw.Instance(store, module, {"env": {"boom": pw.Func(store, FuncType([I32], [I32]), _boom)}})
    with pytest.raises(RuntimeError, match="boom 7") as info:
        inst.exports.func("run")()
    text = "".join(traceback.format_exception(info.value))
    frames = traceback.extract_tb(info.value.__traceback__)
    files = [f.filename for f in frames]
    # the call into wasm and the host call both went through named generated code ...
    assert any(f.startswith("<pwvm-generated call trampoline") and "FuncType(() -> (i32))" in f for f in files), text
    if backend == "v8":
        host = [f for f in frames if f.filename.startswith(f"<pwvm-generated host-call trampoline ({backend})")]
        assert host and host[0].line == "r = fn(a0)", text  # its generated line is shown
    else:  # wasmtime's host-call entries are generated per arity and call the function itself
        host = [f for f in frames if f.name == "pwvm_py_host1"]
        assert host and host[0].filename == "<pwvm-generated wasmtime host-call entry pwvm_py_host1>", text
        assert host[0].line == "r = HOSTS[hid](a0)", text
    # ... and the host function itself is named with its real file and line
    last = frames[-1]
    assert (last.filename, last.lineno, last.name) == (__file__, _BOOM_LINE, "_boom"), text


_ABORTING = """(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $abort (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 3))
    (i32.const 0)))"""


@pytest.mark.parametrize("backend", GENERATED)
def test_a_proxy_wasm_host_function_raising_through_its_guard(backend):
    p = pw.Plugin(pw.PluginConfig(name="tb"), _ABORTING, engine=_engine(backend),
                  host=pw.ProxyWasmHost(logger=pw.MemoryLogger()))
    with p.http_stream() as s:
        s.request_headers([(":path", "/")])
    assert isinstance(s.error, pw.PluginExit)
    cause = s.error.cause
    frames = traceback.extract_tb(cause.__traceback__)
    text = "".join(traceback.format_exception(cause))
    guard = [f for f in frames if f.filename == "<pwvm-generated host-function guard for "
                                                 "FuncType((i32, i32, i32, i32) -> ())>"]
    assert guard and guard[0].line.startswith("return fn(vm, a0 & 4294967295"), text
    # the real env.abort, not a copy rebuilt from its source: its own file and line
    src, first = inspect.getsourcelines(_hostcalls.env_abort)
    raise_line = first + next(i for i, line in enumerate(src) if "raise _GuestExit" in line)
    last = frames[-1]
    assert (last.filename, last.lineno, last.name) == (_hostcalls.__file__, raise_line, "env_abort"), text
    p.close()
