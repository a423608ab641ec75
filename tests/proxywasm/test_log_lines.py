"""Plugin log records are lines: WASI stdout/stderr is buffered per VM and fd and logged one
record per line (stdout at INFO, stderr at ERROR, as Envoy logs them); a partial line is logged
at the end of the callback, when it reaches STDIO_LINE_MAX bytes, or when the VM fails;
a ``proxy_log`` message with newlines becomes one record per line."""

from __future__ import annotations

import proxywasm_vm as pw
from proxywasm_vm._proxywasm._vm import STDIO_LINE_MAX

from .conftest import REQUEST

INFO, ERROR, CRITICAL = pw.LogLevel.INFO, pw.LogLevel.ERROR, pw.LogLevel.CRITICAL


def _wat(body: str, data: str = "") -> str:
    """A plugin whose proxy_on_request_headers runs ``body``. ``(call $w fd ptr len)`` is one
    fd_write of memory[ptr:ptr+len], ``(call $fill ptr n)`` writes n bytes of 'x';
    ``data`` holds the module's data segments."""
    return f"""(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      {data}
      (func $w (param $fd i32) (param $ptr i32) (param $len i32)
        (i32.store (i32.const 16) (local.get $ptr))
        (i32.store (i32.const 20) (local.get $len))
        (drop (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24))))
      (func $fill (param $p i32) (param $n i32)  ;; n bytes of 'x'
        (loop $l (if (local.get $n) (then
          (i32.store8 (local.get $p) (i32.const 120))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $l)))))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {body} (i32.const 0)))"""


def _records(p: pw.Plugin) -> list[tuple[pw.LogLevel, str]]:
    return [(r.level, r.message) for r in p.log_records()]


def _request(p: pw.Plugin) -> int:
    with p.http_stream() as s:
        s.request_headers(REQUEST, True)
        return s.context_id


def test_fragments_become_lines(host):
    # "al" + "pha\nbe" + (stderr "err one\n") + "ta": alpha, err one, then the partial "beta"
    # when the callback ends, in the stream's context.
    p = pw.Plugin(pw.PluginConfig(name="frag"), _wat(
        "(call $w (i32.const 1) (i32.const 100) (i32.const 2)) (call $w (i32.const 1) (i32.const 102) (i32.const 6))"
        "(call $w (i32.const 2) (i32.const 200) (i32.const 8)) (call $w (i32.const 1) (i32.const 108) (i32.const 2))",
        '(data (i32.const 100) "alpha\\nbeta") (data (i32.const 200) "err one\\n")'), host=host)
    cid = _request(p)
    assert _records(p) == [(INFO, "alpha"), (ERROR, "err one"), (INFO, "beta")]
    assert {r.context_id for r in p.log_records()} == {cid}
    _request(p)  # nothing carried over from the last callback
    assert _records(p)[3:] == [(INFO, "alpha"), (ERROR, "err one"), (INFO, "beta")]


def test_empty_lines_and_trailing_newline(host):
    p = pw.Plugin(pw.PluginConfig(name="nl"), _wat("(call $w (i32.const 1) (i32.const 100) (i32.const 6))",
                                                   '(data (i32.const 100) "a\\n\\nb\\n\\n")'), host=host)
    _request(p)
    assert _records(p) == [(INFO, "a"), (INFO, ""), (INFO, "b"), (INFO, "")]


def test_a_long_partial_line_is_logged_in_bounded_pieces(host):
    n = 2 * STDIO_LINE_MAX + 100
    p = pw.Plugin(pw.PluginConfig(name="long"), _wat(
        f"(call $fill (i32.const 1024) (i32.const {n}))"
        f"(call $w (i32.const 1) (i32.const 1024) (i32.const {n}))"), host=host)
    _request(p)
    assert [(lvl, len(m), set(m)) for lvl, m in _records(p)] == [
        (INFO, STDIO_LINE_MAX, {"x"}), (INFO, STDIO_LINE_MAX, {"x"}), (INFO, 100, {"x"})]


def test_partial_line_is_logged_before_the_crash(host):
    p = pw.Plugin(pw.PluginConfig(name="crash"), _wat(
        "(call $w (i32.const 2) (i32.const 100) (i32.const 11)) unreachable",
        '(data (i32.const 100) "dying words")'), host=host)
    with p.http_stream() as s:
        s.request_headers(REQUEST, True)
        assert s.local_response is not None and s.local_response.status == 503  # fail_closed
    recs = _records(p)
    assert recs[0] == (ERROR, "dying words")
    assert recs[1][0] == ERROR and "proxy_on_request_headers" in recs[1][1]  # the host's one failure record
    assert len(recs) == 2


def test_stdout_below_the_log_level_is_dropped(engine):
    host = pw.ProxyWasmHost(engine=engine, clock=pw.ManualClock(), logger=pw.MemoryLogger(level=pw.LogLevel.WARN))
    try:
        p = pw.Plugin(pw.PluginConfig(name="lvl"), _wat(
            "(call $w (i32.const 1) (i32.const 100) (i32.const 4))"
            "(call $w (i32.const 2) (i32.const 100) (i32.const 4))",
            '(data (i32.const 100) "x\\ny\\n")'), host=host)
        _request(p)
        assert _records(p) == [(ERROR, "x"), (ERROR, "y")]
    finally:
        host.close()


def test_proxy_log_with_newlines_gives_one_record_per_line(host):
    p = pw.Plugin(pw.PluginConfig(name="plog"), _wat(
        "(drop (call $log (i32.const 3) (i32.const 100) (i32.const 12)))"
        "(drop (call $log (i32.const 2) (i32.const 200) (i32.const 4)))",
        '(data (i32.const 100) "one\\ntwo\\n\\nend") (data (i32.const 200) "solo")'), host=host)
    _request(p)
    warn = pw.LogLevel.WARN
    assert _records(p) == [(warn, "one"), (warn, "two"), (warn, ""), (warn, "end"), (INFO, "solo")]
