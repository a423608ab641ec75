"""The backend registry and what a missing backend says."""

from __future__ import annotations

import inspect
import sys

import pytest
from _helpers import StubBackend

import proxywasm_vm as pw
from proxywasm_vm import BackendUnavailable, Engine, get_backend, register_backend


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        get_backend("nope")


def test_missing_backend_says_how_to_enable_it():
    register_backend("ghost", "proxywasm_vm_no_such_module", "pip install ghost-runtime")
    try:
        with pytest.raises(BackendUnavailable) as info:
            Engine("ghost")
        assert info.value.backend == "ghost"
        assert "pip install ghost-runtime" in str(info.value)
        row = next(r for r in pw.available_backends() if r.name == "ghost")
        assert not row.available and row.how_to_enable == "pip install ghost-runtime"
    finally:
        from proxywasm_vm import _backend

        _backend._REGISTRY.pop("ghost", None)


def test_public_names_are_exported_and_documented():
    for name in pw.__all__:
        obj = getattr(pw, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_engine_is_the_public_class_and_reports_its_backend():
    e = Engine("wasmtime")
    assert isinstance(e, Engine) and e.name == "wasmtime"
    assert e.capabilities.deadline and e.capabilities.serialize


class _Runtime(StubBackend):
    """A runtime that cannot run in this process, and says so declaratively."""

    name = "pwvm-test-runtime"
    default_isolation = "pwvm-test-mode"
    in_process_reason = "it needs another process (test)"


def test_registry_applies_a_backends_default_isolation_through_the_isolation_table(monkeypatch):
    """The core imports no isolation mode: it finds ``"<runtime>@<mode>"`` in a table of module
    paths, and applies a runtime's declared ``default_isolation`` to its bare name."""
    import types

    from proxywasm_vm import _backend

    made: list[tuple[str, str, str]] = []
    isolated = {}

    def isolate(base: str, *, name: str, in_process_reason: str = "") -> pw.Backend:
        made.append((base, name, in_process_reason))
        b = isolated[name] = _Runtime()
        b.name = name
        return b

    runtime_mod = types.ModuleType("pwvm_test_runtime")
    runtime_mod.BACKEND = _Runtime()  # type: ignore[attr-defined]
    mode_mod = types.ModuleType("pwvm_test_mode")
    mode_mod.isolate = isolate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pwvm_test_runtime", runtime_mod)
    monkeypatch.setitem(sys.modules, "pwvm_test_mode", mode_mod)
    monkeypatch.setitem(_backend._REGISTRY, "pwvm-test-runtime", ("pwvm_test_runtime", "how"))
    monkeypatch.setitem(_backend._ISOLATIONS, "pwvm-test-mode", ("pwvm_test_mode:isolate", ""))
    try:
        assert "pwvm-test-mode" in _backend.isolation_modes()
        b = get_backend("pwvm-test-runtime")
        assert made == [("pwvm-test-runtime", "pwvm-test-runtime", "it needs another process (test)")]
        assert b is isolated["pwvm-test-runtime"] and b is not runtime_mod.BACKEND
        assert get_backend("pwvm-test-runtime@pwvm-test-mode").name == "pwvm-test-runtime@pwvm-test-mode"
        assert len(made) == 2
        with pytest.raises(BackendUnavailable, match="cannot run in this process: it needs another process"):
            get_backend("pwvm-test-runtime@in-process")
        with pytest.raises(BackendUnavailable, match="cannot be loaded into a linker namespace"):
            get_backend("pwvm-test-runtime@namespace")
        assert _backend.load_runtime("pwvm-test-runtime") is runtime_mod.BACKEND
    finally:
        for n in [n for n in _backend._LOADED if n.startswith("pwvm-test-runtime")]:
            del _backend._LOADED[n]
        _backend._RUNTIMES.pop("pwvm-test-runtime", None)
        monkeypatch.undo()  # the mode is no longer registered
    with pytest.raises(ValueError, match="unknown isolation 'pwvm-test-mode'"):
        pw.Engine("wasmtime@pwvm-test-mode")


def test_register_isolation():
    from proxywasm_vm import _backend

    with pytest.raises(ValueError, match="core's own"):
        _backend.register_isolation("namespace", "x:y")
    _backend.register_isolation("pwvm-test-broken", "proxywasm_vm_no_such_module:make", "install it")
    try:
        assert "pwvm-test-broken" in _backend.isolation_modes()
        with pytest.raises(BackendUnavailable) as info:
            get_backend("wasmtime@pwvm-test-broken")
        assert "cannot load isolation 'pwvm-test-broken'" in str(info.value) and "install it" in str(info.value)
    finally:
        _backend._ISOLATIONS.pop("pwvm-test-broken", None)
        _backend._LOADED.pop("wasmtime@pwvm-test-broken", None)


def test_wasmer_declares_where_it_runs():
    """wasmer's module imports no isolation: its backend says where it can run, the registry applies it."""
    from proxywasm_vm import _backend

    runtime = _backend.load_runtime("wasmer")
    if runtime.in_process_reason:  # wasmer-python cannot be imported here (Python >= 3.11)
        assert runtime.default_isolation == "process"
        assert get_backend("wasmer").isolation == "process"
    else:
        assert runtime.default_isolation == "in-process" and get_backend("wasmer") is runtime


def test_layer_contracts_hold():
    """pyproject's import-linter contracts (one-way layers) hold for the package as it is."""
    import shutil
    import subprocess
    from pathlib import Path

    from _helpers import in_ci

    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(lint).exists():
        if in_ci():
            pytest.fail("CI requires import-linter (pip install -e '.[test]')")
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    root = Path(pw.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():
        pytest.skip("not a source checkout")
    out = subprocess.run([lint, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout
