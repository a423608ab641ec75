"""A hostile or broken guest never crashes the host: statuses for misuse, failure policies for crashes,
and property tests driving every host function with random arguments."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm import Action
from proxywasm_vm._proxywasm._hostcalls import HOST_FUNCTIONS

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


def test_trap_fail_closed_then_reload(traps_survive, make_plugin):
    p = bad(make_plugin)
    s, a = fatal(p, "trap")
    assert a is Action.PAUSE and s.local_response.status == 503 and s.failed
    assert isinstance(s.error.cause, pw.Trap) and s.error.cause.code is pw.TrapCode.UNREACHABLE
    assert s.error.callback == "proxy_on_request_headers"
    s.close()
    assert p.failed
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
    with p.http_stream() as s:  # reloaded
        assert s.request_headers(REQUEST) is Action.CONTINUE


# ------------------------------------------------------------------------------ property-based tests


def _trampolines() -> str:
    """A module importing every host function, with an export per function forwarding its arguments."""
    imports, exports = [], []
    for i, ((mod, name), (ty, _fn, _err)) in enumerate(sorted(HOST_FUNCTIONS.items())):
        if name in ("proc_exit", "proc_raise", "abort", "seed"):
            continue
        params = " ".join(v.value for v in ty.params)
        res = " ".join(v.value for v in ty.results)
        sig = (f"(param {params})" if params else "") + (f" (result {res})" if res else "")
        imports.append(f'(import "{mod}" "{name}" (func $f{i} {sig}))')
        gets = " ".join(f"(local.get {j})" for j in range(len(ty.params)))
        exports.append(f'(func (export "{mod}.{name}") {sig} (call $f{i} {gets}))')
    return f"""(module {' '.join(imports)}
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 32768))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
        (local.set $p (global.get $heap))
        (if (i32.gt_u (local.get $n) (i32.const 16384)) (then (return (i32.const 0))))
        (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
        (if (i32.gt_u (global.get $heap) (i32.const 65000)) (then (global.set $heap (i32.const 32768))))
        (local.get $p))
      {' '.join(exports)})"""


_u32 = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 16, 255, 1024, 32768, 65532, 65535, 65536, 0x7FFFFFFF,
                                  0x80000000, 0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFF]),
                 st.integers(0, 0xFFFFFFFF))
_i64 = st.one_of(st.sampled_from([0, 1, -1, 2**63 - 1, -2**63]), st.integers(-2**63, 2**63 - 1))
_NAMES = sorted(n for n in HOST_FUNCTIONS if n[1] not in ("proc_exit", "proc_raise", "abort", "seed"))


@pytest.fixture
def fuzz_vm(host_here, host):
    http = pw.CallbackHttpDispatcher(lambda r: (200, {}, b""))
    host.http = http
    p = pw.Plugin(pw.PluginConfig(name="fuzz", vm_id="fuzz"), _trampolines(), host=host)
    s = p.http_stream()
    s.request_headers(REQUEST)
    s.request_body(b"body bytes")
    vm = s._vm
    vm.memory.write(0, bytes(range(256)) * 64)
    return vm, s._ctx


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_host_calls_never_crash(fuzz_vm, data):
    vm, ctx = fuzz_vm
    key = data.draw(st.sampled_from(_NAMES))
    ty = HOST_FUNCTIONS[key][0]
    args = [data.draw(_i64 if t is pw.ValType.I64 else _u32) for t in ty.params]
    fn = vm.instance.exports[f"{key[0]}.{key[1]}"]
    args = [a - (1 << 32) if t is pw.ValType.I32 and a >= 1 << 31 else a for a, t in zip(args, ty.params)]
    r = vm.call_in(ctx, key[1], fn, *args)  # must not raise: the guest gets a status
    vm.ctx = ctx
    if ty.results:
        r &= 0xFFFFFFFF
        if key[0] == "env":
            assert r in set(pw.Status), (key, args, r)
        else:
            assert r < 100, (key, args, r)  # a WASI errno
    assert vm.failed is None
