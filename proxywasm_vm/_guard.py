"""Limits a runtime cannot enforce itself, enforced around its calls by the kernel, in its worker process.

A backend support module of the core layer: backends arm it around their calls,
the isolation layer enables it in a worker and reads a worker's exit status with
it; it imports nothing but the errors, so both may use it (it lives here, not in
the isolation package, because backends must not import isolation).

Some runtimes can neither interrupt running wasm nor refuse a ``memory.grow``
(wasmer-python), and hold the GIL while wasm runs, so no Python thread can watch
them. In a worker process (and only there: the deadline ends the process) each
outermost call into wasm of such a backend is bracketed instead:

- deadline: ``setitimer(ITIMER_REAL)``, with SIGALRM left at its default action:
  at the deadline the kernel ends the worker, whatever wasm is doing. The
  parent's call in flight raises ``Trap(INTERRUPTED)`` (:func:`limit_trap`) and the
  engine's next call starts a new worker. (The parent's own wait,
  ``ProcessStore._budget`` on the ``call_timeout`` path, stays the backstop.)
- memory: ``RLIMIT_DATA`` (the process's private writable memory, which a
  ``memory.grow`` makes accessible with ``mprotect``) is set to what the process
  has now plus the room the store's memories have left under their cap, so a
  ``memory.grow`` past the cap returns -1 in wasm, as the spec says. The limit
  leaves :data:`SLACK` more for the runtime's own allocations, so a memory may
  end up to that much past its cap (``Capabilities.exact_memory_limit`` is False);
  a grow from Python (:meth:`Memory.grow`) is checked exactly. With several
  memories in a store, the smallest room counts. Only memories the store can
  see are counted: its own and those its instances export (a module's start
  function runs before its memories are known, so instantiation has no memory cap). A runtime may abort the
  process when one of its own allocations fails (wasmer: a trap's backtrace after deep recursion can
  take tens of MiB): a guarded worker that aborts is reported as
  ``Trap(MEMORY_LIMIT)``, and replaced like any dead worker.

A guarded backend says so in its capabilities, which is how the parent knows what a
worker's death by SIGALRM or SIGABRT means (:func:`limit_trap`): ``deadline`` with
``interrupt_keeps_store=False`` (the deadline ends the worker), ``memory_limit`` with
``exact_memory_limit=False`` (the cap is the process's, :data:`SLACK` past the memories').

Both cost a few syscalls per outermost call, and nothing when no limit is set: made from
Python about 4 µs per call. A backend's native helper (:func:`use_helper`, wasmer's ``_guard.c``)
makes them in one C call for :func:`enter` and one for :func:`leave`, and keeps the deadline with
a watchdog thread instead of the itimer (the same SIGALRM at the deadline, no system call per call).
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import Trap, TrapCode

if TYPE_CHECKING:
    from ._contract import Capabilities
    from ._store import StoreLimits

_enabled = False
#: [depth]: outermost calls only arm, nested calls (host -> wasm) run under the outer call's limits. A
#: one-item list, so a backend's hot call path tests and sets it without a call (GuardedStore._fast).
DEPTH = [0]
_statm = -1
_INF = resource.RLIM_INFINITY
#: Room left for the runtime's own allocations on top of the memories' room.
SLACK = 16 << 20
#: A native helper making the system calls of enter and leave (see :func:`use_helper`), or None.
_helper: Any = None


def enable() -> None:
    """Let calls be ended by the kernel: called by a worker process at start, never in a user's process."""
    global _enabled, _statm
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a Python handler would never run while wasm runs
    _statm = os.open("/proc/self/statm", os.O_RDONLY)
    _enabled = True


def use_helper(lib: Any) -> bool:
    """Make the system calls of :func:`enter` and :func:`leave` through ``lib``, a cffi library
    with ``pwvm_guard_init()``, ``pwvm_guard_enter(room, usec)`` and ``pwvm_guard_leave()`` (the
    wasmer backend's ``_guard.c``), in a worker where :func:`enable` was called. Whether it is used."""
    global _helper
    if not _enabled or lib.pwvm_guard_init() != 0:
        return False
    _helper = lib
    return True


def enabled() -> bool:
    """Whether this process is a worker whose calls may be ended by the kernel."""
    return _enabled


def _data_bytes() -> int:
    """The process's private writable memory now (what RLIMIT_DATA counts; statm's figure also has the
    main stack, whose few hundred KiB make the limit that much looser)."""
    return int(os.pread(_statm, 128, 0).split()[5]) * resource.getpagesize()


def enter(deadline: float | None, cap: int | None, sizes: Any) -> bool:
    """Arm the limits for a call starting now; ``sizes`` gives the store's memory sizes.

    Returns whether :func:`leave` must be called (an outermost call with a limit).
    """
    if DEPTH[0]:
        DEPTH[0] += 1
        return True
    if deadline is None and cap is None:
        return False
    if _helper is not None:
        return _enter_helper(deadline, cap, sizes() if cap is not None else ())
    DEPTH[0] = 1
    if cap is not None:
        left = min((cap - s for s in sizes()), default=None)
        if left is not None:
            # (a memory already past its cap has less than SLACK left: it cannot creep on, SLACK per call)
            resource.setrlimit(resource.RLIMIT_DATA, (_data_bytes() + max(0, left + SLACK), _INF))
    if deadline is not None:
        signal.setitimer(signal.ITIMER_REAL, deadline)
    return True


def _enter_helper(deadline: float | None, cap: int | None, sizes: Sequence[int]) -> bool:
    """:func:`enter` through the helper, for an outermost call (``sizes``: the store's memory sizes)."""
    room = -1
    if cap is not None and sizes:
        # (a memory already past its cap has less than SLACK left: it cannot creep on, SLACK per call)
        room = cap + SLACK - max(sizes)
        if room < 0:
            room = 0
    # (the helper rounds the deadline up to whole microseconds, as signal.setitimer does)
    rc = _helper.pwvm_guard_enter(room, 0.0 if deadline is None else deadline)
    if rc:
        raise arm_error(rc)
    DEPTH[0] = 1
    return True


def arm_error(rc: int) -> OSError:
    """The error of the helper's enter returning ``rc`` (-errno): nothing was armed."""
    return OSError(-rc, f"cannot arm the call's limits: {os.strerror(-rc)}")


def leave() -> None:
    """The call armed by :func:`enter` returned (or raised)."""
    DEPTH[0] -= 1
    if DEPTH[0]:
        return
    if _helper is not None:
        _helper.pwvm_guard_leave()
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    resource.setrlimit(resource.RLIMIT_DATA, (_INF, _INF))


def limit_trap(returncode: int | None, capabilities: Capabilities | None) -> Trap | None:
    """In the parent: the trap a worker's exit status stands for, if a guarded limit ended it.

    ``capabilities``: what the worker's backend reported at start (``None``: not known yet);
    only a backend whose capabilities say it is guarded (see the module docs) is ended by it.
    """
    if capabilities is None:
        return None
    if returncode == -signal.SIGABRT and capabilities.memory_limit and not capabilities.exact_memory_limit:
        return Trap(TrapCode.MEMORY_LIMIT, "the worker aborted: an allocation failed under its memory limit "
                                           "(StoreLimits.memory_bytes); it will be restarted, every store of "
                                           "this engine is lost")
    if returncode == -signal.SIGALRM and capabilities.deadline and not capabilities.interrupt_keeps_store:
        return Trap(TrapCode.INTERRUPTED, "the call ran past its deadline; its worker was stopped and will be "
                                          "restarted, every store of this engine is lost")
    return None


class GuardedStore:
    """The limits part of a store of a guarded runtime (wasmer, wasm3): mixed in before ``Store``.

    Holds the limits the guard enforces around each outermost call (only in a worker, where
    :func:`enabled`: elsewhere ``Store()`` refused them or they were dropped) and the memories
    whose room they count (``_mems``: objects with a ``data_size``). A call into wasm does::

        armed = store._arm()
        try: ...
        finally:
            if armed: leave()
    """

    #: the runtime's name, for error messages
    runtime_name = "this runtime"
    _limits: StoreLimits
    _deadline: float | None
    _cap: int | None
    _guarded: bool
    _mems: list[Any]
    #: (the helper's enter, its leave, the deadline) when the helper arms this store's deadline, else None:
    #: a backend's hot call path arms an outermost call (``DEPTH[0]`` 0) with no memory to count
    #: (``_mems`` empty) as :meth:`_arm` would, ``enter(-1, deadline)``, without the steps between
    _fast: tuple[Any, Any, float] | None

    def _init_guard(self, limits: StoreLimits) -> None:
        self._limits = limits
        self._deadline = limits.deadline if _enabled else None
        self._cap = limits.memory_bytes if _enabled else None
        self._guarded = self._deadline is not None or self._cap is not None
        self._mems = []
        self._set_fast()

    def _set_fast(self) -> None:
        h, d = _helper, self._deadline
        self._fast = (h.pwvm_guard_enter, h.pwvm_guard_leave, d) if h is not None and d is not None else None

    @property
    def limits(self) -> StoreLimits:
        """The limits this store was made with."""
        return self._limits

    def set_deadline(self, seconds: float | None) -> None:
        """Change the per-call deadline (``None`` removes it); only a worker can enforce one."""
        if seconds is not None and not _enabled:
            raise ValueError(f"{self.runtime_name} cannot interrupt running wasm in this process "
                             "(Capabilities.deadline); run it in a worker process (isolation='process')")
        if seconds is not None and not seconds > 0:
            raise ValueError("deadline must be > 0 seconds")
        self._deadline = seconds
        self._guarded = self._deadline is not None or self._cap is not None
        self._set_fast()

    def _mem_sizes(self) -> list[int]:
        return [m.data_size for m in self._mems]

    def _arm(self) -> bool:
        """Arm the guard for a call starting now; True: call :func:`leave` once it returned."""
        if not self._guarded:
            return False
        if _helper is None or DEPTH[0]:
            return enter(self._deadline, self._cap, self._mem_sizes)
        # the common case in fewer steps: an outermost call, through the helper, one memory
        cap, mems = self._cap, self._mems
        sizes = () if cap is None or not mems else (mems[0].data_size,) if len(mems) == 1 else self._mem_sizes()
        return _enter_helper(self._deadline, cap, sizes)
