"""Globals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._types import GlobalType

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Global"]


class Global:
    """A global variable. ``value`` reads it; assigning ``value`` sets a mutable one."""

    store: Store
    type: GlobalType

    def __new__(cls, store: Store, ty: GlobalType, value: Any) -> Global:
        if cls is not Global:
            return super().__new__(cls)
        if not isinstance(ty, GlobalType):
            raise TypeError(f"expected a GlobalType, got {type(ty).__name__}")
        return store._global_new(ty, value)
    def get(self) -> Any:
        """The current value."""
        raise NotImplementedError
    def set(self, value: Any) -> None:
        """Set the value; :class:`AttributeError`-free but raises ``TypeError`` if immutable."""
        raise NotImplementedError

    @property
    def value(self) -> Any:
        """The current value."""
        return self.get()

    @value.setter
    def value(self, v: Any) -> None:
        self.set(v)

    def __repr__(self) -> str:
        return f"<Global {self.type.content}{' mut' if self.type.mutable else ''} = {self.get()!r}>"
