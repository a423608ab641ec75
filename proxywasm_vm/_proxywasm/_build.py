"""Builder of the serialized-pairs codec (``_pairs.c``), a plain CPython extension module.

Built when the wheel is built (``setup.py``'s ``ext_modules`` takes :func:`make_extension`);
in a checkout whose sources changed since, :func:`load` builds it on first use into the
cache folder, as :mod:`proxywasm_vm._native` does for the cffi shims. The module is stamped
with the key of :data:`SOURCES` (its ``BUILD_KEY``), so a stale build is never used. This
file runs alone at wheel-build time: it imports nothing of the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
MODULE = "proxywasm_vm._proxywasm._pairs_ext"
#: The files the module is built from: their content is the key a prebuilt module is checked against.
SOURCES = [HERE / "_pairs.c", HERE / "_build.py"]


def _native() -> Any:
    spec = importlib.util.spec_from_file_location("_pwvm_native_build", HERE.parent / "_native.py")
    assert spec is not None and spec.loader is not None
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    return native


def make_extension(relative: bool = True) -> Any:
    """The ``setuptools.Extension`` of :data:`MODULE` (stable ABI 3.10), stamped with the key of
    :data:`SOURCES`; ``relative``: its source named from the project root, as ``setup.py`` needs."""
    from setuptools import Extension

    key = _native().source_key(SOURCES)
    source = HERE / "_pairs.c"
    return Extension(MODULE, [str(source.relative_to(HERE.parent.parent)) if relative else str(source)],
                     py_limited_api=True, extra_compile_args=["-O2"],
                     define_macros=[("PWVM_BUILD_KEY", f'"{key}"')])


def load() -> ModuleType:
    """The codec module: the prebuilt one when built from these sources, else one built here."""
    from .._native import CExtensionBuilder, load_extension

    return load_extension(MODULE, lambda: CExtensionBuilder(make_extension(relative=False)), SOURCES)
