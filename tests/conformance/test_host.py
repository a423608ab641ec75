"""Host functions: start sections, re-entrancy, the caller's memory, exceptions, the Linker."""

from __future__ import annotations

import subprocess
import sys

import pytest

import proxywasm_vm as pw
from proxywasm_vm import FuncType, TrapCode, ValType

from ._support import run_child

I32 = ValType.I32
V_V = FuncType()
I_V = FuncType([I32], [])
I_I = FuncType([I32], [I32])
II_V = FuncType([I32, I32], [])


# ---- start functions ---------------------------------------------------------------

START = """
(module
  (import "env" "hello" (func $hello (param i32)))
  (memory (export "memory") 1)
  (global $ran (mut i32) (i32.const 0))
  (func $start (call $hello (i32.const 7)) (global.set $ran (i32.const 1)) (i32.store (i32.const 0) (i32.const 99)))
  (start $start)
  (func (export "ran") (result i32) global.get $ran)
)
"""


def test_start_function_calls_an_import_at_instantiation(instantiate, store):
    calls = []
    inst = instantiate(START, {"env": {"hello": pw.Func(store, I_V, calls.append)}})
    assert calls == [7]  # during Instance(), before any export was called
    assert inst.exports["ran"]() == 1
    assert inst.exports["memory"].read_u32(0) == 99
    instantiate(START, {"env": {"hello": pw.Func(store, I_V, calls.append)}})
    assert calls == [7, 7]  # once per instance


def test_trap_in_start_function_fails_instantiation(instantiate, store):
    with pytest.raises(pw.Trap) as e:
        instantiate("(module (func $s unreachable) (start $s))")
    assert e.value.code is TrapCode.UNREACHABLE
    assert instantiate('(module (func (export "f") (result i32) i32.const 1))').exports["f"]() == 1


def test_host_exception_in_start_function_is_raised_unchanged(instantiate, store):
    boom = LookupError("from start")

    def hello(_):
        raise boom

    with pytest.raises(LookupError) as e:
        instantiate(START, {"env": {"hello": pw.Func(store, I_V, hello)}})
    assert e.value is boom
    inst = instantiate(START, {"env": {"hello": pw.Func(store, I_V, lambda _: None)}})
    assert inst.exports["ran"]() == 1


# ---- re-entrancy -----------------------------------------------------------------------

REENTER = """
(module
  (import "env" "host" (func $host (param i32) (result i32)))
  (func (export "down") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 1000))
      (else (i32.add (call $host (local.get 0)) (i32.const 1)))))
)
"""


def _reentrant(instantiate, store, at_bottom=None):
    holder = {}
    depths = []

    def host(n):
        depths.append(n)
        if n == 1 and at_bottom is not None:
            at_bottom()
        return holder["down"](n - 1) * 2

    inst = instantiate(REENTER, {"env": {"host": pw.Func(store, I_I, host)}})
    holder["down"] = inst.exports["down"]
    return inst.exports["down"], depths


def test_host_wasm_host_recursion(instantiate, store):
    down, depths = _reentrant(instantiate, store)
    # down(n) = 2*down(n-1) + 1, down(0) = 1000
    expected = 1000
    for _ in range(8):
        expected = expected * 2 + 1
    assert down(8) == expected
    assert depths == [8, 7, 6, 5, 4, 3, 2, 1]
    assert down(0) == 1000


def test_exception_deep_in_recursion_is_the_same_object(instantiate, store):
    err = KeyError("deep")

    def at_bottom():
        raise err

    down, depths = _reentrant(instantiate, store, at_bottom)
    with pytest.raises(KeyError) as e:
        down(6)
    assert e.value is err
    assert depths == [6, 5, 4, 3, 2, 1]
    # and the store is fine afterwards
    assert down(0) == 1000


#: A host function calling back into the export that called it, with no end (until ``limit`` is set).
#: In a child interpreter: overflowing the native stack must not be able to end the whole run.
UNBOUNDED = """
from proxywasm_vm import TrapCode
t = {"i32": ValType.I32, "f64": ValType.F64}[sys.argv[2]]
wat = ('(module (import "env" "host" (func $h (param T) (result T)))'
       '  (func (export "down") (param T) (result T) (T.add (call $h (local.get 0)) (T.const 1)))'
       '  (func (export "ok") (result i32) i32.const 7))').replace("T", sys.argv[2])
holder = {"limit": None}
calls = [0]

def host(n):
    calls[0] += 1
    if holder["limit"] is not None and n >= holder["limit"]:
        return 0
    return holder["down"](n + 1)

store = pw.Store(engine)
inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(wat)),
                   {"env": {"host": pw.Func(store, FuncType([t], [t]), host)}})
holder["down"] = inst.exports["down"]
base = sys.getrecursionlimit()
# Where the recursion limit strikes (in the host function, in the call machinery, at the boundary
# into or out of a host call) depends on the frames per level: try every alignment.
for limit in range(base, base + 12):
    sys.setrecursionlimit(limit)
    calls[0] = 0
    try:
        r = inst.exports["down"](0)
    except pw.Trap as e:
        assert e.code is TrapCode.STACK_OVERFLOW, (e.code, e.message)
    except RecursionError:
        pass
    else:
        raise AssertionError(f"unbounded recursion returned {r!r} after {calls[0]} host calls "
                             f"(recursion limit {limit})")
    assert calls[0] > 10, calls[0]  # it really recursed
    # the store and instance stay usable, re-entrancy included
    assert inst.exports["ok"]() == 7
    holder["limit"] = 5
    assert inst.exports["down"](0) == 6
    holder["limit"] = None
print("ok")
"""


@pytest.mark.parametrize("sig", ["i32", "f64"])  # the integer and the generic host-call paths
def test_unbounded_host_wasm_recursion_raises(backend_name, sig):
    """A Trap with STACK_OVERFLOW or a RecursionError, never a result; the store stays usable.

    (wasmer has no stack limit of its own: there Python's recursion limit ends it, on both
    sides of the worker boundary, and every request still gets its one answer.)"""
    run_child(backend_name, UNBOUNDED, sig)


def test_host_can_catch_a_trap_of_a_nested_call(instantiate, store):
    holder = {}

    def host(n):
        with pytest.raises(pw.Trap) as e:
            holder["boom"]()
        assert e.value.code is TrapCode.UNREACHABLE
        return n + 1

    inst = instantiate(
        """(module (import "env" "host" (func $h (param i32) (result i32)))
             (func (export "boom") unreachable)
             (func (export "go") (param i32) (result i32) (i32.mul (call $h (local.get 0)) (i32.const 10))))""",
        {"env": {"host": pw.Func(store, I_I, host)}},
    )
    holder["boom"] = inst.exports["boom"]
    assert inst.exports["go"](4) == 50  # the outer call never saw the inner trap
    assert inst.exports["go"](0) == 10


def test_trap_of_a_nested_call_propagates_through_the_host(instantiate, store):
    holder = {}
    seen = []

    def host(n):
        try:
            holder["boom"]()
        except pw.Trap as t:
            seen.append(t)
            raise
        return n

    inst = instantiate(
        """(module (import "env" "host" (func $h (param i32) (result i32)))
             (func (export "boom") unreachable)
             (func (export "go") (param i32) (result i32) (call $h (local.get 0))))""",
        {"env": {"host": pw.Func(store, I_I, host)}},
    )
    holder["boom"] = inst.exports["boom"]
    with pytest.raises(pw.Trap) as e:
        inst.exports["go"](1)
    assert e.value is seen[0] and e.value.code is TrapCode.UNREACHABLE


# ---- host exceptions ----------------------------------------------------------------------

RAISER = """
(module
  (import "env" "f" (func $f (param i32) (result i32)))
  (import "env" "g" (func $g (param f64) (result f64)))
  (func (export "call_f") (param i32) (result i32) (i32.add (call $f (local.get 0)) (i32.const 1)))
  (func (export "call_g") (param f64) (result f64) (call $g (local.get 0)))
  (func (export "ok") (result i32) i32.const 5)
)
"""


@pytest.mark.parametrize("exc", [ValueError("bad value"), RuntimeError("x"), KeyboardInterrupt(), SystemExit(3),
                                 pw.Trap(TrapCode.HOST_ERROR, "host said no"), pw.LinkError("custom")])
def test_host_exception_arrives_as_the_same_object(instantiate, store, exc):
    mode = {"raise": True}

    def f(x):
        if mode["raise"]:
            raise exc
        return x

    def g(x):  # the generic (non-integer) path of the host-call machinery
        if mode["raise"]:
            raise exc
        return x

    ex = instantiate(RAISER, {"env": {"f": pw.Func(store, I_I, f),
                                      "g": pw.Func(store, FuncType([ValType.F64], [ValType.F64]), g)}}).exports
    for name, arg in (("call_f", 1), ("call_g", 1.5)):
        with pytest.raises(type(exc)) as e:
            ex[name](arg)
        assert e.value is exc
    # the same store and instance keep working, with and without the host function
    assert ex["ok"]() == 5
    mode["raise"] = False
    assert ex["call_f"](41) == 42 and ex["call_g"](2.5) == 2.5


def test_store_used_after_trap_in_host_function(instantiate, store):
    count = {"n": 0}

    def f(x):
        count["n"] += 1
        if count["n"] % 2:
            raise ZeroDivisionError(x)
        return x * 3

    ex = instantiate(RAISER, {"env": {"f": pw.Func(store, I_I, f),
                                      "g": pw.Func(store, FuncType([ValType.F64], [ValType.F64]), lambda x: x)}}).exports
    for i in range(6):
        if i % 2 == 0:
            with pytest.raises(ZeroDivisionError):
                ex["call_f"](i)
        else:
            assert ex["call_f"](i) == 3 * i + 1
    # a second instance in the same store is unaffected
    other = instantiate(RAISER, {"env": {"f": pw.Func(store, I_I, lambda x: x),
                                         "g": pw.Func(store, FuncType([ValType.F64], [ValType.F64]), lambda x: x)}})
    assert other.exports["call_f"](1) == 2


def test_host_function_called_directly_from_python(store):
    err = OSError("direct")

    def f(x):
        if x < 0:
            raise err
        return x + 1

    fn = pw.Func(store, I_I, f)
    assert fn(1) == 2
    with pytest.raises(OSError) as e:
        fn(-1)
    assert e.value is err
    assert fn(5) == 6


# ---- the caller -----------------------------------------------------------------------------

CALLER = """
(module
  (import "env" "log" (func $log (param i32 i32)))
  (import "env" "fill" (func $fill (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from the guest")
  (func (export "say") (call $log (i32.const 64) (i32.const 20)))
  (func (export "fill") (param i32) (result i32) (call $fill (local.get 0) (i32.const 8)))
  (func (export "peek") (param i32) (result i64) local.get 0 i64.load)
)
"""


@pytest.mark.capability("host_memory_access")
def test_host_function_reads_guest_memory_through_the_caller(instantiate, store):
    got = []

    def log(caller, ptr, length):
        assert isinstance(caller, pw.Caller)
        assert caller.store is store
        got.append(caller.memory.read(ptr, length))

    def fill(caller, ptr, n):
        mem = caller.memory
        mem.write(ptr, bytes(range(1, n + 1)))
        mem.write_u32(ptr + n, 0xCAFEBABE)
        return mem.data_size

    ex = instantiate(CALLER, {"env": {"log": pw.Func(store, II_V, log, access_caller=True),
                                      "fill": pw.Func(store, FuncType([I32, I32], [I32]), fill,
                                                      access_caller=True)}}).exports
    ex["say"]()
    assert got == [b"hello from the guest"]
    assert ex["fill"](256) == 65536
    assert ex["peek"](256) == int.from_bytes(bytes(range(1, 9)), "little")
    assert ex["memory"].read_u32(264) == 0xCAFEBABE


@pytest.mark.capability("host_memory_access")
def test_caller_memory_is_the_calling_instances(instantiate, store):
    """Two instances share one host function; each call sees its own caller's memory."""
    got = []
    log = pw.Func(store, II_V, lambda c, p, n: got.append(c.memory.read(p, n)), access_caller=True)
    fill = pw.Func(store, FuncType([I32, I32], [I32]), lambda c, p, n: 0, access_caller=True)
    a = instantiate(CALLER, {"env": {"log": log, "fill": fill}})
    b = instantiate(CALLER, {"env": {"log": log, "fill": fill}})
    b.exports["memory"].write(64, b"HELLO FROM INSTANCE B")
    a.exports["say"]()
    b.exports["say"]()
    assert got == [b"hello from the guest", b"HELLO FROM INSTANCE B"[:20]]


@pytest.mark.capability("host_memory_access")
def test_caller_out_of_range_read_raises_inside_the_host(instantiate, store):
    seen = []

    def log(caller, ptr, length):
        try:
            caller.memory.read(ptr, length)
        except IndexError as e:
            seen.append(e)
            raise

    ex = instantiate(
        """(module (import "env" "log" (func $log (param i32 i32))) (memory (export "memory") 1)
             (func (export "bad") (call $log (i32.const 65530) (i32.const 100))))""",
        {"env": {"log": pw.Func(store, II_V, log, access_caller=True)}},
    ).exports
    with pytest.raises(IndexError) as e:
        ex["bad"]()
    assert e.value is seen[0]


@pytest.mark.capability("host_memory_access")
def test_caller_get_export_and_missing_memory(instantiate, store):
    out = {}

    def probe(caller):
        out["memory"] = caller.memory
        out["f"] = caller.get_export("f")
        out["missing"] = caller.get_export("missing")

    ex = instantiate(
        """(module (import "env" "probe" (func $p)) (func (export "f") (result i32) i32.const 3)
             (func (export "go") call $p))""",
        {"env": {"probe": pw.Func(store, V_V, probe, access_caller=True)}},
    ).exports
    ex["go"]()
    assert out["memory"] is None and out["missing"] is None
    assert isinstance(out["f"], pw.Func) and out["f"]() == 3


GROWER = """
(module
  (import "env" "use" (func $use (param i32) (result i32)))
  (memory (export "memory") 1 8)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "grow_then_use") (param i32) (result i32)
    (drop (memory.grow (local.get 0)))
    (call $use (memory.size)))
  (func (export "use") (param i32) (result i32) (call $use (local.get 0)))
  (func (export "load") (param i32) (result i32) local.get 0 i32.load)
)
"""


@pytest.mark.capability("host_memory_access")
def test_memory_grown_inside_a_host_function_is_read_and_written_through_the_caller(instantiate, store):
    """A host function grows the caller's memory (from Python, then through a nested call into wasm)
    and reaches the new pages through the memory object it took before each growth."""
    seen = []

    def use(caller, pages):
        mem = caller.memory
        before = mem.data_size
        assert before == pages * pw.PAGE_SIZE
        with pytest.raises(IndexError):
            mem.read(before, 4)  # not there yet
        assert mem.grow(1) == pages
        mem.write(before, b"grown by the host")
        mem.write_u32(before + 32, 0xA1B2C3D4)
        assert ex["grow"](1) == pages + 1  # wasm grows it again, inside this host call
        after = pages + 2
        assert mem.data_size == after * pw.PAGE_SIZE
        mem.write(after * pw.PAGE_SIZE - 4, b"last")
        seen.append((mem.read(before, 17), mem.read_u32(before + 32), mem.read(after * pw.PAGE_SIZE - 4, 4)))
        with pytest.raises(IndexError):
            mem.read(after * pw.PAGE_SIZE - 3, 4)  # one byte past the end
        return after

    ex = instantiate(GROWER, {"env": {"use": pw.Func(store, I_I, use, access_caller=True)}}).exports
    assert ex["use"](1) == 3
    assert seen == [(b"grown by the host", 0xA1B2C3D4, b"last")]
    m = ex["memory"]
    assert m.data_size == 3 * pw.PAGE_SIZE and m.read(pw.PAGE_SIZE, 17) == b"grown by the host"
    assert ex["load"](pw.PAGE_SIZE + 32) == 0xA1B2C3D4 - 2**32
    assert ex["load"](3 * pw.PAGE_SIZE - 4) == int.from_bytes(b"last", "little")


@pytest.mark.capability("host_memory_access")
def test_memory_grown_by_wasm_before_a_host_call_is_seen_through_the_caller(instantiate, store):
    """Memory objects kept from an earlier host call (the caller's and the export) see what wasm
    grew before the next one: its new size, and its new pages readable and writable."""
    kept = []

    def use(caller, pages):
        mem = caller.memory
        kept.append(mem)
        for m in kept + [exported]:
            assert m.data_size == pages * pw.PAGE_SIZE
            m.write_u32(pages * pw.PAGE_SIZE - 4, pages)
            assert m.read_u32(pages * pw.PAGE_SIZE - 4) == pages
        return pages

    ex = instantiate(GROWER, {"env": {"use": pw.Func(store, I_I, use, access_caller=True)}}).exports
    exported = ex["memory"]
    assert ex["use"](1) == 1
    assert ex["grow_then_use"](2) == 3
    assert ex["grow_then_use"](1) == 4
    assert exported.read_u32(4 * pw.PAGE_SIZE - 4) == 4 and ex["load"](3 * pw.PAGE_SIZE - 4) == 3
    with pytest.raises(IndexError):
        exported.read(4 * pw.PAGE_SIZE, 1)


NESTED = """
(module
  (import "env" "peek" (func $peek (param i32) (result i32)))
  (import "other" "run" (func $other (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "%s")
  (func (export "run") (param i32) (result i32) (call $peek (local.get 0)))
  (func (export "nest") (param i32) (result i32) (call $other (local.get 0)))
)
"""


@pytest.mark.capability("host_memory_access")
def test_caller_memory_in_nested_host_calls_from_two_instances(instantiate, store):
    """Host -> wasm of another instance -> the same host function: each level reads (and keeps
    using, after the inner call returned) its own caller's memory."""
    seen = []

    def peek(caller, depth):
        mem = caller.memory
        first = mem.read(0, 1)
        if depth:
            inner = inner_run(depth - 1)
            assert caller.memory.read(0, 1) == first  # this level's caller again
            seen.append((first, inner))
        mem.write(1, first)
        return first[0]

    f = pw.Func(store, I_I, peek, access_caller=True)
    b = instantiate(NESTED % "B", {"env": {"peek": f}, "other": {"run": pw.Func(store, I_I, lambda x: 0)}})
    inner_run = b.exports["run"]
    a = instantiate(NESTED % "A", {"env": {"peek": f}, "other": {"run": b.exports["run"]}})
    assert a.exports["run"](1) == ord("A")
    assert seen == [(b"A", ord("B"))]
    assert a.exports["memory"].read(0, 2) == b"AA" and b.exports["memory"].read(0, 2) == b"BB"
    assert a.exports["nest"](0) == ord("B")  # a's wasm calls b's export directly: b's memory


@pytest.mark.capability("host_memory_access")
def test_caller_memory_kept_past_its_store_close_raises(instantiate, store):
    kept = []

    def use(caller, pages):
        kept.append(caller.memory)
        return 0

    ex = instantiate(GROWER, {"env": {"use": pw.Func(store, I_I, use, access_caller=True)}}).exports
    ex["use"](1)
    assert kept[0].read(0, 4) == bytes(4)
    store.close()
    for op in (lambda: kept[0].read(0, 4), lambda: kept[0].write(0, b"x"), lambda: kept[0].data_size,
               lambda: kept[0].read_u32(0)):
        with pytest.raises(pw.WasmError):
            op()


# A memory object a host function kept (its Caller's) holds its store, as every Memory does: it
# still works once every other reference to the store is gone. In a child: a crash (a read of
# freed memory) fails the test, not the run.
CALLER_MEMORY_AFTER_STORE = """
import gc
kept = []
store = pw.Store(engine)
f = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), lambda c, p: kept.append(c.memory) or 0,
            access_caller=True)
inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(sys.argv[2])), {"env": {"use": f}})
inst.exports["use"](1)
inst.exports["use"](1)
kept[0].write(8, b"kept")

def raising(c, p):
    raise KeyError(c.memory)  # held only by the exception from here on

g = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), raising, access_caller=True)
other = pw.Instance(store, pw.Module(engine, pw.wat2wasm(sys.argv[2])), {"env": {"use": g}})
try:
    other.exports["use"](1)
except KeyError as e:
    kept.append(e.args[0])
kept[2].write(8, b"kept")
del f, g, inst, other, store
gc.collect()
for mem in kept:
    assert mem.read(8, 4) == b"kept" and mem.data_size == pw.PAGE_SIZE
    mem.write_u32(0, 7)
    assert mem.read_u32(0) == 7
assert kept[0].grow(1) == 1 and kept[1].read(pw.PAGE_SIZE, 2) == bytes(2)
assert kept[2].data_size == pw.PAGE_SIZE  # another instance's memory, kept by an exception
print("ok")
"""


@pytest.mark.capability("host_memory_access")
def test_caller_memory_kept_past_its_store_still_works(backend_name):
    run_child(backend_name, CALLER_MEMORY_AFTER_STORE, GROWER)


# A process that made host calls with a Caller and exits with its stores alive (in reference
# cycles): nothing is reported on the way out (the stores go after the modules are torn down).
CALLER_AT_EXIT = """
import sys
import proxywasm_vm as pw
from proxywasm_vm import FuncType, ValType
engine = pw.Engine(sys.argv[1])
stores = []
for i in range(3):
    store = pw.Store(engine)
    f = pw.Func(store, FuncType([ValType.I32], [ValType.I32]), lambda c, p: len(c.memory.read(0, 4)),
                access_caller=True)
    inst = pw.Instance(store, pw.Module(engine, pw.wat2wasm(sys.argv[2])), {"env": {"use": f}})
    assert inst.exports["use"](1) == 4
    store.data = inst  # a reference cycle: collected at exit, after the modules are torn down
    stores.append(store)
del store, inst, f
print("ok")
"""


@pytest.mark.capability("host_memory_access")
def test_exit_with_live_stores_after_caller_use_is_quiet(backend_name):
    proc = subprocess.run([sys.executable, "-c", CALLER_AT_EXIT, backend_name, GROWER], capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


# ---- the Linker --------------------------------------------------------------------------------

LINKED = """
(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (import "env" "note" (func $note (param i32)))
  (memory (export "memory") 1)
  (func (export "run") (param i32) (result i32)
    (call $note (local.get 0))
    (call $add (local.get 0) (i32.const 100)))
)
"""


def test_linker_defines_once_for_many_stores(engine, wat_module):
    linker = pw.Linker(engine)
    notes = []
    linker.define_func("env", "add", FuncType([I32, I32], [I32]), lambda a, b: a + b)
    linker.define_func("env", "note", I_V, lambda c, x: notes.append((c.store, x)), access_caller=True)
    assert linker.has("env", "add") and not linker.has("env", "nope")
    module = wat_module(LINKED)
    stores = [pw.Store(engine) for _ in range(4)]
    instances = [linker.instantiate(s, module) for s in stores]
    for i, inst in enumerate(instances):
        assert inst.exports["run"](i) == i + 100
    assert [(s, x) for s, x in notes] == [(stores[i], i) for i in range(4)]
    assert all(notes[i][0] is stores[i] for i in range(4))
    # two instances in one store
    again = linker.instantiate(stores[0], module)
    assert again.exports["run"](7) == 107
    assert again.exports["memory"] is not instances[0].exports["memory"]
    again.exports["memory"].write(0, b"x")
    assert instances[0].exports["memory"].read(0, 1) == b"\0"


def test_linker_missing_import_is_a_link_error(engine, wat_module):
    linker = pw.Linker(engine)
    linker.define_func("env", "add", FuncType([I32, I32], [I32]), lambda a, b: a + b)
    with pytest.raises(pw.LinkError) as e:
        linker.instantiate(pw.Store(engine), wat_module(LINKED))
    assert e.value.module == "env" and e.value.name == "note"
    assert "env" in str(e.value) and "note" in str(e.value)


def test_linker_wrong_function_type_is_a_link_error(engine, wat_module):
    linker = pw.Linker(engine)
    linker.define_func("env", "add", FuncType([I32], [I32]), lambda a: a)
    linker.define_func("env", "note", I_V, lambda x: None)
    with pytest.raises(pw.LinkError) as e:
        linker.instantiate(pw.Store(engine), wat_module(LINKED))
    assert "add" in str(e.value)


def test_linker_host_exception_is_the_same_object(engine, wat_module):
    linker = pw.Linker(engine)
    err = PermissionError("linked")

    def add(a, b):
        raise err

    linker.define_func("env", "add", FuncType([I32, I32], [I32]), add)
    linker.define_func("env", "note", I_V, lambda x: None)
    inst = linker.instantiate(pw.Store(engine), wat_module(LINKED))
    with pytest.raises(PermissionError) as e:
        inst.exports["run"](1)
    assert e.value is err


def test_linker_define_an_extern(engine, wat_module):
    store = pw.Store(engine)
    linker = pw.Linker(engine)
    mem = pw.Memory(store, pw.MemoryType(pw.Limits(1)))
    mem.write(8, b"\x05\x00\x00\x00")
    linker.define("env", "memory", mem)
    inst = linker.instantiate(store, wat_module(
        '(module (import "env" "memory" (memory 1)) (func (export "get") (result i32) (i32.load (i32.const 8))))'))
    assert inst.exports["get"]() == 5


def test_linker_redefinition_replaces(engine, wat_module):
    linker = pw.Linker(engine)
    linker.define_func("env", "add", FuncType([I32, I32], [I32]), lambda a, b: a + b)
    linker.define_func("env", "note", I_V, lambda x: None)
    module = wat_module(LINKED)
    assert linker.instantiate(pw.Store(engine), module).exports["run"](1) == 101
    linker.define_func("env", "add", FuncType([I32, I32], [I32]), lambda a, b: a * b)
    assert linker.instantiate(pw.Store(engine), module).exports["run"](2) == 200
