"""Instances: a module instantiated in a store with its imports resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, Union

from ._contract import AbstractInstance
from ._errors import LinkError
from ._types import FuncType, GlobalType, MemoryType, TableType

if TYPE_CHECKING:
    from ._func import Func
    from ._global import Global
    from ._memory import Memory
    from ._module import Module
    from ._store import Store
    from ._table import Table

    Extern = Union[Func, Memory, Global, Table]

__all__ = ["Instance", "Exports", "ImportMap"]

ImportMap = Union["Sequence[Extern]", "Mapping[str, Mapping[str, Extern]]"]


def _kind(ty: object) -> str:
    return {FuncType: "function", MemoryType: "memory", TableType: "table", GlobalType: "global"}.get(type(ty), "?")


def resolve_imports(module: Module, imports: Any) -> list[Extern]:
    """Order ``imports`` as the module declares them and check their kinds and function types.

    Raises :class:`LinkError` naming the first missing or mistyped import.
    """
    from ._func import Func
    from ._global import Global
    from ._memory import Memory
    from ._table import Table

    wanted = module.imports
    if imports is None:
        imports = {}
    if isinstance(imports, Mapping):
        externs: list[Any] = []
        for imp in wanted:
            ns = imports.get(imp.module)
            item = ns.get(imp.name) if ns is not None else None
            if item is None:
                raise LinkError(f"missing import {imp.module}::{imp.name} ({_kind(imp.type)} {imp.type})",
                                module=imp.module, name=imp.name, expected=imp.type)
            externs.append(item)
    else:
        externs = list(imports)
        if len(externs) != len(wanted):
            missing = wanted[len(externs)] if len(externs) < len(wanted) else None
            detail = f"; first missing: {missing.module}::{missing.name}" if missing else ""
            raise LinkError(f"module needs {len(wanted)} imports, {len(externs)} given{detail}",
                            module=missing.module if missing else None, name=missing.name if missing else None)
    classes = {FuncType: Func, MemoryType: Memory, TableType: Table, GlobalType: Global}
    for imp, item in zip(wanted, externs):
        cls = classes[type(imp.type)]
        if not isinstance(item, cls):
            raise LinkError(f"import {imp.module}::{imp.name} must be a {_kind(imp.type)}, got {type(item).__name__}",
                            module=imp.module, name=imp.name, expected=imp.type, actual=item)
        actual = getattr(item, "type", None)
        # Functions and globals must match exactly; memory and table limits are
        # checked by the runtime, which knows the subtyping rules.
        if isinstance(imp.type, (FuncType, GlobalType)) and actual != imp.type:
            raise LinkError(f"import {imp.module}::{imp.name} has type {actual}, the module expects {imp.type}",
                            module=imp.module, name=imp.name, expected=imp.type, actual=actual)
    return externs


class Exports(Mapping[str, "Extern"]):
    """The exports of an instance, by name, in declaration order."""

    __slots__ = ("_instance", "_names", "_cache")

    def __init__(self, instance: Instance, names: Sequence[str]) -> None:
        self._instance = instance
        self._names = list(names)
        self._cache: dict[str, Extern] = {}

    def __getitem__(self, name: str) -> Extern:
        try:
            return self._cache[name]
        except KeyError:
            pass
        if name not in self._names:
            raise KeyError(f"no export named {name!r}")
        item = self._instance._export(name)
        self._cache[name] = item
        return item

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<Exports {self._names}>"

    def _typed(self, name: str, cls: type, kind: str) -> Any:
        item = self[name]
        if not isinstance(item, cls):
            raise TypeError(f"export {name!r} is a {type(item).__name__}, not a {kind}")
        return item

    def func(self, name: str) -> Func:
        """The exported function ``name`` (``TypeError`` if it is something else)."""
        from ._func import Func

        return self._typed(name, Func, "function")

    def memory(self, name: str = "memory") -> Memory:
        """The exported memory ``name`` (``TypeError`` if it is something else)."""
        from ._memory import Memory

        return self._typed(name, Memory, "memory")

    def global_(self, name: str) -> Global:
        """The exported global ``name`` (``TypeError`` if it is something else)."""
        from ._global import Global

        return self._typed(name, Global, "global")

    def table(self, name: str) -> Table:
        """The exported table ``name`` (``TypeError`` if it is something else)."""
        from ._table import Table

        return self._typed(name, Table, "table")


class Instance(AbstractInstance):
    """A module instantiated in a store.

    ``imports`` is either a mapping ``{"module": {"name": extern}}`` or a
    sequence of externs in the module's import order. A missing or mistyped
    import raises :class:`LinkError`; a trap in the start function raises
    :class:`Trap`.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractInstance`.
    """

    def __new__(cls, store: Store, module: Module, imports: ImportMap | None = None) -> Instance:
        if cls is not Instance:
            return super().__new__(cls)
        if module.engine is not store.engine:
            raise ValueError("module and store belong to different engines")
        return store._instantiate(module, resolve_imports(module, imports))

    @property
    def exports(self) -> Exports:
        """The instance's exports by name."""
        ex = self.__dict__.get("_exports")
        if ex is None:
            ex = self.__dict__["_exports"] = Exports(self, [e.name for e in self.module.exports])
        return ex

    def __repr__(self) -> str:
        return f"<Instance of {self.module!r}>"
