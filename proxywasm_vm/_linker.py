"""Linkers: host functions defined once per engine, instantiated into many stores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ._errors import LinkError
from ._types import FuncType

if TYPE_CHECKING:
    from ._engine import Engine
    from ._instance import Extern, Instance
    from ._module import Module
    from ._store import Store

__all__ = ["Linker"]


@dataclass(frozen=True)
class _HostDef:
    ty: FuncType
    fn: Callable[..., Any]
    access_caller: bool


class Linker:
    """Named imports shared by many instantiations.

    Define host functions once with :meth:`define_func` (they are not tied to a
    store), then :meth:`instantiate` a module in any store of the engine. This
    is the fast way to create many VMs of one plugin: backends that support it
    pre-resolve the imports once per module.
    """

    engine: Engine

    def __new__(cls, engine: Engine) -> Linker:
        if cls is not Linker:
            return super().__new__(cls)
        return engine._linker_new()

    def _setup(self, engine: Engine) -> None:
        self.engine = engine
        self._funcs: dict[tuple[str, str], _HostDef] = {}
        self._externs: dict[tuple[str, str], Extern] = {}

    def define_func(self, module: str, name: str, ty: FuncType, fn: Callable[..., Any], *,
                    access_caller: bool = False, raw: bool = False) -> None:
        """Define ``module.name`` as a host function, for every store (``access_caller`` and
        ``raw`` as for :class:`~proxywasm_vm.Func`)."""
        from ._func import cooking_if_needed

        if not isinstance(ty, FuncType):
            raise TypeError(f"expected a FuncType, got {type(ty).__name__}")
        self._define_func(module, name, ty, cooking_if_needed(fn, ty, access_caller, raw), access_caller)

    def _define_func(self, module: str, name: str, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> None:
        """Hook for backends: define ``fn``, which takes its f32/f64/v128 arguments raw."""
        self._funcs[(module, name)] = _HostDef(ty, fn, access_caller)
        self._changed()

    def define(self, module: str, name: str, item: Extern) -> None:
        """Define ``module.name`` as an existing extern (usable only with its own store)."""
        self._externs[(module, name)] = item
        self._changed()

    def has(self, module: str, name: str) -> bool:
        """True if ``module.name`` is defined."""
        return (module, name) in self._funcs or (module, name) in self._externs

    def _changed(self) -> None:
        """Hook for backends that precompute per-module state."""

    def instantiate(self, store: Store, module: Module) -> Instance:
        """Instantiate ``module`` in ``store`` with this linker's definitions."""
        from ._func import Func
        from ._instance import Instance

        # Host functions are made per instantiation: caching them per store
        # would make the store and its functions a reference cycle.
        made: dict[tuple[str, str], Func] = {}
        imports: list[Any] = []
        for imp in module.imports:
            key = (imp.module, imp.name)
            if key in self._externs:
                imports.append(self._externs[key])
            elif key in self._funcs:
                f = made.get(key)
                if f is None:
                    d = self._funcs[key]
                    f = made[key] = Func(store, d.ty, d.fn, access_caller=d.access_caller, raw=True)
                imports.append(f)
            else:
                raise LinkError(f"missing import {imp.module}::{imp.name} ({imp.type})",
                                module=imp.module, name=imp.name, expected=imp.type)
        return Instance(store, module, imports)


class GenericLinker(Linker):
    """The :class:`Linker` of backends without a native one."""

    @classmethod
    def _create(cls, engine: Engine) -> GenericLinker:
        self = object.__new__(cls)
        self._setup(engine)
        return self
