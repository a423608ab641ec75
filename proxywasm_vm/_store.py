"""Stores: the state of one VM (its instances, memories, host functions) and its limits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._contract import AbstractStore

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_MEMORY_BYTES", "DEFAULT_TABLE_ELEMENTS", "Store", "StoreLimits",
           "is_default"]


class _DefaultInt(int):
    """An int that was not chosen by the user: a protective default (see :func:`is_default`)."""

    __slots__ = ()


class _DefaultFloat(float):
    """A float that was not chosen by the user: a protective default (see :func:`is_default`)."""

    __slots__ = ()


def is_default(value: object) -> bool:
    """Whether ``value`` is one of the protective defaults rather than a value the user set.

    Defaults are marked by their type (an ``int``/``float`` subclass), so the mark survives
    ``dataclasses.replace``, copies and pickling to a worker process.
    """
    return isinstance(value, (_DefaultInt, _DefaultFloat))


#: Default cap of one linear memory (1 GiB): well above what real plugins and modules use
#: (tens of MiB), well below what takes down a host.
DEFAULT_MEMORY_BYTES = _DefaultInt(1 << 30)
#: Default cap of one table's elements (Envoy/wasmtime plugins use a few thousand at most).
DEFAULT_TABLE_ELEMENTS = _DefaultInt(1_000_000)
#: Default wall-clock seconds of one call from Python into wasm: generous for batch work,
#: yet a runaway loop no longer hangs its caller forever.
DEFAULT_DEADLINE = _DefaultFloat(10.0)


@dataclass(frozen=True)
class StoreLimits:
    """Resource limits of a store. Every limit is on by default; ``None`` means unlimited.

    - ``memory_bytes`` (default 1 GiB): the most bytes any one linear memory may
      grow to. A ``memory.grow`` past it returns -1 inside wasm (as the spec
      requires); an instance whose initial memory is already larger fails with
      ``Trap(MEMORY_LIMIT)``; :meth:`Memory.grow` from Python raises
      :class:`LimitError`. (wasmer, which cannot refuse a grow, runs in a worker
      whose watchdog stops the call with ``Trap(MEMORY_LIMIT)`` once a memory
      passes the cap, and the worker is replaced.)
    - ``table_elements`` (default 1,000,000): the most elements any one table may grow to.
    - ``deadline`` (default 10 s): wall-clock seconds each call from Python into
      wasm may run before it stops with ``Trap(INTERRUPTED)`` (wasmer: its worker
      is stopped and replaced). A default deadline is not applied on an engine made
      with ``EngineConfig(deadlines=False)``; an explicit one there is an error.
    - ``fuel`` (default ``None``): a deterministic budget of wasm instructions for the store's
      lifetime; when spent, ``Trap(OUT_OF_FUEL)`` (needs ``EngineConfig(fuel=True)``).

    ``StoreLimits.unlimited()`` turns every limit off. A limit set explicitly that the
    backend cannot enforce is a ``ValueError``; a default one is enforced another way
    (see :attr:`Capabilities.deadline`), never dropped silently.
    """

    memory_bytes: int | None = DEFAULT_MEMORY_BYTES
    table_elements: int | None = DEFAULT_TABLE_ELEMENTS
    deadline: float | None = DEFAULT_DEADLINE
    fuel: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "table_elements", "fuel"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline}")

    @classmethod
    def unlimited(cls) -> StoreLimits:
        """No limit at all: memory, tables and calls may grow and run without bound."""
        return cls(memory_bytes=None, table_elements=None, deadline=None, fuel=None)


def effective_limits(limits: StoreLimits, engine: Engine) -> StoreLimits:
    """``limits`` as ``engine`` will enforce them; raises ``ValueError`` for an explicit limit it cannot.

    A default limit the backend cannot enforce at all is dropped only where the user
    said so elsewhere (a default deadline on ``EngineConfig(deadlines=False)``), or, for
    wasmer run in this very process (Python <= 3.10), with a ``RuntimeWarning``.
    """
    caps = engine.capabilities
    lim = limits
    if lim.fuel is not None and not (caps.fuel and engine.config.fuel):
        raise ValueError("StoreLimits.fuel needs a backend with fuel and EngineConfig(fuel=True)")
    dropped = []
    if lim.deadline is not None and not (caps.deadline and engine.config.deadlines):
        if not is_default(lim.deadline):
            raise ValueError("StoreLimits.deadline needs a backend with deadlines and EngineConfig(deadlines=True)")
        if caps.deadline:  # the user turned deadlines off for this engine: that is said explicitly
            lim = replace(lim, deadline=None)
        else:
            dropped.append("deadline")
    if lim.memory_bytes is not None and not caps.memory_limit:
        if not is_default(lim.memory_bytes):
            raise ValueError(f"the {engine.name} backend cannot limit memory")
        dropped.append("memory_bytes")
    if dropped:
        import warnings

        warnings.warn(f"the {engine.name} backend in this process cannot enforce the default "
                      f"{' and '.join(dropped)} limit; run it in a worker (isolation='process') to have them",
                      RuntimeWarning, stacklevel=3)
        lim = replace(lim, **{name: None for name in dropped})
    return lim


class Store(AbstractStore):
    """The state of one VM: instances, memories, globals, tables, host functions.

    A store is used by one thread at a time. Objects from one store cannot be
    used with another. ``data`` is any value the embedder wants to keep with the
    store (host functions reach it as ``caller.store.data``).

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractStore`.
    """

    def __new__(cls, engine: Engine, *, limits: StoreLimits | None = None, data: Any = None) -> Store:
        if cls is not Store:
            return super().__new__(cls)
        lim = effective_limits(limits if limits is not None else StoreLimits(), engine)
        return engine._store_new(lim, data)
