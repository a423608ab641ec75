"""A minimal reader for the WebAssembly binary format.

It reads what runtimes do not all expose: the types of imports and exports and
the custom sections. Code and data sections are skipped without being decoded,
so a multi-megabyte module is read in well under a millisecond per section
header. Validation is the runtime's job: this reader only raises
:class:`CompileError` when the structure it reads is malformed.

It is strict about what it reads, as the spec's binary format is (section order, sizes,
LEB128 widths, limits flags): the V8 backend rewrites the import, table and memory sections
before V8 sees them (``proxywasm_vm/backends/v8/_rewrite.py``), and V8 10.2 itself skips unknown section
ids, so whatever this reader lets through in those places no runtime checks on V8.
References are to the WebAssembly 2.0 specification (https://webassembly.github.io/spec/
core/binary/), with the threads and memory64 additions wasmtime accepts by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import CompileError
from ._types import (
    ExportType,
    ExternType,
    FuncType,
    GlobalType,
    ImportType,
    Limits,
    MemoryType,
    TableType,
    ValType,
)

__all__ = ["ModuleInfo", "parse_module"]

_MAGIC = b"\0asm"
# Limits flags (5.3.4): Wasm 2.0 has 0x00 (min) and 0x01 (min, max). The threads proposal adds
# 0x03 (shared, which needs a max); memory64 adds 0x04/0x05/0x07 (64-bit, and tables64 for
# tables). wasmtime accepts all of these; a shared table does not exist.
_MEMORY_FLAGS = frozenset((0x00, 0x01, 0x03, 0x04, 0x05, 0x07))
_TABLE_FLAGS = frozenset((0x00, 0x01, 0x04, 0x05))
# The order of the known sections (5.5.2); custom sections (0) may appear anywhere. 12 (data
# count) sits between element (9) and code (10); 13 (tags, exception handling) between memory
# (5) and global (6). Any other id is malformed, each known one appears at most once.
SECTION_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}
_VALTYPES = {
    0x7F: ValType.I32,
    0x7E: ValType.I64,
    0x7D: ValType.F32,
    0x7C: ValType.F64,
    0x7B: ValType.V128,
    0x70: ValType.FUNCREF,
    0x6F: ValType.EXTERNREF,
}


@dataclass
class ModuleInfo:
    """What :func:`parse_module` found in a module."""

    imports: list[ImportType] = field(default_factory=list)
    exports: list[ExportType] = field(default_factory=list)
    custom_sections: list[tuple[str, bytes]] = field(default_factory=list)
    has_start: bool = False
    memories: list[MemoryType] = field(default_factory=list)
    """Every memory of the module: imported ones first, then its own."""
    functions: list[FuncType] = field(default_factory=list)
    """The type of every function of the module (its function index space): imported ones first."""


class Reader:
    """Reads the binary format from ``pos`` up to ``end``; running past ``end`` is a CompileError."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise CompileError("unexpected end of module")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            # 5.2.2: a u32 takes at most ceil(32/7) = 5 bytes, and the unused bits of the
            # fifth must be zero ("integer representation too long" / "integer too large")
            if shift == 28 and self.pos < self.end and self.data[self.pos] & 0xF0:
                raise CompileError("malformed LEB128 integer: integer too large or representation too long")
        return result

    def u64(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift == 63 and self.pos < self.end and self.data[self.pos] & 0xFE:  # 5.2.2, as for u32
                raise CompileError("malformed LEB128 integer: integer too large or representation too long")

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise CompileError("unexpected end of module")
        self.pos += n

    def skip_sleb(self) -> None:
        while self.byte() & 0x80:
            pass

    def bytes(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise CompileError("unexpected end of module")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def name(self) -> str:
        raw = self.bytes(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CompileError(f"malformed UTF-8 name: {raw!r}") from e

    def valtype(self) -> ValType:
        b = self.byte()
        try:
            return _VALTYPES[b]
        except KeyError:
            raise CompileError(f"unsupported value type 0x{b:02x}") from None

    def limits(self, flags_allowed: frozenset[int] = frozenset((0, 1))) -> tuple[Limits, bool, bool]:
        flags = self.byte()
        if flags not in flags_allowed:
            raise CompileError(f"malformed limits flags 0x{flags:02x}")
        # 64-bit limits (memory64) are u64: read as such, then range checked by the runtime
        lo = self.u64() if flags & 4 else self.u32()
        hi = (self.u64() if flags & 4 else self.u32()) if flags & 1 else None
        if hi is not None and hi < lo:
            raise CompileError("size minimum must not be greater than maximum")
        return Limits(lo, hi), bool(flags & 2), bool(flags & 4)

    def table_type(self) -> TableType:
        return self.table_type64()[0]

    def table_type64(self) -> tuple[TableType, bool]:
        """A table type and whether it is a 64-bit table (memory64 proposal)."""
        elem = self.valtype()
        if elem not in (ValType.FUNCREF, ValType.EXTERNREF):  # 5.3.6: a table type holds a reftype
            raise CompileError(f"malformed table type: element type {elem.name.lower()} is not a reference type")
        lim, _, is64 = self.limits(_TABLE_FLAGS)
        return TableType(elem, lim), is64

    def memory_type(self) -> MemoryType:
        lim, shared, is64 = self.limits(_MEMORY_FLAGS)
        return MemoryType(lim, is_64=is64, shared=shared)

    def done(self, what: str) -> None:
        """The section ends exactly here (5.5.2: its size is the size of its contents)."""
        if self.pos != self.end:
            raise CompileError(f"section size mismatch: unexpected bytes at the end of the {what} section")

    def global_type(self) -> GlobalType:
        vt = self.valtype()
        mut = self.byte()
        if mut > 1:  # 5.3.10: 0x00 const, 0x01 var
            raise CompileError(f"malformed mutability 0x{mut:02x}")
        return GlobalType(vt, mutable=mut == 1)


def uleb128(n: int) -> bytes:
    """``n`` (>= 0) as unsigned LEB128, for code that writes module bytes."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sections(data: bytes) -> list[tuple[int, int, int, int]]:
    """The sections of a binary module, framing only: (id, start of its header, start of its
    payload, end). Raises :class:`CompileError` when the bytes are not a framed module."""
    if len(data) < 8 or data[:4] != _MAGIC:
        raise CompileError("not a WebAssembly binary module (bad magic number)")
    out = []
    r = Reader(data, 8)
    while r.pos < r.end:
        start = r.pos
        sid = r.byte()
        size = r.u32()
        body = r.pos
        r.skip(size)
        out.append((sid, start, body, body + size))
    return out


def parse_module(wasm: bytes) -> ModuleInfo:
    """Read the import, export and custom sections of a binary module."""
    data = bytes(wasm)
    if len(data) < 8 or data[:4] != _MAGIC:
        raise CompileError("not a WebAssembly binary module (bad magic number)")
    if data[4:8] != b"\x01\0\0\0":
        raise CompileError("unsupported WebAssembly binary version")
    info = ModuleInfo()
    types: list[FuncType] = []
    funcs: list[FuncType] = []
    tables: list[TableType] = []
    memories: list[MemoryType] = []
    globals_: list[GlobalType] = []
    raw_exports: list[tuple[str, int, int]] = []
    start_func: int | None = None
    last = 0
    r = Reader(data, 8)
    while r.pos < r.end:
        sid = r.byte()
        size = r.u32()
        start = r.pos
        if start + size > r.end:
            raise CompileError("section extends past the end of the module")
        if sid != 0:  # 5.5.2: known ids only, each at most once, in order
            rank = SECTION_ORDER.get(sid)
            if rank is None:
                raise CompileError(f"malformed section id {sid}")
            if rank <= last:
                raise CompileError(f"section {sid} out of order or duplicated")
            last = rank
        s = Reader(data, start, start + size)
        if sid == 0:
            name = s.name()
            info.custom_sections.append((name, data[s.pos:s.end]))
        elif sid == 1:
            for _ in range(s.u32()):
                form = s.byte()
                if form != 0x60:
                    raise CompileError(f"unsupported type form 0x{form:02x}")
                params = [s.valtype() for _ in range(s.u32())]
                results = [s.valtype() for _ in range(s.u32())]
                types.append(FuncType(params, results))
            s.done("type")
        elif sid == 2:
            for _ in range(s.u32()):
                mod, nm, kind = s.name(), s.name(), s.byte()
                ty: ExternType
                if kind == 0:
                    idx = s.u32()
                    if idx >= len(types):
                        raise CompileError("import refers to an unknown type")
                    ty = types[idx]
                    funcs.append(ty)
                elif kind == 1:
                    ty = s.table_type()
                    tables.append(ty)
                elif kind == 2:
                    ty = s.memory_type()
                    memories.append(ty)
                elif kind == 3:
                    ty = s.global_type()
                    globals_.append(ty)
                else:
                    raise CompileError(f"unsupported import kind {kind}")
                info.imports.append(ImportType(mod, nm, ty))
            s.done("import")
        elif sid == 3:
            for _ in range(s.u32()):
                idx = s.u32()
                if idx >= len(types):
                    raise CompileError("function refers to an unknown type")
                funcs.append(types[idx])
            s.done("function")
        elif sid == 4:
            tables.extend(s.table_type() for _ in range(s.u32()))
            s.done("table")
        elif sid == 5:
            memories.extend(s.memory_type() for _ in range(s.u32()))
            s.done("memory")
        elif sid == 6:
            for _ in range(s.u32()):
                globals_.append(s.global_type())
                _skip_const_expr(s)
            s.done("global")
        elif sid == 7:
            for _ in range(s.u32()):
                nm = s.name()
                kind = s.byte()
                raw_exports.append((nm, kind, s.u32()))
            s.done("export")
        elif sid == 8:
            info.has_start = True
            start_func = s.u32()
            s.done("start")
        r.pos = start + size
    spaces: dict[int, list] = {0: funcs, 1: tables, 2: memories, 3: globals_}
    for nm, kind, idx in raw_exports:
        space = spaces.get(kind)
        if space is None or idx >= len(space):
            raise CompileError(f"export {nm!r} refers to an unknown item")
        info.exports.append(ExportType(nm, space[idx]))
    # 3.4.10: the start function exists and has type [] -> [] (checked here too because the
    # Proxy-Wasm host moves the start function to an export before compiling, see _plugin)
    if start_func is not None:
        if start_func >= len(funcs):
            raise CompileError(f"unknown start function {start_func}")
        if funcs[start_func].params or funcs[start_func].results:
            raise CompileError("invalid start function: it must take no parameters and return nothing")
    info.memories = memories
    info.functions = funcs
    return info


def _skip_const_expr(s: Reader) -> None:
    """Skip a constant expression (global initialiser) up to its ``end``."""
    while True:
        op = s.byte()
        if op == 0x0B:
            return
        if op in (0x41, 0x42):  # i32.const / i64.const
            s.skip_sleb()
        elif op == 0x43:
            s.bytes(4)
        elif op == 0x44:
            s.bytes(8)
        elif op == 0xFD:  # v128.const
            s.u32()
            s.bytes(16)
        elif op in (0x23, 0xD2):  # global.get / ref.func
            s.u32()
        elif op == 0xD0:  # ref.null
            s.byte()
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            pass
        else:
            raise CompileError(f"unsupported opcode 0x{op:02x} in constant expression")
