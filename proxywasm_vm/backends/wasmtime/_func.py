"""Functions of the wasmtime backend: calls into wasm and host functions.

Calls into wasm take one of two paths, chosen once per function:

- integer signatures (up to six i32/i64 params, at most one i32/i64 result,
  the shape of every Proxy-Wasm export) pass their arguments as C scalars to
  ``pwvm_call_ints``: no buffer to fill, no union to read;
- everything else fills a ``wasmtime_val_raw_t`` buffer per call.

Host functions are called by ``pwvm_host_trampoline`` in the shim, which
hands integer arguments to Python as scalars too.
"""

from __future__ import annotations

import atexit
import itertools
from typing import Any, Callable

from proxywasm_vm._fastcall import IntFuncMixin, IntSignatureClasses, compile_generated, is_int_signature
from proxywasm_vm._func import Func
from proxywasm_vm._lifetime import store_collected
from proxywasm_vm._types import FuncType, ValType
from proxywasm_vm._values import host_results, int_result

from ._ffi import ffi, lib
from ._store import NATIVE, STORES, WasmtimeCaller, WasmtimeStore, park
from ._values import VAL_KIND, from_raw, to_raw

_call_ints = lib.pwvm_call_ints
_call = lib.pwvm_call


class WasmtimeFunc(Func):
    """A function of a wasmtime store (generic path)."""

    __slots__ = ("store", "type", "_sp", "_f", "_n", "_buf")
    store: WasmtimeStore
    _sp: Any  # cffi pwvm_store* of the store (cdata)
    _f: Any  # cffi wasmtime_func_t*
    _n: int  # slots in _buf: max(1, params, results)
    _buf: Any  # cffi wasmtime_val_raw_t[_n]

    def __call__(self, *args: Any) -> Any:
        return self._call_as(args, False)

    def _call_raw(self, args: tuple) -> Any:
        return self._call_as(args, True)

    def _call_as(self, args: tuple, raw: bool) -> Any:
        """Call with ``args``; f32/f64/v128 results raw when ``raw``."""
        ty = self.type
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        store = self.store
        buf = self._buf
        for i, (t, v) in enumerate(zip(ty.params, args)):
            to_raw(store, t, v, buf[i])
        if _call(self._sp, self._f, buf, self._n):
            store._raise_last()
        results = ty.results
        if not results:
            return None
        if len(results) == 1:
            return from_raw(store, results[0], buf[0], raw)
        return tuple(from_raw(store, t, buf[i], raw) for i, t in enumerate(results))

    def _to_extern(self, ext: Any) -> None:
        ext.kind = 0
        ext.of.func = self._f[0]


def _int_call_source(params: tuple[ValType, ...], result: ValType | None) -> str:
    """``__call__`` for integer ``params`` and an optional integer result.

    Everything constant for the signature (slot count, result kind) is baked
    in; the shim's return value doubles as the status (see ``pwvm_call_ints``).
    The shim range-checks i32 arguments (it takes every argument as an int64
    and would otherwise keep the low 32 bits of, say, 2**32 + 5): bit 8+i of
    the count marks argument i as an i32.
    """
    n = len(params)
    names = [f"a{i}" for i in range(n)]
    nargs = n | sum(1 << (8 + i) for i, t in enumerate(params) if t is ValType.I32)
    padded = ", ".join(names + ["0"] * (6 - n))
    nslots = max(1, n, 1 if result else 0)
    rk = -1 if result is None else VAL_KIND[result]
    if result is None:
        check, ret = "r", "None"
    elif result is ValType.I32:
        check, ret = "r == _FAIL", "r"  # an i32 result can never equal _FAIL
    else:
        check, ret = "r == _FAIL and self._sp.status", "r"
    return (
        f"def __call__({', '.join(['self'] + names)}):\n"
        f"    try:\n"
        f"        r = _call_ints(self._sp, self._f, {nargs}, {nslots}, {rk}, {padded})\n"
        f"    except OverflowError:\n"
        f"        return self._slow({', '.join(names)})\n"
        f"    if {check}:\n"
        f"        self.store._raise_last()\n"
        f"    return {ret}\n"
    )


class _IntFunc(IntFuncMixin, WasmtimeFunc):
    __slots__ = ()


# One generated class per integer signature, its __call__ from the _int_call_source template
# (compiled by _fastcall.compile_generated); kept: bench/test_trampolines.py.
_INT_CLASSES = IntSignatureClasses(_IntFunc, _int_call_source, {"_call_ints": _call_ints, "_FAIL": lib.PWVM_FAIL})


def wrap_func(store: WasmtimeStore, f: Any, ty: FuncType) -> WasmtimeFunc:
    """A public Func for the ``wasmtime_func_t*`` ``f`` of ``store``."""
    fn: WasmtimeFunc
    if is_int_signature(ty):
        fn = object.__new__(_INT_CLASSES.for_type(ty))
    else:
        fn = object.__new__(WasmtimeFunc)
    fn.store = store
    fn.type = ty
    fn._sp = store._sp
    fn._f = f
    fn._n = max(1, len(ty.params), len(ty.results))
    fn._buf = ffi.new("wasmtime_val_raw_t[]", fn._n)
    return fn


# ---- host functions ---------------------------------------------------------------

#: Host-call adapters by id (the id travels in the shim's hostenv).
HOSTS: dict[int, Callable[..., Any]] = {}
_ids = itertools.count(1)


def _int_result(r: Any, res: ValType, sid: int) -> int:
    """Check and wrap a host function's integer result (the uncommon shapes)."""
    r = int_result(r, res is ValType.I32, res.value)
    if r == _FAIL:  # an i64 result that happens to equal the failure value: tell the shim it is genuine
        NATIVE[sid].host_failed = lib.PWVM_HOST_GENUINE_FAIL
    return r


def _ints_adapter(fn: Callable[..., Any], ty: FuncType, access_caller: bool) -> Callable[..., Any]:
    """Adapter for the scalar path: ``(store handle, a0..a5) -> int``.

    Generated per arity so a host call costs one extra Python frame and no
    argument packing; the common result (an in-range int) is returned as is.
    """
    n = len(ty.params)
    res = ty.results[0] if ty.results else None
    args = ", ".join(f"a{i}" for i in range(n))
    target = f"fn(_Caller(_STORES[sid]() or _collected()){', ' if n else ''}{args})" if access_caller else f"fn({args})"
    if res is None:
        body = f"    {target}\n    return 0\n"
    else:
        lo, hi = ((-(1 << 31) - 1, 1 << 32) if res is ValType.I32 else (-(1 << 63) + 1, 1 << 63))
        body = (f"    r = {target}\n"
                f"    if r.__class__ is int and {lo} < r < {hi}:\n"  # > lo: the i64 minimum+1 is _FAIL
                f"        return r\n"
                f"    return _int_result(r, res, sid)\n")
    src = "def call(sid, a0, a1, a2, a3, a4, a5):\n" + body
    ns: dict[str, Any] = {"fn": fn, "res": res, "_int_result": _int_result, "_Caller": WasmtimeCaller,
                          "_STORES": STORES, "_collected": store_collected}
    # generated from the template above, per (arity, result, caller); kept: bench/test_trampolines.py
    what = f"host-call trampoline (wasmtime) for {ty}{' with caller' if access_caller else ''}"
    return compile_generated(src, what, ns)["call"]


def _raw_adapter(fn: Callable[..., Any], ty: FuncType, access_caller: bool) -> Callable[..., Any]:
    """Adapter for the generic path: (store handle, raw slots) -> None."""
    params, results = ty.params, ty.results

    def call(sid: int, vals: Any) -> None:
        store = STORES[sid]() or store_collected()
        args = [from_raw(store, t, vals[i], True) for i, t in enumerate(params)]  # raw: see _func_new
        r = fn(WasmtimeCaller(store), *args) if access_caller else fn(*args)
        if not results:
            return
        for i, (t, v) in enumerate(zip(results, host_results(len(results), r))):
            to_raw(store, t, v, vals[i])

    return call


def register_host(api: Any, fn: Callable[..., Any], ty: FuncType, access_caller: bool) -> Any:
    """Register ``fn`` and return a new hostenv for it (owned by wasmtime afterwards).

    ``api`` is the function table of the library copy the function is made in."""
    hid = next(_ids)
    HOSTS[hid] = (_ints_adapter if is_int_signature(ty) else _raw_adapter)(fn, ty, access_caller)
    kinds = [VAL_KIND[t] for t in ty.params + ty.results][:16]
    env = lib.pwvm_hostenv_new(api, hid, len(ty.params), len(ty.results), ffi.new("uint8_t[]", kinds or [0]))
    if env == ffi.NULL:
        del HOSTS[hid]
        raise MemoryError("cannot allocate a host function")
    return env


TRAMPOLINE = ffi.addressof(lib, "pwvm_host_trampoline")
atexit.register(lib.pwvm_python_exiting)
FREE_ENV = ffi.addressof(lib, "pwvm_hostenv_free")


def new_host_func(store: WasmtimeStore, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> WasmtimeFunc:
    rt = store._rt
    env = register_host(rt.api, fn, ty, access_caller)
    out = ffi.new("wasmtime_func_t*")
    rt.api.wasmtime_func_new_unchecked(store._ctx, rt.new_functype(ty), TRAMPOLINE, env, FREE_ENV, out)
    return wrap_func(store, out, ty)


_FAIL = lib.PWVM_FAIL


def _unraisable(exc_type: Any, exc: Any, tb: Any) -> None:
    """cffi's report for a callback that could not run: the shim turns it into a trap, so stay quiet."""


@ffi.def_extern(error=_FAIL, onerror=_unraisable)
def pwvm_py_host_ints(hid: int, sid: int, n: int, a0: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    try:
        return HOSTS[hid](sid, a0, a1, a2, a3, a4, a5)
    except BaseException as e:  # noqa: BLE001 - every exception must reach the caller, not the C stack
        _park(sid, e)
        return 0


@ffi.def_extern(error=2, onerror=_unraisable)
def pwvm_py_host_raw(hid: int, sid: int, vals: Any, n: int) -> int:
    try:
        HOSTS[hid](sid, vals)
        return 0
    except BaseException as e:  # noqa: BLE001
        _park(sid, e)
        return 1


@ffi.def_extern()
def pwvm_py_host_drop(hid: int) -> None:
    HOSTS.pop(hid, None)


def _park(sid: int, e: BaseException) -> None:
    if sid in NATIVE:
        park(sid, e)
