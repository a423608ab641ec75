"""update() and close() retire the old generation on every thread: each old root context gets
proxy_on_done / proxy_on_delete exactly once, on the thread that holds it, once its streams have
ended; its VMs are released. (The host stays in this process, ``host_here``, so that VMs are per
thread of this process on every backend.)"""

from __future__ import annotations

import gc
import queue
import threading
import weakref
from collections import Counter

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST, plugin_path


class ThreadLogger(pw.MemoryLogger):
    """Remembers, for every record, the thread that logged it."""

    def __init__(self) -> None:
        super().__init__(level=pw.LogLevel.TRACE)
        self.seen: list[tuple[int, str, int]] = []

    def emit(self, record: pw.LogRecord) -> None:
        super().emit(record)
        self.seen.append((threading.get_ident(), record.message, record.context_id))

    def events(self, thread: int) -> list[tuple[str, int]]:
        return [(m, c) for t, m, c in self.seen if t == thread]


class Worker(threading.Thread):
    """A thread that runs the functions it is given, in order, and answers their results."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.jobs: queue.Queue = queue.Queue()
        self.start()

    def run(self) -> None:
        while True:
            fn, reply = self.jobs.get()
            if fn is None:
                return
            try:
                reply.put((True, fn()))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                reply.put((False, e))

    def do(self, fn):
        reply: queue.Queue = queue.Queue()
        self.jobs.put((fn, reply))
        ok, value = reply.get(timeout=60)  # a generous "did not hang" guard
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self.jobs.put((None, None))
        self.join(60)
        assert not self.is_alive()


@pytest.fixture
def life(engine, host_here):
    """A host (with a ThreadLogger) and a factory of wat_lifecycle plugins on the backend under test."""
    host = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(), logger=ThreadLogger())

    def make(**config) -> pw.Plugin:
        config.setdefault("name", "life")
        return pw.Plugin(pw.PluginConfig(**config), plugin_path("wat_lifecycle"), host=host)

    yield host, make
    host.close()


def roots(events) -> dict[str, Counter]:
    """``{"create": Counter(root id -> n), "done": ..., "delete": ...}`` of one thread's root events."""
    out: dict[str, Counter] = {"create": Counter(), "done": Counter(), "delete": Counter()}
    for msg, cid in events:
        what, _, kind = msg.partition(" ")
        if kind == "root":
            out[what][cid] += 1
    return out


def test_update_retires_old_roots_on_every_thread(life):
    host, make = life
    p = make()
    open_one, idle_one = Worker(), Worker()
    try:
        def start():
            s = p.http_stream()
            assert s.request_headers(REQUEST) is Action.CONTINUE
            return s

        held = open_one.do(start)  # a stream still open across the update
        idle_one.do(lambda: start().close())  # a thread whose streams all ended before it
        before = {t.ident: roots(host.logger.events(t.ident)) for t in (open_one, idle_one)}
        old_root = {t: list(r["create"]) for t, r in before.items()}
        assert all(len(v) == 1 for v in old_root.values())

        p.update(configuration=b"v2")
        for t in (open_one, idle_one):  # nothing happens on the other threads behind their back
            assert roots(host.logger.events(t.ident))["done"] == Counter()

        # The idle thread shuts its old root down at its next contact with the host: a poll ...
        idle_one.do(lambda: host.poll())
        r = roots(host.logger.events(idle_one.ident))
        assert r["done"] == r["delete"] == Counter({old_root[idle_one.ident][0]: 1})
        # ... the thread with an open stream when that stream ends.
        open_one.do(lambda: host.poll())
        assert roots(host.logger.events(open_one.ident))["done"] == Counter()
        open_one.do(held.close)
        r = roots(host.logger.events(open_one.ident))
        assert r["done"] == r["delete"] == Counter({old_root[open_one.ident][0]: 1})

        # New streams on both threads run on the new root; the old ones never hear again.
        for t in (open_one, idle_one):
            t.do(lambda: start().close())
            t.do(lambda: host.poll())
            r = roots(host.logger.events(t.ident))
            assert len(r["create"]) == 2 and r["done"] == r["delete"] == Counter({old_root[t.ident][0]: 1})
    finally:
        open_one.stop()
        idle_one.stop()


def test_a_thread_that_ends_shuts_its_roots_down(life):
    host, make = life
    p = make()
    t = Worker()
    t.do(lambda: p.http_stream().close())
    ident = t.ident
    t.stop()
    gc.collect()
    r = roots(host.logger.events(ident))
    assert len(r["create"]) == 1 and r["done"] == r["delete"] == r["create"]


def test_update_in_a_loop_leaves_no_vm_behind(life):
    host, make = life
    created: list[weakref.ref] = []
    new_vm = host._new_vm

    def counting(gen):
        vm = new_vm(gen)
        created.append(weakref.ref(vm))
        return vm

    host._new_vm = counting
    p = make()
    workers = [Worker() for _ in range(2)]
    try:
        def one_stream():
            with p.http_stream() as s:
                s.request_headers(REQUEST)

        for i in range(12):
            # a different vm_config gives each version VMs of its own (same code, another key)
            p.update(vm_config=f"v{i}".encode())
            for w in workers:
                w.do(one_stream)
        for w in workers:
            w.do(lambda: host.poll())
        gc.collect()
        live = [r() for r in created if r() is not None and not r().closed]
        # one VM per thread for the current version: here and on each worker
        assert len(created) == 1 + 12 * 3 and len(live) == 3
        kept = [r for r in created if r() is not None]
        print(f"VMs created {len(created)}, still referenced {len(kept)}, open {len(live)}")
        assert len(kept) == 3  # the released VMs are gone
    finally:
        for w in workers:
            w.stop()


def test_update_and_close_shut_each_root_down_once(make_plugin, host):
    """The same on every backend with the host where it runs by default (in the worker for worker
    engines): update() shuts the old root down, close() the current one; each exactly once."""
    p = make_plugin("wat_lifecycle")

    def count(what):
        return host.logger.messages(plugin="wat_lifecycle").count(what)

    with p.http_stream() as s:
        s.request_headers(REQUEST)
    assert count("create root") == 1 and count("done root") == 0
    p.update(configuration=b"v2")
    assert count("create root") == 2 and count("done root") == count("delete root") == 1
    with p.http_stream() as s:
        s.request_headers(REQUEST)
    host.poll()
    assert count("done root") == count("delete root") == 1 and count("delete stream") == 2
    p.close()
    assert count("done root") == count("delete root") == 2
