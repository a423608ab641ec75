"""The wasmer backend: wasmer-python 1.1.0 (compilers: cranelift, the default; singlepass; llvm).

wasmer-python has no wheels for Python >= 3.11. Where ``import wasmer`` works
(Python <= 3.10 with ``pip install wasmer==1.1.0 wasmer-compiler-cranelift==1.1.0``)
``Engine("wasmer")`` runs it in-process; elsewhere ``BACKEND`` declares
``default_isolation = "process"`` and the registry runs it in a worker process
under a Python 3.10 interpreter (``pwvm setup wasmer`` makes one, see ``_build``; a
checkout's ``bash ci/setup_wasmer.sh`` too; or point ``PWVM_WORKER_PYTHON`` at yours:
:meth:`WasmerBackend.worker_python`).

Pick a compiler with ``Engine("wasmer", EngineConfig(options=(("compiler", "llvm"),)))``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from typing import TYPE_CHECKING

from proxywasm_vm import _guard, _settings
from proxywasm_vm._backend import _REGISTRY, Backend, Capabilities
from proxywasm_vm._engine import EngineConfig
from proxywasm_vm._features import WASM2_FEATURES

#: wasmer 1.1.0's name (the cranelift translator's "Unsupported feature: proposed simd operator X")
#: -> text-format name of every SIMD instruction wasmer-python 1.1.0 cannot compile, found by
#: compiling each SIMD instruction (tests/conformance/test_features.py checks the list both ways).
UNSUPPORTED_SIMD_NAMES = {
    "I16x8Q15MulrSatS": "i16x8.q15mulr_sat_s", "I8x16Popcnt": "i8x16.popcnt",
    "I16x8ExtMulLowI8x16S": "i16x8.extmul_low_i8x16_s", "I16x8ExtMulHighI8x16S": "i16x8.extmul_high_i8x16_s",
    "I16x8ExtMulLowI8x16U": "i16x8.extmul_low_i8x16_u", "I16x8ExtMulHighI8x16U": "i16x8.extmul_high_i8x16_u",
    "I32x4ExtMulLowI16x8S": "i32x4.extmul_low_i16x8_s", "I32x4ExtMulHighI16x8S": "i32x4.extmul_high_i16x8_s",
    "I32x4ExtMulLowI16x8U": "i32x4.extmul_low_i16x8_u", "I32x4ExtMulHighI16x8U": "i32x4.extmul_high_i16x8_u",
    "I64x2ExtMulLowI32x4S": "i64x2.extmul_low_i32x4_s", "I64x2ExtMulHighI32x4S": "i64x2.extmul_high_i32x4_s",
    "I64x2ExtMulLowI32x4U": "i64x2.extmul_low_i32x4_u", "I64x2ExtMulHighI32x4U": "i64x2.extmul_high_i32x4_u",
    "I16x8ExtAddPairwiseI8x16S": "i16x8.extadd_pairwise_i8x16_s",
    "I16x8ExtAddPairwiseI8x16U": "i16x8.extadd_pairwise_i8x16_u",
    "I32x4ExtAddPairwiseI16x8S": "i32x4.extadd_pairwise_i16x8_s",
    "I32x4ExtAddPairwiseI16x8U": "i32x4.extadd_pairwise_i16x8_u",
    "I32x4TruncSatF64x2SZero": "i32x4.trunc_sat_f64x2_s_zero", "I32x4TruncSatF64x2UZero": "i32x4.trunc_sat_f64x2_u_zero",
    "I64x2ExtendLowI32x4S": "i64x2.extend_low_i32x4_s", "I64x2ExtendHighI32x4S": "i64x2.extend_high_i32x4_s",
    "I64x2ExtendLowI32x4U": "i64x2.extend_low_i32x4_u", "I64x2ExtendHighI32x4U": "i64x2.extend_high_i32x4_u",
    "F32x4DemoteF64x2Zero": "f32x4.demote_f64x2_zero", "F64x2PromoteLowF32x4": "f64x2.promote_low_f32x4",
    "F64x2ConvertLowI32x4U": "f64x2.convert_low_i32x4_u",
}
UNSUPPORTED_SIMD = frozenset(UNSUPPORTED_SIMD_NAMES.values())
from proxywasm_vm._errors import BackendUnavailable

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
    features=WASM2_FEATURES,  # wasmer-python has no feature switches: its compilers run Wasm 2.0 ...
    unsupported_instructions=UNSUPPORTED_SIMD,  # ... less 27 SIMD instructions (refused at compile)
    wasm2_complete=False,     # some SIMD instructions and externref element segments are refused at compile
)

try:
    import wasmer as _wasmer

    _REASON = ""
except BaseException as _e:  # noqa: BLE001 - the >= 3.11 stub raises at import; a broken wheel may panic
    _REASON = f"import wasmer failed ({type(_e).__name__}: {_e}); wasmer-python 1.1.0 has no wheels for Python >= 3.11"


class WasmerBackend(Backend):
    """wasmer-python run in this process (where it cannot be imported: in worker processes)."""

    name = "wasmer"
    default_isolation = "process" if _REASON else "in-process"
    in_process_reason = _REASON

    def version(self) -> str:
        return str(getattr(_wasmer, "__version__", "1.1.0"))

    def worker_python(self) -> str | None:
        """A Python 3.10 with wasmer-python: this interpreter if it can import wasmer, else
        ``.venv310/bin/python`` at the checkout's root, else the path ``pwvm setup wasmer`` (or
        ``ci/setup_wasmer.sh``) recorded in the cache folder (``<cache>/wasmer-worker-python``)."""
        if not _REASON:
            return sys.executable
        root = Path(__file__).resolve().parents[3]
        cand = root / ".venv310" / "bin" / "python"
        if cand.exists():
            return str(cand)
        recorded = _settings.cache_dir() / "wasmer-worker-python"
        if recorded.exists():
            path = recorded.read_text().strip()
            if path and os.path.exists(path):
                return path
        raise BackendUnavailable("wasmer", "wasmer-python 1.1.0 has no wheels for Python >= 3.11 and no Python "
                                           "3.10 worker environment was set up", _REGISTRY["wasmer"][1])

    def capabilities(self) -> Capabilities:
        if _guard.enabled():  # in a worker process: deadlines and memory caps enforced around each call
            return replace(CAPABILITIES, deadline=True, memory_limit=True, exact_memory_limit=False,
                           interrupt_keeps_store=False)
        return CAPABILITIES

    def new_engine(self, config: EngineConfig) -> WasmerEngine:
        from ._adapter import WasmerEngine

        return WasmerEngine._create(self, config)


BACKEND: Backend = WasmerBackend()
