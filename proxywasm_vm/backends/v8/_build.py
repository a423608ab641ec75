"""Builders of the V8 backend's native code, and where libnode is.

Two pieces, both built on first use into the cache folder (see
:mod:`proxywasm_vm._native`), keyed by the sources and the libnode in use:

- ``libpwv8.so``: ``_shim.cpp`` as a plain shared library linked to libnode
  through an rpath (never a global search path);
- a small cffi (API mode) module generated from ``_shim.h``: for every
  ``pwv8_*`` function a wrapper of the same name calling through a pointer,
  and ``pwv8_open`` that loads the library and fills the pointers.  It is
  built under two names, ``_native`` (the in-process copy: ``dlopen``) and
  ``_native_ns`` (a copy in a new linker namespace: ``dlmopen``), so each
  module has its own pointer table, reaching its own copy of the shim,
  libnode and V8.

``pwvm setup v8`` builds both ahead of time (:func:`setup`); ``bash ci/setup_v8.sh``
also makes libnode available on a CI machine.

libnode is looked for in this order: ``$PWVM_LIBNODE_PREFIX`` (a ``usr``-style
prefix), the system (``libnode-dev``), the project-local prefix
``.deps/libnode/usr`` that ci/setup_v8.sh unpacks when apt cannot install
libnode-dev (a newer Node.js from another repository blocks it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the source checkout (proxywasm_vm/backends/v8 -> root), where ci/ puts .deps
MODULE = "proxywasm_vm.backends.v8._native"
MODULE_NS = "proxywasm_vm.backends.v8._native_ns"
LIBRARY = "libpwv8.so"
SOURCES = [HERE / "_shim.h", HERE / "_shim.cpp", HERE / "_build.py"]
#: What to do when libnode is missing (told to someone who installed proxywasm-vm with pip).
HOW_TO_GET_LIBNODE = ("install libnode (Debian 12/13, Ubuntu 22.04+: apt install libnode-dev g++), or set "
                      "PWVM_LIBNODE_PREFIX to a prefix holding include/node/v8.h and lib/libnode.so.N; "
                      "then run `pwvm setup v8`")


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
    from proxywasm_vm._settings import libnode_prefix

    env = libnode_prefix()
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


def _prototypes() -> list[tuple[str, str, str, list[str]]]:
    """(result type, name, parameter list, argument names) of every ``pwv8_*`` function of _shim.h."""
    out = []
    for decl in " ".join(_cdef().split()).split(";"):  # statements, whitespace normalised
        m = re.fullmatch(r"\s*([\w ]+[ *]+)(pwv8_\w+)\((.*)\)\s*", decl)
        if m:
            params = m.group(3).strip()
            args = [] if params == "void" else [re.findall(r"\w+", p)[-1] for p in params.split(",")]
            out.append((m.group(1).strip(), m.group(2), params, args))
    return out


def _wrappers() -> str:
    """The cffi module's C source: pointer-calling wrappers of the shim's functions, and pwv8_open."""
    protos = _prototypes()
    out = ["#ifndef _GNU_SOURCE", "#define _GNU_SOURCE", "#endif", "#include <dlfcn.h>", "#include <gnu/lib-names.h>",
           "#include <link.h>", "#include <pthread.h>", "#include <stdio.h>", "#include <stdlib.h>",
           "#include <string.h>", "#include <unistd.h>", '#include "_shim.h"', ""]
    for res, name, params, args in protos:
        out.append(f"static __typeof__({name}) *p_{name};")
        ret = "" if res == "void" else "return "
        out.append(f"{res} {name}({params}) {{ {ret}p_{name}({', '.join(args)}); }}")
    syms = "".join(f'\n    {{(void **)&p_{name}, "{name}"}},' for _, name, _, _ in protos)
    out.append(f"""
/* Load the shim library at path and point every wrapper at it (once).
 * namespace_ = 0: dlopen, local symbols (libnode's never satisfy anyone
 * else's lookups); 1: dlmopen into a new linker namespace, a separate copy of
 * the shim, libnode, V8 and libc (with its own heap: nothing allocated there
 * is freed here).  Never unloaded (RTLD_NODELETE).  Returns NULL, or why not
 * (a static buffer). */
const char *pwv8_open(const char *path, int namespace_) {{
  static char err[512];
  static const struct {{ void **slot; const char *name; }} syms[] = {{{syms}
  }};
  if (p_pwv8_init != NULL) return NULL;
  void *h;
  if (namespace_) {{
    /* pthread keys: a namespace's libc has its own key table (numbered from
     * 0, as this one) but a thread's key slots are shared, so V8's keys there
     * would overwrite ours (Python's thread state: the next host call crashes
     * in PyGILState_Ensure).  So the namespace starts as its libc alone, which
     * hands out (and leaks) its first NS_FIRST_KEY keys before V8 loads: its
     * keys then come from the end of the first key block (kept in the thread
     * descriptor, never allocated), which this libc is kept off below (it
     * hands out keys from 0 up: 9 with Python, wasmtime and V8 loaded). */
    enum {{ NS_FIRST_KEY = 24, KEY_BLOCK = 32 }};
    static Lmid_t lm = LM_ID_NEWLM;  /* kept if the shim then fails to load: a retry reuses it */
    static int keys_held = 0;
    if (lm == LM_ID_NEWLM) {{
      /* ... and this libc must never hand out those keys itself (its own grow from 0
       * as a process loads more libraries): take NS_FIRST_KEY..31 here for good, giving
       * back the lower ones handed out on the way.  If one is in use already, a copy in
       * a namespace would share its slot: refuse. */
      pthread_key_t taken[KEY_BLOCK], k = 0;
      int n = 0, held = 0;
      if (!keys_held) {{
        while (n < KEY_BLOCK && pthread_key_create(&k, NULL) == 0) {{
          taken[n++] = k;
          if (k >= KEY_BLOCK - 1) break;
        }}
        for (int i = 0; i < n; i++)
          if (taken[i] >= NS_FIRST_KEY && taken[i] < KEY_BLOCK) held++;
          else pthread_key_delete(taken[i]);
        if (held != KEY_BLOCK - NS_FIRST_KEY) {{
          for (int i = 0; i < n; i++)
            if (taken[i] >= NS_FIRST_KEY && taken[i] < KEY_BLOCK) pthread_key_delete(taken[i]);
          snprintf(err, sizeof err, "this process already uses pthread keys %d-%d, which a copy of V8 in a "
                   "linker namespace needs for itself", NS_FIRST_KEY, KEY_BLOCK - 1);
          return err;
        }}
        keys_held = 1;
      }}
      void *c = dlmopen(LM_ID_NEWLM, LIBC_SO, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
      /* That libc starts with this process's environ pointer (the array, not a copy), which
       * this process's setenv() moves and frees when it grows it: give it an array of its
       * own, the environment as it is now, never freed (else its next getenv reads freed
       * memory; the same in the wasmtime shim). */
      char ***ns_environ = c ? (char ***)dlsym(c, "environ") : NULL;
      if (ns_environ != NULL && ns_environ != &environ && *ns_environ == environ && environ != NULL) {{
        size_t n = 0;
        while (environ[n]) n++;
        char **copy = calloc(n + 1, sizeof *copy);
        if (copy != NULL) {{
          for (size_t i = 0; i < n; i++) copy[i] = strdup(environ[i]);
          *ns_environ = copy;
        }}
      }}
      int (*key_create)(pthread_key_t *, void (*)(void *)) = c ? dlsym(c, "pthread_key_create") : NULL;
      if (key_create == NULL || dlinfo(c, RTLD_DI_LMID, &lm) != 0) {{
        const char *why = dlerror();
        snprintf(err, sizeof err, "cannot load another copy into a new linker namespace: %s",
                 why ? why : "dlmopen failed");
        lm = LM_ID_NEWLM;
        return err;
      }}
      k = 0;
      while (k < NS_FIRST_KEY - 1 && key_create(&k, NULL) == 0) {{}}
    }}
    h = dlmopen(lm, path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  }} else {{
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  }}
  if (h == NULL) {{
    const char *why = dlerror();
    snprintf(err, sizeof err, "%s%s", namespace_ ? "cannot load another copy into a new linker namespace: " : "",
             why ? why : "dlopen failed");
    return err;
  }}
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {{
    if ((*syms[i].slot = dlsym(h, syms[i].name)) == NULL) {{
      snprintf(err, sizeof err, "symbol %s missing from %s", syms[i].name, path);
      for (size_t j = 0; j < i; j++) *syms[j].slot = NULL;
      return err;
    }}
  }}
  return NULL;
}}""")
    return "\n".join(out) + "\n"


def make_builder(module: str) -> Any:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_cdef() + "const char *pwv8_open(const char *path, int namespace_);\n")
    ffi.set_source(
        module,
        _wrappers(),
        include_dirs=[str(HERE)],
        libraries=["dl"],
        # hidden: the wrappers bind within the module (no PLT hop) and export nothing
        extra_compile_args=["-O2", "-fvisibility=hidden"],
    )
    return ffi


def _compile_library(node: Libnode, output: str) -> None:
    cxx = os.environ.get("CXX", "g++")
    cmd = [cxx, "-shared", "-fPIC", "-std=c++17", "-O2", "-DNDEBUG", "-fwrapv", "-fno-rtti", "-Wall",
           "-Wno-unused-parameter", "-Wno-unused-function", f"-I{HERE}", f"-I{node.include}",
           str(HERE / "_shim.cpp"), "-o", output, f"-L{node.libdir}", "-lnode",
           "-Wl,--as-needed", "-Wl,-z,now"]
    if node.origin != "system":  # an rpath for a project-local libnode: nothing goes on a global path
        cmd.append(f"-Wl,-rpath,{node.libdir}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeError(f"the C++ compiler {cxx!r} was not found (apt install g++, or set CXX)") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{cxx} failed: {proc.stderr[-2000:]}")


def _library_key(node: Libnode) -> str:
    return f"{node.include}|{node.libdir}|{node.abi}"


def library(node: Libnode) -> Path:
    """The shim library (built first if needed: a few seconds, once)."""
    from proxywasm_vm._native import build_library

    return build_library(LIBRARY, lambda out: _compile_library(node, out), SOURCES, extra_key=_library_key(node))


def load(node: Libnode, namespace: bool = False) -> Any:
    """Import the cffi module of the in-process copy (or of the namespace copy), building
    it and the shim library first if needed.  Nothing is loaded until ``lib.pwv8_open``."""
    from proxywasm_vm._native import load_extension

    library(node)
    name = MODULE_NS if namespace else MODULE
    return load_extension(name, lambda: make_builder(name), SOURCES)


def missing_build_tools() -> list[tuple[str, str]]:
    """What building the shim needs and this machine lacks: (what, how to get it) pairs."""
    missing = []
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(shlex.split(cxx)[0] if cxx.strip() else "g++") is None:
        missing.append((f"a C++ compiler ({cxx})", "apt install g++"))
    cc = os.environ.get("CC", "cc")
    if shutil.which(shlex.split(cc)[0] if cc.strip() else "cc") is None:
        missing.append((f"a C compiler ({cc})", "apt install gcc"))
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        missing.append((f"Python {ver}'s headers (Python.h)", f"apt install python{ver}-dev (or python3-dev)"))
    if importlib.util.find_spec("setuptools") is None:  # cffi compiles through setuptools (not bundled from 3.12)
        missing.append(("setuptools (cffi compiles with it)", "pip install setuptools"))
    return missing


def setup(step: Callable[[str], None]) -> str:
    """``pwvm setup v8``: find libnode and build the shim library and both cffi modules (once;
    a no-op when they are built). ``step`` is told what is being done. Returns what is in use;
    raises :class:`~proxywasm_vm.BackendUnavailable` saying what is missing and how to get it."""
    from proxywasm_vm._errors import BackendUnavailable

    step("looking for libnode")
    node = find_libnode()
    if node is None:
        raise BackendUnavailable("v8", "libnode (V8 10.2 or 11.3, with its headers) was not found",
                                 HOW_TO_GET_LIBNODE)
    from proxywasm_vm._native import library_path

    where = f"libnode {node.abi} from {node.libdir} ({node.origin})"
    built = library_path(LIBRARY, SOURCES, _library_key(node)).exists()
    missing = [] if built else missing_build_tools()
    if missing:
        apt = [how.removeprefix("apt install ") for _, how in missing if how.startswith("apt install ")]
        hows = [f"apt install {' '.join(apt)}"] if apt else []
        hows += [h for _, h in missing if not h.startswith("apt")]
        raise BackendUnavailable("v8", f"building the V8 shim against {where} needs "
                                 + ", ".join(what for what, _ in missing),
                                 "; ".join(hows) + "; then run `pwvm setup v8`")
    try:
        step(f"the V8 shim is built already, for {where}" if built
             else f"compiling the V8 shim against {where} (a minute or so, once)")
        library(node)
        step("loading it (its Python bindings are compiled the first time)")
        for namespace in (False, True):
            load(node, namespace=namespace)
    except Exception as e:  # a compile error: the compiler's own words
        raise BackendUnavailable("v8", f"building the V8 shim against {where} failed: "
                                 + " ".join(str(e).split())[-600:],
                                 "check that libnode-dev matches the installed libnode, "
                                 "then run `pwvm setup v8`") from e
    return where


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    found = find_libnode()
    if found is None:
        raise SystemExit(f"libnode not found: {HOW_TO_GET_LIBNODE}")
    # the library, then the in-process and the namespace copy's modules
    print(library(found), *(load(found, namespace=ns).__file__ for ns in (False, True)))
