"""Parent-side proxies: the public classes, forwarding to a worker process.

Every proxy names an object of one worker (its connection and key). Engines,
modules and linkers outlive a worker: after a crash the engine starts a new one
and they are recreated there on first use (modules from the compiled-module
cache when the backend can serialize, else from their bytes). Stores and what
lives in them do not survive: using them afterwards raises WorkerCrashed.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, cast

from .._backend import Backend, Capabilities
from .._engine import Engine, EngineConfig
from .._errors import CompileError, LinkError
from .._func import Caller, Func
from .._global import Global
from .._instance import Instance
from .._lifetime import release_after_finalizers
from .._linker import Linker
from .._memory import Memory
from .._module import Module
from .._store import Store, StoreLimits
from .._table import Table
from .._types import FuncType, GlobalType, MemoryType, TableType, ValType
from .._wasmparse import ModuleInfo
from ._conn import DEFAULT_LANES, DEFAULT_REMOTE_LANES, Connection, HostEntry, HostTable
from ._protocol import ExternRef, FuncRef

#: Engine options read by the isolation layer (removed before the worker sees the config).
ISOLATION_OPTIONS = ("worker_python", "call_timeout", "worker_spin", "worker_event_spin", "worker_mailbox",
                     "worker_lanes", "worker_remote_lanes", "worker_op_timeout", "worker_compile_timeout",
                     "worker_event_timeout")
#: Default bounds (seconds) on one crossing into a worker, by kind; the engine options
#: ``worker_<kind>_timeout`` change them (``None`` given explicitly: no bound). See crossing_timeout.
DEFAULT_BOUNDS: dict[str, float | None] = {"op": 10.0, "compile": 120.0, "event": 5.0}
#: A call into wasm may run this much past its store's deadline before the parent steps in:
#: ``2 * deadline + DEADLINE_SLACK`` (the runtime stops the call itself at the deadline).
DEADLINE_SLACK = 1.0


def crossing_timeout(bounds: dict[str, float | None], kind: str, deadline: float | None = None
                     ) -> tuple[float | None, str]:
    """How long the parent waits for its worker in one crossing, and the limit's name.

    The one place the bound of a crossing is decided (``bounds``: an engine's
    ``_bounds``, the defaults overridden by its options). ``kind``:

    - ``"call"``: a call into wasm, or an instantiation (it runs the start function).
      With a store deadline ``d``: ``2*d + 1`` s (the runtime stops the call at ``d``;
      this catches a worker that does not: stopped, wedged, or a runtime without
      deadlines); the engine option ``call_timeout`` when it is smaller (the limit of
      runtimes that cannot interrupt wasm, wasmer). Neither: no bound (no limit said).
    - ``"event"``: one stream event (or poll) of a plugin whose host runs in the worker:
      the engine option ``worker_event_timeout`` (5 s), or ``2*d + 1`` s for a plugin whose
      per-callback deadline ``d`` makes that longer. An event makes several wasm calls
      and host calls, so no product of the deadline bounds it; the option does.
    - ``"compile"``: compiling or loading a module, or loading a plugin (which compiles it
      and runs its start callbacks): ``worker_compile_timeout`` (120 s).
    - ``"op"``: anything else (memory, globals, tables, exports, stores, linkers):
      ``worker_op_timeout`` (10 s).

    Past the bound the worker is killed and reaped: ``Trap(INTERRUPTED)`` for a call
    into wasm or an event, :class:`~proxywasm_vm.WorkerCrashed` otherwise.
    """
    if kind == "call":
        t = bounds.get("call")
        if deadline is not None:
            hard = 2 * deadline + DEADLINE_SLACK
            if t is None or hard < t:
                return hard, f"the worker did not stop the call at its {deadline}s deadline"
        if t is not None:
            return t, f"the call ran past the engine's call_timeout of {t}s"
        return None, ""
    t = bounds.get(kind, DEFAULT_BOUNDS[kind])
    if kind == "event":
        if deadline is not None and (t is None or 2 * deadline + DEADLINE_SLACK > t):
            return 2 * deadline + DEADLINE_SLACK, f"a stream event ran past its plugin's {deadline}s deadline"
        if t is not None:
            return t, f"a stream event ran past the engine's worker_event_timeout of {t}s"
        return None, ""
    if t is None:
        return None, ""
    return t, ("compiling or loading ran past the engine's worker_compile_timeout of "
               f"{t}s" if kind == "compile" else f"the worker did not answer within worker_op_timeout ({t}s)")
#: Modules at least this big are written to the compiled-module cache when compiled, so a
#: restarted worker loads them instead of compiling again.
CACHE_FOR_RESTART = 16 * 1024


# ---- values -----------------------------------------------------------------------------

def _enc(store: Any, t: ValType, v: Any) -> Any:
    if t is ValType.FUNCREF:
        if v is None:
            return None
        if not isinstance(v, ProcessFunc) or v.store is not store:
            raise TypeError("funcref must be a Func of this store or None")
        return FuncRef(v._oid)
    if t is ValType.EXTERNREF:
        if v is None:
            return None
        key = id(v)
        store._ext[key] = v
        return ExternRef(key)
    return v


def _dec(store: Any, t: ValType, v: Any) -> Any:
    if isinstance(v, FuncRef):
        return ProcessFunc._wrap(store, v.oid, v.ty)
    if isinstance(v, ExternRef):
        return store._ext.get(v.key)
    return v


def enc_vals(store: Any, types: Sequence[ValType], vals: Any) -> Any:
    """Host-function results or call arguments, with references as handles."""
    if len(types) == 1 and not isinstance(vals, tuple):
        return _enc(store, types[0], vals)
    if not isinstance(vals, (tuple, list)):
        return vals  # the worker reports the arity error
    return tuple(_enc(store, t, v) for t, v in zip(types, vals)) + tuple(vals[len(types):])


def dec_vals(store: Any, types: Sequence[ValType], vals: Any) -> Any:
    if isinstance(vals, tuple):
        return tuple(_dec(store, t, v) for t, v in zip(types, vals))
    return _dec(store, types[0], vals) if types else vals


# ---- backend and engine -------------------------------------------------------------------

class ProcessBackend(Backend):
    """A backend run in worker processes (``isolation="process"``)."""

    isolation = "process"

    def __init__(self, name: str, base: str, python: str, info: dict[str, Any], in_process_reason: str = "") -> None:
        self.name = name
        self.base = base
        self.python = python
        self.info = info
        self.in_process_reason = in_process_reason
        inner: Capabilities = info["capabilities"]
        # threads: every parent thread can use the worker (a runtime whose objects are bound to one
        # thread gets a single worker thread, and calls from parent threads take turns)
        self._caps = replace(inner, memory_view=False, threads=True)
        self._spare: Connection | None = None
        self._spare_lock = threading.Lock()

    def version(self) -> str:
        return str(self.info["version"])

    def capabilities(self) -> Capabilities:
        return self._caps

    def new_engine(self, config: EngineConfig) -> ProcessEngine:
        return ProcessEngine._create(self, config)

    def _take_spare(self, python: str, config: EngineConfig) -> Connection | None:
        """The worker started by the availability probe, if it suits this engine."""
        with self._spare_lock:
            conn = self._spare
            if conn is None or conn.dead or conn.python != python or config != EngineConfig():
                return None
            self._spare = None
            return conn


def _split_options(config: EngineConfig) -> tuple[EngineConfig, dict[str, Any]]:
    mine = {k: v for k, v in config.options if k in ISOLATION_OPTIONS}
    rest = tuple((k, v) for k, v in config.options if k not in ISOLATION_OPTIONS)
    return replace(config, options=rest), mine


class ProcessEngine(Engine):
    """An engine whose runtime runs in a worker process.

    ``call_timeout`` (engine option, seconds): any one call into wasm (and any
    instantiation) that takes longer kills the worker and raises
    ``Trap(INTERRUPTED)``; every store of the engine is lost with it. It is the
    way to stop runaway code on backends that cannot interrupt wasm themselves.
    Every other crossing has a bound too (``worker_event_timeout``,
    ``worker_compile_timeout``, ``worker_op_timeout``): see :func:`crossing_timeout`.
    """

    # Set by _create (engines are made with object.__new__, not __init__).
    backend: ProcessBackend
    python: str
    call_timeout: float | None
    restarts: int
    _worker_config: EngineConfig
    _spin: float
    _event_spin: float
    _mailbox: int
    _lanes: int
    _remote_lanes: int
    _hosts: HostTable
    _hid: Iterator[int]
    _lock: threading.Lock
    _conn: Connection | None
    _reaper_box: list[Any]
    _bounds: dict[str, float | None]

    @classmethod
    def _create(cls, backend: ProcessBackend, config: EngineConfig) -> ProcessEngine:
        from .._store import is_default
        from . import resolve_worker_python

        stack = config.max_wasm_stack
        if stack is not None and not is_default(stack) and not backend.capabilities().max_wasm_stack:
            raise ValueError(f"the {backend.name} backend cannot configure the wasm stack size "
                             f"(Capabilities.max_wasm_stack)")
        self = object.__new__(cls)
        self.backend = backend
        self.config = config
        self._worker_config, opts = _split_options(config)
        self.python = resolve_worker_python(backend.base, opts.get("worker_python"))
        self.call_timeout = opts.get("call_timeout")
        self._bounds = {}
        for kind, default in DEFAULT_BOUNDS.items():
            value = opts.get(f"worker_{kind}_timeout", default)
            self._bounds[kind] = None if value is None else float(value)
        self._bounds["call"] = self.call_timeout
        self._spin = float(opts.get("worker_spin", 50e-6))
        self._event_spin = float(opts.get("worker_event_spin", 100e-6))
        self._mailbox = int(opts.get("worker_mailbox", 1 << 20))
        self._lanes = int(opts.get("worker_lanes", DEFAULT_LANES))
        self._remote_lanes = int(opts.get("worker_remote_lanes", DEFAULT_REMOTE_LANES))
        self._hosts = HostTable()
        self._hid = itertools.count(1)
        self._lock = threading.Lock()
        self._conn = backend._take_spare(self.python, config)
        if self._conn is not None:
            self._conn.hosts = self._hosts
            self._conn.op_timeout = self._bounds["op"]
            self._conn.bounds = self._bounds
        self.restarts = 0
        # The finalizer must reach nothing that may reach the engine back (host functions often
        # do): it holds only a box with the current worker's reaper (its Popen and pipe).
        self._reaper_box = [None]
        self._conn_now()  # start (or check) the worker now: fail early, not at the first call
        release_after_finalizers(self, _close_engine, self._reaper_box)
        return self

    # -- the worker -----------------------------------------------------------------------
    def _bound(self, kind: str, deadline: float | None = None) -> tuple[float | None, str]:
        """This engine's bound on a crossing of ``kind`` (see :func:`crossing_timeout`)."""
        return crossing_timeout(self._bounds, kind, deadline)

    def _conn_now(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.alive():  # a worker that died while idle is reaped and replaced here
            self._reaper_box[0] = conn.reaper
            return conn
        with self._lock:
            conn = self._conn
            if conn is None or conn.dead:
                if conn is not None:
                    self.restarts += 1
                conn = Connection(self.python, self.backend.base, self._worker_config, self._hosts,
                                  spin=self._spin, mailbox=self._mailbox, lanes=self._lanes,
                                  remote_lanes=self._remote_lanes,
                                  op_timeout=self._bounds["op"])
                conn.bounds = self._bounds
                self._conn = conn
            self._reaper_box[0] = conn.reaper
        return conn

    @property
    def worker_pid(self) -> int:
        """The process id of the current worker (starting one if needed)."""
        return self._conn_now().pid

    @property
    def worker_info(self) -> dict[str, Any]:
        """What the worker reported at start: pid, Python version, runtime version, capabilities."""
        conn = self._conn_now()
        return {**conn.info, "start_seconds": conn.start_seconds, "generation": conn.gen}

    def restart_worker(self) -> None:
        """Stop the worker now (its stores are lost); the next call starts a new one."""
        conn = self._conn
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Stop the worker. The engine stays usable: its next call starts a new one."""
        self.restart_worker()

    def _register_host(self, fn: Callable[..., Any], ty: FuncType, access_caller: bool, store: Any) -> int:
        hid = next(self._hid)
        self._hosts[hid] = HostEntry(fn, ty, access_caller, store)
        return hid

    def _cache_path(self, wasm: bytes) -> str | None:
        if not self.capabilities.serialize or len(wasm) < CACHE_FOR_RESTART:
            return None
        key = hashlib.sha256(wasm + self.config.fingerprint().encode()).hexdigest()  # as Module.cached
        return str(self.cache_dir / f"{key}.cwasm")

    # -- factories ------------------------------------------------------------------------------
    def _module_new(self, wasm: bytes) -> Module:
        path = self._cache_path(wasm)
        mod = ProcessModule._make(self, ("wasm", path))
        conn = self._conn_now()
        mod._oids[conn.gen] = conn.request("module_new", (wasm, path), *self._bound("compile"))
        return mod

    def _module_validate(self, wasm: bytes) -> bool:
        return self._conn_now().request("module_validate", (wasm,), *self._bound("compile"))

    def _module_deserialize(self, data: bytes) -> Module:
        mod = ProcessModule._make(self, ("bytes", data))
        mod._oid_for(self._conn_now())
        return mod

    def _module_deserialize_file(self, path: str) -> Module:
        mod = ProcessModule._make(self, ("file", path))
        mod._oid_for(self._conn_now())
        return mod

    def _store_new(self, limits: StoreLimits, data: Any) -> Store:
        return ProcessStore._create(self, limits, data)

    def _linker_new(self) -> Linker:
        return ProcessLinker._create(self)


def _close_engine(box: list[Any]) -> None:
    reaper = box[0]
    if reaper is not None:
        reaper.close()


class ProcessModule(Module):
    engine: ProcessEngine
    _recipe: tuple[str, Any]  # how to load it into a (new) worker: (kind, path or bytes)
    _oids: dict[int, int]  # worker generation -> module key there

    @classmethod
    def _make(cls, engine: ProcessEngine, recipe: tuple) -> ProcessModule:
        m = object.__new__(cls)
        m.engine = engine
        m._recipe = recipe
        m._oids = {}
        return m

    def _oid_for(self, conn: Connection) -> int:
        """This module's key in ``conn``'s worker, loading it there first if needed."""
        oid = self._oids.get(conn.gen)
        if oid is not None:
            return oid
        kind, arg = self._recipe
        budget, why = self.engine._bound("compile")
        if kind == "wasm":
            if arg and os.path.exists(arg):
                try:
                    oid = conn.request("module_deserialize_file", (arg, self._wasm), budget, why)
                except CompileError:
                    oid = None
            if oid is None:
                oid = conn.request("module_new", (self._wasm, arg), budget, why)
        elif kind == "file":
            oid = conn.request("module_deserialize_file", (arg, self._wasm), budget, why)
        else:
            oid = conn.request("module_deserialize", (arg, self._wasm), budget, why)
        self._oids = {conn.gen: oid}  # keys of dead workers are useless
        return oid

    def _module_info(self) -> Any:
        if self._info is None and self._wasm is None:
            conn = self.engine._conn_now()
            imports, exports = conn.request("module_types", (self._oid_for(conn),))
            info = ModuleInfo()
            info.imports.extend(imports)
            info.exports.extend(exports)
            self._info = info
        return super()._module_info()

    def serialize(self) -> bytes:
        conn = self.engine._conn_now()
        return conn.request("module_serialize", (self._oid_for(conn),), *self.engine._bound("compile"))


# ---- stores and their objects ---------------------------------------------------------------

def _release(conn_ref: weakref.ref, oid: int) -> None:
    conn = conn_ref()
    if conn is not None and not conn.dead:
        conn.released.append(oid)


class ProcessStore(Store):
    engine: ProcessEngine
    _limits: StoreLimits
    _conn: Connection
    _deadline: float | None
    _call_budget: tuple[float | None, str]  # the bound of one call (crossing_timeout), kept with the deadline
    _ext: dict[int, Any]  # externref key -> the host value it stands for
    _hids: list[int]  # keys of this store's host functions in engine._hosts
    _sid: int
    _closed: bool

    @classmethod
    def _create(cls, engine: ProcessEngine, limits: StoreLimits, data: Any) -> ProcessStore:
        conn = engine._conn_now()
        s = object.__new__(cls)
        s.engine = engine
        s.data = data
        s._limits = limits
        s._conn = conn
        s._deadline = limits.deadline
        s._call_budget = engine._bound("call", limits.deadline)
        s._ext = {}
        s._hids = []
        s._sid = conn.request("store_new", (limits,))
        s._closed = False
        conn.stores[s._sid] = weakref.ref(s)
        # weak references only: host functions often capture their store
        release_after_finalizers(s, _store_gone, weakref.ref(conn), s._sid, weakref.ref(engine._hosts), s._hids)
        return s

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    @property
    def worker_pid(self) -> int:
        """The process id of the worker this store lives in."""
        return self._conn.pid

    def _budget(self) -> tuple[float | None, str]:
        """How long one call may take before the parent kills the worker, and why."""
        return self._call_budget

    def set_deadline(self, seconds: float | None) -> None:
        self._conn.request("store_set_deadline", (self._sid, seconds))
        self._deadline = seconds
        self._call_budget = self.engine._bound("call", seconds)

    def get_fuel(self) -> int:
        return self._conn.request("store_get_fuel", (self._sid,))

    def set_fuel(self, fuel: int) -> None:
        self._conn.request("store_set_fuel", (self._sid, fuel))

    def close(self) -> None:
        if self._closed or self._conn.dead:
            return
        self._conn.request("store_close", (self._sid,))
        self._closed = True

    def _check(self, item: Any, what: str) -> int:
        if getattr(item, "store", None) is not self:
            raise ValueError(f"{what} belongs to another store")
        return item._oid

    # -- factories ---------------------------------------------------------------------------
    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> Func:
        hid = self.engine._register_host(fn, ty, access_caller, self)
        self._hids.append(hid)
        oid = self._conn.request("func_new", (self._sid, hid, ty, access_caller))
        return ProcessFunc._wrap(self, oid, ty)

    def _memory_new(self, ty: MemoryType) -> Memory:
        return ProcessMemory._wrap(self, self._conn.request("memory_new", (self._sid, ty)), ty)

    def _global_new(self, ty: GlobalType, value: Any) -> Global:
        oid = self._conn.request("global_new", (self._sid, ty, _enc(self, ty.content, value)))
        return ProcessGlobal._wrap(self, oid, ty)

    def _table_new(self, ty: TableType, init: Any) -> Table:
        oid = self._conn.request("table_new", (self._sid, ty, _enc(self, ty.element, init)))
        return ProcessTable._wrap(self, oid, ty)

    def _instantiate(self, module: Any, imports: Sequence[Any]) -> Instance:
        conn = self._conn
        keys = [self._check(item, f"import #{i}") for i, item in enumerate(imports)]
        budget, why = self._budget()
        iid = conn.request("instantiate", (self._sid, module._oid_for(conn), keys), budget, why)
        return ProcessInstance._wrap(self, module, iid)


def _store_gone(conn_ref: weakref.ref, sid: int, hosts_ref: weakref.ref, hids: list[int]) -> None:
    hosts = hosts_ref()
    if hosts is not None:
        for hid in hids:
            hosts.pop(hid, None)
    conn = conn_ref()
    if conn is not None:
        conn.stores.pop(sid, None)
    _release(conn_ref, sid)


def _wrap_desc(store: ProcessStore, desc: tuple | None) -> Any:
    if desc is None:
        return None
    kind, oid, ty = desc
    return _WRAP[kind]._wrap(store, oid, ty)


class _InWorker:
    """An extern that lives in the worker, known here by its object id.

    The worker's object is released when this proxy is collected.
    """

    store: Any  # narrowed to ProcessStore by each class (the public bases declare Store)
    type: Any
    _conn: Connection
    _oid: int

    @classmethod
    def _wrap(cls, store: ProcessStore, oid: int, ty: Any) -> Any:
        obj = object.__new__(cls)
        obj.store = store
        obj.type = ty
        obj._conn = store._conn
        obj._oid = oid
        release_after_finalizers(obj, _release, weakref.ref(obj._conn), oid)
        obj._init()
        return obj

    def _init(self) -> None:
        """Per-class set-up after ``_wrap`` (derived state)."""


class ProcessFunc(_InWorker, Func):
    store: ProcessStore
    _n: int  # number of parameters
    _refs: bool  # any funcref/externref parameter or result

    def _init(self) -> None:
        ty = self.type
        self._n = len(ty.params)
        self._refs = any(t.is_ref for t in ty.params + ty.results)

    def __call__(self, *args: Any) -> Any:
        if len(args) != self._n:
            raise TypeError(f"expected {self._n} arguments, got {len(args)}")
        store = self.store
        budget, why = store._call_budget
        if not self._refs:
            return self._conn.request("call", (self._oid, args), budget, why)
        ty = self.type
        r = self._conn.request("call_refs", (self._oid, enc_vals(store, ty.params, args)), budget, why)
        return dec_vals(store, ty.results, r)

    def _call_raw(self, args: tuple) -> Any:
        if len(args) != self._n:
            raise TypeError(f"expected {self._n} arguments, got {len(args)}")
        store = self.store
        budget, why = store._call_budget
        ty = self.type
        args = tuple(_enc(store, t, v) for t, v in zip(ty.params, args)) if self._refs else args
        r = self._conn.request("call_raw", (self._oid, args), budget, why)
        return dec_vals(store, ty.results, r) if self._refs else r


class ProcessMemory(_InWorker, Memory):
    store: ProcessStore

    @property
    def size(self) -> int:
        return self._conn.request("mem_size", (self._oid,))[0]

    @property
    def data_size(self) -> int:
        return self._conn.request("mem_size", (self._oid,))[1]

    def grow(self, delta: int) -> int:
        return self._conn.request("mem_grow", (self._oid, delta))

    def read(self, offset: int, length: int) -> bytes:
        return self._conn.request("mem_read", (self._oid, offset, length))

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._conn.request("mem_write", (self._oid, offset, bytes(data)))

    def view(self) -> memoryview:
        raise NotImplementedError(
            "Memory.view() is a zero-copy view, which cannot reach a worker process's memory "
            "(Capabilities.memory_view is False): use read() and write()")


class ProcessGlobal(_InWorker, Global):
    store: ProcessStore

    def get(self, raw: bool = False) -> Any:
        return _dec(self.store, self.type.content, self._conn.request("global_get", (self._oid, raw)))

    def set(self, value: Any) -> None:
        self._conn.request("global_set", (self._oid, _enc(self.store, self.type.content, value)))


class ProcessTable(_InWorker, Table):
    store: ProcessStore

    @property
    def size(self) -> int:
        return self._conn.request("table_size", (self._oid,))

    def get(self, index: int) -> Any:
        return _dec(self.store, self.type.element, self._conn.request("table_get", (self._oid, index)))

    def set(self, index: int, value: Any) -> None:
        self._conn.request("table_set", (self._oid, index, _enc(self.store, self.type.element, value)))

    def grow(self, delta: int, init: Any = None) -> int:
        return self._conn.request("table_grow", (self._oid, delta, _enc(self.store, self.type.element, init)))


_WRAP: dict[str, Any] = {"f": ProcessFunc, "m": ProcessMemory, "g": ProcessGlobal, "t": ProcessTable}


class ProcessCaller(Caller):

    def __init__(self, store: ProcessStore, conn: Connection, cid: int) -> None:
        self._store = store
        self._conn = conn
        self._cid = cid

    @property
    def store(self) -> ProcessStore:
        return self._store

    def _id(self) -> int:
        if not self._cid:
            from .._errors import WasmError

            raise WasmError("Caller used outside of its host function call")
        return self._cid

    def get_export(self, name: str) -> Any:
        return _wrap_desc(self._store, self._conn.request("caller_export", (self._id(), name)))

    @property
    def memory(self) -> Any:
        return _wrap_desc(self._store, self._conn.request("caller_memory", (self._id(),)))


class ProcessInstance(Instance):
    store: ProcessStore
    _conn: Connection
    _oid: int

    @classmethod
    def _wrap(cls, store: ProcessStore, module: Any, iid: int) -> ProcessInstance:
        i = object.__new__(cls)
        i.store = store
        i.module = module
        i._conn = store._conn
        i._oid = iid
        release_after_finalizers(i, _release, weakref.ref(i._conn), iid)
        return i

    def _export(self, name: str) -> Any:
        desc = self._conn.request("export", (self._oid, name))
        if desc is None:
            raise KeyError(f"no export named {name!r}")
        return _wrap_desc(self.store, desc)


class ProcessLinker(Linker):
    """A linker living in the worker: host functions are defined there once (trampolines
    back to this process) and each instantiation is one request."""

    engine: ProcessEngine
    _lids: dict[int, int]  # worker generation -> linker key there
    _hid_of: dict[tuple[str, str], int]  # (module, name) -> host function key in engine._hosts

    @classmethod
    def _create(cls, engine: ProcessEngine) -> ProcessLinker:
        self = object.__new__(cls)
        self._setup(engine)
        self._lids = {}
        self._hid_of = {}
        release_after_finalizers(self, _linker_gone, weakref.ref(engine), self._hid_of, self._lids)
        return self

    def _live_lid(self) -> tuple[Connection, int] | None:
        conn = self.engine._conn
        if conn is None or conn.dead or conn.gen not in self._lids:
            return None
        return conn, self._lids[conn.gen]

    def _define_func(self, module: str, name: str, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> None:
        super()._define_func(module, name, ty, fn, access_caller)
        old = self._hid_of.pop((module, name), None)
        if old is not None:
            self.engine._hosts.pop(old, None)
        hid = self._hid_of[(module, name)] = self.engine._register_host(fn, ty, access_caller, None)
        live = self._live_lid()
        if live is not None:
            conn, lid = live
            conn.request("linker_func", (lid, module, name, ty, hid, access_caller))

    def define(self, module: str, name: str, item: Any) -> None:
        super().define(module, name, item)
        live = self._live_lid()
        if live is not None and item._conn is live[0]:
            live[0].request("linker_define", (live[1], module, name, item._oid))

    def _lid_for(self, conn: Connection) -> int:
        lid = self._lids.get(conn.gen)
        if lid is not None:
            return lid
        lid = conn.request("linker_new", ())
        for (module, name), d in self._funcs.items():
            conn.request("linker_func", (lid, module, name, d.ty, self._hid_of[(module, name)], d.access_caller))
        for (module, name), item in self._externs.items():
            if getattr(item, "_conn", None) is conn:  # externs of a dead worker are gone with it
                # so a Process{Func,Memory,Global,Table}, which all have _oid
                conn.request("linker_define", (lid, module, name, cast(Any, item)._oid))
        self._lids.clear()  # (in place: _linker_gone holds this dict) a dead worker's linker went with it
        self._lids[conn.gen] = lid
        return lid

    def instantiate(self, store: Any, module: Any) -> Instance:
        if module.engine is not self.engine or store.engine is not self.engine:
            raise ValueError("linker, store and module must share one engine")
        for imp in module.imports:
            if not self.has(imp.module, imp.name):
                raise LinkError(f"missing import {imp.module}::{imp.name} ({imp.type})",
                                module=imp.module, name=imp.name, expected=imp.type)
        conn = store._conn
        if conn.dead:
            raise conn.lost()
        budget, why = store._budget()
        iid = conn.request("linker_instantiate", (self._lid_for(conn), store._sid, module._oid_for(conn)), budget, why)
        return ProcessInstance._wrap(store, module, iid)


def _linker_gone(engine_ref: weakref.ref, hid_of: dict[tuple[str, str], int], lids: dict[int, int]) -> None:
    """A linker was dropped: its host functions leave the engine's table, and its twin in the live
    worker is released with the next batch (each one held the definitions: ~6 KB per linker)."""
    engine = engine_ref()
    if engine is None:
        return
    for hid in hid_of.values():
        engine._hosts.pop(hid, None)
    conn = engine._conn
    if conn is not None and not conn.dead and conn.gen in lids:
        conn.released.append(lids[conn.gen])
