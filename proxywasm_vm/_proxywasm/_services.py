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

__all__ = [
    "LogRecord", "Logger", "MemoryLogger", "SharedData", "SharedQueues", "Metrics", "Metric",
    "Clock", "SystemClock", "ManualClock", "Scheduler", "ForeignFunctions",
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
    """

    def __init__(self, level: LogLevel = LogLevel.INFO) -> None:
        self.level = LogLevel(level)

    def emit(self, record: LogRecord) -> None:
        """Handle one record (the default does nothing)."""


class MemoryLogger(Logger):
    """Keeps the last ``maxlen`` records in memory and forwards them to the
    standard :mod:`logging` logger ``proxywasm_vm.plugin`` when it is enabled.

    >>> log = MemoryLogger(); log.messages()
    []
    """

    _LEVELS = {0: 5, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR, 5: logging.CRITICAL}

    def __init__(self, level: LogLevel = LogLevel.TRACE, maxlen: int = 10000) -> None:
        super().__init__(level)
        self.records: deque[LogRecord] = deque(maxlen=maxlen)
        self._py = logging.getLogger("proxywasm_vm.plugin")

    def emit(self, record: LogRecord) -> None:
        self.records.append(record)
        lvl = self._LEVELS[record.level]
        if self._py.isEnabledFor(lvl):
            self._py.log(lvl, "[%s/%s ctx %d] %s", record.plugin, record.vm_id, record.context_id, record.message)

    def messages(self, *, plugin: str | None = None, level: LogLevel | None = None) -> list[str]:
        """Logged messages, oldest first, optionally only one plugin's and/or at least ``level``."""
        return [r.message for r in self.records
                if (plugin is None or r.plugin == plugin) and (level is None or r.level >= level)]

    def clear(self) -> None:
        """Forget every record."""
        self.records.clear()


# ---------------------------------------------------------------------------------------------
# shared data


class SharedData:
    """Key-value store shared by every VM with the same ``vm_id``, with compare-and-swap.

    ``cas`` values are never 0 (0 means "no check" in ``proxy_set_shared_data``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, bytes], tuple[bytes, int]] = {}
        self._cas = 0

    def _next_cas(self) -> int:
        self._cas = (self._cas + 1) & _M32 or 1
        return self._cas

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        """``(value, cas)`` or ``None`` when missing."""
        return self._data.get((vm_id, key))

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int = 0) -> Status:
        """Store ``value``; with a non-zero ``cas`` only if it matches the current one."""
        k = (vm_id, key)
        with self._lock:
            cur = self._data.get(k)
            if cas and cur is not None and cur[1] != cas:
                return Status.CAS_MISMATCH
            self._data[k] = (bytes(value), self._next_cas())
        return Status.OK

    def delete(self, vm_id: str, key: bytes) -> None:
        """Remove a key (embedder API)."""
        with self._lock:
            self._data.pop((vm_id, key), None)

    def items(self, vm_id: str) -> dict[bytes, bytes]:
        """Every ``{key: value}`` of one ``vm_id`` (embedder API)."""
        return {k: v[0] for (vid, k), v in list(self._data.items()) if vid == vm_id}


# ---------------------------------------------------------------------------------------------
# shared queues


@dataclass
class _Queue:
    token: int
    vm_id: str
    name: str
    items: deque
    notify: Callable[[int], None] | None


class SharedQueues:
    """Named queues scoped by ``vm_id``; a registered queue notifies its owner on enqueue.

    ``notify(token)`` is given by the registering root context; the host uses it
    to deliver ``proxy_on_queue_ready`` on the owner's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[tuple[str, str], _Queue] = {}
        self._by_token: dict[int, _Queue] = {}
        self._tokens = itertools.count(1)

    def register(self, vm_id: str, name: str, notify: Callable[[int], None] | None) -> int:
        """Create or open ``(vm_id, name)``; the caller becomes the one notified. Returns the token."""
        with self._lock:
            q = self._by_name.get((vm_id, name))
            if q is None:
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
        q.items.append(bytes(data))
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
        try:
            return Status.OK, q.items.popleft()
        except IndexError:
            return Status.EMPTY, None

    def size(self, vm_id: str, name: str) -> int:
        """Items waiting in a queue (embedder API; 0 when it does not exist)."""
        q = self._by_name.get((vm_id, name))
        return 0 if q is None else len(q.items)


# ---------------------------------------------------------------------------------------------
# metrics


@dataclass
class Metric:
    """One metric. Histograms keep every recorded value in ``values``."""

    id: int
    type: MetricType
    name: str
    value: int = 0
    values: list | None = None


class Metrics:
    """Counters, gauges and histograms defined by plugins (names are global to the host).

    Defining the same ``(type, name)`` again returns the same id. Counters only
    go up; gauges take any value (kept in the u64 range); histograms record values.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, Metric] = {}
        self._by_name: dict[tuple[int, str], Metric] = {}
        self._ids = itertools.count(1)

    def define(self, type: MetricType, name: str) -> int:
        """Define (or find) a metric; returns its id."""
        type = MetricType(type)
        with self._lock:
            m = self._by_name.get((type, name))
            if m is None:
                m = Metric(next(self._ids), type, name, 0, [] if type is MetricType.HISTOGRAM else None)
                self._by_id[m.id] = m
                self._by_name[(type, name)] = m
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
                m.values.append(value)  # type: ignore[union-attr]
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


def _compress(args: bytes) -> bytes:
    return zlib.compress(args)


def _uncompress(args: bytes) -> bytes:
    return zlib.decompress(args)


class ForeignFunctions:
    """Python callables plugins reach with ``proxy_call_foreign_function``.

    A function takes the argument bytes and returns ``bytes``/``str`` (the
    result) or ``None`` (no result). Raising :class:`LookupError` gives
    NOT_FOUND, :class:`ValueError` BAD_ARGUMENT, anything else INTERNAL_FAILURE.
    ``compress`` / ``uncompress`` (zlib, as in Envoy) are registered by default.
    """

    def __init__(self, functions: dict[str, Callable[[bytes], Any]] | None = None, *, defaults: bool = True) -> None:
        self._fns: dict[str, Callable[[bytes], Any]] = {}
        if defaults:
            self._fns.update(compress=_compress, uncompress=_uncompress)
        if functions:
            self._fns.update(functions)

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
