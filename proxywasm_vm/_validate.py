"""One verdict per module: validation in the core, before any backend sees the bytes.

Every backend gets only modules that the reference validator accepts under the engine's
features (:class:`~proxywasm_vm.WasmFeatures`): wasmtime's validator (wasmparser, the one
wasmtime compiles with), through wasmtime-py's ``Module.validate`` (``wasmtime_module_validate``
of the same ``libwasmtime`` the wasmtime backend loads; the ``wasmtime`` package is a dependency
of the core already). So V8, whose backend rewrites modules before V8 sees them, wasmer and
wasm3, which check less than the spec asks, all reject exactly what the reference rejects, and
a module using a proposal the engine has off is rejected on every backend with the feature's
name, whatever the runtime itself would accept.

The validation engines are made with ``signals_based_traps`` off: they never run code, and so
install no signal handler. ``wasm-tools validate`` is the cross-check in the tests.
"""

from __future__ import annotations

import atexit
import re
import threading
from typing import Any

from ._errors import CompileError
from ._features import ALL_FEATURES, REQUIRES, WasmFeatures
from ._wasmparse import sections

__all__ = ["validate", "validator_for"]

# WasmFeatures field -> wasmtime-py Config property
_SETTERS = {
    "multi_value": "wasm_multi_value", "bulk_memory": "wasm_bulk_memory", "reference_types": "wasm_reference_types",
    "simd": "wasm_simd", "threads": "wasm_threads", "tail_call": "wasm_tail_call", "multi_memory": "wasm_multi_memory",
    "memory64": "wasm_memory64", "relaxed_simd": "wasm_relaxed_simd", "exceptions": "wasm_exceptions",
    "function_references": "wasm_function_references", "gc": "wasm_gc", "wide_arithmetic": "wasm_wide_arithmetic",
    "custom_page_sizes": "wasm_custom_page_sizes",
}
# Other wasmtime proposals with a switch: always off (the interface has no use for them). The
# component-model ones matter: wasmtime aborts the process (a Rust panic in wasm_engine_new) when
# component-model-async is on (its default) and reference types are off.
_ALWAYS_OFF = ("wasmtime_config_wasm_component_model_set", "wasmtime_config_wasm_component_model_async_set",
               "wasmtime_config_wasm_component_model_async_stackful_set",
               "wasmtime_config_wasm_component_model_more_async_builtins_set",
               "wasmtime_config_wasm_stack_switching_set")

_OFFSET = re.compile(r"\s*\(at offset 0x([0-9a-fA-F]+)\)")

_lock = threading.Lock()
_engines: dict[WasmFeatures, Any] = {}


def validator_for(features: WasmFeatures) -> Any:
    """The wasmtime-py engine that validates under ``features`` (made once per feature set).

    Raises ``ValueError`` when wasmtime refuses the combination (``gc`` without
    ``function_references``, say)."""
    eng = _engines.get(features)
    if eng is not None:
        return eng
    import wasmtime

    with _lock:
        eng = _engines.get(features)
        if eng is None:
            cfg = wasmtime.Config()
            cfg.signals_based_traps = False  # never runs code: no signal handler installed for it
            for name, prop in _SETTERS.items():
                setattr(cfg, prop, getattr(features, name))
            from wasmtime import _ffi  # (the setters wasmtime-py has no property for)

            for setter in _ALWAYS_OFF:
                getattr(_ffi.dll, setter)(cfg.ptr(), False)
            try:
                eng = wasmtime.Engine(cfg)
            except wasmtime.WasmtimeError as e:
                raise ValueError(f"invalid wasm feature combination {features}: {e}") from None
            if not _engines:
                atexit.register(_engines.clear)  # before wasmtime-py's module is torn down at exit
            _engines[features] = eng
    return eng


def _check(features: WasmFeatures, wasm: bytes) -> str | None:
    """wasmtime's complaint about ``wasm`` under ``features``, or None if it is valid."""
    import wasmtime

    try:
        wasmtime.Module.validate(validator_for(features), wasm)
    except wasmtime.WasmtimeError as e:
        return str(e)
    if not features.extended_const:
        return _extended_const(wasm)
    return None


def validate(wasm: bytes, features: WasmFeatures, *, backend: str = "", cannot_run: frozenset[str] = frozenset()) -> None:
    """Raise :class:`CompileError` unless ``wasm`` is a valid module under ``features``.

    ``cannot_run`` are features the engine has off because its runtime (``backend``) cannot run
    them: the message then says so. The error's ``offset`` is where the validator stopped, and
    ``feature`` the feature the module needs, when switching one more feature on makes it valid.
    """
    problem = _check(features, wasm)
    if problem is None:
        return
    offset = None
    m = _OFFSET.search(problem)
    if m:
        offset = int(m.group(1), 16)
    reason = _reason(problem)
    needed = _needed_features(features, wasm)
    if not needed:
        where = f" at offset {offset} (0x{offset:x})" if offset is not None else ""
        raise CompileError(f"invalid module{where}: {reason}", offset=offset)
    feature = needed[0]
    names = ", ".join(needed)
    unrunnable = [n for n in needed if n in cannot_run]
    why = (f"the {backend} backend cannot run {', '.join(unrunnable)}" if unrunnable
           else "this engine's EngineConfig.features has it off" if len(needed) == 1
           else "this engine's EngineConfig.features has them off")
    raise CompileError(f"the module uses the wasm feature{'s' if len(needed) > 1 else ''} {names}, and {why} ({reason})",
                       offset=offset, feature=feature)


def _reason(problem: str) -> str:
    """wasmtime's message without its preamble ("failed to parse WebAssembly module ... Caused by")."""
    lines = [ln.strip() for ln in problem.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("failed to parse") or lines[:1] == ["WebAssembly failed to compile"]:
        lines = [ln for ln in lines[1:] if ln != "Caused by:"]
    text = "; ".join(re.sub(r"^\d+:\s*", "", ln) for ln in lines)
    return text or problem


def _needed_features(features: WasmFeatures, wasm: bytes) -> list[str]:
    """The features, off in ``features``, that ``wasm`` needs to be valid ([] when none would do):
    one if one is enough (Wasm 2.0's first), else a minimal set found by dropping features one by
    one from all of them. Runs on the error path only."""
    off = [n for n in _ORDER if n not in features.enabled]

    def valid(extra: set[str]) -> bool:
        try:
            return _check(features | extra, wasm) is None
        except ValueError:  # a combination WasmFeatures or wasmtime refuses
            return False

    for name in off:
        if valid({name} | REQUIRES.get(name, frozenset())):
            return [name]
    needed = set(off)
    if not valid(needed):
        return []
    for name in reversed(off):
        if valid(needed - {name}):
            needed.discard(name)
    return [n for n in off if n in needed]


#: The order in which features are tried: Wasm 2.0's first, then the others.
_ORDER = ("multi_value", "bulk_memory", "reference_types", "simd") + tuple(
    sorted(n for n in ALL_FEATURES if n not in ("multi_value", "bulk_memory", "reference_types", "simd")))


# ---- extended-const: wasmtime always accepts it, so it is checked here -----------------------

_EXTENDED = frozenset((0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E))  # i32/i64 add, sub, mul


def _extended_const(wasm: bytes) -> str | None:
    """A complaint if a constant expression uses extended-const arithmetic.

    ``wasm`` is valid with extended-const on (wasmtime accepted it), so its framing is trusted
    and read without bounds checks. Written for speed (a Go plugin has ~26,000 data segments,
    each with an offset expression): plain loops over the bytes, no reader objects (~30 ms for
    that plugin, against ~190 ms with :class:`~proxywasm_vm._wasmparse.Reader`)."""
    d = wasm
    for sid, _, body, _end in sections(wasm):
        if sid not in (6, 9, 11):
            continue
        count, pos = _leb(d, body)
        for _ in range(count):
            if sid == 6:  # global: value type, mutability, init
                pos = _skip_type(d, pos) + 1
                bad, pos = _expr(d, pos)
            elif sid == 11:  # data: flags 0 (expr), 1 (passive), 2 (memory index, expr); then the bytes
                flags = d[pos]  # (0, 1 or 2: one byte)
                pos += 1
                bad = False
                if flags == 2:
                    _, pos = _leb(d, pos)
                if flags != 1:
                    p = pos + 1
                    if d[pos] == 0x41:  # the usual offset, (i32.const n) end, read inline
                        while d[p] & 0x80:
                            p += 1
                    if d[pos] == 0x41 and d[p + 1] == 0x0B:
                        pos = p + 2
                    else:
                        bad, pos = _expr(d, pos)
                b = d[pos]
                if b < 0x80:
                    pos += 1 + b
                else:
                    size, pos = _leb(d, pos)
                    pos += size
            else:  # element segment, flags 0..7
                flags, pos = _leb(d, pos)
                bad = False
                if flags & 1 == 0:  # active: (table index), offset
                    if flags & 2:
                        _, pos = _leb(d, pos)
                    bad, pos = _expr(d, pos)
                if flags & 3:  # an element kind (byte) or a reference type
                    pos = _skip_type(d, pos) if flags & 4 else pos + 1
                n, pos = _leb(d, pos)
                for _ in range(n):
                    if bad:
                        break
                    if flags & 4:
                        bad, pos = _expr(d, pos)
                    else:
                        _, pos = _leb(d, pos)
            if bad:
                return f"extended constant expressions support is not enabled (at offset 0x{pos:x})"
    return None


def _leb(d: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 at ``pos``: (value, position after it)."""
    b = d[pos]
    if b < 0x80:
        return b, pos + 1
    result = shift = 0
    while True:
        b = d[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _skip_type(d: bytes, pos: int) -> int:
    """Past a value type (``(ref null? heaptype)`` takes a signed LEB128 more)."""
    if d[pos] in (0x63, 0x64):
        pos += 1
        while d[pos] & 0x80:
            pos += 1
    return pos + 1


def _expr(d: bytes, pos: int) -> tuple[bool, int]:
    """Read a constant expression up to its ``end``: (whether it uses extended-const arithmetic,
    position after it)."""
    while True:
        op = d[pos]
        pos += 1
        if op == 0x0B:
            return False, pos
        if op in _EXTENDED:
            return True, pos
        if op in (0x41, 0x42, 0xD0):  # i32/i64.const, ref.null: a signed LEB128
            while d[pos] & 0x80:
                pos += 1
            pos += 1
        elif op == 0x43:
            pos += 4
        elif op == 0x44:
            pos += 8
        elif op in (0x23, 0xD2):  # global.get, ref.func
            _, pos = _leb(d, pos)
        elif op == 0xFD:  # v128.const
            _, pos = _leb(d, pos)
            pos += 16
        else:  # another proposal's constant instruction (gc): wasmtime validated it, stop here
            return False, pos
