"""The parent's end of one worker process: start, lanes, requests, host calls, death and deadlines.

A worker serves several *lanes* (channels), so calls from different threads of
this process run in the worker at the same time (as far as its runtime allows:
wasmtime releases the GIL in wasm, wasmer does not, except while a host call
waits). A thread takes a free lane for its outermost call and keeps it for every
nested call (a host function calling back into wasm must reach the worker thread
whose stack holds the waiting wasm frames).

Two pools of lanes: the call lanes (``worker_lanes - 1`` of them, a worker
thread each), and the remote-object lanes (lane 0 and ``worker_remote_lanes - 1``
more), all served by *one* worker thread (``_channel.LaneGroup``): objects served
there (a Proxy-Wasm host, its per-thread VMs) see a single thread, yet no parent
thread waits for another's round trip to send its request, and the worker takes
the next request as soon as it answered the last. A runtime whose objects are
bound to one thread (wasmer) has one worker thread serve every lane: then there
is one pool. No lock is held across a round trip: a lane is taken from its pool
for the outermost request (a thread waits only when every lane of the pool is in
use). A thread waiting for an answer first spins a little *keeping the GIL*, and
sends keeping it (``_chanpy.c``): with many threads, the one holding the GIL goes
on with its conversation at one thread's pace while the others wait for the GIL,
instead of every crossing handing the GIL (and a core) to another thread and back.
Past that, only one waiting thread per process spins (see ``_chan.c``), and none
waits spinning behind other requests to the same worker thread; the others block,
leaving the cores to the worker and to the threads that have work.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import os
import pickle
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .._engine import EngineConfig
from .._errors import BackendUnavailable, Trap, TrapCode, WorkerCrashed
from .._lifetime import store_collected
from . import _extensions
from ._channel import (
    DEFAULT_MAILBOX,
    DEFAULT_SPIN,
    GIL_SPIN,
    Channel,
    LaneGroup,
    PeerGone,
    Timeout,
    close_shared,
    create_shared,
    lane_size,
    map_shared,
)
from ._protocol import (
    ERR,
    HOSTERR,
    HOSTEXC,
    OK,
    PICKLE_PROTOCOL,
    REQ,
    check_headroom,
    decode,
    decode_exception,
    encode,
    encode_exception,
)

if TYPE_CHECKING:
    from ._proxy import ProcessStore

_BOOT = str(Path(__file__).with_name("_boot.py"))
_generations = itertools.count(1)

_LIVE: weakref.WeakSet[Connection] = weakref.WeakSet()
#: Lane 0 and the call lanes (a worker thread each): up to 8 threads of this process call into
#: the worker at once without waiting for a lane (a thread waiting for a lane costs a wake-up per
#: call, and the lanes go round the threads in turn: with 4 lanes, 8 threads calling made 0.2x the
#: calls one thread makes, with 8 lanes 1x; an idle worker thread costs only its eventfds: two
#: file descriptors per lane).
DEFAULT_LANES = 9
#: Remote-object lanes (one worker thread serves them all, see the module docs): past this many
#: parent threads with a remote request in flight at once, a thread waits for a free lane.
DEFAULT_REMOTE_LANES = 8
#: At most this many lanes in all (``worker_lanes`` and ``worker_remote_lanes`` are capped at half
#: of it each): one worker thread may wait on all of them (``pwvm_chan_wait_any``'s bound).
MAX_LANES = 64
#: ``request(..., budget=OP_BUDGET)`` (the default): the connection's bound for an ordinary
#: operation, ``Connection.op_timeout`` (see ``_proxy.crossing_timeout``).
OP_BUDGET: Any = object()
#: Requests that run wasm: a timeout there is the wasm running too long (Trap(INTERRUPTED));
#: elsewhere it is a worker that does not answer (WorkerCrashed). Layers above add theirs
#: (``_extensions.WASM_OPS``).
WASM_OPS = frozenset({"call", "call_refs", "instantiate", "linker_instantiate", "obj_call"})
#: True in a worker process (set by ``_worker.main``): code there uses its in-process runtime,
#: and a worker never starts a worker (that would chain processes without end).
IN_WORKER = False


def refuse_in_worker(backend: str) -> None:
    """Raise :class:`BackendUnavailable` when this process is a worker (see ``IN_WORKER``)."""
    if IN_WORKER:
        raise BackendUnavailable(backend, f"this process is the worker {os.getpid()} of another one, and a worker "
                                          "never starts a worker: code in a worker uses the worker's own "
                                          "in-process runtime")


def _package_path() -> str:
    """The folder of this copy of the package (the worker loads the same copy from there)."""
    return str(Path(__file__).resolve().parents[1])


def _signame(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class HostEntry:
    """A parent host function the worker may call: by key, with what it needs to run it."""

    __slots__ = ("access_caller", "fn", "refs", "store", "ty")

    def __init__(self, fn: Callable[..., Any], ty: Any, access_caller: bool, store: Any) -> None:
        self.fn = fn
        self.ty = ty
        self.access_caller = access_caller
        self.store = weakref.ref(store) if store is not None else None
        self.refs = any(t.is_ref for t in ty.params + ty.results)


class HostTable(dict):
    """Host functions by key (a dict that can be weakly referenced by finalizers)."""


class Reaper:
    """What it takes to stop a worker, and nothing else (finalizers hold it)."""

    __slots__ = ("death_w", "proc")

    def __init__(self, proc: subprocess.Popen, death_w: int) -> None:
        self.proc = proc
        self.death_w = death_w

    def close(self) -> None:
        w, self.death_w = self.death_w, -1
        if w >= 0:
            try:
                os.close(w)  # the worker exits when it sees this pipe close
            except OSError:
                pass
        try:
            self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Lane:
    """One channel to one worker thread, used by one parent thread at a time."""

    __slots__ = ("chan", "depth", "index", "pending", "pool")

    def __init__(self, chan: Channel, index: int) -> None:
        self.chan = chan
        self.index = index
        self.pool: Pool | None = None
        self.depth = 0
        self.pending: dict[int, BaseException] = {}


class _Waiter:
    """A thread waiting for a lane of a pool: the lane is handed to it directly."""

    __slots__ = ("lane", "lock")

    def __init__(self) -> None:
        self.lane: Lane | None = None
        self.lock = threading.Lock()
        self.lock.acquire()  # released by the thread that hands it a lane


class Pool:
    """Free lanes of one kind; a thread waits (noticing a dead worker) only when none is free.

    A lane given back while threads wait goes to the one that waited longest, directly: each
    wake-up finds its lane (no thread woken for a lane another took meanwhile).
    ``serial``: one worker thread serves them all, in turn (see ``_channel.LaneGroup``).
    """

    __slots__ = ("free", "mutex", "serial", "size", "waiters")

    def __init__(self, lanes: list[Lane], serial: bool = False) -> None:
        self.free = list(reversed(lanes))
        self.size = len(lanes)
        self.serial = serial
        self.mutex = threading.Lock()
        self.waiters: collections.deque[_Waiter] = collections.deque()
        for lane in lanes:
            lane.pool = self

    def may_spin(self) -> bool:
        """Whether a thread waiting for an answer on a lane of this pool may spin with the GIL
        released: not when the worker thread serving it has other requests to answer first (the
        wait is then long, and the cores are wanted by the worker and by the threads that have
        work). Its first, short spin, keeping the GIL, it always makes (see ``_chanpy.c``): the
        other threads of this process could not use the GIL for the worker meanwhile anyway."""
        return not self.serial or self.size - len(self.free) <= 1

    def take(self, conn: Connection) -> Lane:
        if not self.waiters:
            try:
                return self.free.pop()  # atomic under the GIL: the uncontended case takes no lock
            except IndexError:
                pass
        with self.mutex:
            if self.free and not self.waiters:
                return self.free.pop()
            w = _Waiter()
            self.waiters.append(w)
        while True:
            w.lock.acquire(timeout=0.5)  # released when a lane is handed over, or the worker died
            with self.mutex:
                if w.lane is not None:
                    return w.lane
                if conn.dead:
                    if w in self.waiters:
                        self.waiters.remove(w)
                    raise conn.lost() from None

    def give(self, lane: Lane) -> None:
        with self.mutex:
            if self.waiters:
                w = self.waiters.popleft()
                w.lane = lane
                w.lock.release()
            else:
                self.free.append(lane)

    def wake_all(self) -> None:
        """The worker died: waiting threads see it now (each then raises WorkerCrashed)."""
        with self.mutex:
            while self.waiters:
                self.waiters.popleft().lock.release()


class Connection:
    """One worker process and the conversation with it.

    A connection never comes back to life: when its worker dies it is ``dead``
    for good, every proxy that names it raises :class:`WorkerCrashed`, and the
    engine starts a new connection for its next call.
    """

    def __init__(self, python: str, backend: str, config: EngineConfig, hosts: dict[int, HostEntry], *,
                 spin: float = DEFAULT_SPIN, mailbox: int = DEFAULT_MAILBOX, lanes: int = DEFAULT_LANES,
                 remote_lanes: int = DEFAULT_REMOTE_LANES, startup_timeout: float = 300.0,
                 op_timeout: float | None = 10.0) -> None:
        refuse_in_worker(backend)
        self.gen = next(_generations)
        self.python = python
        self.backend = backend
        self.hosts = hosts
        self.stores: dict[int, weakref.ref] = {}  # worker store key -> store proxy
        self.dead = False
        self.death: str = ""
        self.op_timeout = op_timeout  # the bound of a request made without one (see OP_BUDGET)
        self.bounds: dict[str, float | None] = {}  # the engine's bounds by kind (see _proxy.crossing_timeout)
        self._tokens = itertools.count(1)
        self._tl = threading.local()
        self.released: list[int] = []
        #: what the worker reported at start (pid, versions, its backend's capabilities ...)
        self.info: dict[str, Any] = {}
        t0 = time.perf_counter()
        lanes = min(max(1, lanes), MAX_LANES // 2)
        # lane 0 and the lanes past the call lanes: the remote-object lanes
        remote = [0, *range(lanes, lanes + min(max(1, remote_lanes), MAX_LANES // 2) - 1)]
        lanes = lanes + len(remote) - 1
        fd, size = create_shared(lanes, mailbox)
        # per lane: the eventfd its parent thread sleeps on, and its worker thread's; the one worker
        # thread serving the remote-object lanes sleeps on one eventfd for all of them
        group_efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        efds = []
        for i in range(lanes):
            efds.append(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
            efds.append(group_efd if i in remote else os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
        death_r, self._death_w = os.pipe()  # the worker's end sees EOF when this process is gone
        args = {"package": _package_path(), "backend": backend, "fd": fd, "size": size,
                "mailbox": mailbox, "efds": efds, "death_fd": death_r, "spin": spin, "remote": remote,
                "config": pickle.dumps(config, PICKLE_PROTOCOL).hex()}
        fds = (fd, death_r, *dict.fromkeys(efds))
        try:
            self.proc = subprocess.Popen([python, _BOOT, json.dumps(args)], pass_fds=fds, stdin=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        except OSError as e:
            for f in fds + (self._death_w,):
                os.close(f)
            raise BackendUnavailable(backend, f"cannot start the worker interpreter {python!r}: {e}") from e
        os.close(death_r)
        self.reaper = Reaper(self.proc, self._death_w)
        self.pid = self.proc.pid
        self.pidfd = os.pidfd_open(self.pid)
        self._map = map_shared(fd, size)
        os.close(fd)  # the mapping stays
        self._efds = list(dict.fromkeys(efds))  # each once (closed once, see _release_resources)
        self.lanes = [Lane(Channel("parent", self._map, i * lane_size(mailbox), mailbox, efds[2 * i],
                                   efds[2 * i + 1], self.pidfd, spin=spin), i) for i in range(lanes)]
        for lane in self.lanes:  # this side's spin for an answer first keeps the GIL (see _chanpy.c)
            lane.chan.gil_spin_ns = int(GIL_SPIN * 1e9)
        # (until the worker said how it serves them: its hello comes on lane 0)
        self._pool = self._remote_pool = Pool([])
        self._pools: tuple[Pool, ...] = ()
        from ._remote import parent_table

        self.remote = parent_table(self)  # parent objects sent by reference, proxies of worker objects
        self.remote_released: list[int] = []
        self.extensions: set[str] = set()  # modules the worker imported to serve their requests
        _LIVE.add(self)
        try:
            msg = decode(self.lanes[0].chan.recv(startup_timeout))
        except (PeerGone, Timeout) as e:
            self.kill()
            why = "did not start in time" if isinstance(e, Timeout) else f"exited ({self.death})"
            raise BackendUnavailable(backend, f"the worker ({python}) {why}; see its messages above") from None
        if msg[0] != OK:
            exc = decode_exception(msg[1])
            self.close()
            if isinstance(exc, BackendUnavailable):
                raise BackendUnavailable(backend, f"in the worker ({python}): {exc.reason}", exc.how_to_enable)
            if type(exc) in (ValueError, TypeError):  # the engine refused its configuration: as in-process
                raise exc
            raise BackendUnavailable(backend, f"the worker ({python}) failed to start: "
                                              f"{type(exc).__name__}: {exc}") from exc
        self.info = msg[1]
        if self.info.get("one_thread"):  # one worker thread serves every lane: one pool
            group = self.lanes
            self._pool = self._remote_pool = Pool(self.lanes, serial=True)
        else:
            group = [self.lanes[i] for i in remote]
            self._remote_pool = Pool(group, serial=True)
            calls = [lane for lane in self.lanes if lane.index not in remote]
            self._pool = Pool(calls) if calls else self._remote_pool
        # the lanes one worker thread serves: a spin set on one of them (min_spin_ns, as a
        # Proxy-Wasm host sets on lane 0) holds for all, since any of them may carry the next event
        LaneGroup([lane.chan for lane in group])
        self._pools = (self._pool,) if self._pool is self._remote_pool else (self._pool, self._remote_pool)
        self.start_seconds = time.perf_counter() - t0

    # -- life and death -------------------------------------------------------------------
    def _reap(self, timeout: float = 5.0) -> None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._mark_dead(_signame(code))

    def _mark_dead(self, why: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.death = why
        _LIVE.discard(self)
        for pool in self._pools:
            pool.wake_all()
        # The eventfds, pidfd and mapping are left to the garbage collector's last reference
        # (other threads may still be waiting on them): see __del__.

    def __del__(self) -> None:
        try:
            self._release_resources()
        except Exception:  # noqa: BLE001, S110 - at interpreter exit modules may be half torn down
            pass

    def _release_resources(self) -> None:
        for lane in getattr(self, "lanes", ()):
            lane.chan.close()
        if getattr(self, "_map", None) is not None:
            close_shared(self._map)
        reaper = getattr(self, "reaper", None)
        if reaper is not None:
            reaper.close()  # a connection nobody can reach: its worker has nothing left to do
        for f in [getattr(self, "pidfd", -1), *getattr(self, "_efds", ())]:
            if f >= 0:
                try:
                    os.close(f)
                except OSError:
                    pass

    def alive(self) -> bool:
        """Whether the worker is still there, asked now (one poll of its pidfd): a worker that
        died while idle is reaped here, before a request is sent to it."""
        if self.dead:
            return False
        gil = self.lanes[0].chan._gil
        if gil is not None:  # a pidfd turns readable when its process exits; asked keeping the GIL
            gone = gil.readable(self.pidfd)
        else:
            try:  # thread-safe, and WNOWAIT leaves the reaping to _reap (Popen's own bookkeeping)
                gone = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                # Already reaped: another thread's _reap is waiting it out right now. (Popen.poll
                # would say None, "still running", while that thread holds Popen's wait lock.)
                gone = True
            except (OSError, AttributeError):
                gone = self.proc.poll() is not None
        if gone:
            self._reap()
        return not gone

    def kill(self) -> None:
        """SIGKILL the worker and wait for it (nothing it holds survives)."""
        if self.dead:
            return
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self._reap()

    def close(self) -> None:
        """Let the worker go: it exits when it sees its pipe close."""
        if self.dead:
            return
        self.reaper.close()
        self._death_w = -1
        code = self.proc.returncode
        self._mark_dead("closed" if code in (0, 70) else _signame(code))

    def lost(self, what: str = "") -> WorkerCrashed:
        rc = self.proc.returncode
        return WorkerCrashed(f"the worker process {self.pid} of this engine is gone ({self.death}); "
                             f"{what or 'objects that lived in it are lost'}", pid=self.pid,
                             signal=-rc if rc is not None and rc < 0 else None)

    # -- requests ---------------------------------------------------------------------------
    def use_extension(self, module: str) -> None:
        """Have the worker import ``module``, a layer's module registering the worker-side
        handlers of its requests (see :mod:`._extensions`), before this connection sends them.
        Once per connection and module (a restarted worker is a new connection)."""
        if module in self.extensions:
            return
        self.request("import", (module,))
        self.extensions.add(module)

    def request(self, op: str, args: tuple, budget: Any = OP_BUDGET, why: str = "",
                lane: int | None = None) -> Any:
        """Send a request and serve the worker's own requests until its answer comes.

        ``budget`` (seconds, see ``_proxy.crossing_timeout``; default ``op_timeout``; ``None``
        waits without bound): when the answer has not come by then, the worker is killed and
        reaped, and the request raises ``Trap(INTERRUPTED)`` for a call into wasm, else
        :class:`WorkerCrashed`; ``why`` says which limit. Time this process spends serving the
        worker's own requests meanwhile (host functions) does not count.
        ``lane=0``: a remote-object lane (when this thread holds no lane yet).
        """
        if self.dead:
            raise self.lost()
        if budget is OP_BUDGET:
            budget = self.op_timeout
        tl = self._tl
        held = getattr(tl, "lane", None)
        if held is not None:
            return self._request(held, op, args, budget, why)
        pool = self._remote_pool if lane == 0 else self._pool
        ln = pool.take(self)
        tl.lane = ln
        try:
            if len(self.released) >= 64 and op != "release":
                rel = self.released[:]
                del self.released[:len(rel)]  # finalizers may append meanwhile: keep those
                self._request(ln, "release", (rel,), self.op_timeout, "")
            if len(self.remote_released) >= 64 and op != "obj_release":
                rel = self.remote_released[:]
                del self.remote_released[:len(rel)]
                self._request(ln, "obj_release", (rel,), self.op_timeout, "")
            return self._request(ln, op, args, budget, why)
        finally:
            tl.lane = None
            pool.give(ln)

    def _request(self, lane: Lane, op: str, args: tuple, budget: float | None, why: str) -> Any:
        if self.dead:
            raise self.lost()
        if lane.depth >= 16:
            check_headroom()  # deep host <-> wasm recursion: stop before sending, not halfway
        lane.depth += 1
        try:
            self._send(lane, encode((REQ, op, args)), op, budget, why)
            # the bound of this crossing: it pauses while this side serves a nested request
            end = None if budget is None else time.monotonic() + budget
            left = budget  # the first wait needs no clock reading of its own
            while True:
                msg = self._recv(lane, op, left, budget, why)
                kind = msg[0]
                if kind == OK:
                    return msg[1]
                if kind == REQ:
                    if end is None:
                        self._serve(lane, msg)
                    else:
                        t0 = time.monotonic()
                        self._serve(lane, msg)
                        t1 = time.monotonic()
                        end += t1 - t0
                        left = max(0.0, end - t1)
                elif kind == ERR:
                    raise decode_exception(msg[1])
                elif kind == HOSTEXC:
                    exc = lane.pending.pop(msg[1], None)
                    raise exc if exc is not None else RuntimeError("a host function failed")
                else:
                    raise RuntimeError(f"unexpected message kind {kind} from the worker")
        finally:
            lane.depth -= 1
            if lane.depth == 0:
                lane.pending.clear()

    def _serve_remote(self, lane: Lane, op: str, args: tuple) -> None:
        """A worker-side proxy using a parent object (a shared service of a worker host)."""
        from . import _remote

        try:
            if op == "pobj_call":
                r = _remote.serve_call(self.remote, *args)
            elif op == "pobj_get":
                r = _remote.serve_get(self.remote, *args)
            elif op == "pobj_set":
                _remote.serve_set(self.remote, *args)
                r = None
            elif op == "pobj_list":
                r = _remote.serve_list(self.remote, *args)
            else:
                raise RuntimeError(f"the parent serves no {op!r} requests")
            data = encode((OK, r))
        except BaseException as e:
            if self.dead:
                raise
            token = next(self._tokens)
            lane.pending[token] = e
            data = encode((HOSTERR, token, _copy(e)))
        self._send(lane, data, op, self.op_timeout)

    def _send(self, lane: Lane, data: bytes, op: str, budget: float | None = None, why: str = "") -> None:
        try:
            lane.chan.send(data, budget)  # waits only for chunk acknowledgements of large messages
        except PeerGone:
            self._reap()
            raise self.lost(f"it died during {op!r}") from None
        except Timeout:
            raise self._timed_out(op, budget, why) from None

    def _timed_out(self, op: str, budget: float | None, why: str) -> BaseException:
        """Kill and reap a worker that did not answer in time; the error for the caller."""
        self.kill()
        # (no reason given: the request had the connection's op bound)
        why = why or f"the worker did not answer {op!r} within the engine's worker_op_timeout of {budget:g}s"
        if op in WASM_OPS or op in _extensions.WASM_OPS:
            return Trap(TrapCode.INTERRUPTED, f"{why}; the worker was killed and will be restarted, every store of "
                                              f"this engine is lost")
        return WorkerCrashed(f"{why}; the worker {self.pid} was killed and will be restarted, every store of "
                             f"this engine is lost", pid=self.pid, signal=signal.SIGKILL)

    def _recv(self, lane: Lane, op: str, timeout: float | None = None, budget: float | None = None,
              why: str = "") -> tuple:
        try:
            pool = lane.pool
            return decode(lane.chan.recv(timeout, pool is None or pool.may_spin()))
        except PeerGone:
            self._reap()
            from .._guard import limit_trap  # the worker ended at a limit it enforces around calls?

            trap = limit_trap(self.proc.returncode, self.info.get("capabilities"))
            raise trap or self.lost(f"it died during {op!r}") from None
        except Timeout:
            raise self._timed_out(op, budget, why) from None
        except BaseException:
            # KeyboardInterrupt (or any error) while the worker runs: the conversation cannot
            # be resumed, so the worker goes with it.
            self.kill()
            raise

    def _serve(self, lane: Lane, msg: tuple) -> None:
        _, op, args = msg
        if op != "host":
            self._serve_remote(lane, op, args)
            return
        try:
            hid, sid, cid, vals = args
            entry = self.hosts[hid]
            store = entry.store() if entry.store is not None else None
            if store is None:
                ref = self.stores.get(sid)
                store = ref() if ref is not None else None
            if entry.refs:
                from ._proxy import dec_vals, enc_vals

                vals = dec_vals(store, entry.ty.params, vals)
            if entry.access_caller:
                from ._proxy import ProcessCaller

                if store is None:  # alive, but being collected (see _lifetime.store_collected)
                    store_collected()
                caller = ProcessCaller(cast("ProcessStore", store), self, cid)
                try:
                    r = entry.fn(caller, *vals)
                finally:
                    caller._cid = 0
            else:
                r = entry.fn(*vals)
            if entry.refs:
                r = enc_vals(store, entry.ty.results, r)
            data = encode((OK, r))
        except BaseException as e:
            if self.dead:
                raise  # a nested call found the worker dead (or killed it): nothing to answer
            token = next(self._tokens)
            lane.pending[token] = e
            data = encode((HOSTERR, token, _copy(e)))
        self._send(lane, data, op, self.op_timeout)


def _copy(e: BaseException) -> bytes | None:
    """A copy of a host exception for the worker to raise (its code may catch it by type)."""
    try:
        return encode_exception(e)
    except Exception:  # noqa: BLE001 - the worker raises a HostError instead
        return None


def close_all() -> None:
    for conn in list(_LIVE):
        try:
            conn.close()
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass


atexit.register(close_all)
