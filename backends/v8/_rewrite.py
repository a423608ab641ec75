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
decoded; malformed input raises ValueError (the caller then compiles the
original bytes and lets V8 report the error).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxywasm_vm._types import Limits, MemoryType, TableType, ValType

SYNTH_MODULE = "pwvm:v8"
# Canonical order of the known sections (custom sections may appear anywhere).
_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}


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


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _name(s: str) -> bytes:
    raw = s.encode()
    return _leb(len(raw)) + raw


class _R:
    __slots__ = ("d", "end", "p")

    def __init__(self, d: bytes, p: int, end: int) -> None:
        self.d, self.p, self.end = d, p, end

    def byte(self) -> int:
        if self.p >= self.end:
            raise ValueError("unexpected end of section")
        b = self.d[self.p]
        self.p += 1
        return b

    def u32(self) -> int:
        r = sh = 0
        while True:
            b = self.byte()
            r |= (b & 0x7F) << sh
            if not b & 0x80:
                return r
            sh += 7
            if sh > 35:
                raise ValueError("malformed LEB128")

    def skip(self, n: int) -> None:
        if self.p + n > self.end:
            raise ValueError("unexpected end of section")
        self.p += n

    def limits(self) -> tuple[int, int | None, int]:
        flags = self.byte()
        lo = self.u32()
        hi = self.u32() if flags & 1 else None
        return lo, hi, flags


def rewrite(wasm: bytes) -> Rewritten:
    d = bytes(wasm)
    if d[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("not a wasm module")
    sections: list[tuple[int, int, int, int]] = []  # id, header start, body start, end
    r = _R(d, 8, len(d))
    while r.p < r.end:
        start = r.p
        sid = r.byte()
        size = r.u32()
        body = r.p
        r.skip(size)
        sections.append((sid, start, body, body + size))
    by_id = {s[0]: s for s in sections if s[0] != 0}
    n_mem_imports = n_tab_imports = 0
    import_entries = b""
    n_imports = 0
    if 2 in by_id:
        _, _, body, end = by_id[2]
        s = _R(d, body, end)
        n_imports = s.u32()
        entries_start = s.p
        for _ in range(n_imports):
            s.skip(s.u32())
            s.skip(s.u32())
            kind = s.byte()
            if kind == 0:
                s.u32()
            elif kind == 1:
                s.byte()
                s.limits()
                n_tab_imports += 1
            elif kind == 2:
                s.limits()
                n_mem_imports += 1
            elif kind == 3:
                s.byte()
                s.byte()
            else:
                raise ValueError(f"unknown import kind {kind}")
        import_entries = d[entries_start:end]
    synth: list[Synth] = []
    new_entries = b""
    drop: set[int] = set()
    if 4 in by_id:
        _, _, body, end = by_id[4]
        s = _R(d, body, end)
        entries = []
        for i in range(s.u32()):
            elem = s.byte()
            if elem not in (0x70, 0x6F):
                raise ValueError("unsupported table form")
            lo, hi, _ = s.limits()
            entries.append((elem, lo, hi, i))
        if s.p != end:
            raise ValueError("trailing bytes in the table section")
        for elem, lo, hi, i in entries:
            vt = ValType.FUNCREF if elem == 0x70 else ValType.EXTERNREF
            synth.append(Synth("table", TableType(vt, Limits(lo, hi)), n_tab_imports + i))
            lim = (b"\x01" + _leb(lo) + _leb(hi)) if hi is not None else (b"\x00" + _leb(lo))
            new_entries += _name(SYNTH_MODULE) + _name(f"table{n_tab_imports + i}") + b"\x01" + bytes([elem]) + lim
        drop.add(4)
    if 5 in by_id:
        _, _, body, end = by_id[5]
        s = _R(d, body, end)
        mems = [s.limits() for _ in range(s.u32())]
        if s.p != end:
            raise ValueError("trailing bytes in the memory section")
        if all(flags in (0, 1) for _, _, flags in mems):  # not shared, not 64-bit
            for i, (lo, hi, flags) in enumerate(mems):
                synth.append(Synth("memory", MemoryType(Limits(lo, hi)), n_mem_imports + i))
                lim = (b"\x01" + _leb(lo) + _leb(hi)) if hi is not None else (b"\x00" + _leb(lo))
                new_entries += _name(SYNTH_MODULE) + _name(f"memory{n_mem_imports + i}") + b"\x02" + lim
            drop.add(5)
    exports: list[tuple[str, int, int]] = []
    if 7 in by_id:
        _, _, body, end = by_id[7]
        s = _R(d, body, end)
        for _ in range(s.u32()):
            n = s.u32()
            start = s.p
            s.skip(n)
            name = d[start:start + n].decode("utf-8", "replace")
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
