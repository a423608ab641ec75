"""Tables of references."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._types import TableType

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Table"]


class Table:
    """A table of references (``funcref`` or ``externref``)."""

    store: Store
    type: TableType

    def __new__(cls, store: Store, ty: TableType, init: Any = None) -> Table:
        if cls is not Table:
            return super().__new__(cls)
        if not isinstance(ty, TableType):
            raise TypeError(f"expected a TableType, got {type(ty).__name__}")
        return store._table_new(ty, init)

    @property
    def size(self) -> int:
        """Number of elements."""
        raise NotImplementedError
    def get(self, index: int) -> Any:
        """The element at ``index`` (a :class:`Func`, an external object, or ``None``)."""
        raise NotImplementedError
    def set(self, index: int, value: Any) -> None:
        """Store ``value`` at ``index``."""
        raise NotImplementedError
    def grow(self, delta: int, init: Any = None) -> int:
        """Add ``delta`` elements set to ``init``; returns the previous size."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Table {self.type.element} size={self.size}>"
