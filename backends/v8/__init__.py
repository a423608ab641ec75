"""The V8 backend: the V8 inside Debian's libnode, driven through a C++ shim and cffi.

``_shim.cpp`` gives V8's C++ API a small wasm.h-shaped C surface (one isolate
per store, a chaining SIGSEGV handler, a watchdog thread for deadlines); this
package adapts it to the public classes. Import and export types come from
the module bytes (V8 does not expose them). Memory and table limits work by
having the host create the module's memories and tables (see ``_rewrite``).

Unavailable (with the command that enables it, ``bash ci/setup_v8.sh``) when
libnode is missing or the shim cannot be built.

Isolation: in-process, or in a worker (``v8@process``). libnode itself loads
and runs wasm in a linker namespace (``dlmopen``, tried with the shim built as a
plain library: ~20 ms to load, ~32 MB per copy, V8 flags and signal-trap mode
per copy, SIGSEGV handlers of all copies chain), but this package links the
shim into its cffi module and keeps one ``lib`` per process, so a namespace copy
would need the shim reached through a pointer table per copy (as
``backends/wasmtime`` does): not done yet.
"""

from __future__ import annotations

from proxywasm_vm._backend import Backend, Capabilities
from proxywasm_vm._engine import EngineConfig

from ._engine import V8Engine, V8Module
from ._extern import V8Global, V8Instance, V8Memory, V8Table
from ._ffi import HOW_TO_ENABLE, node, version
from ._func import V8Func
from ._store import V8Caller, V8Store

__all__ = ["BACKEND", "HOW_TO_ENABLE", "V8Backend", "V8Caller", "V8Engine", "V8Func", "V8Global", "V8Instance",
           "V8Memory", "V8Module", "V8Store", "V8Table"]

_CAPS = Capabilities(
    fuel=False,  # V8 has no instruction budget
    deadline=True,  # a watchdog thread calls TerminateExecution
    memory_limit=True,  # host-created memories with a capped maximum
    max_wasm_stack=True,  # the isolate's stack limit
    serialize=False,  # no public API to load serialized code
    table_access=True,
    reference_values=True,  # funcref via type reflection, externref as ids
    v128_values=False,  # v128 cannot cross V8's JS boundary
    multi_value=True,
    host_memory_access=True,
)


class V8Backend(Backend):
    name = "v8"

    def version(self) -> str:
        return version()

    def capabilities(self) -> Capabilities:
        return _CAPS

    def new_engine(self, config: EngineConfig) -> V8Engine:
        return V8Engine._create(self, config)

    def libnode(self) -> str:
        """Where the libnode in use lives (system or project-local prefix)."""
        return f"{node.libdir} ({node.origin}, NODE_MODULE_VERSION {node.abi})"


BACKEND = V8Backend()
