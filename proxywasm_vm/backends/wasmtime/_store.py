"""Store and Caller of the wasmtime backend, and how outcomes become exceptions."""

from __future__ import annotations

import functools
import itertools
import math
import re
import sys
import weakref
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from proxywasm_vm._errors import LinkError, Trap, TrapCode, WasmError
from proxywasm_vm._func import Caller
from proxywasm_vm._lifetime import release_after_finalizers, store_collected
from proxywasm_vm._store import Store, StoreLimits
from proxywasm_vm._types import FuncType, GlobalType, MemoryType, TableType

from ._extern import CallerMemory, MemCore, WasmtimeGlobal, WasmtimeMemory, WasmtimeTable, core_of
from ._ffi import ffi, lib

if TYPE_CHECKING:
    from ._engine import WasmtimeEngine
    from ._func import WasmtimeFunc
    from ._instance import WasmtimeInstance
    from ._runtime import Runtime

# wasmtime_trap_code_t -> TrapCode
_TRAP_CODES = {
    0: TrapCode.STACK_OVERFLOW,
    1: TrapCode.MEMORY_OUT_OF_BOUNDS,
    2: TrapCode.HEAP_MISALIGNED,
    3: TrapCode.TABLE_OUT_OF_BOUNDS,
    4: TrapCode.INDIRECT_CALL_TO_NULL,
    5: TrapCode.INDIRECT_CALL_TYPE_MISMATCH,
    6: TrapCode.INTEGER_OVERFLOW,
    7: TrapCode.INTEGER_DIVIDE_BY_ZERO,
    8: TrapCode.BAD_CONVERSION_TO_INTEGER,
    9: TrapCode.UNREACHABLE,
    10: TrapCode.INTERRUPTED,
    11: TrapCode.OUT_OF_FUEL,
    13: TrapCode.INDIRECT_CALL_TO_NULL,
}

_HOST_NOT_RUN = "host function could not be called"

#: Python Store objects by the handle the shim passes to host functions.
STORES: dict[int, weakref.ref[WasmtimeStore]] = {}
#: By the same handle: the shim's store (where a host function's failure is flagged) and the
#: exception it raised, re-raised by the call into wasm. Not through the Store object: a call
#: made from a finalizer of the store's reference cycle runs after the collector cleared the
#: weak references to the store (see :mod:`proxywasm_vm._lifetime`), and must fail the same.
NATIVE: dict[int, Any] = {}
PENDING: dict[int, BaseException] = {}
_handles = itertools.count(1)


def _store_gone(handle: int, sp: Any) -> None:
    """The store's release, when it is deallocated (see :mod:`proxywasm_vm._lifetime`)."""
    _forget_caller(handle)
    STORES.pop(handle, None)
    NATIVE.pop(handle, None)
    PENDING.pop(handle, None)
    lib.pwvm_store_delete(sp)


def park(handle: int, exc: BaseException) -> None:
    """Called by a host-function adapter that raised: the call into wasm re-raises ``exc``."""
    PENDING[handle] = exc
    NATIVE[handle].host_failed = 1


class WasmtimeCaller(Caller):
    """What a host function that asked for it receives: one per store, made at its first host call
    (:func:`caller_for`) and reused, since it reads the shim's current caller pointer.

    It references its store only weakly (``STORES``), and is dropped from :data:`CALLERS` when the
    store is: a strong reference from there would keep every store alive, and one from the store
    to it a reference cycle, leaving stores (and their linear memories) to the cycle collector
    instead of freeing them when the last reference goes. The memories it hands out are cached
    the same way (see :class:`~._extern.CallerMemory`).
    """

    __slots__ = ("_ref", "_sp", "_cores", "_mem", "_mems", "_lent")

    def __init__(self, ref: weakref.ref[WasmtimeStore], sp: Any, cores: dict[int, Any]) -> None:
        self._ref = ref  # the store's entry in STORES
        self._sp = sp  # the shim's store; None once the store is gone
        self._cores = cores
        # the shim's caller_mem field, read without a call (see pwvm_store.caller_mem)
        self._mem: memoryview | None = memoryview(ffi.buffer(ffi.addressof(sp, "caller_mem"), 8)).cast("q")
        self._mems: dict[int, CallerMemory] = {}  # by the shim's memory index
        self._lent: CallerMemory | None = None  # handed out during the current host call

    def _settle(self) -> None:
        """After a host call that took a memory: if anything besides the cache still holds it, it
        keeps its store (pinned) and leaves the cache. (The host-call entries do the same inline.)"""
        mem = self._lent
        self._lent = None
        if mem is not None and _getrefcount(mem) > CACHED_REFS:
            self._pin(mem)

    def _pin(self, mem: CallerMemory) -> None:
        """``mem`` is held outside the cache: it keeps its store from now on, and leaves the cache."""
        mem._pin = self._ref()
        for index, cached in list(self._mems.items()):
            if cached is mem:
                del self._mems[index]

    @property
    def store(self) -> WasmtimeStore:
        store = self._ref()
        if store is None:
            raise WasmError("Caller used outside of its host function call")
        return store

    def _caller_ptr(self) -> Any:
        sp = self._sp
        if sp is None or sp.caller == ffi.NULL:
            raise WasmError("Caller used outside of its host function call")
        return sp.caller

    def get_export(self, name: str) -> Any:
        ptr = self._caller_ptr()
        store = self.store
        ext = ffi.new("wasmtime_extern_t*")
        raw = name.encode()
        if not store._rt.api.wasmtime_caller_export_get(ptr, raw, len(raw), ext):
            return None
        return store._wrap_extern(ext, None)

    @property
    def memory(self) -> WasmtimeMemory | None:
        cm = self._mem
        index = cm[0] if cm is not None else -1
        if index == _MEM_UNKNOWN:  # first use by this host function: ask the shim (it remembers)
            index = _caller_mem_index(self._sp)
        if index >= 0:
            mem = self._mems.get(index)
            if mem is None:
                store = self._ref()
                if store is None:  # pragma: no cover - _sp is None by then
                    raise WasmError("Caller used outside of its host function call")
                core = self._cores.get(index)
                if core is None:
                    m = ffi.new("wasmtime_memory_t*")
                    lib.pwvm_caller_memory(self._sp, m)
                    core = core_of(store, index, m)
                mem = self._mems[index] = CallerMemory._for(self._ref, core)
            lent = self._lent
            if lent is not mem:
                if lent is not None:  # another memory lent in this call (a nested one): settle it now
                    self._settle()
                self._lent = mem
            return mem
        if index == -1:
            raise WasmError("Caller used outside of its host function call")
        if index == -3:
            raise MemoryError("cannot track the caller's memory")
        return None  # the caller exports no memory named "memory"


_caller_mem_index = lib.pwvm_caller_mem_index
_getrefcount = sys.getrefcount


def _refs_when_only_cached() -> int:
    """What ``sys.getrefcount`` says in ``_settle`` of a wrapper held by nothing but the cache:
    the cache, the local variable, the argument (measured in the same shape, not assumed)."""
    cache = {0: object()}
    mem = cache[0]
    return _getrefcount(mem)


#: sys.getrefcount of a memory held by a Caller's cache alone, in _settle and the entries' copies
CACHED_REFS = _refs_when_only_cached()
_MEM_UNKNOWN = lib.PWVM_MEM_UNKNOWN
#: The Caller of each live store, by handle (see WasmtimeCaller).
CALLERS: dict[int, WasmtimeCaller] = {}


def caller_for(handle: int) -> WasmtimeCaller:
    """The Caller for a host call into the store ``handle`` (raises when the store cannot be named:
    a call from a finalizer of the store's reference cycle, see :func:`store_collected`)."""
    caller = CALLERS.get(handle)
    if caller is None:
        ref = STORES.get(handle)
        store = ref() if ref is not None else None
        if store is None:
            store_collected()
        caller = CALLERS[handle] = WasmtimeCaller(ref, store._sp, store._cores)  # type: ignore[arg-type]
    return caller


def _store_cleared(handle: int, forget: Callable[[int], None], ref: Any) -> None:
    """The callback of a store's weak reference (``forget`` bound when it was made)."""
    forget(handle)


def _forget_caller(handle: int, callers: dict[int, WasmtimeCaller] = CALLERS) -> None:
    """The store ``handle`` is going (its weak reference was cleared): its Caller stops working.

    ``callers`` is bound at definition: this also runs at interpreter exit, once the module's
    globals may already be gone."""
    caller = callers.pop(handle, None)
    if caller is not None:
        caller._sp = None
        caller._mem = None
        for mem in caller._mems.values():
            if mem._pin is None:  # held by the cache alone (_settle pinned any held elsewhere): a safeguard
                mem._kill()


class WasmtimeStore(Store):
    """A ``wasmtime_store_t`` owned by the shim's ``pwvm_store`` (``_sp``)."""

    # Set by _create (stores are made with object.__new__, not __init__).
    engine: WasmtimeEngine
    _rt: Runtime
    _limits: StoreLimits
    _handle: int  # this store's key in STORES
    _sp: Any  # cffi pwvm_store* (cdata)
    _externrefs: dict[int, Any]
    _keep: list[Any]  # host-function state that must live as long as the store
    _cores: dict[int, MemCore]  # its tracked memories by the shim's index (see _extern.MemCore)

    @classmethod
    def _create(cls, engine: WasmtimeEngine, limits: StoreLimits, data: Any) -> WasmtimeStore:
        rt = engine._rt
        api = rt.api
        s = object.__new__(cls)
        s.engine = engine
        s._rt = rt
        s.data = data
        s._limits = limits
        s._handle = next(_handles)
        sp = lib.pwvm_store_new(api, engine._ptr, s._handle)
        if sp == ffi.NULL:
            raise MemoryError("cannot allocate a wasmtime store")
        s._sp = sp  # freed by _store_gone, never by an ffi.gc destructor (see _lifetime)
        s._externrefs = {}
        s._keep = []
        s._cores = {}
        handle = s._handle
        # cleared (and its callback run) before any finalizer of a reference cycle holding the store
        STORES[handle] = weakref.ref(s, functools.partial(_store_cleared, handle, _forget_caller))
        NATIVE[s._handle] = sp
        release_after_finalizers(s, _store_gone, s._handle, sp)
        if limits.memory_bytes is not None or limits.table_elements is not None:
            api.wasmtime_store_limiter(
                sp.store,
                -1 if limits.memory_bytes is None else limits.memory_bytes,
                -1 if limits.table_elements is None else limits.table_elements,
                -1, -1, -1,
            )
        if limits.deadline is not None:
            s.set_deadline(limits.deadline)
        if limits.fuel is not None:
            s.set_fuel(limits.fuel)
        return s

    @property
    def _ctx(self) -> Any:
        """The live ``wasmtime_context_t*``; raises once the store is closed."""
        ctx = self._sp.ctx
        if ctx == ffi.NULL:
            raise WasmError("the store is closed")
        return ctx

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    def set_deadline(self, seconds: float | None) -> None:
        from ._engine import TICK_SECONDS

        if seconds is None:
            lib.pwvm_store_set_deadline(self._sp, 0)
            return
        if not self.engine.config.deadlines:
            raise ValueError("deadlines need EngineConfig(deadlines=True)")
        if not seconds > 0:
            raise ValueError("deadline must be > 0 seconds")
        self.engine._ensure_ticker()
        # +1: the deadline is counted from the current epoch, which is part-way through a tick.
        lib.pwvm_store_set_deadline(self._sp, max(1, math.ceil(seconds / TICK_SECONDS)) + 1)

    def get_fuel(self) -> int:
        rt = self._rt
        api = rt.api
        out = ffi.new("uint64_t*")
        err = api.wasmtime_context_get_fuel(self._ctx, out)
        if err != ffi.NULL:
            raise ValueError(rt.take_error_message(err))
        return out[0]

    def set_fuel(self, fuel: int) -> None:
        rt = self._rt
        api = rt.api
        err = api.wasmtime_context_set_fuel(self._ctx, fuel)
        if err != ffi.NULL:
            raise ValueError(rt.take_error_message(err))

    def close(self) -> None:
        # The wasmtime store goes now; the shim's struct stays until collected, with a NULL
        # context that every path checks, so objects of this store raise instead of crashing.
        if lib.pwvm_store_close(self._sp):
            raise WasmError("cannot close a store while wasm runs in it")

    # -- outcomes --------------------------------------------------------------
    def _raise_last(self, *, instantiating: bool = False) -> NoReturn:
        """Turn the shim's last outcome into the exception it stands for."""
        rt = self._rt
        api = rt.api
        sp = self._sp
        pending = PENDING.pop(self._handle, None) if PENDING else None
        status = sp.status
        sp.status = 0
        if status == 4:  # PWVM_CLOSED
            raise WasmError("the store is closed")
        if status == 3:  # PWVM_RANGE: an i32 argument out of range, nothing ran
            raise OverflowError("an i32 argument does not fit in 32 bits (-2**31 .. 2**32-1)")
        if status == 1:
            trap = sp.trap
            sp.trap = ffi.NULL
            code_out = ffi.new("uint8_t*")
            has_code = api.wasmtime_trap_code(trap, code_out)
            msg = rt.trap_message(trap)
            api.wasm_trap_delete(trap)
            if pending is not None and not has_code:
                raise pending
            if not has_code and _HOST_NOT_RUN in msg:
                raise Trap(TrapCode.STACK_OVERFLOW, msg)
            code = _TRAP_CODES.get(code_out[0], TrapCode.UNKNOWN) if has_code else TrapCode.UNKNOWN
            raise Trap(code, msg)
        err = sp.error
        sp.error = ffi.NULL
        msg = rt.take_error_message(err) if err != ffi.NULL else "unknown error"
        if pending is not None:
            raise pending
        if _HOST_NOT_RUN in msg:  # a trap made by the shim may come back as an error
            raise Trap(TrapCode.STACK_OVERFLOW, msg)
        if instantiating:
            low = msg.lower()
            if "memory minimum size" in low and "exceeds memory limits" in low or "resource limit exceeded" in low:
                raise Trap(TrapCode.MEMORY_LIMIT, msg)
            if "import" in low:
                named = re.search(r"`([^`]*)::([^`]*)`", msg)  # "incompatible import type for `env::mem`"
                raise LinkError(msg, module=named.group(1) if named else None, name=named.group(2) if named else None)
        raise WasmError(msg)

    # -- factories ------------------------------------------------------------
    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> WasmtimeFunc:
        from ._func import new_host_func

        return new_host_func(self, ty, fn, access_caller)

    def _memory_new(self, ty: MemoryType) -> WasmtimeMemory:
        rt = self._rt
        api = rt.api
        out = ffi.new("wasmtime_memory_t*")
        err = api.wasmtime_memory_new(self._ctx, rt.new_memorytype(ty), out)
        if err != ffi.NULL:
            raise WasmError(rt.take_error_message(err))
        return WasmtimeMemory._wrap(self, out, ty)

    def _global_new(self, ty: GlobalType, value: Any) -> WasmtimeGlobal:
        rt = self._rt
        api = rt.api
        from ._values import to_val

        val = ffi.new("wasmtime_val_t*")
        to_val(self, ty.content, value, val)
        out = ffi.new("wasmtime_global_t*")
        err = api.wasmtime_global_new(self._ctx, rt.new_globaltype(ty), val, out)
        if err != ffi.NULL:
            raise WasmError(rt.take_error_message(err))
        return WasmtimeGlobal._wrap(self, out, ty)

    def _table_new(self, ty: TableType, init: Any) -> WasmtimeTable:
        rt = self._rt
        api = rt.api
        from ._values import to_val

        val = ffi.new("wasmtime_val_t*")
        to_val(self, ty.element, init, val)
        out = ffi.new("wasmtime_table_t*")
        err = api.wasmtime_table_new(self._ctx, rt.new_tabletype(ty), val, out)
        if err != ffi.NULL:
            raise WasmError(rt.take_error_message(err))
        return WasmtimeTable._wrap(self, out, ty)

    def _instantiate(self, module: Any, imports: Sequence[Any]) -> WasmtimeInstance:
        from ._instance import WasmtimeInstance

        arr = ffi.new("wasmtime_extern_t[]", max(1, len(imports)))
        for i, item in enumerate(imports):
            if item.store is not self:
                raise ValueError(f"import #{i} belongs to another store")
            item._to_extern(arr[i])
        out = ffi.new("wasmtime_instance_t*")
        if lib.pwvm_instantiate(self._sp, module._ptr, arr, len(imports), out):
            self._raise_last(instantiating=True)
        return WasmtimeInstance._wrap(self, module, out)

    def _wrap_extern(self, ext: Any, ty: Any) -> Any:
        """A public object for a ``wasmtime_extern_t`` (``ty`` when known, else asked)."""
        rt = self._rt
        from ._func import wrap_func

        kind = ext.kind
        if kind == 0:
            f = ffi.new("wasmtime_func_t*", ext.of.func)
            return wrap_func(self, f, ty or rt.functype_of(self._ctx, f))
        if kind == 1:
            g = ffi.new("wasmtime_global_t*", getattr(ext.of, "global"))
            return WasmtimeGlobal._wrap(self, g, ty or rt.globaltype_of(self._ctx, g))
        if kind == 2:
            t = ffi.new("wasmtime_table_t*", ext.of.table)
            return WasmtimeTable._wrap(self, t, ty or rt.tabletype_of(self._ctx, t))
        if kind == 3:
            m = ffi.new("wasmtime_memory_t*", ext.of.memory)
            return WasmtimeMemory._wrap(self, m, ty or rt.memorytype_of(self._ctx, m))
        raise WasmError(f"unsupported extern kind {kind} (shared memories and tags are not supported)")

    # -- references -------------------------------------------------------------
    def _funcref_to_raw(self, v: Any) -> Any:
        rt = self._rt
        api = rt.api
        if v is None:
            return ffi.NULL
        if getattr(v, "store", None) is not self:
            raise TypeError("funcref must be a Func of this store or None")
        return api.wasmtime_func_to_raw(self._ctx, v._f)

    def _funcref_from_raw(self, raw: Any) -> Any:
        rt = self._rt
        api = rt.api
        if raw == ffi.NULL:
            return None
        from ._func import wrap_func

        f = ffi.new("wasmtime_func_t*")
        api.wasmtime_func_from_raw(self._ctx, raw, f)
        return wrap_func(self, f, rt.functype_of(self._ctx, f))

    def _funcref_to_val(self, v: Any, out: Any) -> None:
        if v is None:
            out.of.funcref.store_id = 0
            out.of.funcref.private_ = ffi.NULL
            return
        if getattr(v, "store", None) is not self:
            raise TypeError("funcref must be a Func of this store or None")
        out.of.funcref = v._f[0]

    def _funcref_from_val(self, val: Any) -> Any:
        rt = self._rt
        if val.of.funcref.store_id == 0:
            return None
        from ._func import wrap_func

        f = ffi.new("wasmtime_func_t*", val.of.funcref)
        return wrap_func(self, f, rt.functype_of(self._ctx, f))

    # externref: the host data is an index into this store's table of Python objects.
    def _externref_new(self, v: Any, out: Any) -> None:
        rt = self._rt
        api = rt.api
        key = id(v)
        self._externrefs[key] = v
        if not api.wasmtime_externref_new(self._ctx, ffi.cast("void*", key), ffi.NULL, out):
            raise WasmError("cannot allocate an externref")

    def _externref_to_raw(self, v: Any) -> int:
        rt = self._rt
        api = rt.api
        if v is None:
            return 0
        ref = ffi.new("wasmtime_externref_t*")
        self._externref_new(v, ref)
        raw = api.wasmtime_externref_to_raw(self._ctx, ref)
        self._keep_ref(ref)
        return raw

    def _keep_ref(self, ref: Any) -> None:
        # Rooted until the store goes: raw values must stay valid during the call.
        self._keep.append(ref)

    def _externref_from_raw(self, raw: int) -> Any:
        rt = self._rt
        api = rt.api
        if raw == 0:
            return None
        ref = ffi.new("wasmtime_externref_t*")
        api.wasmtime_externref_from_raw(self._ctx, raw, ref)
        key = int(ffi.cast("uintptr_t", api.wasmtime_externref_data(self._ctx, ref)))
        api.wasmtime_externref_unroot(ref)
        return self._externrefs.get(key)

    def _externref_to_val(self, v: Any, out: Any) -> None:
        if v is None:
            ffi.memmove(ffi.addressof(out.of), b"\0" * ffi.sizeof("wasmtime_valunion_t"), ffi.sizeof("wasmtime_valunion_t"))
            return
        self._externref_new(v, ffi.addressof(out.of, "externref"))

    def _externref_from_val(self, val: Any) -> Any:
        rt = self._rt
        api = rt.api
        if val.of.externref.store_id == 0:
            return None
        key = int(ffi.cast("uintptr_t", api.wasmtime_externref_data(self._ctx, ffi.addressof(val.of, "externref"))))
        return self._externrefs.get(key)


_new = object.__new__
