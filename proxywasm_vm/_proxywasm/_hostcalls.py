"""The ``proxy_*`` host functions, and the linker that defines them once per engine.

Every host function receives the VM (:data:`CURRENT`, the VM running on this
thread) and its integer arguments already masked to u32 (i64 arguments arrive
unchanged). Bad guest input never escapes as an exception: out-of-range memory
gives INVALID_MEMORY_ACCESS, anything unexpected INTERNAL_FAILURE (and a log line).
Traps of nested calls (the guest allocator) and ``proc_exit`` propagate.
"""

from __future__ import annotations

import struct
import threading
import weakref
from typing import Any, Callable

from .._errors import LinkError, Trap
from .._fastcall import compile_generated
from .._linker import Linker
from .._types import FuncType, ValType
from ._abi import MetricType
from ._errors import _GuestExit
from ._grpc import GrpcEvents, UnknownGrpcUpstream
from ._http import HttpCallRequest, UnknownUpstream
from ._pairs import HeaderMap, PairsError, flat_nbytes, parse_pairs, serialize_flat
from ._properties import normalize_path
from ._services import ForeignFunctionError

__all__ = ["HOST_FUNCTIONS", "linker_for"]

I32, I64, F64 = ValType.I32, ValType.I64, ValType.F64
OK, NOT_FOUND, BAD_ARGUMENT, PARSE_FAILURE = 0, 1, 2, 4
INVALID_MEMORY_ACCESS, EMPTY, INTERNAL_FAILURE, UNIMPLEMENTED = 6, 7, 10, 12
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_PAIR = struct.Struct("<II")


# ---------------------------------------------------------------------------------------------
# helpers


def _out(vm: Any, data: bytes, ptr_ptr: int, size_ptr: int) -> int:
    """Copy ``data`` into a fresh guest allocation and write (pointer, size) to the out-pointers.

    As in proxy-wasm-cpp-host, the out-pointers are checked when written: a
    bad one gives INVALID_MEMORY_ACCESS (the guest's allocation is then its own).
    """
    mem = vm.memory
    n = len(data)
    if n:
        alloc = vm.f_allocate  # the guest's allocator (proxy_on_memory_allocate or malloc)
        p = alloc(n) & 0xFFFFFFFF if alloc is not None else 0
        if not p:
            return INVALID_MEMORY_ACCESS
        mem.write(p, data)
    else:
        p = 0
    if size_ptr == ptr_ptr + 4:  # the usual layout: both out-words in one write
        mem.write(ptr_ptr, _PAIR.pack(p, n))
    else:
        mem.write(ptr_ptr, _U32.pack(p))
        mem.write(size_ptr, _U32.pack(n))
    return OK


def _put_u32(mem: Any, ptr: int, value: int) -> None:
    mem.write(ptr, _U32.pack(value))


def _fits(mem: Any, ptr: int, size: int) -> bool:
    """Whether [ptr, ptr+size) is inside memory (a small read is cheaper than ``data_size``)."""
    try:
        mem.read(ptr, size)
        return True
    except (IndexError, OverflowError):
        return False


def _map(vm: Any, t: int, write: bool = False) -> Any:
    """The header map ``t`` of the effective context: a HeaderMap, None (NOT_FOUND) or an int status."""
    if t < 4:
        ctx = vm.ctx
        m = ctx.maps[t]
        if m is None and write and (t == 1 or t == 3) and ctx.stream is not None and ctx.stream._http:
            m = ctx.maps[t] = HeaderMap(preserve_case=vm.keep_case)  # trailers may be added at end of stream
            ctx.stream._trailers_created(t, m)
        return m
    if t < 8:
        if write:
            return BAD_ARGUMENT
        return vm.cb_maps[t]
    return BAD_ARGUMENT


def _buffer(vm: Any, t: int, write: bool = False) -> Any:
    """The buffer ``t``: a bytearray/bytes, None (NOT_FOUND) or an int status."""
    if t < 4:
        return vm.ctx.bufs[t]
    if t > 8:
        return BAD_ARGUMENT
    if write:
        return BAD_ARGUMENT
    if t == 6:
        return vm.vm_config
    if t == 7:
        gen = vm.ctx.gen
        return gen.configuration if gen is not None else None
    return vm.cb_bufs[t]


def _pairs_status(vm: Any, e: PairsError) -> int:
    if e.oversized:
        vm.limit_hit("header_map", str(e))
        return BAD_ARGUMENT
    return PARSE_FAILURE


def _parse_map(vm: Any, raw: bytes) -> list:
    """Parse a serialized map from the guest within the header-map bounds (HostLimits); raises PairsError."""
    pairs, nbytes = vm.hm_pairs, vm.hm_bytes
    # the serialized form adds 4 bytes of count, 8 of lengths and 2 NULs per field
    flat = parse_pairs(raw, max_pairs=pairs, max_bytes=4 + 10 * pairs + nbytes)
    total = flat_nbytes(flat)
    if total > nbytes:
        raise PairsError(f"serialized map holds {total} bytes of names and values (limit {nbytes})", oversized=True)
    return flat


def _name_too_long(vm: Any, what: str, size: int) -> bool:
    """Whether a metric or queue name of ``size`` bytes is past HostLimits.name_max_bytes (counted, logged)."""
    cap = vm.limits.name_max_bytes
    if cap is not None and size > cap:
        vm.limit_hit("name", f"a {what} name of {size} bytes (limit {cap}: HostLimits.name_max_bytes)")
        return True
    return False


def _map_full(vm: Any, m: HeaderMap, add_pairs: int, add_bytes: int) -> bool:
    """Whether ``m`` with ``add_pairs`` more fields and ``add_bytes`` more bytes is past the
    header-map bounds (HostLimits); counts and logs the hit."""
    flat = m._flat
    n = (len(flat) >> 1) + add_pairs
    size = flat_nbytes(flat) + add_bytes
    if n > vm.hm_pairs or size > vm.hm_bytes:
        vm.limit_hit("header_map", f"a header map of {n} fields and {size} bytes is past the limits "
                                   f"({vm.hm_pairs} fields, {vm.hm_bytes} bytes: HostLimits.header_map_max_*)")
        return True
    return False


# ---------------------------------------------------------------------------------------------
# logging, time, timers


def proxy_log(vm, level, ptr, size):
    if level > 5:
        return BAD_ARGUMENT
    if level >= vm.log_level:  # lines below the level are dropped unread (as Envoy does)
        vm.log_lines(level, vm.memory.read(ptr, size))  # one record per line
    return OK


def proxy_get_log_level(vm, ptr):
    _put_u32(vm.memory, ptr, int(vm.log_level))
    return OK


def proxy_get_current_time_nanoseconds(vm, ptr):
    vm.memory.write(ptr, _U64.pack(vm.host.clock.now_ns()))
    return OK


def proxy_set_tick_period_milliseconds(vm, period):
    vm.set_tick(vm.ctx.root, period)
    return OK


# ---------------------------------------------------------------------------------------------
# buffers


def proxy_get_buffer_bytes(vm, t, start, max_size, ptr_ptr, size_ptr):
    buf = _buffer(vm, t)
    if buf is None:
        return NOT_FOUND
    if buf.__class__ is int:
        return buf
    n = len(buf)
    if start > n:
        return BAD_ARGUMENT
    data = buf[start:start + max_size]
    if not data:
        return OK  # empty: nothing to copy, out-pointers untouched
    return _out(vm, bytes(data), ptr_ptr, size_ptr)


def proxy_set_buffer_bytes(vm, t, start, size, ptr, length):
    data = vm.memory.read(ptr, length)
    buf = _buffer(vm, t, True)
    if buf is None:
        return NOT_FOUND
    if buf.__class__ is int:
        return buf
    n = len(buf)
    new = n + len(data) - (0 if start >= n else min(size, n - start))
    if new > vm.body_max and new > n:
        vm.limit_hit("body_buffer", f"proxy_set_buffer_bytes would make a buffer of {new} bytes (limit "
                                    f"{vm.body_max}: HostLimits.body_buffer_max_bytes)")
        return BAD_ARGUMENT
    if start >= n:
        buf += data
    else:
        buf[start:start + size] = data
    return OK


def proxy_get_buffer_status(vm, t, size_ptr, flags_ptr):
    buf = _buffer(vm, t)
    if buf is None:
        return NOT_FOUND
    if buf.__class__ is int:
        return buf
    mem = vm.memory
    _put_u32(mem, size_ptr, len(buf))
    _put_u32(mem, flags_ptr, 0)
    return OK


# ---------------------------------------------------------------------------------------------
# header maps


# The header-map functions below run several times per request: the common case of
# ``_map`` (a stream map read, ``t < 4``) and of ``HeaderMap`` methods is written out in place.


def proxy_get_header_map_pairs(vm, t, ptr_ptr, size_ptr):
    m = vm.ctx.maps[t] if t < 4 else _map(vm, t)
    if m is None:
        return NOT_FOUND
    if m.__class__ is int:
        return m
    data = m._ser
    if data is None:
        data = m._ser = serialize_flat(m._flat)  # m.serialize()
    return _out(vm, data, ptr_ptr, size_ptr)


def proxy_set_header_map_pairs(vm, t, ptr, size):
    data = vm.memory.read(ptr, size)
    m = _map(vm, t, True)
    if m is None:
        return NOT_FOUND
    if m.__class__ is int:
        return m
    try:
        flat = _parse_map(vm, data)
    except PairsError as e:
        return _pairs_status(vm, e)
    m.set_flat(flat)
    return OK


def proxy_get_header_map_size(vm, t, size_ptr):
    m = _map(vm, t)
    if m is None:
        return NOT_FOUND
    if m.__class__ is int:
        return m
    _put_u32(vm.memory, size_ptr, len(m.serialize()))
    return OK


def proxy_get_header_map_value(vm, t, kp, ks, ptr_ptr, size_ptr):
    key = vm.memory.read(kp, ks)
    m = vm.ctx.maps[t] if t < 4 else _map(vm, t)
    if m is None:
        return _no_header_value(vm, ptr_ptr, size_ptr)
    if m.__class__ is int:
        return m
    v = m.get_bytes(key)
    if v is None:
        return _no_header_value(vm, ptr_ptr, size_ptr)
    return _out(vm, v, ptr_ptr, size_ptr)


def _no_header_value(vm, ptr_ptr, size_ptr):
    """The answer to reading a header value that is not there (no such key, or no such map now).

    ABI 0.2.x: NOT_FOUND. ABI 0.1.0: OK with an empty value (pointer 0, size 0 written), as
    Envoy answers 0.1.0 modules (its ``getHeaderMapValue`` branches on the ABI version for a
    missing key, and for a missing map in the access-log phase, where 0.2.x gets NotFound);
    0.1.0 SDKs read the out-words without looking at the status.
    """
    if vm.abi010:
        return _out(vm, b"", ptr_ptr, size_ptr)
    return NOT_FOUND


def proxy_add_header_map_value(vm, t, kp, ks, vp, vs):
    mem = vm.memory
    key = mem.read(kp, ks)
    value = mem.read(vp, vs)
    m = vm.ctx.maps[t] if t < 4 else None
    if m is None:  # not a stream map that exists: _map has the rest (BAD_ARGUMENT, new trailers ...)
        m = _map(vm, t, True)
        if m is None:
            return NOT_FOUND
        if m.__class__ is int:
            return m
    flat = m._flat
    ser = m._ser  # when cached (the plugin read the map first, as most do), it tells the byte size for free
    # (else flat_nbytes: a plugin that adds several headers without reading the map in between pays
    # this once per header)
    if len(flat) >= 2 * vm.hm_pairs or ks + vs + (
            len(ser) - 4 - 5 * len(flat) if ser is not None else flat_nbytes(flat)) > vm.hm_bytes:
        _map_full(vm, m, 1, ks + vs)  # counts and logs it
        return BAD_ARGUMENT
    # HeaderMap.add: Envoy lower-cases the name a plugin adds (Context::addHeaderMapValue takes it as an
    # Http::LowerCaseString); a map that preserves case keeps it as the plugin wrote it
    flat += (key if m._keep else key.lower(), value)
    m._ser = None
    return OK


def proxy_replace_header_map_value(vm, t, kp, ks, vp, vs):
    mem = vm.memory
    key = mem.read(kp, ks)
    value = mem.read(vp, vs)
    m = _map(vm, t, True)
    if m is None:
        return NOT_FOUND
    if m.__class__ is int:
        return m
    flat = m._flat
    same = m._where(key)  # the fields replace() takes out
    if _map_full(vm, m, 1 - len(same), ks + vs - sum(len(flat[i]) + len(flat[i + 1]) for i in same)):
        return BAD_ARGUMENT
    m.replace(key, value)
    return OK


def proxy_remove_header_map_value(vm, t, kp, ks):
    key = vm.memory.read(kp, ks)
    m = _map(vm, t, True)
    if m is None:
        return NOT_FOUND
    if m.__class__ is int:
        return m
    m.remove(key)
    return OK


# ---------------------------------------------------------------------------------------------
# properties


def proxy_get_property(vm, pp, ps, ptr_ptr, size_ptr):
    path = vm.memory.read(pp, ps)
    v = vm.get_property(path)
    if v is None:
        return NOT_FOUND
    return _out(vm, v, ptr_ptr, size_ptr)


def proxy_set_property(vm, pp, ps, vp, vs):
    mem = vm.memory
    path = mem.read(pp, ps)
    value = mem.read(vp, vs)
    if not path.strip(b"\0"):
        return BAD_ARGUMENT
    ctx = vm.ctx
    if not ctx.properties:
        ctx.properties = {}
    props = ctx.properties
    name = normalize_path(path)
    cap = vm.limits.properties_max_bytes
    old = props.get(name)
    size = ctx.props_bytes + len(value) + (len(name) if old is None else -len(old))  # kept as a running sum
    if cap is not None and size > cap:
        vm.limit_hit("properties", f"the properties set on context {ctx.id} would hold {size} bytes (limit "
                                   f"{cap}: HostLimits.properties_max_bytes)")
        return BAD_ARGUMENT
    ctx.props_bytes = size
    props[name] = value
    return OK


# ---------------------------------------------------------------------------------------------
# stream control


def proxy_continue_stream(vm, t):
    s = vm.ctx.stream
    if t > 3 or s is None:
        return BAD_ARGUMENT
    return s._continue(t)


def proxy_close_stream(vm, t):
    s = vm.ctx.stream
    if t > 3 or s is None:
        return BAD_ARGUMENT
    return s._close(t)


def proxy_continue_request(vm):
    s = vm.ctx.stream
    return s._continue(0) if s is not None and s._http else BAD_ARGUMENT


def proxy_continue_response(vm):
    s = vm.ctx.stream
    return s._continue(1) if s is not None and s._http else BAD_ARGUMENT


def proxy_clear_route_cache(vm):
    s = vm.ctx.stream
    if s is not None and s._http:
        s.route_cache_cleared += 1
    return OK


def proxy_send_local_response(vm, code, dp, ds, bp, bs, hp, hs, grpc_status):
    mem = vm.memory
    details = mem.read(dp, ds)
    body = mem.read(bp, bs)
    raw = mem.read(hp, hs)
    try:
        headers = HeaderMap._from_flat(_parse_map(vm, raw), vm.keep_case)
    except PairsError as e:
        return _pairs_status(vm, e)
    s = vm.ctx.stream
    if s is None or not s._http:
        return NOT_FOUND
    return s._local_response(code, body, headers, details, grpc_status)


def proxy_get_configuration(vm, ptr_ptr, size_ptr):
    if vm.config_phase == "vm":
        data = vm.vm_config
    else:
        gen = vm.ctx.gen
        data = gen.configuration if gen is not None else b""
    return _out(vm, data, ptr_ptr, size_ptr)


# ---------------------------------------------------------------------------------------------
# HTTP and gRPC callouts


def proxy_http_call(vm, up, us, hp, hs, bp, bs, tp, ts, timeout, token_ptr):
    mem = vm.memory
    upstream = mem.read(up, us)
    raw_h = mem.read(hp, hs)
    body = mem.read(bp, bs)
    raw_t = mem.read(tp, ts)
    if not _fits(mem, token_ptr, 4):
        return INVALID_MEMORY_ACCESS
    try:
        headers = HeaderMap._from_flat(_parse_map(vm, raw_h), vm.keep_case)
        trailers = HeaderMap._from_flat(_parse_map(vm, raw_t), vm.keep_case)
    except PairsError as e:
        return _pairs_status(vm, e)
    # Envoy builds the request from the pairs with lower-cased names (buildRequestHeaderMapFromPairs)
    headers.set_flat(headers._flat)
    trailers.set_flat(trailers._flat)
    if headers.get_bytes(b":method") is None or headers.get_bytes(b":path") is None or (
            headers.get_bytes(b":authority") is None and headers.get_bytes(b"host") is None):
        return BAD_ARGUMENT
    req = HttpCallRequest(upstream.decode("utf-8", "replace"), headers, body, trailers, timeout)

    def start(token: int) -> Any:
        def deliver(resp: Any) -> None:
            vm.post(lambda: vm.http_response(token, resp))

        return vm.host.http.dispatch(req, deliver)

    return _start_call(vm, token_ptr, "http", start, UnknownUpstream, BAD_ARGUMENT, "proxy_http_call")


def _start_call(vm, token_ptr, kind: str, start: Any, unknown: type[Exception], unknown_status: int,
                name: str) -> int:
    """Register an outgoing call of ``kind`` under a new token, start it (``start(token)``
    returns the dispatcher's handle) and write the token to ``token_ptr``; an unknown
    upstream answers ``unknown_status``, any other failure of the dispatcher INTERNAL_FAILURE."""
    from ._vm import _Call

    cap = vm.limits.max_pending_calls
    if cap is not None and len(vm.calls) >= cap:
        vm.limit_hit("pending_calls", f"{len(vm.calls)} calls in flight (limit {cap}: HostLimits.max_pending_calls)")
        return BAD_ARGUMENT
    token = vm.new_token()
    call = _Call(kind, vm.ctx.root)
    vm.calls[token] = call
    try:
        call.handle = start(token)
    except unknown:
        vm.calls.pop(token, None)
        return unknown_status
    except Exception as e:  # noqa: BLE001
        vm.calls.pop(token, None)
        return vm.host_error(name, e, INTERNAL_FAILURE)
    _put_u32(vm.memory, token_ptr, token)
    return OK


class _GrpcSink(GrpcEvents):
    __slots__ = ("vm", "token")

    def __init__(self, vm: Any, token: int) -> None:
        self.vm = vm
        self.token = token

    def initial_metadata(self, metadata: HeaderMap) -> None:
        vm, tok = self.vm, self.token
        vm.post(lambda: vm.grpc_event(tok, "initial", metadata))

    def message(self, data: bytes) -> None:
        vm, tok = self.vm, self.token
        vm.post(lambda: vm.grpc_event(tok, "message", data))

    def trailing_metadata(self, metadata: HeaderMap) -> None:
        vm, tok = self.vm, self.token
        vm.post(lambda: vm.grpc_event(tok, "trailing", metadata))

    def close(self, status: int, message: str = "") -> None:
        vm, tok = self.vm, self.token
        vm.post(lambda: vm.grpc_event(tok, "close", status, message))


def _grpc_start(vm, stream, up, us, sp, ss, mp, ms, mdp, mds, msgp, msgs, timeout, token_ptr):
    mem = vm.memory
    upstream = mem.read(up, us).decode("utf-8", "replace")
    service = mem.read(sp, ss).decode("utf-8", "replace")
    method = mem.read(mp, ms).decode("utf-8", "replace")
    raw_md = mem.read(mdp, mds)
    message = mem.read(msgp, msgs) if not stream else b""
    if not _fits(mem, token_ptr, 4):
        return INVALID_MEMORY_ACCESS
    try:
        metadata = HeaderMap._from_flat(_parse_map(vm, raw_md))
    except PairsError as e:
        return _pairs_status(vm, e)
    # lower-cased as the HTTP call's headers (Envoy: buildRequestHeaderMapFromPairs), also when the
    # host preserves case: gRPC runs on HTTP/2, whose field names must be lower case (RFC 9113 8.2.1)
    metadata.set_flat(metadata._flat)

    def start(token: int) -> Any:
        vm.calls[token].stream = stream
        sink = _GrpcSink(vm, token)
        if stream:
            return vm.host.grpc.stream(upstream, service, method, metadata, sink)
        return vm.host.grpc.call(upstream, service, method, metadata, message, timeout, sink)

    return _start_call(vm, token_ptr, "grpc_stream" if stream else "grpc_call", start, UnknownGrpcUpstream,
                       PARSE_FAILURE, "proxy_grpc_call")


def proxy_grpc_call(vm, up, us, sp, ss, mp, ms, mdp, mds, msgp, msgs, timeout, token_ptr):
    return _grpc_start(vm, False, up, us, sp, ss, mp, ms, mdp, mds, msgp, msgs, timeout, token_ptr)


def proxy_grpc_stream(vm, up, us, sp, ss, mp, ms, mdp, mds, token_ptr):
    return _grpc_start(vm, True, up, us, sp, ss, mp, ms, mdp, mds, 0, 0, 0, token_ptr)


def proxy_grpc_send(vm, token, p, s, end_stream):
    data = vm.memory.read(p, s)
    call = vm.calls.get(token)
    if call is None or call.kind == "http":
        return NOT_FOUND
    if not call.stream:
        return BAD_ARGUMENT
    return OK if call.handle.send(data, bool(end_stream)) else BAD_ARGUMENT


def proxy_grpc_cancel(vm, token):
    call = vm.calls.get(token)
    if call is None or call.kind == "http":
        return NOT_FOUND
    vm._cancel_call(token)
    return OK


def proxy_grpc_close(vm, token):
    call = vm.calls.get(token)
    if call is None or call.kind == "http":
        return NOT_FOUND
    if call.stream:
        call.handle.close()
    else:
        vm._cancel_call(token)
    return OK


# ---------------------------------------------------------------------------------------------
# shared data and queues


def proxy_get_shared_data(vm, kp, ks, ptr_ptr, size_ptr, cas_ptr):
    mem = vm.memory
    key = mem.read(kp, ks)
    if not _fits(mem, cas_ptr, 4):
        return INVALID_MEMORY_ACCESS
    r = vm.host.shared_data.get(vm.vm_id, key)
    if r is None:
        return NOT_FOUND
    st = _out(vm, r[0], ptr_ptr, size_ptr)
    if st == OK:
        _put_u32(mem, cas_ptr, r[1])
    return st


def proxy_set_shared_data(vm, kp, ks, vp, vs, cas):
    mem = vm.memory
    key = mem.read(kp, ks)
    value = mem.read(vp, vs)
    st = int(vm.host.shared_data.set(vm.vm_id, key, value, cas))
    if st == BAD_ARGUMENT:
        vm.limit_hit("shared_data", f"shared data refused a value of {vs} bytes under a key of {ks} bytes "
                                    f"(HostLimits.shared_data_max_*)")
    return st


def proxy_register_shared_queue(vm, np, ns, token_ptr):
    mem = vm.memory
    name = mem.read(np, ns).decode("utf-8", "replace")
    if not _fits(mem, token_ptr, 4):
        return INVALID_MEMORY_ACCESS
    if _name_too_long(vm, "queue", ns):
        return BAD_ARGUMENT
    root = vm.ctx.root
    try:
        token = vm.host.queues.register(vm.vm_id, name, vm.queue_notifier(root))
    except OverflowError as e:
        vm.limit_hit("queues", f"{e} (HostLimits.queues_max)")
        return BAD_ARGUMENT
    _put_u32(mem, token_ptr, token)
    return OK


def proxy_resolve_shared_queue(vm, vp, vs, np, ns, token_ptr):
    mem = vm.memory
    vm_id = mem.read(vp, vs).decode("utf-8", "replace") or vm.vm_id
    name = mem.read(np, ns).decode("utf-8", "replace")
    if not _fits(mem, token_ptr, 4):
        return INVALID_MEMORY_ACCESS
    token = vm.host.queues.resolve(vm_id, name)
    if token is None:
        return NOT_FOUND
    _put_u32(mem, token_ptr, token)
    return OK


def proxy_enqueue_shared_queue(vm, token, p, s):
    data = vm.memory.read(p, s)
    st = int(vm.host.queues.enqueue(token, data))
    if st == BAD_ARGUMENT:
        vm.limit_hit("queue", f"queue {token} refused an item of {s} bytes (HostLimits.queue_max_*)")
    return st


def proxy_dequeue_shared_queue(vm, token, ptr_ptr, size_ptr):
    mem = vm.memory
    if not _fits(mem, ptr_ptr, 4) or not _fits(mem, size_ptr, 4):
        return INVALID_MEMORY_ACCESS
    st, data = vm.host.queues.dequeue(token, vm.vm_id)
    if st:
        return int(st)
    return _out(vm, data, ptr_ptr, size_ptr)


# ---------------------------------------------------------------------------------------------
# metrics


def proxy_define_metric(vm, t, np, ns, id_ptr):
    mem = vm.memory
    name = mem.read(np, ns).decode("utf-8", "replace")
    if t > 2:
        return BAD_ARGUMENT
    if not _fits(mem, id_ptr, 4):
        return INVALID_MEMORY_ACCESS
    if _name_too_long(vm, "metric", ns):
        return BAD_ARGUMENT
    try:
        mid = vm.host.metrics.define(MetricType(t), name)
    except OverflowError as e:
        vm.limit_hit("metrics", f"{e} (HostLimits.metrics_max)")
        return BAD_ARGUMENT
    _put_u32(mem, id_ptr, mid)
    return OK


def proxy_increment_metric(vm, metric_id, delta):
    return int(vm.host.metrics.increment(metric_id, delta))


def proxy_record_metric(vm, metric_id, value):
    return int(vm.host.metrics.record(metric_id, value & 0xFFFFFFFFFFFFFFFF))


def proxy_get_metric(vm, metric_id, ptr):
    mem = vm.memory
    if not _fits(mem, ptr, 8):
        return INVALID_MEMORY_ACCESS
    st, value = vm.host.metrics.get(metric_id)
    if st:
        return int(st)
    mem.write(ptr, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))
    return OK


# ---------------------------------------------------------------------------------------------
# foreign functions, contexts, status


def proxy_call_foreign_function(vm, np, ns, ap, as_, ptr_ptr, size_ptr):
    mem = vm.memory
    name = mem.read(np, ns).decode("utf-8", "replace")
    args = mem.read(ap, as_)
    if not _fits(mem, ptr_ptr, 4) or not _fits(mem, size_ptr, 4):
        return INVALID_MEMORY_ACCESS
    gen = vm.ctx.gen
    fn = gen.foreign.get(name) if gen is not None else None
    if fn is None:
        fn = vm.host.foreign_functions.get(name)
    if fn is None:
        return NOT_FOUND
    try:
        r = fn(args)
    except ForeignFunctionError as e:
        if e.limit is not None:
            vm.limit_hit(e.limit, e.message)
        return int(e.status)
    except LookupError:
        return NOT_FOUND
    except ValueError:
        return BAD_ARGUMENT
    except Exception as e:  # noqa: BLE001
        return vm.host_error(f"foreign function {name!r}", e, INTERNAL_FAILURE)
    if r is None:
        r = b""
    elif isinstance(r, str):
        r = r.encode()
    return _out(vm, bytes(r), ptr_ptr, size_ptr)


def proxy_set_effective_context(vm, cid):
    ctx = vm.contexts.get(cid)
    if ctx is None:
        return BAD_ARGUMENT
    vm.ctx = ctx
    return OK


def proxy_done(vm):
    return int(vm.proxy_done())


def proxy_get_status(vm, code_ptr, ptr_ptr, size_ptr):
    mem = vm.memory
    if not _fits(mem, code_ptr, 4):
        return INVALID_MEMORY_ACCESS
    code, msg = vm.status
    st = _out(vm, msg, ptr_ptr, size_ptr)
    if st == OK:
        _put_u32(mem, code_ptr, int(code))
    return st


# ---------------------------------------------------------------------------------------------
# AssemblyScript / emscripten odds and ends (module "env")


def _as_string(mem: Any, ptr: int) -> str:
    if not ptr or ptr < 4:
        return ""
    try:
        n = mem.read_u32(ptr - 4)
        return mem.read(ptr, min(n, 2048)).decode("utf-16-le", "replace")
    except (IndexError, OverflowError):
        return ""


def env_abort(vm, msg, file, line, col):
    mem = vm.memory
    text = f"abort: {_as_string(mem, msg)} at {_as_string(mem, file)}:{line}:{col}"
    raise _GuestExit(255, text)


def env_notify_memory_growth(vm, idx):
    return None


def env_seed(vm):
    return float(vm.host.clock.now_ns() % 1_000_003)


def env_pthread_equal(vm, left, right):
    # Emscripten builds of the 0.1.0 era (Istio's stats filter ...) import it from the embedder;
    # proxy-wasm-cpp-host defines it for every ABI version: 1 when the two thread ids are equal.
    return 1 if left == right else 0


# ---------------------------------------------------------------------------------------------
# the table of host functions


def _t(n: int, *, i64: tuple = (), result: Any = I32) -> FuncType:
    params = [I64 if i in i64 else I32 for i in range(n)]
    return FuncType(params, [result] if result is not None else [])


#: (module, name) -> (FuncType, implementation, status for bad memory)
HOST_FUNCTIONS: dict[tuple[str, str], tuple[FuncType, Callable[..., Any], int]] = {}


def _def(name: str, ty: FuncType, fn: Callable[..., Any], module: str = "env", err: int = INVALID_MEMORY_ACCESS):
    HOST_FUNCTIONS[(module, name)] = (ty, fn, err)


for _name, _n in [
    ("proxy_log", 3), ("proxy_get_log_level", 1), ("proxy_get_current_time_nanoseconds", 1),
    ("proxy_set_tick_period_milliseconds", 1), ("proxy_get_buffer_bytes", 5), ("proxy_set_buffer_bytes", 5),
    ("proxy_get_buffer_status", 3), ("proxy_get_header_map_pairs", 3), ("proxy_set_header_map_pairs", 3),
    ("proxy_get_header_map_size", 2), ("proxy_get_header_map_value", 5), ("proxy_add_header_map_value", 5),
    ("proxy_replace_header_map_value", 5), ("proxy_remove_header_map_value", 3), ("proxy_get_property", 4),
    ("proxy_set_property", 4), ("proxy_continue_stream", 1), ("proxy_close_stream", 1),
    ("proxy_continue_request", 0), ("proxy_continue_response", 0), ("proxy_clear_route_cache", 0),
    ("proxy_send_local_response", 8), ("proxy_get_configuration", 2), ("proxy_http_call", 10),
    ("proxy_grpc_call", 12), ("proxy_grpc_stream", 9), ("proxy_grpc_send", 4), ("proxy_grpc_cancel", 1),
    ("proxy_grpc_close", 1), ("proxy_get_shared_data", 5), ("proxy_set_shared_data", 5),
    ("proxy_register_shared_queue", 3), ("proxy_resolve_shared_queue", 5), ("proxy_enqueue_shared_queue", 3),
    ("proxy_dequeue_shared_queue", 3), ("proxy_define_metric", 4), ("proxy_get_metric", 2),
    ("proxy_call_foreign_function", 6), ("proxy_set_effective_context", 1), ("proxy_done", 0),
    ("proxy_get_status", 3),
]:
    _def(_name, _t(_n), globals()[_name])
_def("proxy_increment_metric", _t(2, i64=(1,)), proxy_increment_metric)
_def("proxy_record_metric", _t(2, i64=(1,)), proxy_record_metric)
_def("abort", _t(4, result=None), env_abort)
_def("emscripten_notify_memory_growth", _t(1, result=None), env_notify_memory_growth)
_def("seed", FuncType([], [F64]), env_seed)
_def("pthread_equal", _t(2), env_pthread_equal)

from . import _wasi  # noqa: E402  (defines the WASI functions through _def)

_wasi.register(_def)


# ---------------------------------------------------------------------------------------------
# guards and linkers

_PASS = (Trap, _GuestExit)
_MEMERR = (IndexError, OverflowError)


class _Current(threading.local):
    vm: Any = None


#: The VM running on this thread: the one way a host function finds its VM. Every entry
#: into a plugin's wasm sets it (VM.call_in, and VM start-up around instantiation and
#: ``_initialize``) and gives the previous one back after (a call nested in another VM's
#: host function). One attribute read per host call, no Caller object to build, and right
#: with several threads (each has its own) and several VMs on one thread (saved, restored).
CURRENT = _Current()


# The guard around every host function: one ``def host`` per signature shape, generated
# from this template by ``_guard`` (exact arity, i32 masking written out). Kept because it
# pays against the plain ``*args`` equivalent: see bench/test_trampolines.py.
_GUARD_SRC = """
def host({params}):
    vm = CURRENT.vm
{head}    try:
        return fn(vm{passed})
    except MEMERR:
        {ret_err}
    except PASS:
        raise
    except Exception as e:
        {ret}vm.host_error(NAME, e, INTERNAL)
"""


def _guard(module: str, name: str, ty: FuncType, fn: Callable[..., Any], err: int,
           with_caller: bool) -> Callable[..., Any]:
    """An exact-arity host function: finds the VM (:data:`CURRENT`), masks i32 args to u32,
    maps errors to statuses, then calls ``fn(vm, ...)`` (the implementation, unchanged).

    ``with_caller``: the function also takes the Caller, to reach memory while the
    instance does not exist yet (modules with a start section).
    """
    ns: dict[str, Any] = {"fn": fn, "ERR": err, "MEMERR": _MEMERR, "PASS": _PASS, "NAME": f"{module}.{name}",
                          "INTERNAL": INTERNAL_FAILURE if module == "env" else 29, "CURRENT": CURRENT}
    args = [f"a{i}" for i in range(len(ty.params))]
    passed = [f"a{i} & 4294967295" if t is I32 else f"a{i}" for i, t in enumerate(ty.params)]
    has_result = bool(ty.results)
    if with_caller:
        params = ", ".join(["caller"] + args)
        head = "    if vm.memory is None:\n        vm.bind_memory(caller)\n"
    else:
        params = ", ".join(args)
        head = ""
    src = _GUARD_SRC.format(params=params, head=head, passed="".join(", " + a for a in passed),
                            ret_err="return ERR" if has_result else "return None",
                            ret="return " if has_result else "")
    what = f"host-function guard for {ty}{' with caller' if with_caller else ''}"
    host = compile_generated(src, what, ns)["host"]
    host.__name__ = name
    return host


def _adapt(fn: Callable[..., Any], want: FuncType, have: FuncType) -> Callable[..., Any]:
    """Fit ``fn`` (typed ``have``) to an import typed ``want`` that differs only in its result."""
    if want.results and not have.results:
        def adapted(*a):
            r = fn(*a)
            return 0 if r is None else r
    else:
        def adapted(*a):
            fn(*a)
            return None
    return adapted


def _unimplemented(module: str):
    code = UNIMPLEMENTED if module == "env" else 76  # WASI ENOTCAPABLE

    def denied(*a):
        return code
    return denied


_LINKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_imports(module: Any) -> tuple:
    """Validate a module's imports against the host; returns the type variants it needs.

    Raises :class:`LinkError` naming the first import this host does not provide.
    """
    variants = []
    for imp in module.imports:
        key = (imp.module, imp.name)
        d = HOST_FUNCTIONS.get(key)
        if d is None:
            raise LinkError(f"the plugin imports {imp.module}.{imp.name}, which this Proxy-Wasm host does not "
                            f"provide", module=imp.module, name=imp.name, expected=imp.type)
        if not isinstance(imp.type, FuncType):
            raise LinkError(f"the plugin imports {imp.module}.{imp.name} as a non-function", module=imp.module,
                            name=imp.name, expected=imp.type)
        if imp.type != d[0]:
            if imp.type.params != d[0].params or len(imp.type.results) > 1 or (
                    imp.type.results and imp.type.results[0] is not I32):
                raise LinkError(f"the plugin imports {imp.module}.{imp.name} with type {imp.type}; this host "
                                f"defines it as {d[0]}", module=imp.module, name=imp.name, expected=imp.type,
                                actual=d[0])
            variants.append((imp.module, imp.name, imp.type))
    return tuple(sorted(variants, key=lambda v: (v[0], v[1])))


def linker_for(engine: Any, variants: tuple = (), denied: frozenset = frozenset(),
               with_caller: bool = False) -> Linker:
    """The linker with every host function, for ``engine`` (cached per type variants, denied set and flavour)."""
    per_engine = _LINKERS.get(engine)
    if per_engine is None:
        per_engine = _LINKERS[engine] = {}
    key = (variants, denied, with_caller)
    linker = per_engine.get(key)
    if linker is not None:
        return linker
    linker = Linker(engine)
    want = {(m, n): ty for m, n, ty in variants}
    for (module, name), (ty, fn, err) in HOST_FUNCTIONS.items():
        impl = fn
        wty = want.get((module, name), ty)
        if name in denied or f"{module}.{name}" in denied:
            impl = _unimplemented(module)
            if not ty.results:
                impl = (lambda f: (lambda *a: None))(impl)
        if wty != ty:
            impl = _adapt(impl, wty, ty)
        linker.define_func(module, name, wty, _guard(module, name, wty, impl, err, with_caller),
                           access_caller=with_caller)
    per_engine[key] = linker
    return linker
