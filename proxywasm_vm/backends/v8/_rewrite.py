"""Turn a module's own memories and tables into imports, so the host creates them.

V8 has no per-isolate limit on linear memory (wasm memory is reserved outside
the ArrayBuffer allocator, and ``--wasm-max-mem-pages`` is process-wide). So
the V8 backend compiles a rewritten module in which every defined memory and
table is an import (module ``pwvm:v8``, appended after the module's own
imports, so no index changes), and each store creates them with
``WebAssembly.Memory/Table`` whose ``maximum`` is the smaller of the declared
maximum and the store's limit. ``memory.grow`` past it returns -1 inside wasm,
as the spec requires, and a too-large initial size is refused before
instantiation. Exports, data and element segments refer to the same indices
and work unchanged. Shared memories are left alone.

Only section framing, the import, table, memory and export sections are
decoded (with :mod:`proxywasm_vm._wasmparse`'s reader); malformed input raises
CompileError. V8 never sees those sections as the module wrote them, so the
caller validates them first (``parse_module``, which is as strict as the spec
there); what the rewrite cannot express (64-bit tables and memories, shared
memories) it leaves as it is, for V8 to accept or reject.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxywasm_vm._errors import CompileError
from proxywasm_vm._types import Limits, MemoryType, TableType, ValType
from proxywasm_vm._wasmparse import SECTION_ORDER as _ORDER
from proxywasm_vm._wasmparse import Reader, uleb128 as _leb
from proxywasm_vm._wasmparse import sections as module_sections

SYNTH_MODULE = "pwvm:v8"


@dataclass(frozen=True)
class Synth:
    """One defined memory or table turned into an import."""

    kind: str  # "memory" or "table"
    type: MemoryType | TableType
    index: int  # in the module's memory or table index space


@dataclass(frozen=True)
class Rewritten:
    wasm: bytes
    synth: tuple[Synth, ...]
    exports: tuple[tuple[str, int, int], ...]  # (name, kind, index) of every export


def _name(s: str) -> bytes:
    raw = s.encode()
    return _leb(len(raw)) + raw


def _limits(lim: Limits) -> bytes:
    return (b"\x01" + _leb(lim.min) + _leb(lim.max)) if lim.max is not None else (b"\x00" + _leb(lim.min))


def rewrite(wasm: bytes) -> Rewritten:
    d = bytes(wasm)
    if d[4:8] != b"\x01\0\0\0":
        raise CompileError("unsupported WebAssembly binary version")
    sections = module_sections(d)
    by_id = {s[0]: s for s in sections if s[0] != 0}
    n_mem_imports = n_tab_imports = 0
    import_entries = b""
    n_imports = 0
    if 2 in by_id:
        _, _, body, end = by_id[2]
        s = Reader(d, body, end)
        n_imports = s.u32()
        entries_start = s.pos
        for _ in range(n_imports):
            s.skip(s.u32())
            s.skip(s.u32())
            kind = s.byte()
            if kind == 0:
                s.u32()
            elif kind == 1:
                s.table_type()
                n_tab_imports += 1
            elif kind == 2:
                s.memory_type()
                n_mem_imports += 1
            elif kind == 3:
                s.byte()
                s.byte()
            else:
                raise CompileError(f"unknown import kind {kind}")
        import_entries = d[entries_start:end]
    synth: list[Synth] = []
    new_entries = b""
    drop: set[int] = set()
    if 4 in by_id:
        _, _, body, end = by_id[4]
        s = Reader(d, body, end)
        entries = []
        wide = False
        for i in range(s.u32()):
            tt, is64 = s.table_type64()
            wide = wide or is64
            entries.append((tt, i))
        s.done("table")
        for tt, i in ([] if wide else entries):  # 64-bit tables: left for V8 to judge
            synth.append(Synth("table", tt, n_tab_imports + i))
            elem = b"\x70" if tt.element is ValType.FUNCREF else b"\x6f"
            new_entries += (_name(SYNTH_MODULE) + _name(f"table{n_tab_imports + i}") + b"\x01" + elem
                            + _limits(tt.limits))
        if not wide:
            drop.add(4)
    if 5 in by_id:
        _, _, body, end = by_id[5]
        s = Reader(d, body, end)
        mems = [s.memory_type() for _ in range(s.u32())]
        s.done("memory")
        if not any(m.shared or m.is_64 for m in mems):
            for i, mt in enumerate(mems):
                synth.append(Synth("memory", mt, n_mem_imports + i))
                new_entries += (_name(SYNTH_MODULE) + _name(f"memory{n_mem_imports + i}") + b"\x02"
                                + _limits(mt.limits))
            drop.add(5)
    exports: list[tuple[str, int, int]] = []
    if 7 in by_id:
        _, _, body, end = by_id[7]
        s = Reader(d, body, end)
        for _ in range(s.u32()):
            name = s.bytes(s.u32()).decode("utf-8", "replace")
            kind = s.byte()
            exports.append((name, kind, s.u32()))
    if not synth:
        return Rewritten(d, (), tuple(exports))
    payload = _leb(n_imports + len(synth)) + import_entries + new_entries
    import_section = b"\x02" + _leb(len(payload)) + payload
    out = bytearray(d[:8])
    placed = False
    for sid, start, _body, end in sections:
        if sid in drop:
            continue
        if sid == 2:
            out += import_section
            placed = True
            continue
        if not placed and sid != 0 and _ORDER.get(sid, 99) > _ORDER[2]:
            out += import_section
            placed = True
        out += d[start:end]
    if not placed:
        out += import_section
    return Rewritten(bytes(out), tuple(synth), tuple(exports))


def v128_const_exports(wasm: bytes) -> dict[str, int]:
    """The exported immutable v128 globals initialised by a ``v128.const``, by export name: value.

    V8 cannot read such a global (its JS API has no v128 value) and aborts the process when one
    is imported (``ProcessImportedWasmGlobalObject``: unreachable code), so no adapter module can
    read it either; being immutable and constant, its value is the constant in the module.
    """
    from proxywasm_vm._wasmparse import _skip_const_expr

    n_imported = 0
    inits: list[int | None] = []
    exports: dict[str, int] = {}
    for sid, _start, body, end in module_sections(wasm):
        r = Reader(wasm, body, end)
        if sid == 2:
            for _ in range(r.u32()):
                r.name()
                r.name()
                kind = r.byte()
                if kind == 0:
                    r.u32()
                elif kind == 1:
                    r.table_type()
                elif kind == 2:
                    r.memory_type()
                elif kind == 3:
                    r.global_type()
                    n_imported += 1
                else:
                    return {}  # an import kind this reader does not know: no constants (reads refuse)
        elif sid == 6:
            for _ in range(r.u32()):
                ty = r.global_type()
                at = r.pos
                value = None
                if ty.content is ValType.V128 and not ty.mutable and r.byte() == 0xFD and r.u32() == 12:
                    value = int.from_bytes(r.bytes(16), "little")
                    if r.byte() != 0x0B:
                        value = None
                r.pos = at
                _skip_const_expr(r)
                inits.append(value)
        elif sid == 7:
            for _ in range(r.u32()):
                name = r.name()
                kind = r.byte()
                idx = r.u32()
                if kind == 3 and idx >= n_imported and inits[idx - n_imported] is not None:
                    exports[name] = inits[idx - n_imported]  # type: ignore[assignment]
    return exports
