"""RedisSharedData and RedisSharedQueues at the API level, on a real redis-server.

The same assertions run on the in-memory services where the semantics are meant to be the
same (CAS, queues); "two processes" are two service objects with their own connection pools
here (real processes: test_redis_plugin.py). Latencies of failures are reported, not asserted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Status

from _helpers import HANG_GUARD, report_time


@pytest.fixture
def url(redis_server: Any) -> str:
    return str(redis_server.url)


@pytest.fixture
def made(url: str, redis_prefix: str) -> Any:
    """``made(kind, **options)``: a Redis service on the session's server under this test's prefix
    (closed after the test)."""
    objs: list[Any] = []

    def make(kind: type, **kw: Any) -> Any:
        kw.setdefault("prefix", redis_prefix)
        obj = kind(url, **kw)
        objs.append(obj)
        return obj

    yield make
    if objs:
        objs[0].clear()
    for o in objs:
        o.close()


@pytest.fixture(params=["memory", "redis"])
def shared_data(request: pytest.FixtureRequest, made: Any) -> Any:
    return pw.SharedData() if request.param == "memory" else made(pw.RedisSharedData)


@pytest.fixture(params=["memory", "redis"])
def queues(request: pytest.FixtureRequest, made: Any) -> Any:
    return pw.SharedQueues() if request.param == "memory" else made(pw.RedisSharedQueues)


# -- shared data ----------------------------------------------------------------------------------


def test_compare_and_swap_as_in_memory(shared_data: Any) -> None:
    sd = shared_data
    assert sd.get("v", b"k") is None
    assert sd.set("v", b"k", b"1", 12345) == Status.OK  # a CAS on a missing key: stored (as Envoy)
    value, cas = sd.get("v", b"k")
    assert value == b"1" and cas != 0
    assert sd.set("v", b"k", b"2", cas) == Status.OK
    value2, cas2 = sd.get("v", b"k")
    assert value2 == b"2" and cas2 != cas
    assert sd.set("v", b"k", b"3", cas) == Status.CAS_MISMATCH  # somebody else won
    assert sd.get("v", b"k") == (b"2", cas2)
    assert sd.set("v", b"k", b"4") == Status.OK  # cas 0: no check
    assert sd.get("v", b"k")[0] == b"4"
    assert sd.set("v", b"", b"") == Status.OK and sd.get("v", b"")[0] == b""  # empty key and value
    assert sd.items("v") == {b"k": b"4", b"": b""}
    sd.delete("v", b"k")
    assert sd.get("v", b"k") is None and sd.items("v") == {b"": b""}


def test_vm_ids_and_prefixes_keep_apart(made: Any, redis_prefix: str) -> None:
    a = made(pw.RedisSharedData)
    b = made(pw.RedisSharedData)  # another "process" on the same prefix
    other = made(pw.RedisSharedData, prefix=redis_prefix + "other:")
    assert a.set("vm1", b"k", b"one") == Status.OK
    assert a.set("vm2", b"k", b"two") == Status.OK
    assert b.get("vm1", b"k")[0] == b"one" and b.get("vm2", b"k")[0] == b"two"
    assert b.get("vm1", b"k")[1] == a.get("vm1", b"k")[1]  # one CAS for everybody
    assert other.get("vm1", b"k") is None and other.items("vm1") == {}
    assert b.size_bytes == 2 * (1 + 3)  # keys and values of both vm_ids
    assert other.size_bytes == 0
    other.clear()
    assert a.items("vm1") == {b"k": b"one"}  # another prefix's clear() leaves these alone


def test_cas_increments_are_exact_across_clients(made: Any) -> None:
    """Four threads on two clients (two connection pools) increment one counter with CAS retry
    loops: no increment is lost."""
    clients = [made(pw.RedisSharedData, timeout=5.0), made(pw.RedisSharedData, timeout=5.0)]
    per_thread, mismatches = 100, [0]
    # Seeded: the ABI has no "create if absent" (a CAS of 0 means "no check", and a missing key
    # takes any CAS, as in Envoy), so two first increments racing on a missing key may both store 1.
    assert clients[0].set("v", b"n", b"0") == Status.OK

    def incr(sd: Any) -> None:
        for _ in range(per_thread):
            while True:
                cur = sd.get("v", b"n")
                value, cas = (int(cur[0]), cur[1]) if cur else (0, 0)
                st = sd.set("v", b"n", str(value + 1).encode(), cas)
                if st == Status.OK:
                    break
                assert st == Status.CAS_MISMATCH
                mismatches[0] += 1

    threads = [threading.Thread(target=incr, args=(clients[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD * 4)
    assert not any(t.is_alive() for t in threads)
    assert clients[0].get("v", b"n")[0] == str(4 * per_thread).encode()
    print(f"CAS mismatches retried: {mismatches[0]}")


def test_shared_data_bounds_hold_across_clients(made: Any) -> None:
    lim = pw.HostLimits(shared_data_max_value_bytes=4, shared_data_max_keys=2, shared_data_max_bytes=12)
    a, b = made(pw.RedisSharedData, limits=lim), made(pw.RedisSharedData, limits=lim)
    assert a.set("v", b"k1", b"12345") == Status.BAD_ARGUMENT  # value past 4 bytes
    assert a.set("v", b"k1", b"1234") == Status.OK  # 2 + 4 bytes
    assert b.set("w", b"k22", b"1234") == Status.BAD_ARGUMENT  # 6 + 7 > 12: the bound counts both clients
    assert b.refused == 1 and a.refused == 1
    assert b.size_bytes == 6
    assert b.set("w", b"k2", b"123") == Status.OK  # 6 + 5 = 11
    assert a.set("x", b"k", b"") == Status.BAD_ARGUMENT  # 12 bytes would fit, a third key does not
    assert a.set("v", b"k1", b"1") == Status.OK  # replacing a value needs no new key, and frees 3 bytes
    assert a.size_bytes == 3 + 5
    b.delete("w", b"k2")
    assert a.set("x", b"k3", b"12") == Status.OK and a.size_bytes == 3 + 4


def test_check_order_as_in_memory(shared_data: Any) -> None:
    """A stale CAS answers CAS_MISMATCH before a bound is checked, in both stores."""
    sd = shared_data
    sd.limits = pw.HostLimits(shared_data_max_value_bytes=2)  # (both read their limits at each set)
    assert sd.set("v", b"k", b"1") == Status.OK
    _, cas = sd.get("v", b"k")
    assert sd.set("v", b"k", b"2", cas) == Status.OK
    assert sd.set("v", b"k", b"toolong", cas) == Status.CAS_MISMATCH
    assert sd.set("v", b"k", b"toolong") == Status.BAD_ARGUMENT


# -- queues ---------------------------------------------------------------------------------------


def test_queue_semantics_as_in_memory(queues: Any) -> None:
    q = queues
    told: list[int] = []
    t = q.register("vm", "jobs", told.append)
    assert t and q.register("vm", "jobs", told.append) == t and q.resolve("vm", "jobs") == t
    assert q.resolve("vm", "nope") is None and q.resolve("other", "jobs") is None
    assert q.dequeue(t, "vm") == (Status.EMPTY, None)
    for item in (b"a", b"b", b""):
        assert q.enqueue(t, item) == Status.OK
    assert told == [t, t, t]  # the registrant in this process is told at once, once per item
    assert q.size("vm", "jobs") == 3
    assert q.dequeue(t, "other") == (Status.NOT_FOUND, None)  # only a queue of that VM id may be read
    assert [q.dequeue(t, "vm") for _ in range(4)] == [(Status.OK, b"a"), (Status.OK, b"b"), (Status.OK, b""),
                                                       (Status.EMPTY, None)]
    assert q.enqueue(t + 1000, b"x") == Status.NOT_FOUND
    assert q.dequeue(t + 1000) == (Status.NOT_FOUND, None)
    other = q.register("other", "jobs", None)
    assert other != t and q.enqueue(other, b"z") == Status.OK and told == [t, t, t]


def test_queue_tokens_and_items_are_shared_and_each_item_goes_once(made: Any) -> None:
    producer = made(pw.RedisSharedQueues, timeout=5.0)
    consumers = [made(pw.RedisSharedQueues, timeout=5.0), made(pw.RedisSharedQueues, timeout=5.0)]
    t = producer.register("vm", "jobs", None)
    assert [c.resolve("vm", "jobs") for c in consumers] == [t, t]
    items = [f"item-{i}".encode() for i in range(300)]
    got: list[list[bytes]] = [[], []]
    done = threading.Event()

    def consume(i: int) -> None:
        c = consumers[i]
        while True:
            st, item = c.dequeue(t, "vm")
            if st == Status.OK:
                got[i].append(item)
            elif done.is_set():
                return

    threads = [threading.Thread(target=consume, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for item in items:
        assert producer.enqueue(t, item) == Status.OK
    done.set()
    for th in threads:
        th.join(HANG_GUARD)
    assert sorted(got[0] + got[1]) == sorted(items)  # each item exactly once
    assert got[0] == sorted(got[0], key=items.index) and got[1] == sorted(got[1], key=items.index)  # FIFO
    print(f"consumer split: {len(got[0])} / {len(got[1])}")


def test_queue_bounds_hold_across_clients(made: Any) -> None:
    lim = pw.HostLimits(queue_max_items=2, queue_max_bytes=5, queues_max=2)
    a, b = made(pw.RedisSharedQueues, limits=lim), made(pw.RedisSharedQueues, limits=lim)
    t = a.register("vm", "q1", None)
    assert a.enqueue(t, b"abc") == Status.OK
    assert b.enqueue(t, b"abc") == Status.BAD_ARGUMENT  # 6 bytes > 5
    assert b.enqueue(t, b"ab") == Status.OK
    assert b.enqueue(t, b"") == Status.BAD_ARGUMENT  # a third item
    assert (a.refused, b.refused) == (0, 2)
    assert a.dequeue(t) == (Status.OK, b"abc") and b.enqueue(t, b"xyz") == Status.OK  # room again
    assert b.register("vm", "q2", None)
    with pytest.raises(OverflowError):
        a.register("vm", "q3", None)  # queues_max counts every client's queues
    assert a.register("vm", "q1", None) == t  # opening an existing one is no new queue


def test_notifications_reach_other_clients(made: Any) -> None:
    """A registrant is told of enqueues made by other clients (pub/sub, on its listener thread)."""
    consumer, producer = made(pw.RedisSharedQueues, timeout=5.0), made(pw.RedisSharedQueues, timeout=5.0)
    told: list[int] = []
    got = threading.Event()

    def notify(token: int) -> None:
        told.append(token)
        got.set()

    t = consumer.register("vm", "jobs", notify)
    assert producer.resolve("vm", "jobs") == t
    t0 = time.monotonic()
    assert producer.enqueue(t, b"x") == Status.OK
    assert got.wait(HANG_GUARD)
    report_time("redis", "queue notification, other client", time.monotonic() - t0)
    assert told == [t]
    # the latest registrant of a client is the one it notifies
    later: list[int] = []
    consumer.register("vm", "jobs", later.append)
    assert producer.enqueue(t, b"y") == Status.OK
    deadline = time.monotonic() + HANG_GUARD
    while not later and time.monotonic() < deadline:
        time.sleep(0.01)
    assert later == [t] and told == [t]


def test_a_restarted_redis_gets_its_registrations_back(redis_server_own: Any, redis_prefix: str) -> None:
    """Redis restarted without persistence loses everything; the queues registered by a client
    are registered again under the same tokens when its listener reconnects, and the items
    enqueued then reach it."""
    srv = redis_server_own
    consumer = pw.RedisSharedQueues(srv.url, prefix=redis_prefix, timeout=2.0, retry_after=0.05)
    producer = pw.RedisSharedQueues(srv.url, prefix=redis_prefix, timeout=2.0, retry_after=0.05)
    try:
        told = threading.Event()
        t = consumer.register("vm", "jobs", lambda tok: told.set())
        srv.stop()
        with pytest.raises(pw.SharedStoreError):
            producer.enqueue(t, b"lost")
        srv.start()
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:  # until the consumer's listener has put the queue back
            time.sleep(0.06)
            try:
                if producer.enqueue(t, b"after") == Status.OK:
                    break
            except pw.SharedStoreError:
                pass
        assert told.wait(HANG_GUARD)
        assert consumer.dequeue(t, "vm") == (Status.OK, b"after")
    finally:
        consumer.close()
        producer.close()


# -- Redis down or slow ---------------------------------------------------------------------------


def test_a_stopped_or_stalled_redis_raises_quickly_and_recovers(redis_server_own: Any, redis_prefix: str) -> None:
    srv = redis_server_own
    sd = pw.RedisSharedData(srv.url, prefix=redis_prefix, timeout=0.2, retry_after=0.3)
    q = pw.RedisSharedQueues(srv.url, prefix=redis_prefix, timeout=0.2, retry_after=0.3)
    try:
        assert sd.set("v", b"k", b"1") == Status.OK
        t = q.register("vm", "jobs", None)
        srv.pause()  # accepts nothing, answers nothing: each operation waits for its timeout
        t0 = time.monotonic()
        with pytest.raises(pw.SharedStoreError, match="Timeout"):
            sd.get("v", b"k")
        report_time("redis", "stalled Redis: first failure", time.monotonic() - t0)
        t0 = time.monotonic()
        with pytest.raises(pw.SharedStoreError, match="not retried"):  # the fail-fast window
            sd.set("v", b"k", b"2")
        report_time("redis", "stalled Redis: within retry_after", time.monotonic() - t0)
        with pytest.raises(pw.SharedStoreError):
            q.enqueue(t, b"x")
        srv.resume()
        time.sleep(0.35)
        assert sd.get("v", b"k")[0] == b"1" and q.enqueue(t, b"x") == Status.OK
        srv.stop()
        t0 = time.monotonic()
        with pytest.raises(pw.SharedStoreError, match="ConnectionError"):
            sd.get("v", b"k")
        with pytest.raises(pw.SharedStoreError):
            q.dequeue(t)
        report_time("redis", "stopped Redis: two failures", time.monotonic() - t0)
        assert sd.errors >= 3 and q.errors >= 2
    finally:
        sd.close()
        q.close()


def test_password_stays_out_of_errors(redis_server_own: Any) -> None:
    srv = redis_server_own
    url = f"redis://user:s3cret@127.0.0.1:{srv.port}/0"
    srv.stop()
    sd = pw.RedisSharedData(url, prefix="p:")
    assert "s3cret" not in repr(sd)
    with pytest.raises(pw.SharedStoreError) as e:
        sd.get("v", b"k")
    assert "s3cret" not in str(e.value) and "user:***@" in str(e.value)


def test_redis_shared_makes_both(url: str, redis_prefix: str) -> None:
    lim = pw.HostLimits(queue_max_items=1)
    kw = pw.redis_shared(url, prefix=redis_prefix, limits=lim, timeout=1.0)
    assert set(kw) == {"shared_data", "queues"}
    assert isinstance(kw["shared_data"], pw.RedisSharedData) and isinstance(kw["queues"], pw.RedisSharedQueues)
    assert kw["queues"].limits is lim and kw["shared_data"].limits is lim
    host = pw.ProxyWasmHost(**kw)
    assert host.shared_data is kw["shared_data"] and host.queues is kw["queues"]
    assert kw["shared_data"].set("v", b"k", b"1") == Status.OK
    assert kw["queues"].clear() >= 1  # one prefix: clear() removes the other service's keys too
    assert kw["shared_data"].get("v", b"k") is None
    for s in kw.values():
        s.close()


def test_readme_redis_example(url: str, redis_prefix: str, tmp_path: Any) -> None:
    """The README's Redis example, run as written (on the test's server, under the test's prefix,
    in a folder holding c_shared.wasm): it prints what it says."""
    import contextlib
    import io
    import os
    import re
    import shutil

    from .conftest import plugin_path

    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "redis_shared(" in b)
    code = "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())
    assert '"redis://127.0.0.1:6379/0", prefix="shop:"' in code
    code = code.replace('"redis://127.0.0.1:6379/0", prefix="shop:"', f'"{url}", prefix="{redis_prefix}"')
    shutil.copy(plugin_path("c_shared"), tmp_path / "c_shared.wasm")
    out = io.StringIO()
    cwd = os.getcwd()
    ns: dict[str, Any] = {}
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
        ns["host"].close()
        ns["host"].shared_data.clear()
        ns["host"].shared_data.close()
        ns["host"].queues.close()
    assert out.getvalue().strip() == "(b'1', 1)"
