"""The integer fast path of calls into wasm, shared by the in-process backends.

Proxy-Wasm exports and most host functions take up to six i32/i64 arguments
and return at most one. For those signatures a backend generates a
``Func.__call__`` with exactly that many parameters (no ``*args`` packing) that
hands the integers to its native shim as scalars. This module holds what is
the same for every backend: which signatures qualify, the out-of-range retry,
and one generated class per signature.

Generated code here and elsewhere (the backends' host-call adapters, the
Proxy-Wasm host-function guard) is compiled by :func:`compile_generated`: it
gets a descriptive file name and its source is registered in :mod:`linecache`,
so a traceback through it shows the generated lines. Each such trampoline is
kept because ``bench/test_trampolines.py`` measures it against its plain-Python
equivalent (``*args``) and it pays.
"""

from __future__ import annotations

import linecache
from typing import Any, Callable

from ._types import FuncType, ValType
from ._values import wrap_i32, wrap_i64

__all__ = ["compile_generated", "is_int_signature", "IntSignatureClasses", "IntFuncMixin"]

_INT = (ValType.I32, ValType.I64)
Signature = tuple[tuple[ValType, ...], "ValType | None"]


_CODE: dict[tuple[str, str], Any] = {}  # (description, source) -> code object
_NAMES: set[str] = set()  # the file names given so far


def compile_generated(source: str, what: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Run generated ``source`` in ``namespace`` (its globals) and return the namespace.

    The code is compiled once per (``what``, ``source``) under the file name
    ``<pwvm-generated WHAT>`` and its text registered in :mod:`linecache` under
    that name, so tracebacks and debuggers show the generated lines (a breakpoint
    in the function it calls still fires: nothing of that function is rewritten).
    """
    code = _CODE.get((what, source))
    if code is None:
        filename = f"<pwvm-generated {what}>"
        n = 1
        while filename in _NAMES:  # the same description for another text: keep both readable
            n += 1
            filename = f"<pwvm-generated {what} #{n}>"
        _NAMES.add(filename)
        code = _CODE[(what, source)] = compile(source, filename, "exec")
    # (size, mtime None, lines, name): an entry that ``linecache.checkcache`` keeps
    linecache.cache[code.co_filename] = (len(source), None, source.splitlines(True), code.co_filename)
    exec(code, namespace)  # noqa: S102 - the callers' fixed templates, filled with names and numbers only
    return namespace


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
            sig = FuncType(params, [result] if result else [])
            # generated from the backend's ``source`` template (its ``_int_call_source``), one per signature
            compile_generated(self._source(params, result), f"call trampoline ({self._base.__module__}) for {sig}", ns)
            suffix = result.value if result else "void"
            name = f"_IntFunc_{'_'.join(t.value for t in params) or 'none'}__{suffix}"
            cls = self._classes[key] = type(name, (self._base,), {"__slots__": (), "__call__": ns["__call__"],
                                                                  "__module__": self._base.__module__})
        return cls
