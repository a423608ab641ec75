"""One plugin VM: a store + instance of a plugin module, its contexts, and calls into it.

A VM is single-threaded: every call into it happens on the thread that owns
it. Work that arrives from other threads (callout responses, gRPC events,
queue notifications) is posted to its inbox and run by
:meth:`ProxyWasmHost.poll` on the owner thread.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from .._errors import LinkError, Trap
from .._store import Store
from dataclasses import replace
from ._abi import AbiVersion, LogLevel, Status
from ._errors import PluginCrash, PluginExit, PluginStartError, _GuestExit
from ._hostcalls import CURRENT
from ._pairs import HeaderMap
from ._properties import normalize_path
from ._services import LogRecord

if TYPE_CHECKING:
    from ._plugin import ProxyWasmHost, _Code, _Generation

_M32 = 0xFFFFFFFF
STDIO_LINE_MAX = 4096
"""A partial line a plugin writes to stdout/stderr is buffered up to this many bytes, then logged."""
_NEVER = 1 << 62  # a bound of None ("no limit") as a number

# callback exports: attribute name -> export names (first found wins)
_CALLBACKS = {
    "f_context_create": ("proxy_on_context_create",),
    "f_vm_start": ("proxy_on_vm_start",),
    "f_configure": ("proxy_on_configure",),
    "f_tick": ("proxy_on_tick",),
    "f_queue_ready": ("proxy_on_queue_ready",),
    "f_foreign": ("proxy_on_foreign_function",),
    "f_new_connection": ("proxy_on_new_connection",),
    "f_downstream_data": ("proxy_on_downstream_data",),
    "f_upstream_data": ("proxy_on_upstream_data",),
    "f_downstream_close": ("proxy_on_downstream_connection_close",),
    "f_upstream_close": ("proxy_on_upstream_connection_close",),
    "f_request_headers": ("proxy_on_request_headers",),
    "f_request_body": ("proxy_on_request_body",),
    "f_request_trailers": ("proxy_on_request_trailers",),
    "f_response_headers": ("proxy_on_response_headers",),
    "f_response_body": ("proxy_on_response_body",),
    "f_response_trailers": ("proxy_on_response_trailers",),
    "f_done": ("proxy_on_done",),
    "f_log": ("proxy_on_log",),
    "f_delete": ("proxy_on_delete",),
    "f_http_call_response": ("proxy_on_http_call_response",),
    "f_grpc_initial": ("proxy_on_grpc_receive_initial_metadata",),
    "f_grpc_receive": ("proxy_on_grpc_receive",),
    "f_grpc_trailing": ("proxy_on_grpc_receive_trailing_metadata", "proxy_on_grpc_trailing_metadata"),
    "f_grpc_close": ("proxy_on_grpc_close",),
    "f_allocate": ("proxy_on_memory_allocate", "malloc"),
}


_NO_PROPS: dict = {}


class _Context:
    """A root (plugin) context or a stream context inside one VM."""

    __slots__ = ("id", "root", "is_root", "maps", "bufs", "properties", "props_bytes", "stream", "done_pending",
                 "deleted", "gen", "live", "tick_ms")

    def __init__(self, cid: int, root: _Context | None, gen: Any = None, stream: Any = None) -> None:
        self.id = cid
        if root is None:
            self.root = self
            self.is_root = True
            self.gen = gen
        else:
            self.root = root
            self.is_root = False
            self.gen = root.gen
        self.maps: list = [None, None, None, None]
        self.bufs: list = [None, None, None, None]
        self.properties: dict[str, bytes] = _NO_PROPS  # replaced by a real dict on first set
        self.props_bytes = 0  # names + values in properties (HostLimits.properties_max_bytes)
        self.stream: Any = stream
        self.done_pending = self.deleted = False
        self.live = self.tick_ms = 0

    def __repr__(self) -> str:
        return f"<{'root' if self.is_root else 'stream'} context {self.id}>"


class _Call:
    __slots__ = ("kind", "root", "handle", "stream")

    def __init__(self, kind: str, root: _Context) -> None:
        self.kind = kind  # "http", "grpc_call", "grpc_stream"
        self.root = root
        self.handle: Any = None
        self.stream = False


class VM:
    """A running instance of a plugin module (internal; see :class:`Plugin`)."""

    # The plugin's callback exports (None when it does not export one), set from _CALLBACKS
    # by __init__ with setattr.
    f_context_create: Callable[..., Any] | None
    f_vm_start: Callable[..., Any] | None
    f_configure: Callable[..., Any] | None
    f_tick: Callable[..., Any] | None
    f_queue_ready: Callable[..., Any] | None
    f_foreign: Callable[..., Any] | None
    f_new_connection: Callable[..., Any] | None
    f_downstream_data: Callable[..., Any] | None
    f_upstream_data: Callable[..., Any] | None
    f_downstream_close: Callable[..., Any] | None
    f_upstream_close: Callable[..., Any] | None
    f_request_headers: Callable[..., Any] | None
    f_request_body: Callable[..., Any] | None
    f_request_trailers: Callable[..., Any] | None
    f_response_headers: Callable[..., Any] | None
    f_response_body: Callable[..., Any] | None
    f_response_trailers: Callable[..., Any] | None
    f_done: Callable[..., Any] | None
    f_log: Callable[..., Any] | None
    f_delete: Callable[..., Any] | None
    f_http_call_response: Callable[..., Any] | None
    f_grpc_initial: Callable[..., Any] | None
    f_grpc_receive: Callable[..., Any] | None
    f_grpc_trailing: Callable[..., Any] | None
    f_grpc_close: Callable[..., Any] | None
    f_allocate: Callable[..., Any] | None

    def __init__(self, host: ProxyWasmHost, code: _Code, gen: _Generation) -> None:
        cfg = gen.config
        self.host = host
        self.code = code
        self.vm_id: str = cfg.vm_id
        self.vm_config: bytes = gen.vm_config
        self.environ: list[bytes] = gen.environ
        self.args: list[bytes] = gen.args
        self.memory: Any = None
        self.ctx: _Context | None = None
        self.contexts: dict[int, _Context] = {}
        self.roots: dict[Any, _Context] = {}
        self.streams: set = set()
        self.next_id = 1
        self.next_token = 1
        self.failed: PluginCrash | None = None
        self.gen = gen  # the generation it was started for (failure reports)
        # Failures in a row of this VM's line on this thread (Envoy's FAIL_RELOAD backoff,
        # ProxyWasmHost._backoff): before this VM started, and counting its own failure once
        # it failed; ``retry_ns``: when a failed VM may be replaced (host clock, monotonic).
        self.prior_crashes = self.crashes = 0
        self.retry_ns = 0
        self.owner = threading.get_ident()
        self.inbox: deque = deque()
        self.cb_maps: list = [None] * 8
        self.cb_bufs: list = [None] * 9
        self.status: tuple[int, bytes] = (0, b"")
        self.calls: dict[int, _Call] = {}
        self.config_phase = "plugin"
        self.deferred: list[Callable[[], None]] = []
        self.hdr_args = code.hdr_args
        #: the module is built for ABI 0.1.0: host functions whose answer differs by version look here
        self.abi010 = code.abi is AbiVersion.V0_1_0
        self.closed = False
        self.logger = host.logger
        self.log_level = host.logger.level
        bounds = self.limits = host.limits
        self.keep_case: bool = host.preserve_header_case  # header maps the host builds keep names' case
        self._limits_logged: set[str] = set()
        # the bounds host functions check on hot paths, with "no limit" as a number never reached
        self.hm_pairs = bounds.header_map_max_pairs or _NEVER
        self.hm_bytes = bounds.header_map_max_bytes or _NEVER
        self.body_max = bounds.body_buffer_max_bytes or _NEVER
        self._log_ident = (cfg.name, cfg.root_id)
        self.stdio_bufs: dict[int, bytearray] = {}  # fd -> the unfinished line written to stdout/stderr
        self.stdio_pending = False  # some stdio_bufs entry is not empty

        # the start phase (instantiation, _initialize, start_root) runs under the longer start deadline
        lim = gen.limits
        if gen.start_deadline != lim.deadline:
            lim = replace(lim, deadline=gen.start_deadline)
        self.store = Store(code.engine, limits=lim)  # (no data: host functions find the VM in CURRENT)
        self._deadline = gen.start_deadline  # the store's deadline now
        linker = code.linker(gen.denied)
        cur = CURRENT
        prev = cur.vm
        cur.vm = self
        try:
            self.instance = linker.instantiate(self.store, code.module)
            exports = self.instance.exports
            mem = exports.get("memory") if "memory" in exports else None
            if mem is not None:
                self.memory = mem
            if code.start_export is not None:
                # The module's start function, moved to an export at load time (_plugin._hoist_start):
                # it finishes the instantiation, as it would have run inside it.
                exports[code.start_export]()
        except LinkError:
            raise
        except _GuestExit as e:
            raise PluginStartError(f"plugin exited during instantiation: {e}", phase="instantiate", cause=e) from None
        except Exception as e:
            raise PluginStartError(f"instantiation failed: {e}", phase="instantiate", cause=e) from e
        finally:
            if self.stdio_pending:
                self.flush_stdio()
            cur.vm = prev
        names = set(exports)
        for attr, candidates in _CALLBACKS.items():
            fn = None
            for n in candidates:
                if n in names:
                    fn = exports[n]
                    break
            setattr(self, attr, fn)
        if self.abi010:  # a 0.2.x callback: proxy-wasm-cpp-host looks it up in 0.2.x modules only
            self.f_foreign = None
        self._start(exports, names)

    # -- start-up ------------------------------------------------------------------
    def _start(self, exports: Any, names: set) -> None:
        cur = CURRENT
        prev = cur.vm
        cur.vm = self
        try:
            if "_initialize" in names:
                exports["_initialize"]()
                if "main" in names and len(exports["main"].type.params) == 2:
                    exports["main"](0, 0)
            elif "_start" in names:
                exports["_start"]()
        except _GuestExit as e:
            if e.code != 0:
                raise PluginStartError(f"plugin exited with code {e.code} during start-up", phase="initialize",
                                       cause=PluginExit(e.code, e.message)) from None
        except Exception as e:
            raise PluginStartError(f"plugin start-up failed: {e}", phase="initialize", cause=e) from e
        finally:
            if self.stdio_pending:
                self.flush_stdio()
            cur.vm = prev

    def bind_memory(self, caller: Any) -> None:
        """Called by host functions that run before the instance exists (start section)."""
        mem = caller.memory
        if mem is None:
            raise LookupError("the plugin's memory is not reachable from this host call (no 'memory' export, "
                              "or the backend gives no caller memory during instantiation)")
        self.memory = mem

    # -- calls into the plugin -------------------------------------------------------
    def call_in(self, ctx: _Context, name: str, fn: Any, *args: int) -> Any:
        """Run ``fn(*args)`` with ``ctx`` as the effective context.

        A trap or exit marks the VM failed and raises :class:`PluginCrash`.
        """
        if self.failed is not None:
            raise self.failed
        prev = self.ctx
        self.ctx = ctx
        cur = CURRENT
        other = cur.vm
        if other is not self:
            cur.vm = self
        try:
            return fn(*args)
        except (Exception, _GuestExit) as e:
            raise self._crash(name, ctx, e) from None
        finally:
            if prev is None and self.stdio_pending:
                self.flush_stdio()  # a partial line ends with the callback (still in its context)
            self.ctx = prev
            if other is not self and other is not None:
                cur.vm = other  # a call nested in another VM's host function: give it back
            # Contexts are never None inside a call, so ``prev is None`` marks the outermost
            # call: work the plugin deferred (proxy_done) runs once that one returns.
            if prev is None and self.deferred:
                self._run_deferred()

    def _run_deferred(self) -> None:
        while self.deferred:
            self.deferred.pop(0)()

    def _crash(self, name: str, ctx: _Context, e: BaseException) -> PluginCrash:
        if isinstance(e, PluginCrash):
            return e
        cid = ctx.id if ctx is not None else 0
        if isinstance(e, _GuestExit):
            err: PluginCrash = PluginExit(e.code, f"plugin exited (code {e.code}) in {name}"
                                          + (f": {e.message}" if e.message else ""),
                                          callback=name, context_id=cid, cause=e)
        elif isinstance(e, Trap):
            err = PluginCrash(f"plugin trapped in {name}: {e}", callback=name, context_id=cid, cause=e)
        else:
            err = PluginCrash(f"plugin failed in {name}: {type(e).__name__}: {e}", callback=name, context_id=cid,
                              cause=e)
        if self.failed is None:
            self.failed = err
            self.deferred.clear()
            if self.stdio_pending:
                self.flush_stdio()  # what the plugin wrote before it failed (a Go panic) comes first
            self.host._vm_failed(self, err, ctx.gen if ctx is not None else None)  # logged once, counted
            for s in list(self.streams):
                s._vm_failed(err)
            self._cancel_all()
        return err

    # -- contexts ------------------------------------------------------------------------
    def _new_id(self) -> int:
        cid = self.next_id
        self.next_id = (cid + 1) & _M32 or 1
        return cid

    def start_root(self, gen: _Generation) -> _Context:
        """Create the root context of plugin generation ``gen``: context_create, vm_start, configure."""
        root = _Context(self._new_id(), None, gen)
        self.contexts[root.id] = root
        self.roots[gen] = root
        self._set_deadline(gen.start_deadline)
        try:
            if self.f_context_create is not None:
                self.call_in(root, "proxy_on_context_create", self.f_context_create, root.id, 0)
            if self.f_vm_start is not None:
                self.config_phase = "vm"
                ok = self.call_in(root, "proxy_on_vm_start", self.f_vm_start, root.id, len(self.vm_config))
                if not ok & _M32:
                    raise PluginStartError(f"plugin {gen.config.name!r}: proxy_on_vm_start returned false",
                                           phase="vm_start")
            if self.f_configure is not None:
                self.config_phase = "plugin"
                ok = self.call_in(root, "proxy_on_configure", self.f_configure, root.id, len(gen.configuration))
                if not ok & _M32:
                    raise PluginStartError(f"plugin {gen.config.name!r}: proxy_on_configure returned false",
                                           phase="configure")
        except PluginCrash as e:
            self._drop(root)
            raise PluginStartError(f"plugin {gen.config.name!r} failed to start: {e}", phase="configure",
                                   cause=e) from None
        except PluginStartError:
            self._drop(root)
            raise
        finally:
            self.config_phase = "plugin"
            if self.failed is None:
                self._set_deadline(gen.limits.deadline)  # callbacks from now on
        return root

    def _set_deadline(self, seconds: float | None) -> None:
        if seconds != self._deadline:
            self.store.set_deadline(seconds)
            self._deadline = seconds

    def _drop(self, ctx: _Context) -> None:
        ctx.deleted = True
        self.contexts.pop(ctx.id, None)
        if ctx.is_root:
            if self.roots.get(ctx.gen) is ctx:
                del self.roots[ctx.gen]
            self.host.scheduler.cancel((id(self), ctx.id))
            for tok, call in list(self.calls.items()):
                if call.root is ctx:
                    self._cancel_call(tok)

    def new_stream(self, root: _Context, driver: Any) -> _Context:
        """Create a stream context under ``root`` for ``driver`` (an HttpStream/TcpStream)."""
        cid = self.next_id  # self._new_id(), inlined
        self.next_id = (cid + 1) & _M32 or 1
        ctx = _Context(cid, root, None, driver)
        self.contexts[cid] = ctx
        self.streams.add(driver)
        root.live += 1
        fn = self.f_context_create
        if fn is not None and self.failed is None:
            self.call_in(ctx, "proxy_on_context_create", fn, cid, root.id)
        return ctx

    def finish_stream(self, ctx: _Context) -> None:
        """The host is done with a stream: on_done, then on_log + on_delete (now or after proxy_done)."""
        self.streams.discard(ctx.stream)
        if ctx.deleted:
            return
        if self.failed is not None:
            self._released(ctx)
            return
        f_done = self.f_done
        if f_done is None or self.call_in(ctx, "proxy_on_done", f_done, ctx.id) & _M32:
            self._log_delete(ctx)
        else:
            ctx.done_pending = True

    def _log_delete(self, ctx: _Context) -> None:
        if ctx.deleted:
            return
        try:
            fn = self.f_log
            if fn is not None and self.failed is None:
                self.call_in(ctx, "proxy_on_log", fn, ctx.id)
            fn = self.f_delete
            if fn is not None and self.failed is None:
                self.call_in(ctx, "proxy_on_delete", fn, ctx.id)
            if not ctx.is_root and self.failed is None:
                self.prior_crashes = 0  # a stream served without a failure: the reload backoff starts over
        finally:
            self._released(ctx)

    def _released(self, ctx: _Context) -> None:
        if ctx.deleted:
            return
        ctx.deleted = True
        self.contexts.pop(ctx.id, None)
        ctx.stream = None  # stream <-> context: without the cycle, reference counting frees both
        root = ctx.root
        root.live -= 1
        if root.live <= 0:
            gen = root.gen
            if gen.retired and not root.deleted:
                self.shutdown_root(root)
            if gen.per_stream:  # the only case ProxyWasmHost._stream_released acts on
                self.host._stream_released(self, ctx)

    def shutdown_root(self, root: _Context) -> None:
        """Stop a root context: on_done then on_delete (now, or after the plugin calls proxy_done)."""
        if root.deleted or root.done_pending:
            return
        if self.failed is not None:
            self._drop(root)
            return
        done = True
        try:
            if self.f_done is not None:
                done = bool(self.call_in(root, "proxy_on_done", self.f_done, root.id) & _M32)
        except PluginCrash:
            self._drop(root)
            return
        if done:
            self._delete_root(root)
        else:
            root.done_pending = True

    def _delete_root(self, root: _Context) -> None:
        try:
            if self.failed is None and self.f_delete is not None:
                self.call_in(root, "proxy_on_delete", self.f_delete, root.id)
        except PluginCrash:
            pass
        finally:
            self._drop(root)
            self.host._root_deleted(self, root)

    def proxy_done(self) -> Status:
        """``proxy_done`` from the plugin: finish the effective context after the current callback."""
        ctx = self.ctx
        if ctx is None or not ctx.done_pending:
            return Status.NOT_FOUND
        ctx.done_pending = False
        self.deferred.append((lambda: self._delete_root(ctx)) if ctx.is_root else (lambda: self._log_delete(ctx)))
        return Status.OK

    def close(self) -> None:
        """Shut every root down and release the VM (streams still open are abandoned)."""
        if self.closed:
            return
        self.closed = True
        if self.stdio_pending:
            self.flush_stdio()
        for root in list(self.roots.values()):
            if not root.deleted and not root.done_pending:
                try:
                    self.shutdown_root(root)
                except PluginCrash:
                    pass
        self._cancel_all()
        if not any(r.done_pending for r in self.roots.values()):
            self.release()

    def release(self) -> None:
        """Mark the VM closed and stop it being this thread's current VM, so the runtime's
        memory goes with the last reference."""
        self.closed = True
        if CURRENT.vm is self:  # (the thread's last VM stays current after a call: not a released one)
            CURRENT.vm = None

    # -- timers, queues, callouts ----------------------------------------------------------
    def limit_hit(self, name: str, detail: str, level: LogLevel = LogLevel.WARN) -> None:
        """The plugin ran into the :class:`HostLimits` bound ``name``: count it (metric
        ``pwvm.limit_exceeded.<name>``) and log it (once per VM and bound: a plugin that
        retries in a loop must not flood the log)."""
        self.host._count_limit(name)
        if name not in self._limits_logged:
            self._limits_logged.add(name)
            self.log(int(level), f"host limit {name}: {detail} (further hits are counted in metric "
                                    f"{self.host.LIMIT_METRIC}{name})".encode(), force=level >= LogLevel.WARN)

    def set_tick(self, root: _Context, period_ms: int) -> None:
        floor = self.limits.tick_min_period_ms
        if period_ms and floor is not None and period_ms < floor:
            self.limit_hit("tick_period", f"tick period {period_ms} ms raised to {floor} ms "
                                          f"(HostLimits.tick_min_period_ms)", LogLevel.DEBUG)
            period_ms = floor
        root.tick_ms = period_ms
        self.host.scheduler.set_period((id(self), root.id), period_ms, lambda: self._tick(root))

    def _tick(self, root: _Context) -> None:
        if root.deleted or self.failed is not None or self.f_tick is None:
            self.host.scheduler.cancel((id(self), root.id))
            return
        self._event(root, "proxy_on_tick", self.f_tick, root.id)

    def _event(self, root: _Context, name: str, fn: Any, *args: int) -> None:
        """Run a root-context event callback; crashes follow the plugin's failure policy."""
        try:
            self.call_in(root, name, fn, *args)
        except PluginCrash:
            if root.gen.config.failure_policy == "raise":
                raise

    def post(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` to run on the owner thread at the next poll (thread-safe)."""
        self.inbox.append(fn)
        self.host._wake()

    def drain(self) -> int:
        n = 0
        inbox = self.inbox
        while inbox:
            fn = inbox.popleft()
            n += 1
            fn()
        return n

    def queue_notifier(self, root: _Context) -> Callable[[int], None]:
        def notify(token: int) -> None:
            self.post(lambda: self._queue_ready(root, token))
        return notify

    def _queue_ready(self, root: _Context, token: int) -> None:
        if root.deleted or self.failed is not None or self.f_queue_ready is None:
            return
        self._event(root, "proxy_on_queue_ready", self.f_queue_ready, root.id, token)

    def new_token(self) -> int:
        t = self.next_token
        self.next_token = (t + 1) & _M32 or 1
        return t

    def _cancel_call(self, token: int) -> None:
        call = self.calls.pop(token, None)
        if call is None or call.handle is None:
            return
        try:
            if call.kind == "http":
                self.host.http.cancel(call.handle)
            else:
                call.handle.cancel()
        except Exception:  # noqa: BLE001 - best effort
            pass

    def _cancel_all(self) -> None:
        for tok in list(self.calls):
            self._cancel_call(tok)
        for root in list(self.roots.values()):
            self.host.scheduler.cancel((id(self), root.id))

    def http_response(self, token: int, resp: Any) -> None:
        """Deliver an HTTP call's response (owner thread)."""
        call = self.calls.pop(token, None)
        if call is None or call.root.deleted or self.failed is not None:
            return
        root = call.root
        cap = self.limits.callout_response_max_bytes
        if resp.error is None and cap is not None and len(resp.body) > cap:
            self.limit_hit("callout_response", f"HTTP call response body of {len(resp.body)} bytes exceeds {cap} "
                                               f"(HostLimits.callout_response_max_bytes): delivered as a failed call")
            resp = type(resp).failure("response_too_large")
        failed = resp.error is not None
        headers = HeaderMap() if failed else resp.headers
        trailers = HeaderMap() if failed else resp.trailers
        body = b"" if failed else resp.body
        self.cb_maps[6] = headers
        self.cb_maps[7] = trailers
        self.cb_bufs[4] = bytearray(body)
        self.status = (Status.BROKEN_CONNECTION, (resp.error or "").encode()) if failed else (0, b"")
        try:
            if self.f_http_call_response is not None:
                self._event(root, "proxy_on_http_call_response", self.f_http_call_response, root.id, token,
                            len(headers), len(body), len(trailers))
        finally:
            self.cb_maps[6] = self.cb_maps[7] = None
            self.cb_bufs[4] = None

    def grpc_event(self, token: int, kind: str, payload: Any, message: str = "") -> None:
        """Deliver one gRPC event (owner thread)."""
        call = self.calls.get(token)
        if call is None or call.root.deleted or self.failed is not None:
            return
        root = call.root
        try:
            if kind == "initial":
                self.cb_maps[4] = payload
                if self.f_grpc_initial is not None:
                    self._event(root, "proxy_on_grpc_receive_initial_metadata", self.f_grpc_initial, root.id, token,
                                len(payload))
            elif kind == "message":
                cap = self.limits.callout_response_max_bytes
                if cap is not None and len(payload) > cap:
                    # the call cannot go on without this message: close it as gRPC does past its
                    # receive limit (RESOURCE_EXHAUSTED)
                    self.limit_hit("callout_response", f"gRPC message of {len(payload)} bytes exceeds {cap} "
                                                       f"(HostLimits.callout_response_max_bytes): call closed")
                    self._cancel_call(token)
                    self.calls[token] = call  # (kept until the close below is delivered)
                    self.grpc_event(token, "close", 8, "received message larger than max")
                    return
                self.cb_bufs[5] = bytearray(payload)
                if self.f_grpc_receive is not None:
                    self._event(root, "proxy_on_grpc_receive", self.f_grpc_receive, root.id, token, len(payload))
            elif kind == "trailing":
                self.cb_maps[5] = payload
                if self.f_grpc_trailing is not None:
                    self._event(root, "proxy_on_grpc_receive_trailing_metadata", self.f_grpc_trailing, root.id,
                                token, len(payload))
            elif kind == "close":
                self.calls.pop(token, None)
                self.status = (payload & _M32, message.encode())
                if self.f_grpc_close is not None:
                    self._event(root, "proxy_on_grpc_close", self.f_grpc_close, root.id, token, payload & _M32)
        finally:
            self.cb_maps[4] = self.cb_maps[5] = None
            self.cb_bufs[5] = None

    def foreign_function(self, root: _Context, function_id: int, data: bytes) -> None:
        """Run ``proxy_on_foreign_function`` on ``root`` with ``data`` as its arguments buffer."""
        if self.f_foreign is None:
            if self.abi010:
                raise LookupError("proxy_on_foreign_function is a callback of ABI 0.2.x: a plugin built for ABI "
                                  "0.1.0 is never called on it")
            raise LookupError("the plugin exports no proxy_on_foreign_function")
        self.cb_bufs[8] = bytearray(data)
        try:
            self._event(root, "proxy_on_foreign_function", self.f_foreign, root.id, function_id & _M32, len(data))
        finally:
            self.cb_bufs[8] = None

    # -- host-side state used by host functions ---------------------------------------------
    def log(self, level: int, message: bytes, *, force: bool = False) -> None:
        if level < self.log_level and not force:
            return
        ctx = self.ctx
        plugin, root_id = self._log_ident
        if ctx is not None and ctx.gen is not None:
            plugin, root_id = ctx.gen.config.name, ctx.gen.config.root_id
        self.logger.emit(LogRecord(LogLevel(level), message.decode("utf-8", "replace"), plugin, root_id, self.vm_id,
                                   ctx.id if ctx is not None else 0))

    def log_lines(self, level: int, message: bytes) -> None:
        """``proxy_log``: one record per line (a message with newlines gives several records;
        one trailing newline gives no empty last record)."""
        if b"\n" not in message:
            self.log(level, message)
            return
        if message.endswith(b"\n"):
            message = message[:-1]
        for line in message.split(b"\n"):
            self.log(level, line)

    def stdio(self, fd: int, data: bytes) -> None:
        """WASI ``fd_write`` to stdout (INFO, as Envoy logs it) or stderr (ERROR).

        Programs write a line in pieces (the Go runtime prints a panic through
        several ``fd_write`` calls per line), so bytes are buffered per fd and
        logged one record per complete line. An unfinished line is logged when
        the callback ends (:meth:`flush_stdio`), when the VM fails or closes, or
        once it reaches :data:`STDIO_LINE_MAX` bytes, so the buffer stays bounded.
        """
        level = LogLevel.INFO if fd == 1 else LogLevel.ERROR
        if level < self.log_level:
            return  # below the level: every line would be dropped
        buf = self.stdio_bufs.get(fd)
        if buf is None:
            buf = self.stdio_bufs[fd] = bytearray()
        buf += data
        if b"\n" in data:
            lines = buf.split(b"\n")
            buf[:] = lines.pop()
            for line in lines:
                self.log(level, bytes(line))
        while len(buf) >= STDIO_LINE_MAX:
            self.log(level, bytes(buf[:STDIO_LINE_MAX]))
            del buf[:STDIO_LINE_MAX]
        self.stdio_pending = any(self.stdio_bufs.values())

    def flush_stdio(self) -> None:
        """Log the unfinished stdout/stderr lines (each as one record)."""
        self.stdio_pending = False
        for fd, buf in self.stdio_bufs.items():
            if buf:
                line = bytes(buf)
                buf.clear()
                self.log(LogLevel.INFO if fd == 1 else LogLevel.ERROR, line)

    def get_property(self, raw: bytes) -> bytes | None:
        name = normalize_path(raw)
        ctx = self.ctx
        # Host functions run inside call_in, which sets the effective context; during
        # instantiation/_initialize there is none (the host function then fails as before).
        assert ctx is not None, "proxy_get_property outside a plugin callback (no effective context)"
        v = ctx.properties.get(name)
        if v is not None:
            return v
        root = ctx.root
        if root is not ctx:
            v = root.properties.get(name)
            if v is not None:
                return v
        s = ctx.stream
        if s is not None:
            v = s._props.get(name)
            if v is not None:
                return v
        gen = ctx.gen
        if gen is not None:
            v = gen.props.get(name)
            if v is not None:
                return v
        v = self.host._props.get(name)
        if v is not None:
            return v
        if s is not None:
            return s._wellknown(name)
        return None

    def host_error(self, name: str, e: BaseException, code: int) -> int:
        """A host function raised unexpectedly: log it and answer ``code``."""
        self.log(LogLevel.ERROR, f"host function {name} failed: {type(e).__name__}: {e}".encode(), force=True)
        return code

    def __repr__(self) -> str:
        return f"<VM {self.code.name} vm_id={self.vm_id!r}{' FAILED' if self.failed else ''}>"
