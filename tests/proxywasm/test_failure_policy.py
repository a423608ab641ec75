"""Failure policy as Envoy operators know it: a plugin that fails in any callback gets its stream
the configured policy, the failure is logged once and counted, and its VM is reloaded with
exponential backoff (Envoy's ``FAIL_RELOAD``): during the backoff streams get the policy and no VM
is started. Runs on every backend, worker backends included (their host runs in the worker)."""

from __future__ import annotations

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action, LogLevel

from .conftest import REQUEST, plugin_path

# Every callback c_bad_guest can fail in (tests/plugins/README.md), as the stream meets them.
STREAM_CALLBACKS = ["context_create", "request_headers", "request_body", "response_headers", "done", "log", "delete"]
BEFORE_HEADERS = {"context_create", "request_headers"}  # the plugin fails before it has served anything


def bad(make_plugin, name: str, **config):
    return make_plugin("c_bad_guest", name=name, vm_id=name, root_id="bad_root", **config)


def drive(p, extra=()):
    """One stream through every callback c_bad_guest exports; returns it and the request headers' action."""
    s = p.http_stream()
    a = s.request_headers(REQUEST + list(extra))
    s.request_body(b"x", True)
    s.response_headers({":status": "200"}, True)
    s.close()
    return s, a


def failures(host, name):
    """The host's failure records for plugin ``name``."""
    return [r for r in host.logger.records if r.plugin == name and r.level == LogLevel.ERROR
            and r.message.startswith(f"plugin {name!r} failed in ")]


def assert_policy(s, a, policy):
    assert s.failed
    if policy == "fail_open":
        assert a is Action.CONTINUE and s.local_response is None
    else:
        assert a is Action.PAUSE and s.local_response.status == 503
        assert s.local_response.details == "wasm_fail_stream"


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
@pytest.mark.parametrize("where", STREAM_CALLBACKS)
def test_failure_in_each_stream_callback(traps_survive, make_plugin, host, where, policy):
    name = f"bad_{where}"
    p = bad(make_plugin, name, configuration=f"fail_in={where}", failure_policy=policy)
    assert p.stats()["vm_created"] == 1
    s, a = drive(p)
    assert s.failed and s.error.callback == f"proxy_on_{where}"
    if where in BEFORE_HEADERS:
        assert_policy(s, a, policy)
    else:  # served, then failed: a closed policy answers 503 if the stream is still open
        assert a is Action.CONTINUE
        in_stream = where in ("request_body", "response_headers")
        assert (s.local_response is not None) == (in_stream and policy == "fail_closed")
    recs = failures(host, name)  # logged once, with plugin, callback and cause
    assert len(recs) == 1 and f"proxy_on_{where}" in recs[0].message and "unreachable" in recs[0].message
    assert p.stats()["vm_failed"] == 1

    # During the backoff (1 s) streams get the policy, and no VM is started.
    host.advance(0.5)
    for _ in range(3):
        s2, a2 = drive(p)
        assert_policy(s2, a2, policy)
    st = p.stats()
    assert st["vm_created"] == 1 and st["vm_reload_backoff"] == 3 and st["vm_failed"] == 1
    assert len(failures(host, name)) == 1

    # After it, the next stream starts a fresh VM, which the plugin serves up to its failure again.
    host.advance(0.5)
    s3, a3 = drive(p)
    st = p.stats()
    assert st["vm_created"] == 2 and st["vm_reload"] == 1 and st["vm_reload_success"] == 1
    assert s3.failed and s3.error.callback == f"proxy_on_{where}" and st["vm_failed"] == 2
    if where not in BEFORE_HEADERS:
        assert a3 is Action.CONTINUE
    assert len(failures(host, name)) == 2 and "failure 2 in a row" in failures(host, name)[1].message


def test_backoff_doubles_up_to_the_cap(traps_survive, make_plugin, host):
    p = bad(make_plugin, "bad_cap", configuration="fail_in=request_headers", reload_backoff_max=3.0)
    drive(p)
    created = [1]
    for wait in (1.0, 2.0, 3.0, 3.0):  # 1, 2, 4 -> capped at 3, 3
        host.advance(wait - 0.01)
        drive(p)
        assert p.stats()["vm_created"] == created[-1]  # still in the backoff
        host.advance(0.01)
        drive(p)
        created.append(created[-1] + 1)
        assert p.stats()["vm_created"] == created[-1]
    assert p.stats()["vm_failed"] == 5 and p.stats()["vm_reload"] == 4


def test_a_served_stream_resets_the_backoff(traps_survive, make_plugin, host):
    p = bad(make_plugin, "bad_reset")
    trap = [("x-pwvm-bad", "trap")]
    for _ in range(3):  # trap; after 1 s a fresh VM serves a stream; the next trap waits 1 s again
        s, a = drive(p, trap)
        assert_policy(s, a, "fail_closed")
        host.advance(0.99)
        assert drive(p)[0].failed
        host.advance(0.01)
        s, a = drive(p)
        assert a is Action.CONTINUE and not s.failed
    assert p.stats()["vm_created"] == 4 and p.stats()["vm_failed"] == 3
    assert all("failure 1 in a row" in r.message for r in failures(host, "bad_reset"))


def test_fail_reload_is_envoys_name(traps_survive, make_plugin, host):
    p = bad(make_plugin, "bad_envoy", failure_policy="fail_reload")
    s, a = drive(p, [("x-pwvm-bad", "trap")])
    assert_policy(s, a, "fail_closed")
    host.advance(1)
    assert not drive(p)[0].failed
    with pytest.raises(ValueError):
        pw.PluginConfig(failure_policy="fail_reload", reload_on_failure=False)
    with pytest.raises(ValueError):
        pw.PluginConfig(reload_backoff=2.0, reload_backoff_max=1.0)


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_no_reload_keeps_the_policy(traps_survive, make_plugin, host, policy):
    p = bad(make_plugin, f"bad_noreload_{policy}", failure_policy=policy, reload_on_failure=False)
    drive(p, [("x-pwvm-bad", "trap")])
    host.advance(3600)
    for _ in range(2):
        s, a = drive(p)
        assert_policy(s, a, policy)
    st = p.stats()
    assert st["vm_created"] == 1 and st["vm_reload"] == 0 and st["vm_failed"] == 1
    assert "reload_on_failure=False" in failures(host, p.name)[0].message


def test_raise_policy_raises_during_the_backoff(traps_survive, make_plugin, host):
    p = bad(make_plugin, "bad_raise", failure_policy="raise")
    with pytest.raises(pw.PluginCrash) as e:
        p.http_stream().request_headers(REQUEST + [("x-pwvm-bad", "trap")])
    assert e.value.callback == "proxy_on_request_headers"
    with pytest.raises(pw.PluginCrash):
        p.http_stream().request_headers(REQUEST)
    assert p.stats()["vm_created"] == 1
    host.advance(1)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.CONTINUE


def test_proc_exit_follows_the_policy(traps_survive, make_plugin, host):
    p = bad(make_plugin, "bad_exit", configuration="fail_in=response_headers\nfail_mode=proc_exit")
    s, _ = drive(p)
    assert isinstance(s.error, pw.PluginExit) and s.error.exit_code == 3
    assert len(failures(host, "bad_exit")) == 1 and p.stats()["vm_failed"] == 1
    host.advance(1)
    drive(p)
    assert p.stats()["vm_created"] == 2


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_failure_in_tick(traps_survive, make_plugin, host, policy):
    p = bad(make_plugin, f"bad_tick_{policy}", configuration="fail_in=tick\ntick_ms=10", failure_policy=policy)
    host.advance(ms=10)
    recs = failures(host, p.name)
    assert len(recs) == 1 and "proxy_on_tick" in recs[0].message and p.stats()["vm_failed"] == 1
    host.advance(ms=500)  # no tick of a failed VM, no second failure
    s, a = drive(p)
    assert_policy(s, a, policy)
    assert p.stats()["vm_created"] == 1 and len(failures(host, p.name)) == 1
    host.advance(ms=500)
    s, a = drive(p)  # a fresh VM serves the stream (and ticks again, and fails again)
    assert a is Action.CONTINUE and not s.failed and p.stats()["vm_created"] == 2
    host.advance(ms=10)
    assert p.stats()["vm_failed"] == 2


def test_failure_at_start_still_raises_at_load(traps_survive, make_plugin, host):
    with pytest.raises(pw.PluginStartError):
        bad(make_plugin, "bad_configure", configuration="fail_in=configure")
    assert host.metrics.value("pwvm.bad_configure.vm_created") == 1


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_a_reload_that_fails_to_start_backs_off_further(traps_survive, host_here, make_plugin, host, policy):
    p = bad(make_plugin, f"bad_restart_{policy}", failure_policy=policy)
    drive(p, [("x-pwvm-bad", "trap")])
    # The next VM's configure traps (the configuration it reads is changed behind the plugin's back).
    p._gen.configuration = b"fail_in=configure"
    host.advance(1)
    s, a = drive(p)
    assert_policy(s, a, policy)
    st = p.stats()
    assert st["vm_reload"] == 1 and st["vm_reload_failure"] == 1 and st["vm_reload_success"] == 0
    assert st["vm_created"] == 2 and st["vm_failed"] == 2
    recs = failures(host, p.name)
    assert len(recs) == 2 and "proxy_on_configure" in recs[1].message
    p._gen.configuration = b""
    host.advance(1.99)  # the second failure in a row waits 2 s
    assert drive(p)[0].failed and p.stats()["vm_created"] == 2
    host.advance(0.01)
    s, a = drive(p)
    assert a is Action.CONTINUE and not s.failed
    assert p.stats()["vm_reload_success"] == 1 and p.stats()["vm_created"] == 3


# ------------------------------------------------ every callback, with wat_trap_in (tests/plugins/README.md)

HTTP_MODES = {"x": "proxy_on_context_create", "h": "proxy_on_request_headers", "b": "proxy_on_request_body",
              "t": "proxy_on_request_trailers", "H": "proxy_on_response_headers", "B": "proxy_on_response_body",
              "T": "proxy_on_response_trailers", "d": "proxy_on_done", "l": "proxy_on_log", "D": "proxy_on_delete"}
TCP_MODES = {"n": "proxy_on_new_connection", "u": "proxy_on_downstream_data", "U": "proxy_on_upstream_data",
             "z": "proxy_on_downstream_connection_close", "Z": "proxy_on_upstream_connection_close"}
ROOT_MODES = {"k": "proxy_on_tick", "q": "proxy_on_queue_ready", "r": "proxy_on_http_call_response",
              "f": "proxy_on_foreign_function"}


@pytest.fixture
def trap_host(engine):
    """A host with a manual clock and an upstream ``up`` answering 200 (for the ``r`` mode)."""
    h = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(), logger=pw.MemoryLogger(level=LogLevel.TRACE),
                         http=pw.CallbackHttpDispatcher(lambda r: (200, {}, b"ok"), {"up"}))
    yield h
    h.close()


def trap_in(host, mode: str, policy: str = "fail_closed", **config) -> pw.Plugin:
    name = f"trap_{ord(mode)}_{policy}"
    return pw.Plugin(pw.PluginConfig(name=name, vm_id=name, configuration=mode, failure_policy=policy, **config),
                     plugin_path("wat_trap_in"), host=host)


def http_cycle(p):
    s = p.http_stream()
    a = s.request_headers(REQUEST)
    s.request_body(b"x")
    s.request_trailers({"t": "1"})
    s.response_headers({":status": "200"})
    s.response_body(b"y")
    s.response_trailers({"t": "2"})
    s.close()
    return s, a


def tcp_cycle(p):
    s = p.tcp_stream()
    a = s.new_connection()
    s.downstream_data(b"x")
    s.upstream_data(b"y")
    s.downstream_close()
    s.upstream_close()
    s.close()
    return s, a


def check_backoff_then_reload(host, p, cycle, policy):
    """Failed once: during the backoff streams get ``policy`` without a VM start; then a fresh VM."""
    assert len(failures(host, p.name)) == 1 and p.stats()["vm_failed"] == 1
    s, _ = cycle(p)
    assert s.failed
    if cycle is http_cycle:
        assert (s.local_response is not None) == (policy == "fail_closed")
    else:
        assert s.connection_closed_by_plugin == (policy == "fail_closed")
    assert p.stats()["vm_created"] == 1 and p.stats()["vm_reload_backoff"] == 1
    host.advance(1)
    cycle(p)
    st = p.stats()
    assert st["vm_created"] == 2 and st["vm_reload"] == st["vm_reload_success"] == 1


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
@pytest.mark.parametrize("mode", list(HTTP_MODES))
def test_trap_in_each_http_callback(traps_survive, trap_host, mode, policy):
    p = trap_in(trap_host, mode, policy)
    s, a = http_cycle(p)
    assert s.failed and s.error.callback == HTTP_MODES[mode]
    assert a is (Action.PAUSE if mode in "xh" and policy == "fail_closed" else Action.CONTINUE)
    rec = failures(trap_host, p.name)[0]
    assert HTTP_MODES[mode] in rec.message and "unreachable" in rec.message
    check_backoff_then_reload(trap_host, p, http_cycle, policy)


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
@pytest.mark.parametrize("mode", list(TCP_MODES))
def test_trap_in_each_tcp_callback(traps_survive, trap_host, mode, policy):
    p = trap_in(trap_host, mode, policy)
    s, a = tcp_cycle(p)
    assert s.failed and s.error.callback == TCP_MODES[mode]
    assert a is (Action.PAUSE if mode == "n" and policy == "fail_closed" else Action.CONTINUE)
    assert TCP_MODES[mode] in failures(trap_host, p.name)[0].message
    check_backoff_then_reload(trap_host, p, tcp_cycle, policy)


@pytest.mark.parametrize("mode", list(ROOT_MODES))
def test_trap_in_each_root_callback(traps_survive, trap_host, mode):
    p = trap_in(trap_host, mode)
    held = None
    if mode == "k":
        trap_host.advance(ms=10)
    elif mode == "q":
        token = trap_host.queues.resolve(p.config.vm_id, "q")
        assert trap_host.queues.enqueue(token, b"item") == pw.Status.OK
        trap_host.poll()
    elif mode == "r":
        held = p.http_stream()
        assert held.request_headers(REQUEST) is Action.PAUSE  # waits for its callout
        trap_host.run_until_idle()
        assert held.failed and held.local_response.status == 503  # the stream's VM failed under it
        held.close()
    else:
        p.call_foreign_function(7, b"args")
    recs = failures(trap_host, p.name)
    assert len(recs) == 1 and ROOT_MODES[mode] in recs[0].message
    check_backoff_then_reload(trap_host, p, http_cycle, "fail_closed")


@pytest.mark.parametrize("mode, callback", [("v", "proxy_on_vm_start"), ("c", "proxy_on_configure")])
def test_trap_at_start_fails_the_load_once(traps_survive, trap_host, mode, callback):
    extra = {"vm_config": mode, "configuration": ""} if mode == "v" else {}
    name = f"start_{mode}"
    with pytest.raises(pw.PluginStartError) as e:
        pw.Plugin(pw.PluginConfig(name=name, vm_id=name, configuration=extra.get("configuration", mode),
                                  vm_config=extra.get("vm_config", "")), plugin_path("wat_trap_in"), host=trap_host)
    assert callback in str(e.value)
    recs = failures(trap_host, name)
    assert len(recs) == 1 and callback in recs[0].message and "the plugin does not load" in recs[0].message
    assert trap_host.metrics.value(f"pwvm.{name}.vm_failed") == 1


def test_an_update_replaces_a_failed_vm_at_once(traps_survive, make_plugin, host):
    p = bad(make_plugin, "bad_update")
    drive(p, [("x-pwvm-bad", "trap")])
    p.update(configuration=b"")  # the operator pushes a configuration: no waiting for the backoff
    s, a = drive(p)
    assert a is Action.CONTINUE and not s.failed
    assert p.stats()["vm_created"] == 2 and p.stats()["vm_reload_backoff"] == 0


@pytest.mark.parametrize("here", [True, False], ids=["host_here", "host_anywhere"])
@pytest.mark.parametrize("grouped", [False, True])
def test_plugins_share_a_vm_unless_in_vm_groups_of_their_own(traps_survive, request, host, grouped, here):
    # As Envoy: plugins of one host with the same code and vm_id run in one VM per thread (each its
    # own root context), so a plugin that fails takes the other's VM down with it. A private VM
    # group (pwvm serve gives each configuration generation its own) keeps their VMs apart; on a
    # worker engine the host, and so the grouping, runs in the worker unless ``host_here``.
    if here:
        request.getfixturevalue("host_here")

    def load(name, configuration, group):
        return host.load(pw.PluginConfig(name=name, vm_id="shared_vm", root_id="bad_root", configuration=configuration,
                                         failure_policy="fail_closed"), plugin_path("c_bad_guest"),
                         _vm_group=group)

    good = load("good", "", 1 if grouped else None)
    s, a = drive(good)
    assert not s.failed and a is Action.CONTINUE
    failing = load("failing", "fail_in=request_headers", 2 if grouped else None)
    if here:
        assert (good._vm_here() is failing._vm_here()) is not grouped
    s, a = drive(failing)
    assert s.failed and s.error.callback == "proxy_on_request_headers"
    s, a = drive(good)
    if grouped:
        assert not s.failed and a is Action.CONTINUE  # its VM is not the one that failed
    else:
        assert_policy(s, a, "fail_closed")  # the shared VM failed: this stream meets the policy too
