"""The pytest plugin of proxywasm-vm: test your Proxy-Wasm plugin on every runtime.

Installing the package registers it (entry point ``pytest11``, name ``proxywasm_vm``;
``-p no:proxywasm_vm`` turns it off). It adds:

- the fixture ``proxywasm``: a factory ``proxywasm(path, configuration=..., root_id=..., **options)``
  returning a :class:`~proxywasm_vm.testing.PluginHarness` (options: those of the harness,
  except the backend). A test that uses it runs once per selected backend
  (``test_x[wasmtime]``, ``test_x[v8]`` ...); harnesses are closed after the test. A relative
  path is taken from the rootdir (where ``pytest.ini`` / ``pyproject.toml`` is);
- the fixtures ``pwvm_backend`` (the backend id of this run of the test, session-scoped) and
  ``pwvm_engine`` (one :class:`~proxywasm_vm.Engine` per backend for the whole session);
- the option ``--pwvm-backends=wasmtime,v8`` (or the ini setting ``pwvm_backends``): the
  backends to run on, by id (``pwvm backends`` lists them), or ``all`` for every backend id
  including the isolation variants (``wasmtime@process`` ...). Without it: every runtime
  (``wasmtime``, ``v8``, ``wasmer``, ``wasm3``), each in its default isolation, and one that
  cannot run on this machine is skipped with the reason and how to enable it. A backend named
  explicitly must run: if it cannot, its tests fail (never a silent skip). An unknown name is a
  usage error (exit status 4);
- when a test fails, the logs of its plugins appear in the report (a section per plugin).

A test that parametrises ``pwvm_backend`` itself
(``@pytest.mark.parametrize("pwvm_backend", ["v8"], indirect=True)``) runs on those only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .._backend import backend_names, get_backend, parse_backend
from .._engine import Engine
from .._errors import BackendUnavailable
from ._harness import PluginHarness, _is_wat_text

__all__ = ["proxywasm", "pwvm_backend", "pwvm_engine"]

OPTION = "--pwvm-backends"
INI = "pwvm_backends"


@dataclass(frozen=True)
class _Selection:
    names: tuple[str, ...]
    #: the user named these backends: one that cannot run fails its tests instead of skipping
    explicit: bool
    source: str


_SELECTION = pytest.StashKey[_Selection]()
_HARNESSES = pytest.StashKey["list[PluginHarness]"]()
_ENGINES: dict[str, Engine] = {}  # one engine per backend, for the process (pytester runs share it)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("proxywasm", "Proxy-Wasm plugin tests (proxywasm-vm)")
    group.addoption(OPTION, dest="pwvm_backends", metavar="NAMES", default=None,
                    help="comma-separated backend ids the 'proxywasm' fixture runs each test on "
                         "(e.g. wasmtime,v8,wasmtime@process), or 'all'. Default: every runtime "
                         "available here (unavailable ones are skipped with the reason); a backend "
                         "named here must be available, or its tests fail.")
    parser.addini(INI, "default for --pwvm-backends (comma-separated backend ids, or 'all')", default="")


def _parse(value: str, source: str) -> _Selection:
    items = list(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    known = backend_names()
    if not items:
        raise pytest.UsageError(f"{source} is empty: name backends, e.g. wasmtime,v8 (known: {', '.join(known)}), "
                                f"or 'all'")
    if "all" in items:
        if items != ["all"]:
            raise pytest.UsageError(f"{source}: 'all' stands alone (it means every backend: {', '.join(known)})")
        return _Selection(tuple(known), False, source)
    runtimes = {n for n in known if "@" not in n}
    bad = []
    for name in items:
        try:
            base, _ = parse_backend(name)
        except ValueError:
            base = ""
        if base not in runtimes:
            bad.append(name)
    if bad:
        raise pytest.UsageError(f"{source}: unknown backend {', '.join(map(repr, bad))}; "
                                f"known: {', '.join(known)} (or 'all')")
    return _Selection(tuple(items), True, source)


def _selection(config: pytest.Config) -> _Selection:
    opt = config.getoption("pwvm_backends")
    if opt is not None:
        return _parse(opt, OPTION)
    ini = str(config.getini(INI) or "").strip()
    if ini:
        return _parse(ini, f"the ini setting {INI}")
    # the runtimes, each in its default isolation: the isolation variants run the same compiler
    # (for a plugin's behaviour they only multiply the run time); 'all' asks for them too
    return _Selection(tuple(n for n in backend_names() if "@" not in n), False, "default")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SELECTION] = _selection(config)  # an unknown name: a usage error before collection


def pytest_report_header(config: pytest.Config) -> str | None:
    sel = config.stash.get(_SELECTION, None)
    if sel is None or (sel.source == "default" and config.getoption("verbose") <= 0):
        return None
    return f"proxywasm backends: {', '.join(sel.names)} ({sel.source})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pwvm_backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "pwvm_backend" in names:
            return  # the test picked its backends itself
    sel = metafunc.config.stash[_SELECTION]
    metafunc.parametrize("pwvm_backend", sel.names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pwvm_backend(request: pytest.FixtureRequest) -> str:
    """The backend id this run of the test uses (the tests that use it run once per selected backend)."""
    name = getattr(request, "param", None)
    if name is None:
        raise pytest.UsageError("pwvm_backend is parametrised by the proxywasm_vm plugin; is it disabled?")
    sel = request.config.stash[_SELECTION]
    try:
        get_backend(name)
    except BackendUnavailable as e:
        reason = " ".join(str(e).split())
        if sel.explicit:
            pytest.fail(f"{sel.source} asks for {name}, which cannot run here: {reason}", pytrace=False)
        pytest.skip(f"backend {name} is not available here: {reason}")
    return str(name)


@pytest.fixture(scope="session")
def pwvm_engine(pwvm_backend: str) -> Engine:
    """The session's engine for :func:`pwvm_backend` (created on first use)."""
    engine = _ENGINES.get(pwvm_backend)
    if engine is None:
        engine = _ENGINES[pwvm_backend] = Engine(pwvm_backend)
    return engine


@pytest.fixture
def proxywasm(request: pytest.FixtureRequest, pwvm_engine: Engine) -> Iterator[Callable[..., PluginHarness]]:
    """``proxywasm(path, configuration=b"...", root_id="...", **options)``: the plugin loaded on this
    run's backend, in a :class:`~proxywasm_vm.testing.PluginHarness` (fake upstreams, a manual
    clock, ``failure_policy="raise"``; ``options`` are the harness's). Relative paths start at the
    rootdir. Every harness made is closed after the test."""
    root = request.config.rootpath
    made: list[PluginHarness] = []
    request.node.stash[_HARNESSES] = made

    def load(wasm: Any, **options: Any) -> PluginHarness:
        for fixed in ("backend", "engine"):
            if fixed in options:
                raise TypeError(f"proxywasm(..., {fixed}=...): the fixture runs the plugin on each selected backend "
                                f"(--pwvm-backends); for one fixed backend use PluginHarness(path, backend=...)")
        if isinstance(wasm, (str, os.PathLike)) and not _is_wat_text(wasm):
            path = Path(wasm)
            if not path.is_absolute():
                path = root / path
            if not path.is_file():
                rel = "" if Path(wasm).is_absolute() else f" (a relative path starts at the rootdir, {root})"
                pytest.fail(f"proxywasm: no Proxy-Wasm module at {path}{rel}", pytrace=False)
            wasm = path
        harness = PluginHarness(wasm, engine=pwvm_engine, **options)
        made.append(harness)
        return harness

    yield load
    for harness in reversed(made):
        harness.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report shows what its plugins logged."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for harness in item.stash.get(_HARNESSES, []):
            text = harness.logs.text()
            if text:
                report.sections.append((f"proxywasm logs: {harness.name} on {harness.backend}", text))
