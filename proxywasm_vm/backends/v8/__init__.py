"""The V8 backend: the V8 inside Debian's libnode, driven through a C++ shim and cffi.

``_shim.cpp`` gives V8's C++ API a small wasm.h-shaped C surface (stores made
by one thread share an isolate and context, each with its own handle table,
limits and deadline, so calls into stores one thread made take turns whatever
thread makes them, while stores made by different threads run at the same time;
a chaining SIGSEGV handler; a watchdog thread for deadlines); this
package adapts it to the public classes. Import and export types come from
the module bytes (V8 does not expose them). Memory and table limits work by
having the host create the module's memories and tables (see ``_rewrite``).

Unavailable (with the command that enables it, ``pwvm setup v8``) when
libnode is missing or the shim cannot be built.

Isolation: in-process, in its own linker namespace (``v8@namespace``), or in
a worker (``v8@process``).  The shim is a plain library reached through a
table of pointers in a cffi module (see ``_build``); ``v8@namespace`` imports
this package a second time, as ``proxywasm_vm.backends._v8_namespace``, whose
``_ffi`` loads a second copy of the shim, libnode and V8 with ``dlmopen``
(~20 ms, ~32 MB; its own V8 flags, platform and watchdog; the SIGSEGV handlers
of all copies chain; its libc numbers pthread keys apart from ours, see
``pwv8_open`` in ``_build``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from types import ModuleType

from proxywasm_vm._backend import Backend, Capabilities
from proxywasm_vm._engine import EngineConfig
from proxywasm_vm._features import WASM2_FEATURES

from ._engine import V8Engine, V8Module
from ._extern import V8Global, V8Instance, V8Memory, V8Table
from ._ffi import HOW_TO_ENABLE, NAME, NAMESPACE, NAMESPACE_PACKAGE, node, version
from ._func import V8Func
from ._store import V8Caller, V8Store

__all__ = ["BACKEND", "HOW_TO_ENABLE", "V8Backend", "V8Caller", "V8Engine", "V8Func", "V8Global", "V8Instance",
           "V8Memory", "V8Module", "V8Store", "V8Table"]

_CAPS = Capabilities(
    fuel=False,  # V8 has no instruction budget
    deadline=True,  # a watchdog thread calls TerminateExecution
    memory_limit=True,  # host-created memories with a capped maximum
    max_wasm_stack=True,  # the isolate's stack limit
    serialize=True,  # the rewritten bytes and their types: V8 compiles lazily (see _engine)
    table_access=True,
    reference_values=True,  # funcref via type reflection, externref as ids
    v128_values=True,
    immutable_v128_imports=False,  # V8 aborts the process importing one: refused (LinkError)  # through generated adapter modules (v128 cannot cross V8's JS API itself)
    multi_value=True,
    host_memory_access=True,
    exact_trap_codes=False,  # two pairs of traps share a message (see Capabilities.exact_trap_codes)
    # Wasm 2.0 and threads, which V8 10.2 / 11.3 ship; its other proposals need process-wide
    # --experimental-wasm-* flags (and are not final there), so they are not offered
    features=WASM2_FEATURES | {"threads"},
)


class V8Backend(Backend):
    name = NAME
    isolation = "namespace" if NAMESPACE else "in-process"

    def version(self) -> str:
        return version()

    def capabilities(self) -> Capabilities:
        return _CAPS

    def new_engine(self, config: EngineConfig) -> V8Engine:
        return V8Engine._create(self, config)

    def namespace_variant(self) -> V8Backend:
        """V8 loaded a second time, into its own linker namespace (one copy per process)."""
        backend: V8Backend = _namespace_package().BACKEND
        return backend

    def libnode(self) -> str:
        """Where the libnode in use lives (system or project-local prefix)."""
        return f"{node.libdir} ({node.origin}, NODE_MODULE_VERSION {node.abi})"


BACKEND = V8Backend()

_ns_lock = threading.Lock()


def _namespace_package() -> ModuleType:
    """This package imported again as ``NAMESPACE_PACKAGE``: its relative imports give it its own
    modules (classes, registries, ``_ffi`` with its own cffi module and copy of V8)."""
    with _ns_lock:
        mod = sys.modules.get(NAMESPACE_PACKAGE)
        if mod is not None:
            return mod
        here = os.path.dirname(os.path.abspath(__file__))
        spec = importlib.util.spec_from_file_location(NAMESPACE_PACKAGE, os.path.join(here, "__init__.py"),
                                                      submodule_search_locations=[here])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[NAMESPACE_PACKAGE] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:  # (BackendUnavailable: no namespace left) a later call tries again from scratch
            for name in [n for n in sys.modules if n == NAMESPACE_PACKAGE or n.startswith(NAMESPACE_PACKAGE + ".")]:
                del sys.modules[name]
            raise
        return mod
