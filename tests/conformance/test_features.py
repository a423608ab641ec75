"""Wasm features: the Wasm 2.0 profile, feature switches, and what each runtime can run.

On every backend: each feature it declares (``Capabilities.features``) compiles and runs a module
using it, with wasmtime's result; each feature it does not declare is refused at ``Engine()``
when asked for (``FeatureUnsupported``) and at compile otherwise (``CompileError`` naming it);
every feature can be switched off. Every SIMD instruction runs with wasmtime's result, or is
refused at compile naming the instruction where the backend declares it cannot run it.
"""

from __future__ import annotations

import math
import struct

import pytest

import proxywasm_vm as pw
from proxywasm_vm._features import ALL_FEATURES, WASM2_FEATURES

from . import _simd_ops

#: feature -> (WAT of a module using it, the result of its export "f")
PROBES: dict[str, tuple[str, object]] = {
    "multi_value": ('(module (func (export "f") (result i32 i32) i32.const 1 i32.const 2))', (1, 2)),
    "bulk_memory": ('(module (memory 1) (data $d "abc") (func (export "f") (result i32) i32.const 0 i32.const 0 '
                    'i32.const 3 memory.init $d data.drop $d i32.const 8 i32.const 0 i32.const 3 memory.copy '
                    'i32.const 4 i32.const 7 i32.const 2 memory.fill i32.const 8 i32.load))', 0x636261),
    "reference_types": ('(module (table $t 2 funcref) (func $g (result i32) i32.const 7) (elem declare func $g) '
                        '(func (export "f") (result i32) (table.set $t (i32.const 1) (ref.func $g)) (table.size $t) '
                        '(ref.is_null (table.get $t (i32.const 0))) i32.add))', 3),
    "simd": ('(module (func (export "f") (result i32) (i32x4.extract_lane 2 (i32x4.add (v128.const i32x4 1 2 3 4) '
             '(v128.const i32x4 10 20 30 40)))))', 33),
    "threads": ('(module (memory 1 1 shared) (func (export "f") (result i32) (i32.atomic.rmw.add (i32.const 0) '
                '(i32.const 5)) drop (i32.atomic.load (i32.const 0))))', 5),
    "tail_call": ('(module (func $g (param i32) (result i32) local.get 0) (func (export "f") (result i32) '
                  '(return_call $g (i32.const 9))))', 9),
    "extended_const": ('(module (global $g i32 (i32.add (i32.const 40) (i32.const 2))) (func (export "f") '
                       '(result i32) global.get $g))', 42),
    "multi_memory": ('(module (memory 1) (memory $m2 1) (func (export "f") (result i32) (i32.store $m2 (i32.const 0) '
                     '(i32.const 3)) (i32.load $m2 (i32.const 0))))', 3),
    "memory64": ('(module (memory i64 1) (func (export "f") (result i32) (i32.store (i64.const 0) (i32.const 3)) '
                 '(i32.load (i64.const 0))))', 3),
    "relaxed_simd": ('(module (func (export "f") (result i32) (i32x4.extract_lane 0 (i32x4.relaxed_trunc_f32x4_s '
                     '(v128.const f32x4 1 2 3 4)))))', 1),
    "function_references": ('(module (type $t (func (result i32))) (func $g (type $t) i32.const 3) (elem declare func '
                            '$g) (func (export "f") (result i32) (call_ref $t (ref.func $g))))', 3),
    "exceptions": ('(module (tag $e (param i32)) (func (export "f") (result i32) (block $h (result i32) (try_table '
                   '(catch $e $h) (throw $e (i32.const 4))) i32.const 0)))', 4),
    "wide_arithmetic": ('(module (func (export "f") (result i64) (i64.add128 (i64.const 1) (i64.const 0) (i64.const 2) '
                        '(i64.const 0)) drop))', 3),
    "custom_page_sizes": ('(module (memory 1 (pagesize 1)) (func (export "f") (result i32) memory.size))', 1),
}
#: the feature each probe needs besides its own, and the baseline (always on)
NEEDS = {"function_references": {"reference_types", "bulk_memory"}, "relaxed_simd": {"simd"},
         "reference_types": {"bulk_memory"}}
BASELINE = {
    "sign_extension": ('(module (func (export "f") (result i32) (i32.extend8_s (i32.const 255))))', -1),
    "saturating_float_to_int": ('(module (func (export "f") (result i32) (i32.trunc_sat_f32_s (f32.const 1e30))))',
                                2147483647),
    "mutable_globals": ('(module (global (export "g") (mut i32) (i32.const 1)) (func (export "f") (result i32) '
                        'i32.const 1))', 1),
}


def _run(engine: pw.Engine, wat: str) -> object:
    inst = pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm(wat)), [])
    return inst.exports["f"]()


def _run_or_declared(engine: pw.Engine, caps: pw.Capabilities, feature: str, wat: str, want: object) -> None:
    """The probe's result, or (on a backend declaring instructions of the feature it cannot run:
    wasm3's bulk memory) a CompileError saying so."""
    try:
        got = _run(engine, wat)
    except pw.CompileError as e:
        assert caps.unsupported_instructions and e.feature == feature, str(e)
        assert "unsupported_instructions" in str(e)
        return
    assert got == want


def test_probes_cover_every_feature() -> None:
    assert set(PROBES) == ALL_FEATURES - {"gc"}


def test_profile_and_switches() -> None:
    assert pw.WasmFeatures() == pw.WasmFeatures.wasm2()
    assert pw.WasmFeatures.wasm2().enabled == WASM2_FEATURES == {"multi_value", "bulk_memory", "reference_types", "simd"}
    assert pw.WasmFeatures.mvp().enabled == frozenset()
    assert (pw.WasmFeatures() | {"tail_call"}).enabled == WASM2_FEATURES | {"tail_call"}
    assert (pw.WasmFeatures() - {"simd"}) == pw.WasmFeatures(simd=False)
    with pytest.raises(ValueError, match="unknown wasm feature"):
        pw.WasmFeatures() | {"simd128"}
    with pytest.raises(ValueError, match="needs simd"):
        pw.WasmFeatures(simd=False, relaxed_simd=True)
    with pytest.raises(TypeError):
        pw.WasmFeatures() | "simd"  # type: ignore[operator]


@pytest.mark.parametrize("feature", sorted(BASELINE))
def test_baseline_runs_everywhere(engine: pw.Engine, feature: str) -> None:
    wat, want = BASELINE[feature]
    assert _run(engine, wat) == want
    assert _run(pw.Engine(engine.name, pw.EngineConfig(features=pw.WasmFeatures.mvp())), wat) == want


@pytest.mark.parametrize("feature", sorted(PROBES))
def test_default_profile(engine: pw.Engine, capabilities: pw.Capabilities, feature: str) -> None:
    """Under the default features a Wasm 2.0 feature runs where the backend can run it, and every
    other is refused at compile with its name."""
    wat, want = PROBES[feature]
    assert engine.features.enabled == WASM2_FEATURES & capabilities.features
    if feature in engine.features.enabled and NEEDS.get(feature, set()) <= engine.features.enabled:
        _run_or_declared(engine, capabilities, feature, wat, want)
    else:
        with pytest.raises(pw.CompileError) as e:
            pw.Module(engine, pw.wat2wasm(wat))
        assert e.value.feature is not None and e.value.feature in str(e.value)
        assert e.value.feature not in engine.features.enabled
        if not NEEDS.get(feature, set()) - engine.features.enabled:
            assert e.value.feature == feature, str(e.value)
        if feature in WASM2_FEATURES:  # (only wasm3 lacks some): the message says the runtime cannot
            assert "cannot run" in str(e.value)


@pytest.mark.parametrize("feature", sorted(PROBES))
def test_feature_enabled(backend_name: str, capabilities: pw.Capabilities, feature: str) -> None:
    """Asking for a feature: it runs, or Engine() says the runtime cannot run it."""
    wanted = pw.WasmFeatures.mvp() | ({feature} | NEEDS.get(feature, set()))
    if not wanted.enabled <= capabilities.features:
        with pytest.raises(pw.FeatureUnsupported) as e:
            pw.Engine(backend_name, pw.EngineConfig(features=wanted))
        assert e.value.features == wanted.enabled - capabilities.features
        assert backend_name in str(e.value)
        return
    engine = pw.Engine(backend_name, pw.EngineConfig(features=wanted))
    wat, want = PROBES[feature]
    if feature == "threads" and not capabilities.wasm_threads:
        pytest.fail("threads declared in features without wasm_threads")
    _run_or_declared(engine, capabilities, feature, wat, want)


@pytest.mark.parametrize("feature", sorted(WASM2_FEATURES))
def test_feature_switched_off(backend_name: str, capabilities: pw.Capabilities, feature: str) -> None:
    """Switching a feature off works on every backend: the module using it is refused, named."""
    engine = pw.Engine(backend_name, pw.EngineConfig(features=pw.WasmFeatures().with_only(
        (WASM2_FEATURES & capabilities.features) - {feature, "relaxed_simd"})))
    wat, _ = PROBES[feature]
    with pytest.raises(pw.CompileError) as e:
        pw.Module(engine, pw.wat2wasm(wat))
    assert e.value.feature is not None and feature in str(e.value), str(e.value)
    if feature in capabilities.features and not NEEDS.get(feature, set()) - engine.features.enabled:
        assert e.value.feature == feature and "EngineConfig.features" in str(e.value), str(e.value)


# ---- every SIMD instruction ----------------------------------------------------------------

_REFERENCE: dict[str, bytes] = {}


def _simd_result(engine: pw.Engine, wat: str) -> bytes:
    inst = pw.Instance(pw.Store(engine), pw.Module(engine, pw.wat2wasm(wat)), [])
    inst.exports["run"]()
    return inst.exports["memory"].read(0, 16)


def _same(a: bytes, b: bytes, floats: bool) -> bool:
    """Equal, where any NaN lane equals any NaN lane when the result has float lanes (spec: an
    arithmetic NaN's payload is the implementation's)."""
    if a == b or not floats:
        return a == b
    for fmt, size in (("<4f", 16), ("<2d", 16)):
        x, y = struct.unpack(fmt, a[:size]), struct.unpack(fmt, b[:size])
        if all(p == q or (math.isnan(p) and math.isnan(q)) for p, q in zip(x, y)):
            return True
    return False


@pytest.mark.parametrize("op", sorted(_simd_ops.MODULES))
def test_simd_instruction(engine: pw.Engine, capabilities: pw.Capabilities, op: str) -> None:
    wat, floats = _simd_ops.MODULES[op]
    if "simd" not in engine.features.enabled:
        with pytest.raises(pw.CompileError) as e:
            pw.Module(engine, pw.wat2wasm(wat))
        assert e.value.feature == "simd"
        return
    if op in capabilities.unsupported_instructions:
        with pytest.raises(pw.CompileError) as e:
            pw.Module(engine, pw.wat2wasm(wat))
        assert e.value.feature == "simd" and op in str(e.value), str(e.value)
        return
    if op not in _REFERENCE:
        _REFERENCE[op] = _simd_result(pw.Engine("wasmtime"), wat)
    got = _simd_result(engine, wat)
    assert _same(got, _REFERENCE[op], floats), f"{op}: {got.hex()} != wasmtime's {_REFERENCE[op].hex()}"


def test_simd_table_is_complete() -> None:
    """Every SIMD instruction of Wasm 2.0 is in the table (the spec lists 236 beyond v128.const)."""
    assert len(_simd_ops.MODULES) >= 236
    assert set().union(*(pw.get_backend(n).capabilities().unsupported_instructions
                         for n in ("wasmtime", "v8"))) == set()


@pytest.mark.parametrize("compiler", ["singlepass", "llvm"])
def test_wasmer_compilers_without_good_simd_refuse_it(require_backend, compiler: str) -> None:
    """wasmer's singlepass compiler has no SIMD, and its llvm one runs the extmul instructions
    wrongly (it compiles them): both refuse SIMD modules at compile, and run the rest."""
    require_backend("wasmer")
    engine = pw.Engine("wasmer", pw.EngineConfig(options=(("compiler", compiler),)))
    wat, _ = _simd_ops.MODULES["i16x8.extmul_low_i8x16_s"]
    with pytest.raises(pw.CompileError) as e:
        pw.Module(engine, pw.wat2wasm(wat))
    assert e.value.feature == "simd" and compiler in str(e.value)
    for feature in ("bulk_memory", "reference_types"):
        assert _run(engine, PROBES[feature][0]) == PROBES[feature][1]
    if compiler == "singlepass":  # which has no multi-value either
        with pytest.raises(pw.CompileError) as e:
            pw.Module(engine, pw.wat2wasm(PROBES["multi_value"][0]))
        assert e.value.feature == "multi_value"
    else:
        assert _run(engine, PROBES["multi_value"][0]) == (1, 2)


@pytest.mark.capability("serialize")
def test_cache_hit_skips_validation_and_is_keyed_by_features(backend_name: str, tmp_path, monkeypatch) -> None:
    from proxywasm_vm import _validate

    wat, want = PROBES["simd"]
    data = pw.wat2wasm(wat)
    engine = pw.Engine(backend_name, pw.EngineConfig(cache_dir=tmp_path))
    pw.Module.cached(engine, data)  # compiled (and validated), then written to the cache
    calls: list[bytes] = []
    real = _validate.validate

    def counting(wasm: bytes, *args: object, **kw: object) -> None:
        calls.append(wasm)
        real(wasm, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_validate, "validate", counting)
    again = pw.Module.cached(engine, data)  # a hit: loaded, not validated again
    assert calls == []
    assert pw.Instance(pw.Store(engine), again, []).exports["f"]() == want
    # the same bytes under other features are another key: validated, and refused here
    off = pw.Engine(backend_name, pw.EngineConfig(cache_dir=tmp_path, features=pw.WasmFeatures(simd=False)))
    with pytest.raises(pw.CompileError) as e:
        pw.Module.cached(off, data)
    assert e.value.feature == "simd" and calls == [data]
