"""wasmer's limits in its worker (proxywasm_vm._guard), armed through the compiled helper
(backends/wasmer/_guard.c) and, with PWVM_GUARD_NO_HELPER set, from Python: the same behaviour
both ways (deadline per outermost call, memory cap on memory.grow, nested calls under the outer
call's limits, the worker going on after each call)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _helpers import HANG_GUARD

import proxywasm_vm as pw
from proxywasm_vm import PAGE_SIZE, FuncType, TrapCode, ValType

I32 = ValType.I32
SLACK_PAGES = (16 << 20) // PAGE_SIZE + 16  # the guard's slack (exact_memory_limit is False)

MODULE = """(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "spin") (loop (br 0)))
  (func (export "one") (result i32) i32.const 1)
  ;; busy for about n ms-ish units: a countdown loop
  (func (export "count") (param i32) (result i32) (local i32)
    (block (loop (br_if 1 (i32.eqz (local.get 0)))
                 (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
                 (local.set 1 (i32.add (local.get 1) (i32.const 1))) (br 0)))
    local.get 1)
  (func (export "callh") (param i32) (result i32) (call $h (local.get 0)))
  (func (export "bomb") (result i32) (local i32)
    (block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                 (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br 0)))
    local.get 0))"""


@pytest.fixture(params=["helper", "python"])
def engine(request, require_backend, monkeypatch):
    """A wasmer engine whose (new) worker arms limits through the helper, or from Python."""
    require_backend("wasmer")
    if request.param == "python":
        monkeypatch.setenv("PWVM_GUARD_NO_HELPER", "1")
    else:
        monkeypatch.delenv("PWVM_GUARD_NO_HELPER", raising=False)
    engine = pw.Engine("wasmer")
    if engine.backend.isolation != "process":
        pytest.skip("wasmer runs in-process here: no guard")
    engine.worker_info  # start the worker now, under this environment
    return engine


def _instance(engine, limits, h=lambda x: x + 1):
    store = pw.Store(engine, limits=limits)
    f = pw.Func(store, FuncType([I32], [I32]), h)
    return pw.Instance(store, pw.Module(engine, pw.wat2wasm(MODULE)), {"env": {"h": f}}).exports


def test_deadline_ends_the_worker_and_the_engine_goes_on(engine):
    ex = _instance(engine, pw.StoreLimits(deadline=0.2))
    pid = engine.worker_pid
    assert ex["one"]() == 1
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as e:
        ex["spin"]()
    assert e.value.code is TrapCode.INTERRUPTED and 0.1 <= time.monotonic() - t0 < HANG_GUARD
    ex2 = _instance(engine, pw.StoreLimits(deadline=0.2))
    assert ex2["one"]() == 1 and engine.worker_pid != pid  # a new worker


def test_deadline_is_per_call_and_disarmed_between_calls(engine):
    ex = _instance(engine, pw.StoreLimits(deadline=0.3))
    pid = engine.worker_pid
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.6:  # many calls, together longer than the deadline
        assert ex["callh"](1) == 2 and ex["count"](1000) == 1000
    time.sleep(0.4)  # idle past the deadline: no timer left armed
    assert ex["one"]() == 1 and engine.worker_pid == pid


def test_a_shorter_deadline_after_a_longer_one_is_kept(engine):
    """The watchdog planned to look at the long deadline: the short one that follows wakes it."""
    long_ = _instance(engine, pw.StoreLimits(deadline=30.0))
    short = _instance(engine, pw.StoreLimits(deadline=0.2))
    assert long_["count"](1000) == 1000 and long_["callh"](1) == 2
    t0 = time.monotonic()
    with pytest.raises(pw.Trap) as e:
        short["spin"]()
    assert e.value.code is TrapCode.INTERRUPTED and time.monotonic() - t0 < 10.0


def test_nested_calls_run_under_the_outer_calls_limits(engine):
    holder = {}
    ex = _instance(engine, pw.StoreLimits(deadline=0.2), h=lambda x: holder["ex"]["count"](x) + 1)
    holder["ex"] = ex
    assert ex["callh"](10) == 11  # wasm -> host -> wasm, and back
    t0 = time.monotonic()
    holder["ex"] = {"count": lambda x: ex["spin"]()}  # the nested call never returns
    with pytest.raises(pw.Trap) as e:
        ex["callh"](1)
    assert e.value.code is TrapCode.INTERRUPTED and time.monotonic() - t0 < HANG_GUARD


def test_memory_cap_makes_memory_grow_fail_and_is_lifted_after_the_call(engine):
    cap = 8 << 20
    ex = _instance(engine, pw.StoreLimits(memory_bytes=cap, deadline=5.0))
    grown = ex["bomb"]()
    assert cap // PAGE_SIZE - 1 - SLACK_PAGES <= grown <= cap // PAGE_SIZE + SLACK_PAGES
    # still at the cap on the next call: past it by SLACK at most, not by SLACK more per call (a few
    # pages of drift: the process's own memory moves a little between two calls)
    assert ex["bomb"]() <= 16
    # between calls the worker is not limited: a store without a cap grows far past that one's
    other = _instance(engine, pw.StoreLimits.unlimited())
    assert other["memory"].grow(cap // PAGE_SIZE + 2 * SLACK_PAGES) == 1
    with pytest.raises(pw.LimitError):
        ex["memory"].grow(cap // PAGE_SIZE)


def _run_guarded(script: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    from proxywasm_vm.backends.wasmer import BACKEND

    python = BACKEND.worker_python()  # type: ignore[attr-defined]
    env = {k: v for k, v in os.environ.items() if k != "PWVM_GUARD_NO_HELPER"}
    env.update(env_extra)
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from proxywasm_vm import _guard
        _guard.enable()  # as a worker does
        import proxywasm_vm as pw
        from proxywasm_vm.backends.wasmer import _adapter
        engine = pw.Engine("wasmer")
        print("helper", _guard._helper is not None, repr(_adapter._GUARD_HELPER[0]), flush=True)
    """ % os.path.dirname(os.path.dirname(os.path.abspath(pw.__file__)))) + textwrap.dedent(script)
    return subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("disabled", [False, True], ids=["helper", "python"])
def test_the_worker_uses_the_helper_unless_disabled_and_the_kernel_ends_a_late_call(require_backend, disabled):
    require_backend("wasmer")
    out = _run_guarded("""
        store = pw.Store(engine, limits=pw.StoreLimits(deadline=0.1, memory_bytes=4 << 20))
        ex = pw.Instance(store, pw.Module(engine, pw.wat2wasm('(module (func (export "spin") (loop (br 0))))'))).exports
        print("spinning", flush=True)
        ex["spin"]()
        print("survived", flush=True)
    """, {"PWVM_GUARD_NO_HELPER": "1"} if disabled else {})
    first = out.stdout.splitlines()[0] if out.stdout else ""
    if disabled:
        assert first == "helper False 'disabled by PWVM_GUARD_NO_HELPER'", out.stderr
    else:
        assert first == "helper True ''", out.stderr
    assert "spinning" in out.stdout and "survived" not in out.stdout
    assert out.returncode == -signal.SIGALRM, (out.returncode, out.stderr)


def test_helper_needs_an_enabled_guard(require_backend):
    """Outside a worker (the guard not enabled) the helper is never installed: nothing is armed."""
    require_backend("wasmer")
    from proxywasm_vm import _guard

    class Lib:
        def pwvm_guard_init(self):
            raise AssertionError("initialised in a process whose guard is not enabled")

    if not _guard.enabled():
        assert _guard.use_helper(Lib()) is False and _guard._helper is None
    assert sys.modules["proxywasm_vm._guard"] is _guard


# ---- a module's own memory, capped by its maximum (backends/wasmer/_adapter.py: _memory_as_import) ----

BOMB = """(module {imports}
  (memory (export "memory") {limits})
  (data (i32.const 16) "hello")
  (func (export "bomb") (result i32) (local i32)
    (block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                 (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br 0)))
    local.get 0)
  (func (export "size") (result i32) memory.size)
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))"""


@pytest.fixture
def worker_engine(require_backend):
    require_backend("wasmer")
    engine = pw.Engine("wasmer")
    if engine.backend.isolation != "process":
        pytest.skip("wasmer runs in-process here: no cap")
    return engine


@pytest.mark.parametrize("imports", ["", '(import "env" "h" (func (param i32) (result i32)))'])
@pytest.mark.parametrize("limits,cap_pages,grown", [
    ("1", 64, 63),          # no maximum: the cap
    ("2 10", 64, 8),        # a maximum under the cap: the module's
    ("1 1000", 64, 63),     # a maximum over the cap: the cap
    ("3", None, None),      # no cap at all: far past 64 pages (checked below)
])
def test_a_modules_own_memory_stops_exactly_at_the_cap(worker_engine, imports, limits, cap_pages, grown):
    engine = worker_engine
    wat = BOMB.format(imports=imports, limits=limits)
    mod = pw.Module(engine, pw.wat2wasm(wat))
    # what the module says of itself is unchanged: no import of its memory, the memory's own limits
    assert [(i.module, i.name) for i in mod.imports] == ([("env", "h")] if imports else [])
    lo, _, hi = limits.partition(" ")
    assert [e.type for e in mod.exports if e.name == "memory"][0].limits == pw.Limits(int(lo), int(hi) if hi else None)
    limits_ = (pw.StoreLimits(memory_bytes=cap_pages * PAGE_SIZE) if cap_pages is not None
               else pw.StoreLimits(memory_bytes=None))
    store = pw.Store(engine, limits=limits_)
    h = pw.Func(store, FuncType([I32], [I32]), lambda x: x)
    ex = pw.Instance(store, mod, {"env": {"h": h}} if imports else {}).exports
    assert bytes(ex["load"](16 + i) for i in range(5)) == b"hello"  # the data segment filled it
    if cap_pages is None:
        ex["memory"].grow(200)  # (from Python: no cap either)
        assert ex["size"]() == 203
        return
    assert ex["bomb"]() == grown and ex["bomb"]() == 0  # exactly: -1 at the cap (or the maximum)
    assert ex["size"]() == int(lo) + grown and ex["memory"].size == int(lo) + grown
    ex["fill"](100, 7, 3)  # bulk memory on it
    assert ex["memory"].read(100, 4) == b"\x07\x07\x07\x00"
    assert ex["memory"].type.limits == pw.Limits(int(lo), int(hi) if hi else None)


def test_a_serialized_module_keeps_its_memory_capped(worker_engine):
    engine = worker_engine
    mod = pw.Module(engine, pw.wat2wasm(BOMB.format(imports="", limits="1")))
    again = pw.Module.deserialize(engine, mod.serialize())
    assert again.imports == [] and [e.name for e in again.exports] == [e.name for e in mod.exports]
    ex = pw.Instance(pw.Store(engine, limits=pw.StoreLimits(memory_bytes=16 * PAGE_SIZE)), again).exports
    assert ex["bomb"]() == 15


def test_a_module_compiled_by_llvm_stays_capped_by_the_guard(require_backend):
    require_backend("wasmer")
    engine = pw.Engine("wasmer", pw.EngineConfig(options=(("compiler", "llvm"),)))
    if engine.backend.isolation != "process":
        pytest.skip("wasmer runs in-process here: no cap")
    cap = 8 << 20
    ex = pw.Instance(pw.Store(engine, limits=pw.StoreLimits(memory_bytes=cap)),
                     pw.Module(engine, pw.wat2wasm(BOMB.format(imports="", limits="1")))).exports
    grown = ex["bomb"]()
    assert cap // PAGE_SIZE - 1 - SLACK_PAGES <= grown <= cap // PAGE_SIZE + SLACK_PAGES
    ex["fill"](100, 7, 3)
    assert ex["memory"].read(100, 3) == b"\x07\x07\x07"


def test_a_module_with_its_memory_imported_is_serialized_with_a_mark(worker_engine):
    """An older proxywasm-vm sharing the compiled-module cache must not load it (it would not give its
    instances their memory): wasmer refuses the marked bytes, and the cache rebuilds the entry."""
    engine = worker_engine
    data = pw.Module(engine, pw.wat2wasm(BOMB.format(imports="", limits="1"))).serialize()
    assert data.startswith(b"pwvm-wasmer-own-memory\n")
    plain = pw.Module(engine, pw.wat2wasm('(module (func (export "f") (result i32) i32.const 1))')).serialize()
    assert not plain.startswith(b"pwvm-wasmer-own-memory\n")
    assert pw.Instance(pw.Store(engine), pw.Module.deserialize(engine, plain)).exports["f"]() == 1
    for bad in (data[len(b"pwvm-wasmer-own-memory\n"):], b"pwvm-wasmer-own-memory\n" + plain):
        with pytest.raises(pw.CompileError):
            pw.Module.deserialize(engine, bad)


def _serialized_outside_a_worker(wasm: bytes) -> bytes:
    """``wasm`` compiled and serialized by wasmer in a process whose guard is not enabled (as a
    proxywasm-vm from before the memory rewrite did in a worker too): its memory defined, no mark."""
    from proxywasm_vm.backends.wasmer import BACKEND

    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        import proxywasm_vm as pw
        engine = pw.Engine("wasmer", isolation="in-process")
        sys.stdout.write(pw.Module(engine, bytes.fromhex(sys.stdin.read())).serialize().hex())
    """ % os.path.dirname(os.path.dirname(os.path.abspath(pw.__file__))))
    out = subprocess.run([BACKEND.worker_python(), "-c", code], input=wasm.hex(),  # type: ignore[attr-defined]
                         capture_output=True, text=True, timeout=120, check=True)
    return bytes.fromhex(out.stdout)


def test_a_module_serialized_with_its_memory_defined_is_compiled_again(worker_engine, tmp_path):
    """A compiled-module cache entry from before the memory rewrite (no mark, the memory defined) would
    leave the module capped by the kernel's limit around every call (a read of /proc/self/statm and two
    setrlimit per call, SLACK past the cap): a worker refuses it, so Module.cached compiles it again."""
    import hashlib

    wasm = pw.wat2wasm(BOMB.format(imports="", limits="1"))
    old = _serialized_outside_a_worker(wasm)
    assert old and not old.startswith(b"pwvm-wasmer-own-memory\n")
    with pytest.raises(pw.CompileError, match="memory defined"):
        pw.Module.deserialize(worker_engine, old)
    engine = pw.Engine("wasmer", pw.EngineConfig(cache_dir=tmp_path))
    entry = engine.cache_dir / f"{hashlib.sha256(wasm + engine.config.fingerprint().encode()).hexdigest()}.cwasm"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(old)
    mod = pw.Module.cached(engine, wasm)
    assert entry.read_bytes().startswith(b"pwvm-wasmer-own-memory\n")  # rebuilt
    ex = pw.Instance(pw.Store(engine, limits=pw.StoreLimits(memory_bytes=16 * PAGE_SIZE)), mod).exports
    assert ex["bomb"]() == 15  # exactly at the cap
    # a module without a memory of its own is the same either way: its old entry still loads
    plain = pw.wat2wasm('(module (func (export "f") (result i32) i32.const 1))')
    assert pw.Instance(pw.Store(engine), pw.Module.deserialize(engine, _serialized_outside_a_worker(plain))
                       ).exports["f"]() == 1
