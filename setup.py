"""Build-time native code: the cffi modules that need only Python and a C compiler.

Everything else (metadata, packages, package data) is in pyproject.toml; this file
only adds what pyproject cannot say: cffi's setuptools integration, which compiles
the wasmtime backend's shim, the worker channel's wake-up helper and wasmer's guard helper
into the wheel (so an installed package needs no compiler), and the stable ABI, so one wheel
serves every CPython >= 3.10. The V8 shim is not here: it needs libnode, which
``pwvm setup v8`` finds on the user's machine.
"""

from setuptools import setup

setup(
    cffi_modules=[
        "proxywasm_vm/backends/wasmtime/_build.py:make_builder",
        "proxywasm_vm/_isolation/_build.py:make_builder",
        "proxywasm_vm/backends/wasmer/_guard_build.py:make_builder",
    ],
    # cffi builds against the limited API (Py_LIMITED_API) by default: tag the wheel abi3 to match
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
