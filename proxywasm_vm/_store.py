"""Stores: the state of one VM (its instances, memories, host functions) and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from ._engine import Engine
    from ._func import Func
    from ._global import Global
    from ._instance import Instance
    from ._memory import Memory
    from ._module import Module
    from ._table import Table
    from ._types import FuncType, GlobalType, MemoryType, TableType

__all__ = ["Store", "StoreLimits"]


@dataclass(frozen=True)
class StoreLimits:
    """Resource limits of a store. ``None`` means unlimited.

    - ``memory_bytes``: the most bytes any one linear memory may grow to. A
      ``memory.grow`` past it returns -1 inside wasm (as the spec requires); an
      instance whose initial memory is already larger fails with
      ``Trap(MEMORY_LIMIT)``; :meth:`Memory.grow` from Python raises
      :class:`LimitError`.
    - ``table_elements``: the most elements any one table may grow to.
    - ``deadline``: wall-clock seconds each call from Python into wasm may run
      before it stops with ``Trap(INTERRUPTED)`` (the engine needs
      ``EngineConfig(deadlines=True)``, the default).
    - ``fuel``: a deterministic budget of wasm instructions for the store's
      lifetime; when spent, ``Trap(OUT_OF_FUEL)`` (needs ``EngineConfig(fuel=True)``).
    """

    memory_bytes: int | None = None
    table_elements: int | None = None
    deadline: float | None = None
    fuel: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "table_elements", "fuel"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline}")


class Store:
    """The state of one VM: instances, memories, globals, tables, host functions.

    A store is used by one thread at a time. Objects from one store cannot be
    used with another. ``data`` is any value the embedder wants to keep with the
    store (host functions reach it as ``caller.store.data``).
    """

    engine: Engine
    data: Any

    def __new__(cls, engine: Engine, *, limits: StoreLimits | None = None, data: Any = None) -> Store:
        if cls is not Store:
            return super().__new__(cls)
        lim = limits or StoreLimits()
        caps = engine.capabilities
        if lim.fuel is not None and not (caps.fuel and engine.config.fuel):
            raise ValueError("StoreLimits.fuel needs a backend with fuel and EngineConfig(fuel=True)")
        if lim.deadline is not None and not (caps.deadline and engine.config.deadlines):
            raise ValueError("StoreLimits.deadline needs a backend with deadlines and EngineConfig(deadlines=True)")
        if lim.memory_bytes is not None and not caps.memory_limit:
            raise ValueError(f"the {engine.name} backend cannot limit memory")
        return engine._store_new(lim, data)

    @property
    def limits(self) -> StoreLimits:
        """The limits this store enforces."""
        raise NotImplementedError
    def set_deadline(self, seconds: float | None) -> None:
        """Change the per-call wall-clock deadline (``None`` removes it)."""
        raise NotImplementedError

    def get_fuel(self) -> int:
        """Fuel left (needs ``EngineConfig(fuel=True)``)."""
        raise ValueError("fuel is not enabled for this engine")

    def set_fuel(self, fuel: int) -> None:
        """Set the fuel left (needs ``EngineConfig(fuel=True)``)."""
        raise ValueError("fuel is not enabled for this engine")

    def close(self) -> None:
        """Release the runtime's resources now instead of at garbage collection."""
        return None

    # -- backend factory methods --------------------------------------------
    def _func_new(self, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> Func:
        raise NotImplementedError
    def _memory_new(self, ty: MemoryType) -> Memory:
        raise NotImplementedError
    def _global_new(self, ty: GlobalType, value: Any) -> Global:
        raise NotImplementedError
    def _table_new(self, ty: TableType, init: Any) -> Table:
        raise NotImplementedError
    def _instantiate(self, module: Module, imports: Sequence[Any]) -> Instance:
        raise NotImplementedError
