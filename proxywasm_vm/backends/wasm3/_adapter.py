"""The wasm3 backend in-process: an adapter over the wasm3 C API (see ``_capi``).

wasm3 is an interpreter: a module is parsed, then loaded into a *runtime*, which owns one linear
memory, a value stack and the module's globals. How its model maps onto this package:

- every instance is its own runtime (two instances of a store must not share a memory);
  compiled modules keep their bytes and are parsed again per instance (wasm3 reads function
  bodies from those bytes as it compiles them, lazily, on first call);
- a memory or global made in Python lives in Python until an instance imports it; from then on
  it *is* that instance's memory or global (its bytes or value are copied in first). wasm3 has
  no way to share one between two instances: importing it a second time is a LinkError
  (``Capabilities.shared_externs``);
- tables cannot be reached from Python nor imported (``Capabilities.table_access``); reference
  and v128 values do not exist in wasm3 0.5.0;
- every import is linked as a raw host function calling a Python callable; an exported function
  of another instance is called through it. A call into wasm made while a host function runs
  (host -> wasm -> host ...) starts above the calling frame on the same runtime stack
  (``m3_Call`` always starts at the stack's base, so ``rt->stack`` is moved up for it);
- no fuel, no interrupt, no memory limiter of its own (``memoryLimit`` only truncates the
  allocation): in a worker process ``StoreLimits.deadline`` and ``memory_bytes`` are enforced
  around each outermost call by the kernel (:mod:`proxywasm_vm._guard`), as for wasmer.
"""

from __future__ import annotations

import ctypes
import gc
import struct
from collections.abc import Callable, Iterator, Sequence
from ctypes import c_uint32, c_uint64, c_void_p
from typing import Any

from proxywasm_vm import _guard
from proxywasm_vm._engine import Engine, EngineConfig
from proxywasm_vm._errors import CompileError, LimitError, LinkError, Trap, TrapCode, WasmError
from proxywasm_vm._func import Caller, Func
from proxywasm_vm._global import Global
from proxywasm_vm._instance import Instance
from proxywasm_vm._lifetime import Release, release_after_finalizers
from proxywasm_vm._memory import Memory
from proxywasm_vm._module import Module
from proxywasm_vm._store import Store, StoreLimits, is_default
from proxywasm_vm._table import Table
from proxywasm_vm._types import FuncType, GlobalType, MemoryType, TableType, ValType
from proxywasm_vm._values import (F32Bits, F64Bits, f32_bits, f32_from_bits, f64_bits, f64_from_bits, host_results,
                                  wrap_i32, wrap_i64)
from proxywasm_vm._wasmparse import SECTION_ORDER, ModuleInfo, Reader, parse_module, sections, uleb128

from . import _capi
from ._capi import LIB, RAW_CALL, TaggedValue

PAGE = 65536
#: The value stack of each instance's runtime, in bytes, unless ``EngineConfig.max_wasm_stack`` says.
DEFAULT_STACK = 1 << 20
#: The largest value stack allowed. wasm3 runs each wasm call as a C call: deep recursion uses the
#: native stack too, up to ~21 bytes of it per byte of value stack measured here (a frame of no
#: params and no locals), so a value stack past 1/32 of the native stack could crash the process
#: (SIGSEGV) before wasm3 reports its own stack overflow.
MAX_STACK = 2 << 20
#: The native stack the worker's thread may grow to (see _grow_native_stack): 32x MAX_STACK.
NATIVE_STACK = 64 << 20


def _grow_native_stack() -> None:
    """Let the worker's main thread (which serves wasm3's calls: one lane, see the worker) grow
    its stack to :data:`NATIVE_STACK`. The kernel checks RLIMIT_STACK when the main thread's
    stack grows, and leaves at least 128 MiB below it free for that (the gap above mmap_base),
    so raising the soft limit now is enough. Only in a worker: a user's process keeps its own."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = NATIVE_STACK if hard == resource.RLIM_INFINITY else min(NATIVE_STACK, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))


def _return_freed_memory() -> None:
    """Have glibc give a freed runtime's memory back to the kernel. Each instance's value stack
    (1 MiB by default) and linear memory are malloc'ed; after the first such block is freed, glibc
    raises its mmap threshold past that size and serves later ones from the heap, where a worker
    that makes and drops instances keeps them. A fixed threshold (which turns that adjustment off)
    keeps large blocks in mappings of their own, unmapped when freed. Only in a worker, as above;
    nothing to do without glibc."""
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 256 << 10)


#: Native bytes (value stacks, linear memories) of the instances made since the last collection.
_unaccounted = [0]
#: After this many, collect reference cycles (see _native_pressure).
COLLECT_AFTER = 64 << 20


def _native_pressure(nbytes: int) -> None:
    """A store dropped without ``close()`` frees its runtimes when its reference cycle (store,
    instances, functions) is collected. Python starts a collection from object counts, not from
    the megabytes of native memory behind a few objects, so a worker making instances held dozens
    of dropped ones at a time (48 in the thread-churn test). Collect after :data:`COLLECT_AFTER`
    bytes of new instances instead: a few ms per 64 instances of the default stack. (A
    ``malloc_trim`` after it gave back little more and cost more than the collection.)"""
    _unaccounted[0] += nbytes
    if _unaccounted[0] >= COLLECT_AFTER:
        _unaccounted[0] = 0
        gc.collect()


if _guard.enabled():
    _grow_native_stack()
    _return_freed_memory()
_MAX_PAGES = 32768  # d_m3MaxLinearMemoryPages in pywasm3's build: 2 GiB

_NUMBERS = (ValType.I32, ValType.I64, ValType.F32, ValType.F64)
_TAG = {ValType.I32: _capi.T_I32, ValType.I64: _capi.T_I64, ValType.F32: _capi.T_F32, ValType.F64: _capi.T_F64}
#: One 8-byte stack slot per value: its struct format. Floats travel as their bits (unsigned ints),
#: so NaN payloads and signalling NaNs survive (a C float read into a Python float would be quieted).
_SLOT = {ValType.I32: "i4x", ValType.I64: "q", ValType.F32: "I4x", ValType.F64: "Q"}
#: A Python value (plain or raw) as its slot value.
_CONVERT: dict[ValType, Callable[[Any], Any]] = {ValType.I32: wrap_i32, ValType.I64: wrap_i64,
                                                  ValType.F32: f32_bits, ValType.F64: f64_bits}
#: A slot value as Python gets it: raw (F32Bits ...), or plain (floats).
_RAW: dict[ValType, Callable[[Any], Any]] = {ValType.F32: F32Bits, ValType.F64: F64Bits}
_COOK: dict[ValType, Callable[[Any], Any]] = {ValType.F32: f32_from_bits, ValType.F64: f64_from_bits}


def _out(t: ValType, v: Any, raw: bool) -> Any:
    """Slot value ``v`` of type ``t`` as Python gets it."""
    conv = (_RAW if raw else _COOK).get(t)
    return v if conv is None else conv(v)


def _outs(types: Sequence[ValType], vals: Sequence[Any], raw: bool) -> tuple:
    return tuple(_out(t, v, raw) for t, v in zip(types, vals))
_NOT_NUMBERS = "wasm3 0.5.0 has only i32, i64, f32 and f64 values (Capabilities.reference_values, v128_values)"
_NO_SHARING = ("wasm3 gives each instance its own memory and globals: a {} made in Python can be imported "
               "by one instance only (Capabilities.shared_externs)")

#: What a raw host function returns when its Python callable raised (the exception is kept on the store).
_HOST_TRAP = ctypes.create_string_buffer(b"[trap] host function raised")
_HOST_TRAP_ADDR = ctypes.addressof(_HOST_TRAP)
#: The stand-in linked for imported functions while a module is only being compiled.
_m3_call = LIB.m3_Call
_UNLINKED = RAW_CALL(lambda rt, ctx, sp, mem: _HOST_TRAP_ADDR)

# (prefix of wasm3's trap message, code)
_TRAPS = [
    ("[trap] out of bounds memory access", TrapCode.MEMORY_OUT_OF_BOUNDS),
    ("[trap] integer divide by zero", TrapCode.INTEGER_DIVIDE_BY_ZERO),
    ("[trap] integer overflow", TrapCode.INTEGER_OVERFLOW),
    ("[trap] invalid conversion to integer", TrapCode.BAD_CONVERSION_TO_INTEGER),
    ("[trap] indirect call type mismatch", TrapCode.INDIRECT_CALL_TYPE_MISMATCH),
    ("[trap] undefined element", TrapCode.TABLE_OUT_OF_BOUNDS),
    ("[trap] null table element", TrapCode.INDIRECT_CALL_TO_NULL),
    ("[trap] unreachable executed", TrapCode.UNREACHABLE),
    ("[trap] stack overflow", TrapCode.STACK_OVERFLOW),
]


def _trap(text: str) -> WasmError:
    for prefix, code in _TRAPS:
        if text.startswith(prefix):
            return Trap(code, text)
    if text.startswith("[trap]"):
        return Trap(TrapCode.UNKNOWN, text)
    return WasmError(text)


def _numbers_only(ty: FuncType | GlobalType) -> None:
    types = ty.params + ty.results if isinstance(ty, FuncType) else (ty.content,)
    if any(t not in _NUMBERS for t in types):
        raise NotImplementedError(_NOT_NUMBERS)


def _slots(types: Sequence[ValType]) -> struct.Struct:
    return struct.Struct("<" + "".join(_SLOT[t] for t in types))


# Immediates of the instructions wasm3 0.5.0 runs, for _walk: opcode -> how many u32 (LEB128)
# immediates follow. (Instructions not listed have none, or are handled in the loop.)
_U32_IMMEDIATES = {0x0C: 1, 0x0D: 1, 0x10: 1, 0x11: 2, 0x20: 1, 0x21: 1, 0x22: 1, 0x23: 1, 0x24: 1,
                   0x25: 1, 0x26: 1, 0xD2: 1, **{op: 2 for op in range(0x28, 0x3F)}}
_FC_IMMEDIATES = {8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}
_SINGLE_BLOCK_TYPES = frozenset((0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F))
_MEMORY_GROW = 0x40


class _Simd(Exception):
    """A SIMD instruction: _walk cannot read on (wasm3 refuses the module anyway)."""


def _walk(code: Reader) -> Iterator[tuple[int, int, int]]:
    """The instructions of a function body (``code`` just past its locals), as (opcode, start,
    block type index or -1). Raises :class:`_Simd` at a SIMD instruction."""
    while code.pos < code.end:
        start = code.pos
        op = code.byte()
        index = -1
        if op in (0x02, 0x03, 0x04):  # block type: an empty/value type byte, or a type index
            if code.byte() not in _SINGLE_BLOCK_TYPES:
                code.pos -= 1
                index = _sleb32(code)
        elif op in _U32_IMMEDIATES:
            for _ in range(_U32_IMMEDIATES[op]):
                code.u32()
        elif op == 0x0E:  # br_table
            for _ in range(code.u32() + 1):
                code.u32()
        elif op == 0x1C:  # select t*
            for _ in range(code.u32()):
                code.byte()
        elif op in (0x3F, _MEMORY_GROW):  # memory.size/grow: a memory index
            code.u32()
        elif op == 0xD0:  # ref.null t
            code.byte()
        elif op in (0x41, 0x42):
            code.skip_sleb()
        elif op == 0x43:
            code.skip(4)
        elif op == 0x44:
            code.skip(8)
        elif op == 0xFC:
            for _ in range(_FC_IMMEDIATES.get(code.u32(), 0)):
                code.u32()
        elif op == 0xFD:
            raise _Simd
        yield op, start, index


def _types(wasm: bytes) -> list[FuncType]:
    out: list[FuncType] = []
    for sid, _, body, end in sections(wasm):
        if sid == 1:
            r = Reader(wasm, body, end)
            for _ in range(r.u32()):
                r.byte()
                params = [r.valtype() for _ in range(r.u32())]
                out.append(FuncType(params, [r.valtype() for _ in range(r.u32())]))
    return out


def _bodies(wasm: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Each function body of the code section: (start of its size, start of its locals, start of
    its code, end)."""
    for sid, _, body, end in sections(wasm):
        if sid != 10:
            continue
        r = Reader(wasm, body, end)
        for _ in range(r.u32()):
            at = r.pos
            size = r.u32()
            locals_at = r.pos
            r.skip(size)
            code = Reader(wasm, locals_at, r.pos)
            for _ in range(code.u32()):
                code.u32()
                code.byte()
            yield at, locals_at, code.pos, r.pos


def _sleb_i32(n: int) -> bytes:
    """``n`` (0 <= n < 2**31) as a signed LEB128 (the immediate of ``i32.const``)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n == 0 and not b & 0x40:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _mixed(types: Sequence[ValType]) -> bool:
    return len(types) >= 3 and len(set(types)) > 1


def _mixed_block_types(wasm: bytes) -> bool:
    """Whether a ``block``, ``loop`` or ``if`` has three or more params or results not all of one type.

    wasm3 0.5.0 runs those wrongly: the values come out of the block rotated or reinterpreted
    (``(block (result i32 i64 f32) ...)`` gives ``(i64, i32, f32)``), which the differential fuzzing
    found (tests/corpus/differential/wasm3_multivalue_block_mixed). Blocks of up to two values, or
    of one type, are right (every combination of up to four values was checked against wasmtime).
    """
    types = _types(wasm)
    mixed = {i for i, t in enumerate(types) if _mixed(t.params) or _mixed(t.results)}
    if not mixed:
        return False
    try:
        for _, _, code, end in _bodies(wasm):
            if any(index in mixed for _, _, index in _walk(Reader(wasm, code, end))):
                return True
    except _Simd:
        pass
    return False


def _guard_memory_grow(wasm: bytes, info: ModuleInfo, maximum: int | None) -> bytes:
    """``wasm`` with each ``memory.grow`` made to fail (-1) when the memory would pass ``maximum``
    pages (the memory's declared maximum; None: 65536, the most a 32-bit memory can have).

    wasm3 0.5.0 gets two cases wrong, both found by the differential fuzzing (in
    tests/corpus/differential): it adds the delta to the current size in 32 bits, so a negative
    i32 delta wraps, *shrinks* the memory and returns the old size
    (``wasm3_memory_grow_negative``); and it takes a declared maximum of 0 pages for none, so
    such a memory grows (``wasm3_memory_grow_max_0``). The spec says -1 for both. Each
    ``memory.grow`` becomes ``local.tee $d; i32.const max; memory.size; i32.sub; i32.gt_u;
    if (result i32) i32.const -1 else local.get $d; memory.grow end``, with ``$d`` one more i32
    local of the function.
    """
    limit = _sleb_i32(65536 if maximum is None else maximum)
    imported = sum(isinstance(i.type, FuncType) for i in info.imports)
    out = []
    changed = False
    try:
        for n, (at, locals_at, code, end) in enumerate(_bodies(wasm)):
            grows = [start for op, start, _ in _walk(Reader(wasm, code, end)) if op == _MEMORY_GROW]
            if not grows:
                out.append(wasm[at:end])
                continue
            changed = True
            r = Reader(wasm, locals_at, code)
            decls = [(r.u32(), r.byte()) for _ in range(r.u32())]
            local = len(info.functions[imported + n].params) + sum(count for count, _ in decls)
            fn = bytearray(uleb128(len(decls) + 1))
            for count, ty in decls:
                fn += uleb128(count) + bytes((ty,))
            fn += b"\x01\x7f"  # the one more i32 local
            pos = code
            for start in grows:
                fn += wasm[pos:start]
                g = Reader(wasm, start + 1, end)
                g.u32()  # the memory index
                fn += (b"\x22" + uleb128(local) + b"\x41" + limit + b"\x3f\x00\x6b\x4b\x04\x7f\x41\x7f\x05\x20"
                       + uleb128(local) + wasm[start:g.pos] + b"\x0b")
                pos = g.pos
            fn += wasm[pos:end]
            out.append(uleb128(len(fn)) + bytes(fn))
    except _Simd:
        return wasm
    if not changed:
        return wasm
    result = wasm[:8]
    for sid, start, _, end in sections(wasm):
        if sid == 10:
            payload = uleb128(len(out)) + b"".join(out)
            result += b"\x0a" + uleb128(len(payload)) + payload
        else:
            result += wasm[start:end]
    return result


def _precheck(wasm: bytes) -> ModuleInfo:
    """Our own reader first (wasm3 is lenient about framing), then what wasm3 0.5.0 lacks."""
    info = parse_module(wasm)
    if any(sid == 13 for sid, *_ in sections(wasm)):
        raise CompileError("wasm3 does not support exception handling (the module has a tag section)")
    for m in info.memories:
        if m.is_64 or m.shared:
            raise CompileError("wasm3 0.5.0 has no 64-bit or shared memories")
    if len(info.memories) > 1:
        raise CompileError("wasm3 supports one memory per module")
    # wasm3 finds an exported global by its name as a C string (m3_FindGlobal): a name with a NUL
    # in it reads as its part before the NUL, so "\0" and "" would be one global (found by the
    # differential fuzzing: tests/corpus/differential/wasm3_global_name_nul)
    for e in info.exports:
        if isinstance(e.type, GlobalType) and "\x00" in e.name:
            raise CompileError(f"wasm3 0.5.0 finds exported globals by C string and cannot tell apart the name "
                               f"{e.name!r}, which contains a NUL: refused (Capabilities.wasm2_complete)")
    return info


#: wasm3's d_m3MaxSaneTableSize: a larger table 0 is "table overflow" to it.
_MAX_TABLE = 100_000


def _size_table0(wasm: bytes) -> bytes:
    """``wasm`` with one more, empty, active element segment at the end of table 0, first.

    wasm3 0.5.0 sizes table 0 by the element segments (the end of the last one), not by the table's
    declared minimum, so ``call_indirect`` of a null entry past the last segment traps as an
    out-of-bounds index ("undefined element") where the spec says "uninitialized element". An empty
    segment at offset = the minimum changes nothing else (it is in bounds and writes no entry),
    and makes wasm3 allocate the whole table, zeroed (null). It goes first: wasm3 fails an empty
    segment met while the table is still unallocated ("memory allocation failed"; found by the
    differential fuzzing, tests/corpus/differential).
    """
    secs = sections(wasm)
    minimum = 0
    for sid, _, body, end in secs:
        if sid == 4:
            r = Reader(wasm, body, end)
            if r.u32():
                minimum = r.table_type().limits.min
    if minimum == 0:
        return _drop_empty_segments(wasm, secs)
    if minimum > _MAX_TABLE:
        return wasm
    offset = uleb128(minimum)
    if offset[-1] & 0x40:  # i32.const takes a signed LEB128: keep it positive
        offset = offset[:-1] + bytes([offset[-1] | 0x80, 0])
    segment = b"\x00\x41" + offset + b"\x0b\x00"  # table 0, (i32.const minimum), no function
    for sid, start, body, end in secs:
        if sid == 9:
            r = Reader(wasm, body, end)
            count = r.u32()
            payload = uleb128(count + 1) + segment + wasm[r.pos:end]
            return wasm[:start] + b"\x09" + uleb128(len(payload)) + payload + wasm[end:]
    # no element section: a new one, before the first section that must follow it
    at = next((start for sid, start, _, _ in secs if sid and SECTION_ORDER.get(sid, 0) > SECTION_ORDER[9]),
              len(wasm))
    payload = b"\x01" + segment
    return wasm[:at] + b"\x09" + uleb128(len(payload)) + payload + wasm[at:]


_EMPTY_AT_0 = b"\x00\x41\x00\x0b\x00"  # table 0, (i32.const 0), no function


def _drop_empty_segments(wasm: bytes, secs: list[tuple[int, int, int, int]]) -> bytes:
    """``wasm`` without its empty active segments at offset 0 (of a table of size 0: no-ops in the
    spec, "memory allocation failed" to wasm3 0.5.0, which allocates no table for them)."""
    for sid, start, body, end in secs:
        if sid != 9:
            continue
        r = Reader(wasm, body, end)
        kept = []
        for _ in range(r.u32()):
            at = r.pos
            if r.u32() != 0 or r.byte() != 0x41:
                return wasm  # another form: wasm3 refuses it anyway
            _sleb32(r)
            if r.byte() != 0x0B:
                return wasm
            for _ in range(r.u32()):
                r.u32()
            if wasm[at:r.pos] != _EMPTY_AT_0:
                kept.append(wasm[at:r.pos])
        payload = uleb128(len(kept)) + b"".join(kept)
        return wasm[:start] + b"\x09" + uleb128(len(payload)) + payload + wasm[end:]
    return wasm


def _sleb32(r: Reader) -> int:
    result = shift = 0
    while True:
        b = r.byte()
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if b & 0x40:
        result -= 1 << shift
    return result & 0xFFFFFFFF


def _element_out_of_bounds(wasm: bytes) -> bool:
    """Whether an active element segment of table 0 (with a constant offset) ends past the table's
    minimum: the spec traps at instantiation ("out of bounds table access"); wasm3 0.5.0 grows its
    table instead, and the instance would run. (A table cannot be imported under wasm3, and
    segments of other forms are refused by wasm3 itself.)"""
    secs = sections(wasm)
    size = 0
    for sid, _, body, end in secs:
        if sid == 4:
            r = Reader(wasm, body, end)
            if r.u32():
                size = r.table_type().limits.min
    for sid, _, body, end in secs:
        if sid != 9:
            continue
        r = Reader(wasm, body, end)
        for _ in range(r.u32()):
            if r.u32() != 0 or r.byte() != 0x41:  # not (table 0, i32.const ...): stop here
                return False
            offset = _sleb32(r)
            if r.byte() != 0x0B:
                return False
            count = r.u32()
            if offset + count > size:
                return True
            for _ in range(count):
                r.u32()
    return False


def _without_data(wasm: bytes) -> bytes:
    """``wasm`` without its data (and data count) sections."""
    out = wasm[:8]
    for sid, start, _, end in sections(wasm):
        if sid not in (11, 12):
            out += wasm[start:end]
    return out


#: wasm3's message for an active data segment past the end of memory (at load: instantiation)
_DATA_OOB = "data segment out of bounds"


def _parse(env: int, wasm: bytes) -> int:
    mod = c_void_p()
    _capi.check(LIB.m3_ParseModule(env, ctypes.byref(mod), wasm, len(wasm)), CompileError)
    return int(mod.value or 0)


def _prepare_imported_memory(rt: int, ty: MemoryType, pages: int) -> None:
    """A module importing its memory: wasm3 leaves the runtime's memory alone; size it here."""
    _, maxp = _capi.memory_pages(rt)
    maxp.value = ty.limits.max if ty.limits.max is not None else _MAX_PAGES
    _capi.check(LIB.ResizeMemory(rt, pages), LinkError, rt)


# ---- engine and modules ----------------------------------------------------------------

#: What wasm3 0.5.0 says about the bulk-memory instructions and passive segments it lacks.
_BULK_MESSAGES = ("restricted opcode", "unknown opcode", "element table index must be zero for MVP")


class Wasm3Engine(Engine):
    _stack: int

    @classmethod
    def _create(cls, backend: Any, config: EngineConfig) -> Wasm3Engine:
        stack = DEFAULT_STACK
        if config.max_wasm_stack is not None and not is_default(config.max_wasm_stack):
            stack = int(config.max_wasm_stack)
            if not 4096 <= stack <= MAX_STACK:
                raise ValueError(f"max_wasm_stack must be between 4 KiB and {MAX_STACK >> 20} MiB for wasm3 "
                                 "(its recursion also uses the native stack, which a larger value stack "
                                 "would exhaust first)")
        self = object.__new__(cls)
        self.backend = backend
        self.config = config
        self._stack = stack
        return self

    def _module_new(self, wasm: bytes) -> Module:
        info = _precheck(wasm)
        wasm = bytes(wasm)  # (validated by the core already, under the engine's features)
        if _mixed_block_types(wasm):  # (a valid module: read after the validator)
            raise CompileError("wasm3 0.5.0 runs a block, loop or if of three or more values of mixed types "
                               "wrongly: refused (Capabilities.wasm2_complete)")
        wasm = _guard_memory_grow(_size_table0(wasm), info, info.memories[0].limits.max if info.memories else None)
        if any(isinstance(i.type, TableType) for i in info.imports):
            # wasm3 0.5.0 skips a table import's type while parsing and so cannot read the rest:
            # the module is read (by our reader) for introspection, and refused at instantiation
            m = Wasm3Module._wrap(self, wasm)
            m._info = info
            return m
        # compile every function once now, so an invalid body is a CompileError here, not at a call
        env = LIB.m3_NewEnvironment()
        rt = LIB.m3_NewRuntime(env, 4096, None)
        try:
            mod = _parse(env, wasm)
            if info.memories and any(isinstance(i.type, MemoryType) for i in info.imports):
                _prepare_imported_memory(rt, info.memories[0], info.memories[0].limits.min)
            res = LIB.m3_LoadModule(rt, mod)
            if res and _capi.error_text(rt, res) == _DATA_OOB:
                # a valid module whose data segment does not fit traps at instantiation, not
                # here: compile its functions without its data segments
                LIB.m3_FreeModule(mod)
                mod = _parse(env, _without_data(wasm))
                res = LIB.m3_LoadModule(rt, mod)
            if res:
                LIB.m3_FreeModule(mod)
                raise CompileError(_capi.error_text(rt, res))
            for imp in info.imports:  # (imported functions are "compiled" too: link stand-ins)
                if isinstance(imp.type, FuncType):
                    LIB.m3_LinkRawFunctionEx(mod, imp.module.encode(), imp.name.encode(), None, _UNLINKED, None)
            _capi.check(LIB.m3_CompileModule(mod), CompileError, rt)
        except LinkError as e:
            raise CompileError(str(e)) from None
        except CompileError as e:
            if any(m in str(e) for m in _BULK_MESSAGES):  # (the core validated it: valid Wasm 2.0 less SIMD/refs)
                raise CompileError(f"wasm3 0.5.0 cannot run this module: it uses a bulk-memory instruction wasm3 lacks "
                                   "(memory.init, data.drop, table.copy, table.init or elem.drop) or a passive "
                                   f"segment (Capabilities.unsupported_instructions): {e}", feature="bulk_memory") from None
            raise
        finally:
            LIB.m3_FreeRuntime(rt)
            LIB.m3_FreeEnvironment(env)
        m = Wasm3Module._wrap(self, wasm)
        m._info = info
        return m

    def _module_validate(self, wasm: bytes) -> bool:
        try:
            self._module_new(wasm)
        except CompileError:
            return False
        return True

    def _store_new(self, limits: StoreLimits, data: Any) -> Store:
        return Wasm3Store._create(self, limits, data)


class Wasm3Module(Module):
    engine: Wasm3Engine
    _bytes: bytes
    _findex: dict[str, int] | None = None

    @classmethod
    def _wrap(cls, engine: Wasm3Engine, wasm: bytes) -> Wasm3Module:
        m = object.__new__(cls)
        m.engine = engine
        m._bytes = wasm  # wasm3 reads function bodies from these bytes as it compiles them
        return m

    def _func_exports(self) -> dict[str, int]:
        """Exported function name -> function index (wasm3 keeps only three names per function)."""
        got = self._findex
        if got is None:
            got = {}
            for sid, _, body, end in sections(self._bytes):
                if sid == 7:
                    r = Reader(self._bytes, body, end)
                    for _ in range(r.u32()):
                        name, kind, index = r.name(), r.byte(), r.u32()
                        if kind == 0:
                            got[name] = index
            self._findex = got
        return got

    def serialize(self) -> bytes:
        raise NotImplementedError("wasm3 compiles as it runs: there is nothing to serialize (Capabilities.serialize)")


# ---- stores ---------------------------------------------------------------------------------

def _free(env: int, runtimes: list[int]) -> None:
    for rt in runtimes:
        LIB.m3_FreeRuntime(rt)
    runtimes.clear()
    if env:
        LIB.m3_FreeEnvironment(env)


class Wasm3Store(_guard.GuardedStore, Store):
    runtime_name = "wasm3"
    engine: Wasm3Engine
    _env: int
    _runtimes: list[int]
    _instances: dict[int, Wasm3Instance]
    _closed: bool
    _active: int
    _host_exc: BaseException | None
    _mems: list[Wasm3Memory]
    _release: Release  # frees the environment and runtimes (at close, or after finalizers)

    @classmethod
    def _create(cls, engine: Wasm3Engine, limits: StoreLimits, data: Any) -> Wasm3Store:
        s = object.__new__(cls)
        s.engine = engine
        s.data = data
        s._init_guard(limits)  # the limits the worker's guard enforces (and _mems, the memories they count)
        s._env = LIB.m3_NewEnvironment()
        s._runtimes = []
        s._instances = {}  # runtime address -> instance
        s._closed = False
        s._active = 0
        s._host_exc = None
        release_after_finalizers(s, _free, s._env, s._runtimes)
        return s

    def _check_cap(self, nbytes: int) -> None:
        if self._cap is not None and nbytes > self._cap:
            raise Trap(TrapCode.MEMORY_LIMIT, f"memory minimum size {nbytes} bytes exceeds the store limit "
                                              f"of {self._cap} bytes")

    def _check_open(self) -> None:
        if self._closed:
            raise WasmError("this store is closed")

    def close(self) -> None:
        if self._active:
            raise WasmError("cannot close a store while a call into it is running")
        if not self._closed:
            self._closed = True
            self._instances.clear()
            self._release()

    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> Func:
        self._check_open()
        _numbers_only(ty)
        return Wasm3HostFunc._make(self, ty, fn, access_caller)

    def _memory_new(self, ty: MemoryType) -> Memory:
        self._check_open()
        if ty.is_64 or ty.shared:
            raise WasmError("wasm3 0.5.0 has no 64-bit or shared memories")
        lim = ty.limits
        if lim.min > _MAX_PAGES or (lim.max is not None and (lim.max > 65536 or lim.max < lim.min)):
            raise WasmError(f"invalid memory type {ty}")
        self._check_cap(lim.min * PAGE)
        m = Wasm3Memory._standalone(self, ty)
        self._mems.append(m)
        return m

    def _global_new(self, ty: GlobalType, value: Any) -> Global:
        self._check_open()
        _numbers_only(ty)
        return Wasm3Global._standalone(self, ty, _CONVERT[ty.content](value))

    def _table_new(self, ty: TableType, init: Any) -> Table:
        raise NotImplementedError("wasm3 tables cannot be made or reached from Python (Capabilities.table_access)")

    def _instantiate(self, module: Any, imports: Sequence[Any]) -> Instance:
        self._check_open()
        info: ModuleInfo = module._module_info()
        for imp, item in zip(module.imports, imports):
            if item.store is not self:
                raise ValueError(f"import {imp.module}::{imp.name} belongs to another store")
            if isinstance(item, (Wasm3Memory, Wasm3Global)) and item._inst is not None:
                raise LinkError(_NO_SHARING.format("memory" if isinstance(item, Memory) else "global"),
                                module=imp.module, name=imp.name)
            if isinstance(imp.type, TableType):
                raise LinkError(f"wasm3 cannot import tables ({imp.module}::{imp.name}; Capabilities.table_access)",
                                module=imp.module, name=imp.name)
            if isinstance(imp.type, MemoryType):
                want, have = imp.type.limits, item.type.limits
                if have.min < want.min or (want.max is not None and (have.max is None or have.max > want.max)):
                    raise LinkError(f"import {imp.module}::{imp.name}: memory {item.type} does not match "
                                    f"{imp.type}", module=imp.module, name=imp.name)
        if self._cap is not None:
            for mt in info.memories:
                self._check_cap(mt.limits.min * PAGE)
        if _element_out_of_bounds(module._bytes):
            raise Trap(TrapCode.TABLE_OUT_OF_BOUNDS, "out of bounds table access (element segment)")
        _native_pressure(self.engine._stack + sum(mt.limits.min for mt in info.memories) * PAGE)
        rt = LIB.m3_NewRuntime(self._env, self.engine._stack, None)
        if not rt:
            raise MemoryError("wasm3 could not allocate a runtime")
        self._runtimes.append(rt)
        mod = _parse(self._env, module._bytes)
        inst = Wasm3Instance._wrap(self, module, rt, mod)
        imported_mem = None
        for imp, item in zip(module.imports, imports):
            if isinstance(imp.type, MemoryType):
                imported_mem = item
                _prepare_imported_memory(rt, item.type, item._pages)
                buf = item._buf
                if buf:
                    base = LIB.m3_GetMemory(rt, None, 0)
                    ctypes.memmove(base, bytes(buf), len(buf))
        res = LIB.m3_LoadModule(rt, mod)
        if res:
            LIB.m3_FreeModule(mod)
            text = _capi.error_text(rt, res)
            if text == _DATA_OOB:
                raise Trap(TrapCode.MEMORY_OUT_OF_BOUNDS, text)
            raise (_trap(text) if "out of bounds" in text else LinkError(text))
        # the instance's memory: one per runtime
        if imported_mem is not None:
            imported_mem._bind(inst)
            inst._memory = imported_mem
        elif info.memories:
            m = Wasm3Memory._bound(self, info.memories[0], inst)
            inst._memory = m
            self._mems.append(m)
        # imports: functions through one raw callback, globals copied in and bound
        inst._targets = list(imports)
        inst._links = [None] * len(imports)
        for n, (imp, item) in enumerate(zip(module.imports, imports)):
            if isinstance(imp.type, FuncType):
                _numbers_only(imp.type)
                ty = imp.type
                host = isinstance(item, Wasm3HostFunc)
                # both take raw f32/f64 arguments (the host function by contract) and may return them raw
                inst._links[n] = (item._fn if host else _raw_caller(item), host and item._access_caller,
                                  len(ty.results),
                                  len(ty.params), _slots(ty.params).unpack, _slots(ty.results).pack, ty.results,
                                  ty.params, any(t in _RAW for t in ty.params))
                res = LIB.m3_LinkRawFunctionEx(mod, imp.module.encode(), imp.name.encode(), None, inst._raw, n)
                if res and _capi.message(res) != "function lookup failed":
                    raise LinkError(_capi.error_text(rt, res), module=imp.module, name=imp.name)
            elif isinstance(imp.type, GlobalType):
                g = LIB.m3_FindGlobal(mod, imp.name.encode())
                if not g or not ctypes.c_char_p.from_address(g).value:
                    raise LinkError(f"wasm3 did not find the imported global {imp.module}::{imp.name}",
                                    module=imp.module, name=imp.name)
                value = item._bits()
                item._bind(inst, g)
                item._write(value)
        self._instances[rt] = inst
        # the start function
        self._active += 1
        armed = self._arm()
        try:
            res = LIB.m3_RunStart(mod)
        finally:
            if armed:
                _guard.leave()
            self._active -= 1
        if res:
            exc, self._host_exc = self._host_exc, None
            if res == _HOST_TRAP_ADDR and exc is not None:
                raise exc
            raise _trap(_capi.error_text(rt, res))
        return inst


# ---- functions --------------------------------------------------------------------------------

class Wasm3Func(Func):
    """An exported wasm function."""

    store: Wasm3Store
    _inst: Wasm3Instance
    _f: int
    _conv: list[Callable[[Any], Any]]
    _packer: struct.Struct
    _unpacker: struct.Struct
    _n: int
    _nres: int
    _buf: Any
    _ptrs: Any
    _floats: bool  # a float result (its bits come back: see _SLOT)

    @classmethod
    def _wrap(cls, inst: Wasm3Instance, f: int, ty: FuncType) -> Wasm3Func:
        fn = object.__new__(cls)
        fn.store = inst.store
        fn.type = ty
        fn._inst = inst
        fn._f = f
        fn._conv = [_CONVERT[t] for t in ty.params]
        fn._packer = _slots(ty.params)
        fn._unpacker = _slots(ty.results)
        fn._n = n = len(ty.params)
        fn._nres = len(ty.results)
        fn._floats = any(t in _RAW for t in ty.results)
        # one argument buffer per function: m3_Call copies the arguments onto the wasm stack
        # before it runs anything, so a nested call of the same function may reuse it
        fn._buf = (c_uint64 * max(n, 1))()
        addr = ctypes.addressof(fn._buf)
        fn._ptrs = (c_void_p * max(n, 1))(*[addr + 8 * i for i in range(n)])
        return fn

    def __call__(self, *args: Any) -> Any:
        return self._call_as(args, False)

    def _call_raw(self, args: tuple) -> Any:
        return self._call_as(args, True)

    def _call_as(self, args: tuple, raw: bool) -> Any:
        """Call with ``args``; f32/f64/v128 results raw when ``raw``."""
        conv = self._conv
        if len(args) != len(conv):
            raise TypeError(f"expected {len(conv)} arguments, got {len(args)}")
        store = self.store
        if store._closed:
            raise WasmError("this store is closed")
        if conv:
            self._packer.pack_into(self._buf, 0, *[c(a) for c, a in zip(conv, args)])
        inst = self._inst
        base = inst._base
        frames = inst._frames
        nested = bool(frames)
        old = 0
        if nested:  # a host function of this instance is running: start above its frame
            old = base.value
            base.value = frames[-1]
        store._active += 1
        armed = store._arm()
        try:
            res = _m3_call(self._f, self._n, self._ptrs)
            if not res:
                nres = self._nres
                if not nres:
                    return None
                vals = self._unpacker.unpack(ctypes.string_at(base.value, 8 * nres))
                if self._floats:
                    vals = _outs(self.type.results, vals, raw)
                return vals[0] if nres == 1 else vals
        finally:
            if armed:
                _guard.leave()
            store._active -= 1
            if nested:
                base.value = old
        exc = store._host_exc
        if not store._active:
            store._host_exc = None
        if res == _HOST_TRAP_ADDR and exc is not None:
            raise exc
        raise _trap(_capi.error_text(inst._rt, res))


def _raw_caller(f: Func) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        return f._call_raw(args)
    return call


def _check_results(results: tuple[ValType, ...], r: Any) -> tuple:
    if not results:
        return ()
    if len(results) == 1 and r.__class__ is int and results[0] in (ValType.I32, ValType.I64):
        return (_CONVERT[results[0]](r),)
    r = host_results(len(results), r)
    out = []
    for t, v in zip(results, r):
        if t in (ValType.I32, ValType.I64) and (isinstance(v, bool) or not isinstance(v, int)):
            raise TypeError(f"host function must return an int for its {t.value} result, got {v!r}")
        out.append(_CONVERT[t](v))
    return tuple(out)


class Wasm3HostFunc(Func):
    """A Python host function."""
    store: Wasm3Store
    _fn: Callable[..., Any]
    _access_caller: bool


    @classmethod
    def _make(cls, store: Wasm3Store, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> Wasm3HostFunc:
        f = object.__new__(cls)
        f.store = store
        f.type = ty
        f._fn = fn
        f._access_caller = access_caller
        return f

    def __call__(self, *args: Any) -> Any:
        self.store._check_open()
        ty = self.type
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        return self._call_as(args, False)

    def _call_raw(self, args: tuple) -> Any:
        return self._call_as(args, True)

    def _call_as(self, args: tuple, raw: bool) -> Any:
        """Call with ``args``; f32/f64/v128 results raw when ``raw``."""
        self.store._check_open()
        ty = self.type
        if len(args) != len(ty.params):
            raise TypeError(f"expected {len(ty.params)} arguments, got {len(args)}")
        # checked and converted as wasm would pass them, then raw (the contract of _func_new)
        vals = _outs(ty.params, [_CONVERT[t](a) for t, a in zip(ty.params, args)], True)
        r = self._fn(Wasm3Caller(self.store, None), *vals) if self._access_caller else self._fn(*vals)
        out = _outs(ty.results, _check_results(ty.results, r), raw)
        if not out:
            return None
        return out[0] if len(out) == 1 else out


class Wasm3Caller(Caller):
    __slots__ = ("_inst", "_store")

    def __init__(self, store: Wasm3Store, inst: Wasm3Instance | None) -> None:
        self._store = store
        self._inst = inst

    @property
    def store(self) -> Wasm3Store:
        return self._store

    def get_export(self, name: str) -> Any:
        inst = self._inst
        if inst is None or name not in inst.exports:
            return None
        return inst.exports[name]


# ---- externs ------------------------------------------------------------------------------------

class Wasm3Memory(Memory):
    """A memory made in Python (bytes here until an instance imports it) or an instance's memory."""
    store: Wasm3Store
    _inst: Wasm3Instance | None
    _buf: bytearray


    @classmethod
    def _standalone(cls, store: Wasm3Store, ty: MemoryType) -> Wasm3Memory:
        m = object.__new__(cls)
        m.store = store
        m.type = ty
        m._inst = None
        m._buf = bytearray(ty.limits.min * PAGE)
        return m

    @classmethod
    def _bound(cls, store: Wasm3Store, ty: MemoryType, inst: Wasm3Instance) -> Wasm3Memory:
        m = object.__new__(cls)
        m.store = store
        m.type = ty
        m._bind(inst)
        return m

    def _bind(self, inst: Wasm3Instance) -> None:
        self._inst = inst
        self._buf = bytearray()

    @property
    def _pages(self) -> int:
        return len(self._buf) // PAGE

    def _span(self) -> tuple[int, int]:
        """(address, size in bytes) of the bound memory now (it moves when it grows)."""
        if self.store._closed:
            raise WasmError("this store is closed")
        size = c_uint32()
        addr = LIB.m3_GetMemory(self._inst._rt, ctypes.byref(size), 0)  # type: ignore[union-attr]
        return int(addr or 0), size.value

    @property
    def size(self) -> int:
        return self.data_size // PAGE

    @property
    def data_size(self) -> int:
        self.store._check_open()
        if self._inst is None:
            return len(self._buf)
        return self._span()[1]

    def grow(self, delta: int) -> int:
        self.store._check_open()
        if delta < 0:
            raise ValueError("delta must be >= 0")
        old = self.size
        new = old + delta
        mx = self.type.limits.max
        if new > (mx if mx is not None else _MAX_PAGES) or new > _MAX_PAGES:
            raise LimitError(f"growing by {delta} pages would pass the memory's maximum")
        cap = self.store._cap
        if cap is not None and new * PAGE > cap:
            raise LimitError(f"growing by {delta} pages would pass the store's memory limit of {cap} bytes")
        if self._inst is None:
            self._buf.extend(bytes(delta * PAGE))
            return old
        res = LIB.ResizeMemory(self._inst._rt, new)
        if res:
            raise LimitError(_capi.message(res))
        return old

    def read(self, offset: int, length: int) -> bytes:
        if self._inst is None:
            self.store._check_open()
            if offset < 0 or length < 0 or offset + length > len(self._buf):
                raise IndexError(f"memory access out of bounds: offset {offset} length {length}")
            return bytes(self._buf[offset:offset + length])
        addr, size = self._span()
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(f"memory access out of bounds: offset {offset} length {length} (memory is {size} bytes)")
        return ctypes.string_at(addr + offset, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raw = bytes(data)
        n = len(raw)
        if self._inst is None:
            self.store._check_open()
            if offset < 0 or offset + n > len(self._buf):
                raise IndexError(f"memory access out of bounds: offset {offset} length {n}")
            self._buf[offset:offset + n] = raw
            return
        addr, size = self._span()
        if offset < 0 or offset + n > size:
            raise IndexError(f"memory access out of bounds: offset {offset} length {n} (memory is {size} bytes)")
        ctypes.memmove(addr + offset, raw, n)

    def view(self) -> memoryview:
        raise NotImplementedError("wasm3 moves a memory when it grows, so a zero-copy view could outlive it "
                                  "(Capabilities.memory_view is False): use read() and write()")


class Wasm3Global(Global):
    """A global made in Python (its value here until an instance imports it) or an instance's global."""
    store: Wasm3Store
    _inst: Wasm3Instance | None
    _g: int
    _value: Any


    @classmethod
    def _standalone(cls, store: Wasm3Store, ty: GlobalType, value: Any) -> Wasm3Global:
        g = object.__new__(cls)
        g.store = store
        g.type = ty
        g._inst = None
        g._g = 0
        g._value = value
        return g

    def _bind(self, inst: Wasm3Instance, g: int) -> None:
        self._inst = inst
        self._g = g

    def _write(self, value: Any) -> None:
        t = self.type.content
        tv = TaggedValue()
        tv.type = _TAG[t]
        if t is ValType.I32:
            tv.value.i32 = value & 0xFFFFFFFF
        elif t is ValType.I64:
            tv.value.i64 = value & 0xFFFFFFFFFFFFFFFF
        elif t is ValType.F32:  # the value is kept as its bits (see _SLOT)
            tv.value.i32 = value
        else:
            tv.value.i64 = value
        _capi.check(LIB.m3_SetGlobal(self._g, ctypes.byref(tv)), WasmError)

    def get(self, raw: bool = False) -> Any:
        self.store._check_open()
        return _out(self.type.content, self._bits(), raw)

    def _bits(self) -> Any:
        """The value as kept: ints, floats as their bits."""
        if self._inst is None:
            return self._value
        tv = TaggedValue()
        _capi.check(LIB.m3_GetGlobal(self._g, ctypes.byref(tv)), WasmError)
        t = self.type.content
        if t is ValType.I32:
            return wrap_i32(tv.value.i32)
        if t is ValType.I64:
            return wrap_i64(tv.value.i64)
        if t is ValType.F32:
            return tv.value.i32
        return tv.value.i64

    def set(self, value: Any) -> None:
        self.store._check_open()
        if not self.type.mutable:
            raise TypeError("cannot set an immutable global")
        if isinstance(value, bool) or (self.type.content in (ValType.I32, ValType.I64)
                                       and not isinstance(value, int)):
            raise TypeError(f"expected an int for a {self.type.content.value} global, got {value!r}")
        v = _CONVERT[self.type.content](value)
        if self._inst is None:
            self._value = v
        else:
            self._write(v)


class Wasm3Table(Table):
    """An exported table: wasm3 gives no access to it from Python."""
    store: Wasm3Store


    @classmethod
    def _wrap(cls, store: Wasm3Store, ty: TableType) -> Wasm3Table:
        t = object.__new__(cls)
        t.store = store
        t.type = ty
        return t

    def _gap(self) -> NotImplementedError:
        return NotImplementedError("wasm3 tables cannot be reached from Python (Capabilities.table_access)")

    @property
    def size(self) -> int:
        raise self._gap()

    def get(self, index: int) -> Any:
        raise self._gap()

    def set(self, index: int, value: Any) -> None:
        raise self._gap()

    def grow(self, delta: int, init: Any = None) -> int:
        raise self._gap()


class Wasm3Instance(Instance):
    store: Wasm3Store
    module: Wasm3Module
    _rt: int
    _mod: int
    _types: dict[str, Any]
    _frames: list[int]
    _targets: list[Any]
    _memory: Wasm3Memory | None
    _cache: dict[str, Any]
    _raw: Any
    _base: c_uint64
    _links: list[Any]

    @classmethod
    def _wrap(cls, store: Wasm3Store, module: Any, rt: int, mod: int) -> Wasm3Instance:
        i = object.__new__(cls)
        i.store = store
        i.module = module
        i._rt = rt
        i._mod = mod
        i._types = {e.name: e.type for e in module.exports}
        i._frames = []  # stack tops of host functions running now (for nested calls)
        i._targets = []
        i._memory = None
        i._cache = {}
        i._raw = RAW_CALL(i._host_call)  # kept alive with the instance
        i._base = _capi.stack_base(rt)  # rt->stack
        i._links = []
        return i

    def _host_call(self, rt: int, ctx: int, sp: int, mem: int) -> int:
        """wasm called import number ``ctx->userdata``: run it with the arguments on the stack."""
        try:
            fn, with_caller, nres, nargs, unpack, pack, results, params, floats = \
                self._links[c_void_p.from_address(ctx).value or 0]
            args = unpack(ctypes.string_at(sp + 8 * nres, 8 * nargs)) if nargs else ()
            if floats:
                args = _outs(params, args, True)
            frames = self._frames
            frames.append(sp + 8 * (nres + nargs))
            try:
                r = fn(Wasm3Caller(self.store, self), *args) if with_caller else fn(*args)
            finally:
                frames.pop()
            if nres:
                ctypes.memmove(sp, pack(*_check_results(results, r)), 8 * nres)
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised unchanged by the outer call
            self.store._host_exc = e
            return _HOST_TRAP_ADDR

    def _export(self, name: str) -> Any:
        got = self._cache.get(name)
        if got is not None:
            return got
        ty = self._types.get(name)
        if ty is None:
            raise KeyError(f"no export named {name!r}")
        self.store._check_open()
        if isinstance(ty, FuncType):
            index = self.module._func_exports()[name]
            f = _capi.compiled_function(self._mod, index)
            if f:
                got = Wasm3Func._wrap(self, f, ty)
            else:  # a re-exported import that wasm3 has not linked: the imported function itself
                funcs = [t for imp, t in zip(self.module.imports, self._targets) if isinstance(imp.type, FuncType)]
                if index >= len(funcs):
                    raise WasmError(f"wasm3 cannot compile the exported function {name!r}")
                got = funcs[index]
        elif isinstance(ty, MemoryType):
            got = self._memory
        elif isinstance(ty, GlobalType):
            g = LIB.m3_FindGlobal(self._mod, name.encode())
            if not g:
                raise WasmError(f"wasm3 cannot find the exported global {name!r}")
            got = None
            for item in self._targets:
                if isinstance(item, Wasm3Global) and item._g == g:
                    got = item
            if got is None:
                got = Wasm3Global._standalone(self.store, ty, 0)
                got._bind(self, g)
        elif isinstance(ty, TableType):
            got = Wasm3Table._wrap(self.store, ty)
        else:
            raise WasmError(f"unsupported export {name!r} of type {ty}")
        self._cache[name] = got
        return got
