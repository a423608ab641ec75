"""The one configuration module: each environment setting, read when asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import proxywasm_vm as pw
from proxywasm_vm import _settings


@pytest.fixture(autouse=True)
def monkeypatch(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """These tests change a copy of the environment (a plain dict in place of ``os.environ``),
    never the process's own: setenv/unsetenv may free the environment array a libc copy in
    another linker namespace (``wasmtime@namespace``, ``v8@namespace``) still reads."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    return monkeypatch


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("PWVM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _settings.cache_dir() == tmp_path / "xdg" / "proxywasm-vm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _settings.cache_dir() == Path.home() / ".cache" / "proxywasm-vm"
    monkeypatch.setenv("PWVM_CACHE_DIR", str(tmp_path / "own"))
    assert _settings.cache_dir() == tmp_path / "own"  # as given, nothing appended
    # every reader asks the one function: the engine's default, the native shims
    from proxywasm_vm._native import native_cache_dir

    assert pw.Engine("wasmtime").cache_dir.parent == tmp_path / "own"  # (a folder per runtime version)
    assert native_cache_dir() == tmp_path / "own" / "native"


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("yes", True), ("TRUE", True),
                                                 (" true ", True), ("false", False), ("0", False), ("", False)])
def test_in_ci_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert _settings.in_ci() is expected


def test_in_ci_unset(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert _settings.in_ci() is False


def test_lists_and_flags(monkeypatch):
    monkeypatch.setenv("PWVM_BACKENDS", " wasmtime, v8@process ,,")
    assert _settings.selected_backends() == ["wasmtime", "v8@process"]
    monkeypatch.setenv("PWVM_BACKENDS", " , ")
    assert _settings.selected_backends() is None
    monkeypatch.delenv("PWVM_REMOTE_HOST", raising=False)
    assert _settings.remote_host_enabled()
    monkeypatch.setenv("PWVM_REMOTE_HOST", "0")
    assert not _settings.remote_host_enabled()
    monkeypatch.setenv("PWVM_FUZZ_SCALE", "0")
    assert _settings.fuzz_scale() == 1
    monkeypatch.setenv("PWVM_WORKER_PYTHON", "")
    assert _settings.worker_python() is None


def test_every_setting_is_documented():
    for name in _settings.__all__:
        fn = getattr(_settings, name)
        assert fn.__doc__, name
    doc = _settings.__doc__ or ""
    for var in ("PWVM_CACHE_DIR", "PWVM_WORKER_PYTHON", "PWVM_REMOTE_HOST", "PWVM_CHANNEL_NO_HELPER",
                "PWVM_GUARD_NO_HELPER",
                "PWVM_V8_FLAGS", "PWVM_LIBNODE_PREFIX", "PWVM_WASMTIME_LIBRARY", "PWVM_BACKENDS",
                "PWVM_BENCH_CHECK", "PWVM_TIMINGS_DIR", "PWVM_FUZZ_SCALE", "PWVM_FUZZ_SEED", "``CI``"):
        assert var in doc, var


def test_no_other_module_reads_the_environment():
    """``PWVM_*`` and ``CI`` are read in _settings only (writing an environment for a child is fine)."""
    import re

    root = Path(pw.__file__).resolve().parent
    pattern = re.compile(r"(os\.environ\.get|os\.getenv|environ\[)\(?\s*[\"'](PWVM_|CI[\"'])")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "_settings.py" and pattern.search(p.read_text())]
    assert not offenders
