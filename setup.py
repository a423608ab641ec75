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


def _extension(package: str, build_name: str) -> object:
    """A plain CPython extension (stable ABI) made by ``make_<build_name>`` of the package's
    ``_build.py``, which runs alone here (it imports nothing of the package)."""
    path = Path(__file__).resolve().parent / "proxywasm_vm" / package / "_build.py"
    spec = importlib.util.spec_from_file_location(f"_pwvm_{build_name}_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return getattr(build, f"make_{build_name}")()


setup(
    cffi_modules=[
        "proxywasm_vm/backends/wasmtime/_build.py:make_builder",
        "proxywasm_vm/_isolation/_build.py:make_builder",
        "proxywasm_vm/backends/wasmer/_guard_build.py:make_builder",
    ],
    ext_modules=[
        _extension("_proxywasm", "extension"),  # the Proxy-Wasm host's serialized-pairs codec
        _extension("_isolation", "gil_extension"),  # the worker channel's steps that keep the GIL
    ],
    # cffi builds against the limited API (Py_LIMITED_API) by default: tag the wheel abi3 to match
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
