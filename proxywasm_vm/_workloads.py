"""Benchmark workloads shared by ``pwvm bench`` and the pytest-benchmark suites in ``bench/``.

Each workload prepares its state once (``setup``) and returns an operation:
a zero-argument callable plus how many unit operations one invocation performs
(a wasm loop that calls the host 100 times counts 100). Runners time the
callable and divide. The same workloads run on every backend, and on the
wasmtime-py high-level API as the external baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from ._engine import Engine
from ._func import Func
from ._instance import Instance
from ._linker import Linker
from ._module import Module, wat2wasm
from ._store import Store
from ._types import FuncType, ValType

__all__ = ["Operation", "Workload", "WORKLOADS", "BASELINES", "big_module"]

I32 = ValType.I32
HOST_LOOPS = 100
#: Python-side repetitions inside one operation, so the harness's own per-call
#: overhead (tens of ns) does not blur sub-microsecond costs.
INNER = range(100)


@dataclass
class Operation:
    """A prepared operation: ``run()`` performs ``units`` unit operations."""

    run: Callable[[], Any]
    units: int = 1
    keep: Any = None  # objects that must stay alive while ``run`` is timed


@dataclass(frozen=True)
class Workload:
    """A named measurement: ``setup(engine)`` returns the :class:`Operation` to time."""

    name: str
    unit: str
    description: str
    setup: Callable[[Engine], Operation]
    group: str = "embedding"


CALL_WAT = """
(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
"""

HOST_WAT = f"""
(module
  (import "env" "nop" (func $nop))
  (import "env" "read" (func $read (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{'x' * 100}")
  (func (export "call_nop") (local $i i32)
    (loop $l
      call $nop
      (local.tee $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (i32.const {HOST_LOOPS})))))
  (func (export "call_read") (local $i i32)
    (loop $l
      (call $read (i32.const 64) (i32.const 100))
      (local.tee $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (i32.const {HOST_LOOPS}))))))
"""

INSTANTIATE_WAT = """
(module
  (import "env" "log" (func (param i32 i32)))
  (import "env" "now" (func (result i64)))
  (memory (export "memory") 2)
  (global $g (mut i32) (i32.const 0))
  (table 4 funcref)
  (func (export "run") (param i32) (result i32) local.get 0 global.set $g global.get $g)
  (data (i32.const 0) "hello world"))
"""


@lru_cache(maxsize=None)
def _wasm(wat: str) -> bytes:
    return wat2wasm(wat)


@lru_cache(maxsize=1)
def big_module(target_bytes: int = 500_000) -> bytes:
    """A valid ~500 KB module of many small arithmetic functions (a compile-time workload)."""
    body = " ".join(["local.get 0 i32.const 7 i32.mul local.get 1 i32.xor local.set 0"] * 24)
    n = max(1, target_bytes // 230)
    funcs = "\n".join(
        f'(func (export "f{i}") (param i32 i32) (result i32) {body} local.get 0)' for i in range(n)
    )
    return wat2wasm(f"(module {funcs})")


# ---- our interface ------------------------------------------------------------

def _call(engine: Engine) -> Operation:
    inst = Instance(Store(engine), Module(engine, _wasm(CALL_WAT)))
    add = inst.exports.func("add")

    def run() -> None:
        for _ in INNER:
            add(1, 2)

    return Operation(run, len(INNER), keep=inst)


def _host_instance(engine: Engine) -> Instance:
    store = Store(engine)

    def read(caller: Any, ptr: int, n: int) -> None:
        caller.memory.read(ptr, n)

    imports = {"env": {
        "nop": Func(store, FuncType(), lambda: None),
        "read": Func(store, FuncType([I32, I32]), read, access_caller=True),
    }}
    return Instance(store, Module(engine, _wasm(HOST_WAT)), imports)


def _host_call(engine: Engine) -> Operation:
    inst = _host_instance(engine)
    return Operation(inst.exports.func("call_nop"), HOST_LOOPS, keep=inst)


def _host_read(engine: Engine) -> Operation:
    inst = _host_instance(engine)
    return Operation(inst.exports.func("call_read"), HOST_LOOPS, keep=inst)


def _mem_instance(engine: Engine) -> Any:
    inst = Instance(Store(engine), Module(engine, _wasm(INSTANTIATE_WAT.replace('(import "env" "log" (func (param i32 i32)))\n  (import "env" "now" (func (result i64)))', ""))))
    return inst, inst.exports.memory()


def _mem_write(engine: Engine) -> Operation:
    inst, mem = _mem_instance(engine)
    data = bytes(range(256)) * 4
    write = mem.write

    def run() -> None:
        for _ in INNER:
            write(4096, data)

    return Operation(run, len(INNER), keep=inst)


def _mem_read(engine: Engine) -> Operation:
    inst, mem = _mem_instance(engine)
    read = mem.read

    def run() -> None:
        for _ in INNER:
            read(4096, 1024)

    return Operation(run, len(INNER), keep=inst)


def _instantiate(engine: Engine) -> Operation:
    module = Module(engine, _wasm(INSTANTIATE_WAT))
    linker = Linker(engine)
    linker.define_func("env", "log", FuncType([I32, I32]), lambda p, n: None)
    linker.define_func("env", "now", FuncType([], [ValType.I64]), lambda: 0)
    linker.instantiate(Store(engine), module)  # warm the per-module pre-linking

    def run() -> Any:
        return linker.instantiate(Store(engine), module)

    return Operation(run, keep=(module, linker))


def _compile(engine: Engine) -> Operation:
    wasm = big_module()
    return Operation(lambda: Module(engine, wasm))


def _cached_load(engine: Engine) -> Operation:
    wasm = big_module()
    Module.cached(engine, wasm)  # fill the cache once
    return Operation(lambda: Module.cached(engine, wasm))


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload("call", "call", "Python -> wasm call of an i32 add export", _call),
    Workload("host_call", "call", "wasm -> Python call of a no-op host function", _host_call),
    Workload("host_read_100", "call", "host function reading 100 bytes of guest memory via the caller", _host_read),
    Workload("memory_write_1k", "op", "1 KiB write into linear memory from Python", _mem_write),
    Workload("memory_read_1k", "op", "1 KiB read from linear memory into Python bytes", _mem_read),
    Workload("instantiate", "vm", "new store + instance of a pre-linked compiled module", _instantiate, "startup"),
    Workload("compile_500k", "module", "compile a ~500 KB module", _compile, "startup"),
    Workload("cached_load_500k", "module", "load the same module from the compiled-module cache", _cached_load,
             "startup"),
]}


# ---- the wasmtime-py high-level API, as the external baseline -----------------

def _wtpy() -> Any:
    import wasmtime

    return wasmtime


def _b_call() -> Operation:
    wt = _wtpy()
    store = wt.Store()
    inst = wt.Instance(store, wt.Module(store.engine, _wasm(CALL_WAT)), [])
    add = inst.exports(store)["add"]

    def run() -> None:
        for _ in INNER:
            add(store, 1, 2)

    return Operation(run, len(INNER), keep=inst)


def _b_host(export: str) -> Operation:
    wt = _wtpy()
    store = wt.Store()
    i32 = wt.ValType.i32()

    def read(caller: Any, ptr: int, n: int) -> None:
        caller["memory"].read(caller, ptr, ptr + n)

    nop = wt.Func(store, wt.FuncType([], []), lambda: None)
    rd = wt.Func(store, wt.FuncType([i32, i32], []), read, access_caller=True)
    inst = wt.Instance(store, wt.Module(store.engine, _wasm(HOST_WAT)), [nop, rd])
    fn = inst.exports(store)[export]
    return Operation(lambda: fn(store), HOST_LOOPS, keep=inst)


def _b_mem_write() -> Operation:
    wt = _wtpy()
    store = wt.Store()
    mem = wt.Memory(store, wt.MemoryType(wt.Limits(2, None)))
    data = bytes(range(256)) * 4
    write = mem.write

    def run() -> None:
        for _ in INNER:
            write(store, data, 4096)

    return Operation(run, len(INNER), keep=mem)


def _b_mem_read() -> Operation:
    wt = _wtpy()
    store = wt.Store()
    mem = wt.Memory(store, wt.MemoryType(wt.Limits(2, None)))
    read = mem.read

    def run() -> None:
        for _ in INNER:
            read(store, 4096, 4096 + 1024)

    return Operation(run, len(INNER), keep=mem)


def _b_instantiate() -> Operation:
    wt = _wtpy()
    engine = wt.Engine()
    module = wt.Module(engine, _wasm(INSTANTIATE_WAT))
    linker = wt.Linker(engine)
    i32 = wt.ValType.i32()
    linker.define_func("env", "log", wt.FuncType([i32, i32], []), lambda p, n: None)
    linker.define_func("env", "now", wt.FuncType([], [wt.ValType.i64()]), lambda: 0)
    return Operation(lambda: linker.instantiate(wt.Store(engine), module), keep=(module, linker))


BASELINES: dict[str, Callable[[], Operation]] = {
    "call": _b_call,
    "host_call": lambda: _b_host("call_nop"),
    "host_read_100": lambda: _b_host("call_read"),
    "memory_write_1k": _b_mem_write,
    "memory_read_1k": _b_mem_read,
    "instantiate": _b_instantiate,
}
"""wasmtime-py high-level API versions of the workloads it can express."""
