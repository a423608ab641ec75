"""cffi (API mode) builder of the wasmtime backend's native module.

The module is *not* linked against libwasmtime: it opens the library itself
(see ``pwvm_open`` in ``_shim.c``) so that no other runtime's ``wasm_*``
symbols can be bound by mistake. Built at install time by setuptools through
``cffi_modules``; ``python proxywasm_vm/backends/wasmtime/_build.py`` builds it in place.
"""

from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _read(name: str) -> str:
    with open(os.path.join(HERE, name)) as f:
        return f.read()


ffibuilder = FFI()
ffibuilder.cdef(_read("_shim.h"))
ffibuilder.cdef(
    """
    extern "Python" int64_t pwvm_py_host_ints(int64_t id, int64_t store, uint32_t n, int64_t a0, int64_t a1,
                                              int64_t a2, int64_t a3, int64_t a4, int64_t a5);
    extern "Python" int32_t pwvm_py_host_raw(int64_t id, int64_t store, wasmtime_val_raw_t *vals, size_t n);
    extern "Python" void pwvm_py_host_drop(int64_t id);
    """
)
ffibuilder.set_source(
    "proxywasm_vm.backends.wasmtime._native",
    _read("_shim.c").replace('#include "_shim.h"', _read("_shim.h")),
    libraries=["dl", "pthread"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "..", ".."), verbose=False)
