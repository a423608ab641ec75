"""The plain-Python equivalents of the generated trampolines, for ``test_trampolines``.

Each generated trampoline (compiled by ``proxywasm_vm._fastcall.compile_generated``)
is a function written out for one signature shape: exact arity, constants baked in.
Its plain equivalent is one function for every shape, taking ``*args``: what the
code would be without generation. The benchmark runs the same workload through
both; a generated trampoline stays only while it pays.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from proxywasm_vm._fastcall import IntFuncMixin
from proxywasm_vm._proxywasm import _hostcalls
from proxywasm_vm._types import FuncType, ValType

I32 = ValType.I32
_PAD = tuple((0,) * (6 - n) for n in range(7))


# ---- calls into wasm (Func.__call__ of integer signatures) ---------------------------------

def plain_call(f: Any) -> Any:
    """A copy of the generated-class function ``f`` whose ``__call__`` is the plain one."""
    return _plain_wasmtime_call(f) if f.store.engine.name == "wasmtime" else _plain_v8_call(f)


def _plain_wasmtime_call(f: Any) -> Any:
    from proxywasm_vm.backends.wasmtime import _func as wf

    calls, fail = wf._CALLS, wf._FAIL

    class PlainWasmtimeIntFunc(IntFuncMixin, wf.WasmtimeFunc):
        __slots__ = ("_arity", "_void", "_calln")

        def __call__(self, *args: Any) -> Any:
            n = len(args)
            if n != self._arity:
                raise TypeError(f"expected {self._arity} arguments, got {n}")
            try:
                r = self._calln(self._desc, *args)
            except OverflowError:
                return self._slow(*args)
            if self._void:
                if r:
                    self.store._raise_last()
                return None
            if r == fail and self._sp.status:
                self.store._raise_last()
            return r

    p = object.__new__(PlainWasmtimeIntFunc)
    for name in ("store", "type", "_sp", "_f", "_n", "_buf", "_desc"):
        setattr(p, name, getattr(f, name))
    p._arity = len(f.type.params)
    p._calln = calls[p._arity]
    p._void = not f.type.results
    return p


def _plain_v8_call(f: Any) -> Any:
    from proxywasm_vm.backends.v8 import _func as vf

    fail = vf.FAIL

    class PlainV8IntFunc(IntFuncMixin, vf.V8Func):
        __slots__ = ("_arity", "_calln", "_void")

        def __call__(self, *args: Any) -> Any:
            n = len(args)
            if n != self._arity:
                raise TypeError(f"expected {self._arity} arguments, got {n}")
            try:
                r = self._calln(self._sp, self._ref, *args)
            except OverflowError:
                return self._slow(*args)
            if self._void:
                if r:
                    self.store._raise_last()
                return None
            if r == fail and self.store._state.status:
                self.store._raise_last()
            return r

    p = object.__new__(PlainV8IntFunc)
    for name in ("store", "type", "_sp", "_ref", "_pk", "_rk", "_buf", "_binding"):
        setattr(p, name, getattr(f, name))
    p._arity = len(f.type.params)
    p._calln = vf._CALLS[p._arity]
    p._void = not f.type.results
    return p


# ---- host calls (the backend's adapter between its shim and the host function) ------------

def plain_host_adapter(backend: str, fn: Callable[..., Any], ty: FuncType) -> Callable[..., Any]:
    """The plain adapter of a host function without caller, for V8's shim convention (the
    wasmtime backend has no generated adapter: its per-arity entries call the function itself)."""
    n = len(ty.params)
    res = ty.results[0] if ty.results else None
    lo, hi = (-(1 << 31) - 1, 1 << 32) if res is I32 else (-(1 << 63), 1 << 63)
    from proxywasm_vm.backends.v8._func import _int_result as v8_int_result

    def v8_call(*a: int) -> Any:  # the shim passes the arity's arguments, or six from four on
        r = fn(*a[:n])
        if res is None:
            return 0
        if r.__class__ is int and lo < r < hi:
            return r
        return v8_int_result(r, res)
    return v8_call


def _hosts(backend: str) -> dict[int, Any]:
    from proxywasm_vm.backends.v8._func import HOSTS
    return HOSTS


_ADAPTED: dict[Any, tuple[Callable[..., Any], FuncType]] = {}


@contextlib.contextmanager
def plain_host_adapters(backend: str) -> Iterator[None]:
    """While active, host functions made on ``backend`` get the plain adapter instead of the
    generated one (the generated one is made, then replaced in the backend's table)."""
    from proxywasm_vm.backends.v8 import _func as mod
    make = mod._ints_adapter
    hosts = _hosts(backend)
    before = set(hosts)

    def recording(fn: Callable[..., Any], ty: FuncType, *rest: Any) -> Any:
        adapter = make(fn, ty, *rest)
        if not rest[0]:  # access_caller: those keep the generated adapter (not measured here)
            _ADAPTED[adapter] = (fn, ty)
        return adapter

    mod._ints_adapter = recording
    try:
        yield
    finally:
        mod._ints_adapter = make
        for hid in set(hosts) - before:
            made = _ADAPTED.pop(hosts[hid], None)
            if made is not None:
                hosts[hid] = plain_host_adapter(backend, *made)


# ---- the Proxy-Wasm host-function guard ---------------------------------------------------

def plain_guard(module: str, name: str, ty: FuncType, fn: Callable[..., Any], err: int,
                with_caller: bool) -> Callable[..., Any]:
    """What ``_hostcalls._guard`` generates, as one plain function for every signature."""
    masks = tuple(0xFFFFFFFF if t is I32 else -1 for t in ty.params)
    has_result = bool(ty.results)
    err_result = err if has_result else None
    label = f"{module}.{name}"
    internal = _hostcalls.INTERNAL_FAILURE if module == "env" else 29
    current, memerr, passed = _hostcalls.CURRENT, _hostcalls._MEMERR, _hostcalls._PASS

    def host(*args: Any) -> Any:
        vm = current.vm
        if with_caller:
            caller, args = args[0], args[1:]
            if vm.memory is None:
                vm.bind_memory(caller)
        try:
            return fn(vm, *[a & m for a, m in zip(args, masks)])
        except memerr:
            return err_result
        except passed:
            raise
        except Exception as e:  # noqa: BLE001
            r = vm.host_error(label, e, internal)
            return r if has_result else None

    host.__name__ = name
    return host
