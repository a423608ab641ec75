"""Builders of the worker channel's native helpers: the wake-up helper (``_chan.c``, cffi API
mode) and the steps that keep the GIL (``_chanpy.c``, a plain CPython extension).

Built when the wheel is built (``setup.py``'s ``cffi_modules`` names
:func:`make_builder`); in a checkout whose sources changed since,
:mod:`proxywasm_vm._native` builds it on first use (and without a compiler the
channel falls back to eventfd-only wake-ups, see ``_channel.load_helper``). This
file runs alone at wheel-build time: it imports nothing of the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODULE = "proxywasm_vm._isolation._chan_ext"
#: The files the helper is built from: their content is the key a prebuilt module is checked against.
SOURCES = [HERE / "_chan.c", HERE / "_chan_shared.h", HERE / "_build.py"]


def make_builder() -> Any:
    """The ``cffi.FFI`` builder of :data:`MODULE`, stamped with the key of :data:`SOURCES`."""
    import cffi

    spec = importlib.util.spec_from_file_location("_pwvm_native_build", HERE.parent / "_native.py")
    assert spec is not None and spec.loader is not None
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    ffi = cffi.FFI()
    ffi.cdef("""
        void pwvm_chan_post(uint32_t *seq, uint32_t *peer_sleeping, int peer_efd);
        void pwvm_chan_send(uint8_t *box, const uint8_t *data, uint32_t len, uint32_t *seq,
                            uint32_t *peer_sleeping, int peer_efd);
        uint32_t pwvm_chan_load(uint32_t *word);
        void pwvm_chan_store(uint32_t *word, uint32_t value);
        int pwvm_chan_wait(uint32_t *seq, uint32_t last, uint32_t *sleeping, const uint32_t *peer_sleeping, int efd,
                           int death_fd, int64_t spin_ns, int64_t timeout_ns);
        int pwvm_chan_wait_any(uint32_t **seqs, const uint32_t *lasts, uint32_t **sleeping, uint32_t **peer_sleeping,
                               const int *efds, int n, int from, int death_fd, int64_t spin_ns);
        int pwvm_chan_watch_parent(int fd);
    """)
    ffi.cdef(native.KEY_CDEF)
    ffi.set_source(MODULE, (HERE / "_chan.c").read_text() + native.key_source(native.source_key(SOURCES)),
                   include_dirs=[str(HERE)], extra_compile_args=["-O2"], libraries=["pthread"])
    return ffi


#: The plain CPython extension of the channel's steps that keep the GIL (``_chanpy.c``).
GIL_MODULE = "proxywasm_vm._isolation._chanpy_ext"
GIL_SOURCES = [HERE / "_chanpy.c", HERE / "_chan_shared.h", HERE / "_build.py"]


def make_gil_extension(relative: bool = True) -> Any:
    """The ``setuptools.Extension`` of :data:`GIL_MODULE` (stable ABI 3.10), stamped with the key
    of :data:`GIL_SOURCES`; ``relative``: its source named from the project root, as ``setup.py`` needs."""
    from setuptools import Extension

    spec = importlib.util.spec_from_file_location("_pwvm_native_build", HERE.parent / "_native.py")
    assert spec is not None and spec.loader is not None
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    key = native.source_key(GIL_SOURCES)
    def named(path: Path) -> str:
        return str(path.relative_to(HERE.parent.parent)) if relative else str(path)

    return Extension(GIL_MODULE, [named(HERE / "_chanpy.c")], include_dirs=[named(HERE)],
                     py_limited_api=True, extra_compile_args=["-O2"],
                     define_macros=[("PWVM_BUILD_KEY", f'"{key}"')])
