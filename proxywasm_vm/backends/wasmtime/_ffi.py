"""Loading the native module and the wasmtime library it drives."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from proxywasm_vm._errors import BackendUnavailable
from proxywasm_vm._native import BuildError, load_extension
from proxywasm_vm._settings import wasmtime_library

from . import _build

HOW_TO_ENABLE = "pip install --force-reinstall proxywasm-vm (it depends on wasmtime==50.0.1)"
#: When the prebuilt shim does not match its sources (an edited checkout), it is compiled on first use.
HOW_TO_BUILD = ("install a C compiler and Python's headers (Debian/Ubuntu: apt install gcc python3-dev), "
                "or reinstall proxywasm-vm from its wheel (pip install --force-reinstall proxywasm-vm)")


def library_path() -> str:
    """The ``_libwasmtime.so`` bundled in the ``wasmtime`` wheel (found without importing it)."""
    override = wasmtime_library()
    if override:
        return override
    spec = importlib.util.find_spec("wasmtime")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("wasmtime", "the 'wasmtime' package is not installed", HOW_TO_ENABLE)
    pkg = Path(list(spec.submodule_search_locations)[0])
    candidates = sorted(pkg.glob("*/_libwasmtime.so"))
    if not candidates:
        raise BackendUnavailable("wasmtime", f"no _libwasmtime.so inside {pkg}", HOW_TO_ENABLE)
    return str(candidates[0])


def wasmtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmtime")
    except Exception:  # pragma: no cover
        return "unknown"


def load_native() -> Any:
    """The cffi module: the one prebuilt in the wheel, or built on first use in a changed checkout."""
    try:
        return load_extension(_build.MODULE, _build.make_builder, _build.SOURCES)
    except BuildError as e:  # a checkout without a compiler, ...
        raise BackendUnavailable("wasmtime", f"no usable native shim: {e}", HOW_TO_BUILD) from e


native = load_native()
ffi = native.ffi
lib = native.lib
