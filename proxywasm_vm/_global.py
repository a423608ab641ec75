"""Globals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._contract import AbstractGlobal
from ._types import GlobalType

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Global"]


class Global(AbstractGlobal):
    """A global variable. ``value`` reads it; assigning ``value`` sets a mutable one.

    ``Global(store, ty, value)`` makes one; ``value`` (and anything set) may be raw
    (:class:`F32Bits`, :class:`F64Bits`, :class:`V128`) and is then kept bit for bit.
    ``get(raw=True)`` reads f32/f64 as bits and v128 as :class:`V128`.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractGlobal`.
    """

    def __new__(cls, store: Store, ty: GlobalType, value: Any) -> Global:
        if cls is not Global:
            return super().__new__(cls)
        if not isinstance(ty, GlobalType):
            raise TypeError(f"expected a GlobalType, got {type(ty).__name__}")
        return store._global_new(ty, value)

    @property
    def value(self) -> Any:
        """The current value."""
        return self.get()

    @value.setter
    def value(self, v: Any) -> None:
        self.set(v)

    def __repr__(self) -> str:
        return f"<Global {self.type.content}{' mut' if self.type.mutable else ''} = {self.get()!r}>"
