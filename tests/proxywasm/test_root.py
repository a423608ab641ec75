"""Root-context features: timers, deferred shutdown, shared data, queues, metrics, foreign functions,
VM sharing, isolation, threads and live updates."""

from __future__ import annotations

import dataclasses
import threading

import pytest


import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST, plugin_path


def req(test, *extra):
    return REQUEST + [("x-pwvm-test", test), *extra]


def run(p, test, *extra):
    with p.http_stream() as s:
        s.request_headers(req(test, *extra))
        s.response_headers({":status": "200"})
        return s.response.headers


def test_ticks_follow_the_manual_clock(http_all, host):
    p = http_all("tick_ms=50\ntick_max=3")
    assert host.advance(ms=49) == 0
    assert host.advance(ms=1) == 1
    assert host.shared_data.get("vm_all", b"pwvm.ticks")[0] == b"1"
    assert host.advance(ms=500) == 2  # ticks 2 and 3, then the plugin stops its timer
    assert host.shared_data.get("vm_all", b"pwvm.ticks")[0] == b"3"
    assert [m for m in p.logs if m.startswith("c_http_all: tick ") and "period" not in m] == [f"c_http_all: tick {i}" for i in (1, 2, 3)]


def test_deferred_root_shutdown_with_proxy_done(http_all, host):
    p = http_all("deferred_done=1")
    p.close()
    assert "c_http_all: on_done deferred root=1" in p.logs
    assert "c_http_all: proxy_done status=0" not in p.logs  # the plugin finishes on its next tick
    host.advance(ms=1)  # the plugin asked for 1 ms: HostLimits.tick_min_period_ms raises it to 10
    assert "c_http_all: proxy_done status=0" not in p.logs
    host.advance(ms=9)
    assert "c_http_all: proxy_done status=0" in p.logs


def test_deferred_root_shutdown_internals(host_here, http_all, host):
    p = http_all("deferred_done=1")
    vm, root = host._acquire(p._gen)
    p.close()
    assert root.done_pending and not root.deleted
    host.advance(ms=10)  # (1 ms asked, raised to HostLimits.tick_min_period_ms)
    assert root.deleted


def test_shared_data_cas(http_all, host):
    p = http_all()
    h1 = run(p, "shared")
    assert (h1["x-pwvm-shared-get"], h1["x-pwvm-shared-value"], h1["x-pwvm-shared-set"]) == ("1", "1", "0")
    assert h1["x-pwvm-shared-cas-mismatch"] == "8" and h1["x-pwvm-shared-final"] == "1"
    h2 = run(p, "shared")
    assert (h2["x-pwvm-shared-get"], h2["x-pwvm-shared-value"], h2["x-pwvm-shared-final"]) == ("0", "2", "2")
    assert host.shared_data.items("vm_all") == {b"pwvm.shared.counter": b"2"}
    # another vm_id does not see it
    other = pw.Plugin(pw.PluginConfig(name="other", vm_id="other"), plugin_path("c_http_all"), host=host)
    assert run(other, "shared")["x-pwvm-shared-value"] == "1"


def test_shared_data_service_cas_conflict():
    sd = pw.SharedData()
    assert sd.set("v", b"k", b"1") == pw.Status.OK
    _, cas = sd.get("v", b"k")
    assert sd.set("v", b"k", b"2", cas) == pw.Status.OK
    assert sd.set("v", b"k", b"3", cas) == pw.Status.CAS_MISMATCH  # somebody else won
    assert sd.get("v", b"k")[0] == b"2"


def test_queue_between_two_plugins(host):
    consumer = pw.Plugin(pw.PluginConfig(name="consumer", vm_id="vm_a", configuration="queue=jobs"),
                         plugin_path("c_http_all"), host=host)
    producer = pw.Plugin(pw.PluginConfig(name="producer", vm_id="vm_b",
                                         configuration="queue=jobs\nqueue_vm_id=vm_a"),
                         plugin_path("c_http_all"), host=host)
    h = run(producer, "queue", ("x-pwvm-queue-item", "job-1"))
    assert h["x-pwvm-queue-resolve"] == "0" and h["x-pwvm-queue-enqueue"] == "0"
    assert h["x-pwvm-queue-token-match"] == "0"  # the producer registered its own "jobs" in vm_b
    run(producer, "queue", ("x-pwvm-queue-item", "job-2"))
    assert host.queues.size("vm_a", "jobs") == 2
    assert host.poll() >= 1  # proxy_on_queue_ready runs on the consumer's root context
    assert host.shared_data.get("vm_a", b"pwvm.queue.last")[0] == b"job-2"
    assert host.shared_data.get("vm_a", b"pwvm.queue.count")[0] == b"2"
    assert "c_http_all: dequeued job-1" in consumer.logs
    assert any(m.startswith("c_http_all: queue ") and m.endswith("drained status=7") for m in consumer.logs)
    own = run(consumer, "queue")
    assert own["x-pwvm-queue-token-match"] == "1"


def test_queue_missing(http_all):
    assert run(http_all(), "queue")["x-pwvm-queue-resolve"] == "1"


def test_metrics(http_all, host):
    p = http_all("metrics=1")
    h = run(p, "metrics", ("x-pwvm-metric-value", "10"))
    assert h["x-pwvm-metric-define"] == "0,0,0" and h["x-pwvm-metric-ops"] == "0,0,0,0"
    assert h["x-pwvm-metric-counter"] == "1" and h["x-pwvm-metric-gauge"] == "9"
    assert h["x-pwvm-metric-counter-negative"] == "2" and h["x-pwvm-metric-histogram-get"] == "2"
    run(p, "metrics", ("x-pwvm-metric-value", "20"))
    assert host.metrics.value("pwvm_requests") == 2
    assert host.metrics.value("pwvm_gauge") == 19
    assert host.metrics.snapshot()["pwvm_histogram"] == [10, 20]


def test_foreign_functions_both_ways(http_all, host):
    host.foreign_functions.register("pwvm_echo", lambda args: b"echo:" + args)
    p = http_all(foreign_functions={"shout": lambda a: a.upper()})
    h = run(p, "foreign", ("x-pwvm-foreign-arg", "hey"))
    assert h["x-pwvm-foreign-status"] == "0" and h["x-pwvm-foreign-result"] == "echo:hey"
    assert run(p, "foreign", ("x-pwvm-foreign-name", "shout"))["x-pwvm-foreign-result"] == "HELLO"
    assert run(p, "foreign", ("x-pwvm-foreign-name", "compress"))["x-pwvm-foreign-status"] == "0"
    assert run(p, "foreign", ("x-pwvm-foreign-name", "nope"))["x-pwvm-foreign-status"] == "1"

    def boom(a):
        raise ValueError("bad")

    host.foreign_functions.register("boom", boom)
    assert run(p, "foreign", ("x-pwvm-foreign-name", "boom"))["x-pwvm-foreign-status"] == "2"
    p.call_foreign_function(7, b"args!")
    assert "c_http_all: on_foreign_function root=1 id=7 args=args! status=0" in p.logs


def test_plugins_share_a_vm_by_vm_id(host):
    a = pw.Plugin(pw.PluginConfig(name="a", vm_id="shared", configuration="test=shared"), plugin_path("c_http_all"),
                  host=host)
    b = pw.Plugin(pw.PluginConfig(name="b", vm_id="shared", configuration="test=headers"),
                  plugin_path("c_http_all"), host=host)
    va, ra = host._acquire(a._gen)
    vb, rb = host._acquire(b._gen)
    assert va is vb and ra is not rb  # one VM, two root contexts
    assert run(a, "shared")["x-pwvm-shared-value"] == "1"
    assert run(b, "shared")["x-pwvm-shared-value"] == "2"


def test_per_stream_isolation(make_plugin, host):
    p = make_plugin("c_http_all", vm_per_stream=True, configuration="test=shared")
    s1, s2 = p.http_stream(), p.http_stream()
    assert s1._vm is not s2._vm
    s1.request_headers(REQUEST)
    s1.close()
    s2.close()
    assert s1._vm.closed and s2._vm.closed
    with p.http_stream() as s3:  # shared data still shared by vm_id
        s3.request_headers(REQUEST)
        s3.response_headers({":status": "200"})
        assert s3.response.headers["x-pwvm-shared-value"] == "2"


def test_isolation_keyword_is_deprecated_for_vm_per_stream():
    """``PluginConfig(isolation=...)`` still works, warns, and means ``vm_per_stream``."""
    with pytest.warns(DeprecationWarning, match="vm_per_stream"):
        cfg = pw.PluginConfig(name="p", isolation="per_stream")
    assert cfg.vm_per_stream is True
    with pytest.warns(DeprecationWarning):
        assert pw.PluginConfig(isolation="shared").vm_per_stream is False
    assert pw.PluginConfig().vm_per_stream is False
    assert dataclasses.replace(cfg, name="q").vm_per_stream is True  # replace() keeps it, without a warning
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="'shared' or 'per_stream'"):
        pw.PluginConfig(isolation="process")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="contradicts"):
        pw.PluginConfig(isolation="shared", vm_per_stream=True)
    with pytest.raises(TypeError, match="vm_per_stream"):
        pw.PluginConfig(vm_per_stream="per_stream")  # type: ignore[arg-type]


@pytest.mark.capability("threads")
def test_one_vm_per_thread(host_here, http_all, host):
    # (with its host in a worker, a plugin has one VM there, which the threads here take turns on)
    p = http_all("test=shared")
    main_vm = host._acquire(p._gen)[0]
    results = {}

    def worker(i):
        with p.http_stream() as s:
            s.request_headers(REQUEST)
            s.response_headers({":status": "200"})
            h = s.response.headers
            results[i] = (s._vm, h["x-pwvm-shared-value"], h["x-pwvm-shared-set"])

    # One thread after the other: each gets its own VM, and the counter those
    # VMs share goes 1, 2, 3. (Run at once, the plugin's get-then-set would
    # race by design: a CAS of 0 on a missing key is an unconditional write.)
    for i in range(3):
        t = threading.Thread(target=worker, args=(i,))
        t.start()
        t.join()
    vms = {id(v[0]) for v in results.values()}
    assert len(vms) == 3 and id(main_vm) not in vms
    assert [results[i][1:] for i in range(3)] == [("1", "0"), ("2", "0"), ("3", "0")]
    assert host.shared_data.get("vm_all", b"pwvm.shared.counter")[0] == b"3"


def test_update_swaps_while_streams_finish_on_the_old_version(http_all, host):
    p = http_all("test=headers")
    old = p.http_stream()
    old.request_headers(REQUEST)
    p.update(configuration="test=auth")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.PAUSE  # the new configuration answers 401
    assert old.response_headers({":status": "200"}) is Action.CONTINUE  # the old one still serves
    assert old.response.headers["x-pwvm-set-pairs"] == "1"
    old.close()
    # new code: a different module replaces the VM
    p.update(plugin_path("c_abi010"), name="now010")
    with p.http_stream() as s:
        s.request_headers(REQUEST)
        assert s.request.headers["x-pwvm-abi"] == "0.1.0"
    assert p.abi is pw.AbiVersion.V0_1_0


def test_update_retires_the_old_root_after_its_last_stream(host_here, http_all, host):
    p = http_all("test=headers")
    old = p.http_stream()
    old.request_headers(REQUEST)
    old_root = old._ctx.root
    p.update(configuration="test=auth")
    with p.http_stream() as s:
        s.request_headers(REQUEST)
        assert s._ctx.root is not old_root
    assert not old_root.deleted  # still serving the open stream
    old.close()
    assert old_root.deleted  # retired once its last stream finished


def test_capabilities_restrict_host_functions(http_all):
    p = http_all(allowed_capabilities={"proxy_log", "proxy_get_header_map_value", "proxy_add_header_map_value",
                                       "proxy_get_buffer_bytes"})
    h = run(p, "shared")
    assert h["x-pwvm-shared-get"] == "12" and h["x-pwvm-shared-set"] == "12"  # UNIMPLEMENTED
