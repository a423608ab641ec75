"""Build-time native code: the modules that need only Python and a C compiler.

Everything else (metadata, packages, package data) is in pyproject.toml; this file
only adds what pyproject cannot say: cffi's setuptools integration, which compiles
the wasmtime backend's shim, the worker channel's wake-up helper and wasmer's guard helper into
the wheel, the Proxy-Wasm host's serialized-pairs codec and the channel's GIL-keeping steps (plain
extension modules, ``_pairs.c``, ``_chanpy.c``),
so an installed package needs no compiler, and the stable ABI, so one wheel serves every
CPython >= 3.10. The V8 shim is not here: it needs libnode, which
``pwvm setup v8`` finds on the user's machine.
"""

import importlib.util
from pathlib import Path

from setuptools import setup


def _pairs_extension():
    """The Proxy-Wasm host's serialized-pairs codec, a plain CPython extension (stable ABI)."""
    path = Path(__file__).resolve().parent / "proxywasm_vm" / "_proxywasm" / "_build.py"
    spec = importlib.util.spec_from_file_location("_pwvm_pairs_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.make_extension()


def _channel_gil_extension():
    """The worker channel's steps that keep the GIL, a plain CPython extension (stable ABI)."""
    path = Path(__file__).resolve().parent / "proxywasm_vm" / "_isolation" / "_build.py"
    spec = importlib.util.spec_from_file_location("_pwvm_chan_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.make_gil_extension()


setup(
    cffi_modules=[
        "proxywasm_vm/backends/wasmtime/_build.py:make_builder",
        "proxywasm_vm/_isolation/_build.py:make_builder",
        "proxywasm_vm/backends/wasmer/_guard_build.py:make_builder",
    ],
    ext_modules=[_pairs_extension(), _channel_gil_extension()],
    # cffi builds against the limited API (Py_LIMITED_API) by default: tag the wheel abi3 to match
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
