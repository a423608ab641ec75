"""Benchmark workloads shared by ``pwvm bench`` and the pytest-benchmark suites in ``bench/``.

Each workload prepares its state once (``setup``) and returns an operation:
a zero-argument callable plus how many unit operations one invocation performs
(a wasm loop that calls the host 100 times counts 100). Runners time the
callable and divide. The same workloads run on every backend, and on the
wasmtime-py high-level API as the external baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from ._engine import Engine
from ._func import Func
from ._instance import Instance
from ._linker import Linker
from ._module import Module, wat2wasm
from ._store import Store
from ._types import FuncType, ValType

__all__ = ["Operation", "Workload", "WORKLOADS", "BASELINES", "PLUGINS", "big_module", "load_plugin", "plugin_path",
           "DEFAULT_REQUEST", "PluginFailed", "THREADS", "threaded", "RequestSpec", "probe_request", "request_operation", "request_cycle", "rss_bytes", "rss_per_vm", "user_plugin_workloads"]

I32 = ValType.I32
HOST_LOOPS = 100
#: Python-side repetitions inside one operation, so the harness's own per-call
#: overhead (tens of ns) does not blur sub-microsecond costs.
INNER = range(100)


@dataclass
class Operation:
    """A prepared operation: ``run()`` performs ``units`` unit operations."""

    run: Callable[[], Any]
    units: int = 1
    keep: Any = None  # objects that must stay alive while ``run`` is timed
    #: Request workloads: one request sent before timing, saying whether the plugin passed it
    #: through (``""``) or what it did instead (see :func:`probe_request`).
    probe: Callable[[], str] | None = None


@dataclass(frozen=True)
class Workload:
    """A named measurement: ``setup(engine)`` returns the :class:`Operation` to time."""

    name: str
    unit: str
    description: str
    setup: Callable[[Engine], Operation]
    group: str = "embedding"


CALL_WAT = """
(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
"""

HOST_WAT = f"""
(module
  (import "env" "nop" (func $nop))
  (import "env" "read" (func $read (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{'x' * 100}")
  (func (export "call_nop") (local $i i32)
    (loop $l
      call $nop
      (local.tee $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (i32.const {HOST_LOOPS})))))
  (func (export "call_read") (local $i i32)
    (loop $l
      (call $read (i32.const 64) (i32.const 100))
      (local.tee $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (i32.const {HOST_LOOPS}))))))
"""

INSTANTIATE_WAT = """
(module
  (import "env" "log" (func (param i32 i32)))
  (import "env" "now" (func (result i64)))
  (memory (export "memory") 2)
  (global $g (mut i32) (i32.const 0))
  (table 4 funcref)
  (func (export "run") (param i32) (result i32) local.get 0 global.set $g global.get $g)
  (data (i32.const 0) "hello world"))
"""


COMPUTE_WAT = """
(module
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "hash") (param $n i32) (result i64) (local $x i64)
    (local.set $x (i64.const 88172645463325252))
    (loop $l
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $x)))
"""


@lru_cache(maxsize=None)
def _wasm(wat: str) -> bytes:
    return wat2wasm(wat)


@lru_cache(maxsize=1)
def big_module(target_bytes: int = 500_000) -> bytes:
    """A valid ~500 KB module of many small arithmetic functions (a compile-time workload)."""
    body = " ".join(["local.get 0 i32.const 7 i32.mul local.get 1 i32.xor local.set 0"] * 24)
    n = max(1, target_bytes // 230)
    funcs = "\n".join(
        f'(func (export "f{i}") (param i32 i32) (result i32) {body} local.get 0)' for i in range(n)
    )
    return wat2wasm(f"(module {funcs})")


# ---- our interface ------------------------------------------------------------

def _call(engine: Engine) -> Operation:
    inst = Instance(Store(engine), Module(engine, _wasm(CALL_WAT)))
    add = inst.exports.func("add")

    def run() -> None:
        for _ in INNER:
            add(1, 2)

    return Operation(run, len(INNER), keep=inst)


def _host_instance(engine: Engine) -> Instance:
    store = Store(engine)

    def read(caller: Any, ptr: int, n: int) -> None:
        caller.memory.read(ptr, n)

    imports = {"env": {
        "nop": Func(store, FuncType(), lambda: None),
        "read": Func(store, FuncType([I32, I32]), read, access_caller=True),
    }}
    return Instance(store, Module(engine, _wasm(HOST_WAT)), imports)


def _host_call(engine: Engine) -> Operation:
    inst = _host_instance(engine)
    return Operation(inst.exports.func("call_nop"), HOST_LOOPS, keep=inst)


def _host_read(engine: Engine) -> Operation:
    inst = _host_instance(engine)
    return Operation(inst.exports.func("call_read"), HOST_LOOPS, keep=inst)


def _mem_instance(engine: Engine) -> Any:
    inst = Instance(Store(engine), Module(engine, _wasm(INSTANTIATE_WAT.replace('(import "env" "log" (func (param i32 i32)))\n  (import "env" "now" (func (result i64)))', ""))))
    return inst, inst.exports.memory()


def _mem_write(engine: Engine) -> Operation:
    inst, mem = _mem_instance(engine)
    data = bytes(range(256)) * 4
    write = mem.write

    def run() -> None:
        for _ in INNER:
            write(4096, data)

    return Operation(run, len(INNER), keep=inst)


def _mem_read(engine: Engine) -> Operation:
    inst, mem = _mem_instance(engine)
    read = mem.read

    def run() -> None:
        for _ in INNER:
            read(4096, 1024)

    return Operation(run, len(INNER), keep=inst)


def _instantiate(engine: Engine) -> Operation:
    module = Module(engine, _wasm(INSTANTIATE_WAT))
    linker = Linker(engine)
    linker.define_func("env", "log", FuncType([I32, I32]), lambda p, n: None)
    linker.define_func("env", "now", FuncType([], [ValType.I64]), lambda: 0)
    linker.instantiate(Store(engine), module)  # warm the per-module pre-linking

    def run() -> Any:
        return linker.instantiate(Store(engine), module)

    return Operation(run, keep=(module, linker))


def _compile(engine: Engine) -> Operation:
    wasm = big_module()
    return Operation(lambda: Module(engine, wasm))


def _cached_load(engine: Engine) -> Operation:
    wasm = big_module()
    Module.cached(engine, wasm)  # fill the cache once
    return Operation(lambda: Module.cached(engine, wasm))


def _fib(engine: Engine) -> Operation:
    inst = Instance(Store(engine), Module(engine, _wasm(COMPUTE_WAT)))
    fib = inst.exports.func("fib")
    return Operation(lambda: fib(25), keep=inst)


def _hash(engine: Engine) -> Operation:
    inst = Instance(Store(engine), Module(engine, _wasm(COMPUTE_WAT)))
    fn = inst.exports.func("hash")
    return Operation(lambda: fn(1_000_000), keep=inst)


# ---- Proxy-Wasm plugins ---------------------------------------------------------

#: The bundled plugins `pwvm bench` runs by default: (file stem, root id).
PLUGINS = {
    "gcore": ("as_gcore_headers", "pwvm_gcore_headers"),   # AssemblyScript, G-Core SDK, ABI 0.2.1
    "solo": ("as_solo_headers", "pwvm_solo_headers"),      # AssemblyScript, solo-io SDK, ABI 0.2.0
    "c": ("c_bench", ""),                                   # our C plugin: the cycle and nothing else
    "go": ("go_http", ""),                                  # Go (wasip1 c-shared): logs each header
}
#: The configuration each bundled plugin gets (default: none). go_http's own default allocates
#: 64 KiB of garbage per request to make its Go runtime collect (a test of the GC, which then
#: costs most of the request); the workload measures a Go plugin that does a request's work.
PLUGIN_CONFIG = {"go": b"alloc_kb=0"}
REQUEST_HEADERS = [(":method", "GET"), (":path", "/bench"), (":authority", "example.com"), (":scheme", "http"),
                   ("user-agent", "pwvm-bench"), ("accept", "*/*"), ("x-request-id", "0f5c2a"),
                   ("x-forwarded-for", "10.0.0.1"), ("cookie", "a=1"), ("content-length", "0")]
RESPONSE_HEADERS = [(":status", "200"), ("content-type", "text/plain"), ("content-length", "2")]


def plugin_path(stem: str) -> str:
    """A bundled test plugin: installed package data, else the source checkout's build folder."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "_plugins", f"{stem}.wasm"),
                      os.path.join(os.path.dirname(here), "tests", "plugins", "build", f"{stem}.wasm")):
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"bundled plugin {stem}.wasm not found (run ci/build_plugins.sh)")


def _quiet_host(engine: Engine) -> Any:
    """A host whose logger keeps nothing (the base Logger drops records): logging is not what is timed."""
    from ._proxywasm import Logger, LogLevel, ProxyWasmHost

    return ProxyWasmHost(engine=engine, logger=Logger(LogLevel.WARN))


def load_plugin(engine: Engine, wasm: Any, root_id: str, configuration: bytes = b"") -> Any:
    """A plugin on ``engine`` with a host that keeps only warnings (logging is not what is timed)."""
    from ._proxywasm import Plugin, PluginConfig

    return Plugin(PluginConfig(name="bench", root_id=root_id, configuration=configuration), wasm,
                  host=_quiet_host(engine), engine=engine)


@dataclass(frozen=True)
class RequestSpec:
    """The HTTP request a request workload sends: pseudo-headers from ``method``, ``path`` and
    ``authority``, then ``headers`` (lower-case names; one replaces a default of the same name),
    then ``body`` (sent as one chunk ending the request when not empty)."""

    method: str = "GET"
    path: str = "/bench"
    authority: str = "example.com"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header_list(self) -> list[tuple[str, str]]:
        """The request headers in the order a proxy passes them (pseudo-headers first)."""
        defaults = [(":method", self.method), (":path", self.path), (":authority", self.authority)]
        defaults += [(k, v) for k, v in REQUEST_HEADERS[3:] if k != "content-length"]
        defaults.append(("content-length", str(len(self.body))))
        given = {k for k, _ in self.headers}
        merged = [(k, v) for k, v in defaults if k not in given] + list(self.headers)
        return sorted(merged, key=lambda kv: not kv[0].startswith(":"))  # stable: order kept otherwise

    def describe(self) -> str:
        """One line: ``POST /login (3 extra headers, 42-byte body)``."""
        extra = [f"{len(self.headers)} extra header{'s' if len(self.headers) != 1 else ''}"] if self.headers else []
        if self.body:
            extra.append(f"{len(self.body)}-byte body")
        return f"{self.method} {self.path}" + (f" ({', '.join(extra)})" if extra else "")


#: The request of the bundled request workloads.
DEFAULT_REQUEST = RequestSpec()


def request_cycle(plugin: Any, request: RequestSpec | None = None) -> Callable[[], None]:
    """One full HTTP request: context create, request headers (10 by default, read as pairs by
    the plugin, which adds one), the request body if any, response headers, then done/log/delete."""
    if request is None or request == DEFAULT_REQUEST:
        def run() -> None:
            stream = plugin.http_stream()
            stream.request_headers(REQUEST_HEADERS, True)
            stream.response_headers(RESPONSE_HEADERS, True)
            stream.close()

        return run
    headers, body = request.header_list(), request.body

    def run_with_body() -> None:
        stream = plugin.http_stream()
        stream.request_headers(headers, not body)
        if body:
            stream.request_body(body, True)
        stream.response_headers(RESPONSE_HEADERS, True)
        stream.close()

    return run_with_body


class PluginFailed(RuntimeError):
    """The plugin failed (trapped, exited, ran out of a limit) during a probe request."""


def probe_request(plugin: Any, request: RequestSpec | None = None) -> str:
    """Send one request as :func:`request_cycle` does and say what the plugin did with it:
    ``""`` when it passed the request and the response through (every callback returned
    CONTINUE, no local response, no reset), else why not, in a few words
    (``"answered locally with 401 (pwvm_unauthorized)"``). Raises :class:`PluginFailed`
    when the plugin failed on the way.

    A request that did not pass through costs what the plugin's refusal costs, not what
    forwarding a request through it costs: ``pwvm bench`` reports such a cell instead of
    timing it as a request.
    """
    from ._proxywasm import Action

    request = request or DEFAULT_REQUEST
    stream = plugin.http_stream()
    why = ""
    try:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("proxy_on_request_headers", lambda: stream.request_headers(request.header_list(), not request.body))]
        if request.body:
            steps.append(("proxy_on_request_body", lambda: stream.request_body(request.body, True)))
        steps.append(("proxy_on_response_headers", lambda: stream.response_headers(RESPONSE_HEADERS, True)))
        for callback, step in steps:
            action = step()
            if stream.failed:
                raise PluginFailed(f"the plugin failed in {callback}: {stream.error}")
            lr = stream.local_response
            if lr is not None:
                why = f"answered locally with {lr.status}" + (f" ({lr.details})" if lr.details else "")
            elif stream.reset:
                why = f"reset the stream in {callback}"
            elif action is not Action.CONTINUE:
                why = f"paused in {callback} and did not resume"
            if why:
                break
    finally:
        stream.close()
    if stream.failed and not why:
        raise PluginFailed(f"the plugin failed closing the stream: {stream.error}")
    return why


def request_operation(plugin: Any, request: RequestSpec | None = None) -> Operation:
    """The :class:`Operation` of a request workload: a request cycle, probed first."""
    return Operation(request_cycle(plugin, request), keep=plugin, probe=lambda: probe_request(plugin, request))


def _request(which: str) -> Callable[[Engine], Operation]:
    def setup(engine: Engine) -> Operation:
        stem, root = PLUGINS[which]
        with open(plugin_path(stem), "rb") as f:
            # The compiled-module cache: the Go plugin is 2.2 MB, compiled once per machine, not per run.
            module = Module.cached(engine, f.read())
        return request_operation(load_plugin(engine, module, root, PLUGIN_CONFIG.get(which, b"")))

    return setup


#: How many threads the ``*_8t`` workloads drive one operation from, and how many units each
#: thread runs per invocation (2,000 requests, some 50 ms: waking the threads for a batch, which on
#: a loaded machine can wait for a core, is then a small part of it).
THREADS = 8
THREAD_BATCH = 250


def threaded(op: Operation, threads: int = THREADS, batch: int = THREAD_BATCH) -> Operation:
    """``op`` run by ``threads`` threads at once: one invocation has each of them run ``op``
    ``batch`` times and returns when all are done, so its time per unit is the inverse of their
    total rate (compare it with ``op`` alone: the ratio is how the rate scales with threads).

    The threads are started once and wait between invocations; they end when the returned
    operation is garbage collected. An exception in a thread is raised by the invocation.
    """
    import threading
    import weakref

    start = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)
    errors: list[BaseException] = []
    run_one = op.run

    def loop() -> None:
        try:
            while True:
                start.wait()
                try:
                    for _ in range(batch):
                        run_one()
                except Exception as e:  # noqa: BLE001 - raised again by run() in the caller's thread
                    errors.append(e)
                done.wait()
        except threading.BrokenBarrierError:  # the operation is gone: the thread ends
            return

    for i in range(threads):
        threading.Thread(target=loop, daemon=True, name=f"pwvm-bench-{i}").start()

    class Batch:
        """One invocation: the threads' batch (holding it keeps the threads; see the finalizer)."""

        def __call__(self) -> None:
            start.wait()
            done.wait()
            if errors:
                e = errors[0]
                errors.clear()
                raise e

    batch_run = Batch()

    def stop() -> None:
        start.abort()
        done.abort()

    weakref.finalize(batch_run, stop)
    return Operation(batch_run, units=threads * batch * op.units, keep=op.keep, probe=op.probe)


def _request_threads(which: str) -> Callable[[Engine], Operation]:
    one = _request(which)

    def setup(engine: Engine) -> Operation:
        return threaded(one(engine))

    return setup


def _plugin_ready(engine: Engine) -> Operation:
    # The solo-io SDK: the G-Core SDK aborts in proxy_on_done for its root context
    # (it looks the root up in its stream-context map), so its shutdown is not a clean cycle.
    stem, root = PLUGINS["solo"]
    module = Module.cached(engine, open(plugin_path(stem), "rb").read())

    def run() -> None:
        load_plugin(engine, module, root).close()

    return Operation(run)


def user_plugin_workloads(path: str, root_id: str = "", configuration: bytes = b"",
                          request: RequestSpec | None = None) -> dict[str, Workload]:
    """Workloads for a plugin of the user's own: start-up and request cycles (sending
    ``request``, by default :data:`DEFAULT_REQUEST`).

    Raises :class:`ValueError` with a one-line reason when ``path`` is not a
    readable Proxy-Wasm plugin.
    """
    from ._errors import WasmError
    from ._proxywasm._abi import detect_abi
    from ._wasmparse import parse_module

    try:
        with open(path, "rb") as f:
            wasm = f.read()
    except OSError as e:
        raise ValueError(f"cannot read plugin {path}: {e.strerror}") from None
    try:
        info = parse_module(wasm)
    except WasmError as e:
        raise ValueError(f"{path} is not a WebAssembly module: {e}") from None
    if detect_abi(e.name for e in info.exports) is None:
        raise ValueError(f"{path} is not a Proxy-Wasm plugin (it exports no proxy_abi_version_* marker)")

    def ready(engine: Engine) -> Operation:
        module = Module.cached(engine, wasm)

        def run() -> None:
            load_plugin(engine, module, root_id, configuration).close()

        return Operation(run)

    def send(engine: Engine) -> Operation:
        plugin = load_plugin(engine, Module.cached(engine, wasm), root_id, configuration)
        return request_operation(plugin, request)

    return {
        "plugin_ready": Workload("plugin_ready", "plugin", f"new VM of {path} + vm_start + configure", ready,
                                 "startup"),
        "plugin_request": Workload("plugin_request", "request", f"full HTTP request cycle through {path}", send,
                                   "request"),
    }


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload("call", "call", "Python -> wasm call of an i32 add export", _call),
    Workload("host_call", "call", "wasm -> Python call of a no-op host function", _host_call),
    Workload("host_read_100", "call", "host function reading 100 bytes of guest memory via the caller", _host_read),
    Workload("memory_write_1k", "op", "1 KiB write into linear memory from Python", _mem_write),
    Workload("memory_read_1k", "op", "1 KiB read from linear memory into Python bytes", _mem_read),
    Workload("instantiate", "vm", "new store + instance of a pre-linked compiled module", _instantiate, "startup"),
    Workload("compile_500k", "module", "compile a ~500 KB module", _compile, "startup"),
    Workload("cached_load_500k", "module", "load the same module from the compiled-module cache", _cached_load,
             "startup"),
    Workload("plugin_ready", "plugin", "new VM of a cached plugin + vm_start + configure (solo-io SDK)",
             _plugin_ready, "startup"),
    Workload("request_gcore", "request", "full HTTP request cycle through the G-Core AssemblyScript SDK plugin",
             _request("gcore"), "request"),
    Workload("request_solo", "request", "full HTTP request cycle through the solo-io AssemblyScript SDK plugin",
             _request("solo"), "request"),
    Workload("request_c", "request", "the same cycle through a C plugin that does nothing else (host cost)",
             _request("c"), "request"),
    Workload("request_go", "request", "the same cycle through a Go plugin (logs each header; Go runtime, WASI clocks)",
             _request("go"), "request"),
    Workload("request_c_8t", "request", f"request_c from {THREADS} threads at once, streams of the same plugin "
             "(time per request of their total rate)", _request_threads("c"), "threads"),
    Workload("fib_25", "run", "recursive fib(25) inside wasm: calls and branches", _fib, "compute"),
    Workload("xorshift_1m", "run", "10^6 rounds of an i64 xorshift loop inside wasm", _hash, "compute"),
]}


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of this process, or of process ``pid``."""
    import os

    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_per_vm(engine: Engine, count: int = 200) -> float:
    """Bytes of resident memory each live VM (store + instance, memory touched) adds.

    For an engine whose runtime runs in a worker process, the worker's memory
    is what is measured.
    """
    import gc

    def measure() -> int:
        pid = engine.worker_pid  # the worker running the runtime, or None: this process
        return rss_bytes(pid)
    module = Module(engine, _wasm(INSTANTIATE_WAT))
    linker = Linker(engine)
    linker.define_func("env", "log", FuncType([I32, I32]), lambda p, n: None)
    linker.define_func("env", "now", FuncType([], [ValType.I64]), lambda: 0)
    warm = [linker.instantiate(Store(engine), module) for _ in range(5)]
    gc.collect()
    before = measure()
    vms = []
    for _ in range(count):
        inst = linker.instantiate(Store(engine), module)
        mem = inst.exports.memory()
        for page in range(mem.size):
            mem.write(page * 65536, b"\1")  # commit every page, as a running plugin would
        vms.append(inst)
    after = measure()
    del vms, warm
    gc.collect()
    return max(0.0, (after - before) / count)


# ---- the wasmtime-py high-level API, as the external baseline -----------------

def _wtpy() -> Any:
    import wasmtime

    return wasmtime


def _b_call() -> Operation:
    wt = _wtpy()
    store = wt.Store()
    inst = wt.Instance(store, wt.Module(store.engine, _wasm(CALL_WAT)), [])
    add = inst.exports(store)["add"]

    def run() -> None:
        for _ in INNER:
            add(store, 1, 2)

    return Operation(run, len(INNER), keep=inst)


def _b_host(export: str) -> Operation:
    wt = _wtpy()
    store = wt.Store()
    i32 = wt.ValType.i32()

    def read(caller: Any, ptr: int, n: int) -> None:
        caller["memory"].read(caller, ptr, ptr + n)

    nop = wt.Func(store, wt.FuncType([], []), lambda: None)
    rd = wt.Func(store, wt.FuncType([i32, i32], []), read, access_caller=True)
    inst = wt.Instance(store, wt.Module(store.engine, _wasm(HOST_WAT)), [nop, rd])
    fn = inst.exports(store)[export]
    return Operation(lambda: fn(store), HOST_LOOPS, keep=inst)


def _b_mem_write() -> Operation:
    wt = _wtpy()
    store = wt.Store()
    mem = wt.Memory(store, wt.MemoryType(wt.Limits(2, None)))
    data = bytes(range(256)) * 4
    write = mem.write

    def run() -> None:
        for _ in INNER:
            write(store, data, 4096)

    return Operation(run, len(INNER), keep=mem)


def _b_mem_read() -> Operation:
    wt = _wtpy()
    store = wt.Store()
    mem = wt.Memory(store, wt.MemoryType(wt.Limits(2, None)))
    read = mem.read

    def run() -> None:
        for _ in INNER:
            read(store, 4096, 4096 + 1024)

    return Operation(run, len(INNER), keep=mem)


def _b_instantiate() -> Operation:
    wt = _wtpy()
    engine = wt.Engine()
    module = wt.Module(engine, _wasm(INSTANTIATE_WAT))
    linker = wt.Linker(engine)
    i32 = wt.ValType.i32()
    linker.define_func("env", "log", wt.FuncType([i32, i32], []), lambda p, n: None)
    linker.define_func("env", "now", wt.FuncType([], [wt.ValType.i64()]), lambda: 0)
    return Operation(lambda: linker.instantiate(wt.Store(engine), module), keep=(module, linker))


BASELINES: dict[str, Callable[[], Operation]] = {
    "call": _b_call,
    "host_call": lambda: _b_host("call_nop"),
    "host_read_100": lambda: _b_host("call_read"),
    "memory_write_1k": _b_mem_write,
    "memory_read_1k": _b_mem_read,
    "instantiate": _b_instantiate,
}
"""wasmtime-py high-level API versions of the workloads it can express."""


# ---- soak: resident memory over many request cycles -----------------------------


@dataclass
class SoakResult:
    """Resident memory around ``requests`` request cycles, after a warm-up."""

    runner: str
    requests: int
    parent_growth: int
    """Bytes this process's RSS grew by."""
    worker_growth: int | None
    """Bytes the worker process's RSS grew by (``None``: the runtime runs in this process)."""
    seconds: float


def soak(engine: Engine, requests: int, *, plugin: str = "c", warmup: int = 2000,
         threads: int = 1, updates: int = 0) -> SoakResult:
    """Run ``requests`` request cycles of the bundled ``plugin`` (see :data:`PLUGINS`) and
    report how much resident memory grew (this process, and the worker where there is one).

    ``threads`` > 1 spreads the cycles over that many threads (each gets its own VM);
    ``updates`` > 0 also calls ``plugin.update()`` that many times, evenly spread, while the
    threads run streams: the old versions must be retired, not kept.
    """
    import gc
    import threading
    import time

    stem, root = PLUGINS[plugin]
    loaded = load_plugin(engine, plugin_path(stem), root, PLUGIN_CONFIG.get(plugin, b""))
    cycle = request_cycle(loaded)
    worker = engine.worker_pid

    def rss() -> tuple[int, int | None]:
        gc.collect()
        pid = engine.worker_pid
        return rss_bytes(), (rss_bytes(pid) if pid else None)

    for _ in range(warmup):
        cycle()
    before, wbefore = rss()
    t0 = time.perf_counter()
    per = max(1, requests // threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per):
                cycle()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    pool = [threading.Thread(target=work) for _ in range(threads - 1)]
    for t in pool:
        t.start()
    if updates:
        step = max(1, per // updates)
        for i in range(per):
            if i % step == 0 and updates:
                loaded.update(configuration=b"soak-%d" % i)
                updates -= 1
            cycle()
    else:
        work()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    after, wafter = rss()
    loaded.close()
    if worker is not None and engine.worker_pid != worker:
        raise RuntimeError("the worker was replaced during the soak: its memory cannot be compared")
    return SoakResult(engine.name, per * threads, after - before,
                      None if wbefore is None or wafter is None else wafter - wbefore, seconds)
