"""Functions: exported wasm functions and host functions written in Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ._contract import AbstractCaller, AbstractFunc
from ._types import FuncType

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Func", "Caller"]


class Func(AbstractFunc):
    """A WebAssembly function: an instance export, or a host function.

    ``Func(store, ty, fn)`` wraps a Python callable as a host function of type
    ``ty``. It is called with the wasm arguments as Python values (i32/i64 as
    ``int``, f32/f64 as ``float``) and returns ``None``, one value, or a tuple
    for several results. With ``access_caller=True`` it receives a
    :class:`Caller` first, which reaches the calling instance's memory.

    Calling a ``Func`` from Python runs it; a trap raises :class:`Trap` and an
    exception raised by a host function along the way is re-raised unchanged.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractFunc`.
    """

    def __new__(cls, store: Store, ty: FuncType, fn: Callable[..., Any], *, access_caller: bool = False) -> Func:
        if cls is not Func:
            return super().__new__(cls)
        if not isinstance(ty, FuncType):
            raise TypeError(f"expected a FuncType, got {type(ty).__name__}")
        if not callable(fn):
            raise TypeError("host function must be callable")
        return store._func_new(ty, fn, access_caller)

    def __repr__(self) -> str:
        return f"<Func {self.type}>"


class Caller(AbstractCaller):
    """What a host function (``access_caller=True``) knows about its caller.

    Valid only while the host function runs. A backend subclasses it and implements
    :class:`~proxywasm_vm._contract.AbstractCaller`.
    """

    __slots__ = ()
