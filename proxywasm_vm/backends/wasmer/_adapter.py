"""The wasmer backend in-process: an adapter over wasmer-python 1.1.0.

Runs wherever ``import wasmer`` works (Python <= 3.10; on 3.11+ inside a worker
process, see proxywasm_vm._isolation). How its gaps are covered:

- host functions get no caller from wasmer: each instantiation makes its own
  ``wasmer.Function`` for every host function it imports, bound to that
  instance, so ``Caller.memory``/``get_export`` reach the calling instance
  (not during the start function: the instance does not exist yet);
- traps are ``RuntimeError`` messages: mapped to :class:`TrapCode`;
- funcref/externref values make wasmer panic (a ``BaseException``): refused up
  front with ``NotImplementedError``; tables cannot be created, read, written
  or grown from Python (no null funcref value can be built);
- no fuel, epoch, interrupt or memory limiter: in a worker process (the only way on
  Python >= 3.11) ``StoreLimits.deadline`` and ``memory_bytes`` are enforced around
  each outermost call by the kernel (:mod:`proxywasm_vm._guard`, its system calls made by
  the compiled helper ``_guard.c``); in a user's own process they cannot be. A module's own
  memory is capped exactly, without the kernel: the module is compiled with that memory
  imported, and each instance gets one whose maximum is the store's cap (``_memory_as_import``);
- argument and result conversions are done here (wasmer refuses ints for
  floats, does not check host results' arity);
- f32/f64 cross wasmer-python as Python floats (a float32 signalling NaN comes back quiet):
  functions, host functions and globals with f32/f64 go through generated adapter modules
  (:mod:`proxywasm_vm._rawbridge`) that move them as i32/i64 bits, so raw values are exact.
  v128 crosses as an int, exactly.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import wasmer

from proxywasm_vm._engine import Engine, EngineConfig
from proxywasm_vm import _guard
from proxywasm_vm._guard import DEPTH
from proxywasm_vm._settings import guard_helper_disabled
from proxywasm_vm._errors import CompileError, LimitError, LinkError, Trap, TrapCode, WasmError
from proxywasm_vm._func import Caller, Func
from proxywasm_vm._global import Global
from proxywasm_vm._instance import Instance
from proxywasm_vm._memory import PAGE_SIZE, Memory
from proxywasm_vm._module import Module
from proxywasm_vm._store import Store, StoreLimits, is_default
from proxywasm_vm._table import Table
from proxywasm_vm._types import ExportType, FuncType, GlobalType, ImportType, Limits, MemoryType, TableType, ValType
from proxywasm_vm._rawbridge import from_mapped, global_adapter, global_maker, host_adapter, call_adapter
from proxywasm_vm._rawbridge import mapped_types, needs_bridge, to_mapped
from proxywasm_vm._validate import validate
from proxywasm_vm._values import V128, host_results, raw_results, to_float
from proxywasm_vm._values import wrap_i32 as to_i32
from proxywasm_vm._values import wrap_i64 as to_i64
from proxywasm_vm._values import wrap_v128 as to_v128
from proxywasm_vm._wasmparse import ModuleInfo, Reader, parse_module, sections, uleb128

from . import UNSUPPORTED_SIMD_NAMES

if TYPE_CHECKING:
    from proxywasm_vm._instance import Extern
    from proxywasm_vm._types import ExternType

    from . import WasmerBackend

COMPILERS = {"cranelift": "wasmer_compiler_cranelift", "singlepass": "wasmer_compiler_singlepass",
             "llvm": "wasmer_compiler_llvm"}
DEFAULT_COMPILER = "cranelift"

_W = wasmer.Type
TO_W = {ValType.I32: _W.I32, ValType.I64: _W.I64, ValType.F32: _W.F32, ValType.F64: _W.F64,
        ValType.V128: _W.V128, ValType.FUNCREF: _W.FUNC_REF, ValType.EXTERNREF: _W.EXTERN_REF}
FROM_W = {v: k for k, v in TO_W.items()}
_REFS = (ValType.FUNCREF, ValType.EXTERNREF)
_IMPORT_ERROR = re.compile(r'Error while importing "([^"]*)"\."([^"]*)"')
_NO_REFS = "wasmer-python 1.1.0 cannot pass funcref/externref values (it panics); Capabilities.reference_values"

# (substring of wasmer's trap message, code); first match wins
_TRAPS = [
    ("unreachable", TrapCode.UNREACHABLE),
    ("integer divide by zero", TrapCode.INTEGER_DIVIDE_BY_ZERO),
    ("integer overflow", TrapCode.INTEGER_OVERFLOW),
    ("invalid conversion to integer", TrapCode.BAD_CONVERSION_TO_INTEGER),
    ("out of bounds memory access", TrapCode.MEMORY_OUT_OF_BOUNDS),
    ("call stack exhausted", TrapCode.STACK_OVERFLOW),
    ("stack overflow", TrapCode.STACK_OVERFLOW),
    ("indirect call type mismatch", TrapCode.INDIRECT_CALL_TYPE_MISMATCH),
    ("uninitialized element", TrapCode.INDIRECT_CALL_TO_NULL),
    ("out of bounds table access", TrapCode.TABLE_OUT_OF_BOUNDS),
    ("misaligned", TrapCode.HEAP_MISALIGNED),
    ("unaligned", TrapCode.HEAP_MISALIGNED),
]


def _message(e: BaseException) -> str:
    msg = str(e)
    msg = msg.removeprefix("RuntimeError: ")
    return msg


def trap_or_error(e: BaseException) -> BaseException:
    """The exception a wasmer ``RuntimeError`` (or pyo3 panic) stands for."""
    if type(e).__name__ == "PanicException":
        return WasmError(f"wasmer panicked: {e}")
    msg = _message(e)
    first = msg.split("\n", 1)[0].strip()
    for needle, code in _TRAPS:
        if needle in first:
            return Trap(code, first)
    if "did not match signature" in msg:
        return TypeError(msg)
    return WasmError(msg)


# ---- values ---------------------------------------------------------------------------

def _no_ref(v: Any) -> Any:
    raise NotImplementedError(_NO_REFS)


CONVERT: dict[ValType, Callable[[Any], Any]] = {
    ValType.I32: to_i32, ValType.I64: to_i64, ValType.F32: to_float, ValType.F64: to_float,
    ValType.V128: to_v128, ValType.FUNCREF: _no_ref, ValType.EXTERNREF: _no_ref,
}


def _value(t: ValType, v: Any) -> Any:
    """A ``wasmer.Value`` of type ``t``."""
    V = wasmer.Value
    make = {ValType.I32: V.i32, ValType.I64: V.i64, ValType.F32: V.f32, ValType.F64: V.f64, ValType.V128: V.v128}
    if t not in make:
        raise NotImplementedError(_NO_REFS)
    return make[t](CONVERT[t](v))


def _convert(t: ValType, v: Any) -> Any:
    return CONVERT[t](v)


#: (id of a wasmer.Store, adapter bytes) -> (that store, the compiled adapter module)
_BRIDGES: dict[tuple[int, bytes], tuple[Any, Any]] = {}


def _bridge(store: WasmerStore, wasm: bytes, imports: dict[str, dict[str, Any]]) -> Any:
    """The exports of an instance of adapter module ``wasm`` (compiled once per wasmer store).

    The store keeps the instance: wasmer-python's exported functions do not keep their
    instance alive, and calling one after it is gone crashes (SIGSEGV)."""
    key = (id(store._w), wasm)
    got = _BRIDGES.get(key)
    if got is None or got[0] is not store._w:
        got = _BRIDGES[key] = (store._w, wasmer.Module(store._w, wasm))
    inst = wasmer.Instance(got[1], imports)
    store._bridges.append(inst)
    return inst.exports


def _has_floats(types: Sequence[ValType]) -> bool:
    return needs_bridge(types, False)


# ---- types -----------------------------------------------------------------------------

def w_functype(ty: FuncType) -> Any:
    return wasmer.FunctionType([TO_W[t] for t in ty.params], [TO_W[t] for t in ty.results])


def functype(w: Any) -> FuncType:
    return FuncType([FROM_W[t] for t in w.params], [FROM_W[t] for t in w.results])


def externtype(w: Any) -> Any:
    if isinstance(w, wasmer.FunctionType):
        return functype(w)
    if isinstance(w, wasmer.MemoryType):
        return MemoryType(Limits(w.minimum, w.maximum), shared=bool(w.shared))
    if isinstance(w, wasmer.GlobalType):
        return GlobalType(FROM_W[w.type], bool(w.mutable))
    if isinstance(w, wasmer.TableType):
        return TableType(FROM_W[w.type], Limits(w.minimum, w.maximum))
    raise WasmError(f"unknown wasmer extern type {w!r}")


# ---- engine and modules ----------------------------------------------------------------

def _precheck(wasm: bytes) -> ModuleInfo:
    """Read the module with our own reader before wasmer sees it (it is as strict as the spec
    about section framing and order), and refuse what wasmer 2.1 cannot decode without
    panicking: its parser takes section 13 (tags, exception handling; wasmtime accepts it)
    for a module-linking section and panics, which poisons the engine for good."""
    info = parse_module(wasm)
    if any(sid == 13 for sid, *_ in sections(wasm)):
        raise CompileError("wasmer does not support exception handling (the module has a tag section)")
    return info


_UNSUPPORTED_OP = re.compile(r"Unsupported feature: proposed simd operator (\w+)")
_SIMD_OPERATOR = re.compile(r"not yet implemented: (V128|I8x16|I16x8|I32x4|I64x2|F32x4|F64x2)")


def _compile_error(msg: str) -> CompileError:
    """wasmer's compile error; one naming the instruction for a SIMD instruction it lacks
    (Capabilities.unsupported_instructions: the module is valid Wasm 2.0, wasmer cannot run it)."""
    m = _UNSUPPORTED_OP.search(msg)
    if m is None:
        if "Unsupported feature: unsupported table element type" in msg:  # an externref element segment
            return CompileError(f"wasmer 1.1.0 cannot run this module: {msg}", feature="reference_types")
        if "func type returns multiple values" in msg:  # the singlepass compiler has no multi-value
            return CompileError(f"wasmer cannot run multi-value functions with this compiler: {msg}",
                                feature="multi_value")
        if "not yet implemented" in msg and _SIMD_OPERATOR.search(msg):  # the singlepass compiler has no SIMD
            return CompileError(f"wasmer's singlepass compiler cannot run SIMD (use cranelift or llvm): {msg}",
                                feature="simd")
        return CompileError(msg)
    op = UNSUPPORTED_SIMD_NAMES.get(m.group(1), m.group(1))
    return CompileError(f"wasmer 1.1.0 cannot run the SIMD instruction {op} (Capabilities.unsupported_instructions): "
                        f"{msg}", feature="simd")


#: Why the guard's compiled helper is not used in this worker ("": it is), once decided (see _use_guard_helper).
_GUARD_HELPER: list[str] = []


def _use_guard_helper() -> None:
    """In a worker (where the guard brackets every outermost call): make the guard's system calls
    through the compiled helper (``_guard.c``: one C call to arm, one to disarm, instead of five
    Python calls; the same system calls). Decided once per process; without a compiler, or with
    ``PWVM_GUARD_NO_HELPER`` set, the guard makes them from Python, and one log record says why."""
    if _GUARD_HELPER or not _guard.enabled():
        return
    level = logging.WARNING
    if guard_helper_disabled():
        why, level = "disabled by PWVM_GUARD_NO_HELPER", logging.INFO
    else:
        try:
            from proxywasm_vm._native import load_extension

            from . import _guard_build

            lib = load_extension(_guard_build.MODULE, _guard_build.make_builder, _guard_build.SOURCES).lib
            why = "" if _guard.use_helper(lib) else "/proc/self/statm cannot be opened"
        except Exception as e:  # noqa: BLE001 - no compiler, no cffi: the same system calls from Python
            why = " ".join(f"{type(e).__name__}: {e}".split())[:400]
    _GUARD_HELPER.append(why)
    if why:
        logging.getLogger("proxywasm_vm").log(
            level, "wasmer's worker arms each call's deadline and memory cap from Python (a few µs more per "
                   "call): the compiled helper _guard.c is not used: %s", why)


#: (module, name) of the import through which a module receives its own memory (see _memory_as_import):
#: a name no module can collide with (a NUL byte), never shown (the module's types are its original ones).
_OWN_MEMORY = ("\0pwvm", "memory")
#: What a serialized module compiled that way starts with (see WasmerModule.serialize).
_OWN_MEMORY_MARK = b"pwvm-wasmer-own-memory\n"


def _wasm_name(s: str) -> bytes:
    b = s.encode()
    return uleb128(len(b)) + b


def _memory_as_import(wasm: bytes, info: ModuleInfo) -> tuple[bytes, MemoryType] | None:
    """``wasm`` rewritten so that its one memory is imported (as :data:`_OWN_MEMORY`) rather than
    defined, and that memory's type; None when the module has no memory of its own (or more than one
    memory, a shared or a 64-bit one).

    Why: wasmer-python cannot refuse a ``memory.grow``, but a memory made in Python can be given a
    maximum, which wasmer enforces. An instance of the rewritten module gets a memory made with the
    module's limits, its maximum lowered to the store's cap (:meth:`WasmerStore._own_memory`): a
    ``memory.grow`` past the cap returns -1 by itself, exactly, without the kernel's memory limit
    around every call (see :mod:`proxywasm_vm._guard`). Nothing else changes: the memory keeps index
    0 (it is the module's only one), the function, table and global index spaces do not move, the data
    segments fill it at instantiation as before; the module's import and export types stay those of
    the original bytes (``_precheck`` parsed them)."""
    if len(info.memories) != 1 or any(isinstance(i.type, MemoryType) for i in info.imports):
        return None
    ty = info.memories[0]
    if ty.shared or ty.is_64:
        return None
    secs = sections(wasm)
    mems = [sec for sec in secs if sec[0] == 5]
    imps = [sec for sec in secs if sec[0] == 2]
    if len(mems) != 1 or len(imps) > 1:
        return None
    r = Reader(wasm, mems[0][2], mems[0][3])
    if r.u32() != 1:
        return None
    entry = _wasm_name(_OWN_MEMORY[0]) + _wasm_name(_OWN_MEMORY[1]) + b"\x02" + wasm[r.pos:mems[0][3]]
    if imps:
        r = Reader(wasm, imps[0][2], imps[0][3])
        payload = uleb128(r.u32() + 1) + wasm[r.pos:imps[0][3]] + entry
    else:
        payload = b"\x01" + entry
    import_section = b"\x02" + uleb128(len(payload)) + payload
    out = [wasm[:8]]
    if not imps and not any(sec[0] == 1 for sec in secs):
        out.append(import_section)  # (no type section: first; custom sections may stand anywhere)
    for sid, start, _body, end in secs:
        if sid == 5:
            continue  # the memory section: its one memory is now the import
        out.append(import_section if sid == 2 else wasm[start:end])
        if sid == 1 and not imps:
            out.append(import_section)  # the import section follows the type section
    return b"".join(out), ty


def _defines_one_memory(w: Any) -> bool:
    """Whether the compiled ``wasmer.Module`` ``w`` exports one memory (not shared) and imports none:
    what ``_memory_as_import`` rewrites (a memory it does not export is not seen here)."""
    imported = [i for i in w.imports if isinstance(i.type, wasmer.MemoryType)]
    exported = [e for e in w.exports if isinstance(e.type, wasmer.MemoryType)]
    return not imported and len(exported) == 1 and not exported[0].type.shared


class WasmerEngine(Engine):
    """Compiles with one wasmer compiler (``compiler``) into an engine-wide ``wasmer.Store``."""

    # Set by _create (engines are made with object.__new__, not __init__).
    backend: WasmerBackend
    compiler: str  # the compiler's name, a key of COMPILERS
    _wstore: Any  # wasmer.Store (wasmer-python has no type information)

    @classmethod
    def _create(cls, backend: WasmerBackend, config: EngineConfig) -> WasmerEngine:
        if config.max_wasm_stack is not None and not is_default(config.max_wasm_stack):
            # (the default is fine: wasmer keeps its own bound, and deep recursion traps with
            # STACK_OVERFLOW there too)
            raise ValueError("wasmer-python cannot configure the wasm stack size (Capabilities.max_wasm_stack)")
        opts = dict(config.options)
        name = opts.get("compiler", DEFAULT_COMPILER)
        if name not in COMPILERS:
            raise ValueError(f"unknown wasmer compiler {name!r}; choose from {', '.join(COMPILERS)}")
        try:
            compiler = importlib.import_module(COMPILERS[name]).Compiler
        except ImportError as e:
            raise ValueError(f"the wasmer {name} compiler is not installed in {sys.prefix}: {sys.executable} -m pip "
                             f"install {COMPILERS[name].replace('_', '-')}==1.1.0") from e
        _use_guard_helper()
        self = object.__new__(cls)
        self.backend = backend
        self.config = config
        self.compiler = name
        self._wstore = wasmer.Store(wasmer.engine.Universal(compiler))
        return self

    def _module_new(self, wasm: bytes) -> Module:
        info = _precheck(wasm)
        if self.compiler != DEFAULT_COMPILER:
            self._refuse_simd(wasm)
        # Only a worker caps memories; not with llvm, whose memory.fill on an imported memory
        # crashes the process (SIGSEGV): its memories stay capped by the guard's memory limit.
        own = _memory_as_import(wasm, info) if self._imports_own_memory() else None
        try:
            w = wasmer.Module(self._wstore, wasm if own is None else own[0])
        except RuntimeError as e:
            raise _compile_error(_message(e)) from None
        except BaseException as e:
            if type(e).__name__ != "PanicException":
                raise
            self._after_panic()
            raise CompileError(f"wasmer cannot compile this module (it panicked: {e})") from None
        mod = WasmerModule._wrap(self, w)
        mod._info = info
        return mod

    def _imports_own_memory(self) -> bool:
        """Whether this engine compiles a module's own memory as an import (``_memory_as_import``).

        Only a worker caps memories; not with llvm, whose memory.fill on an imported memory
        crashes the process (SIGSEGV): its memories stay capped by the guard's memory limit."""
        return _guard.enabled() and self.compiler != "llvm"

    def _refuse_simd(self, wasm: bytes) -> None:
        """Refuse SIMD with the singlepass and llvm compilers: singlepass has none ("not yet
        implemented" for most instructions), and llvm compiles every SIMD instruction but runs the
        twelve ``extmul`` ones wrongly (tests/conformance/test_features.py compares each with
        wasmtime). A module uses SIMD when it is invalid with SIMD off (checked with the core's
        validator, which has accepted it with SIMD on)."""
        features = self.features
        if "simd" not in features.enabled:
            return
        try:
            validate(wasm, features - {"simd", "relaxed_simd"})
        except CompileError as e:
            if e.feature == "simd":
                why = ("has no SIMD" if self.compiler == "singlepass"
                       else "runs some SIMD instructions wrongly (the extmul family)")
                raise CompileError(f"wasmer's {self.compiler} compiler {why}: this module uses SIMD; compile it with "
                                   "the cranelift compiler (the default)", offset=e.offset, feature="simd") from None

    def _module_validate(self, wasm: bytes) -> bool:
        # wasmer's validator passes modules its compiler then refuses (an externref element
        # segment, some SIMD operators ...): compiling is what agrees with Module().
        try:
            self._module_new(wasm)
        except CompileError:
            return False
        return True

    def _after_panic(self) -> None:
        """A panic while compiling leaves the engine's lock poisoned: every later compile
        would fail. Modules compile on a new engine from now on (those compiled already
        keep theirs)."""
        self._wstore = wasmer.Store(wasmer.engine.Universal(
            importlib.import_module(COMPILERS[self.compiler]).Compiler))

    def _module_deserialize(self, data: bytes) -> Module:
        marked = data[:len(_OWN_MEMORY_MARK)] == _OWN_MEMORY_MARK
        try:
            w = wasmer.Module.deserialize(self._wstore, data[len(_OWN_MEMORY_MARK):] if marked else data)
        except (RuntimeError, ValueError) as e:
            raise CompileError(_message(e)) from None
        mod = WasmerModule._wrap(self, w)
        if marked != (mod._own_memory is not None):
            raise CompileError("not a module serialized by this wasmer backend (its memory mark does not match)")
        if not marked and self._imports_own_memory() and _defines_one_memory(w):
            # Compiled with its memory defined (by a proxywasm-vm from before the rewrite, or by wasmer
            # outside a worker): here that memory could only be capped by the kernel's limit around
            # every call (two setrlimit and a read of /proc per callback, and SLACK past the cap).
            # Refused, so a compiled-module cache entry is rebuilt (Module.cached, ProcessModule).
            raise CompileError("this wasmer module was serialized with its memory defined (by an older "
                               "proxywasm-vm, or outside a worker): a worker caps a module's own memory "
                               "exactly only as compiled there; compile it again")
        return mod

    def _store_new(self, limits: StoreLimits, data: Any) -> Store:
        return WasmerStore._create(self, limits, data)


class WasmerModule(Module):
    """A ``wasmer.Module``."""

    engine: WasmerEngine
    _w: Any  # wasmer.Module
    _own_memory: MemoryType | None  # compiled with its memory imported (see _memory_as_import): its type

    @classmethod
    def _wrap(cls, engine: WasmerEngine, w: Any) -> WasmerModule:
        m = object.__new__(cls)
        m.engine = engine
        m._w = w
        m._own_memory = None
        for i in w.imports:  # (a module compiled here knows; a deserialized one says so by this import)
            if (i.module, i.name) == _OWN_MEMORY and isinstance(i.type, wasmer.MemoryType):
                m._own_memory = externtype(i.type)
        return m

    def _module_info(self) -> ModuleInfo:
        if self._info is None and self._wasm is None:
            info = ModuleInfo()
            info.imports.extend(ImportType(i.module, i.name, externtype(i.type)) for i in self._w.imports
                                if (i.module, i.name) != _OWN_MEMORY)
            info.exports.extend(ExportType(e.name, externtype(e.type)) for e in self._w.exports)
            self._info = info
        return super()._module_info()

    def serialize(self) -> bytes:
        data = bytes(self._w.serialize())
        # a module compiled with its memory imported is marked: a proxywasm-vm from before this
        # rewrite (sharing a compiled-module cache, say) cannot deserialize it (wasmer refuses the
        # bytes, so the cache rebuilds the entry) rather than load a module whose instances it
        # would not give their memory
        return _OWN_MEMORY_MARK + data if self._own_memory is not None else data


# ---- stores ---------------------------------------------------------------------------------

class WasmerStore(_guard.GuardedStore, Store):
    """A logical store: wasmer-python's own Store is engine-wide, instances own their state."""

    # Set by _create (stores are made with object.__new__, not __init__).
    runtime_name = "wasmer"
    engine: WasmerEngine
    _w: Any  # the engine's wasmer.Store
    _closed: bool
    _active: int  # calls into wasm in progress
    _host_exc: BaseException | None  # the last exception a host function raised
    _mems: list[Any]  # the wasmer.Memory objects of this store (made here or exported by its instances)
    _bridges: list[Any]  # what wasmer objects need kept alive: adapter instances (see _bridge), own memories
    _links: list[Any]  # the callables of this store's host functions (see _function)

    @classmethod
    def _create(cls, engine: WasmerEngine, limits: StoreLimits, data: Any) -> WasmerStore:
        s = object.__new__(cls)
        s.engine = engine
        s.data = data
        s._init_guard(limits)  # the limits the worker's guard enforces (and _mems, the memories they count)
        s._w = engine._wstore
        s._closed = False
        s._active = 0
        s._host_exc = None
        s._bridges = []
        s._links = []
        return s

    def _check_cap(self, w: Any) -> None:
        """Keep ``w`` under the store's memory cap (a memory larger from the start is a trap)."""
        if self._cap is None:
            return
        if w.data_size > self._cap:
            raise Trap(TrapCode.MEMORY_LIMIT, f"memory minimum size {w.data_size} bytes exceeds the store "
                                              f"limit of {self._cap} bytes")
        if all(m is not w for m in self._mems):
            self._mems.append(w)

    def _check_open(self) -> None:
        if self._closed:
            raise WasmError("this store is closed")

    def close(self) -> None:
        if self._active:
            raise WasmError("cannot close a store while a call into it is running")
        self._closed = True

    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> Func:
        self._check_open()
        return WasmerHostFunc._make(self, ty, fn, access_caller)

    def _own_memory(self, ty: MemoryType) -> Any:
        """The memory an instance of a module compiled with its memory imported gets (see
        ``_memory_as_import``): the module's limits, the maximum lowered to this store's cap, so
        wasmer itself refuses a ``memory.grow`` past it (the minimum was checked against the cap)."""
        hi = ty.limits.max
        if self._cap is not None:
            pages = min(self._cap // PAGE_SIZE, 65536)
            hi = pages if hi is None else min(hi, pages)
        w = wasmer.Memory(self._w, wasmer.MemoryType(minimum=ty.limits.min, maximum=hi, shared=False))
        self._bridges.append(w)  # kept with the store: an instance does not keep its imported memory alive
        return w

    def _memory_new(self, ty: MemoryType) -> Memory:
        self._check_open()
        if ty.is_64:
            raise WasmError("wasmer-python 1.1.0 has no 64-bit memories")
        try:
            w = wasmer.Memory(self._w, wasmer.MemoryType(minimum=ty.limits.min, maximum=ty.limits.max,
                                                         shared=ty.shared))
        except (RuntimeError, OverflowError) as e:
            raise WasmError(f"invalid memory type {ty}: {_message(e)}") from None
        self._check_cap(w)
        return WasmerMemory._wrap(self, w, ty)

    def _global_new(self, ty: GlobalType, value: Any) -> Global:
        self._check_open()
        if _has_floats((ty.content,)):  # its initial bits as a constant of a generated module (exact)
            return WasmerGlobal._wrap(self, _bridge(self, global_maker(ty, value), {}).g, ty)
        return WasmerGlobal._wrap(self, wasmer.Global(self._w, _value(ty.content, value), mutable=ty.mutable), ty)

    def _table_new(self, ty: TableType, init: Any) -> Table:
        raise NotImplementedError("wasmer-python 1.1.0 cannot create tables (no null funcref value can be built; "
                                  "Capabilities.table_access)")

    def _instantiate(self, module: Any, imports: Sequence[Any]) -> WasmerInstance:
        cell: list[Any] = [None]
        made: dict[int, Any] = {}
        ns: dict[str, dict[str, Any]] = {}
        for imp, item in zip(module.imports, imports):
            if item.store is not self:
                raise ValueError(f"import {imp.module}::{imp.name} belongs to another store")
            if isinstance(item, WasmerHostFunc):
                w = made.get(id(item))
                if w is None:
                    w = made[id(item)] = item._native(cell)
            else:
                w = item._w
            ns.setdefault(imp.module, {})[imp.name] = w
        self._check_open()
        if self._cap is not None:
            for mt in module._module_info().memories:
                if mt.limits.min * 65536 > self._cap:
                    raise Trap(TrapCode.MEMORY_LIMIT, f"memory minimum size {mt.limits.min} pages exceeds the "
                                                      f"store limit of {self._cap} bytes")
        own = module._own_memory
        if own is not None:
            ns.setdefault(_OWN_MEMORY[0], {})[_OWN_MEMORY[1]] = self._own_memory(own)
        self._active += 1
        armed = self._arm()
        try:
            winst = wasmer.Instance(module._w, ns)
        except RuntimeError as e:
            if e is self._host_exc:
                raise  # a host function's own RuntimeError, unchanged
            msg = _message(e)
            m = _IMPORT_ERROR.match(msg)
            if m:
                raise LinkError(msg, module=m.group(1), name=m.group(2)) from None
            raise trap_or_error(e) from None
        finally:
            if armed:
                _guard.leave()
            self._active -= 1
            self._host_exc = None
        if self._cap is not None and own is None:  # (a memory of its own is capped by its maximum)
            for exp in module.exports:
                if isinstance(exp.type, MemoryType):
                    self._check_cap(getattr(winst.exports, exp.name))
        inst = WasmerInstance._wrap(self, module, winst)
        cell[0] = inst
        return inst


# ---- functions --------------------------------------------------------------------------------

#: The integers wasmer takes as they are for an i32/i64 (what the conversions return unchanged).
_SIGNED = {ValType.I32: (-(1 << 31), (1 << 31) - 1), ValType.I64: (-(1 << 63), (1 << 63) - 1)}


def _check_results(results: tuple[ValType, ...], r: Any) -> Any:
    """A host function's return value as wasmer wants it, checked against the type."""
    if not results:
        return None
    r = host_results(len(results), r)
    if len(results) == 1:
        return CONVERT[results[0]](r[0])
    return tuple(CONVERT[t](v) for t, v in zip(results, r))


class WasmerFunc(Func):
    """An exported wasm function."""

    store: WasmerStore
    _w: Any  # wasmer.Function
    _conv: list[Callable[[Any], Any]]  # argument conversions, by parameter
    _refs: bool  # a funcref/externref parameter: no wasmer.Value can carry it in
    _bridged: bool  # f32/f64 params or results: called through a call adapter (see the module docs)
    _adapter: Any  # that adapter's wasmer.Function, made on first call
    _lo: int  # arguments from _lo to _hi are passed unconverted (integer parameters only; else an empty range)
    _hi: int

    @classmethod
    def _wrap(cls, store: WasmerStore, w: Any, ty: FuncType) -> WasmerFunc:
        f = object.__new__(cls)
        f.store = store
        f.type = ty
        f._w = w
        f._conv = [CONVERT[t] for t in ty.params]
        f._refs = any(t in _REFS for t in ty.params)
        f._bridged = _has_floats(ty.params + ty.results)
        f._adapter = None
        # integer parameters only: arguments already in the signed range of them all pass unconverted
        ints = all(t in _SIGNED for t in ty.params)
        f._lo, f._hi = _SIGNED[ValType.I32] if ints else (1, 0)
        return f

    def __call__(self, *args: Any) -> Any:
        # the common case (integer parameters, the Proxy-Wasm callbacks) in one step: this runs for
        # every callback of every request
        conv = self._conv
        if len(args) != len(conv) or self._bridged or self._refs:
            return self._call_as(args, False)
        lo, hi = self._lo, self._hi
        for a in args:
            if a.__class__ is not int or not lo <= a <= hi:
                args = tuple([c(a) for c, a in zip(conv, args)])  # (raises for what no conversion takes)
                break
        return self._invoke(self._w, args)

    def _call_raw(self, args: tuple) -> Any:
        return self._call_as(args, True)

    def _call_as(self, args: tuple, raw: bool) -> Any:
        """Call with ``args``; f32/f64/v128 results raw when ``raw``."""
        ty = self.type
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        if self._refs:
            raise NotImplementedError(_NO_REFS)
        if not self._bridged:
            r = self._invoke(self._w, [c(a) for c, a in zip(self._conv, args)])
            return raw_results(ty.results, r) if raw else r
        if self._adapter is None:
            self.store._check_open()
            self._adapter = _bridge(self.store, call_adapter(ty, False), {"t": {"f": self._w}}).call
        r = self._invoke(self._adapter, to_mapped(ty.params, args, False, _convert))
        n = len(ty.results)
        if not n:
            return None
        out = from_mapped(ty.results, [r] if n == 1 else list(r), False, raw)
        return out[0] if n == 1 else tuple(out)

    def _invoke(self, w: Any, vals: Any) -> Any:
        store = self.store
        if store._closed:
            raise WasmError("this store is closed")
        fast = store._fast
        if fast is not None and not DEPTH[0] and not store._mems:
            # the common case (every Proxy-Wasm callback): an outermost call with only a deadline
            # to arm, armed as store._arm() would, without its steps (one C call each way)
            rc = fast[0](-1, fast[2])
            if rc:
                raise _guard.arm_error(rc)
            DEPTH[0] = 1
            armed = 2
        else:
            armed = store._guarded and store._arm()
        store._active += 1
        try:
            return w(*vals)
        except RuntimeError as e:
            if e is store._host_exc:
                raise  # a host function's own RuntimeError, unchanged
            raise trap_or_error(e) from None
        except BaseException as e:
            if type(e).__name__ == "PanicException":  # a funcref/externref result (after the call ran)
                raise NotImplementedError(_NO_REFS) from None
            raise
        finally:
            if armed == 2:  # (what _guard.leave() does for the outermost call)
                DEPTH[0] = 0
                fast[1]()  # type: ignore[index]
            elif armed:
                _guard.leave()
            store._active -= 1
            if not store._active:
                store._host_exc = None


def _function(store: WasmerStore, call: Callable[..., Any], ty: FuncType) -> Any:
    """The ``wasmer.Function`` calling ``call``, which ``store`` keeps alive.

    wasmer-python 1.1.0 never frees what a host function holds (its environment outlives the
    function, the instances and the store). Given ``call`` itself, that pinned the closure and,
    through it, the store with its instances and memories: ~1 MiB per store of a Proxy-Wasm plugin
    in a worker, for as long as the worker lived. wasmer gets a weak proxy of ``call`` instead (a
    C-level forwarder, no Python frame per call): what leaks is that small proxy, and ``call`` goes
    with its store."""
    store._links.append(call)
    return wasmer.Function(store._w, weakref.proxy(call), w_functype(ty))


class WasmerHostFunc(Func):
    """A Python host function; the wasmer.Function is made per instantiation (see module docs)."""

    store: WasmerStore
    _fn: Callable[..., Any]
    _access_caller: bool

    @classmethod
    def _make(cls, store: WasmerStore, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> WasmerHostFunc:
        f = object.__new__(cls)
        f.store = store
        f.type = ty
        f._fn = fn
        f._access_caller = access_caller
        return f

    def _native(self, cell: list[Any]) -> Any:
        fn, results, store = self._fn, self.type.results, self.store
        if any(t in _REFS for t in self.type.params + results):
            raise NotImplementedError(_NO_REFS)
        params = self.type.params
        if _has_floats(params + results) or ValType.V128 in params:
            return self._native_raw(cell)
        if self._access_caller:
            fn = functools.partial(fn, WasmerCaller(self.store, cell))
        if not results:
            def call(*args: Any) -> Any:
                try:
                    fn(*args)
                    return None  # (whatever fn returned: a function with no results returns nothing)
                except BaseException as e:
                    store._host_exc = e  # to tell it from wasmer's own RuntimeErrors
                    raise
        elif len(results) == 1 and results[0] in _SIGNED:
            lo, hi = _SIGNED[results[0]]

            def call(*args: Any) -> Any:
                try:
                    r = fn(*args)
                    if r.__class__ is int and lo <= r <= hi:  # already what wasmer takes (the common case)
                        return r
                    return _check_results(results, r)
                except BaseException as e:
                    store._host_exc = e
                    raise
        else:
            def call(*args: Any) -> Any:
                try:
                    return _check_results(results, fn(*args))
                except BaseException as e:
                    store._host_exc = e
                    raise
        return _function(store, call, self.type)

    def _native_raw(self, cell: list[Any]) -> Any:
        """The host function for a signature with f32/f64 (through a host adapter: wasmer sees
        their bits as i32/i64) or v128 parameters; ``fn`` gets them raw (see ``_func_new``)."""
        fn, ty, store = self._fn, self.type, self.store
        params, results = ty.params, ty.results
        caller = WasmerCaller(store, cell) if self._access_caller else None
        n = len(results)

        def call(*margs: Any) -> Any:
            try:
                args = from_mapped(params, margs, False, True)
                r = fn(caller, *args) if caller is not None else fn(*args)
                if not n:
                    return None
                out = to_mapped(results, host_results(n, r), False, _convert)
                return out[0] if len(out) == 1 else tuple(out)
            except BaseException as e:
                store._host_exc = e
                raise

        mty = FuncType(mapped_types(params, False), mapped_types(results, False))
        w = _function(store, call, mty)
        if not _has_floats(params + results):
            return w
        return _bridge(store, host_adapter(ty, False), {"t": {"f": w}}).f

    def __call__(self, *args: Any) -> Any:
        return self._call_as(args, False)

    def _call_raw(self, args: tuple) -> Any:
        return self._call_as(args, True)

    def _call_as(self, args: tuple, raw: bool) -> Any:
        """Call with ``args``; f32/f64/v128 results raw when ``raw``."""
        self.store._check_open()
        ty = self.type
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        # checked and converted as wasm would get them, and given raw (the contract of _func_new)
        vals = from_mapped(ty.params, to_mapped(ty.params, args, False, _convert), False, True)
        r = self._fn(WasmerCaller(self.store, [None]), *vals) if self._access_caller else self._fn(*vals)
        n = len(ty.results)
        if not n:
            return None
        out = from_mapped(ty.results, to_mapped(ty.results, host_results(n, r), False, _convert), False, raw)
        return out[0] if n == 1 else tuple(out)


class WasmerCaller(Caller):
    __slots__ = ("_cell", "_store")

    def __init__(self, store: WasmerStore, cell: list[Any]) -> None:
        self._store = store
        self._cell = cell

    @property
    def store(self) -> WasmerStore:
        return self._store

    def get_export(self, name: str) -> Any:
        inst = self._cell[0]
        if inst is None or name not in inst.exports:
            return None
        return inst.exports[name]


# ---- externs ------------------------------------------------------------------------------------

class WasmerMemory(Memory):
    """A ``wasmer.Memory``."""

    store: WasmerStore
    _w: Any  # wasmer.Memory
    _view: memoryview  # over its buffer, remade when the size changed

    @classmethod
    def _wrap(cls, store: WasmerStore, w: Any, ty: MemoryType) -> WasmerMemory:
        m = object.__new__(cls)
        m.store = store
        m.type = ty
        m._w = w
        m._view = memoryview(b"")
        return m

    def _mv(self) -> memoryview:
        if self.store._closed:
            raise WasmError("this store is closed")
        n = self._w.data_size
        if len(self._view) != n:
            self._view = memoryview(self._w.buffer)
        return self._view

    @property
    def size(self) -> int:
        self.store._check_open()
        return self._w.size

    @property
    def data_size(self) -> int:
        self.store._check_open()
        return self._w.data_size

    def grow(self, delta: int) -> int:
        self.store._check_open()
        if delta < 0:
            raise ValueError("delta must be >= 0")
        cap = self.store._cap
        if cap is not None and (self._w.size + delta) * 65536 > cap:
            raise LimitError(f"growing by {delta} pages would pass the store's memory limit of {cap} bytes")
        try:
            return self._w.grow(delta)
        except (RuntimeError, OverflowError) as e:
            raise LimitError(_message(e)) from None

    def read(self, offset: int, length: int) -> bytes:
        mv = self._mv()
        if offset < 0 or length < 0 or offset + length > len(mv):
            raise IndexError(f"memory access out of bounds: offset {offset} length {length} "
                             f"(memory is {len(mv)} bytes)")
        return mv[offset:offset + length].tobytes()

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        mv = self._mv()
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if offset < 0 or offset + n > len(mv):
            raise IndexError(f"memory access out of bounds: offset {offset} length {n} (memory is {len(mv)} bytes)")
        mv[offset:offset + n] = data if not isinstance(data, memoryview) else data.cast("B")

    def view(self) -> memoryview:
        self.store._check_open()
        return memoryview(self._w.buffer)


class WasmerGlobal(Global):
    """A ``wasmer.Global``."""

    store: WasmerStore
    _w: Any  # wasmer.Global

    _ad: Any  # f32/f64: the exports of its global adapter (get/set of the bits), made on first use

    @classmethod
    def _wrap(cls, store: WasmerStore, w: Any, ty: GlobalType) -> WasmerGlobal:
        g = object.__new__(cls)
        g.store = store
        g.type = ty
        g._w = w
        g._ad = None
        return g

    def _adapter(self) -> Any:
        if self._ad is None:
            self._ad = _bridge(self.store, global_adapter(self.type, False), {"t": {"g": self._w}})
        return self._ad

    def get(self, raw: bool = False) -> Any:
        self.store._check_open()
        t = self.type.content
        if t in _REFS:
            raise NotImplementedError(_NO_REFS)
        if t is ValType.F32 or t is ValType.F64:
            return from_mapped((t,), [self._adapter().get()], False, raw)[0]
        v = self._w.value
        if t is ValType.V128:
            v &= (1 << 128) - 1
            return V128(v) if raw else v
        return v

    def set(self, value: Any) -> None:
        self.store._check_open()
        if not self.type.mutable:
            raise TypeError("cannot set an immutable global")
        t = self.type.content
        if t is ValType.F32 or t is ValType.F64:
            self._adapter().set(*to_mapped((t,), (value,), False, _convert))
            return
        v = CONVERT[t](value)
        try:
            self._w.value = v
        except RuntimeError as e:
            raise WasmError(_message(e)) from None


class WasmerTable(Table):
    """A ``wasmer.Table`` (its size only: see ``Capabilities.table_access``)."""

    store: WasmerStore
    _w: Any  # wasmer.Table

    @classmethod
    def _wrap(cls, store: WasmerStore, w: Any, ty: TableType) -> WasmerTable:
        t = object.__new__(cls)
        t.store = store
        t.type = ty
        t._w = w
        return t

    @property
    def size(self) -> int:
        self.store._check_open()
        return self._w.size

    def _gap(self) -> NotImplementedError:
        return NotImplementedError("wasmer-python 1.1.0 tables have no get/set/grow (Capabilities.table_access)")

    def get(self, index: int) -> Any:
        self.store._check_open()
        raise self._gap()

    def set(self, index: int, value: Any) -> None:
        raise self._gap()

    def grow(self, delta: int, init: Any = None) -> int:
        raise self._gap()


class WasmerInstance(Instance):
    """A ``wasmer.Instance``."""

    store: WasmerStore
    module: WasmerModule
    _w: Any  # wasmer.Instance
    _types: dict[str, ExternType]  # export types by name

    @classmethod
    def _wrap(cls, store: WasmerStore, module: WasmerModule, w: Any) -> WasmerInstance:
        i = object.__new__(cls)
        i.store = store
        i.module = module
        i._w = w
        i._types = {e.name: e.type for e in module.exports}
        return i

    def _export(self, name: str) -> Extern:
        try:
            w = getattr(self._w.exports, name)
        except LookupError:
            raise KeyError(f"no export named {name!r}") from None
        ty = self._types.get(name)
        if isinstance(w, wasmer.Function):
            return WasmerFunc._wrap(self.store, w, ty if isinstance(ty, FuncType) else functype(w.type))
        if isinstance(w, wasmer.Memory):
            return WasmerMemory._wrap(self.store, w, ty if isinstance(ty, MemoryType) else externtype(w.type))
        if isinstance(w, wasmer.Global):
            return WasmerGlobal._wrap(self.store, w, ty if isinstance(ty, GlobalType) else externtype(w.type))
        if isinstance(w, wasmer.Table):
            return WasmerTable._wrap(self.store, w, ty if isinstance(ty, TableType) else externtype(w.type))
        raise WasmError(f"unsupported wasmer export {w!r}")

