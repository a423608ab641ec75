"""A hostile or broken guest never crashes the host: statuses for misuse, failure policies for crashes
(property tests of every host function: test_hostcall_properties.py)."""

from __future__ import annotations

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST


def bad(make_plugin, **config):
    config.setdefault("vm_id", "bad")
    config.setdefault("root_id", "bad_root")
    return make_plugin("c_bad_guest", **config)


def results(p, case):
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-bad", case)], True) is Action.CONTINUE
        raw = s.request.headers["x-pwvm-bad-results"]
    return dict(kv.split("=") for kv in raw.split(",") if kv)


def test_out_of_range_pointers(make_plugin):
    r = results(bad(make_plugin), "oob_ptr")
    assert r == {"log": "6", "add_key": "6", "add_value": "6", "get_pairs_ret": "6", "get_value_ret": "6",
                 "get_property_ret": "6", "set_shared_value": "6", "get_log_level_ret": "6", "metric_ret": "6"}


def test_out_of_range_sizes(make_plugin):
    r = results(bad(make_plugin), "oob_size")
    assert r["log"] == "6" and r["log_edge"] == "6" and r["add_value"] == "6" and r["set_pairs"] == "6"
    assert r["get_buffer_start"] in ("1", "2") and r["send_body"] in ("1", "6")


def test_malformed_pairs(make_plugin):
    r = results(bad(make_plugin), "bad_pairs")
    assert r == {"count_huge": "2", "len_huge": "4", "truncated": "4", "no_nul": "4", "size3": "4",
                 "http_call_headers": "2"}


def test_unknown_types(make_plugin):
    r = results(bad(make_plugin), "bad_type")
    assert set(r.values()) == {"2"} and len(r) == 11


def test_unknown_ids(make_plugin):
    r = results(bad(make_plugin), "bad_ids")
    assert r["effective_context"] == "2"
    assert r["get_metric"] == r["increment_metric"] == r["record_metric"] == "1"
    assert r["dequeue"] == r["enqueue"] == "1"
    assert {r["grpc_send"], r["grpc_cancel"], r["grpc_close"]} <= {"1", "2"}
    assert r["done_not_pending"] == "1"


@pytest.mark.parametrize("case", ["alloc_null", "alloc_oob"])
def test_bad_allocator(make_plugin, case):
    r = results(bad(make_plugin), case)
    assert r["get_pairs"] != "0" and r["get_property"] != "0"
    if case == "alloc_oob":
        assert r == {"get_pairs": "6", "get_property": "6"}


def test_double_local_response_keeps_the_first(make_plugin):
    p = bad(make_plugin)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-bad", "double_local")]) is Action.PAUSE
        assert s.local_response.status == 418
        assert s.request.headers["x-pwvm-bad-results"] == "first=0,second=2"


def test_huge_log(make_plugin, host):
    assert results(bad(make_plugin), "huge_log") == {"log_1mib": "0"}
    assert any(m.startswith("c_bad_guest: huge") and len(m) >= 1 << 19 for m in host.logger.messages())


# ------------------------------------------------------------------------------------- fatal behaviours


def fatal(p, mode):
    s = p.http_stream()
    return s, s.request_headers(REQUEST + [("x-pwvm-bad", mode)], True)


def test_trap_fail_closed_then_reload(traps_survive, make_plugin, host):
    p = bad(make_plugin)
    s, a = fatal(p, "trap")
    assert a is Action.PAUSE and s.local_response.status == 503 and s.failed
    assert isinstance(s.error.cause, pw.Trap) and s.error.cause.code is pw.TrapCode.UNREACHABLE
    assert s.error.callback == "proxy_on_request_headers"
    s.close()
    assert p.failed
    host.advance(1)  # the reload backoff (see test_failure_policy.py)
    with p.http_stream() as s2:  # a fresh VM
        assert s2.request_headers(REQUEST) is Action.CONTINUE and not s2.failed
    assert not p.failed


def test_trap_fail_open(traps_survive, make_plugin):
    p = bad(make_plugin, failure_policy="fail_open")
    s, a = fatal(p, "trap")
    assert a is Action.CONTINUE and s.local_response is None
    assert s.request_body(b"data", True) is Action.CONTINUE and s.request.body == b"data"
    s.close()


def test_trap_raise_and_no_reload(traps_survive, make_plugin):
    p = bad(make_plugin, failure_policy="raise", reload_on_failure=False)
    with pytest.raises(pw.PluginCrash) as e:
        fatal(p, "trap")
    assert isinstance(e.value.cause, pw.Trap)
    with pytest.raises(pw.PluginCrash):  # the VM stays failed
        p.http_stream().request_headers(REQUEST)


def test_proc_exit(traps_survive, make_plugin):
    p = bad(make_plugin)
    s, a = fatal(p, "proc_exit")
    assert isinstance(s.error, pw.PluginExit) and s.error.exit_code == 3
    assert s.local_response.status == 503


def test_stack_overflow(traps_survive, make_plugin):
    p = bad(make_plugin)
    s, a = fatal(p, "stack")
    # clang's shadow stack in linear memory may run out before the wasm stack does
    assert isinstance(s.error.cause, pw.Trap)
    assert s.error.cause.code in (pw.TrapCode.STACK_OVERFLOW, pw.TrapCode.MEMORY_OUT_OF_BOUNDS)


@pytest.mark.capability("deadline")
def test_infinite_loop_hits_the_deadline(traps_survive, make_plugin):
    p = bad(make_plugin, limits=pw.StoreLimits(deadline=0.2))
    s, a = fatal(p, "loop")
    assert a is Action.PAUSE and s.error.cause.code is pw.TrapCode.INTERRUPTED


@pytest.mark.capability("memory_limit", "exact_memory_limit")
def test_memory_growth_is_capped(make_plugin):
    p = bad(make_plugin, limits=pw.StoreLimits(memory_bytes=4 << 20))
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-bad", "grow")]) is Action.CONTINUE
    grown = [m for m in p.logs if "memory.grow failed" in m]
    assert grown and int(grown[0].split("memory now ")[1].split()[0]) <= 64  # 16-page steps stop at 4 MiB


@pytest.mark.parametrize("where", ["context_create", "response_headers", "done", "log", "delete", "request_body"])
def test_failures_in_other_callbacks(traps_survive, make_plugin, where):
    p = bad(make_plugin, configuration=f"fail_in={where}")
    s = p.http_stream()
    s.request_headers(REQUEST)
    s.request_body(b"x", True)
    s.response_headers({":status": "200"})
    s.close()
    assert s.failed and s.error.callback == f"proxy_on_{where}"


def test_failure_in_configure(traps_survive, make_plugin):
    with pytest.raises(pw.PluginStartError) as e:
        bad(make_plugin, configuration="fail_in=configure")
    assert isinstance(e.value.cause, pw.PluginCrash)


def test_failure_in_tick(traps_survive, make_plugin, host):
    p = bad(make_plugin, configuration="fail_in=tick\ntick_ms=10")
    host.advance(ms=10)
    assert p.failed
    host.advance(1)  # the reload backoff
    with p.http_stream() as s:  # reloaded
        assert s.request_headers(REQUEST) is Action.CONTINUE


@pytest.mark.capability("memory_limit", "exact_memory_limit")
def test_the_default_limits_are_decided_where_the_plugin_is_loaded(make_plugin, monkeypatch):
    # With no PluginConfig.limits, the process that loads the plugin resolves the default once and
    # a worker hosting the plugin gets it in the configuration, instead of a default of its own
    # (a worker never sees this process's DEFAULT_PLUGIN_LIMITS: the tests patch it, a user may not).
    from proxywasm_vm._proxywasm import _plugin

    small = pw.StoreLimits(memory_bytes=type(_plugin.DEFAULT_PLUGIN_LIMITS.memory_bytes)(4 << 20),
                           deadline=_plugin.DEFAULT_PLUGIN_LIMITS.deadline)
    monkeypatch.setattr(_plugin, "DEFAULT_PLUGIN_LIMITS", small)
    p = bad(make_plugin)
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("x-pwvm-bad", "grow")]) is Action.CONTINUE
    grown = [m for m in p.logs if "memory.grow failed" in m]
    assert grown and int(grown[0].split("memory now ")[1].split()[0]) <= 64
