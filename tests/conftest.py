"""Backend parametrisation shared by every backend-parametrised suite.

A test that asks for ``backend_name`` (or anything built on it: ``backend``,
``engine``, ``store``, ``make_engine``, ``wat_module``, ``instantiate``,
``require``) runs once per registered backend (``proxywasm_vm.backend_names()``),
or per backend named in ``PWVM_BACKENDS=wasmtime,v8``.

A backend that cannot load here is skipped with a one-line reason saying how
to enable it, except when ``CI=true``: in CI every selected backend is
required and its tests fail instead.

The only other allowed skip of a present backend is a missing capability:
``@pytest.mark.capability("fuel")`` on a test, or ``require("fuel")`` inside
it, skips with ``not applicable: <backend> has no <capability>``.

Engines are created lazily, inside fixtures, never at import or collection
time: pytest enables ``faulthandler`` at start-up, and a runtime's signal
handlers must be installed after it, not before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

import proxywasm_vm as pw
from proxywasm_vm import _settings
from proxywasm_vm._proxywasm import _plugin
from _helpers import load_backend

# Property tests: CI runs a derandomized profile (the same examples every run: a red CI is
# reproducible, and no run depends on luck); locally hypothesis explores as usual.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if _settings.in_ci():
    settings.load_profile("ci")

CAPABILITIES = frozenset(f.name for f in dataclasses.fields(pw.Capabilities))


def _selected_backends() -> list[str]:
    """Backend names only: nothing is loaded here."""
    registered = pw.backend_names()
    return _settings.selected_backends() or registered


BACKENDS = _selected_backends()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "default_limits: the test is about the default plugin limits, so plugins keep the 0.5 s "
        "callback deadline (other tests get 10 s: see _generous_plugin_deadline)",
    )
    config.addinivalue_line(
        "markers",
        "capability(*names): the test is not applicable to backends lacking any of these "
        "Capabilities fields (skipped with 'not applicable: <backend> has no <name>')",
    )
    unknown = [n for n in BACKENDS if n not in pw.backend_names()]
    if unknown:
        raise pytest.UsageError(
            f"PWVM_BACKENDS names unknown backend(s) {', '.join(unknown)}; "
            f"registered: {', '.join(pw.backend_names())}"
        )


# A plugin's default callback deadline (0.5 s) is wall-clock: on a busy CI machine a callback
# that does real work (a gRPC stream under v8@process, with the 2 cores 4x oversubscribed) ran
# past it and the test failed for the machine's load alone. So plugins get 10 s per callback in
# the tests, except those about the default limits (marked ``default_limits``) and those that
# set their own limits. The parent resolves the default and sends it to workers (plugin_limits).
_TEST_PLUGIN_LIMITS = pw.StoreLimits(memory_bytes=_plugin.DEFAULT_PLUGIN_LIMITS.memory_bytes,
                                     deadline=type(_plugin.DEFAULT_PLUGIN_LIMITS.deadline)(10.0))


@pytest.fixture(autouse=True)
def _generous_plugin_deadline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("default_limits") is None:
        monkeypatch.setattr(_plugin, "DEFAULT_PLUGIN_LIMITS", _TEST_PLUGIN_LIMITS)


@pytest.fixture(scope="session")
def require_backend() -> Callable[[str], pw.Backend]:
    """For backend-specific test files: ``require_backend("wasmtime")`` loads it under the same
    rules (skip locally / fail in CI when unavailable; skip when ``PWVM_BACKENDS`` leaves it out)."""

    def load(name: str) -> pw.Backend:
        if name not in BACKENDS:
            pytest.skip(f"backend {name} not selected (PWVM_BACKENDS={','.join(BACKENDS)})")
        return load_backend(name)

    return load


@pytest.fixture(scope="session", params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (one parametrisation per backend)."""
    name: str = request.param
    load_backend(name)
    return name


@pytest.fixture(scope="session")
def backend(backend_name: str) -> pw.Backend:
    return pw.get_backend(backend_name)


@pytest.fixture(scope="session")
def capabilities(backend: pw.Backend) -> pw.Capabilities:
    return backend.capabilities()


def _check_capabilities(backend_name: str, caps: pw.Capabilities, names: tuple[str, ...]) -> None:
    for cap in names:
        if cap not in CAPABILITIES:
            raise ValueError(f"unknown capability {cap!r}; known: {', '.join(sorted(CAPABILITIES))}")
        if not getattr(caps, cap):
            pytest.skip(f"not applicable: {backend_name} has no {cap}")


@pytest.fixture
def require(backend_name: str, capabilities: pw.Capabilities) -> Callable[..., None]:
    """``require("fuel", ...)``: skip as not applicable unless the backend has every capability."""

    def check(*names: str) -> None:
        _check_capabilities(backend_name, capabilities, names)

    return check


@pytest.fixture(autouse=True)
def _capability_marker(request: pytest.FixtureRequest) -> None:
    names: list[str] = []
    for mark in request.node.iter_markers("capability"):
        names.extend(mark.args)
    if not names:
        return
    if "backend_name" not in request.fixturenames:
        raise pytest.UsageError(f"{request.node.nodeid}: @capability needs a backend-parametrised test")
    name = request.getfixturevalue("backend_name")
    _check_capabilities(name, pw.get_backend(name).capabilities(), tuple(names))


_ENGINES: dict[tuple[str, tuple[tuple[str, Any], ...]], pw.Engine] = {}


def _engine_for(backend_name: str, **config: Any) -> pw.Engine:
    key = (backend_name, tuple(sorted(config.items())))
    eng = _ENGINES.get(key)
    if eng is None:
        eng = _ENGINES[key] = pw.Engine(backend_name, pw.EngineConfig(**config))
    return eng


@pytest.fixture(scope="session")
def engine(backend_name: str) -> pw.Engine:
    """The backend's default engine, shared by the session (created on first use)."""
    return _engine_for(backend_name)


@pytest.fixture
def make_engine(backend_name: str) -> Callable[..., pw.Engine]:
    """``make_engine(fuel=True, ...)``: an engine with that ``EngineConfig``.

    Engines without a ``cache_dir`` are shared by the session per configuration;
    with one, a new engine is made each time.
    """

    def make(**config: Any) -> pw.Engine:
        if config.get("cache_dir") is not None:
            return pw.Engine(backend_name, pw.EngineConfig(**config))
        return _engine_for(backend_name, **config)

    return make


@pytest.fixture
def store(engine: pw.Engine) -> Iterator[pw.Store]:
    """A fresh store of the default engine."""
    s = pw.Store(engine)
    yield s
    s.close()


_MODULES: dict[tuple[int, str], pw.Module] = {}


def compile_wat(engine: pw.Engine, source: str) -> pw.Module:
    """``Module(engine, wat2wasm(source))``, compiled once per engine and text."""
    key = (id(engine), source)
    mod = _MODULES.get(key)
    if mod is None or mod.engine is not engine:
        mod = _MODULES[key] = pw.Module(engine, pw.wat2wasm(source))
    return mod


@pytest.fixture
def wat_module(engine: pw.Engine) -> Callable[..., pw.Module]:
    """``wat_module(text, engine=None)``: the compiled module (cached per engine)."""
    default = engine

    def build(source: str, engine: pw.Engine | None = None) -> pw.Module:
        return compile_wat(engine or default, source)

    return build


@pytest.fixture
def instantiate(store: pw.Store) -> Callable[..., pw.Instance]:
    """``instantiate(text, imports=None, store=None)``: an instance, in the test's store by default."""
    default = store

    def make(source: str, imports: Any = None, store: pw.Store | None = None) -> pw.Instance:
        s = store or default
        return pw.Instance(s, compile_wat(s.engine, source), imports)

    return make
