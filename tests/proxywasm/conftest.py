"""Fixtures for the Proxy-Wasm host tests: plugin paths, a deterministic host, plugin factories.

Every plugin test runs once per backend (through the ``engine`` fixture of
``tests/conftest.py``); hosts use a :class:`ManualClock`, so timers only move
when a test says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

import proxywasm_vm as pw

PLUGINS = Path(__file__).resolve().parent.parent / "plugins" / "build"


def plugin_path(name: str) -> Path:
    """``tests/plugins/build/<name>.wasm`` (skips the test when the module was not built)."""
    p = PLUGINS / f"{name}.wasm"
    if not p.exists():
        pytest.skip(f"test plugin {p.name} is not built (run ci/build_plugins.sh)")
    return p


@pytest.fixture
def host_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the Proxy-Wasm host in this process on worker engines too (every host call then
    crosses): for tests that look inside the host's VMs and contexts, which a host running in
    the worker does not show here."""
    monkeypatch.setenv("PWVM_REMOTE_HOST", "0")


@pytest.fixture
def host(engine: pw.Engine) -> Any:
    """A host on the backend under test, with a manual clock and an in-memory logger at TRACE."""
    h = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(), logger=pw.MemoryLogger(level=pw.LogLevel.TRACE))
    yield h
    h.close()


@pytest.fixture
def make_plugin(host: Any) -> Callable[..., pw.Plugin]:
    """``make_plugin("c_http_all", configuration="test=headers", ...)``: load a built test plugin."""

    def make(module: str, **config: Any) -> pw.Plugin:
        config.setdefault("name", module)
        return pw.Plugin(pw.PluginConfig(**config), plugin_path(module), host=host)

    return make


@pytest.fixture
def http_all(make_plugin: Callable[..., pw.Plugin]) -> Callable[..., pw.Plugin]:
    """``http_all("key=value\\n...")``: the c_http_all plugin with that configuration."""

    def make(configuration: str = "", **config: Any) -> pw.Plugin:
        return make_plugin("c_http_all", configuration=configuration, root_id="pwvm_all", vm_id="vm_all", **config)

    return make


REQUEST = [(":method", "GET"), (":path", "/p?q=1"), (":authority", "example.test"), (":scheme", "http"),
           ("user-agent", "pytest")]


_TRAP_PROBE = """
import proxywasm_vm as pw
e = pw.Engine({name!r})
i = pw.Instance(pw.Store(e), pw.Module(e, '(module (func (export "f") unreachable))'))
try:
    i.exports["f"]()
except pw.Trap:
    print("trap-ok")
"""
_TRAPS: dict[str, str | None] = {}


@pytest.fixture
def traps_survive(backend_name: str) -> None:
    """Skip a test that makes the plugin trap when the backend cannot survive a trap in this
    process (probed once per backend in a subprocess, so a crash cannot take the suite down)."""
    import subprocess
    import sys

    if backend_name not in _TRAPS:
        try:
            r = subprocess.run([sys.executable, "-c", _TRAP_PROBE.format(name=backend_name)], capture_output=True,
                               text=True, timeout=120)
            ok = "trap-ok" in r.stdout
            why = f"exit status {r.returncode}"
        except subprocess.TimeoutExpired:
            ok, why = False, "timeout"
        _TRAPS[backend_name] = None if ok else why
    if _TRAPS[backend_name] is not None:
        pytest.skip(f"the {backend_name} backend does not survive a wasm trap in a call yet "
                    f"(probe: {_TRAPS[backend_name]}); backend bug, reported")


# -- Redis (the Redis services' tests: tests/proxywasm/test_redis*.py) ---------------------------


@pytest.fixture(scope="session")
def redis_server() -> Any:
    """A ``redis-server`` of the session on a free loopback port (see ``redis_server.py``)."""
    from .redis_server import RedisServer, redis_client_or_skip, redis_server_or_skip

    redis_client_or_skip()
    srv = RedisServer(redis_server_or_skip()).start()
    yield srv
    srv.close()


@pytest.fixture
def redis_server_own() -> Any:
    """A ``redis-server`` of this test alone, for tests that stop or pause it."""
    from .redis_server import RedisServer, redis_client_or_skip, redis_server_or_skip

    redis_client_or_skip()
    srv = RedisServer(redis_server_or_skip()).start()
    yield srv
    srv.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test alone, so that tests sharing the session's Redis never meet."""
    import uuid

    return f"pwvm-test-{uuid.uuid4().hex[:12]}:"
