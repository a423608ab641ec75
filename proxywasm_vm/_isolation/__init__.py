"""Worker-process isolation: any backend run in a child process, behind the public classes.

``Engine("wasmtime", isolation="process")`` (or ``Engine("wasmtime@process")``)
starts a worker process running the wasmtime backend in-process, and returns an
engine whose modules, stores, functions, memories ... are proxies forwarding
to it. ``Engine("wasmer")`` does the same by default where wasmer-python cannot
be imported (Python >= 3.11), under a Python 3.10 interpreter.

The worker interpreter, in order of precedence:

1. the engine option ``worker_python``: ``EngineConfig(options=(("worker_python", path),))``;
2. ``$PWVM_WORKER_PYTHON``;
3. the one the runtime's backend asks for (``Backend.worker_python``; wasmer: this
   interpreter if it can import wasmer, else a Python 3.10 with wasmer installed);
4. otherwise this interpreter (``sys.executable``).

The worker runs *this* copy of proxywasm_vm (loaded from its path), so only the
runtime and its dependencies must be installed in the worker's environment.

How it works (see ``_channel``, ``_conn``, ``_worker``):

- transport: an anonymous shared mapping (memfd) with one lane (two mailboxes)
  per worker thread; a receiver spins up to ``worker_spin`` (50 µs) with the GIL
  released, yielding its core every few µs, then sleeps on an eventfd (no spin
  at all where the process may use only one core); real atomics from a small
  cffi helper (``_chan.c``), or eventfd-only wake-ups without a compiler. A call
  into wasm costs ~4 µs when both sides have a core;
- a Proxy-Wasm plugin on a worker engine runs with its host *in the worker*
  (the Proxy-Wasm layer's ``_proxywasm._remote_host``, through remote objects,
  ``_remote``, and requests it registers, ``_extensions``: this package imports
  nothing of it): its host calls stay there, a stream event is one crossing,
  and the event loop (callout responses, queue events, ticks) stays the parent
  host's. That lane spins ``worker_event_spin`` (100 µs) on both sides;
- threads: a parent thread takes a free lane for its outermost call, so threads
  run in the worker at the same time: ``worker_lanes - 1`` call lanes (8 by
  default), a worker thread each, and ``worker_remote_lanes`` (8) remote-object
  lanes, all served by one worker thread that takes their requests in turn
  (objects living there, such as a Proxy-Wasm host, see one thread; no parent
  thread waits for another's round trip to send). A runtime whose objects are
  bound to one thread (wasmer) gets one worker thread serving every lane. A
  waiting parent thread first spins up to 50 µs *keeping the GIL*, and sends
  keeping it (``_chanpy.c``), so that with many threads the one holding the GIL
  goes on at one thread's pace while the others wait for the GIL, rather than
  each crossing handing it over and back (a wake-up and a context switch each):
  8 threads then make about what one makes. Past that spin, only one waiting
  thread per process spins; the others sleep on their eventfd;
- host functions stay Python callables of this process: wasm calling one sends a
  request back here, and either side serves nested requests while it waits, so
  host -> wasm -> host recursion works to any depth; a host exception object is
  kept here and re-raised unchanged from the outer call;
- crash detection: this side waits on the worker's pidfd as well, so a dead
  worker is noticed at once (:class:`~proxywasm_vm.WorkerCrashed`); the worker
  watches a pipe only this process holds (a C thread: it exits even in the
  middle of a wasm call that holds the GIL);
- limits a runtime cannot enforce itself (wasmer) are enforced around each call
  by the kernel in its worker (:mod:`._guard`): the worker ends at the deadline
  (``Trap(INTERRUPTED)``) or when its memory passes the cap (``Trap(MEMORY_LIMIT)``),
  and the crossing bound below is the backstop;
- every crossing has a bound (``_proxy.crossing_timeout``, the one place it is
  decided), so a worker that is stopped (SIGSTOP), wedged or looping is detected:
  past it the parent stops waiting, SIGKILLs and reaps the worker, and the caller
  gets ``Trap(INTERRUPTED)`` (a call into wasm, a stream event) or
  :class:`~proxywasm_vm.WorkerCrashed` (anything else). The bounds, in seconds:

  ============================  =====================================================
  a call into wasm, an          ``2 * deadline + 1`` for a store with a deadline (the
  instantiation                 runtime stops the call at the deadline; this is the
                                backstop), or the engine option ``call_timeout`` if
                                smaller (runtimes without deadlines: wasmer); neither:
                                no bound (no limit was asked for)
  a stream event of a plugin    ``worker_event_timeout`` (default 5), or ``2 * d + 1``
  whose host runs in the        when the plugin's per-callback deadline ``d`` makes
  worker (``_remote_host``)     that longer (an event makes several wasm calls)
  compiling or loading a        ``worker_compile_timeout`` (default 120)
  module, loading a plugin
  anything else (memory,        ``worker_op_timeout`` (default 10)
  globals, exports, stores)
  ============================  =====================================================

  Time this process spends serving the worker's own requests meanwhile (a host
  function, a parent service) does not count against the worker. A bound given as
  ``None`` waits without end. The timed wait is the same ``poll`` as an untimed
  one (after the same spin), so a bound costs no system call;
- a Proxy-Wasm stream whose worker dies or is killed under it gets its plugin's
  failure policy (``fail_closed``: a local 503; ``fail_open``: it goes on;
  ``raise``: :class:`~proxywasm_vm.PluginCrash` with the cause);
- restart: a worker that died while idle is noticed before the next request
  (engine calls and each new Proxy-Wasm stream ask its pidfd once: one ``waitid``,
  ~0.6 µs, per stream, none per crossing) and replaced; a worker still exiting at
  that moment is found by the request itself, which then fails as above;
  after a crash the next call starts a new worker; modules and linkers are
  recreated in it (compiled modules from the cache), a Proxy-Wasm plugin whose host
  ran there is loaded again (its next stream is served), stores and their objects
  are lost (:class:`~proxywasm_vm.WorkerCrashed`); new stores of the engine work;
- a worker never starts a worker: code there uses its in-process runtime (a
  plugin's ``PluginConfig.backend`` names the runtime the parent already chose),
  and asking a worker for a worker raises :class:`~proxywasm_vm.BackendUnavailable`.

Not available across the boundary: ``Memory.view()`` (``Capabilities.memory_view``).

Engine options read here (the rest go to the backend in the worker):
``worker_python``, ``call_timeout``, ``worker_event_timeout``,
``worker_compile_timeout``, ``worker_op_timeout`` (seconds, see above), ``worker_lanes``, ``worker_remote_lanes``,
``worker_spin`` and ``worker_event_spin`` (seconds a waiting side busy-waits
before it sleeps: CPU time traded for latency; 0 always sleeps), ``worker_mailbox`` (bytes).
"""

from __future__ import annotations

import os
import sys
import threading

from .._backend import load_runtime
from .._engine import EngineConfig
from .._errors import BackendUnavailable
from .._settings import worker_python
from ._proxy import ProcessBackend, ProcessEngine

__all__ = ["ProcessBackend", "ProcessEngine", "process_backend", "resolve_worker_python"]

_BACKENDS: dict[str, ProcessBackend] = {}
_LOCK = threading.Lock()


def resolve_worker_python(base: str, option: str | None = None) -> str:
    """The interpreter a worker for backend ``base`` runs under (see the module docs)."""
    path = option or worker_python()
    if not path:
        path = load_runtime(base).worker_python() or sys.executable
    if not os.path.exists(path):
        raise BackendUnavailable(base, f"the worker interpreter {path!r} does not exist",
                                 "set PWVM_WORKER_PYTHON or the engine option worker_python to an interpreter")
    return path


def process_backend(base: str, *, name: str | None = None, in_process_reason: str = "") -> ProcessBackend:
    """The backend ``base`` run in worker processes, registered as ``name`` (``"<base>@process"``).

    The core registry's entry for isolation ``"process"`` (see ``_backend._ISOLATIONS``): it
    calls this for ``"<base>@process"``, and for ``"<base>"`` when the runtime's
    ``default_isolation`` is ``"process"`` (wasmer where it cannot be imported).

    Starts one worker to learn the runtime's version and capabilities (it is
    kept for the first engine with the default configuration). Raises
    :class:`BackendUnavailable` when no worker can run the backend.
    """
    name = name or f"{base}@process"
    from ._conn import refuse_in_worker

    refuse_in_worker(name)
    with _LOCK:
        b = _BACKENDS.get(name)
        if b is not None:
            return b
        from ._conn import Connection

        python = resolve_worker_python(base)
        conn = Connection(python, base, EngineConfig(), {})
        b = ProcessBackend(name, base, python, conn.info, in_process_reason)
        b._spare = conn
        _BACKENDS[name] = b
        return b
