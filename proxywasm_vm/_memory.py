"""Linear memories."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ._contract import AbstractMemory
from ._types import MemoryType

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Memory", "PAGE_SIZE"]

PAGE_SIZE = 65536
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Memory(AbstractMemory):
    """A linear memory: bytes addressed from 0 to :attr:`data_size` - 1.

    Reads and writes are bounds-checked: an out-of-range access raises
    :class:`IndexError` and never touches the host's memory. :meth:`view` gives a
    zero-copy ``memoryview`` that is invalid after the memory grows.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractMemory`.
    """

    def __new__(cls, store: Store, ty: MemoryType) -> Memory:
        if cls is not Memory:
            return super().__new__(cls)
        if not isinstance(ty, MemoryType):
            raise TypeError(f"expected a MemoryType, got {type(ty).__name__}")
        return store._memory_new(ty)

    def read_u32(self, offset: int) -> int:
        """The little-endian u32 at ``offset``."""
        return _U32.unpack(self.read(offset, 4))[0]

    def write_u32(self, offset: int, value: int) -> None:
        """Store ``value`` as a little-endian u32 at ``offset``."""
        self.write(offset, _U32.pack(value & 0xFFFFFFFF))

    def read_u64(self, offset: int) -> int:
        """The little-endian u64 at ``offset``."""
        return _U64.unpack(self.read(offset, 8))[0]

    def write_u64(self, offset: int, value: int) -> None:
        """Store ``value`` as a little-endian u64 at ``offset``."""
        self.write(offset, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))

    def __repr__(self) -> str:
        return f"<Memory {self.size} pages>"


def check_range(offset: int, length: int, size: int) -> None:
    """Raise IndexError unless ``[offset, offset+length)`` lies within ``size`` bytes."""
    if offset < 0 or length < 0 or offset + length > size:
        raise IndexError(f"memory access out of bounds: offset {offset} length {length} (memory is {size} bytes)")
