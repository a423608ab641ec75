"""Clocks as plugins see them: ManualClock's realistic, non-zero start, and the WASI clock ids
(0 realtime, 1 monotonic, 2 process CPU time, 3 thread CPU time; the CPU-time clocks read the
host clock's monotonic time, never the host process's CPU time)."""

from __future__ import annotations

import time

import pytest

import proxywasm_vm as pw

from .conftest import REQUEST

# proxy_on_request_headers logs "<id>:<ns>" for every WASI clock id 0..3 (or "<id>:errno <n>").
CLOCKS_WAT = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $log_clock (param $id i32) (local $err i32) (local $v i64) (local $p i32)
    (local.set $err (call $clock (local.get $id) (i64.const 1) (i32.const 8)))
    (local.set $v (if (result i64) (local.get $err) (then (i64.extend_i32_u (local.get $err)))
                                                     (else (i64.load (i32.const 8)))))
    (local.set $p (i32.const 512))
    (loop $digits  ;; decimal, written backwards so that it ends at 512
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i64.store8 (local.get $p) (i64.add (i64.const 48) (i64.rem_u (local.get $v) (i64.const 10))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $v) (i64.const 0))))
    (if (local.get $err) (then  ;; "errno "
      (local.set $p (i32.sub (local.get $p) (i32.const 6)))
      (i32.store (local.get $p) (i32.const 0x6e727265))
      (i32.store16 (i32.add (local.get $p) (i32.const 4)) (i32.const 0x206f))))
    (local.set $p (i32.sub (local.get $p) (i32.const 2)))
    (i32.store8 (local.get $p) (i32.add (i32.const 48) (local.get $id)))
    (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 58))
    (drop (call $log (i32.const 2) (local.get $p) (i32.sub (i32.const 512) (local.get $p)))))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $log_clock (i32.const 0)) (call $log_clock (i32.const 1))
    (call $log_clock (i32.const 2)) (call $log_clock (i32.const 3)) (call $log_clock (i32.const 4))
    (i32.const 0)))"""


def _read_clocks(p: pw.Plugin) -> dict[int, str]:
    with p.http_stream() as s:
        s.request_headers(REQUEST, True)
        logs = s.logs
    return {int(m.split(":")[0]): m.split(":", 1)[1] for m in logs}


def test_manual_clock_starts_at_documented_non_zero_times():
    c = pw.ManualClock()
    assert c.now_ns() == pw.ManualClock.WALL_START_NS == 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z
    assert c.monotonic_ns() == pw.ManualClock.MONOTONIC_START_NS == 1000 * 10**9
    assert time.gmtime(c.now_ns() // 10**9)[:3] == (2025, 1, 1)
    # it moves only when advanced, both clocks by the same amount
    assert (c.now_ns(), c.monotonic_ns()) == (c.WALL_START_NS, c.MONOTONIC_START_NS)
    c.advance(1.5, ms=2, ns=3)
    assert c.now_ns() - c.WALL_START_NS == c.monotonic_ns() - c.MONOTONIC_START_NS == 1_502_000_003
    with pytest.raises(ValueError):
        c.advance(-1)


def test_manual_clock_start_values_can_be_chosen():
    c = pw.ManualClock(5 * 10**18, monotonic_start_ns=7)
    assert (c.now_ns(), c.monotonic_ns()) == (5 * 10**18, 7)
    assert pw.ManualClock(0).now_ns() == 0  # the epoch is a valid wall time
    for bad in (0, -1):
        with pytest.raises(ValueError, match="monotonic start must be positive"):
            pw.ManualClock(monotonic_start_ns=bad)
    with pytest.raises(ValueError, match="Unix epoch"):
        pw.ManualClock(-1)


def test_wasi_clocks_under_a_manual_clock(host):
    p = pw.Plugin(pw.PluginConfig(name="clocks"), CLOCKS_WAT, host=host)
    clock = host.clock
    wall, mono = clock.now_ns(), clock.monotonic_ns()
    assert _read_clocks(p) == {0: str(wall), 1: str(mono), 2: str(mono), 3: str(mono), 4: "errno 58"}  # ENOTSUP
    host.advance(2.25)
    assert _read_clocks(p) == {0: str(wall + 2_250_000_000), 1: str(mono + 2_250_000_000),
                               2: str(mono + 2_250_000_000), 3: str(mono + 2_250_000_000), 4: "errno 58"}


def test_cpu_time_clocks_read_the_monotonic_clock_not_the_process_cpu_time(engine):
    # A SystemClock host (the host may run in a worker: CLOCK_MONOTONIC is system-wide).
    host = pw.ProxyWasmHost(engine=engine, logger=pw.MemoryLogger())
    try:
        p = pw.Plugin(pw.PluginConfig(name="clocks"), CLOCKS_WAT, host=host)
        before_wall, before = time.time_ns(), time.monotonic_ns()
        got = _read_clocks(p)
        after, after_wall = time.monotonic_ns(), time.time_ns()
        assert before_wall <= int(got[0]) <= after_wall
        for cid in (1, 2, 3):
            assert before <= int(got[cid]) <= after, (cid, got)
        assert int(got[1]) <= int(got[2]) <= int(got[3])  # read in this order from one monotonic clock
    finally:
        host.close()
