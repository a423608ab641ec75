"""A real plugin (tests/plugins/c/c_shared.c) on shared data and queues kept in Redis, on every
backend: in one host, across separate processes, and with Redis stopped mid-way.

Hosts whose plugins run in a worker process (``@process``, wasmer, wasm3) give the worker its own
Redis client: it shows in ``CLIENT LIST`` under the worker's pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Status
from proxywasm_vm._isolation import ProcessEngine

from _helpers import HANG_GUARD, report_time

from .conftest import plugin_path

REQUEST = [(":method", "GET"), (":path", "/"), (":authority", "example.test"), (":scheme", "http")]
VM_ID = "shared"
COUNTER = b"pwvm.counter"


def op(plugin: pw.Plugin, name: str, *extra: tuple[str, str]) -> Any:
    """One request through the plugin doing ``x-pwvm-op: name``: the response headers it left."""
    with plugin.http_stream() as s:
        s.request_headers(REQUEST + [("x-pwvm-op", name), *extra], end_of_stream=True)
        s.response_headers({":status": "200"}, end_of_stream=True)
        return s.response.headers


def redis_host(engine: pw.Engine, url: str, prefix: str, **kw: Any) -> pw.ProxyWasmHost:
    return pw.ProxyWasmHost(engine=engine, logger=pw.MemoryLogger(level=pw.LogLevel.TRACE),
                            **pw.redis_shared(url, prefix=prefix, **kw))


def close_host(host: pw.ProxyWasmHost) -> None:
    host.close()
    host.shared_data.close()
    host.queues.close()


def test_plugin_counter_and_queue_on_redis(engine: pw.Engine, redis_server: Any, redis_prefix: str) -> None:
    host = redis_host(engine, redis_server.url, redis_prefix, timeout=5.0)
    try:
        p = pw.Plugin(pw.PluginConfig(name="c_shared", vm_id=VM_ID, configuration="consume=1"),
                      plugin_path("c_shared"), host=host)
        assert host.shared_data.set(VM_ID, COUNTER, b"0") == Status.OK
        seen = [op(p, "incr") for _ in range(10)]
        assert [h["x-pwvm-counter"] for h in seen] == [str(i) for i in range(1, 11)]
        assert all(h["x-pwvm-status"] == "0" and h["x-pwvm-tries"] == "1" for h in seen)
        got = op(p, "get")
        assert got["x-pwvm-counter"] == "10" and int(got["x-pwvm-cas"]) == host.shared_data.get(VM_ID, COUNTER)[1]
        assert host.shared_data.get(VM_ID, COUNTER)[0] == b"10"
        # the queue the plugin registered at configure: an enqueue notifies it, it drains the queue
        assert any(m.startswith("c_shared: registered queue pwvm.jobs") and m.endswith("status=0") for m in p.logs)
        for item in ("one", "two"):
            assert op(p, "enqueue", ("x-pwvm-item", item))["x-pwvm-status"] == "0"
        deadline = time.monotonic() + HANG_GUARD
        while "c_shared: consumed two" not in p.logs and time.monotonic() < deadline:
            host.poll(timeout=0.05)
        assert [m for m in p.logs if m.startswith("c_shared: consumed")] == ["c_shared: consumed one",
                                                                             "c_shared: consumed two"]
        assert host.queues.size(VM_ID, "pwvm.jobs") == 0
        assert op(p, "dequeue")["x-pwvm-status"] == "7"  # EMPTY
        assert op(p, "enqueue", ("x-pwvm-item", "three"))["x-pwvm-status"] == "0"
        if isinstance(engine, ProcessEngine):  # the plugin's host lives in the worker: so does its client
            import redis

            names = {c["name"] for c in redis.Redis.from_url(redis_server.url).client_list()}
            assert f"pwvm:{engine._conn_now().pid}" in names, names
    finally:
        close_host(host)


_CHILD = r"""
import json, sys, threading, time
import proxywasm_vm as pw

backend, url, prefix, wasm, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
host = pw.ProxyWasmHost(engine=pw.Engine(backend), **pw.redis_shared(url, prefix=prefix, timeout=5.0))
p = pw.Plugin(pw.PluginConfig(name="c_shared", vm_id="shared", configuration="consume=1"), wasm, host=host)
req = [(":method", "GET"), (":path", "/"), (":authority", "x"), (":scheme", "http"), ("x-pwvm-op", "incr")]
print("ready", flush=True)
sys.stdin.readline()  # go
results = []
for _ in range(n):
    with p.http_stream() as s:
        s.request_headers(req, end_of_stream=True)
        results.append((s.request.headers["x-pwvm-status"], int(s.request.headers["x-pwvm-tries"])))
    host.poll()
print(json.dumps({"incr": results}), flush=True)
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
while not done.is_set():  # consume what the queue notifications bring, until told to stop
    host.poll(timeout=0.05)
host.poll()
consumed = [m[len("c_shared: consumed "):] for m in p.logs if m.startswith("c_shared: consumed ")]
print(json.dumps({"consumed": consumed}), flush=True)
host.close()
"""


def _read_line(proc: subprocess.Popen, what: str) -> str:
    """One line of a child's output, or fail (never hang) when it does not come."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(HANG_GUARD * 4)
    if not box or not box[0]:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
        pytest.fail(f"child {proc.pid} gave no {what} line: {err[-3000:]}")
    return box[0]


def test_two_processes_share_one_counter_and_one_queue(backend_name: str, engine: pw.Engine, redis_server: Any,
                                                       redis_prefix: str) -> None:
    """Two processes, each with its own host on the same Redis, each drive N increments: the
    counter ends at exactly 2N. Items enqueued by this process (a third host) reach the plugins
    of the two others, which registered the queue: each item is consumed exactly once."""
    n, m = 40, 30
    url = redis_server.url
    host = redis_host(engine, url, redis_prefix, timeout=5.0)
    children: list[subprocess.Popen] = []
    try:
        assert host.shared_data.set(VM_ID, COUNTER, b"0") == Status.OK  # seeded (see c_shared.c)
        producer = pw.Plugin(pw.PluginConfig(name="producer", vm_id=VM_ID), plugin_path("c_shared"), host=host)
        for _ in range(2):
            children.append(subprocess.Popen(
                [sys.executable, "-c", _CHILD, backend_name, url, redis_prefix, str(plugin_path("c_shared")), str(n)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for c in children:
            assert _read_line(c, "ready").strip() == "ready"
        for c in children:  # both consumers registered the queue: go
            c.stdin.write("go\n")  # type: ignore[union-attr]
            c.stdin.flush()  # type: ignore[union-attr]
        items = [f"item-{i}" for i in range(m)]
        for item in items:
            assert op(producer, "enqueue", ("x-pwvm-item", item))["x-pwvm-status"] == "0"
        incr = [json.loads(_read_line(c, "increments"))["incr"] for c in children]
        deadline = time.monotonic() + HANG_GUARD * 2
        while host.queues.size(VM_ID, "pwvm.jobs") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert host.queues.size(VM_ID, "pwvm.jobs") == 0
        consumed = []
        for c in children:
            c.stdin.write("done\n")  # type: ignore[union-attr]
            c.stdin.flush()  # type: ignore[union-attr]
            consumed.append(json.loads(_read_line(c, "consumed"))["consumed"])
        for c in children:
            assert c.wait(HANG_GUARD) == 0
        assert all(st == "0" for r in incr for st, _ in r)
        assert host.shared_data.get(VM_ID, COUNTER)[0] == str(2 * n).encode()
        assert sorted(consumed[0] + consumed[1]) == sorted(items)  # each item once, none lost
        retries = sum(tries - 1 for r in incr for _, tries in r)
        print(f"{backend_name}: CAS retries {retries}; items consumed {len(consumed[0])} / {len(consumed[1])}")
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
        close_host(host)


def test_redis_stopped_midway_gives_status_codes(engine: pw.Engine, redis_server_own: Any,
                                                 redis_prefix: str) -> None:
    """Redis goes away while the plugin runs: its host calls answer INTERNAL_FAILURE (one error
    log record each), never hang, and the host goes on; once Redis is back, so is the plugin."""
    srv = redis_server_own
    host = redis_host(engine, srv.url, redis_prefix, timeout=1.0, retry_after=0.1)
    try:
        p = pw.Plugin(pw.PluginConfig(name="c_shared", vm_id=VM_ID, configuration="consume=1"),
                      plugin_path("c_shared"), host=host)
        assert [op(p, "incr")["x-pwvm-counter"] for _ in range(3)] == ["1", "2", "3"]
        srv.stop()
        t0 = time.monotonic()
        down = [op(p, "incr"), op(p, "enqueue", ("x-pwvm-item", "x")), op(p, "get")]
        report_time(engine.name, "3 requests, Redis stopped", time.monotonic() - t0)
        assert [h["x-pwvm-status"] for h in down] == ["10", "10", "10"]  # INTERNAL_FAILURE
        assert down[0]["x-pwvm-tries"] == "1" and "x-pwvm-counter" not in down[0]  # no retry on a failure
        errors = [r for r in host.logger.records if r.level == pw.LogLevel.ERROR and "SharedStoreError" in r.message]
        assert len(errors) == 3, [r.message for r in errors]
        assert "Redis at " + srv.url in errors[0].message
        with p.http_stream() as s:  # a request that does not touch Redis goes through as usual
            assert s.request_headers(REQUEST, end_of_stream=True) is pw.Action.CONTINUE
        srv.start()  # (empty: it keeps nothing on disk)
        deadline = time.monotonic() + HANG_GUARD
        while op(p, "incr")["x-pwvm-status"] != "0" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert op(p, "get")["x-pwvm-counter"] == "1"  # counting again, from an empty Redis
        # the queue the plugin registered comes back under its token: an enqueue reaches it again
        while op(p, "enqueue", ("x-pwvm-item", "back"))["x-pwvm-status"] != "0" and time.monotonic() < deadline:
            time.sleep(0.1)
        while "c_shared: consumed back" not in p.logs and time.monotonic() < deadline:
            host.poll(timeout=0.05)
        assert "c_shared: consumed back" in p.logs
    finally:
        close_host(host)
