"""The backend contract: everything a runtime adapter implements, in one place.

A backend adapts one WebAssembly runtime to the public classes of this package.
It provides:

- a :class:`Backend` object (``BACKEND`` in its module, registered by name in
  :mod:`proxywasm_vm._backend`), which states its :class:`Capabilities` and makes
  engines;
- a subclass of each public class: :class:`~proxywasm_vm.Engine`,
  :class:`~proxywasm_vm.Module`, :class:`~proxywasm_vm.Store`,
  :class:`~proxywasm_vm.Instance`, :class:`~proxywasm_vm.Func`,
  :class:`~proxywasm_vm.Caller`, :class:`~proxywasm_vm.Memory`,
  :class:`~proxywasm_vm.Global` and :class:`~proxywasm_vm.Table` (and optionally
  :class:`~proxywasm_vm.Linker`). Each public class derives from the abstract
  class of the same role below, so a backend class that misses a required
  method cannot be instantiated (``TypeError``).

How it is enforced, and why not with ``abc.abstractmethod``: the public classes
are what users construct (``Store(engine)`` returns the backend's store), so a
type checker must see them as concrete, and ``abc.abstractmethod`` would make
mypy report every ``Store(engine)`` in user code as instantiating an abstract
class. Required methods are marked with :func:`required` instead: Python
refuses to instantiate a backend class that leaves one of them unimplemented
(``TypeError: Can't instantiate abstract class ...``, exactly as for an ABC;
``inspect.isabstract`` agrees), while type checkers see a plain method. The
bases use no metaclass (``__init_subclass__`` keeps ``__abstractmethods__``), so
``isinstance(x, Func)`` costs what it does for any class (an ``ABCMeta`` check
costs about 4x more, and host functions run such checks per call).

They are nominal base classes rather than ``typing.Protocol``\\ s because the
relation is nominal already: every backend object *is* an instance of the public
class (user code checks ``isinstance(x, Memory)``), the public constructors
dispatch to the backend's factory methods, and the public classes carry shared
behaviour (``Memory.read_u32``, ``Module.imports``, the generic linker); a
protocol would be checked only where mypy sees an assignment.

Methods marked :func:`required` must be implemented. The others are optional
hooks whose default is right for a backend lacking the feature; a backend
overrides them when the matching capability is true (``_module_deserialize``
with ``Capabilities.serialize``, ``get_fuel``/``set_fuel`` with ``fuel``).
Backend objects are created with ``object.__new__(cls)`` in a ``_create`` /
``_wrap`` class method (never through the public ``__new__``, which dispatches
to the backend). ``tests/test_contract.py`` checks every registered backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar, cast

from ._features import WASM2_FEATURES

if TYPE_CHECKING:
    from ._engine import Engine, EngineConfig
    from ._func import Func
    from ._global import Global
    from ._instance import Extern, Instance
    from ._linker import Linker
    from ._memory import Memory
    from ._module import Module
    from ._store import Store, StoreLimits
    from ._table import Table
    from ._types import FuncType, GlobalType, MemoryType, TableType
    from ._wasmparse import ModuleInfo

__all__ = ["required", "AbstractCaller", "AbstractEngine", "AbstractFunc", "AbstractGlobal", "AbstractInstance",
           "AbstractMemory", "AbstractModule", "AbstractStore", "AbstractTable", "Backend", "Capabilities", "ROLES"]


_F = TypeVar("_F", bound=Callable[..., Any])


def required(method: _F) -> _F:
    """Mark ``method`` as one every backend implements (see the module docstring).

    A subclass of a contract class that does not override it cannot be instantiated.
    Put it under ``@property`` for a required property.
    """
    method.__isabstractmethod__ = True  # type: ignore[attr-defined]  # the flag abc and inspect read
    return method


class _Contract:
    """Base of the contract classes: keeps ``__abstractmethods__`` (the names of :func:`required`
    methods not overridden) on every subclass, which makes ``object.__new__`` refuse classes with any."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        marked = {name for klass in cls.__mro__ for name, value in vars(klass).items()
                  if getattr(value, "__isabstractmethod__", False)}
        missing = frozenset(name for name in marked if getattr(getattr(cls, name, None), "__isabstractmethod__", False))
        # type.__abstractmethods__ is writable on any class; setting it sets the flag object.__new__ checks.
        setattr(cls, "__abstractmethods__", missing)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. Tests and callers check these instead of names."""

    fuel: bool = False
    """Deterministic instruction budgets (``StoreLimits.fuel``)."""
    deadline: bool = False
    """Wall-clock deadlines that interrupt running wasm (``StoreLimits.deadline``)."""
    memory_limit: bool = False
    """A cap on linear-memory bytes per store (``StoreLimits.memory_bytes``)."""
    exact_memory_limit: bool = True
    """With ``memory_limit``: ``memory.grow`` returns -1 exactly where it would pass the cap
    (wasmer in a worker process: within 16 MiB past it, see :mod:`proxywasm_vm._guard`)."""
    interrupt_keeps_store: bool = True
    """With ``deadline``: after ``Trap(INTERRUPTED)`` the store stays usable (wasmer in a worker
    process: the worker is stopped at the deadline and replaced, its stores are lost)."""
    max_wasm_stack: bool = False
    """A configurable wasm stack size (``EngineConfig.max_wasm_stack``)."""
    serialize: bool = False
    """Compiled modules can be serialized and loaded again (the module cache)."""
    table_access: bool = False
    """Tables support get, set and grow from Python."""
    reference_values: bool = False
    """funcref and externref values can cross into and out of wasm."""
    reference_types: bool = True
    """Modules using the reference-types proposal in their code compile (funcref/externref
    params, results and locals, ``table.get``, ``ref.null`` ...; wasm3 0.5.0 refuses them)."""
    v128_values: bool = False
    """v128 values can cross into and out of wasm (exports, host functions and globals)."""
    immutable_v128_imports: bool = True
    """An immutable v128 global can be imported by a module. V8 (10.2) aborts the process on one, so
    the V8 backend refuses it with a ``LinkError`` (a mutable v128 global works)."""
    raw_floats: bool = True
    """Wasm keeps every bit of an f32/f64 it moves without arithmetic (calls, ``local.get``, globals,
    loads and stores, ``reinterpret``), signalling NaNs included, as the spec says. Raw values
    (``F32Bits``/``F64Bits``) cross into and out of wasm bit for bit on every backend; False where
    the runtime itself changes some: wasm3 0.5.0 moves an f32 made by ``f32.load`` or
    ``f32.reinterpret_i32`` (and an f32 global set by wasm) through a double register, so a
    signalling f32 NaN comes out quiet (payload kept); f64 and quiet f32 NaNs are exact there."""
    multi_value: bool = True
    """Functions may return several results."""
    host_memory_access: bool = True
    """Host functions can reach the calling instance's memory."""
    memory_view: bool = True
    """``Memory.view()`` is a zero-copy view (not across a process boundary)."""
    threads: bool = True
    """Stores of one engine can be used from several Python threads (a store per thread)."""
    concurrent_stores: bool = True
    """Those threads' calls run at the same time (not one after the other)."""
    wasm_threads: bool = True
    """The WebAssembly threads proposal (shared memories, atomic instructions) can be enabled
    (``"threads"`` in :attr:`features`; it is off by default, as in the Wasm 2.0 profile)."""
    lazy_memory_growth: bool = True
    """``memory.grow`` only reserves the new pages (the kernel zeroes each when first touched).
    wasm3 reallocates and zeroes every grown page: growing to hundreds of MiB takes a sizeable
    fraction of a second, so a memory bomb may meet a short deadline before the memory cap."""
    shared_externs: bool = True
    """A memory or global can be imported by several instances at once, which then share it
    (wasm3: each instance has its own memory and globals, so one made in Python goes to one instance)."""
    features: frozenset[str] = WASM2_FEATURES
    """The wasm features (:class:`~proxywasm_vm.WasmFeatures` field names) this runtime can run, so
    an engine may enable them (``EngineConfig.features``); every one may be switched off, on every
    backend (the core's validator then rejects modules using it). The default profile, Wasm 2.0,
    is narrowed to these on a backend lacking some (wasm3), and asking for one beyond them raises
    :class:`~proxywasm_vm.FeatureUnsupported` when the engine is made."""
    unsupported_instructions: frozenset[str] = frozenset()
    """Instructions (text-format names) of enabled features that this runtime cannot run: a module
    using one is rejected at compile with a :class:`~proxywasm_vm.CompileError` naming it (whose
    ``feature`` is the feature). wasmer 1.1.0 lacks 27 SIMD instructions (``i8x16.popcnt``,
    the ``extmul``, ``extadd_pairwise`` and ``q15mulr`` families ...)."""
    wasm2_complete: bool = True
    """Every valid Wasm 2.0 module compiles. False where the runtime refuses some with a
    :class:`~proxywasm_vm.CompileError` (never runs them wrongly): wasm3 0.5.0 (no SIMD, no
    reference types, no passive segments; a ``block``/``loop``/``if`` of three or more values of
    mixed types, which it runs wrongly; and "no operation found for opcode" for an operator on
    the untyped operands of unreachable code, after ``br``/``return``/``unreachable``; an exported
    global whose name contains a NUL, since it finds globals by C string) and
    wasmer 2 (some SIMD instructions, "proposed simd operator"; externref element segments). Found by the
    differential fuzzing (tests/fuzz/test_differential.py)."""
    exact_trap_codes: bool = True
    """Every trap wasm can cause reports the :class:`~proxywasm_vm.TrapCode` the spec's test suite
    names for it. False where the runtime reports two kinds with one message, so one of them comes
    out as the other: V8 says "float unrepresentable in integer range" for a float-to-integer
    truncation of NaN and of an out-of-range value (both ``BAD_CONVERSION_TO_INTEGER``, the spec
    says ``INTEGER_OVERFLOW`` for the second), and "null function or function signature mismatch"
    for a ``call_indirect`` of a null entry and of a mistyped one (both
    ``INDIRECT_CALL_TYPE_MISMATCH``). Every other trap is exact on every backend
    (tests/conformance/test_traps.py, instruction by instruction)."""


class Backend(ABC):
    """A runtime adapter. Subclass it in ``proxywasm_vm.backends.<name>`` and name an instance ``BACKEND``."""

    name: str = ""
    """The backend id, e.g. ``"wasmtime"`` or ``"wasmtime@namespace"``."""
    isolation: str = "in-process"
    """How this backend object runs its runtime: ``"in-process"``, ``"namespace"`` (its own linker
    namespace in this process) or ``"process"`` (a worker process)."""
    default_isolation: str = "in-process"
    """The isolation the bare backend id (``"wasmer"``) runs with: ``"in-process"`` (this object),
    or a registered isolation mode (``"process"``: the registry runs the runtime in worker
    processes, as it does for ``"<name>@process"``). A runtime that cannot run here sets it."""
    in_process_reason: str = ""
    """Why this runtime cannot run in this process (``""``: it can). The registry then refuses
    ``"<name>@in-process"`` with this reason."""

    def worker_python(self) -> str | None:
        """The interpreter a worker process running this runtime needs, or ``None`` for this
        process's own (``sys.executable``). Asked only when neither the engine option
        ``worker_python`` nor ``$PWVM_WORKER_PYTHON`` names one; may raise
        :class:`~proxywasm_vm.BackendUnavailable` when no suitable interpreter is found."""
        return None

    @abstractmethod
    def version(self) -> str:
        """The runtime's own version string."""

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend supports."""

    @abstractmethod
    def new_engine(self, config: EngineConfig) -> Engine:
        """Create an engine (an instance of the backend's :class:`~proxywasm_vm.Engine` subclass)."""

    def namespace_variant(self) -> Backend | None:
        """The same runtime loaded into its own linker namespace (``"<name>@namespace"``), or ``None``
        when it cannot be. May raise :class:`~proxywasm_vm.BackendUnavailable` (no namespace left)."""
        return None


class AbstractEngine(_Contract):
    """What a backend's :class:`~proxywasm_vm.Engine` subclass implements: the factory methods the
    public constructors of modules, stores and linkers call."""

    backend: Backend
    """The backend that made this engine."""
    config: EngineConfig
    """The configuration it was made with."""

    @required
    def _module_new(self, wasm: bytes) -> Module:
        """Compile ``wasm`` (checked to start with the wasm magic number); :class:`CompileError` if invalid."""
        raise NotImplementedError

    @required
    def _module_validate(self, wasm: bytes) -> bool:
        """Whether ``wasm`` compiles on this engine (agreeing with :meth:`_module_new`)."""
        raise NotImplementedError

    def _module_deserialize(self, data: bytes) -> Module:
        """Load bytes made by :meth:`AbstractModule.serialize` (with ``Capabilities.serialize``)."""
        raise NotImplementedError(f"the {self.backend.name} backend cannot deserialize modules")

    def _module_deserialize_file(self, path: str) -> Module:
        """Like :meth:`_module_deserialize`, from a file (override to memory-map it)."""
        with open(path, "rb") as f:
            return self._module_deserialize(f.read())

    @required
    def _store_new(self, limits: StoreLimits, data: Any) -> Store:
        """Create a store enforcing ``limits`` (already checked against the capabilities)."""
        raise NotImplementedError

    def _linker_new(self) -> Linker:
        """Create a linker; the default is the generic one (host functions made per store)."""
        from ._linker import GenericLinker

        # Every engine object is an Engine: the public class derives from this one.
        return GenericLinker._create(cast("Engine", self))

    @property
    def worker_pid(self) -> int | None:
        """The id of the worker process running this engine's runtime (starting one if needed),
        or ``None`` when it runs in this process."""
        return None


class AbstractModule(_Contract):
    """What a backend's :class:`~proxywasm_vm.Module` subclass implements."""

    engine: Engine
    """The engine the module was compiled by."""
    _info: ModuleInfo | None = None
    """Import/export types and custom sections, parsed from ``_wasm`` on first use (a backend may set it)."""
    _wasm: bytes | None = None
    """The module's bytes (``None`` after ``deserialize``)."""

    def _module_info(self) -> ModuleInfo:
        """Import/export types and custom sections (hook: a backend that can describe a
        deserialized module, whose bytes are gone, sets ``_info`` and then calls this)."""
        if self._info is None:
            from ._errors import CompileError
            from ._wasmparse import parse_module

            if self._wasm is None:
                raise CompileError("this module was deserialized without its original bytes; "
                                   "types are not available")
            self._info = parse_module(self._wasm)
        return self._info

    @required
    def serialize(self) -> bytes:
        """The compiled code as bytes, for ``Module.deserialize`` (``NotImplementedError`` without
        ``Capabilities.serialize``)."""
        raise NotImplementedError


class AbstractStore(_Contract):
    """What a backend's :class:`~proxywasm_vm.Store` subclass implements."""

    engine: Engine
    """The engine the store belongs to."""
    data: Any
    """The embedder's value kept with the store."""

    @property
    @required
    def limits(self) -> StoreLimits:
        """The limits this store enforces."""
        raise NotImplementedError

    @required
    def set_deadline(self, seconds: float | None) -> None:
        """Change the per-call wall-clock deadline (``None`` removes it)."""
        raise NotImplementedError

    def get_fuel(self) -> int:
        """Fuel left (needs ``EngineConfig(fuel=True)``)."""
        raise ValueError("fuel is not enabled for this engine")

    def set_fuel(self, fuel: int) -> None:
        """Set the fuel left (needs ``EngineConfig(fuel=True)``)."""
        raise ValueError("fuel is not enabled for this engine")

    def close(self) -> None:
        """Release the runtime's resources now instead of at garbage collection."""
        return None

    @required
    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> Func:
        """A host function of type ``ty`` calling ``fn`` (with a :class:`~proxywasm_vm.Caller` first
        when ``access_caller``). ``fn`` takes its f32/f64/v128 arguments raw (``F32Bits``,
        ``F64Bits``, ``V128``: the public ``Func`` converts them for a non-raw function) and may
        return results plain or raw."""
        raise NotImplementedError

    @required
    def _memory_new(self, ty: MemoryType) -> Memory:
        """A new linear memory of type ``ty``."""
        raise NotImplementedError

    @required
    def _global_new(self, ty: GlobalType, value: Any) -> Global:
        """A new global of type ``ty`` holding ``value``."""
        raise NotImplementedError

    @required
    def _table_new(self, ty: TableType, init: Any) -> Table:
        """A new table of type ``ty`` filled with ``init``."""
        raise NotImplementedError

    @required
    def _instantiate(self, module: Module, imports: Sequence[Any]) -> Instance:
        """Instantiate ``module`` with ``imports`` (externs in the module's import order, kinds and
        function types already checked); :class:`LinkError` or :class:`Trap` on failure."""
        raise NotImplementedError


class AbstractInstance(_Contract):
    """What a backend's :class:`~proxywasm_vm.Instance` subclass implements."""

    store: Store
    """The store the instance lives in."""
    module: Module
    """The module it instantiates."""

    @required
    def _export(self, name: str) -> Extern:
        """Look one export up in the runtime (called once per name; the name is known to exist)."""
        raise NotImplementedError


class AbstractFunc(_Contract):
    """What a backend's :class:`~proxywasm_vm.Func` subclass implements."""

    store: Store
    """The store the function belongs to."""
    type: FuncType
    """Its parameter and result types."""

    @required
    def __call__(self, *args: Any) -> Any:
        """Call the function; returns ``None``, a value, or a tuple of values."""
        raise NotImplementedError

    @required
    def _call_raw(self, args: tuple) -> Any:
        """Call the function with ``args`` (plain or raw values); like ``__call__``, but f32/f64
        results are :class:`~proxywasm_vm.F32Bits`/:class:`~proxywasm_vm.F64Bits` and v128 ones
        :class:`~proxywasm_vm.V128`, bit for bit."""
        raise NotImplementedError


class AbstractCaller(_Contract):
    """What a backend's :class:`~proxywasm_vm.Caller` subclass implements."""

    __slots__ = ()

    @property
    @required
    def store(self) -> Store:
        """The store the call runs in."""
        raise NotImplementedError

    @required
    def get_export(self, name: str) -> Extern | None:
        """An export of the calling instance by name, or ``None``."""
        raise NotImplementedError

    @property
    def memory(self) -> Memory | None:
        """The calling instance's memory export named ``memory``, if any (hook: the default asks
        :meth:`get_export`; host functions use it on every call, so backends give a faster one)."""
        from ._memory import Memory

        m = self.get_export("memory")
        return m if isinstance(m, Memory) else None


class AbstractMemory(_Contract):
    """What a backend's :class:`~proxywasm_vm.Memory` subclass implements."""

    store: Store
    """The store the memory belongs to."""
    type: MemoryType
    """Its limits (and whether it is shared)."""

    @property
    @required
    def size(self) -> int:
        """Current size in 64 KiB pages."""
        raise NotImplementedError

    @property
    @required
    def data_size(self) -> int:
        """Current size in bytes."""
        raise NotImplementedError

    @required
    def grow(self, delta: int) -> int:
        """Grow by ``delta`` pages; returns the previous size in pages.

        Raises :class:`LimitError` past the memory's maximum or the store's limit.
        """
        raise NotImplementedError

    @required
    def read(self, offset: int, length: int) -> bytes:
        """Copy ``length`` bytes from ``offset`` (``IndexError`` out of bounds)."""
        raise NotImplementedError

    @required
    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` to ``offset`` (``IndexError`` out of bounds)."""
        raise NotImplementedError

    @required
    def view(self) -> memoryview:
        """A zero-copy writable view of the whole memory (invalid after a grow; with
        ``Capabilities.memory_view``)."""
        raise NotImplementedError


class AbstractGlobal(_Contract):
    """What a backend's :class:`~proxywasm_vm.Global` subclass implements."""

    store: Store
    """The store the global belongs to."""
    type: GlobalType
    """Its value type and mutability."""

    @required
    def get(self, raw: bool = False) -> Any:
        """The current value (with ``raw``: f32/f64 as bits, v128 as :class:`~proxywasm_vm.V128`)."""
        raise NotImplementedError

    @required
    def set(self, value: Any) -> None:
        """Set the value (plain or raw); raises ``TypeError`` if the global is immutable."""
        raise NotImplementedError


class AbstractTable(_Contract):
    """What a backend's :class:`~proxywasm_vm.Table` subclass implements (get, set and grow with
    ``Capabilities.table_access``; ``NotImplementedError`` without it)."""

    store: Store
    """The store the table belongs to."""
    type: TableType
    """Its element type and limits."""

    @property
    @required
    def size(self) -> int:
        """Number of elements."""
        raise NotImplementedError

    @required
    def get(self, index: int) -> Any:
        """The element at ``index`` (a :class:`~proxywasm_vm.Func`, an external object, or ``None``)."""
        raise NotImplementedError

    @required
    def set(self, index: int, value: Any) -> None:
        """Store ``value`` at ``index``."""
        raise NotImplementedError

    @required
    def grow(self, delta: int, init: Any = None) -> int:
        """Add ``delta`` elements set to ``init``; returns the previous size."""
        raise NotImplementedError


#: The abstract class of each role, by role name: what a backend's classes are checked against.
ROLES: dict[str, type] = {
    "backend": Backend, "engine": AbstractEngine, "module": AbstractModule, "store": AbstractStore,
    "instance": AbstractInstance, "func": AbstractFunc, "caller": AbstractCaller, "memory": AbstractMemory,
    "global": AbstractGlobal, "table": AbstractTable,
}
