"""Helpers of the ``pwvm serve`` tests: real upstream servers (uvicorn in a thread of the test
process, on 127.0.0.1 with a free port) and ``pwvm serve`` run as a subprocess. (The folder is a
package, as tests/asgi: a conftest.py outside a package would take the module name ``conftest``
that the top-level tests import tests/conftest.py by.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

uvicorn = pytest.importorskip("uvicorn", reason="pwvm serve needs uvicorn: pip install 'proxywasm-vm[serve]'")

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "plugins" / "build"


class Upstream:
    """A small ASGI app on a real socket. Every answer is JSON describing the request it got
    (method, path, query, headers, body) unless the path asks otherwise:

    - ``/callout``: header ``x-pwvm-callout-value: from-callout``, body ``pong`` (a callout target);
    - ``/slow?delay=S``: answers after S seconds;
    - ``/stream``: a chunked body of 5 parts (``part0`` ... ``part4``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.active = 0  # requests being answered now
        self.count = 0
        self.slow_queries: list[str] = []  # the query strings of the /slow requests that reached it
        # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY (else each answer waits for a delayed ACK)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False, interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name=f"upstream-{name}")
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the upstream server did not start"
            time.sleep(0.01)

    async def app(self, scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.count += 1
        self.active += 1
        try:
            body = b""
            while True:
                m = await receive()
                body += m.get("body", b"")
                if not m.get("more_body"):
                    break
            path = scope["path"]
            query = scope["query_string"].decode()
            headers = [(b"content-type", b"application/json")]
            if path == "/callout":
                await _answer(send, 200, [(b"x-pwvm-callout-value", b"from-callout")], b"pong")
                return
            if path == "/slow":
                self.slow_queries.append(query)
                await asyncio.sleep(float(dict(p.split("=") for p in query.split("&"))["delay"]))
            if path == "/stream":
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
                for i in range(5):
                    await send({"type": "http.response.body", "body": f"part{i}".encode(), "more_body": True})
                    await asyncio.sleep(0.01)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            doc = {"upstream": self.name, "method": scope["method"], "path": path, "query": query,
                   "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
                   "body": body.decode("latin-1")}
            await _answer(send, 200, headers + [(b"x-pwvm-drop", b"1")], json.dumps(doc).encode())
        finally:
            self.active -= 1

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def _answer(send: Any, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def header(doc: dict, name: str) -> list[str]:
    """The values of request header ``name`` the upstream saw."""
    return [v for k, v in doc["headers"] if k.lower() == name]


_LISTEN = re.compile(r"listening on (http://\S+?)[;,\s]")
_ADMIN = re.compile(r"admin on (http://\S+?)[;,\s]")


class Serve:
    """A ``pwvm serve`` subprocess; its stdout (the access log) and stderr go to files."""

    def __init__(self, args: list[str], tmp: Path, *, wait: bool = True, timeout: float = 60) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.out_path = tmp / "stdout.txt"
        self.err_path = tmp / "stderr.txt"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "proxywasm_vm", "serve", *args], stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.url = ""
        self.admin = ""
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()
            m = _LISTEN.search(text + " ")
            if m:
                self.url = m.group(1)
                a = _ADMIN.search(text + " ")
                self.admin = a.group(1) if a else ""
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"pwvm serve exited with {self.proc.returncode} before listening:\n{text}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"pwvm serve did not listen within {timeout} s:\n{text}")
            time.sleep(0.05)

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pwvm serve did not stop within {timeout} s after SIGTERM:\n{self.stderr()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Wait until ``text`` appears on stderr."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged:\n{self.stderr()}")
            time.sleep(0.05)


def run_serve(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``pwvm serve`` that is expected to exit by itself (a bad configuration)."""
    return subprocess.run([sys.executable, "-m", "proxywasm_vm", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)
