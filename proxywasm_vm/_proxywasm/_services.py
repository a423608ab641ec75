"""Host services: logging, shared data, shared queues, metrics, clocks and timers, foreign functions.

Each is a small object with an in-memory default that an embedder can
replace (for example with one that talks to a real proxy, or to the parent
process when the host runs inside a worker). They are thread-safe: one
instance serves every VM of a :class:`~proxywasm_vm.ProxyWasmHost`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from ._abi import LogLevel, MetricType, Status
from ._limits import HostLimits, over

_DEFAULT = HostLimits()

__all__ = [
    "LogRecord", "Logger", "MemoryLogger", "SharedData", "SharedQueues", "Metrics", "Metric",
    "Clock", "SystemClock", "ManualClock", "Scheduler", "ForeignFunctions", "ForeignFunctionError",
]

_M32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# logging


class LogRecord(NamedTuple):
    """One line a plugin logged (``proxy_log`` or WASI ``fd_write``)."""

    level: LogLevel
    message: str
    plugin: str
    root_id: str
    vm_id: str
    context_id: int


class Logger:
    """Where plugin logs go. Subclass and override :meth:`emit`.

    ``level`` is what ``proxy_get_log_level`` reports; lines below it are
    dropped before :meth:`emit`.

    The host's own records of a plugin failure (and start-up hints) go to :meth:`emit` too, and
    also to the standard :mod:`logging` logger ``proxywasm_vm`` unless ``forwards_to_logging`` is
    True: a logger that writes its records to :mod:`logging` itself says so, and each failure is
    logged once.
    """

    #: this logger writes every record to the standard :mod:`logging` itself
    forwards_to_logging: bool = False

    def __init__(self, level: LogLevel = LogLevel.INFO) -> None:
        self.level = LogLevel(level)

    def emit(self, record: LogRecord) -> None:
        """Handle one record (the default does nothing)."""


class MemoryLogger(Logger):
    """Keeps the latest records in memory (a ring buffer) and forwards each to the standard
    :mod:`logging` logger ``proxywasm_vm.plugin`` when it is enabled.

    The ring holds at most ``maxlen`` records and ``max_bytes`` message characters
    (default :attr:`HostLimits.log_max_bytes`; ``None``: no byte bound): the oldest
    records go first, counted in :attr:`dropped` / :attr:`dropped_bytes`. A single
    message longer than ``max_bytes`` is cut to it (counted in :attr:`truncated`).

    >>> log = MemoryLogger(max_bytes=10); log.messages()
    []
    """

    _LEVELS = {0: 5, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR, 5: logging.CRITICAL}
    forwards_to_logging = True

    def __init__(self, level: LogLevel = LogLevel.TRACE, maxlen: int = 10000,
                 max_bytes: int | None = _DEFAULT.log_max_bytes) -> None:
        super().__init__(level)
        if maxlen <= 0 or (max_bytes is not None and max_bytes <= 0):
            raise ValueError("maxlen and max_bytes must be positive (max_bytes=None: no byte bound)")
        self.records: deque[LogRecord] = deque()
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        #: records dropped to make room (oldest first), and their message characters
        self.dropped = 0
        self.dropped_bytes = 0
        #: messages cut to ``max_bytes``
        self.truncated = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self._py = logging.getLogger("proxywasm_vm.plugin")

    @property
    def size_bytes(self) -> int:
        """Message characters held now."""
        return self._bytes

    def emit(self, record: LogRecord) -> None:
        lvl = self._LEVELS[record.level]
        if self._py.isEnabledFor(lvl):
            self._py.log(lvl, "[%s/%s ctx %d] %s", record.plugin, record.vm_id, record.context_id, record.message)
        cap = self.max_bytes
        n = len(record.message)
        if cap is not None and n > cap:
            record = record._replace(message=record.message[:cap])
            n = cap
            self.truncated += 1
        with self._lock:
            recs = self.records
            while recs and (len(recs) >= self.maxlen or (cap is not None and self._bytes + n > cap)):
                old = recs.popleft()
                self._bytes -= len(old.message)
                self.dropped += 1
                self.dropped_bytes += len(old.message)
            recs.append(record)
            self._bytes += n

    def messages(self, *, plugin: str | None = None, level: LogLevel | None = None) -> list[str]:
        """Logged messages, oldest first, optionally only one plugin's and/or at least ``level``."""
        return [r.message for r in list(self.records)
                if (plugin is None or r.plugin == plugin) and (level is None or r.level >= level)]

    def clear(self) -> None:
        """Forget every record (the drop counters stay)."""
        with self._lock:
            self.records.clear()
            self._bytes = 0


# ---------------------------------------------------------------------------------------------
# shared data


class SharedData:
    """Key-value store shared by every VM with the same ``vm_id``, with compare-and-swap.

    ``cas`` values are never 0 (0 means "no check" in ``proxy_set_shared_data``).
    Bounded by ``limits`` (:class:`HostLimits`: ``shared_data_max_value_bytes``,
    ``shared_data_max_keys``, ``shared_data_max_bytes``, all ``vm_id`` together):
    a set past them answers BAD_ARGUMENT and changes nothing; :attr:`refused` counts them.
    """

    def __init__(self, limits: HostLimits | None = None) -> None:
        self.limits = limits if limits is not None else _DEFAULT
        self._lock = threading.Lock()
        self._data: dict[tuple[str, bytes], tuple[bytes, int]] = {}
        self._cas = 0
        self._bytes = 0
        self.refused = 0

    def _next_cas(self) -> int:
        self._cas = (self._cas + 1) & _M32 or 1
        return self._cas

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        """``(value, cas)`` or ``None`` when missing."""
        return self._data.get((vm_id, key))

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int = 0) -> Status:
        """Store ``value``; with a non-zero ``cas`` only if it matches the current one."""
        k = (vm_id, key)
        lim = self.limits
        with self._lock:
            cur = self._data.get(k)
            if cas and cur is not None and cur[1] != cas:
                return Status.CAS_MISMATCH
            grow = len(value) + (len(key) if cur is None else -len(cur[0]))
            if (over(lim.shared_data_max_value_bytes, len(value)) or over(lim.shared_data_max_bytes, self._bytes + grow)
                    or (cur is None and over(lim.shared_data_max_keys, len(self._data) + 1))):
                self.refused += 1
                return Status.BAD_ARGUMENT
            self._data[k] = (bytes(value), self._next_cas())
            self._bytes += grow
        return Status.OK

    def delete(self, vm_id: str, key: bytes) -> None:
        """Remove a key (embedder API)."""
        with self._lock:
            cur = self._data.pop((vm_id, key), None)
            if cur is not None:
                self._bytes -= len(key) + len(cur[0])

    def items(self, vm_id: str) -> dict[bytes, bytes]:
        """Every ``{key: value}`` of one ``vm_id`` (embedder API)."""
        return {k: v[0] for (vid, k), v in list(self._data.items()) if vid == vm_id}

    @property
    def size_bytes(self) -> int:
        """Bytes of every key and value held (all ``vm_id`` together)."""
        return self._bytes


# ---------------------------------------------------------------------------------------------
# shared queues


@dataclass
class _Queue:
    token: int
    vm_id: str
    name: str
    items: deque
    notify: Callable[[int], None] | None
    nbytes: int = 0


class SharedQueues:
    """Named queues scoped by ``vm_id``; a registered queue notifies its owner on enqueue.

    ``notify(token)`` is given by the registering root context; the host uses it
    to deliver ``proxy_on_queue_ready`` on the owner's thread. Each queue holds at
    most ``limits.queue_max_items`` items and ``limits.queue_max_bytes`` bytes
    (:class:`HostLimits`): an enqueue past them answers BAD_ARGUMENT (the new
    item is refused, none queued is dropped); :attr:`refused` counts them.
    """

    def __init__(self, limits: HostLimits | None = None) -> None:
        self.limits = limits if limits is not None else _DEFAULT
        self.refused = 0
        self._lock = threading.Lock()
        self._by_name: dict[tuple[str, str], _Queue] = {}
        self._by_token: dict[int, _Queue] = {}
        self._tokens = itertools.count(1)

    def register(self, vm_id: str, name: str, notify: Callable[[int], None] | None) -> int:
        """Create or open ``(vm_id, name)``; the caller becomes the one notified. Returns the token.

        Raises :class:`OverflowError` when creating it would pass ``limits.queues_max``."""
        with self._lock:
            q = self._by_name.get((vm_id, name))
            if q is None:
                if over(self.limits.queues_max, len(self._by_name) + 1):
                    raise OverflowError(f"{len(self._by_name)} shared queues exist (limit {self.limits.queues_max})")
                tok = next(self._tokens) & _M32 or next(self._tokens)
                q = _Queue(tok, vm_id, name, deque(), notify)
                self._by_name[(vm_id, name)] = q
                self._by_token[tok] = q
            else:
                q.notify = notify
            return q.token

    def resolve(self, vm_id: str, name: str) -> int | None:
        """The token of an existing queue, or ``None``."""
        q = self._by_name.get((vm_id, name))
        return None if q is None else q.token

    def enqueue(self, token: int, data: bytes) -> Status:
        """Append ``data``; NOT_FOUND for an unknown token."""
        q = self._by_token.get(token)
        if q is None:
            return Status.NOT_FOUND
        lim = self.limits
        with self._lock:
            if over(lim.queue_max_items, len(q.items) + 1) or over(lim.queue_max_bytes, q.nbytes + len(data)):
                self.refused += 1
                return Status.BAD_ARGUMENT
            q.items.append(bytes(data))
            q.nbytes += len(data)
        if q.notify is not None:
            q.notify(token)
        return Status.OK

    def dequeue(self, token: int, vm_id: str | None = None) -> tuple[Status, bytes | None]:
        """Pop the oldest item: ``(OK, data)``, ``(EMPTY, None)`` or ``(NOT_FOUND, None)``.

        With ``vm_id``, only a queue of that VM id may be read (as in Envoy).
        """
        q = self._by_token.get(token)
        if q is None or (vm_id is not None and q.vm_id != vm_id):
            return Status.NOT_FOUND, None
        with self._lock:
            try:
                item = q.items.popleft()
            except IndexError:
                return Status.EMPTY, None
            q.nbytes -= len(item)
        return Status.OK, item

    def size(self, vm_id: str, name: str) -> int:
        """Items waiting in a queue (embedder API; 0 when it does not exist)."""
        q = self._by_name.get((vm_id, name))
        return 0 if q is None else len(q.items)


# ---------------------------------------------------------------------------------------------
# metrics


@dataclass
class Metric:
    """One metric. Histograms keep their latest recorded values in ``values`` (at most
    ``HostLimits.histogram_max_values``; older ones are dropped and counted in ``dropped``)."""

    id: int
    type: MetricType
    name: str
    value: int = 0
    values: deque | None = None
    dropped: int = 0


class Metrics:
    """Counters, gauges and histograms defined by plugins (names are global to the host).

    Defining the same ``(type, name)`` again returns the same id. Counters only
    go up; gauges take any value (kept in the u64 range); histograms record values.
    ``limits`` (:class:`HostLimits`) bounds the number of metrics (``metrics_max``:
    :meth:`define` past it raises :class:`OverflowError`, the plugin gets BAD_ARGUMENT)
    and the values each histogram keeps (``histogram_max_values``).
    """

    def __init__(self, limits: HostLimits | None = None) -> None:
        self.limits = limits if limits is not None else _DEFAULT
        self._lock = threading.Lock()
        self._bounded = 0  # metrics that count against metrics_max
        self._by_id: dict[int, Metric] = {}
        self._by_name: dict[tuple[int, str], Metric] = {}
        self._ids = itertools.count(1)

    def define(self, type: MetricType, name: str, *, bounded: bool = True) -> int:
        """Define (or find) a metric; returns its id. ``bounded=False``: the host's own
        metric, not counted against ``metrics_max`` (so that a full store still counts refusals)."""
        type = MetricType(type)
        with self._lock:
            m = self._by_name.get((type, name))
            if m is None:
                if bounded and over(self.limits.metrics_max, self._bounded + 1):
                    raise OverflowError(f"{self._bounded} metrics defined (limit {self.limits.metrics_max})")
                m = Metric(next(self._ids), type, name, 0,
                           deque(maxlen=self.limits.histogram_max_values) if type is MetricType.HISTOGRAM else None)
                self._by_id[m.id] = m
                self._by_name[(type, name)] = m
                self._bounded += bounded
            return m.id

    def increment(self, metric_id: int, delta: int) -> Status:
        """Add ``delta`` (signed). Counters refuse negative deltas; histograms refuse increments."""
        m = self._by_id.get(metric_id)
        if m is None:
            return Status.NOT_FOUND
        if m.type is MetricType.HISTOGRAM or (m.type is MetricType.COUNTER and delta < 0):
            return Status.BAD_ARGUMENT
        with self._lock:
            m.value = max(0, min(m.value + delta, 0xFFFFFFFFFFFFFFFF))
        return Status.OK

    def record(self, metric_id: int, value: int) -> Status:
        """Set a gauge, record a histogram value, or raise a counter to ``value``."""
        m = self._by_id.get(metric_id)
        if m is None:
            return Status.NOT_FOUND
        with self._lock:
            if m.type is MetricType.HISTOGRAM:
                vals = m.values
                assert vals is not None
                if vals.maxlen is not None and len(vals) == vals.maxlen:
                    m.dropped += 1  # the deque drops the oldest value
                vals.append(value)
                m.value = value
            elif m.type is MetricType.COUNTER:
                if value > m.value:
                    m.value = value
            else:
                m.value = value
        return Status.OK

    def get(self, metric_id: int) -> tuple[Status, int]:
        """``(OK, value)``; histograms have no single value (BAD_ARGUMENT), unknown ids NOT_FOUND."""
        m = self._by_id.get(metric_id)
        if m is None:
            return Status.NOT_FOUND, 0
        if m.type is MetricType.HISTOGRAM:
            return Status.BAD_ARGUMENT, 0
        return Status.OK, m.value

    # embedder API
    def __getitem__(self, name: str) -> Metric:
        for m in list(self._by_id.values()):
            if m.name == name:
                return m
        raise KeyError(name)

    def value(self, name: str) -> int:
        """The value of the metric called ``name`` (KeyError when undefined)."""
        return self[name].value

    def snapshot(self) -> dict[str, Any]:
        """``{name: value}`` for counters and gauges, ``{name: [values]}`` for histograms."""
        return {m.name: (list(m.values) if m.type is MetricType.HISTOGRAM else m.value)  # type: ignore[arg-type]
                for m in list(self._by_id.values())}


# ---------------------------------------------------------------------------------------------
# clocks and timers


class Clock:
    """Time as plugins see it."""

    def now_ns(self) -> int:
        """Wall-clock time in ns since the Unix epoch."""
        raise NotImplementedError

    def monotonic_ns(self) -> int:
        """A monotonic time in ns (timers use it)."""
        raise NotImplementedError


class SystemClock(Clock):
    """The real clocks."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock(Clock):
    """A clock that moves only when told to: deterministic tests.

    Both clocks start at realistic, non-zero values, because guest runtimes
    check them: the Go runtime aborts at start ("nanotime returning zero")
    when the monotonic clock reads 0. By default the wall clock starts at
    :attr:`WALL_START_NS` (2025-01-01T00:00:00Z) and the monotonic clock at
    :attr:`MONOTONIC_START_NS` (1000 s, a host that has been up for a while);
    :meth:`advance` (or a host's ``advance``) moves both by the same amount.

    >>> c = ManualClock(); t = c.now_ns(); c.advance(0.5); c.now_ns() - t
    500000000
    >>> ManualClock().monotonic_ns()
    1000000000000
    """

    WALL_START_NS = 1_735_689_600 * 10**9
    """Default wall-clock start: 2025-01-01T00:00:00Z, in ns since the Unix epoch."""
    MONOTONIC_START_NS = 1_000 * 10**9
    """Default monotonic start: 1000 s."""

    def __init__(self, start_ns: int | None = None, *, monotonic_start_ns: int | None = None) -> None:
        wall = self.WALL_START_NS if start_ns is None else int(start_ns)
        mono = self.MONOTONIC_START_NS if monotonic_start_ns is None else int(monotonic_start_ns)
        if mono <= 0:
            raise ValueError("the monotonic start must be positive (the Go runtime aborts on a zero monotonic clock)")
        if wall < 0:
            raise ValueError("the wall-clock start must not be before the Unix epoch")
        self._wall = wall
        self._mono = mono

    def now_ns(self) -> int:
        return self._wall

    def monotonic_ns(self) -> int:
        return self._mono

    def advance(self, seconds: float = 0.0, *, ms: float = 0.0, ns: int = 0) -> None:
        """Move both clocks forward."""
        d = int(seconds * 1e9) + int(ms * 1e6) + ns
        if d < 0:
            raise ValueError("a clock cannot go back")
        self._wall += d
        self._mono += d

    def _set_mono(self, mono: int) -> None:
        if mono > self._mono:
            self._wall += mono - self._mono
            self._mono = mono


class Scheduler:
    """Periodic timers (``proxy_on_tick``) on a :class:`Clock`.

    Timers belong to the thread that set them and fire only from that thread's
    :meth:`run_due` (VMs are single-threaded). With a :class:`ManualClock`,
    :meth:`advance` moves time and fires every tick that falls due, in order.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._timers: dict[Any, tuple[int, int, int, Callable[[], None]]] = {}  # key -> (period, due, thread, fn)
        self._seq = itertools.count()

    def set_period(self, key: Any, period_ms: int, fn: Callable[[], None]) -> None:
        """Call ``fn`` every ``period_ms`` (0 cancels) on the calling thread."""
        with self._lock:
            if period_ms <= 0:
                self._timers.pop(key, None)
                return
            p = period_ms * 1_000_000
            self._timers[key] = (p, self.clock.monotonic_ns() + p, threading.get_ident(), fn)

    def cancel(self, key: Any) -> None:
        """Stop a timer."""
        with self._lock:
            self._timers.pop(key, None)

    def next_due(self) -> int | None:
        """Monotonic ns of this thread's next tick, or ``None``."""
        me = threading.get_ident()
        dues = [t[1] for t in list(self._timers.values()) if t[2] == me]
        return min(dues) if dues else None

    def run_due(self, now: int | None = None) -> int:
        """Fire this thread's timers that are due; returns how many fired."""
        now = self.clock.monotonic_ns() if now is None else now
        me = threading.get_ident()
        due = []
        with self._lock:
            for key, (p, d, th, fn) in self._timers.items():
                if th == me and d <= now:
                    due.append((d, next(self._seq), key))
        heapq.heapify(due)
        fired = 0
        while due:
            d, _, key = heapq.heappop(due)
            with self._lock:
                t = self._timers.get(key)
                if t is None or t[1] != d:
                    continue
                self._timers[key] = (t[0], d + t[0] * ((now - d) // t[0] + 1), t[2], t[3])  # skip missed ticks
            t[3]()
            fired += 1
        return fired

    def advance(self, seconds: float = 0.0, *, ms: float = 0.0) -> int:
        """ManualClock only: move time forward, firing every due tick at its own time."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance() needs a ManualClock")
        target = clock.monotonic_ns() + int(seconds * 1e9) + int(ms * 1e6)
        fired = 0
        while True:
            nd = self.next_due()
            if nd is None or nd > target:
                break
            clock._set_mono(nd)
            fired += self.run_due(nd)
        clock._set_mono(target)
        return fired


# ---------------------------------------------------------------------------------------------
# foreign functions


class ForeignFunctionError(Exception):
    """Raised by a foreign function to answer the plugin with a given :class:`Status`."""

    def __init__(self, status: int, message: str = "", limit: str | None = None) -> None:
        super().__init__(status, message, limit)
        self.status = Status(status)
        self.message = message
        #: the :class:`HostLimits` bound that was reached, if that is the cause
        self.limit = limit

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}" if self.message else self.status.name


def _compress(args: bytes) -> bytes:
    return zlib.compress(args)


def _uncompress(args: bytes, cap: int | None) -> bytes:
    """zlib inflate that stops at ``cap`` output bytes. Like Envoy's ``uncompress``, data
    that does not inflate answers SERIALIZATION_FAILURE; so does output past the cap."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(args, 0 if cap is None else cap + 1)
    except zlib.error as e:
        raise ForeignFunctionError(Status.SERIALIZATION_FAILURE, f"uncompress: {e}") from None
    if cap is not None and len(out) > cap:
        raise ForeignFunctionError(Status.SERIALIZATION_FAILURE,
                                   f"uncompress: the output exceeds {cap} bytes (HostLimits.uncompress_max_bytes)",
                                   limit="uncompress")
    if not d.eof:
        raise ForeignFunctionError(Status.SERIALIZATION_FAILURE, "uncompress: incomplete or truncated stream")
    return out


class ForeignFunctions:
    """Python callables plugins reach with ``proxy_call_foreign_function``.

    A function takes the argument bytes and returns ``bytes``/``str`` (the
    result) or ``None`` (no result). Raising :class:`ForeignFunctionError` gives
    its status, :class:`LookupError` NOT_FOUND, :class:`ValueError` BAD_ARGUMENT,
    anything else INTERNAL_FAILURE.
    ``compress`` / ``uncompress`` (zlib, as in Envoy) are registered by default;
    ``uncompress`` stops at ``uncompress_max_bytes`` of output (default
    :attr:`HostLimits.uncompress_max_bytes`; ``None``: no limit) and answers
    SERIALIZATION_FAILURE past it.
    """

    def __init__(self, functions: dict[str, Callable[[bytes], Any]] | None = None, *, defaults: bool = True,
                 uncompress_max_bytes: int | None = _DEFAULT.uncompress_max_bytes) -> None:
        if uncompress_max_bytes is not None and uncompress_max_bytes <= 0:
            raise ValueError("uncompress_max_bytes must be positive (None: no limit)")
        self.uncompress_max_bytes = uncompress_max_bytes
        self._fns: dict[str, Callable[[bytes], Any]] = {}
        if defaults:
            self._fns.update(compress=_compress, uncompress=self._uncompress)
        if functions:
            self._fns.update(functions)

    def _uncompress(self, args: bytes) -> bytes:
        return _uncompress(args, self.uncompress_max_bytes)

    def register(self, name: str, fn: Callable[[bytes], Any] | None = None):
        """Register ``fn`` under ``name`` (usable as a decorator)."""
        if fn is None:
            def deco(f):
                self._fns[name] = f
                return f
            return deco
        self._fns[name] = fn
        return fn

    def get(self, name: str) -> Callable[[bytes], Any] | None:
        """The function called ``name``, or ``None``."""
        return self._fns.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._fns
