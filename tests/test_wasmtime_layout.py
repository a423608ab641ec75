"""The C structs declared in proxywasm_vm/backends/wasmtime/_shim.h against the wasmtime wheel's own ctypes layouts.

``_shim.h`` is written by hand (no registry package ships wasmtime's headers);
the wheel's ``wasmtime._bindings`` is generated from the real headers of the
same release. Every size, alignment and field offset must agree, including
inside nested and anonymous structs and unions.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

STRUCTS = [
    "wasmtime_func_t",
    "wasmtime_memory_t",
    "wasmtime_table_t",
    "wasmtime_global_t",
    "wasmtime_tag_t",
    "wasmtime_instance_t",
    "wasmtime_extern_union_t",
    "wasmtime_extern_t",
    "wasmtime_anyref_t",
    "wasmtime_externref_t",
    "wasmtime_valunion_t",
    "wasmtime_val_t",
    "wasmtime_val_raw_t",
    "wasm_limits_t",
    "wasm_byte_vec_t",
    "wasm_valtype_vec_t",
    "wasm_importtype_vec_t",
    "wasm_exporttype_vec_t",
]


@pytest.fixture(scope="module")
def ffi(require_backend):
    require_backend("wasmtime")
    from proxywasm_vm.backends.wasmtime import _ffi

    return _ffi.ffi


@pytest.fixture(scope="module")
def bindings(require_backend):
    require_backend("wasmtime")
    import wasmtime._bindings as b

    return b


def _norm(name: str) -> str:
    # "__private1" (ctypes) and "private1" (shim), "global_" and "global", "private_" and "private".
    return name.strip("_")


def _ctypes_leaves(cls: Any, base: int = 0, path: str = "") -> dict[str, tuple[int, int]]:
    """path -> (offset, size) of every scalar/array/pointer inside a ctypes Structure or Union."""
    out: dict[str, tuple[int, int]] = {}
    for name, ftype in cls._fields_:
        desc = getattr(cls, name)
        anon = name.startswith("_anon_")  # an anonymous member: its fields belong to the parent
        sub = path if anon else f"{path}.{_norm(name)}" if path else _norm(name)
        if isinstance(ftype, type) and issubclass(ftype, (ctypes.Structure, ctypes.Union)):
            out.update(_ctypes_leaves(ftype, base + desc.offset, sub))
        else:
            out[sub] = (base + desc.offset, desc.size)
    return out


def _cffi_leaves(ffi: Any, ctype: Any, base: int = 0, path: str = "") -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, field in ctype.fields:  # cffi already lists an anonymous member's fields in its parent
        sub = f"{path}.{_norm(name)}" if path else _norm(name)
        if field.type.kind in ("struct", "union"):
            out.update(_cffi_leaves(ffi, field.type, base + field.offset, sub))
        else:
            out[sub] = (base + field.offset, ffi.sizeof(field.type))
    return out


@pytest.mark.parametrize("name", STRUCTS)
def test_size_and_alignment(ffi, bindings, name):
    theirs = getattr(bindings, name)
    assert ffi.sizeof(name) == ctypes.sizeof(theirs), name
    assert ffi.alignof(name) == ctypes.alignment(theirs), name


@pytest.mark.parametrize("name", STRUCTS)
def test_every_field_offset_and_size(ffi, bindings, name):
    ours = _cffi_leaves(ffi, ffi.typeof(name))
    theirs = _ctypes_leaves(getattr(bindings, name))
    # The shim may leave out union members it never uses (eqref, structref ...), never add or move one.
    assert set(ours) <= set(theirs), sorted(set(ours) - set(theirs))
    for path, where in ours.items():
        assert where == theirs[path], f"{name}.{path}: shim (offset, size) {where} != wasmtime {theirs[path]}"
    # and every member of a struct (not a union) is declared
    if ffi.typeof(name).kind == "struct":
        top = {p.split(".")[0] for p in theirs}
        assert top <= {p.split(".")[0] for p in ours}, name


def test_hot_fields_used_by_the_backend(ffi):
    """The fields Python and the shim read directly, at the offsets wasmtime.h gives them."""
    assert ffi.offsetof("wasmtime_extern_t", "of") == 8
    assert ffi.offsetof("wasmtime_val_t", "of") == 8
    assert ffi.offsetof("wasmtime_memory_t", "private2") == 16
    assert ffi.offsetof("wasmtime_table_t", "private2") == 16
    assert ffi.offsetof("wasm_byte_vec_t", "data") == 8
    assert ffi.sizeof("wasmtime_val_raw_t") == 16
