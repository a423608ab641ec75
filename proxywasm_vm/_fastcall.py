"""The integer fast path of calls into wasm, shared by the in-process backends.

Proxy-Wasm exports and most host functions take up to six i32/i64 arguments
and return at most one. For those signatures a backend generates a
``Func.__call__`` with exactly that many parameters (no ``*args`` packing) that
hands the integers to its native shim as scalars. This module holds what is
the same for every backend: which signatures qualify, the out-of-range retry,
and one generated class per signature.
"""

from __future__ import annotations

from typing import Any, Callable

from ._types import FuncType, ValType
from ._values import wrap_i32, wrap_i64

__all__ = ["is_int_signature", "IntSignatureClasses", "IntFuncMixin"]

_INT = (ValType.I32, ValType.I64)
Signature = tuple[tuple[ValType, ...], "ValType | None"]


def is_int_signature(ty: FuncType) -> bool:
    """True when ``ty`` has at most six integer params and at most one integer result."""
    return len(ty.params) <= 6 and len(ty.results) <= 1 and all(t in _INT for t in ty.params + ty.results)


class IntFuncMixin:
    """For generated classes: a call whose integers overflow the shim's int64 is retried wrapped."""

    __slots__ = ()
    type: FuncType

    def _slow(self, *args: Any) -> Any:
        """Out-of-range integers (u64 above 2**63-1, say): wrap them to the same bits, then call."""
        wrapped = [wrap_i32(a) if t is ValType.I32 else wrap_i64(a) for t, a in zip(self.type.params, args)]
        return type(self).__call__(self, *wrapped)  # type: ignore[operator]


class IntSignatureClasses:
    """One subclass of ``base`` per integer signature, made on first use.

    ``source(params, result)`` returns the text of a ``__call__`` function,
    compiled with ``namespace`` as its globals (or ``namespace(params, result)``
    when the globals depend on the signature, e.g. one native entry per arity).
    """

    def __init__(self, base: type, source: Callable[[tuple[ValType, ...], ValType | None], str],
                 namespace: dict[str, Any] | Callable[[tuple[ValType, ...], ValType | None], dict[str, Any]]
                 ) -> None:
        self._base = base
        self._source = source
        self._namespace = namespace
        self._classes: dict[Signature, type] = {}

    def for_type(self, ty: FuncType) -> type:
        """The class for ``ty`` (which must pass :func:`is_int_signature`)."""
        key = (ty.params, ty.results[0] if ty.results else None)
        cls = self._classes.get(key)
        if cls is None:
            params, result = key
            ns = dict(self._namespace(params, result) if callable(self._namespace) else self._namespace)
            exec(self._source(params, result), ns)  # noqa: S102 - generated from the backend's fixed template
            suffix = result.value if result else "void"
            name = f"_IntFunc_{'_'.join(t.value for t in params) or 'none'}__{suffix}"
            cls = self._classes[key] = type(name, (self._base,), {"__slots__": (), "__call__": ns["__call__"]})
        return cls
