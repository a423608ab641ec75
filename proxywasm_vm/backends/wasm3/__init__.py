"""The wasm3 backend: the wasm3 interpreter (0.5.0), through the library PyPI's pywasm3 0.5.0 builds.

wasm3 interprets wasm: nothing is compiled to machine code, so it starts instantly and runs
slower. It cannot be interrupted and has no memory limiter, so like wasmer it runs by default in
a worker process, where :mod:`proxywasm_vm._guard` enforces ``StoreLimits.deadline``
and ``memory_bytes`` around each call from outside. Inside that worker (and only there) ``BACKEND``
is the in-process adapter (``_adapter``, over the C API declared in ``_capi``).

What wasm3 0.5.0 cannot do (see :data:`CAPABILITIES`): fuel, serialized modules, tables from
Python, reference and v128 values, the threads proposal, and a memory or global shared by two
instances (each instance is a wasm3 runtime with its own memory and globals).
"""

from __future__ import annotations

from dataclasses import replace

from proxywasm_vm import _guard
from proxywasm_vm._backend import Backend, Capabilities
from proxywasm_vm._engine import Engine, EngineConfig

__all__ = ["BACKEND", "CAPABILITIES", "Wasm3Backend"]

#: What the adapter can do in this process (in its worker: deadline and memory_limit, see capabilities()).
CAPABILITIES = Capabilities(
    fuel=False,               # wasm3's "metering" needs modules instrumented with calls to metering.usegas
    deadline=False,           # no interrupt: in a worker the kernel ends the call (see _guard)
    memory_limit=False,       # no limiter: in a worker RLIMIT_DATA makes memory.grow return -1 (see _guard)
    exact_memory_limit=False,
    interrupt_keeps_store=False,
    max_wasm_stack=True,      # the size of each runtime's value stack (EngineConfig.max_wasm_stack)
    serialize=False,          # an interpreter: there is no compiled code to keep
    table_access=False,       # the C API has no table functions; tables cannot be imported either
    reference_values=False,   # wasm3 0.5.0 has no reference types:
    reference_types=False,    # a module using funcref/externref in its code does not compile
    v128_values=False,        # nor SIMD
    raw_floats=False,         # an f32 from f32.load / f32.reinterpret_i32 passes a double register: sNaN quieted
    multi_value=True,
    host_memory_access=True,
    memory_view=False,        # wasm3 reallocates a memory that grows: a view kept would dangle
    threads=True,             # a store per thread: each store has its own wasm3 environment
    concurrent_stores=True,   # ctypes releases the GIL while wasm runs
    wasm_threads=False,
    lazy_memory_growth=False,  # realloc + memset per grow: 512 MiB take ~0.3-0.6 s here
    shared_externs=False,     # one memory and one set of globals per wasm3 runtime (= per instance)
    # of Wasm 2.0 beyond the MVP: multi-value and part of bulk memory (memory.copy, memory.fill);
    # wasm3 0.5.0 has no reference types nor SIMD, and refuses the rest of bulk memory (and
    # passive segments) at compile
    features=frozenset({"multi_value", "bulk_memory"}),
    unsupported_instructions=frozenset({"memory.init", "data.drop", "table.copy", "table.init", "elem.drop"}),
    wasm2_complete=False,     # no SIMD, reference types, passive segments; mixed multi-value blocks; dead-code operators
)

try:
    from . import _capi

    _REASON = ""
except ImportError as _e:
    _REASON = f"cannot load wasm3: {_e}"


#: Why wasm3 does not run in a process without the guard (the parent of its workers).
_IN_PROCESS_REASON = ("wasm3 cannot be interrupted nor limited in memory: it runs in a worker process, where "
                      "the kernel enforces deadlines and memory caps")


class Wasm3Backend(Backend):
    """wasm3 run in this process: in a worker, where the guard is on (see the module docs).

    Anywhere else the registry runs it in a worker (``default_isolation``), and refuses
    ``"wasm3@in-process"`` with :attr:`in_process_reason`."""

    name = "wasm3"
    # (a worker turns the guard on before it imports its backend)
    default_isolation = "in-process" if _guard.enabled() else "process"
    in_process_reason = "" if _guard.enabled() else _IN_PROCESS_REASON

    def version(self) -> str:
        return _capi.VERSION

    def capabilities(self) -> Capabilities:
        if _guard.enabled():  # in a worker process: deadlines and memory caps enforced around each call,
            # and the guard's limits are process-wide, so calls run one at a time
            return replace(CAPABILITIES, deadline=True, memory_limit=True, concurrent_stores=False)
        return CAPABILITIES

    def new_engine(self, config: EngineConfig) -> Engine:
        from ._adapter import Wasm3Engine

        return Wasm3Engine._create(self, config)


if _REASON:
    from proxywasm_vm._backend import WASM3_HOW_TO_ENABLE
    from proxywasm_vm._errors import BackendUnavailable

    raise BackendUnavailable("wasm3", _REASON, WASM3_HOW_TO_ENABLE)
BACKEND: Backend = Wasm3Backend()
