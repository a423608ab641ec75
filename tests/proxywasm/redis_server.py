"""A throwaway ``redis-server`` for the Redis services' tests: its own port and folder, no persistence.

Never the machine's own Redis: each server listens on a free loopback port, keeps nothing on
disk (``--save '' --appendonly no``) and is stopped by whoever started it. Without a
``redis-server`` on PATH the tests skip locally and fail under ``CI=true`` (ci/setup.sh installs
it), as for a missing backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest

from _helpers import HANG_GUARD, in_ci


def redis_server_or_skip() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        reason = "redis-server is not installed (Debian package redis-server; bash ci/setup.sh installs it)"
        if in_ci():
            pytest.fail(f"CI=true requires redis-server: {reason}", pytrace=False)
        pytest.skip(reason)
    return exe


def redis_client_or_skip() -> Any:
    """The redis package (the ``test`` extra has it): skip locally, fail in CI, without it."""
    try:
        import redis
    except ImportError:
        if in_ci():
            pytest.fail("CI=true requires the redis package (pip install -e '.[test]')", pytrace=False)
        pytest.skip("the redis package is not installed (pip install -e '.[test]' or '.[redis]')")
    return redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process: :meth:`start`, :meth:`stop`, :meth:`pause` (SIGSTOP: it stops
    answering but keeps its connections), :meth:`resume`. ``url`` stays the same across restarts."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.dir = tempfile.mkdtemp(prefix="pwvm-redis-")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        for _ in range(3):  # the free port may be taken in between: try another
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.dir, "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + HANG_GUARD
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(16).startswith(b"+PONG"):
                            return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
            self.port = _free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
        raise RuntimeError(f"redis-server did not start (see {self.dir}/redis.log)")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGCONT)  # (a paused server must run to exit)
        p.terminate()
        try:
            p.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
