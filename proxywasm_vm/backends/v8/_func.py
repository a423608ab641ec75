"""Functions of the V8 backend: calls into wasm and host functions.

Calls into wasm take one of two paths, chosen once per function:

- integer signatures (up to six i32/i64 params, at most one i32/i64 result,
  the shape of every Proxy-Wasm export) pass scalars to ``pwv8_call<n>``
  (one C function per arity; the signature is registered once);
- everything else fills a ``pwv8_val`` buffer for ``pwv8_func_call``.

Host functions of integer signatures get their arguments as scalars through
``pwv8_py_host<n>`` (per arity); the rest through ``pwv8_py_host_raw``.

f32, f64 and v128 never cross V8's JS boundary: a JavaScript number loses a NaN's payload,
and the JS API cannot carry a v128 at all. A function whose type has one is called through a
generated call adapter (:mod:`proxywasm_vm._rawbridge`: f32/f64 as i32/i64 bits, v128 as two
i64), and a host function with one is made with the mapped type and exposed through a host
adapter of the real type. Globals of those types are read and written through global adapters
and made by modules that define them (see ``_extern``). Wasm-to-wasm calls between the
adapters and the user's modules pass values unchanged, so every bit survives.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

from proxywasm_vm._errors import WasmError
from proxywasm_vm._fastcall import IntFuncMixin, IntSignatureClasses, compile_generated, is_int_signature
from proxywasm_vm._func import Func
from proxywasm_vm._lifetime import store_collected
from proxywasm_vm._types import FuncType, ValType
from proxywasm_vm._rawbridge import call_adapter, from_mapped, host_adapter, mapped_types, needs_bridge, to_mapped
from proxywasm_vm._values import host_results, int_result, raw_results

from ._ffi import FAIL, ffi, last_error, lib
from ._store import STATES, STORES, V8Caller, V8Store, park
from ._values import FROM_KIND, from_slot, kinds, new_slots, to_slot

_CALLS = (lib.pwv8_call0, lib.pwv8_call1, lib.pwv8_call2, lib.pwv8_call3, lib.pwv8_call4, lib.pwv8_call5,
          lib.pwv8_call6)
_call = lib.pwv8_func_call


class V8Func(Func):
    """A function of a V8 store (generic path)."""

    __slots__ = ("_adapter", "_binding", "_bridged", "_buf", "_pk", "_ref", "_rk", "_sp", "store", "type")
    store: V8Store
    _binding: _Binding | None  # a host function taking a Caller: the instance it is bound to
    _buf: Any  # cffi pwv8_val[] for the generic path
    _pk: bytes  # parameter kinds
    _rk: bytes  # result kinds
    _ref: int  # the function's id in its store
    _sp: Any  # cffi pwv8_store* of the store
    _bridged: bool  # an f32/f64/v128 param or result: called through a call adapter
    _adapter: V8Func | None  # that adapter's "call" (the mapped type), made on first call

    def __call__(self, *args: Any) -> Any:
        if self._bridged:
            return self._call_as(args, False)
        ty = self.type
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        store = self.store
        buf = self._buf
        for i, (t, v) in enumerate(zip(ty.params, args)):
            to_slot(store, t, v, buf[i])
        rc = _call(self._sp, self._ref, self._pk, len(self._pk), self._rk, len(self._rk), buf)
        if rc:
            store._raise(rc)
        results = ty.results
        if not results:
            return None
        if len(results) == 1:
            return from_slot(store, results[0], buf[0])
        return tuple(from_slot(store, t, buf[i]) for i, t in enumerate(results))

    def _call_raw(self, args: tuple) -> Any:
        return self._call_as(args, True)

    def _call_as(self, args: tuple, raw: bool) -> Any:
        """Call with ``args``; f32/f64/v128 results raw when ``raw``."""
        ty = self.type
        if not self._bridged:  # integers and references only: nothing to make raw
            return raw_results(ty.results, self(*args))
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        adapter = self._adapter
        if adapter is None:
            adapter = self._adapter = bridge(self.store, call_adapter(ty, True), [self]).exports["call"]
        r = adapter(*to_mapped(ty.params, args, True, _unchanged))
        n = len(ty.results)
        if not n:
            return None
        out = from_mapped(ty.results, [r] if len(adapter.type.results) == 1 else r, True, raw)
        return out[0] if n == 1 else tuple(out)


def _unchanged(t: ValType, v: Any) -> Any:
    return v  # integers and references: converted by the adapter's own (generic or integer) call


def bridge(store: V8Store, wasm: bytes, imports: list[Any]) -> Any:
    """An instance of adapter module ``wasm`` (compiled once per engine) in ``store``."""
    from proxywasm_vm._instance import Instance

    engine = store.engine
    cache = _BRIDGES.get(id(engine))
    if cache is None or cache[0]() is not engine:
        cache = _BRIDGES[id(engine)] = (weakref.ref(engine), {})
    mod = cache[1].get(wasm)
    if mod is None:
        mod = cache[1][wasm] = engine._module_new(wasm)
    return Instance(store, mod, imports)


#: id of an engine -> (weakref to it, {adapter bytes: compiled module})
_BRIDGES: dict[int, tuple[Any, dict[bytes, Any]]] = {}


def _int_call_source(params: tuple[ValType, ...], result: ValType | None) -> str:
    """``__call__`` for integer ``params`` and an optional integer result.

    The shim's return value doubles as the status (see ``pwv8_call0..6``);
    it range-checks i32 arguments itself (status PWV8_RANGE).
    """
    names = [f"a{i}" for i in range(len(params))]
    if result is None:
        check = "r"
    elif result is ValType.I32:
        check = "r == _FAIL"  # an i32 result can never equal _FAIL
    else:
        check = "r == _FAIL and self.store._state.status"
    return (
        f"def __call__({', '.join(['self'] + names)}):\n"
        f"    try:\n"
        f"        r = _callN({', '.join(['self._sp', 'self._ref'] + names)})\n"
        f"    except OverflowError:\n"
        f"        return self._slow({', '.join(names)})\n"
        f"    if {check}:\n"
        f"        self.store._raise_last()\n"
        f"    return {'None' if result is None else 'r'}\n"
    )


class _IntFunc(IntFuncMixin, V8Func):
    __slots__ = ()


# One generated class per integer signature, its __call__ from the _int_call_source template
# (compiled by _fastcall.compile_generated); kept: bench/test_trampolines.py.
_INT_CLASSES = IntSignatureClasses(_IntFunc, _int_call_source,
                                   lambda params, result: {"_callN": _CALLS[len(params)], "_FAIL": FAIL})


def wrap_func(store: V8Store, ref: int, ty: FuncType) -> V8Func:
    """A public Func for the function ``ref`` of ``store``."""
    fn: V8Func
    if is_int_signature(ty):
        fn = object.__new__(_INT_CLASSES.for_type(ty))
        mask = sum(1 << i for i, t in enumerate(ty.params) if t is ValType.I64)
        rk = -1 if not ty.results else (0 if ty.results[0] is ValType.I32 else 1)
        if lib.pwv8_func_sig(store._sp, ref, len(ty.params), mask, rk):
            raise WasmError(last_error())
    else:
        fn = object.__new__(V8Func)
    fn.store = store
    fn.type = ty
    fn._sp = store._sp
    fn._ref = ref
    fn._bridged = needs_bridge(ty.params + ty.results, True)
    fn._adapter = None
    fn._pk = b"" if fn._bridged else kinds(ty.params)  # a bridged function is only called through its adapter
    fn._rk = b"" if fn._bridged else kinds(ty.results)
    fn._buf = new_slots(max(len(ty.params), len(ty.results)))
    fn._binding = None
    return fn


def funcref(store: V8Store, ref: int) -> V8Func:
    """A Func for a funcref value (its type asked from V8's type reflection)."""
    pk, rk = ffi.new("char[64]"), ffi.new("char[64]")
    np, nr = ffi.new("uint32_t*"), ffi.new("uint32_t*")
    if lib.pwv8_func_type(store._sp, ref, pk, np, rk, nr, 64):
        raise WasmError(last_error())
    ty = FuncType([FROM_KIND[pk[i][0]] for i in range(np[0])], [FROM_KIND[rk[i][0]] for i in range(nr[0])])
    return wrap_func(store, ref, ty)


# ---- host functions ---------------------------------------------------------------

#: Host-call adapters by id, and the store handle of each.
HOSTS: dict[int, Callable[..., Any]] = {}
HOST_STORE: dict[int, int] = {}
_ids = itertools.count(1)


class _Binding:
    """Where a host function's Caller points: the one instance it is imported into."""

    __slots__ = ("claimed", "fn", "instance", "memory")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.instance: Any = None  # weakref to the instance, None during instantiation
        self.memory: Any = None  # the core of that instance's "memory" export
        self.claimed = False  # imported by an instance already
        self.fn = fn


def _int_result(r: Any, res: ValType) -> int:
    return int_result(r, res is ValType.I32, res.value)


_ADAPTER_MAKERS: dict[tuple[int, ValType | None, bool], Callable[..., Any]] = {}


def _ints_adapter(fn: Callable[..., Any], ty: FuncType, access_caller: bool, binding: Any,
                  sid: int) -> Callable[..., Any]:
    """``(a0..an-1) -> int`` (six arguments from arity 4 on): one extra frame, no packing.

    The source is generated once per (arity, result, caller) shape; each host
    function gets a closure from that shape's maker.
    """
    n = len(ty.params)
    res = ty.results[0] if ty.results else None
    key = (n, res, access_caller)
    make = _ADAPTER_MAKERS.get(key)
    if make is None:
        args = ", ".join(f"a{i}" for i in range(n))
        params = args if n <= 3 else "a0, a1, a2, a3, a4, a5"
        target = (f"fn(_Caller(_STORES[sid]() or _collected(), binding){', ' if n else ''}{args})" if access_caller
                  else f"fn({args})")
        if res is None:
            body = f"        {target}\n        return 0\n"
        else:
            lo, hi = ((-(1 << 31), 1 << 32) if res is ValType.I32 else (-(1 << 63), 1 << 63))
            body = (f"        r = {target}\n"
                    f"        if r.__class__ is int and {lo} <= r < {hi}:\n"
                    f"            return r\n"
                    f"        return _int_result(r, res)\n")
        src = f"def make(fn, res, binding, sid):\n    def call({params}):\n{body}    return call\n"
        ns: dict[str, Any] = {"_int_result": _int_result, "_Caller": V8Caller, "_STORES": STORES,
                                "_collected": store_collected}
        # generated from the template above, per (arity, result, caller); kept: bench/test_trampolines.py
        what = f"host-call trampoline (v8) for {n} args -> {res.value if res else 'void'}" + (
            " with caller" if access_caller else "")
        make = _ADAPTER_MAKERS[key] = compile_generated(src, what, ns)["make"]
    return make(fn, res, binding, sid)


def _raw_adapter(fn: Callable[..., Any], ty: FuncType, access_caller: bool, binding: Any,
                 sid: int) -> Callable[..., Any]:
    params, results = ty.params, ty.results

    def call(sid: int, vals: Any) -> None:
        store = STORES[sid]() or store_collected()
        args = [from_slot(store, t, vals[i]) for i, t in enumerate(params)]
        r = fn(V8Caller(store, binding), *args) if access_caller else fn(*args)
        if not results:
            return
        for i, (t, v) in enumerate(zip(results, host_results(len(results), r))):
            to_slot(store, t, v, vals[i])

    return call


def _bridged_host(store: V8Store, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> V8Func:
    """A host function with f32/f64/v128: a V8 host function of the mapped type (``inner``, which
    converts to and from raw values) behind a host adapter exporting the real type (returned)."""
    params, results = ty.params, ty.results
    n = len(results)

    def out(r: Any) -> Any:
        if not n:
            return None
        vals = to_mapped(results, host_results(n, r), True, _checked)
        return vals[0] if len(vals) == 1 else tuple(vals)

    def with_caller(caller: Any, *margs: Any) -> Any:
        return out(fn(caller, *from_mapped(params, margs, True, True)))

    def plain(*margs: Any) -> Any:
        return out(fn(*from_mapped(params, margs, True, True)))

    mapped_fn = with_caller if access_caller else plain

    inner = new_host_func(store, FuncType(mapped_types(params, True), mapped_types(results, True)), mapped_fn,
                          access_caller)
    binding = inner._binding
    inner._binding = None  # only the adapter imports it; importers of the outer function rebind that
    outer: V8Func = bridge(store, host_adapter(ty, True), [inner]).exports["f"]
    if binding is not None:
        binding.fn = fn  # what rebind() makes a new function of (with the real type)
        outer._binding = binding
    return outer


def _checked(t: ValType, v: Any) -> Any:
    """An integer host result, checked (the other types are converted by to_mapped)."""
    return int_result(v, t is ValType.I32, t.value) if t in (ValType.I32, ValType.I64) else v


def new_host_func(store: V8Store, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> V8Func:
    if needs_bridge(ty.params + ty.results, True):
        return _bridged_host(store, ty, fn, access_caller)
    pk, rk = kinds(ty.params), kinds(ty.results)
    fast = is_int_signature(ty)
    hid = next(_ids)
    binding = _Binding(fn) if access_caller else None
    HOSTS[hid] = (_ints_adapter if fast else _raw_adapter)(fn, ty, access_caller, binding, store._handle)
    HOST_STORE[hid] = store._handle
    store._hids.append(hid)
    out = ffi.new("uint32_t*")
    if lib.pwv8_func_new(store._sp, hid, pk, len(pk), rk, len(rk), 1 if fast else 0, out):
        HOSTS.pop(hid, None)
        raise WasmError(last_error())
    f = wrap_func(store, out[0], ty)
    f._binding = binding
    return f


def rebind(f: V8Func) -> V8Func:
    """The function to import for a host function that takes a Caller.

    V8 does not say which instance called a host function, so each instance
    gets its own V8 function: the first import uses ``f`` itself, later ones
    (while an earlier importer is alive) a copy bound to the new instance.
    """
    b = f._binding
    assert b is not None  # only host functions that take a Caller are rebound
    if b.claimed and b.instance is not None and b.instance() is not None:
        f = new_host_func(f.store, f.type, b.fn, True)
        b = f._binding
        assert b is not None
    b.claimed = True
    b.instance = None
    return f


def _park(sid: int, e: BaseException) -> None:
    if sid in STATES:
        park(sid, e)


def _fail(hid: int, e: BaseException) -> int:
    _park(HOST_STORE.get(hid, 0), e)
    return 0


def _genuine(hid: int) -> None:
    """A result equal to FAIL (cffi's error value) that the host function really returned."""
    state = STATES.get(HOST_STORE.get(hid, 0))
    if state is not None:
        state.host_failed = lib.PWV8_HOST_GENUINE_FAIL


def _unraisable(exc_type: Any, exc: Any, tb: Any) -> None:
    """cffi's report for a callback that could not run: the shim turns it into a trap, so stay quiet."""


# One trampoline per arity (the shim calls the one matching the function).
def _host0(hid: int) -> int:
    try:
        r = HOSTS[hid]()
    except BaseException as e:  # noqa: BLE001 - every exception must reach the caller, not the C stack
        return _fail(hid, e)
    if r == FAIL:
        _genuine(hid)
    return r


def _host1(hid: int, a0: int) -> int:
    try:
        r = HOSTS[hid](a0)
    except BaseException as e:  # noqa: BLE001
        return _fail(hid, e)
    if r == FAIL:
        _genuine(hid)
    return r


def _host2(hid: int, a0: int, a1: int) -> int:
    try:
        r = HOSTS[hid](a0, a1)
    except BaseException as e:  # noqa: BLE001
        return _fail(hid, e)
    if r == FAIL:
        _genuine(hid)
    return r


def _host3(hid: int, a0: int, a1: int, a2: int) -> int:
    try:
        r = HOSTS[hid](a0, a1, a2)
    except BaseException as e:  # noqa: BLE001
        return _fail(hid, e)
    if r == FAIL:
        _genuine(hid)
    return r


def _host6(hid: int, a0: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    try:
        r = HOSTS[hid](a0, a1, a2, a3, a4, a5)
    except BaseException as e:  # noqa: BLE001
        return _fail(hid, e)
    if r == FAIL:
        _genuine(hid)
    return r


def _host_raw(hid: int, sid: int, vals: Any, n: int) -> int:
    try:
        HOSTS[hid](sid, vals)
        return 0
    except BaseException as e:  # noqa: BLE001
        _park(sid, e)
        return 1


def install_trampolines() -> None:
    """Register the extern "Python" trampolines with the shim (once, at V8 start)."""
    names = ["pwv8_py_host0", "pwv8_py_host1", "pwv8_py_host2", "pwv8_py_host3", "pwv8_py_host6"]
    for name, f in zip(names, [_host0, _host1, _host2, _host3, _host6]):
        # FAIL is also returned when the function cannot even start (a RecursionError
        # before its `try`): the shim treats an unexplained FAIL as that failure.
        ffi.def_extern(name=name, error=FAIL, onerror=_unraisable)(f)
    ffi.def_extern(name="pwv8_py_host_raw", error=2, onerror=_unraisable)(_host_raw)
    lib.pwv8_set_host_callbacks(*(getattr(lib, n) for n in names), lib.pwv8_py_host_raw)
