"""WebAssembly type descriptions, shared by every backend.

These mirror the type objects of the WebAssembly C API (``wasm_valtype_t``,
``wasm_functype_t``, ``wasm_limits_t`` ...) as small immutable Python values.
They carry no runtime handle, so they can be compared, hashed, pickled and sent
to a worker process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Union

__all__ = [
    "ValType",
    "FuncType",
    "Limits",
    "MemoryType",
    "TableType",
    "GlobalType",
    "ExternType",
    "ImportType",
    "ExportType",
]


class ValType(enum.Enum):
    """A WebAssembly value type."""

    I32 = "i32"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    V128 = "v128"
    FUNCREF = "funcref"
    EXTERNREF = "externref"

    @property
    def is_num(self) -> bool:
        """True for the four number types."""
        return self in _NUM

    @property
    def is_ref(self) -> bool:
        """True for the reference types ``funcref`` and ``externref``."""
        return self is ValType.FUNCREF or self is ValType.EXTERNREF

    def __repr__(self) -> str:
        return f"ValType.{self.name}"

    def __str__(self) -> str:
        return self.value


_NUM = frozenset({ValType.I32, ValType.I64, ValType.F32, ValType.F64})


def _valtypes(items: Iterable[ValType | str]) -> tuple[ValType, ...]:
    return tuple(v if isinstance(v, ValType) else ValType(v) for v in items)


@dataclass(frozen=True, init=False)
class FuncType:
    """A function signature: parameter and result value types.

    >>> FuncType([ValType.I32, ValType.I32], [ValType.I32])
    FuncType((i32, i32) -> (i32))
    """

    params: tuple[ValType, ...]
    results: tuple[ValType, ...]

    def __init__(self, params: Iterable[ValType | str] = (), results: Iterable[ValType | str] = ()) -> None:
        object.__setattr__(self, "params", _valtypes(params))
        object.__setattr__(self, "results", _valtypes(results))

    def __repr__(self) -> str:
        p = ", ".join(v.value for v in self.params)
        r = ", ".join(v.value for v in self.results)
        return f"FuncType(({p}) -> ({r}))"


@dataclass(frozen=True)
class Limits:
    """Size limits of a memory (in 64 KiB pages) or a table (in elements)."""

    min: int
    max: int | None = None

    def __post_init__(self) -> None:
        if self.min < 0 or (self.max is not None and self.max < self.min):
            raise ValueError(f"invalid limits: min={self.min} max={self.max}")


@dataclass(frozen=True)
class MemoryType:
    """A linear memory type: page limits, and whether it is 64-bit or shared."""

    limits: Limits
    is_64: bool = False
    shared: bool = False


@dataclass(frozen=True)
class TableType:
    """A table type: element reference type and element-count limits."""

    element: ValType
    limits: Limits


@dataclass(frozen=True)
class GlobalType:
    """A global type: content value type and mutability."""

    content: ValType
    mutable: bool = False


ExternType = Union[FuncType, MemoryType, TableType, GlobalType]
"""The type of anything a module can import or export."""


@dataclass(frozen=True)
class ImportType:
    """One import of a module: ``module.name`` and its expected type."""

    module: str
    name: str
    type: ExternType


@dataclass(frozen=True)
class ExportType:
    """One export of a module: its name and type."""

    name: str
    type: ExternType
