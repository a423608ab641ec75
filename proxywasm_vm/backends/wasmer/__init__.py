"""The wasmer backend: wasmer-python 1.1.0 (compilers: cranelift, the default; singlepass; llvm).

wasmer-python has no wheels for Python >= 3.11. Where ``import wasmer`` works
(Python <= 3.10 with ``pip install wasmer==1.1.0 wasmer-compiler-cranelift==1.1.0``)
``BACKEND`` runs it in-process; elsewhere ``BACKEND`` runs it in a worker process
under a Python 3.10 interpreter (``bash ci/setup_wasmer.sh`` makes one, or point
``PWVM_WORKER_PYTHON`` at yours); see :mod:`proxywasm_vm._isolation`.

Pick a compiler with ``Engine("wasmer", EngineConfig(options=(("compiler", "llvm"),)))``.
"""

from __future__ import annotations

from dataclasses import replace

from typing import TYPE_CHECKING

from proxywasm_vm._backend import Backend, Capabilities
from proxywasm_vm._engine import EngineConfig

if TYPE_CHECKING:
    from ._adapter import WasmerEngine

__all__ = ["BACKEND", "CAPABILITIES", "WasmerBackend"]

#: What wasmer-python 1.1.0 can do in-process (in a worker: memory_view=False, threads=True).
CAPABILITIES = Capabilities(
    fuel=False,              # no metering in wasmer-python
    deadline=False,          # no epoch/interrupt (in a worker: True, the kernel ends the call, see _guard)
    memory_limit=False,      # no tunables/limiter exposed (in a worker: True, RLIMIT_DATA, see _guard)
    max_wasm_stack=False,
    serialize=True,
    table_access=False,      # tables have no get/set/grow; none can be created
    reference_values=False,  # funcref/externref values panic (pyo3 PanicException)
    v128_values=True,
    multi_value=True,
    host_memory_access=True,  # emulated: host functions are bound to their instance (not in the start function)
    memory_view=True,
    threads=False,            # wasmer-python objects are bound to the thread that made them (pyo3 "unsendable")
    concurrent_stores=False,  # (in a worker, one worker thread serves every parent thread, one call at a time)
    wasm_threads=False,       # the threads proposal cannot be enabled from Python
)

try:
    import wasmer as _wasmer

    _REASON = ""
except BaseException as _e:  # noqa: BLE001 - the >= 3.11 stub raises at import; a broken wheel may panic
    _REASON = f"import wasmer failed ({type(_e).__name__}: {_e}); wasmer-python 1.1.0 has no wheels for Python >= 3.11"


class WasmerBackend(Backend):
    """wasmer-python run in this process."""

    name = "wasmer"

    def version(self) -> str:
        return str(getattr(_wasmer, "__version__", "1.1.0"))

    def capabilities(self) -> Capabilities:
        from proxywasm_vm._isolation import _guard

        if _guard.enabled():  # in a worker process: deadlines and memory caps enforced around each call
            return replace(CAPABILITIES, deadline=True, memory_limit=True, exact_memory_limit=False,
                           interrupt_keeps_store=False)
        return CAPABILITIES

    def new_engine(self, config: EngineConfig) -> WasmerEngine:
        from ._adapter import WasmerEngine

        return WasmerEngine._create(self, config)


if not _REASON:
    BACKEND: Backend = WasmerBackend()
else:
    from proxywasm_vm._isolation import process_backend

    BACKEND = process_backend("wasmer", name="wasmer", in_process_reason=_REASON)
