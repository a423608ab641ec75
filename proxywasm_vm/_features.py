"""WebAssembly features: which proposals an engine accepts (``EngineConfig.features``).

Every module is validated once, in the core, before any backend sees it (see
:mod:`proxywasm_vm._validate`), against the engine's features: a module using a feature that is
off is a :class:`~proxywasm_vm.CompileError` naming it, on every backend alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

__all__ = ["WasmFeatures", "BASELINE", "REQUIRES", "WASM2_FEATURES", "ALL_FEATURES"]

#: Always on, on every backend (they cannot be switched off: the reference validator,
#: wasmtime's, always accepts them): the MVP, import/export of mutable globals, sign-extension
#: operators and non-trapping float-to-int conversions.
BASELINE = ("mvp", "mutable_globals", "sign_extension", "saturating_float_to_int")


#: Features that need others on (wasmtime aborts on relaxed SIMD without SIMD, for one).
REQUIRES: dict[str, frozenset[str]] = {
    "relaxed_simd": frozenset({"simd"}),
    "function_references": frozenset({"reference_types"}),
    "gc": frozenset({"function_references", "reference_types"}),
}


@dataclass(frozen=True)
class WasmFeatures:
    """The WebAssembly proposals an engine accepts, beyond :data:`BASELINE` (always on).

    ``WasmFeatures()`` is the **Wasm 2.0** profile (also :meth:`wasm2`): the baseline plus
    multi-value, bulk memory, reference types and 128-bit SIMD. Switch features with keywords
    (``WasmFeatures(simd=False)``, ``WasmFeatures(tail_call=True)``) or with names:
    ``WasmFeatures.wasm2() | {"threads"}``, ``WasmFeatures.wasm2() - {"simd"}``.
    :meth:`mvp` switches every one off.

    An engine refuses (:class:`~proxywasm_vm.FeatureUnsupported`, at creation) to enable a
    feature its runtime cannot run (``Capabilities.features`` lists those it can). Switching a
    feature off works on every backend: the core's validator then rejects modules using it.
    """

    # -- Wasm 2.0 (on by default) --
    multi_value: bool = True
    """Functions and blocks with several results."""
    bulk_memory: bool = True
    """``memory.copy/fill/init``, ``data.drop``, ``table.copy/init``, ``elem.drop``, passive segments."""
    reference_types: bool = True
    """``funcref``/``externref`` values, several tables, ``table.get/set/grow/size/fill``."""
    simd: bool = True
    """128-bit fixed-width SIMD (``v128``)."""
    # -- beyond Wasm 2.0 (off by default) --
    threads: bool = False
    """Shared memories and atomic instructions."""
    tail_call: bool = False
    """``return_call``, ``return_call_indirect``."""
    extended_const: bool = False
    """``i32/i64.add/sub/mul`` in constant expressions."""
    multi_memory: bool = False
    """Several memories per module."""
    memory64: bool = False
    """64-bit memories (and tables)."""
    relaxed_simd: bool = False
    """Relaxed SIMD (implementation-defined results)."""
    exceptions: bool = False
    """Exception handling (tags, ``throw``, ``try_table``)."""
    function_references: bool = False
    """Typed function references (``call_ref``, non-null references)."""
    gc: bool = False
    """Garbage-collected structs and arrays (needs ``function_references``)."""
    wide_arithmetic: bool = False
    """128-bit integer arithmetic (``i64.add128`` ...)."""
    custom_page_sizes: bool = False
    """Memories with a page size other than 64 KiB."""

    def __post_init__(self) -> None:
        for name, needs in REQUIRES.items():
            if getattr(self, name) and not all(getattr(self, n) for n in needs):
                raise ValueError(f"wasm feature {name} needs {', '.join(sorted(needs))} too")

    @classmethod
    def wasm2(cls) -> WasmFeatures:
        """The Wasm 2.0 profile (the default)."""
        return cls()

    @classmethod
    def mvp(cls) -> WasmFeatures:
        """Only :data:`BASELINE`: every switchable feature off."""
        return cls(**{name: False for name in _NAMES})

    @property
    def enabled(self) -> frozenset[str]:
        """The names of the features switched on."""
        return frozenset(name for name in _NAMES if getattr(self, name))

    def with_only(self, names: Iterable[str]) -> WasmFeatures:
        """These features: ``names`` on, every other off."""
        wanted = _check(names)
        return WasmFeatures(**{name: name in wanted for name in _NAMES})

    def __or__(self, names: Iterable[str]) -> WasmFeatures:
        """These features plus ``names`` (a set of field names, or another :class:`WasmFeatures`)."""
        extra = names.enabled if isinstance(names, WasmFeatures) else _check(names)
        return self.with_only(self.enabled | extra)

    def __sub__(self, names: Iterable[str]) -> WasmFeatures:
        """These features less ``names``."""
        less = names.enabled if isinstance(names, WasmFeatures) else _check(names)
        return self.with_only(self.enabled - less)

    def __str__(self) -> str:
        return "+".join(sorted(self.enabled)) or "mvp"


_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(WasmFeatures))

#: Every switchable feature's name.
ALL_FEATURES: frozenset[str] = frozenset(_NAMES)
#: The features of the Wasm 2.0 profile (beyond the baseline).
WASM2_FEATURES: frozenset[str] = WasmFeatures().enabled


def _check(names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        raise TypeError("give a set of feature names, not one string")
    out = frozenset(names)
    unknown = out - ALL_FEATURES
    if unknown:
        raise ValueError(f"unknown wasm feature(s) {', '.join(sorted(unknown))}; known: {', '.join(_NAMES)}")
    return out
