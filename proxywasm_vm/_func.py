"""Functions: exported wasm functions and host functions written in Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ._contract import AbstractCaller, AbstractFunc
from ._types import FuncType, ValType
from ._values import cooked_value

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Func", "Caller"]


class Func(AbstractFunc):
    """A WebAssembly function: an instance export, or a host function.

    ``Func(store, ty, fn)`` wraps a Python callable as a host function of type
    ``ty``. It is called with the wasm arguments as Python values (i32/i64 as
    ``int``, f32/f64 as ``float``, v128 as an unsigned 128-bit ``int``) and
    returns ``None``, one value, or a tuple for several results. With
    ``access_caller=True`` it receives a :class:`Caller` first, which reaches the
    calling instance's memory. With ``raw=True`` it receives f32/f64 arguments as
    :class:`F32Bits`/:class:`F64Bits` and v128 ones as :class:`V128`, bit for bit
    (NaN payloads and signalling NaNs included). Its results may always be given raw.

    Calling a ``Func`` from Python runs it; a trap raises :class:`Trap` and an
    exception raised by a host function along the way is re-raised unchanged.
    :meth:`call` with ``raw=True`` returns f32/f64/v128 results raw.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractFunc`.
    """

    def __new__(cls, store: Store, ty: FuncType, fn: Callable[..., Any], *, access_caller: bool = False,
                raw: bool = False) -> Func:
        if cls is not Func:
            return super().__new__(cls)
        if not isinstance(ty, FuncType):
            raise TypeError(f"expected a FuncType, got {type(ty).__name__}")
        if not callable(fn):
            raise TypeError("host function must be callable")
        return store._func_new(ty, cooking_if_needed(fn, ty, access_caller, raw), access_caller)

    def call(self, *args: Any, raw: bool = False) -> Any:
        """Call the function, like ``func(*args)``; with ``raw=True`` f32/f64 results come back as
        :class:`F32Bits`/:class:`F64Bits` and v128 results as :class:`V128`, bit for bit."""
        return self._call_raw(args) if raw else self(*args)

    def __repr__(self) -> str:
        return f"<Func {self.type}>"


#: parameter types a backend hands to host functions in raw form (see AbstractStore._func_new)
_RAW_PARAMS = frozenset({ValType.F32, ValType.F64, ValType.V128})


def cooking_if_needed(fn: Callable[..., Any], ty: FuncType, access_caller: bool, raw: bool) -> Callable[..., Any]:
    """``fn`` as a backend calls host functions (raw f32/f64/v128 arguments): itself when it asked
    for raw values or has no such parameter, else wrapped to receive floats and plain ints."""
    if raw or not any(t in _RAW_PARAMS for t in ty.params):
        return fn
    if access_caller:
        def with_caller(caller: Any, *args: Any) -> Any:
            return fn(caller, *[cooked_value(a) for a in args])
        return with_caller

    def plain(*args: Any) -> Any:
        return fn(*[cooked_value(a) for a in args])
    return plain


class Caller(AbstractCaller):
    """What a host function (``access_caller=True``) knows about its caller.

    Valid only while the host function runs. A backend subclasses it and implements
    :class:`~proxywasm_vm._contract.AbstractCaller`.
    """

    __slots__ = ()
