"""Functions of the wasmtime backend: calls into wasm and host functions.

Calls into wasm take one of two paths, chosen once per function:

- integer signatures (up to six i32/i64 params, at most one i32/i64 result,
  the shape of every Proxy-Wasm export) pass the function's descriptor and
  exactly their arguments, as C scalars, to ``pwvm_call<n>``:
  no buffer to fill, no union to read;
- everything else fills a ``wasmtime_val_raw_t`` buffer per call.

Host functions are called by ``pwvm_host_trampoline`` in the shim, which
hands integer arguments to Python as scalars too, through the entry of the
function's arity (``pwvm_py_host<n>``, ``pwvm_py_hostc<n>`` with a Caller).
"""

from __future__ import annotations

import atexit
import itertools
import sys
from typing import Any, Callable

from proxywasm_vm._fastcall import IntFuncMixin, IntSignatureClasses, compile_generated, is_int_signature
from proxywasm_vm._func import Func
from proxywasm_vm._lifetime import store_collected
from proxywasm_vm._types import FuncType, ValType
from proxywasm_vm._values import host_results, int_result

from ._ffi import ffi, lib
from ._store import CALLERS as _CALLERS
from ._store import CACHED_REFS as _CACHED_REFS
from ._store import NATIVE, STORES, WasmtimeStore, caller_for, park
from ._values import VAL_KIND, from_raw, to_raw

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

    Everything constant for the function (store, slot count, which arguments
    are i32, result kind) is in its descriptor (``pwvm_func``), which
    ``_call<n>`` takes with exactly the arguments; the shim's return value
    doubles as the status (see ``pwvm_call<n>`` in ``_shim.h``). The shim range-checks i32
    arguments (it takes every argument as an int64 and would otherwise keep the
    low 32 bits of, say, 2**32 + 5).
    """
    names = [f"a{i}" for i in range(len(params))]
    if result is None:
        check, ret = "r", "None"
    elif result is ValType.I32:
        check, ret = "r == _FAIL", "r"  # an i32 result can never equal _FAIL
    else:
        check, ret = "r == _FAIL and self._sp.status", "r"
    return (
        f"def __call__({', '.join(['self'] + names)}):\n"
        f"    try:\n"
        f"        r = _callN({', '.join(['self._desc'] + names)})\n"
        f"    except OverflowError:\n"
        f"        return self._slow({', '.join(names)})\n"
        f"    if {check}:\n"
        f"        self.store._raise_last()\n"
        f"    return {ret}\n"
    )


class _IntFunc(IntFuncMixin, WasmtimeFunc):
    __slots__ = ("_desc",)
    _desc: Any  # cffi pwvm_func* (owned): the descriptor


_CALLS = (lib.pwvm_call0, lib.pwvm_call1, lib.pwvm_call2, lib.pwvm_call3, lib.pwvm_call4, lib.pwvm_call5,
          lib.pwvm_call6)
# One generated class per integer signature, its __call__ from the _int_call_source template
# (compiled by _fastcall.compile_generated); kept: bench/test_trampolines.py.
_INT_CLASSES = IntSignatureClasses(_IntFunc, _int_call_source,
                                   lambda params, result: {"_callN": _CALLS[len(params)], "_FAIL": lib.PWVM_FAIL})


def wrap_func(store: WasmtimeStore, f: Any, ty: FuncType) -> WasmtimeFunc:
    """A public Func for the ``wasmtime_func_t*`` ``f`` of ``store``."""
    fn: WasmtimeFunc
    if is_int_signature(ty):
        ifn: _IntFunc = object.__new__(_INT_CLASSES.for_type(ty))
        params = ty.params
        desc = ffi.new("pwvm_func*")
        desc.s = store._sp
        desc.f = f[0]
        desc.nargs = len(params) | sum(1 << (8 + i) for i, t in enumerate(params) if t is ValType.I32)
        desc.nslots = max(1, len(params), len(ty.results))
        desc.result_kind = VAL_KIND[ty.results[0]] if ty.results else -1
        ifn._desc = desc
        fn = ifn
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

#: By host-function id (the id travels in the shim's hostenv): integer signatures, the
#: function itself (called by the entry of its arity, see below); others, their raw adapter.
HOSTS: dict[int, Callable[..., Any]] = {}
#: By the same id: the result type of an integer host function (None: no result).
RESULTS: dict[int, ValType | None] = {}
_ids = itertools.count(1)

#: A host function's integer result inside this window is returned to the shim as is: an i32
#: (signed or unsigned) or an i64 that fits one, never _FAIL. Anything else: _result.
_LO, _HI = -(1 << 31) - 1, 1 << 32


def _result(hid: int, sid: int, r: Any) -> int:
    """The uncommon results: none expected (ignored), or one to check and wrap."""
    res = RESULTS[hid]
    if res is None:
        return 0
    r = int_result(r, res is ValType.I32, res.value)
    if r == _FAIL:  # an i64 result that happens to equal the failure value: tell the shim it is genuine
        NATIVE[sid].host_failed = lib.PWVM_HOST_GENUINE_FAIL
    return r


def _raw_adapter(fn: Callable[..., Any], ty: FuncType, access_caller: bool) -> Callable[..., Any]:
    """Adapter for the generic path: (store handle, raw slots) -> None."""
    params, results = ty.params, ty.results

    def call(sid: int, vals: Any) -> None:
        caller = caller_for(sid) if access_caller else None  # raises in a collected store's finalizer
        store = STORES[sid]() or store_collected()
        args = [from_raw(store, t, vals[i], True) for i, t in enumerate(params)]  # raw: see _func_new
        r = fn(caller, *args) if access_caller else fn(*args)
        if caller is not None and caller._lent is not None:
            caller._settle()
        if not results:
            return
        for i, (t, v) in enumerate(zip(results, host_results(len(results), r))):
            to_raw(store, t, v, vals[i])

    return call


def register_host(api: Any, fn: Callable[..., Any], ty: FuncType, access_caller: bool) -> Any:
    """Register ``fn`` and return a new hostenv for it (owned by wasmtime afterwards).

    ``api`` is the function table of the library copy the function is made in."""
    hid = next(_ids)
    ints = is_int_signature(ty)
    HOSTS[hid] = fn if ints else _raw_adapter(fn, ty, access_caller)
    if ints:
        RESULTS[hid] = ty.results[0] if ty.results else None
    kinds = [VAL_KIND[t] for t in ty.params + ty.results][:16]
    env = lib.pwvm_hostenv_new(api, hid, len(ty.params), len(ty.results), ffi.new("uint8_t[]", kinds or [0]),
                               1 if access_caller else 0)
    if env == ffi.NULL:
        del HOSTS[hid]
        RESULTS.pop(hid, None)
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
_getrefcount = sys.getrefcount


def _unraisable(exc_type: Any, exc: Any, tb: Any) -> None:
    """cffi's report for a callback that could not run: the shim turns it into a trap, so stay quiet."""


# The entries of integer host calls, one per arity without and with a Caller (the shim calls
# the one of the function's shape with exactly its arguments): the function itself is called,
# with no adapter between, and an in-window integer result goes back as is. Generated per arity
# from these templates (a call with exact arguments is what makes them cheap), into this module's
# namespace. Each returns _FAIL, cffi's error value, when it cannot even start (a RecursionError
# before its `try`): the shim treats an unexplained _FAIL as that failure.
_HOST_ENTRY = """
def pwvm_py_host{n}(hid, sid{params}):
    try:
        r = HOSTS[hid]({args})
        if r.__class__ is int and _LO < r < _HI:
            return r
        return _result(hid, sid, r)
    except BaseException as e:  # every exception must reach the caller, not the C stack
        return _park(sid, e)
"""
# With a Caller: the store's (made at its first host call, see caller_for). After the call, a
# memory it handed out is settled (kept by the function: it keeps its store; see CallerMemory).
_HOST_ENTRY_CALLER = """
def pwvm_py_hostc{n}(hid, sid{params}):
    try:
        c = _CALLERS.get(sid) or caller_for(sid)
        r = HOSTS[hid](c{params})
        m = c._lent
        if m is not None:  # c._settle(), inline
            c._lent = None
            if _getrefcount(m) > _CACHED_REFS:
                c._pin(m)
        if r.__class__ is int and _LO < r < _HI:
            return r
        return _result(hid, sid, r)
    except BaseException as e:
        return _park(sid, e)
"""
for _n in range(7):
    _params = "".join(f", a{i}" for i in range(_n))
    for _template, _name in ((_HOST_ENTRY, "pwvm_py_host"), (_HOST_ENTRY_CALLER, "pwvm_py_hostc")):
        compile_generated(_template.format(n=_n, params=_params, args=_params[2:]),
                          f"wasmtime host-call entry {_name}{_n}", globals())
        ffi.def_extern(name=f"{_name}{_n}", error=_FAIL, onerror=_unraisable)(globals()[f"{_name}{_n}"])


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
    RESULTS.pop(hid, None)


def _park(sid: int, e: BaseException) -> int:
    """Park ``e`` for the call into wasm to re-raise (the shim's trap unwinds to it); returns 0."""
    caller = _CALLERS.get(sid)
    if caller is not None and caller._lent is not None:
        caller._settle()  # the exception's traceback may hold a memory the function took
    if sid in NATIVE:
        park(sid, e)
    return 0
