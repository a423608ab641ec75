"""Every registered backend implements the backend contract (``proxywasm_vm._contract``) fully.

Objects are made through the public API, as a user makes them, and their classes are
checked against the contract class of their role: no required method left to the
contract, no class left abstract, and every method the contract declares (required or
hook) overridden with the contract's parameters.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

import pytest
from _helpers import StubBackend

import proxywasm_vm as pw
from proxywasm_vm import _backend, _contract
from proxywasm_vm._contract import ROLES

WAT = """
(module
  (import "env" "probe" (func $probe (param i32) (result i32)))
  (memory (export "memory") 1)
  (global (export "g") (mut i32) (i32.const 7))
  (table (export "t") 2 funcref)
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "call_probe") (param i32) (result i32) local.get 0 call $probe))
"""


def _required(role: type) -> set[str]:
    """The names the contract class of a role marks as required."""
    return {name for name, value in vars(role).items() if getattr(value, "__isabstractmethod__", False)}


def _declared(role: type) -> dict[str, Any]:
    """Every method and property the contract class of a role declares (required or hook)."""
    return {name: value for name, value in vars(role).items()
            if inspect.isfunction(value) or isinstance(value, property)}


def _params(fn: Any) -> list[tuple[str, Any, bool]]:
    return [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in inspect.signature(fn).parameters.values()]


def contract_problems(obj: object, role_name: str) -> list[str]:
    """What ``obj``'s class lacks of the contract of ``role_name`` (empty: it implements it)."""
    role = ROLES[role_name]
    cls = type(obj)
    problems = []
    if not isinstance(obj, role):
        return [f"{cls.__name__} is not a {role.__name__}"]
    if inspect.isabstract(cls):
        problems.append(f"{cls.__name__} is abstract: {sorted(cls.__abstractmethods__)}")
    for name in sorted(_required(role)):
        impl = inspect.getattr_static(cls, name)
        fn = impl.fget if isinstance(impl, property) else impl
        if getattr(fn, "__isabstractmethod__", False):
            problems.append(f"{cls.__name__}.{name} is not implemented")
    for name, decl in sorted(_declared(role).items()):
        impl = inspect.getattr_static(cls, name)
        if isinstance(decl, property):
            if not isinstance(impl, property):
                problems.append(f"{cls.__name__}.{name} must be a property, is {type(impl).__name__}")
            continue
        if isinstance(impl, (classmethod, staticmethod)) or not callable(impl):
            problems.append(f"{cls.__name__}.{name} must be a plain method, is {type(impl).__name__}")
            continue
        if name == "__call__":
            continue  # checked against the function's own arity by the caller: see _check_call
        if _params(impl) != _params(decl):
            problems.append(f"{cls.__name__}.{name}{inspect.signature(impl)} does not match the contract's "
                            f"{name}{inspect.signature(decl)}")
    return problems


def _check_call(func: pw.Func) -> None:
    """A function's ``__call__`` takes exactly its wasm parameters (generated ones name them)."""
    call = type(func).__call__
    n = len(func.type.params)
    inspect.signature(call).bind(func, *range(n))
    sig = inspect.signature(call)
    takes_any = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
    assert takes_any or len(sig.parameters) == n + 1, f"{type(func).__name__}.__call__{sig}"


def _objects(engine: pw.Engine) -> tuple[dict[str, list[object]], list[pw.Linker]]:
    """One object of each role (several where a backend has several classes), made as a user
    makes them, and the engine's linker."""
    made: dict[str, list[object]] = {"backend": [engine.backend], "engine": [engine], "caller": []}

    def probe(caller: pw.Caller, x: int) -> int:
        made["caller"].append(caller)
        for role, obj in (("memory", caller.memory), ("func", caller.get_export("add"))):
            if obj is not None:
                made[role].append(obj)
        return x + 1

    store = pw.Store(engine)
    module = pw.Module(engine, WAT)
    host = pw.Func(store, pw.FuncType([pw.ValType.I32], [pw.ValType.I32]), probe, access_caller=True)
    plain = pw.Func(store, pw.FuncType([pw.ValType.F64], []), lambda x: None)
    instance = pw.Instance(store, module, [host])
    made.update(store=[store], module=[module], instance=[instance], func=[host, plain],
                memory=[pw.Memory(store, pw.MemoryType(pw.Limits(1)))],
                **{"global": [pw.Global(store, pw.GlobalType(pw.ValType.I64, True), 1)]}, table=[])
    ex = instance.exports
    made["func"] += [ex.func("add"), ex.func("call_probe")]
    made["memory"].append(ex.memory())
    made["global"].append(ex.global_("g"))
    made["table"].append(ex.table("t"))
    if engine.capabilities.table_access:
        made["table"].append(pw.Table(store, pw.TableType(pw.ValType.FUNCREF, pw.Limits(1)), None))
    assert ex.func("call_probe")(41) == 42 and made["caller"], "the host function was not called"
    linker = pw.Linker(engine)
    linker.define_func("env", "probe", host.type, probe, access_caller=True)
    linked = linker.instantiate(pw.Store(engine), module)
    assert linked.exports.func("call_probe")(1) == 2
    made["instance"].append(linked)
    return made, [linker]


def test_every_backend_implements_the_contract(engine: pw.Engine) -> None:
    made, linkers = _objects(engine)
    problems = []
    for role in ROLES:
        assert made.get(role), f"no {role} object was made on {engine.name}"
        for obj in made[role]:
            problems += contract_problems(obj, role)
    assert not problems, f"{engine.name} does not implement the contract:\n" + "\n".join(problems)
    for f in made["func"]:
        assert isinstance(f, pw.Func)
        _check_call(f)
    for linker in linkers:
        assert not inspect.isabstract(type(linker))
    assert engine.worker_pid is None or engine.backend.isolation == "process"


def test_a_missing_method_is_reported_and_the_class_cannot_be_made(engine: pw.Engine) -> None:
    memory = pw.Memory(pw.Store(engine), pw.MemoryType(pw.Limits(1)))

    class Forgetful(type(memory)):  # type: ignore[misc]
        read = _contract.AbstractMemory.read  # back to the contract's: not implemented

    assert inspect.isabstract(Forgetful) and Forgetful.__abstractmethods__ == {"read"}
    with pytest.raises(TypeError, match="abstract"):
        object.__new__(Forgetful)
    fake = object.__new__(type(memory))
    assert contract_problems(fake, "memory") == []
    Forgetful.__abstractmethods__ = frozenset()  # made anyway: the check still names the gap
    assert contract_problems(object.__new__(Forgetful), "memory") == ["Forgetful.read is not implemented"]


def test_a_changed_signature_is_reported(engine: pw.Engine) -> None:
    memory = pw.Memory(pw.Store(engine), pw.MemoryType(pw.Limits(1)))

    class Renamed(type(memory)):  # type: ignore[misc]
        def grow(self, pages: int) -> int:  # the contract's parameter is "delta"
            return 0

    [problem] = contract_problems(object.__new__(Renamed), "memory")
    assert problem.startswith("Renamed.grow(self, pages") and "the contract's grow(self, delta" in problem


def test_the_public_classes_are_constructible_and_concrete_to_users() -> None:
    engine = pw.Engine()
    store = pw.Store(engine)  # the public class dispatches to the backend's subclass
    assert type(store) is not pw.Store and isinstance(store, pw.Store)
    assert not inspect.isabstract(type(store))
    assert engine.worker_pid is None


class _FakeBackend(StubBackend):
    """A backend declaring only what the contract requires (no namespace variant)."""

    name = "fake"
    isolation = "process"
    in_process_reason = "it is made up"


def test_backend_hooks_have_defaults_and_are_used() -> None:
    mod = types.ModuleType("_pwvm_fake_backend")
    mod.BACKEND = _FakeBackend()  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    pw.register_backend("fake", mod.__name__)
    try:
        assert _FakeBackend().namespace_variant() is None
        with pytest.raises(pw.BackendUnavailable, match="cannot be loaded into a linker namespace"):
            pw.get_backend("fake@namespace")
        with pytest.raises(pw.BackendUnavailable, match="cannot run in this process: it is made up"):
            pw.get_backend("fake@in-process")
    finally:
        _backend._REGISTRY.pop("fake", None)
        for key in ("fake", "fake@namespace", "fake@in-process"):
            _backend._LOADED.pop(key, None)
        del sys.modules[mod.__name__]
