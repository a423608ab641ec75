"""Tables of references."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._contract import AbstractTable
from ._types import TableType

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Table"]


class Table(AbstractTable):
    """A table of references (``funcref`` or ``externref``).

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractTable`.
    """

    def __new__(cls, store: Store, ty: TableType, init: Any = None) -> Table:
        if cls is not Table:
            return super().__new__(cls)
        if not isinstance(ty, TableType):
            raise TypeError(f"expected a TableType, got {type(ty).__name__}")
        return store._table_new(ty, init)

    def __repr__(self) -> str:
        return f"<Table {self.type.element} size={self.size}>"
