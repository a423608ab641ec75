"""Releasing what a store (or engine, module, instance) owns only once nothing can use it.

Python's cyclic garbage collector frees a reference cycle in three steps:

1. it clears the weak references to the cycle's objects and runs their callbacks
   (``weakref.finalize`` included);
2. it runs every finalizer of the cycle in no set order: ``__del__`` methods, and cffi's
   ``ffi.gc`` destructors, which are finalizers too;
3. it tears the cycle down (deallocation).

A backend that releases its store in step 1 or 2 can release it before the ``__del__`` of
another object of the same cycle that still calls into it. A Proxy-Wasm ``Plugin`` dropped
without ``close()`` is such an object: its ``__del__`` ends its root contexts in the plugin.
With a native store that was a use-after-free (heap corruption in the V8 shim, a crash in
wasmtime); with a worker's store, calls failing with "its store was closed".

:func:`release_after_finalizers` moves the release to step 3. The release object is kept
reachable from a module-level table until the owner's weak references are cleared (step 1),
so the collector does not count it among the cycle's garbage and never runs it in step 2; it
then lives on only through the owner, and runs when the owner is deallocated.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, NoReturn

from ._errors import WasmError

__all__ = ["Release", "release_after_finalizers", "store_collected"]

# id(release) -> release, until its owner's weak references are cleared.
_PENDING: dict[int, Release] = {}


class Release:
    """Calls ``fn(*args)`` once: when called, or else when deallocated.

    ``args`` may hold native handles (an ``ffi.gc`` cdata is freed when the last reference to
    it goes, so passing it here keeps it alive until ``fn`` has run). They must not reach the
    owner back, or the owner is never collected (the rule of ``weakref.finalize`` too).
    """

    __slots__ = ("_call",)

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._call: tuple[Callable[..., Any], tuple[Any, ...]] | None = (fn, args)

    def __call__(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call[0](*call[1])

    @property
    def alive(self) -> bool:
        """True until the release has run."""
        return self._call is not None

    def __del__(self) -> None:
        self()


def release_after_finalizers(owner: Any, fn: Callable[..., Any], *args: Any) -> Release:
    """Run ``fn(*args)`` when ``owner`` is deallocated: after every finalizer of its cycle.

    ``owner`` must be weak-referenceable and accept the attribute ``_release`` (it holds the
    returned :class:`Release`, which a ``close()`` may call to release early).
    """
    release = Release(fn, args)
    object.__setattr__(owner, "_release", release)  # (a remote proxy forwards its own __setattr__)
    key = id(release)
    _PENDING[key] = release
    # At interpreter exit the table just goes: the process is ending.
    weakref.finalize(owner, _PENDING.pop, key, None).atexit = False
    return release


def store_collected() -> NoReturn:
    """Raised for a host function that takes a ``Caller`` when its store cannot be named.

    That happens only in a call made from a finalizer (``__del__``) of an object in a
    reference cycle with the store: the collector cleared the weak references through which a
    host call finds its Store before it ran the finalizer. Host functions without a Caller work
    there; the exception reaches the call into wasm like any a host function raises.
    """
    raise WasmError("a host function that takes a Caller was called from a finalizer of its store's "
                    "reference cycle, while the cycle is being collected: the Caller's store cannot be "
                    "named then; close() the object that owns the store instead of leaving it to the "
                    "garbage collector")
