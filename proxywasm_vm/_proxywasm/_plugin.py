"""The embedding API: :class:`ProxyWasmHost`, :class:`PluginConfig` and :class:`Plugin`."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import threading
import weakref
import warnings
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from .._backend import get_backend, parse_backend
from .._engine import DEFAULT_BACKEND, Engine
from .._errors import CompileError
from .._module import Module
from .._settings import remote_host_enabled
from .._store import StoreLimits, _DefaultFloat, _DefaultInt
from .._wasmparse import Reader, parse_module, sections, uleb128
from ._abi import CALLBACK_SIGNATURES, AbiVersion, LogLevel, MetricType, callback_signature_error, detect_abi
from ._errors import AbiError, CallbackSignatureError, PluginCrash, PluginStartError
from ._grpc import GrpcDispatcher, GrpcioDispatcher
from ._hostcalls import HOST_FUNCTIONS, check_imports, linker_for
from ._http import HttpDispatcher, HttpxDispatcher
from ._limits import HostLimits
from ._properties import flatten_properties
from ._redis import RedisSharedData, RedisSharedQueues
from ._services import (Clock, ForeignFunctions, Logger, LogRecord, MemoryLogger, Metrics, Scheduler, SharedData,
                        SharedQueues, SystemClock)
from ._streams import HttpStream, TcpStream
from ._vm import VM, _Context

__all__ = ["PluginConfig", "Plugin", "ProxyWasmHost", "STAT_COUNTERS"]

FailurePolicy = Literal["fail_closed", "fail_open", "fail_reload", "raise"]
_POLICIES = ("fail_closed", "fail_open", "fail_reload", "raise")

_log = logging.getLogger("proxywasm_vm")

#: Host counters per plugin, ``pwvm.<plugin name>.<counter>`` in :attr:`ProxyWasmHost.metrics`
#: (Envoy's equivalents in brackets):
#: ``vm_created`` a VM started for the plugin (``wasm.envoy.wasm.runtime.<runtime>.created``);
#: ``vm_failed`` the plugin failed in a callback or at start (``wasm.vm_failed``, envoy#40882);
#: ``vm_reload`` a failed VM was replaced by a fresh one (``wasm.vm_reload``);
#: ``vm_reload_backoff`` a stream arrived while the reload waited for its backoff (``wasm.vm_reload_backoff``);
#: ``vm_reload_success`` / ``vm_reload_failure`` the fresh VM started / failed to start
#: (``wasm.vm_reload_success`` / ``wasm.vm_reload_failure``).
STAT_COUNTERS = ("vm_created", "vm_failed", "vm_reload", "vm_reload_backoff", "vm_reload_success",
                 "vm_reload_failure")


#: The limits of each plugin VM when ``PluginConfig.limits`` is ``None``: a callback may run
#: 0.5 s (Envoy plugins answer in micro- to milliseconds; a few hundred ms already stalls a
#: proxy), a VM's memory may grow to 512 MiB (real plugins use a few MiB to tens of MiB).
DEFAULT_PLUGIN_LIMITS = StoreLimits(memory_bytes=_DefaultInt(512 << 20), deadline=_DefaultFloat(0.5))


def plugin_limits(config: PluginConfig) -> StoreLimits:
    """The limits a plugin's VMs run with: its own, or :data:`DEFAULT_PLUGIN_LIMITS`.

    Decided once, in the process that loads the plugin: a worker that hosts it gets them in the
    configuration it is sent, so both sides always agree.
    """
    return config.limits if config.limits is not None else DEFAULT_PLUGIN_LIMITS


def reload_delay(cfg: PluginConfig, crashes: int) -> float:
    """Seconds before a plugin that failed ``crashes`` times in a row is started again: Envoy's
    reload backoff, ``reload_backoff * 2**(crashes-1)``, at most ``reload_backoff_max``."""
    return min(cfg.reload_backoff * 2.0 ** min(crashes - 1, 64), cfg.reload_backoff_max)


def _bytes(v: bytes | str | None) -> bytes:
    if v is None:
        return b""
    return v.encode() if isinstance(v, str) else bytes(v)


@dataclass(frozen=True)
class PluginConfig:
    """How to run one plugin (the equivalent of an Envoy ``envoy.filters.http.wasm`` config).

    - ``name``: the plugin's name (``plugin_name`` property, log records);
    - ``root_id``: the root context name (``plugin_root_id``; SDKs pick their
      root context class by it);
    - ``vm_id``: VMs with the same ``vm_id`` (and code) share one VM per
      thread, and share data and queues;
    - ``configuration`` / ``vm_config``: the bytes read in ``proxy_on_configure``
      / ``proxy_on_vm_start``;
    - ``backend``: runtime name (``None``: the host's default);
    - ``vm_per_stream``: ``False`` (the default: one VM per thread serves every stream
      of the plugin) or ``True`` (a fresh VM for each stream). The keyword ``isolation``
      (``"shared"`` / ``"per_stream"``) still works, with a :class:`DeprecationWarning`:
      "isolation" names the engine's isolation only (in-process, namespace, process);
    - ``limits``: :class:`StoreLimits` of each VM (memory, per-call deadline, fuel).
      ``None`` (the default) is :data:`DEFAULT_PLUGIN_LIMITS`: each callback may run
      0.5 s and each VM's memory may grow to 512 MiB; a plugin that passes them
      gets its stream the ``failure_policy`` and the next stream a fresh VM.
      ``StoreLimits.unlimited()`` turns every limit off;
    - ``start_deadline``: seconds each call of the start phase may run
      (instantiation, ``_initialize``/``_start``, root context creation,
      ``proxy_on_vm_start``, ``proxy_on_configure``), where real Go and Rust
      runtimes initialise; never shorter than the per-callback deadline, and
      ``None`` keeps that one. Without a per-callback deadline there is none here either;
    - ``allowed_capabilities``: host function names the plugin may use (others
      answer UNIMPLEMENTED); ``None`` allows all;
    - ``failure_policy``: what a stream gets when the plugin fails in a callback (trap,
      ``proc_exit``, deadline ...), and what new streams get while its VM stays failed:
      ``"fail_closed"`` (default) a local 503 (details ``wasm_fail_stream``),
      ``"fail_open"`` the stream goes on as if the plugin were not there,
      ``"fail_reload"`` Envoy's ``FAIL_RELOAD``: ``"fail_closed"`` with ``reload_on_failure``,
      ``"raise"`` :class:`PluginCrash` raised to the caller;
    - ``reload_on_failure`` (default True): a failed VM (of this thread) is replaced by a fresh
      one, as Envoy's ``FAIL_RELOAD`` does, once its backoff has passed: the n-th consecutive
      failure waits ``min(reload_backoff * 2**(n-1), reload_backoff_max)`` seconds of the host's
      clock (Envoy: base 1 s, at most 10x the base); streams meanwhile get ``failure_policy``
      and no VM is started. A stream that completes on a VM without a failure resets the count.
      False never reloads (Envoy's ``FAIL_CLOSED`` / ``FAIL_OPEN``); ``reload_backoff=0``
      reloads at the next stream. Every failure is logged once (host logger at error level, and
      the ``proxywasm_vm`` Python logger) and counted (see :data:`STAT_COUNTERS`, :meth:`Plugin.stats`);
    - ``properties``: extra properties the plugin can read (nested dicts or dotted names);
    - ``environment`` / ``args``: what WASI ``environ_get`` / ``args_get`` return;
    - ``foreign_functions``: plugin-specific functions for ``proxy_call_foreign_function``.
    """

    name: str = "plugin"
    root_id: str = ""
    vm_id: str = ""
    configuration: bytes | str = b""
    vm_config: bytes | str = b""
    backend: str | None = None
    vm_per_stream: bool = False
    limits: StoreLimits | None = None
    start_deadline: float | None = 5.0
    allowed_capabilities: frozenset[str] | None = None
    failure_policy: FailurePolicy = "fail_closed"
    reload_on_failure: bool = True
    reload_backoff: float = 1.0
    reload_backoff_max: float = 10.0
    properties: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    foreign_functions: Mapping[str, Callable[[bytes], Any]] = field(default_factory=dict)
    isolation: InitVar[str | None] = None
    """Deprecated spelling of ``vm_per_stream``: ``"per_stream"`` or ``"shared"``."""

    def __post_init__(self, isolation: str | None = None) -> None:
        if self.backend is not None:
            parse_backend(self.backend)  # a malformed "runtime@isolation" fails here, not at load
        if isolation is not None:
            warnings.warn("PluginConfig(isolation=...) is deprecated: use vm_per_stream=True for 'per_stream' "
                          "(False for 'shared'); isolation names the engine's isolation (in-process, namespace, "
                          "process)", DeprecationWarning, stacklevel=3)
            if isolation not in ("shared", "per_stream"):
                raise ValueError(f"isolation must be 'shared' or 'per_stream', not {isolation!r}")
            if self.vm_per_stream and isolation == "shared":
                raise ValueError("isolation='shared' contradicts vm_per_stream=True")
            object.__setattr__(self, "vm_per_stream", isolation == "per_stream")
        if not isinstance(self.vm_per_stream, bool):
            raise TypeError(f"vm_per_stream is True or False, not {self.vm_per_stream!r}")
        if self.failure_policy not in _POLICIES:
            raise ValueError(f"failure_policy must be one of {', '.join(map(repr, _POLICIES))}, "
                             f"not {self.failure_policy!r}")
        if self.failure_policy == "fail_reload" and not self.reload_on_failure:
            raise ValueError("failure_policy='fail_reload' reloads: it contradicts reload_on_failure=False")
        if not (self.reload_backoff >= 0 and self.reload_backoff_max >= self.reload_backoff):
            raise ValueError(f"need 0 <= reload_backoff <= reload_backoff_max, got {self.reload_backoff!r} "
                             f"and {self.reload_backoff_max!r}")
        if self.start_deadline is not None and not self.start_deadline > 0:
            raise ValueError(f"start_deadline must be > 0 seconds, got {self.start_deadline}")
        if self.allowed_capabilities is not None and not isinstance(self.allowed_capabilities, frozenset):
            object.__setattr__(self, "allowed_capabilities", frozenset(self.allowed_capabilities))


class _Code:
    """A plugin module compiled for one engine, with what the host learned about it."""

    def __init__(self, engine: Engine, module: Module, sha: str, start_export: str | None = None) -> None:
        self.engine = engine
        self.module = module
        self.sha = sha
        #: the export that runs the module's start function (see _hoist_start), if it had one
        self.start_export = start_export
        names = [e.name for e in module.exports]
        abi = detect_abi(names)
        if abi is None:
            raise AbiError("the module exports no Proxy-Wasm ABI marker (proxy_abi_version_0_1_0, _0_2_0 or "
                           "_0_2_1): it is not a Proxy-Wasm plugin, or uses an unsupported ABI version")
        self.abi: AbiVersion = abi
        self.name = sha[:12]
        types = {e.name: e.type for e in module.exports}
        for name, t in types.items():  # a mistyped callback is refused here, not met in a stream
            why = callback_signature_error(name, t)
            if why is not None:
                raise CallbackSignatureError(f"not a usable Proxy-Wasm plugin: {why}", export=name,
                                             allowed=CALLBACK_SIGNATURES[name])
        rh = types.get("proxy_on_request_headers")
        self.hdr_args = len(rh.params) if rh is not None and hasattr(rh, "params") else (
            2 if abi is AbiVersion.V0_1_0 else 3)
        self.variants = check_imports(module)
        self.imported = frozenset(f"{i.module}.{i.name}" for i in module.imports)
        # A start section runs imports before the instance exists: those modules need host
        # functions that reach memory through the caller (which costs every host call a Caller
        # object), unless the start function was moved to an export (_hoist_start).
        data = module._wasm if isinstance(module._wasm, bytes) else None
        self.with_caller = True if data is None else _has_start_section(data)
        self._data = data
        self._linkers: dict[frozenset, Any] = {}

    def mentions(self, text: str) -> bool | None:
        """Whether ``text`` occurs in the module (UTF-8, or UTF-16 as AssemblyScript keeps strings);
        None when the host has no bytes of it to look at."""
        if self._data is None:
            return None
        return text.encode() in self._data or text.encode("utf-16-le") in self._data

    def linker(self, denied: frozenset) -> Any:
        lk = self._linkers.get(denied)
        if lk is None:
            lk = self._linkers[denied] = linker_for(self.engine, self.variants, denied, self.with_caller)
        return lk


START_EXPORT = "__pwvm_start"


def _hoist_start(data: bytes) -> bytes | None:
    """``data`` with its start section replaced by an export (:data:`START_EXPORT`) of the
    start function, or None when it has no start section (or is not a module we can rewrite).

    The VM calls that export right after instantiation, under the same error handling.
    For the plugin nothing changes (the start function still runs first, with every import
    live), but host functions no longer need the caller to reach memory during
    instantiation, so they are linked in the cheaper flavour that gets no Caller.
    Only the export section is rebuilt; other sections are copied byte for byte.
    """
    if data[:4] != b"\0asm" or START_EXPORT.encode() in data:
        return None
    try:
        parse_module(data)  # a malformed start section (or one out of place) must not be hidden by the move
        secs = sections(data)
        starts = [sec for sec in secs if sec[0] == 8]
        if len(starts) != 1:
            return None
        func = Reader(data, starts[0][2], starts[0][3]).u32()
        entry = uleb128(len(START_EXPORT)) + START_EXPORT.encode() + b"\0" + uleb128(func)  # 0: a function
        has_exports = any(sec[0] == 7 for sec in secs)
        out = [data[:8]]
        for sid, sec, body, end in secs:
            if sid == 7:  # the export section: one more entry
                r = Reader(data, body, end)
                count = r.u32()
                payload = uleb128(count + 1) + data[r.pos:end] + entry
            elif sid == 8:  # the start section goes (an export section takes its place if none exists)
                if has_exports:
                    continue
                payload = b"\1" + entry
                sid = 7
            else:
                out.append(data[sec:end])
                continue
            out.append(bytes((sid,)) + uleb128(len(payload)) + payload)
        return b"".join(out)
    except CompileError:  # not a module we can frame: leave it to the runtime to reject
        return None


def _has_start_section(data: bytes) -> bool:
    """Whether a wasm binary has a start section (id 8)."""
    try:
        return any(sec[0] == 8 for sec in sections(data))
    except CompileError:
        return False


_VM_KEYS: dict = {}


class _Generation:
    """One version (code + configuration) of a plugin; updates create a new one."""

    def __init__(self, plugin: Plugin, config: PluginConfig, code: _Code) -> None:
        self.plugin_ref = weakref.ref(plugin)
        self.config = config
        self.code = code
        self.retired = False
        self.per_stream = config.vm_per_stream
        self.configuration = _bytes(config.configuration)
        self.vm_config = _bytes(config.vm_config)
        self.limits = plugin_limits(config)
        d = self.limits.deadline
        #: the deadline of each call of the start phase (PluginConfig.start_deadline)
        self.start_deadline = d if d is None or config.start_deadline is None else max(d, config.start_deadline)
        self.environ = [f"{k}={v}".encode() for k, v in config.environment.items()]
        self.args = [a.encode() for a in config.args]
        self.foreign = dict(config.foreign_functions)
        props = {"plugin_name": config.name, "plugin_root_id": config.root_id, "plugin_vm_id": config.vm_id}
        self.props = flatten_properties(props)
        self.props.update(flatten_properties(config.properties))
        if config.allowed_capabilities is None:
            self.denied: frozenset = frozenset()
        else:
            allowed = config.allowed_capabilities
            self.denied = frozenset(n for (m, n) in HOST_FUNCTIONS
                                    if f"{m}.{n}" in code.imported and n not in allowed and f"{m}.{n}" not in allowed
                                    and n != "proc_exit")
        full_key = (id(code.engine), code.sha, config.vm_id, self.vm_config, self.limits, self.start_deadline,
                    self.denied,
                    tuple(self.environ), tuple(self.args), plugin._vm_group)
        # VMs are looked up per stream: intern the key as a small int (tuples re-hash on every lookup).
        self.vm_key = _VM_KEYS.setdefault(full_key, len(_VM_KEYS) + 1)


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.vms: dict[int, VM] = {}
        self.all: weakref.WeakSet = weakref.WeakSet()
        self.spares: dict[_Generation, list[VM]] = {}
        self.loading = False  # ProxyWasmHost._warm runs (a failure then fails the load)
        self.epoch = 0  # the host's retirement epoch this thread has swept up to (ProxyWasmHost._sweep)
        self.exit = _ThreadExit(self.vms, self.spares)


class _ThreadExit:
    """Held by one thread's locals only: when the thread ends, Python drops its locals on that
    thread, and this closes the thread's VMs there (no other thread may call into them): their
    root contexts get ``proxy_on_done`` / ``proxy_on_delete`` and the runtime's memory goes."""

    __slots__ = ("vms", "spares", "owner")

    def __init__(self, vms: dict, spares: dict) -> None:
        self.vms = vms
        self.spares = spares
        self.owner = threading.get_ident()

    def __del__(self) -> None:
        if sys.is_finalizing():
            return
        vms = list(self.vms.values()) + [vm for group in self.spares.values() for vm in group]
        self.vms.clear()
        self.spares.clear()
        here = threading.get_ident() == self.owner  # else the host itself went away, elsewhere
        for vm in vms:
            try:
                vm.close() if here else vm.release()
            except Exception:  # noqa: BLE001 - best effort at thread exit
                pass


class ProxyWasmHost:
    """A Proxy-Wasm host: the services plugins share, and the VMs that run them.

    Every service is replaceable: pass your own object (or use the defaults,
    all in memory). One host is like one proxy: plugins loaded into the same
    host share data and queues by ``vm_id``, metrics by name.

    - ``engine`` / ``backend``: the runtime used when a plugin names none;
    - ``logger`` (:class:`MemoryLogger`), ``shared_data``, ``queues``, ``metrics``; shared data
      and queues are in memory by default, or shared by every host process on one Redis with
      :class:`RedisSharedData` / :class:`RedisSharedQueues` (``**redis_shared(url)`` gives both);
    - ``http`` (:class:`HttpxDispatcher` over ``upstreams``), ``grpc``
      (:class:`GrpcioDispatcher` over ``grpc_upstreams``);
    - ``clock`` (:class:`SystemClock`; a :class:`ManualClock` makes timers
      deterministic) and ``scheduler``;
    - ``foreign_functions``; ``properties`` every plugin can read (``node``, ``cluster_name`` ...);
    - ``limits`` (:class:`HostLimits`): bounds on what plugins can make the host hold (logs,
      header maps, buffered bodies, shared data, queues, callouts, metrics, timers), with
      protective defaults. The default services are built with them; a service object you
      pass keeps the bounds it was built with. :meth:`limit_hits` counts the refusals;
    - ``preserve_header_case``: ``False`` (the default) lower-cases header names, as Envoy
      does whatever the protocol: plugins see ``x-id`` for ``X-Id``, also for a name a plugin
      adds. ``True`` keeps names as the client (or plugin) gave them, for hosts that preserve
      case; lookups match any case either way. It applies to the maps the host builds (from
      dicts and lists passed to stream events, a local response, callout requests, gRPC
      metadata); a :class:`HeaderMap` passed in keeps its own ``preserve_case``.

    Work that arrives asynchronously (callout responses, queue notifications,
    ticks) runs when the embedder calls :meth:`poll` (or :meth:`advance` with a
    manual clock, or :meth:`HttpStream.wait`) on the thread that owns the VMs.
    """

    def __init__(self, *, engine: Engine | None = None, backend: str = DEFAULT_BACKEND,
                 logger: Logger | None = None, shared_data: SharedData | RedisSharedData | None = None,
                 queues: SharedQueues | RedisSharedQueues | None = None, metrics: Metrics | None = None,
                 http: HttpDispatcher | None = None, grpc: GrpcDispatcher | None = None,
                 upstreams: Mapping[str, str] | None = None, grpc_upstreams: Mapping[str, str] | None = None,
                 clock: Clock | None = None, scheduler: Scheduler | None = None,
                 foreign_functions: ForeignFunctions | Mapping[str, Callable[[bytes], Any]] | None = None,
                 properties: Mapping[str, Any] | None = None, limits: HostLimits | None = None,
                 preserve_header_case: bool = False) -> None:
        if engine is None:
            parse_backend(backend)  # a malformed "runtime@isolation" fails here, not at the first plugin
        if limits is not None and not isinstance(limits, HostLimits):
            raise TypeError(f"limits must be a HostLimits, not {type(limits).__name__}")
        self.limits: HostLimits = limits if limits is not None else HostLimits()
        if not isinstance(preserve_header_case, bool):
            raise TypeError(f"preserve_header_case must be a bool, not {type(preserve_header_case).__name__}")
        # Who decides in Envoy: the codec of a listener or cluster (Http1ProtocolOptions.header_key_format),
        # i.e. the host, not a plugin; hence a host option.
        self.preserve_header_case: bool = preserve_header_case
        limits = self.limits
        self.backend = engine.name if engine is not None else backend
        self._engines: dict[str, Engine] = {}
        if engine is not None:
            self._engines[engine.name] = engine
        self.logger = logger if logger is not None else MemoryLogger(max_bytes=limits.log_max_bytes)
        self.shared_data: SharedData | RedisSharedData = shared_data if shared_data is not None else SharedData(limits)
        self.queues: SharedQueues | RedisSharedQueues = queues if queues is not None else SharedQueues(limits)
        self.metrics = metrics if metrics is not None else Metrics(limits)
        self.http = http if http is not None else HttpxDispatcher(upstreams or {})
        self.grpc = grpc if grpc is not None else GrpcioDispatcher(grpc_upstreams or {})
        self.clock = clock if clock is not None else (scheduler.clock if scheduler is not None else SystemClock())
        self.scheduler = scheduler if scheduler is not None else Scheduler(self.clock)
        if isinstance(foreign_functions, ForeignFunctions):
            self.foreign_functions = foreign_functions
        else:
            self.foreign_functions = ForeignFunctions(dict(foreign_functions or {}),
                                                      uncompress_max_bytes=limits.uncompress_max_bytes)
        self._props = flatten_properties(properties)
        self._codes: dict[tuple[int, str], _Code] = {}
        self._lock = threading.RLock()
        self._tls = _ThreadState()
        self._warned: set = set()  # (module sha, root id) pairs warned about (_warm)
        self._epoch = 0  # bumped by every retirement (update, close): threads sweep when theirs differs
        self._event = threading.Event()
        self._remote_pending = False  # a worker running plugins of this host has work (see _wake)
        # called (from any thread) whenever work is posted for poll(): an embedder running its own
        # event loop (the ASGI middleware) polls then instead of blocking in poll(timeout=...)
        self._wake_listeners: list[Callable[[], None]] = []
        self.plugins: list[Plugin] = []
        self._limit_ids: dict[str, int] = {}

    # -- limits ----------------------------------------------------------------------------------
    LIMIT_METRIC = "pwvm.limit_exceeded."
    """Prefix of the counters (in :attr:`metrics`) of refusals past a :class:`HostLimits` bound."""

    def _count_limit(self, name: str) -> None:
        """Count one refusal past the bound ``name`` (a counter metric, so that a host running
        plugins in a worker counts into the same metrics as its parent)."""
        mid = self._limit_ids.get(name)
        try:
            if mid is None:
                mid = self._limit_ids[name] = self.metrics.define(MetricType.COUNTER, self.LIMIT_METRIC + name,
                                                                         bounded=False)
            self.metrics.increment(mid, 1)
        except OverflowError:  # the metrics store is full: the log line still tells
            pass

    def limit_hits(self) -> dict[str, int]:
        """``{bound: refusals}`` so far: how often plugins ran into each :class:`HostLimits` bound
        (``"body_buffer"``, ``"header_map"``, ``"shared_data"``, ``"queue"``, ``"callout_response"``,
        ``"pending_calls"``, ``"metrics"``, ``"uncompress"``, ``"tick_period"``, ``"properties"``, ``"queues"``,
        ``"name"``)."""
        n = len(self.LIMIT_METRIC)
        return {k[n:]: v for k, v in self.metrics.snapshot().items() if k.startswith(self.LIMIT_METRIC)}

    # -- engines and code ----------------------------------------------------------------
    def engine(self, backend: str | None = None) -> Engine:
        """The (cached) engine for ``backend`` (default: the host's)."""
        name = backend or self.backend
        with self._lock:
            e = self._engines.get(name)
            if e is None:
                real = get_backend(name).name  # one engine per backend, however it was spelled
                e = self._engines.get(real)
                if e is None:
                    e = self._engines[real] = Engine(real)
                self._engines[name] = e
            return e

    def _code(self, engine: Engine, wasm: Any) -> _Code:
        if isinstance(wasm, Module):
            if wasm.engine is not engine:
                raise ValueError("the module was compiled for another engine")
            data = wasm._wasm or b""
            sha = hashlib.sha256(data).hexdigest() if data else f"module-{id(wasm)}"
            module = wasm
        else:
            data = _load_bytes(wasm)
            sha = hashlib.sha256(data).hexdigest()
            module = None
        key = (id(engine), sha)
        with self._lock:
            code = self._codes.get(key)
            if code is None:
                start = None
                if module is None:  # bytes: compile them with the start function hoisted (a compiled
                    hoisted = _hoist_start(data)  # Module is used as given, start section and all)
                    if hoisted is not None:
                        data, start = hoisted, START_EXPORT
                    module = Module.cached(engine, data)
                code = self._codes[key] = _Code(engine, module, sha, start)
            return code

    def load(self, config: PluginConfig, wasm: Any, *, engine: Engine | None = None, _vm_group: Any = None) -> Plugin:
        """Load a plugin into this host (same as ``Plugin(config, wasm, host=self)``)."""
        return Plugin(config, wasm, host=self, engine=engine, _vm_group=_vm_group)

    # -- VMs -----------------------------------------------------------------------------------
    def _new_vm(self, gen: _Generation) -> VM:
        self._count(gen.config.name, "vm_created")
        vm = VM(self, gen.code, gen)
        self._tls.all.add(vm)
        return vm

    def _acquire(self, gen: _Generation) -> tuple[VM, _Context]:
        ts = self._tls
        vm: VM | None
        root: _Context | None
        if gen.per_stream:
            spares = ts.spares.get(gen)
            vm = spares.pop() if spares else self._new_vm(gen)
            root = vm.roots.get(gen) or vm.start_root(gen)
            return vm, root
        key = gen.vm_key
        vm = ts.vms.get(key)
        if vm is not None and vm.failed is not None:
            cfg = gen.config
            if not cfg.reload_on_failure or self.clock.monotonic_ns() < vm.retry_ns:
                if cfg.reload_on_failure:
                    self._count(cfg.name, "vm_reload_backoff")
                # no VM is started: the stream gets the failure policy (the root is only a name)
                return vm, vm.roots.get(gen) or _Context(0, None, gen)
            return self._reload(ts, gen, vm)
        if vm is None:
            vm = self._new_vm(gen)
            ts.vms[key] = vm
        root = vm.roots.get(gen)
        if root is None or root.deleted:
            try:
                root = vm.start_root(gen)
            except PluginStartError:
                if not vm.roots:
                    ts.vms.pop(key, None)
                raise
        if ts.epoch != self._epoch:
            self._sweep(ts, gen)
        return vm, root

    def _reload(self, ts: _ThreadState, gen: _Generation, old: VM) -> tuple[VM, _Context]:
        """Replace this thread's failed VM ``old`` by a fresh one (Envoy's ``FAIL_RELOAD``; its
        backoff has passed). If the fresh one cannot start, ``old`` stays as the failed VM, with
        the next backoff, and the stream gets the failure policy."""
        cfg = gen.config
        self._count(cfg.name, "vm_reload")
        vm = None
        try:
            vm = self._new_vm(gen)
            vm.prior_crashes = old.crashes
            root = vm.start_root(gen)
        except PluginStartError as e:
            self._count(cfg.name, "vm_reload_failure")
            if vm is None or vm.failed is None:  # (a crash was reported by VM._crash already)
                self._count(cfg.name, "vm_failed")
            if vm is not None:
                vm.close()
            err = PluginCrash(f"plugin {cfg.name!r} failed to restart: {e}", callback=f"start ({e.phase})",
                              cause=e)
            old.failed = err
            self._backoff(old, old.crashes + 1, cfg)
            if vm is None or vm.failed is None:
                self._report(old, gen, err, 0)
            if cfg.failure_policy == "raise":
                raise err from None
            return old, old.roots.get(gen) or _Context(0, None, gen)
        self._count(cfg.name, "vm_reload_success")
        ts.vms[gen.vm_key] = vm
        old.close()
        if ts.epoch != self._epoch:
            self._sweep(ts, gen)
        return vm, root

    # -- failures --------------------------------------------------------------------------
    def _count(self, plugin: str, counter: str) -> None:
        """Add one to the host counter ``pwvm.<plugin>.<counter>`` (see :data:`STAT_COUNTERS`); the
        host's own counters do not count against the plugins' ``HostLimits.metrics_max``."""
        m = self.metrics
        m.increment(m.define(MetricType.COUNTER, f"pwvm.{plugin}.{counter}", bounded=False), 1)

    @staticmethod
    def _backoff(vm: VM, crashes: int, cfg: PluginConfig) -> float:
        """Set when the failed ``vm`` may be replaced (see :func:`reload_delay`)."""
        vm.crashes = crashes
        delay = reload_delay(cfg, crashes)
        vm.retry_ns = vm.host.clock.monotonic_ns() + int(delay * 1e9)
        return delay

    def _vm_failed(self, vm: VM, err: PluginCrash, gen: Any) -> None:
        """``vm`` (of this thread) failed in a callback (called once per VM, by ``VM._crash``)."""
        cfg: PluginConfig = (gen or vm.gen).config
        self._count(cfg.name, "vm_failed")
        self._backoff(vm, vm.prior_crashes + 1, cfg)
        self._report(vm, gen or vm.gen, err, err.context_id)

    def _report(self, vm: VM, gen: _Generation, err: PluginCrash, context_id: int) -> None:
        """The one log record of a failure: plugin, callback, cause, and what happens next."""
        cfg = gen.config
        if getattr(self._tls, "loading", False):
            then = "the plugin does not load"
        elif cfg.vm_per_stream:
            then = "the stream's VM is discarded"
        elif not cfg.reload_on_failure:
            then = f"the VM stays failed: streams get {cfg.failure_policy} (reload_on_failure=False)"
        else:
            wait = max(0, vm.retry_ns - self.clock.monotonic_ns()) / 1e9
            then = (f"a fresh VM starts with the first stream after {wait:.3g} s (failure {vm.crashes} in a row); "
                    f"until then streams get {cfg.failure_policy}")
        self._log_failure(cfg, err, context_id, then)

    def _log_failure(self, cfg: PluginConfig, err: PluginCrash, context_id: int, then: str) -> None:
        """Emit the one record of a failure (also for a plugin whose worker failed, see ``_remote_host``)."""
        msg = f"plugin {cfg.name!r} failed in {err.callback or 'start-up'}: {err}; {then}"
        self.logger.emit(LogRecord(LogLevel.ERROR, msg, cfg.name, cfg.root_id, cfg.vm_id, context_id))
        # A logger that forwards to Python logging (MemoryLogger, pwvm serve's) logs it there itself,
        # once; a worker's host logs in the parent's.
        if not getattr(self.logger, "forwards_to_logging", False) and not hasattr(self, "_bridge"):
            _log.error("%s", msg)

    # -- retirement -----------------------------------------------------------------------------
    def _warm(self, gen: _Generation) -> None:
        """Start a VM for ``gen`` on this thread now, so configuration errors surface at load time."""
        ts = self._tls
        ts.loading = True
        try:
            if gen.config.vm_per_stream:
                vm = self._new_vm(gen)
                vm.start_root(gen)
                ts.spares.setdefault(gen, []).append(vm)
            else:
                failed = ts.vms.get(gen.vm_key)
                if failed is not None and failed.failed is not None:
                    # a load or update replaces this thread's failed VM now: no backoff for the operator
                    del ts.vms[gen.vm_key]
                    failed.close()
                self._acquire(gen)
        except PluginStartError as e:
            hint = _root_id_hint(gen)
            if hint is None:
                raise
            raise PluginStartError(f"{e}; {hint}", phase=e.phase, cause=e.cause) from None
        finally:
            ts.loading = False
        hint = _root_id_hint(gen)
        key = (gen.code.sha, gen.config.root_id)
        if hint is not None and key not in self._warned:  # a warning, once per module and root id
            self._warned.add(key)
            cfg = gen.config
            msg = f"plugin {cfg.name!r}: {hint}"
            self.logger.emit(LogRecord(LogLevel.WARN, msg, cfg.name, cfg.root_id, cfg.vm_id, 0))
            if not getattr(self.logger, "forwards_to_logging", False) and not hasattr(self, "_bridge"):
                _log.warning("%s", msg)

    def _stream_released(self, vm: VM, ctx: Any) -> None:
        gen = ctx.root.gen
        if gen.per_stream and ctx.root.live <= 0:
            vm.close()

    def _root_deleted(self, vm: VM, root: Any) -> None:
        if vm.closed:  # VM.close() is shutting it down and releases it itself
            return
        if not vm.roots and not vm.streams:
            ts = self._tls
            current = {p._gen.vm_key for p in list(self.plugins)}
            for k, v in list(ts.vms.items()):
                if v is vm:
                    if k in current:  # a current version starts its root here (an update of configuration only)
                        return
                    del ts.vms[k]
            # nothing of this VM is left in use: release it (after the callback that led here)
            if vm.ctx is None:
                vm.release()
            else:
                vm.deferred.append(vm.release)

    def _retire(self, gen: _Generation) -> None:
        """``gen`` is replaced (update) or closed: its root contexts are shut down on every thread,
        each on its own (VMs are per thread): here now, elsewhere at the thread's next stream or
        :meth:`poll` (see :meth:`_sweep`), or when the thread ends; each once its streams ended."""
        with self._lock:
            gen.retired = True
            self._epoch += 1
        self._sweep(self._tls, None)

    def _sweep(self, ts: _ThreadState, keep: _Generation | None) -> None:
        """Shut down this thread's root contexts of retired generations whose streams have ended
        (those with streams open go when their last stream ends: ``VM._released``), and spares."""
        ts.epoch = self._epoch
        for vm in list(ts.all):
            if vm.closed:
                continue
            for g, root in list(vm.roots.items()):
                if g.retired and g is not keep and root.live <= 0 and not root.deleted:
                    vm.shutdown_root(root)
        for g in [g for g in ts.spares if g.retired]:
            for vm in ts.spares.pop(g):
                vm.close()

    # -- driving asynchronous work ---------------------------------------------------------------
    def _wake(self) -> None:
        self._event.set()
        for fn in self._wake_listeners:
            fn()

    def _remote_wake(self) -> None:
        """Work was posted in a worker running plugins of this host (``_remote_host``)."""
        self._remote_pending = True
        self._event.set()
        for fn in self._wake_listeners:
            fn()

    def poll(self, timeout: float = 0.0) -> int:
        """Run this thread's pending work: callout responses, gRPC and queue events, due ticks.

        Waits up to ``timeout`` seconds for something to happen when nothing is
        pending. Returns the number of events handled.
        """
        ts = self._tls
        if ts.epoch != self._epoch:
            self._sweep(ts, None)
        n = 0
        while True:
            self._event.clear()
            for vm in list(ts.all):
                if vm.inbox:
                    n += vm.drain()
            if self._remote_pending:
                self._remote_pending = False
                from ._remote_host import poll_workers

                n += poll_workers(self)
            n += self.scheduler.run_due()
            if n or timeout <= 0:
                return n
            wait = timeout
            nd = self.scheduler.next_due()
            if nd is not None:
                wait = min(wait, max(0.0, (nd - self.clock.monotonic_ns()) / 1e9))
            import time as _time

            t0 = _time.monotonic()
            self._event.wait(wait)
            timeout -= _time.monotonic() - t0

    def advance(self, seconds: float = 0.0, *, ms: float = 0.0) -> int:
        """With a :class:`ManualClock`: move time forward, firing due ticks in order; then poll."""
        n = self.poll()
        n += self.scheduler.advance(seconds, ms=ms)
        return n + self.poll()

    def run_until_idle(self, timeout: float = 5.0) -> int:
        """Poll until no callout, gRPC call or queue event is pending (or ``timeout`` passes)."""
        import time as _time

        deadline = _time.monotonic() + timeout
        n = self.poll()
        from ._remote_host import workers_busy

        while (any(vm.calls or vm.inbox for vm in list(self._tls.all)) or workers_busy(self)) \
                and _time.monotonic() < deadline:
            n += self.poll(timeout=min(0.05, max(0.0, deadline - _time.monotonic())))
        return n

    def close(self) -> None:
        """Shut every plugin down (root contexts get ``proxy_on_done``/``proxy_on_delete``)."""
        for p in list(self.plugins):
            p.close()
        for d in (self.http, self.grpc):
            try:
                d.close()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> ProxyWasmHost:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _root_id_hint(gen: _Generation) -> str | None:
    """What to tell about a root id the module does not know, where the host can tell (None else).

    SDKs differ: the C++ SDK and the solo-io AssemblyScript SDK pick the root context by the
    ``plugin_root_id`` property (the AssemblyScript one aborts when none has that name, the C++
    one falls back to a root and stream contexts that do nothing); the Rust, Go and G-Core SDKs
    have one root context and ignore the name. So a name that occurs nowhere in the module is
    an error when start-up fails (it explains it) and a warning otherwise.
    """
    rid = gen.config.root_id
    if not rid or gen.code.mentions(rid) is not False:
        return None
    return (f"root_id {rid!r} occurs nowhere in the module: an SDK that picks its root context by name "
            "(C++ SDK, solo-io AssemblyScript SDK) has no root context of that name, and aborts or does "
            "nothing; SDKs with a single root context (Rust, Go ...) ignore the name")


def _wasm_bytes(wasm: Any) -> bytes | None:
    """The module's bytes (``None`` for a compiled Module that no longer has them)."""
    return wasm._wasm if isinstance(wasm, Module) else _load_bytes(wasm)


def _host_stays_here(gen: _Generation, data: bytes | None) -> str | None:
    """Why a plugin version on a worker engine keeps its Proxy-Wasm host in this process
    (every host call is then one round trip to the worker), or None when its host can run
    in the worker (``_remote_host``)."""
    if not remote_host_enabled():
        return "PWVM_REMOTE_HOST=0 is set"
    if not data:
        return "the module was given compiled, without its bytes, which the worker needs"
    cfg = gen.config
    if cfg.vm_per_stream:
        return "vm_per_stream=True (a VM per stream) is served by this process's host only"
    if cfg.foreign_functions:
        return "it has plugin-specific foreign_functions, which must run in this process"
    try:
        pickle.dumps(cfg, 5)
    except Exception as e:  # noqa: BLE001 - holds something that does not copy
        return f"its configuration cannot be copied to the worker ({type(e).__name__}: {e})"
    return None


def _remote_for(plugin: Plugin, gen: _Generation, wasm: Any) -> Any:
    """A plugin on a worker engine runs with its host in the worker (see ``_remote_host``),
    when it can: None keeps the host here, and says why in one log record (the slower path
    is never taken silently)."""
    engine = gen.code.engine
    if engine.backend.isolation != "process":  # the runtime runs in this process
        return None
    data = _wasm_bytes(wasm)
    why = _host_stays_here(gen, data)
    if why is not None:
        level = logging.INFO if why.startswith("PWVM_REMOTE_HOST") else logging.WARNING
        _log.log(level, "plugin %r on %s: its Proxy-Wasm host stays in this process, so each host call is a "
                 "round trip to the worker process: %s", gen.config.name, engine.name, why)
        return None
    from ._remote_host import RemotePlugin

    assert data is not None  # (without bytes _host_stays_here has answered)
    return RemotePlugin(plugin, gen, data)


def _load_bytes(wasm: Any) -> bytes:
    if isinstance(wasm, (bytes, bytearray, memoryview)):
        return bytes(wasm)
    if isinstance(wasm, str) and wasm.lstrip().startswith("("):
        from .._module import wat2wasm

        return wat2wasm(wasm)
    if isinstance(wasm, (str, os.PathLike)):
        p = Path(wasm)
        data = p.read_bytes()
        if p.suffix == ".wat":
            from .._module import wat2wasm

            return wat2wasm(data.decode())
        return data
    raise TypeError(f"expected wasm bytes, WebAssembly text, a path or a Module, got {type(wasm).__name__}")


class Plugin:
    """A plugin loaded into a :class:`ProxyWasmHost`.

    ``wasm`` is the module: bytes, a path (``.wasm``/``.wat``), WebAssembly text
    or a compiled :class:`Module`. Compiled code comes from the engine's module
    cache. A VM is started on the calling thread right away, so a bad module
    or a configuration the plugin rejects raises here (:class:`AbiError`,
    :class:`LinkError`, :class:`PluginStartError`).

    Each thread that uses the plugin gets its own VM (like Envoy's per-worker
    VMs); plugins with the same ``vm_id`` and code share it, each with its own
    root context. :meth:`update` swaps in new code or configuration; streams
    already open finish on the old version.
    """

    def __init__(self, config: PluginConfig, wasm: Any, *, host: ProxyWasmHost | None = None,
                 engine: Engine | None = None, _vm_group: Any = None) -> None:
        self.host = host if host is not None else ProxyWasmHost(engine=engine)
        self._engine = engine
        # Plugins of one host share a thread's VM when their engine, code, vm_id and VM settings
        # match, as Envoy shares them. A private group (hashable, picklable) keeps this plugin's
        # VMs apart from plugins of other groups: pwvm serve gives each configuration generation
        # its own, so retiring an old generation never touches a VM the new one serves from.
        self._vm_group = _vm_group
        self._closed = False
        self._remote: Any = None
        self._gen = self._make_gen(config, wasm)
        self._remote = _remote_for(self, self._gen, wasm)
        if self._remote is None:
            self.host._warm(self._gen)
        self.host.plugins.append(self)

    def _make_gen(self, config: PluginConfig, wasm: Any) -> _Generation:
        engine = self._engine
        if engine is None or (config.backend is not None and get_backend(config.backend) is not engine.backend):
            engine = wasm.engine if isinstance(wasm, Module) else self.host.engine(config.backend)
        code = self.host._code(engine, wasm)
        self._wasm = wasm
        return _Generation(self, config, code)

    # -- information --------------------------------------------------------------------------
    @property
    def config(self) -> PluginConfig:
        """The current configuration."""
        return self._gen.config

    @property
    def name(self) -> str:
        return self._gen.config.name

    @property
    def abi(self) -> AbiVersion:
        """The ABI version the module declares."""
        return self._gen.code.abi

    @property
    def engine(self) -> Engine:
        """The engine running this plugin."""
        return self._gen.code.engine

    @property
    def logs(self) -> list[str]:
        """Messages this plugin logged (with the default :class:`MemoryLogger`)."""
        recs = getattr(self.host.logger, "records", ())
        return [r.message for r in recs if r.plugin == self.name]

    def log_records(self, level: LogLevel | None = None) -> list:
        """This plugin's :class:`LogRecord` objects, optionally at least ``level``."""
        recs = getattr(self.host.logger, "records", ())
        return [r for r in recs if r.plugin == self.name and (level is None or r.level >= level)]

    def stats(self) -> dict[str, int]:
        """This plugin's host counters (:data:`STAT_COUNTERS`: VMs created, failures, reloads ...),
        summed over threads and workers: ``{"vm_failed": 1, ...}``."""
        snap = self.host.metrics.snapshot()
        prefix = f"pwvm.{self.name}."
        return {c: int(snap.get(prefix + c, 0)) for c in STAT_COUNTERS}

    @property
    def failed(self) -> bool:
        """The VM of this thread is marked failed (a plugin trapped)."""
        vm = self._vm_here()
        if vm is None and self._remote is not None:  # (a VM here only if one was acquired directly)
            return bool(self._remote.get("failed"))
        return vm is not None and vm.failed is not None

    def _vm_here(self) -> VM | None:
        gen = self._gen
        if gen.config.vm_per_stream:
            spares = self.host._tls.spares.get(gen)
            return spares[-1] if spares else None
        return self.host._tls.vms.get(gen.vm_key)

    # -- streams ----------------------------------------------------------------------------------
    def http_stream(self, properties: Mapping[str, Any] | None = None) -> HttpStream:
        """Start an HTTP stream (creates its context). ``properties`` are stream attributes
        such as ``{"source.address": "10.0.0.1:5555"}``."""
        if self._closed:
            raise RuntimeError("the plugin is closed")
        if self._remote is not None:
            return self._remote.http_stream(self, properties)
        gen = self._gen
        host = self.host
        # The common case of host._acquire (this thread's shared VM is up and its root
        # context lives), without the call and the tuple.
        ts = host._tls
        # (a retirement since this thread's last sweep: _acquire sweeps)
        vm = None if gen.per_stream or ts.epoch != host._epoch else ts.vms.get(gen.vm_key)
        if vm is not None and vm.failed is None:
            root = vm.roots.get(gen)
            if root is not None and not root.deleted:
                return HttpStream(self, gen, vm, root, properties)
        vm, root = host._acquire(gen)
        return HttpStream(self, gen, vm, root, properties)

    def tcp_stream(self, properties: Mapping[str, Any] | None = None) -> TcpStream:
        """Start a TCP connection through a network plugin."""
        if self._closed:
            raise RuntimeError("the plugin is closed")
        if self._remote is not None:
            return self._remote.tcp_stream(self, properties)
        gen = self._gen
        vm, root = self.host._acquire(gen)
        return TcpStream(self, gen, vm, root, properties)

    def call_foreign_function(self, function_id: int, data: bytes = b"") -> None:
        """Run the plugin's ``proxy_on_foreign_function(root, function_id, len(data))`` on this thread's VM."""
        if self._remote is not None:
            self._remote.call("call_foreign_function", function_id, bytes(data))
            return
        vm, root = self.host._acquire(self._gen)
        vm.foreign_function(root, function_id, bytes(data))

    # -- updates and shutdown -------------------------------------------------------------------------
    def update(self, wasm: Any = None, config: PluginConfig | None = None, **changes: Any) -> None:
        """Swap in new code and/or configuration.

        New streams use the new version; streams already open finish on the
        old root context / VM, which is shut down when its last stream closes.
        ``changes`` are :class:`PluginConfig` fields (``configuration=b"..."``).
        """
        old = self._gen
        cfg = config if config is not None else old.config
        if changes:
            cfg = replace(cfg, **changes)
        new = self._make_gen(cfg, wasm if wasm is not None else self._wasm)
        if self._remote is not None:
            data = _wasm_bytes(self._wasm)
            why = _host_stays_here(new, data)
            if why is None:
                self._remote.update(new, data)
                self._gen = new
                return
            _log.warning("plugin %r on %s: the update moves its Proxy-Wasm host back to this process, so each "
                         "host call is a round trip to the worker process: %s", new.config.name,
                         new.code.engine.name, why)
            self._remote.close()  # the new version needs the host here: move it back
            self._remote = None
        self.host._warm(new)
        self._gen = new
        self.host._retire(old)

    def close(self) -> None:
        """Shut the plugin down on this thread: open streams are abandoned, root contexts get
        ``proxy_on_done`` (and ``proxy_on_delete`` now, or once the plugin calls ``proxy_done``)."""
        if self._closed:
            return
        self._closed = True
        if self._remote is not None:
            self._remote.close()
        else:
            self.host._retire(self._gen)
        if self in self.host.plugins:
            self.host.plugins.remove(self)

    def __enter__(self) -> Plugin:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Plugin {self.name!r} abi={self.abi.value} on {self.engine.name}>"
