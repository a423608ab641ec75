"""With no limits configured, a plugin that loops, recurses or bombs memory in a callback gets its
stream the failure policy and the next stream is served: on every backend and isolation mode.

Times to policy are measured, not asserted: they are printed and appended to
``_helpers.TIMINGS_FILE`` for the report."""

from __future__ import annotations

import dataclasses
import time

import pytest
from _helpers import report_time

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST

pytestmark = pytest.mark.default_limits


def _bad(make_plugin, **config):
    return make_plugin("c_bad_guest", vm_id="bad_defaults", root_id="bad_root", **config)


def _served(p) -> None:
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is Action.CONTINUE and not s.failed


def test_default_plugin_limits_are_on():
    cfg = pw.PluginConfig()
    assert cfg.limits is None and cfg.start_deadline == 5.0
    from proxywasm_vm._proxywasm._plugin import DEFAULT_PLUGIN_LIMITS

    assert DEFAULT_PLUGIN_LIMITS.deadline == 0.5 and DEFAULT_PLUGIN_LIMITS.memory_bytes == 512 << 20
    with pytest.raises(ValueError):
        pw.PluginConfig(start_deadline=0)


@pytest.mark.parametrize("mode", ["loop", "stack"])
def test_runaway_callback_gets_the_policy_by_default(traps_survive, host, make_plugin, backend_name, mode):
    p = _bad(make_plugin)
    _served(p)
    s = p.http_stream()
    t0 = time.monotonic()
    a = s.request_headers(REQUEST + [("x-pwvm-bad", mode)], True)
    report_time(backend_name, f"{mode} -> 503", time.monotonic() - t0)
    assert a is Action.PAUSE and s.failed and s.local_response.status == 503
    cause = s.error.cause
    assert isinstance(cause, pw.Trap)
    if mode == "loop":
        assert cause.code is pw.TrapCode.INTERRUPTED
    else:  # clang's shadow stack in linear memory may run out before the wasm stack does
        assert cause.code in (pw.TrapCode.STACK_OVERFLOW, pw.TrapCode.MEMORY_OUT_OF_BOUNDS,
                              pw.TrapCode.MEMORY_LIMIT)
    s.close()
    host.advance(1.0)  # the reload backoff (1 s on the host's manual clock)
    _served(p)  # the next stream, on a fresh VM


def test_memory_bomb_stops_at_the_default_cap(traps_survive, host, make_plugin, backend_name):
    # The default memory cap is what is tested, not the default deadline: with both cores busy,
    # growing to 512 MiB once took longer than the 0.5 s callback deadline (the stream then failed
    # INTERRUPTED), so the deadline here is generous and the memory cap keeps its default.
    from proxywasm_vm._proxywasm._plugin import DEFAULT_PLUGIN_LIMITS

    p = _bad(make_plugin, limits=dataclasses.replace(DEFAULT_PLUGIN_LIMITS, deadline=60.0))
    assert p.config.limits.memory_bytes == 512 << 20
    s = p.http_stream()
    t0 = time.monotonic()
    a = s.request_headers(REQUEST + [("x-pwvm-bad", "grow")], True)
    report_time(backend_name, "grow -> stopped", time.monotonic() - t0)
    grown = [m for m in p.logs if "memory.grow failed" in m]
    if s.failed:  # wasmer in its worker: the runtime may abort at the limit, a MEMORY_LIMIT trap
        assert a is Action.PAUSE and s.local_response.status == 503
        assert s.error.cause.code is pw.TrapCode.MEMORY_LIMIT
    else:
        assert a is Action.CONTINUE and grown
        pages = int(grown[0].split("memory now ")[1].split()[0])
        slack = 0 if p.engine.capabilities.exact_memory_limit else (16 << 20) // 65536 + 16
        assert pages <= (512 << 20) // 65536 + slack  # the default 512 MiB cap, not 4 GiB
    s.close()
    host.advance(1.0)  # past the reload backoff, if the VM failed
    _served(p)


def test_loop_in_the_start_phase_is_a_start_error(traps_survive, make_plugin, backend_name):
    # start_deadline set short here only to keep the suite quick; the default is 5 s
    t0 = time.monotonic()
    with pytest.raises(pw.PluginStartError) as e:
        _bad(make_plugin, configuration="fail_in=configure\nfail_mode=loop", start_deadline=0.6)
    report_time(backend_name, "configure loop -> start error", time.monotonic() - t0)
    assert "interrupted" in str(e.value).lower()


def test_unlimited_plugin_still_runs(make_plugin):
    p = _bad(make_plugin, limits=pw.StoreLimits.unlimited())
    _served(p)
