"""cffi (API mode) builder of the V8 backend's native module, and where libnode is.

The module (``proxywasm_vm.backends.v8._native``) compiles ``_shim.cpp`` and
links libnode through an rpath (never a global search path); it is built on
first use by :func:`proxywasm_vm._native.load_extension` into the cache folder,
keyed by the sources and the libnode in use.  ``bash ci/setup_v8.sh`` makes
libnode available and runs this file to build ahead of time.

libnode is looked for in this order: ``$PWVM_LIBNODE_PREFIX`` (a ``usr``-style
prefix), the system (``libnode-dev``), the project-local prefix
``.deps/libnode/usr`` that ci/setup_v8.sh unpacks when apt cannot install
libnode-dev (a newer Node.js from another repository blocks it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODULE = "proxywasm_vm.backends.v8._native"
SOURCES = [HERE / "_shim.h", HERE / "_shim.cpp", HERE / "_build.py"]


class Libnode(NamedTuple):
    include: str
    libdir: str
    origin: str  # "env", "system" or "local"
    abi: str  # NODE_MODULE_VERSION: 108 = Node 18 / V8 10.2, 115 = Node 20 / V8 11.3


def _multiarch() -> str:
    ma = sysconfig.get_config_var("MULTIARCH")
    if ma:
        return str(ma)
    try:
        return subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True,
                              check=True).stdout.strip() or "x86_64-linux-gnu"
    except Exception:
        return "x86_64-linux-gnu"


def find_libnode() -> Libnode | None:
    """The libnode to build against, or None.

    Usable means v8.h plus ``libnode.so.N`` with N the headers' NODE_MODULE_VERSION
    (NodeSource's nodejs also installs /usr/include/node, without the library).
    """
    cands: list[tuple[str, str]] = []
    env = os.environ.get("PWVM_LIBNODE_PREFIX")
    if env:
        cands.append((env, "env"))
    cands += [("/usr", "system"), (str(ROOT / ".deps" / "libnode" / "usr"), "local")]
    ma = _multiarch()
    for prefix, origin in cands:
        inc = os.path.join(prefix, "include", "node")
        try:
            with open(os.path.join(inc, "node_version.h")) as f:
                m = re.search(r"#define NODE_MODULE_VERSION (\d+)", f.read())
        except OSError:
            continue
        if not m or not os.path.exists(os.path.join(inc, "v8.h")):
            continue
        for libdir in (os.path.join(prefix, "lib", ma), os.path.join(prefix, "lib")):
            if os.path.exists(os.path.join(libdir, "libnode.so." + m.group(1))):
                return Libnode(inc, libdir, origin, m.group(1))
    return None


def _cdef() -> str:
    """_shim.h without comments, preprocessor lines (but the PWV8_FAIL and PWV8_HOST_ defines) and C++ guards."""
    src = re.sub(r"/\*.*?\*/", "", (HERE / "_shim.h").read_text(), flags=re.DOTALL)
    lines = [ln for ln in src.splitlines()
             if (not ln.lstrip().startswith("#") or ln.startswith(("#define PWV8_FAIL", "#define PWV8_HOST_")))
             and 'extern "C"' not in ln and ln.strip() != "}"]
    return "\n".join(lines) + """
extern "Python" int64_t pwv8_py_host0(uint64_t);
extern "Python" int64_t pwv8_py_host1(uint64_t, int64_t);
extern "Python" int64_t pwv8_py_host2(uint64_t, int64_t, int64_t);
extern "Python" int64_t pwv8_py_host3(uint64_t, int64_t, int64_t, int64_t);
extern "Python" int64_t pwv8_py_host6(uint64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
extern "Python" int32_t pwv8_py_host_raw(uint64_t, uint64_t, pwv8_val *, uint32_t);
"""


def make_builder(node: Libnode) -> Any:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    ffi.set_source(
        MODULE,
        '#include "_shim.h"\n',
        source_extension=".cpp",
        sources=[str(HERE / "_shim.cpp")],
        include_dirs=[str(HERE), node.include],
        library_dirs=[node.libdir],
        libraries=["node"],
        # An rpath for a project-local libnode: nothing goes on a global path.
        runtime_library_dirs=[] if node.origin == "system" else [node.libdir],
        extra_compile_args=["-std=c++17", "-O2", "-fno-rtti", "-Wall", "-Wno-unused-parameter",
                            "-Wno-unused-function"],
        extra_link_args=["-Wl,--as-needed", "-Wl,-z,now"],
    )
    return ffi


def load(node: Libnode) -> Any:
    """Import the native module, building it first if needed (a few seconds, once)."""
    from proxywasm_vm._native import load_extension

    return load_extension(MODULE, lambda: make_builder(node), SOURCES,
                          extra_key=f"{node.include}|{node.libdir}|{node.abi}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    found = find_libnode()
    if found is None:
        raise SystemExit("libnode not found: run `bash ci/setup_v8.sh`")
    mod = load(found)
    print(mod.__file__)
