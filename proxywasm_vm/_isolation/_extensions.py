"""Hook tables through which a higher layer extends the worker protocol (isolation imports none of them).

The isolation layer knows engines, modules, stores and generic remote objects
(:mod:`._remote`). A layer above it that runs its own objects inside a worker
(the Proxy-Wasm host: ``proxywasm_vm._proxywasm._remote_host``) registers here,
when its module is imported:

- the worker-side handlers of its own requests (:func:`worker_op`). The parent
  asks the worker to import that module once per connection
  (:meth:`~._conn.Connection.use_extension`), which runs the same registrations
  there; the worker then serves those requests like its own;
- which of them run wasm (``runs_wasm``: a request past its bound then raises
  ``Trap(INTERRUPTED)``, not :class:`~proxywasm_vm.WorkerCrashed`);
- the types that cross by value rather than by reference (:func:`remote_by_value`);
- the remote-object methods that compile, bounded as compiling rather than as an
  event (:func:`remote_compiling`).

Registrations only add: names are unique per layer (prefix them, ``"pw_..."``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["BY_VALUE", "COMPILING_METHODS", "WASM_OPS", "WORKER_OPS", "remote_by_value", "remote_compiling",
           "worker_op"]

F = TypeVar("F", bound=Callable[..., Any])

#: request name -> ``handler(worker, *args)``, run in the worker (see ``_worker.Worker``)
WORKER_OPS: dict[str, Callable[..., Any]] = {}
#: registered requests that run wasm
WASM_OPS: set[str] = set()
#: types (besides plain data, enums, dataclasses, paths, exceptions) that cross by value
BY_VALUE: list[type] = []
#: names of remote-object methods bounded as compiling (``worker_compile_timeout``)
COMPILING_METHODS: set[str] = set()


def worker_op(name: str, *, runs_wasm: bool = False) -> Callable[[F], F]:
    """Register the decorated ``handler(worker, *args)`` as the worker's answer to request ``name``.

    ``worker`` is the :class:`~._worker.Worker` serving the request (its ``engine``,
    its ``remote`` object table, :meth:`~._worker.Worker.channel`). ``runs_wasm``: the
    request runs wasm, so a request past its bound is a ``Trap(INTERRUPTED)``.
    """

    def register(fn: F) -> F:
        if name in WORKER_OPS and WORKER_OPS[name] is not fn:
            other = WORKER_OPS[name]
            if (other.__module__, other.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"worker request {name!r} is already registered by {other.__module__}")
        WORKER_OPS[name] = fn
        if runs_wasm:
            WASM_OPS.add(name)
        return fn

    return register


def remote_by_value(*types: type) -> None:
    """Objects of ``types`` cross the worker boundary by value (a pickled copy), not by reference."""
    for t in types:
        if t not in BY_VALUE:
            BY_VALUE.append(t)


def remote_compiling(*names: str) -> None:
    """Calls of remote-object methods called ``names`` compile code: they get the compile bound."""
    COMPILING_METHODS.update(names)
