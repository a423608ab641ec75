"""Mutations of WebAssembly module bytes, for the compile property tests.

A mutation is a list of steps ``(kind, where, value)`` (small integers a strategy can draw and
shrink); :func:`mutate` applies them to a seed module. Some steps are blind byte edits (flip,
set, insert, delete, truncate); the others know the section framing and edit a section's id,
its size, its entry count, the encoding of a LEB128, a limits flag byte, or move, duplicate or
drop whole sections, so most mutants get past the framing and reach the runtime's decoder
and validator.
"""

from __future__ import annotations

from pathlib import Path

from proxywasm_vm._errors import CompileError
from proxywasm_vm._wasmparse import Reader, uleb128

PLUGINS = Path(__file__).resolve().parent.parent / "plugins" / "build"
CORPUS = Path(__file__).resolve().parent.parent / "corpus"

#: Small modules that between them have every section of Wasm 2.0 (memories and tables with
#: and without a maximum, imported ones, globals, element and data segments, a start function).
SEED_WAT = {
    "tables_memories": """
(module
  (type $v (func))
  (import "env" "f" (func $f (param i32) (result i32)))
  (import "env" "t" (table 1 funcref))
  (import "env" "g" (global i32))
  (table $t 2 10 funcref)
  (table 1 externref)
  (memory 1 2)
  (global $m (mut i64) (i64.const -1))
  (global f32 (f32.const 1.5))
  (func $s (global.set $m (i64.const 7)))
  (func (export "run") (param i32) (result i32)
    (call_indirect $t (type $v) (i32.const 0))
    (i32.add (local.get 0) (call $f (global.get 0))))
  (export "mem" (memory 0))
  (export "tab" (table $t))
  (start $s)
  (elem (table $t) (i32.const 0) func $s)
  (elem declare func $s)
  (data (i32.const 8) "hello")
  (data "passive"))
""",
    "imported_memory": """
(module
  (import "env" "memory" (memory 1 65536))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (data (i32.const 0) "\\01\\02\\03\\04"))
""",
    "simd_bulk": """
(module
  (memory (export "memory") 1)
  (func (export "v") (param i32) (result i32)
    (i32x4.extract_lane 1 (v128.load (local.get 0))))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "multi") (param i64 i64) (result i64 i64) (local.get 1) (local.get 0)))
""",
}

#: Committed test plugins used as seeds (the smaller ones: compile cost grows with size).
SEED_PLUGINS = ("wat_minimal", "wat_start_section", "wat_noop", "c_bench")

# kinds of step
FLIP, SET, INSERT, DELETE, TRUNCATE, SEC_ID, SEC_SIZE, COUNT, OVERLONG, FLAGS, SEC_DUP, SEC_DROP, SEC_SWAP = range(13)
KINDS = 13


def seed_modules() -> dict[str, bytes]:
    """Every seed, by name (the WAT ones translated with wasmtime's wat2wasm)."""
    import proxywasm_vm as pw

    out = {name: pw.wat2wasm(text) for name, text in SEED_WAT.items()}
    for name in SEED_PLUGINS:
        out[name] = (PLUGINS / f"{name}.wasm").read_bytes()
    return out


def _frames(data: bytes) -> list[tuple[int, int, int, int]]:
    """(id, header start, payload start, end) of each section that is framed correctly; stops at
    the first that is not."""
    out = []
    r = Reader(data, 8)
    try:
        while r.pos < r.end:
            start = r.pos
            sid = r.byte()
            size = r.u32()
            body = r.pos
            r.skip(size)
            out.append((sid, start, body, body + size))
    except CompileError:
        pass
    return out


def _section(sid: int, payload: bytes) -> bytes:
    return bytes((sid & 0xFF,)) + uleb128(len(payload)) + payload


def _overlong(n: int, width: int) -> bytes:
    """``n`` as an unsigned LEB128 padded to ``width`` bytes (valid up to 5 bytes for a u32)."""
    out = bytearray()
    for i in range(width):
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if i < width - 1 else 0))
    return bytes(out)


def _step(data: bytes, kind: int, where: int, value: int) -> bytes:
    n = len(data)
    pos = where % max(n, 1)
    if kind == FLIP:
        return data[:pos] + bytes((data[pos] ^ (1 << (value % 8)),)) + data[pos + 1:] if n else data
    if kind == SET:
        return data[:pos] + bytes((value & 0xFF,)) + data[pos + 1:] if n else data
    if kind == INSERT:
        return data[:pos] + bytes((value & 0xFF,)) * (1 + value % 3) + data[pos:]
    if kind == DELETE:
        return data[:pos] + data[pos + 1 + value % 16:]
    if kind == TRUNCATE:
        return data[:pos]
    frames = _frames(data)
    if not frames:
        return data
    sid, start, body, end = frames[where % len(frames)]
    head, tail, payload = data[:start], data[end:], data[body:end]
    if kind == SEC_ID:
        return head + _section(value % 16, payload) + tail
    if kind == SEC_SIZE:  # the size is off by -3..+3 (the rest of the module is left as is)
        delta = value % 7 - 3
        return head + bytes((sid,)) + uleb128(max(len(payload) + delta, 0)) + payload + tail
    if kind == OVERLONG:  # the size, then the first LEB128 of the payload, padded to 2..6 bytes
        width = 2 + value % 5
        if value % 2 or sid == 0 or not payload:
            return head + bytes((sid,)) + _overlong(len(payload), width) + payload + tail
        r = Reader(payload)
        try:
            count = r.u32()
        except CompileError:
            return data
        return head + _section(sid, _overlong(count, width) + payload[r.pos:]) + tail
    if kind == COUNT:  # the entry count (first LEB128 of a known section) changed by -2..+2, or huge
        if sid == 0 or not payload:
            return data
        r = Reader(payload)
        try:
            count = r.u32()
        except CompileError:
            return data
        new = 0xFFFFFFFF if value % 9 == 8 else max(count + value % 5 - 2, 0)
        return head + _section(sid, uleb128(new) + payload[r.pos:]) + tail
    if kind == FLAGS:  # a limits flag byte (memory and table sections, imports of either)
        off = {5: 0, 4: 1}.get(sid)
        if off is None or not payload:
            return data
        r = Reader(payload)
        try:
            r.u32()
        except CompileError:
            return data
        i = r.pos + off
        if i >= len(payload):
            return data
        return head + _section(sid, payload[:i] + bytes((value & 0xFF,)) + payload[i + 1:]) + tail
    if kind == SEC_DUP:
        return data[:end] + data[start:end] + tail
    if kind == SEC_DROP:
        return head + tail
    if kind == SEC_SWAP:
        other = frames[value % len(frames)]
        if other[1] == start:
            return data
        a, b = sorted([(start, end), (other[1], other[3])])
        return data[:a[0]] + data[b[0]:b[1]] + data[a[1]:b[0]] + data[a[0]:a[1]] + data[b[1]:]
    raise ValueError(f"unknown mutation kind {kind}")


def mutate(data: bytes, steps: list[tuple[int, int, int]]) -> bytes:
    """``data`` with each step ``(kind, where, value)`` applied in turn."""
    for kind, where, value in steps:
        data = _step(data, kind % KINDS, where, value)
    return data
