"""cffi (API mode) builder of the guard's system-call helper (``_guard.c``), used by wasmer's worker.

Built on first use in a worker (:mod:`proxywasm_vm._native`, into the cache folder;
``ci/setup_wasmer.sh`` and ``pwvm setup wasmer`` build it ahead of time); without a
compiler the guard makes the same system calls from Python. This file runs alone at
build time: it imports nothing of the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODULE = "proxywasm_vm.backends.wasmer._guard_ext"
#: The files the helper is built from: their content is the key a built module is checked against.
SOURCES = [HERE / "_guard.c", HERE / "_guard_build.py"]


def make_builder() -> Any:
    """The ``cffi.FFI`` builder of :data:`MODULE`, stamped with the key of :data:`SOURCES`."""
    import cffi

    spec = importlib.util.spec_from_file_location("_pwvm_native_build", HERE.parents[1] / "_native.py")
    assert spec is not None and spec.loader is not None
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    ffi = cffi.FFI()
    ffi.cdef("""
        int pwvm_guard_init(void);
        int64_t pwvm_guard_data_bytes(void);
        int pwvm_guard_enter(int64_t room, double seconds);
        void pwvm_guard_leave(void);
    """)
    ffi.cdef(native.KEY_CDEF)
    ffi.set_source(MODULE, (HERE / "_guard.c").read_text() + native.key_source(native.source_key(SOURCES)),
                   extra_compile_args=["-O2"], libraries=["pthread"])
    return ffi
