"""Fixtures for the ASGI middleware tests: real uvicorn servers on 127.0.0.1 (a free port each,
started in the test and stopped cleanly), hosts and plugins on the backend under test."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import proxywasm_vm as pw

PLUGINS = Path(__file__).resolve().parent.parent / "plugins" / "build"


class Server:
    """A uvicorn server running ``app`` on a thread of its own, on 127.0.0.1 and a free port."""

    def __init__(self, app: Any, lifespan: str = "on") -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        for _ in range(3000):  # (a "did not start" guard of 30 s)
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "uvicorn did not stop"
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(app)``: a running :class:`Server` (stopped at the end of the test)."""
    servers: list[Server] = []

    def start(app: Any, **kw: Any) -> Server:
        s = Server(app, **kw)
        servers.append(s)
        return s

    yield start
    for s in reversed(servers):
        if s.thread.is_alive():
            s.stop()


@pytest.fixture
def make_host(engine: pw.Engine) -> Iterator[Callable[..., pw.ProxyWasmHost]]:
    """``make_host(upstreams={...})``: a host on the backend under test (real clock), with a
    logger that keeps every level."""
    hosts: list[pw.ProxyWasmHost] = []

    def make(**kw: Any) -> pw.ProxyWasmHost:
        kw.setdefault("logger", pw.MemoryLogger(level=pw.LogLevel.TRACE))
        h = pw.ProxyWasmHost(engine=engine, **kw)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


def plugin_file(name: str) -> Path:
    p = PLUGINS / f"{name}.wasm"
    if not p.exists():
        pytest.skip(f"test plugin {p.name} is not built (run ci/build_plugins.sh)")
    return p
