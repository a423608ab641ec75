"""Loading the native module and the wasmtime library it drives."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from proxywasm_vm._errors import BackendUnavailable
from proxywasm_vm._native import load_extension
from proxywasm_vm._settings import wasmtime_library

HOW_TO_ENABLE = "pip install 'wasmtime==50.0.1' (and a C compiler for the one-time shim build)"
HERE = Path(__file__).resolve().parent


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


def _builder() -> Any:
    spec = importlib.util.spec_from_file_location("_pwvm_wasmtime_build", HERE / "_build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffibuilder


def load_native() -> Any:
    """The compiled cffi module (built on first use)."""
    try:
        return load_extension(
            "proxywasm_vm.backends.wasmtime._native",
            _builder,
            [HERE / "_shim.h", HERE / "_shim.c", HERE / "_build.py"],
        )
    except BackendUnavailable:
        raise
    except Exception as e:  # compiler missing, headers missing, ...
        raise BackendUnavailable("wasmtime", f"cannot build the native shim: {e}", HOW_TO_ENABLE) from e


native = load_native()
ffi = native.ffi
lib = native.lib
