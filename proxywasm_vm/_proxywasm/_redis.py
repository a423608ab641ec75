"""Proxy-Wasm shared data and shared queues kept in Redis: :class:`RedisSharedData`, :class:`RedisSharedQueues`.

Several host processes (uvicorn workers, ``pwvm serve`` instances on several
machines) that point at the same Redis and ``prefix`` share one key-value store
and one set of queues, with the semantics of the in-memory :class:`SharedData`
and :class:`SharedQueues`:

- shared data keeps a CAS value per key (a u32, never 0, from one counter per
  prefix); a set with a CAS is atomic (one Lua script: compare, bound, write);
  a stale CAS answers CAS_MISMATCH, as the in-memory store does;
- a queue is registered and resolved by ``(vm_id, name)`` with one token for every
  process; each item goes to exactly one ``dequeue`` (RPUSH / LPOP inside scripts);
- queue-ready notifications: an enqueue publishes the token on one pub/sub channel
  per prefix; each process that registered the queue runs a listener thread
  (started on the first registration) that calls the registrant's ``notify``, so
  ``proxy_on_queue_ready`` runs at the host's next :meth:`~proxywasm_vm.ProxyWasmHost.poll`.
  An enqueue made in the process that registered the queue notifies it at once
  (as in memory); after (re)subscribing, the listener also notifies every queue it
  watches that has items waiting (messages published while it was disconnected are lost).

Bounds (:class:`HostLimits`) are checked inside the scripts, so they hold across
processes: value size, keys and bytes of the whole store (per prefix), items and
bytes per queue, queues per prefix. The ``refused`` counters are per process.

Failures: every Redis operation has a socket timeout (``timeout``, 0.2 s by
default) and no retries; a connection failure or timeout raises
:class:`SharedStoreError`, which a plugin's host call answers with
INTERNAL_FAILURE and one error log record (the host-function guard). For
``retry_after`` seconds after a connection failure, calls fail at once instead of
waiting for the timeout again, so a stalled Redis costs a plugin one timeout, not
one per call.

A host whose plugins run in a worker process (``@process`` backends) gives the
worker a copy that talks to Redis itself (see :meth:`RedisSharedData._for_worker`);
only queue registration goes through the parent's object, whose listener thread
delivers the notifications.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from ._abi import Status
from ._errors import ProxyWasmError
from ._limits import HostLimits

__all__ = ["RedisSharedData", "RedisSharedQueues", "SharedStoreError", "redis_shared"]

_log = logging.getLogger("proxywasm_vm.redis")
_CAS = struct.Struct(">I")
_WORKER_SPEC = "pwvm.redis-service"  # the tag of a service sent to a worker as its settings


class SharedStoreError(ProxyWasmError):
    """The Redis behind :class:`RedisSharedData` / :class:`RedisSharedQueues` failed: unreachable,
    timed out, or answered an error. A plugin's host call gets INTERNAL_FAILURE instead."""


@dataclass(frozen=True)
class _Settings:
    """What a service needs to reach its Redis (crosses to a worker by value)."""

    url: str
    prefix: str
    timeout: float
    retry_after: float
    max_connections: int
    limits: HostLimits


class _Store:
    """A Redis client with the failure policy: short timeouts, no retries, a fail-fast window."""

    def __init__(self, settings: _Settings) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ImportError("the Redis services need the redis package: pip install 'proxywasm-vm[redis]'") from None
        s = self.settings = settings
        if s.timeout <= 0 or s.retry_after < 0 or s.max_connections <= 0:
            raise ValueError("timeout and max_connections must be positive, retry_after not negative")
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._redis_error = redis.RedisError
        no_retry = Retry(NoBackoff(), 0)
        # A bounded pool: past max_connections a caller waits up to `timeout` for a connection.
        # client_name shows in CLIENT LIST which process (or worker) holds a connection.
        pool = redis.BlockingConnectionPool.from_url(
            s.url, max_connections=s.max_connections, timeout=s.timeout, socket_timeout=s.timeout,
            socket_connect_timeout=s.timeout, retry=no_retry, client_name=f"pwvm:{os.getpid()}")
        self.client = redis.Redis(connection_pool=pool, retry=no_retry)
        self.where = _redact(s.url)
        self.prefix = s.prefix.encode()
        self._down_until = 0.0
        self._last_error = ""
        #: failed Redis operations (this process)
        self.errors = 0

    def run(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, with Redis errors raised as :class:`SharedStoreError`."""
        if self._down_until and time.monotonic() < self._down_until:
            self.errors += 1
            raise SharedStoreError(f"{what}: Redis at {self.where} is unreachable ({self._last_error}); "
                                   f"not retried for {self.settings.retry_after} s")
        try:
            r = fn(*args)
        except self._redis_error as e:
            self.errors += 1
            self._last_error = f"{type(e).__name__}: {e}"
            if isinstance(e, self._errors):
                self._down_until = time.monotonic() + self.settings.retry_after
            raise SharedStoreError(f"{what}: Redis at {self.where} failed: {self._last_error}") from None
        self._down_until = 0.0
        return r

    def script(self, src: str) -> Any:
        return self.client.register_script(src)  # EVALSHA, loading the script again after a restart

    def clear(self) -> int:
        """Delete every key under the prefix; returns how many."""
        pat = bytearray()
        for c in self.prefix:
            if c in b"*?[]\\":
                pat += b"\\"
            pat.append(c)
        n = 0

        def scan() -> int:
            keys = list(self.client.scan_iter(match=bytes(pat) + b"*", count=500))
            for i in range(0, len(keys), 500):
                self.client.unlink(*keys[i:i + 500])
            return len(keys)

        n = self.run("clear", scan)
        return n

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()


def _redact(url: str) -> str:
    """The URL without its password (it goes into log lines)."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        cred, _, rest = tail.rpartition("@")
        user = cred.split(":", 1)[0]
        return f"{head}://{user + ':' if user else ''}***@{rest}"
    return url


def _opt(limit: int | None) -> str:
    return "" if limit is None else str(limit)


# ---------------------------------------------------------------------------------------------
# shared data
#
# Keys under the prefix P: P sd:<vm_id> is a hash {key: 4-byte big-endian CAS + value};
# P sd#cas the CAS counter; P sd#keys / P sd#bytes the key count and bytes (keys + values).

_SET = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and ARGV[3] ~= '' and string.sub(cur, 1, 4) ~= ARGV[3] then return -1 end
if ARGV[6] ~= '' and #ARGV[2] > tonumber(ARGV[6]) then return -2 end
local grow
if cur then grow = #ARGV[2] - (#cur - 4) else grow = #ARGV[2] + #ARGV[1] end
if ARGV[5] ~= '' and tonumber(redis.call('GET', KEYS[4]) or '0') + grow > tonumber(ARGV[5]) then return -2 end
if not cur and ARGV[4] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') + 1 > tonumber(ARGV[4]) then
  return -2
end
local n = redis.call('INCR', KEYS[2]) % 4294967296
if n == 0 then n = redis.call('INCR', KEYS[2]) % 4294967296 end
redis.call('HSET', KEYS[1], ARGV[1], struct.pack('>I4', n) .. ARGV[2])
redis.call('INCRBY', KEYS[4], grow)
if not cur then redis.call('INCR', KEYS[3]) end
return n
"""

_DELETE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DECRBY', KEYS[3], #cur - 4 + #ARGV[1])
redis.call('DECR', KEYS[2])
return 1
"""


class RedisSharedData:
    """Shared data (``proxy_get_shared_data`` / ``proxy_set_shared_data``) kept in Redis.

    A drop-in for :class:`SharedData`: ``ProxyWasmHost(shared_data=RedisSharedData("redis://host:6379/0"))``.
    Every host process using the same Redis and ``prefix`` sees the same keys, by
    ``vm_id``, with compare-and-swap across processes (a set with a CAS is one
    atomic Lua script). ``prefix`` (default ``"pwvm:"``) keeps deployments sharing
    one Redis apart. ``limits`` (:class:`HostLimits`, default ``HostLimits()``)
    bounds a value, the keys and the bytes of the store under the prefix, for every
    process together; past them a set answers BAD_ARGUMENT (counted in :attr:`refused`,
    this process only).

    ``timeout`` (seconds, default 0.2) bounds connecting and each operation; there are
    no retries, and for ``retry_after`` seconds after a connection failure operations
    fail at once. A failure raises :class:`SharedStoreError` (the plugin gets
    INTERNAL_FAILURE). ``max_connections`` bounds this process's connection pool.
    Redis Cluster is not supported (the scripts touch several keys).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "pwvm:",
                 limits: HostLimits | None = None, timeout: float = 0.2, retry_after: float = 1.0,
                 max_connections: int = 32) -> None:
        self._settings = _Settings(url, prefix, float(timeout), float(retry_after), int(max_connections),
                                   limits if limits is not None else HostLimits())
        self._store = _Store(self._settings)
        self.limits = self._settings.limits
        #: sets refused past a bound (this process)
        self.refused = 0
        p = self._store.prefix
        self._meta = [p + b"sd#cas", p + b"sd#keys", p + b"sd#bytes"]
        self._set = self._store.script(_SET)
        self._del = self._store.script(_DELETE)

    def __repr__(self) -> str:
        return f"RedisSharedData({self._store.where!r}, prefix={self._settings.prefix!r})"

    def _hash(self, vm_id: str) -> bytes:
        return self._store.prefix + b"sd:" + vm_id.encode()

    @property
    def errors(self) -> int:
        """Failed Redis operations in this process."""
        return self._store.errors

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        """``(value, cas)`` or ``None`` when missing."""
        v = self._store.run("shared data get", self._store.client.hget, self._hash(vm_id), bytes(key))
        if v is None:
            return None
        return bytes(v[4:]), _CAS.unpack_from(v)[0]

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int = 0) -> Status:
        """Store ``value``; with a non-zero ``cas`` only if it matches the current one."""
        lim = self.limits
        args = [bytes(key), bytes(value), _CAS.pack(cas & 0xFFFFFFFF) if cas else b"", _opt(lim.shared_data_max_keys),
                _opt(lim.shared_data_max_bytes), _opt(lim.shared_data_max_value_bytes)]
        r = self._store.run("shared data set", self._set, [self._hash(vm_id), *self._meta], args)
        if r == -1:
            return Status.CAS_MISMATCH
        if r == -2:
            self.refused += 1
            return Status.BAD_ARGUMENT
        return Status.OK

    def delete(self, vm_id: str, key: bytes) -> None:
        """Remove a key (embedder API)."""
        self._store.run("shared data delete", self._del, [self._hash(vm_id), self._meta[1], self._meta[2]],
                        [bytes(key)])

    def items(self, vm_id: str) -> dict[bytes, bytes]:
        """Every ``{key: value}`` of one ``vm_id`` (embedder API)."""
        raw = self._store.run("shared data items", self._store.client.hgetall, self._hash(vm_id))
        return {bytes(k): bytes(v[4:]) for k, v in raw.items()}

    @property
    def size_bytes(self) -> int:
        """Bytes of every key and value held under the prefix (all processes, all ``vm_id``)."""
        return int(self._store.run("shared data size", self._store.client.get, self._meta[2]) or 0)

    def clear(self) -> int:
        """Delete every key under this prefix (shared data and queues alike); returns how many."""
        return self._store.clear()

    def close(self) -> None:
        """Close this process's connections."""
        self._store.close()

    def _for_worker(self) -> tuple:
        """What a worker's host gets instead of this object: the settings, by value, so that the
        worker talks to Redis itself (``_remote_host._services``), and this object, by reference,
        should the worker lack the redis package."""
        return (_WORKER_SPEC, "data", self._settings, self)


# ---------------------------------------------------------------------------------------------
# shared queues
#
# P q#tok is a hash {"<len(vm_id)>:<vm_id><name>": token}, P q#vm {token: vm_id}, P q#next the
# token counter, P q:<token> a queue's items (a list), P q#bytes {token: bytes waiting}, and
# P q#ready the pub/sub channel of enqueues ("<origin> <token>").

_REGISTER = """
local t = redis.call('HGET', KEYS[1], ARGV[1])
if t then return tonumber(t) end
if ARGV[3] ~= '' and redis.call('HLEN', KEYS[1]) + 1 > tonumber(ARGV[3]) then return -2 end
local n = redis.call('INCR', KEYS[3]) % 4294967296
if n == 0 then n = redis.call('INCR', KEYS[3]) % 4294967296 end
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('HSET', KEYS[2], n, ARGV[2])
return n
"""

# after a reconnection: put back a registration this process holds, should Redis have lost it
_RESTORE = """
local t = redis.call('HGET', KEYS[1], ARGV[1])
if t then return tonumber(t) end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[3]) then redis.call('SET', KEYS[3], ARGV[3]) end
return tonumber(ARGV[3])
"""

_ENQUEUE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local n = redis.call('LLEN', KEYS[2])
local b = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if (ARGV[3] ~= '' and n + 1 > tonumber(ARGV[3])) or (ARGV[4] ~= '' and b + #ARGV[2] > tonumber(ARGV[4])) then
  return -2
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[1], #ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return n + 1
"""

_DEQUEUE = """
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner or (ARGV[2] == '1' and owner ~= ARGV[3]) then return {1} end
local item = redis.call('LPOP', KEYS[2])
if not item then return {7} end
if #item > 0 then redis.call('HINCRBY', KEYS[3], ARGV[1], 0 - #item) end
return {0, item}
"""


def _qfield(vm_id: str, name: str) -> bytes:
    v = vm_id.encode()
    return b"%d:%s%s" % (len(v), v, name.encode())


class RedisSharedQueues:
    """Shared queues (``proxy_register/resolve/enqueue/dequeue_shared_queue``) kept in Redis.

    A drop-in for :class:`SharedQueues`: ``ProxyWasmHost(queues=RedisSharedQueues("redis://host:6379/0"))``.
    A queue is named by ``(vm_id, name)`` and has one token in every process using
    the same Redis and ``prefix``; each item enqueued is dequeued exactly once,
    whichever process dequeues. A queue's registrant is notified of every enqueue,
    from any process: in each process the latest registrant of a queue is the one
    notified (as in memory), so with consumers in several processes each is told and
    the first to dequeue gets the item. Notifications from other processes arrive
    through Redis pub/sub on a listener thread this object starts at its first
    registration; ``proxy_on_queue_ready`` then runs at the host's next ``poll()``.

    ``limits`` (:class:`HostLimits`): ``queue_max_items`` / ``queue_max_bytes`` per
    queue and ``queues_max`` per prefix, for every process together (an enqueue past
    them answers BAD_ARGUMENT, counted in :attr:`refused` in this process).
    ``prefix``, ``timeout``, ``retry_after`` and ``max_connections`` as for
    :class:`RedisSharedData`. Call :meth:`close` to stop the listener.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "pwvm:",
                 limits: HostLimits | None = None, timeout: float = 0.2, retry_after: float = 1.0,
                 max_connections: int = 32, _home: Any = None) -> None:
        self._settings = _Settings(url, prefix, float(timeout), float(retry_after), int(max_connections),
                                   limits if limits is not None else HostLimits())
        self._store = _Store(self._settings)
        self.limits = self._settings.limits
        #: enqueues refused past a bound (this process)
        self.refused = 0
        p = self._store.prefix
        self._tok, self._vm, self._next, self._bytes = p + b"q#tok", p + b"q#vm", p + b"q#next", p + b"q#bytes"
        self._channel = p + b"q#ready"
        self._origin = uuid.uuid4().hex.encode()  # this object's enqueues, which it notifies itself
        self._register = self._store.script(_REGISTER)
        self._enqueue = self._store.script(_ENQUEUE)
        self._dequeue = self._store.script(_DEQUEUE)
        self._restore_script = self._store.script(_RESTORE)
        self._registered: dict[int, tuple[str, str]] = {}  # token -> (vm_id, name) registered here
        self._resolved: dict[tuple[str, str], int] = {}  # tokens never change: cached once known
        self._lock = threading.Lock()
        self._watch: dict[int, Callable[[int], None]] = {}  # token -> the latest registrant here
        self._listener: threading.Thread | None = None
        self._listener_pid = 0
        self._subscribed = threading.Event()
        self._closed = False
        # a worker's copy: registration (and so the notifications) stays with the parent's object
        self._home = _home

    def __repr__(self) -> str:
        return f"RedisSharedQueues({self._store.where!r}, prefix={self._settings.prefix!r})"

    @property
    def errors(self) -> int:
        """Failed Redis operations in this process."""
        return self._store.errors

    def _list(self, token: int) -> bytes:
        return self._store.prefix + b"q:%d" % token

    def register(self, vm_id: str, name: str, notify: Callable[[int], None] | None) -> int:
        """Create or open ``(vm_id, name)``; the caller becomes the one notified here. Returns the token.

        Raises :class:`OverflowError` when creating it would pass ``limits.queues_max``."""
        if self._home is not None:
            token: int = self._home.register(vm_id, name, notify)
            self._resolved[(vm_id, name)] = token
            return token
        r = self._store.run("queue register", self._register, [self._tok, self._vm, self._next],
                            [_qfield(vm_id, name), vm_id.encode(), _opt(self.limits.queues_max)])
        if r == -2:
            raise OverflowError(f"shared queues under prefix {self._settings.prefix!r} reached the limit "
                                f"{self.limits.queues_max}")
        token = int(r)
        self._remember(vm_id, name, token)
        with self._lock:
            self._registered[token] = (vm_id, name)
            if notify is None:
                self._watch.pop(token, None)
            else:
                self._watch[token] = notify
        if notify is not None:
            self._listen()
        return token

    def _remember(self, vm_id: str, name: str, token: int) -> None:
        if len(self._resolved) >= 10_000:  # bounded: forget and look up again
            self._resolved.clear()
        self._resolved[(vm_id, name)] = token

    def resolve(self, vm_id: str, name: str) -> int | None:
        """The token of an existing queue, or ``None``."""
        t = self._resolved.get((vm_id, name))
        if t is not None:
            return t
        r = self._store.run("queue resolve", self._store.client.hget, self._tok, _qfield(vm_id, name))
        if r is None:
            return None
        self._remember(vm_id, name, int(r))
        return int(r)

    def enqueue(self, token: int, data: bytes) -> Status:
        """Append ``data``; NOT_FOUND for an unknown token, BAD_ARGUMENT past the bounds."""
        lim = self.limits
        r = self._store.run("queue enqueue", self._enqueue, [self._vm, self._list(token), self._bytes],
                            [token, bytes(data), _opt(lim.queue_max_items), _opt(lim.queue_max_bytes), self._channel,
                             b"%s %d" % (self._origin, token)])
        if r == -1:
            return Status.NOT_FOUND
        if r == -2:
            self.refused += 1
            return Status.BAD_ARGUMENT
        notify = self._watch.get(token)
        if notify is not None:  # registered in this process: told now, as in memory (the listener skips it)
            notify(token)
        return Status.OK

    def dequeue(self, token: int, vm_id: str | None = None) -> tuple[Status, bytes | None]:
        """Pop the oldest item: ``(OK, data)``, ``(EMPTY, None)`` or ``(NOT_FOUND, None)``.

        With ``vm_id``, only a queue of that VM id may be read (as in Envoy)."""
        r = self._store.run("queue dequeue", self._dequeue, [self._vm, self._list(token), self._bytes],
                            [token, "0" if vm_id is None else "1", (vm_id or "").encode()])
        if r[0] == 0:
            return Status.OK, bytes(r[1])
        return Status(r[0]), None

    def size(self, vm_id: str, name: str) -> int:
        """Items waiting in a queue (embedder API; 0 when it does not exist)."""
        t = self.resolve(vm_id, name)
        return 0 if t is None else int(self._store.run("queue size", self._store.client.llen, self._list(t)))

    def clear(self) -> int:
        """Delete every key under this prefix (queues and shared data alike); returns how many."""
        return self._store.clear()

    def close(self) -> None:
        """Stop the listener and close this process's connections."""
        self._closed = True
        t = self._listener
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)
        self._store.close()

    def _for_worker(self) -> tuple:
        """See :meth:`RedisSharedData._for_worker` (registration goes through this object)."""
        return (_WORKER_SPEC, "queues", self._settings, self)

    # -- notifications from other processes ------------------------------------------------------
    def _listen(self) -> None:
        """Start the listener thread (once) and wait, up to ``timeout``, until it has subscribed."""
        with self._lock:
            if self._listener is None or self._listener_pid != os.getpid():  # (a forked child has none)
                self._listener_pid = os.getpid()
                self._subscribed.clear()
                self._listener = threading.Thread(target=_listen, args=(weakref.ref(self), self._channel),
                                                  name="pwvm-redis-queues", daemon=True)
                self._listener.start()
        self._subscribed.wait(self._settings.timeout)

    def _deliver(self, tokens: list[int]) -> None:
        for token in tokens:
            notify = self._watch.get(token)
            if notify is None:
                continue
            try:
                notify(token)
            except Exception as e:  # noqa: BLE001 - a registrant that is gone (a dead worker): forget it
                _log.warning("queue %d: notifying its registrant failed (%s: %s); it is no longer notified",
                             token, type(e).__name__, e)
                with self._lock:
                    if self._watch.get(token) is notify:
                        del self._watch[token]

    def _restore(self) -> None:
        """Register again, under the same tokens, the queues registered here that Redis no longer
        knows (it restarted without persistence, say): the plugins holding those tokens go on."""
        with self._lock:
            regs = list(self._registered.items())
        for token, (vm_id, name) in regs:
            r = self._restore_script([self._tok, self._vm, self._next], [_qfield(vm_id, name), vm_id.encode(), token])
            if r != token:
                _log.warning("shared queue %r of vm_id %r: Redis gives it token %s, plugins here hold %d "
                             "(the registration was lost and the token reused); they must register again",
                             name, vm_id, r, token)

    def _waiting(self) -> list[int]:
        """The watched queues that have items waiting."""
        with self._lock:
            tokens = list(self._watch)
        if not tokens:
            return []
        pipe = self._store.client.pipeline(transaction=False)
        for t in tokens:
            pipe.llen(self._list(t))
        return [t for t, n in zip(tokens, pipe.execute()) if n]


def _listen(ref: Callable[[], RedisSharedQueues | None], channel: bytes) -> None:
    """The listener thread: holds its object only weakly, so that it ends with it (or at ``close``)."""
    backoff = 0.05
    warned = False  # one warning per outage
    first = True
    while True:
        q = ref()
        if q is None or q._closed:
            return
        ps = None
        try:
            ps = q._store.client.pubsub()
            ps.subscribe(channel)
            wait = time.monotonic() + 10 * q._settings.timeout  # the subscription is confirmed by its first reply
            while True:
                m = ps.get_message(timeout=q._settings.timeout)
                if m is not None and m.get("type") == "subscribe":
                    break
                if time.monotonic() > wait:
                    raise TimeoutError("no subscription confirmation")
            if not first:
                q._restore()
            first = False
            # what was enqueued while nobody here listened (before the first subscription, or
            # while the connection was down) would go unnoticed: tell every watched queue with items
            q._deliver(q._waiting())
            q._subscribed.set()
            backoff, warned = 0.05, False
            origin = q._origin
            del q
            while True:
                msg = ps.get_message(timeout=1.0)
                q = ref()
                if q is None or q._closed:
                    return
                if msg is not None and msg.get("type") == "message":
                    who, _, tok = bytes(msg["data"]).partition(b" ")
                    if who != origin and tok.isdigit():
                        q._deliver([int(tok)])
                del q
        except Exception as e:  # noqa: BLE001 - Redis went away: subscribe again after a pause
            q = ref()
            if q is None or q._closed:
                return
            q._subscribed.clear()
            if not warned:
                warned = True
                _log.warning("shared queues: the Redis notification listener lost %s (%s: %s); reconnecting",
                             q._store.where, type(e).__name__, e)
            del q
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        finally:
            if ps is not None:
                try:
                    ps.close()
                except Exception:  # noqa: BLE001, S110
                    pass


def redis_shared(url: str = "redis://127.0.0.1:6379/0", **options: Any) -> dict[str, Any]:
    """Both services on one Redis, as keyword arguments of :class:`~proxywasm_vm.ProxyWasmHost`::

        host = ProxyWasmHost(**redis_shared("redis://127.0.0.1:6379/0", prefix="shop:"))

    ``options`` go to both constructors (``prefix``, ``limits``, ``timeout``,
    ``retry_after``, ``max_connections``)."""
    return {"shared_data": RedisSharedData(url, **options), "queues": RedisSharedQueues(url, **options)}


def from_worker_spec(spec: tuple) -> Any:
    """The worker side of a service sent by ``_for_worker``: a copy that talks to Redis itself,
    or (no redis package in the worker's interpreter) the parent's object by reference."""
    _, kind, settings, home = spec
    kw = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    try:
        if kind == "data":
            return RedisSharedData(**kw)
        return RedisSharedQueues(**kw, _home=home)
    except ImportError:
        return home


def is_worker_spec(value: Any) -> bool:
    return type(value) is tuple and len(value) == 4 and value[0] == _WORKER_SPEC
