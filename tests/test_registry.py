"""The backend registry and what a missing backend says."""

from __future__ import annotations

import inspect

import pytest

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
