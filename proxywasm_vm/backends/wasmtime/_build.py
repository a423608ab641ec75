"""cffi (API mode) builder of the wasmtime backend's native module.

The module is *not* linked against libwasmtime: it opens the library itself
(see ``pwvm_open`` in ``_shim.c``) so that no other runtime's ``wasm_*``
symbols can be bound by mistake.

Built when the wheel is built (``setup.py``'s ``cffi_modules`` names
:func:`make_builder`), so an installed package needs no compiler; in a checkout
whose sources changed since, :mod:`proxywasm_vm._native` builds it on first use
into the cache folder. This file runs alone at wheel-build time (the package
cannot be imported there): it imports nothing of the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
MODULE = "proxywasm_vm.backends.wasmtime._native"
#: The files the module is built from: their content is the key a prebuilt module is checked against.
SOURCES = [HERE / "_shim.h", HERE / "_shim.c", HERE / "_build.py"]


def _host_callbacks() -> str:
    """The integer host-call entries into Python: one per arity (0..6), without and with a
    Caller (``pwvm_py_host<n>`` / ``pwvm_py_hostc<n>``), so each call converts exactly its
    arguments (see ``pwvm_host_trampoline``)."""
    lines = []
    for kind in ("", "c"):
        for n in range(7):
            args = "".join(f", int64_t a{i}" for i in range(n))
            lines.append(f'extern "Python" int64_t pwvm_py_host{kind}{n}(int64_t id, int64_t store{args});')
    return "\n".join(lines) + "\n"


HOST_CALLBACKS = _host_callbacks()


def native_helpers() -> ModuleType:
    """``proxywasm_vm/_native.py`` loaded by path (its key functions import only the standard library)."""
    spec = importlib.util.spec_from_file_location("_pwvm_native_build", HERE.parents[1] / "_native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_builder() -> Any:
    """The ``cffi.FFI`` builder of :data:`MODULE`, stamped with the key of :data:`SOURCES`."""
    from cffi import FFI

    native = native_helpers()
    header, source = (HERE / "_shim.h").read_text(), (HERE / "_shim.c").read_text()
    ffibuilder = FFI()
    ffibuilder.cdef(header)
    ffibuilder.cdef(HOST_CALLBACKS + """
        extern "Python" int32_t pwvm_py_host_raw(int64_t id, int64_t store, wasmtime_val_raw_t *vals, size_t n);
        extern "Python" void pwvm_py_host_drop(int64_t id);
        """)
    ffibuilder.cdef(native.KEY_CDEF)
    ffibuilder.set_source(
        MODULE,
        source.replace('#include "_shim.h"', header) + native.key_source(native.source_key(SOURCES)),
        libraries=["dl", "pthread"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"],
    )
    return ffibuilder


if __name__ == "__main__":
    make_builder().compile(tmpdir=str(HERE.parents[2]), verbose=False)
