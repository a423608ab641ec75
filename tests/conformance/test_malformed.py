"""Malformed and invalid modules: one verdict on every backend, the reference's.

Each case is built here, by hand from the binary format (spec chapter 5, and the categories of
the official test suite's ``assert_malformed`` / ``assert_invalid``), as a small edit of one valid
module. Every backend must reject every case with :class:`CompileError` at ``Module()`` (and
``Module.validate`` must say False); ``wasm-tools validate --features=wasm2`` (the cross-check,
independent of the wasmtime library the core validates with) must reject each case too, and
accept the valid module each is made from.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

import proxywasm_vm as pw
from proxywasm_vm._wasmparse import uleb128

from _helpers import wasm_tools as _wasm_tools

MAGIC, VERSION = b"\0asm", b"\x01\0\0\0"
I32, I64, F32 = 0x7F, 0x7E, 0x7D


def vec(items: list[bytes]) -> bytes:
    return uleb128(len(items)) + b"".join(items)


def name(s: bytes) -> bytes:
    return uleb128(len(s)) + s


def section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + uleb128(len(body)) + body


def functype(params: bytes = b"", results: bytes = bytes([I32])) -> bytes:
    return b"\x60" + uleb128(len(params)) + params + uleb128(len(results)) + results


def body(code: bytes, locals_: bytes = b"\x00") -> bytes:
    """A function body: local declarations (default: none) and code (``end`` included by the caller)."""
    inner = locals_ + code
    return uleb128(len(inner)) + inner


def module(*, types: list[bytes] | None = None, imports: list[bytes] | None = None, funcs: list[int] | None = None,
           tables: list[bytes] | None = None, memories: list[bytes] | None = None, globals_: list[bytes] | None = None,
           exports: list[bytes] | None = None, start: int | None = None, elems: list[bytes] | None = None,
           datacount: int | None = None, codes: list[bytes] | None = None, datas: list[bytes] | None = None,
           tail: bytes = b"") -> bytes:
    """A module with the given sections, in the spec's order; the defaults make a valid one:
    one function ``() -> i32`` returning 42, exported as ``f``, and one memory."""
    types = [functype()] if types is None else types
    funcs = [0] if funcs is None else funcs
    memories = [b"\x00\x01"] if memories is None else memories
    exports = [name(b"f") + b"\x00\x00"] if exports is None else exports
    codes = [body(b"\x41\x2a\x0b")] if codes is None else codes
    out = MAGIC + VERSION
    out += section(1, vec(types)) if types else b""
    out += section(2, vec(imports)) if imports else b""
    out += section(3, vec([uleb128(i) for i in funcs])) if funcs else b""
    out += section(4, vec(tables)) if tables else b""
    out += section(5, vec(memories)) if memories else b""
    out += section(6, vec(globals_)) if globals_ else b""
    out += section(7, vec(exports)) if exports else b""
    out += section(8, uleb128(start)) if start is not None else b""
    out += section(9, vec(elems)) if elems else b""
    out += section(12, uleb128(datacount)) if datacount is not None else b""
    out += section(10, vec(codes)) if codes else b""
    out += section(11, vec(datas)) if datas else b""
    return out + tail


VALID = module()
_TYPE = section(1, vec([functype()]))
_FUNC = section(3, vec([b"\x00"]))
_MEM = section(5, vec([b"\x00\x01"]))
_EXPORT = section(7, vec([name(b"f") + b"\x00\x00"]))
_CODE = section(10, vec([body(b"\x41\x2a\x0b")]))


def _code(ops: bytes, results: bytes = bytes([I32]), locals_: bytes = b"\x00", **kw: object) -> bytes:
    """The default module whose function has ``ops`` as its code."""
    return module(types=[functype(b"", results)], codes=[body(ops, locals_)], **kw)  # type: ignore[arg-type]


#: case -> bytes. Malformed (the binary format's decoding errors) first, then invalid (well-formed,
#: refused by validation).
MALFORMED: dict[str, bytes] = {
    # -- preamble --
    "empty": b"",
    "magic_only": MAGIC,
    "bad_magic": b"\0asn" + VERSION,
    "magic_reversed": b"msa\0" + VERSION,
    "bad_version_2": MAGIC + b"\x02\0\0\0",
    "bad_version_0": MAGIC + b"\0\0\0\0",
    "truncated_version": MAGIC + b"\x01\0",
    "component_layer": MAGIC + b"\x0d\0\x01\0",
    # -- section framing --
    "section_size_past_end": MAGIC + VERSION + b"\x01\x10" + vec([functype()]),
    "section_size_too_small": MAGIC + VERSION + b"\x01\x03" + vec([functype()]) + _FUNC + _MEM + _EXPORT + _CODE,
    "section_size_too_large": MAGIC + VERSION + b"\x01\x07" + vec([functype()]) + _FUNC + _CODE,
    "section_out_of_order": MAGIC + VERSION + _TYPE + _FUNC + _EXPORT + _MEM + _CODE,
    "code_before_function": MAGIC + VERSION + _TYPE + _CODE + _FUNC,
    "duplicate_type_section": MAGIC + VERSION + _TYPE + _TYPE + _FUNC + _CODE,
    "duplicate_memory_section": MAGIC + VERSION + _TYPE + _FUNC + _MEM + _MEM + _CODE,
    "unknown_section_id_14": VALID + section(14, b""),
    "unknown_section_id_0x7f": VALID + section(0x7F, b"\x00"),
    "section_id_truncated_size": VALID + b"\x01",
    "trailing_byte_in_section": MAGIC + VERSION + section(1, vec([functype()]) + b"\x00") + _FUNC + _CODE,
    "custom_name_past_end": VALID + section(0, b"\x05ab"),
    "custom_name_bad_utf8": VALID + section(0, name(b"\xff\xfe") + b"payload"),
    "datacount_after_code": MAGIC + VERSION + _TYPE + _FUNC + _CODE + section(12, b"\x00"),
    # -- LEB128 --
    "u32_leb_too_long": MAGIC + VERSION + b"\x01\x85\x80\x80\x80\x80\x00" + vec([functype()]),
    "u32_leb_overflow": MAGIC + VERSION + _TYPE + _FUNC + section(5, b"\x01\x00\x81\x80\x80\x80\x10") + _CODE,
    "section_count_overflow": MAGIC + VERSION + section(1, b"\xff\xff\xff\xff\x7f" + functype()),
    "s32_leb_too_long": _code(b"\x41\x80\x80\x80\x80\x80\x00\x0b"),
    "s32_leb_overflow": _code(b"\x41\x80\x80\x80\x80\x70\x0b"),
    "s64_leb_overflow": _code(b"\x42\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02\x0b", bytes([I64])),
    "leb_unterminated": MAGIC + VERSION + b"\x01\x80",
    # -- types --
    "bad_functype_form": module(types=[b"\x61\x00\x01\x7f"]),
    "bad_value_type_param": module(types=[functype(b"\x7a")]),
    "bad_value_type_result": module(types=[functype(b"", b"\x6e")]),
    "bad_value_type_local": _code(b"\x41\x00\x0b", locals_=b"\x01\x01\x7a"),
    "bad_block_type": _code(b"\x02\x7a\x0b\x41\x00\x0b"),
    # -- limits --
    "memory_flags_0x02": module(memories=[b"\x02\x01"]),
    "memory_flags_0x08": module(memories=[b"\x08\x01\x10"]),
    "memory_flags_0x10": module(memories=[b"\x10\x01"]),
    "memory_flags_0x80": module(memories=[b"\x80\x01"]),
    "memory_flags_0x04_memory64": module(memories=[b"\x04\x01"]),
    "memory_max_missing": module(memories=[b"\x01\x01"]),
    "table_flags_0x02": module(tables=[b"\x70\x02\x01"]),
    "table_flags_0x08": module(tables=[b"\x70\x08\x01"]),
    "table_bad_element_type": module(tables=[b"\x7f\x00\x01"]),
    # -- globals, imports, exports --
    "global_mutability_0x02": module(globals_=[bytes([I32]) + b"\x02\x41\x00\x0b"]),
    "imported_global_mutability_0x02": module(imports=[name(b"m") + name(b"g") + b"\x03" + bytes([I32]) + b"\x02"]),
    "import_kind_0x05": module(imports=[name(b"m") + name(b"x") + b"\x05\x00"]),
    "export_kind_0x05": module(exports=[name(b"f") + b"\x05\x00"]),
    "import_name_bad_utf8": module(imports=[name(b"m") + name(b"\xc0\x80") + b"\x00\x00"]),
    "export_name_bad_utf8": module(exports=[name(b"\xed\xa0\x80") + b"\x00\x00"]),
    "export_name_truncated_utf8": module(exports=[name(b"a\xe2\x82") + b"\x00\x00"]),
    "global_init_end_missing": module(globals_=[bytes([I32]) + b"\x00\x41\x00"]),
    # -- code --
    "function_code_count_mismatch": module(funcs=[0, 0]),
    "code_without_function": module(funcs=[], exports=[]),
    "body_size_past_end": MAGIC + VERSION + _TYPE + _FUNC + section(10, b"\x01\x10\x00\x41\x2a\x0b"),
    "body_end_missing": _code(b"\x41\x2a"),
    "body_trailing_after_end": _code(b"\x41\x2a\x0b\x01"),
    "invalid_opcode_0xff": _code(b"\xff\x0b"),
    "invalid_opcode_0xd7": _code(b"\xd7\x0b"),
    "invalid_prefixed_opcode_0xfc_0x7f": _code(b"\xfc\x7f\x0b"),
    "invalid_simd_opcode_0xfd_0x1ff": _code(b"\xfd\xff\x03\x0b"),
    "legacy_try": _code(b"\x06\x40\x0b\x41\x00\x0b"),
    "too_many_locals": _code(b"\x41\x00\x0b", locals_=b"\x02\xff\xff\xff\xff\x0f\x7f\x01\x7f"),
    "locals_count_overflow": _code(b"\x41\x00\x0b", locals_=b"\x01\x80\x80\x80\x80\x10\x7f"),
    "memory_grow_reserved_byte": _code(b"\x41\x01\x40\x01\x0b"),
    "memory_size_reserved_byte": _code(b"\x3f\x01\x0b"),
    "call_indirect_reserved_byte": _code(b"\x41\x00\x11\x00\x01\x0b", tables=[b"\x70\x00\x01"]),
    "memarg_truncated": _code(b"\x41\x00\x28\x02"),
    "br_table_count_overflow": _code(b"\x41\x00\x0e\xff\xff\xff\xff\x0f\x0b"),
    # -- data and element segments --
    "data_count_mismatch": module(datacount=1, datas=[]),
    "data_count_missing_for_memory_init": _code(b"\x41\x00\x41\x00\x41\x00\xfc\x08\x00\x00\x41\x00\x0b",
                                                datas=[b"\x01\x00"]),
    "data_segment_flags_3": module(datas=[b"\x03\x41\x00\x0b\x00"]),
    "data_segment_truncated": module(datas=[b"\x00\x41\x00\x0b\x05ab"]),
    "elem_segment_flags_8": module(tables=[b"\x70\x00\x01"], elems=[b"\x08\x41\x00\x0b\x00"]),
    "elem_kind_0x01": module(tables=[b"\x70\x00\x01"], elems=[b"\x01\x01\x00"]),
}

INVALID: dict[str, bytes] = {
    "type_mismatch_result": _code(b"\x42\x2a\x0b"),
    "type_mismatch_empty_stack": _code(b"\x0b"),
    "type_mismatch_operands": _code(b"\x41\x01\x42\x01\x6a\x0b"),
    "type_mismatch_extra_value": _code(b"\x41\x01\x41\x02\x0b"),
    "unknown_function_in_call": _code(b"\x10\x05\x0b"),
    "unknown_function_in_export": module(exports=[name(b"g") + b"\x00\x07"]),
    "unknown_type_index": module(funcs=[3]),
    "unknown_local": _code(b"\x20\x03\x0b"),
    "unknown_global": _code(b"\x23\x00\x0b"),
    "unknown_memory": _code(b"\x41\x00\x28\x02\x00\x0b", memories=[]),
    "unknown_table": _code(b"\x41\x00\x11\x00\x00\x0b"),
    "unknown_label": _code(b"\x0c\x01\x41\x00\x0b"),
    "unknown_data_segment": _code(b"\x41\x00\x41\x00\x41\x00\xfc\x08\x00\x00\x41\x00\x0b", datacount=0),
    "alignment_too_large": _code(b"\x41\x00\x28\x03\x00\x0b"),
    "immutable_global_set": _code(b"\x41\x01\x24\x00\x41\x00\x0b", globals_=[bytes([I32]) + b"\x00\x41\x00\x0b"]),
    "global_init_not_constant": module(globals_=[bytes([I32]) + b"\x00\x01\x41\x00\x0b"]),
    "global_init_wrong_type": module(globals_=[bytes([I32]) + b"\x00\x42\x00\x0b"]),
    "duplicate_export_name": module(exports=[name(b"f") + b"\x00\x00", name(b"f") + b"\x02\x00"]),
    "start_function_with_result": module(start=0),
    "start_function_unknown": module(start=9),
    "memory_min_over_max": module(memories=[b"\x01\x02\x01"]),
    "memory_too_large": module(memories=[b"\x00\x81\x80\x04"]),
    "two_memories": module(memories=[b"\x00\x01", b"\x00\x01"]),
    "data_in_unknown_memory": module(datas=[b"\x02\x01\x41\x00\x0b\x00"]),
    "elem_in_unknown_table": module(elems=[b"\x00\x41\x00\x0b\x01\x00"]),
    "select_mismatched_operands": _code(b"\x41\x01\x42\x01\x41\x00\x1b\x0b"),
    "else_without_if": _code(b"\x05\x41\x00\x0b"),
    "if_without_else_with_result": _code(b"\x41\x01\x04\x7f\x41\x01\x0b\x0b"),
    "extended_const_in_global": module(globals_=[bytes([I32]) + b"\x00\x41\x01\x41\x02\x6a\x0b"]),
    "shared_memory_threads_off": module(memories=[b"\x03\x01\x01"]),
    "tail_call_off": _code(b"\x12\x00\x0b"),
}

CASES = {**MALFORMED, **INVALID}


def _wasm_tools_verdict(data: bytes) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.wasm"
        path.write_bytes(data)
        proc = subprocess.run([_wasm_tools(), "validate", "--features=wasm2", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
    return proc.returncode == 0, proc.stderr.strip()


def test_cases_are_distinct() -> None:
    assert len(set(CASES.values())) == len(CASES), "two cases build the same bytes"
    assert len(MALFORMED) >= 60 and len(INVALID) >= 25


def test_valid_base_module_compiles_everywhere(engine: pw.Engine) -> None:
    """The control: the module every case is made from is valid, and runs."""
    assert _wasm_tools_verdict(VALID)[0]
    assert pw.Module.validate(engine, VALID)
    inst = pw.Instance(pw.Store(engine), pw.Module(engine, VALID), [])
    assert inst.exports["f"]() == 42


@pytest.mark.parametrize("case", sorted(CASES))
def test_wasm_tools_agrees(case: str) -> None:
    """The cross-check: wasm-tools (Wasm 2.0 features) rejects every case too."""
    ok, why = _wasm_tools_verdict(CASES[case])
    assert not ok, f"wasm-tools validate accepts {case}"
    assert why


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected_by_every_backend(engine: pw.Engine, case: str) -> None:
    data = CASES[case]
    with pytest.raises(pw.CompileError) as e:
        pw.Module(engine, data)
    assert type(e.value) is pw.CompileError
    assert str(e.value)
    # the reference validator (or the magic check) says where, for every case
    assert e.value.offset is not None and 0 <= e.value.offset <= len(data), (e.value.offset, str(e.value))
    if case in ("shared_memory_threads_off", "tail_call_off", "extended_const_in_global"):
        assert e.value.feature in ("threads", "tail_call", "extended_const"), str(e.value)
        assert e.value.feature in str(e.value)
    elif case in MALFORMED and not case.startswith("memory_flags_") and case != "table_flags_0x02":
        # limits flags of a proposal (shared, memory64, custom page sizes) may name it
        assert e.value.feature is None, str(e.value)
    assert not pw.Module.validate(engine, data)


def test_engine_still_works_after_every_case(engine: pw.Engine) -> None:
    for data in CASES.values():
        with pytest.raises(pw.CompileError):
            pw.Module(engine, data)
    assert pw.Instance(pw.Store(engine), pw.Module(engine, VALID), []).exports["f"]() == 42
