"""Store and Caller of the V8 backend, and how outcomes become exceptions."""

from __future__ import annotations

import itertools
import re
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from proxywasm_vm._errors import LimitError, LinkError, Trap, TrapCode, WasmError
from proxywasm_vm._func import Caller
from proxywasm_vm._lifetime import release_after_finalizers
from proxywasm_vm._memory import PAGE_SIZE
from proxywasm_vm._store import Store, StoreLimits
from proxywasm_vm._types import FuncType, GlobalType, MemoryType, TableType, ValType
from proxywasm_vm._values import wrap_v128

from ._extern import V8Memory
from ._ffi import ffi, last_error, lib

if TYPE_CHECKING:
    from ._engine import V8Engine, V8Module
    from ._extern import V8Global, V8Instance, V8Table, _Core
    from ._func import V8Func, _Binding

# pwv8_code -> TrapCode (the shim's classify() reads V8's RuntimeError messages).
# Two pairs of traps share one V8 message, so one of each pair is reported as the other
# (Capabilities.exact_trap_codes is False): "null function or function signature mismatch"
# is a call_indirect of a null entry or of a mistyped one (INDIRECT_CALL_TYPE_MISMATCH), and
# "float unrepresentable in integer range" a truncation of NaN or of an out-of-range float
# (BAD_CONVERSION_TO_INTEGER; the spec calls the second an integer overflow). Telling them
# apart would need the operand, which the message does not carry.
_TRAP_CODES = {
    2: TrapCode.UNREACHABLE,
    3: TrapCode.MEMORY_OUT_OF_BOUNDS,
    4: TrapCode.INTEGER_DIVIDE_BY_ZERO,
    5: TrapCode.INTEGER_OVERFLOW,
    6: TrapCode.BAD_CONVERSION_TO_INTEGER,
    7: TrapCode.STACK_OVERFLOW,
    8: TrapCode.INDIRECT_CALL_TYPE_MISMATCH,
    9: TrapCode.TABLE_OUT_OF_BOUNDS,
    10: TrapCode.INDIRECT_CALL_TO_NULL,  # a null reference ("dereferencing a null pointer"), as wasmtime reports it
    11: TrapCode.INTERRUPTED,
    13: TrapCode.UNKNOWN,
    14: TrapCode.HEAP_MISALIGNED,
}
HOST_ERROR = 12
RANGE = 15
CLOSED = 16

#: Python Store objects by the id the shim hands to host trampolines.
STORES: dict[int, weakref.ref[V8Store]] = {}
#: By the same id: the store's outcome slots (where a host function's failure is flagged) and
#: the exception it raised, re-raised by the call into wasm. Not through the Store object: a
#: call made from a finalizer of the store's reference cycle runs after the collector cleared
#: the weak references to the store (see :mod:`proxywasm_vm._lifetime`), and must fail the same.
STATES: dict[int, Any] = {}
PENDING: dict[int, BaseException] = {}
_handles = itertools.count(1)


def park(handle: int, exc: BaseException) -> None:
    """Called by a host-function adapter that raised: the call into wasm re-raises ``exc``."""
    PENDING[handle] = exc
    STATES[handle].host_failed = 1


def _cleanup(handle: int, hids: list[int], sp: Any) -> None:
    """The store's release, when it is deallocated (see :mod:`proxywasm_vm._lifetime`)."""
    from ._func import HOST_STORE, HOSTS

    STORES.pop(handle, None)
    STATES.pop(handle, None)
    PENDING.pop(handle, None)
    for h in hids:
        HOSTS.pop(h, None)
        HOST_STORE.pop(h, None)
    lib.pwv8_store_delete(sp)


class V8Caller(Caller):
    """What a host function knows of its caller.

    V8 does not tell a host function which instance called it, so the caller
    is the instance the function was last imported into (every Linker
    instantiation makes its own host functions, so that is exact there).
    """

    __slots__ = ("_binding", "_store")

    def __init__(self, store: V8Store, binding: Any) -> None:
        self._store = store
        self._binding = binding

    @property
    def store(self) -> V8Store:
        return self._store

    def get_export(self, name: str) -> Any:
        b = self._binding
        inst = b.instance() if b.instance is not None else None
        if inst is not None:
            return inst.exports.get(name)
        if name == "memory" and b.memory is not None:  # the start function is running
            return self.memory
        return None

    @property
    def memory(self) -> V8Memory | None:
        core = self._binding.memory
        return None if core is None else V8Memory._from_core(self._store, core)


class V8Store(Store):
    """A handle table (``_sp``) in the isolate its engine keeps for the creating thread, with the
    engine's compiled modules (see the header comment of ``_shim.cpp``)."""

    # Set by _create (stores are made with object.__new__, not __init__).
    engine: V8Engine
    _limits: StoreLimits
    _handle: int  # this store's key in STORES
    _sp: Any  # cffi pwv8_store* (cdata)
    _state: Any  # cffi pwv8_state* (status, host_failed) of the store
    _externrefs: dict[int, Any]
    _cores: dict[int, _Core]  # memory cores by their pwv8_meminfo address
    _hids: list[int]  # host functions of this store, dropped with it
    _max_stack: int
    _closed: bool

    @classmethod
    def _create(cls, engine: V8Engine, limits: StoreLimits, data: Any) -> V8Store:
        s = object.__new__(cls)
        s.engine = engine
        s.data = data
        s._limits = limits
        s._handle = next(_handles)
        sp = lib.pwv8_store_new(engine._ptr, s._handle)
        if sp == ffi.NULL:
            raise MemoryError("cannot create a V8 isolate")
        s._sp = sp  # freed by _cleanup, never by an ffi.gc destructor (see _lifetime)
        s._state = lib.pwv8_store_state(sp)
        s._externrefs = {}
        s._cores = {}
        s._hids = []
        s._max_stack = engine.config.max_wasm_stack or 0
        s._closed = False
        STORES[s._handle] = weakref.ref(s)
        STATES[s._handle] = s._state
        release_after_finalizers(s, _cleanup, s._handle, s._hids, sp)
        if limits.deadline is not None or s._max_stack:
            s.set_deadline(limits.deadline)
        return s

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    def set_deadline(self, seconds: float | None) -> None:
        if seconds is not None:
            if not self.engine.config.deadlines:
                raise ValueError("deadlines need EngineConfig(deadlines=True)")
            if not seconds > 0:
                raise ValueError("deadline must be > 0 seconds")
        ns = 0 if seconds is None else max(1, int(seconds * 1e9))
        lib.pwv8_store_set_limits(self._sp, ns, self._max_stack)

    def interrupt(self) -> bool:
        """Stop the call running in this store now (from any thread)."""
        return bool(lib.pwv8_store_interrupt(self._sp))

    def close(self) -> None:
        # Its objects are released now (the isolate goes with the thread's last store); the
        # shim's struct stays until collected and
        # answers PWV8_CLOSED, so objects of this store raise instead of crashing.
        if lib.pwv8_store_close(self._sp):
            raise WasmError("cannot close a store while wasm runs in it")
        self._closed = True

    # -- outcomes --------------------------------------------------------------
    def _raise(self, status: int, *, instantiating: V8Module | None = None) -> NoReturn:
        """Turn a shim status into the exception it stands for."""
        self._state.status = 0
        pending = PENDING.pop(self._handle, None) if PENDING else None
        msg = last_error()
        if status == RANGE:
            raise OverflowError(msg)
        if status == CLOSED:
            raise WasmError("the store is closed")
        if status == HOST_ERROR or (pending is not None and status != 11):
            if pending is not None:
                raise pending
            raise Trap(TrapCode.HOST_ERROR, msg)
        code = _TRAP_CODES.get(status)
        if code is not None:
            raise Trap(code, msg)
        if instantiating is not None and msg.startswith("LinkError"):
            # V8 names the import by index ("memory import 0 is smaller ...",
            # "Import #3 module=...") or by name; the module says which it is.
            m = re.search(r'module="([^"]*)" \w+="([^"]*)"', msg)
            if m:
                raise LinkError(msg, module=m.group(1), name=m.group(2))
            m = re.search(r"[Ii]mport #?(\d+)", msg)
            imps = instantiating.imports
            if m and int(m.group(1)) < len(imps):
                imp = imps[int(m.group(1))]
                raise LinkError(msg, module=imp.module, name=imp.name, expected=imp.type)
            raise LinkError(msg)
        raise WasmError(msg)

    def _raise_last(self) -> NoReturn:
        self._raise(self._state.status)

    # -- factories ------------------------------------------------------------
    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> V8Func:
        from ._func import new_host_func

        return new_host_func(self, ty, fn, access_caller)

    def _cap(self, lim: Any, limit: int | None, unit: int, what: str) -> int:
        """The maximum to create with: the declared one capped by the store's limit (-1: none)."""
        mx = -1 if lim.max is None else lim.max
        if limit is None:
            return mx
        cap = limit // unit
        if lim.min > cap:
            raise Trap(TrapCode.MEMORY_LIMIT, f"{what} minimum size {lim.min} exceeds the store limit of {cap}")
        return cap if mx < 0 else min(mx, cap)

    def _new_memory_ref(self, ty: MemoryType) -> int:
        if ty.is_64 or ty.shared:
            raise ValueError("64-bit and shared memories are not supported by the v8 backend")
        lim = ty.limits
        if lim.min > 65536 or (lim.max is not None and lim.max > 65536):  # before the store's cap hides it
            raise ValueError(f"a 32-bit memory has at most 65536 pages, got limits {lim.min}..{lim.max}")
        mx = self._cap(ty.limits, self._limits.memory_bytes, PAGE_SIZE, "memory")
        out = ffi.new("uint32_t*")
        if lib.pwv8_memory_new(self._sp, ty.limits.min, mx, out):
            raise WasmError(last_error())
        return out[0]

    def _new_table_ref(self, ty: TableType, init: Any) -> int:
        from ._values import KIND, to_slot

        mx = self._cap(ty.limits, self._limits.table_elements, 1, "table")
        val = ffi.new("pwv8_val*")
        to_slot(self, ty.element, init, val)
        out = ffi.new("uint32_t*")
        if lib.pwv8_table_new(self._sp, KIND[ty.element], ty.limits.min, mx, val, out):
            raise WasmError(last_error())
        return out[0]

    def _memory_new(self, ty: MemoryType) -> V8Memory:
        try:
            ref = self._new_memory_ref(ty)
        except Trap as e:
            raise LimitError(e.message) from None
        return V8Memory._wrap(self, ref, ty)

    def _global_new(self, ty: GlobalType, value: Any) -> V8Global:
        from proxywasm_vm._rawbridge import global_maker, needs_bridge

        from ._extern import V8Global
        from ._values import KIND, to_slot

        if needs_bridge((ty.content,), True):  # f32/f64/v128: defined by a module, its bits a constant there
            from ._func import bridge

            g: V8Global = bridge(self, global_maker(ty, value), []).exports["g"]
            if ty.content is ValType.V128 and not ty.mutable:
                g._const = wrap_v128(value)  # V8 cannot read it back (see V8Global.get)
            return g

        val = ffi.new("pwv8_val*")
        to_slot(self, ty.content, value, val)
        out = ffi.new("uint32_t*")
        if lib.pwv8_global_new(self._sp, KIND[ty.content], 1 if ty.mutable else 0, val, out):
            raise WasmError(last_error())
        return V8Global._wrap(self, out[0], ty)

    def _table_new(self, ty: TableType, init: Any) -> V8Table:
        from ._extern import V8Table

        try:
            ref = self._new_table_ref(ty, init)
        except Trap as e:
            raise LimitError(e.message) from None
        return V8Table._wrap(self, ref, ty)

    def _instantiate(self, module: Any, imports: Sequence[Any]) -> V8Instance:
        from ._extern import V8Global, V8Instance, core_of
        from ._func import V8Func, rebind

        refs = []
        hosts: list[_Binding] = []  # of the host functions that take a Caller
        for i, item in enumerate(imports):
            if item.store is not self:
                raise ValueError(f"import #{i} belongs to another store")
            if isinstance(item, V8Global) and item.type.content is ValType.V128 and not item.type.mutable:
                # V8 (10.2) aborts the whole process here (unreachable code in its importer)
                raise LinkError("V8 cannot import an immutable v128 global (it would abort the process); "
                                "make the global mutable (Capabilities.immutable_v128_imports)")
            if isinstance(item, V8Func) and item._binding is not None:
                item = rebind(item)  # a Caller must see this instance: one function per instance
                assert item._binding is not None
                hosts.append(item._binding)
            refs.append(item._ref)
        # The module's own memories and tables, made here with the store's limits.
        mem_refs: dict[int, int] = {}
        for sy in module._synth:
            if sy.kind == "memory":
                mem_refs[sy.index] = self._new_memory_ref(sy.type)
                refs.append(mem_refs[sy.index])
            else:
                refs.append(self._new_table_ref(sy.type, None))
        # Host functions learn their caller's memory before the start function runs.
        if hosts:
            idx = module._memory_export
            mem_ref = None
            if idx is not None:
                mem_ref = mem_refs.get(idx)
                if mem_ref is None:
                    mems = [it for it in imports if isinstance(it, V8Memory)]
                    mem_ref = mems[idx]._ref if idx < len(mems) else None
            core = core_of(self, mem_ref) if mem_ref is not None else None
            for h in hosts:
                h.memory = core
        arr = ffi.new("uint32_t[]", refs or [0])
        out = ffi.new("uint32_t*")
        rc = lib.pwv8_instantiate(self._sp, module._ptr, arr, len(refs), out)
        if rc:
            self._raise(rc, instantiating=module)
        inst = V8Instance._wrap(self, module, out[0])
        for h in hosts:
            h.instance = weakref.ref(inst)
        return inst
