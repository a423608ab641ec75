"""Header maps and the Proxy-Wasm serialized-pairs format.

Serialized form (little endian): ``u32 count``, then ``count`` pairs of
``(u32 key_len, u32 value_len)``, then every key and every value, each
followed by a NUL byte. An empty map is ``size 0``, a single ``0x00`` byte, or
a zero count.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, Union, cast

from . import _build

__all__ = ["HeaderMap", "serialize_pairs", "parse_pairs", "PairsError", "MAX_PAIRS", "MAX_PAIRS_BYTES"]

MAX_PAIRS = 1024
"""Most pairs a serialized map from the guest may hold."""
MAX_PAIRS_BYTES = 1 << 20
"""Largest serialized map (bytes) accepted from the guest."""

_U32 = struct.Struct("<I")
_SSIZE_MAX = sys.maxsize
_EMPTY = b"\0\0\0\0"

HeadersLike = Union["HeaderMap", Mapping, Iterable, None]


class PairsError(ValueError):
    """A serialized map is malformed (``oversized`` tells the two failure kinds apart)."""

    def __init__(self, message: str, *, oversized: bool = False) -> None:
        super().__init__(message)
        self.oversized = oversized


def _b(x) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8", "surrogateescape")
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    return str(x).encode()


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# The codec's hot loops are C (``_pairs.c``, built into the wheel; a changed checkout builds it
# on first use): serializing ten headers took ~1.5 µs in Python, flattening them ~1 µs.
_ext = _build.load()
_fast_flatten = _ext.flatten
_parse = _ext.parse

#: Serialize a flat ``[k0, v0, k1, v1, ...]`` list of bytes (the C function itself: no Python
#: frame on the host's hot path). TypeError for an item that is not bytes, ValueError for an
#: odd length.
serialize_flat: Callable[[list], bytes] = _ext.serialize
#: The bytes of every name and value of a flat list (what the header-map bound counts), without
#: joining them.
flat_nbytes: Callable[[list], int] = _ext.nbytes


def serialize_pairs(pairs: HeadersLike) -> bytes:
    """Serialize ``(name, value)`` pairs (str or bytes) to the Proxy-Wasm map format."""
    if isinstance(pairs, HeaderMap):
        return pairs.serialize()
    return serialize_flat(_flatten(pairs, lower=False))


def parse_pairs(data: bytes, *, max_pairs: int = MAX_PAIRS, max_bytes: int = MAX_PAIRS_BYTES) -> list:
    """Parse a serialized map into a flat ``[k0, v0, ...]`` list of bytes.

    Raises :class:`PairsError` for malformed input (``oversized=True`` when the
    count or size is over the limits).
    """
    if data.__class__ is not bytes:
        data = bytes(data)
    got = _parse(data, min(max_pairs, _SSIZE_MAX), min(max_bytes, _SSIZE_MAX))
    if got.__class__ is list:
        return got
    size = len(data)
    if got == 1:
        raise PairsError(f"serialized map of {size} bytes exceeds {max_bytes}", oversized=True)
    if got == 2:
        raise PairsError(f"serialized map of {size} bytes is too short")
    n = _U32.unpack_from(data, 0)[0]
    if got == 3:
        raise PairsError(f"serialized map has {n} pairs (limit {max_pairs})", oversized=True)
    if got == 4:
        raise PairsError(f"serialized map claims {n} pairs but has only {size} bytes")
    raise PairsError("serialized map entry runs past its end")


_NAMES: dict = {}
_RAW_NAMES: dict = {}


def _flatten(headers: HeadersLike, *, lower: bool = True, fast: bool = True) -> list:
    """``headers`` as a flat list of bytes (names lower-cased when ``lower``); ``fast=False``: the
    caller already tried the C fast path on them."""
    cls = headers.__class__
    if cls is list or cls is tuple:  # the common case first: pairs, as a proxy passes them
        is_map = False
        items: Iterable[Any] = cast(Iterable, headers)
    else:
        if headers is None:
            return []
        if isinstance(headers, HeaderMap):  # subclasses too: iterating one gives names, not pairs
            copy = list(headers._flat)
            if lower and headers._keep:
                copy[::2] = [k.lower() for k in copy[::2]]
            return copy
        is_map = cls is dict or isinstance(headers, Mapping)
        items = cast(Mapping, headers).items() if is_map else headers
    flat: list = []
    append = flat.append
    names = _NAMES if lower else _RAW_NAMES
    if fast and (is_map or cls is list or cls is tuple):
        # Fast path (C): exact ``(str, str)`` tuples (or a dict of str) whose names were seen
        # before (``names`` holds their bytes), values that encode as UTF-8. Anything else gives
        # None and the general loop below does the whole of it: same result, same errors.
        done = _fast_flatten(headers if cls is list or cls is tuple or cls is dict else list(items), names)
        if done is not None:
            return done
    for k, v in items:
        kb = names.get(k)
        if kb is None:
            kb = _b(k)
            if lower:
                kb = kb.lower()
            if len(names) < 4096 and k.__class__ is str:
                names[k] = kb
        k = kb
        if v.__class__ is str:
            try:
                append(k)
                append(v.encode())
                continue
            except UnicodeEncodeError:
                flat.pop()
        if is_map and isinstance(v, (list, tuple)):
            for one in v:
                append(k)
                append(_b(one))
            continue
        append(k)
        append(v if v.__class__ is bytes else _b(v))
    return flat


def host_map(headers: HeadersLike, preserve_case: bool) -> HeaderMap:
    """``headers`` as a host holds them: a :class:`HeaderMap` as given (it keeps its own
    case mode, and stays the caller's object), anything else built in the host's mode."""
    if isinstance(headers, HeaderMap):
        return headers
    return HeaderMap._from_flat(_flatten(headers, lower=not preserve_case), preserve_case)


class HeaderMap:
    """An ordered, case-insensitive multimap of HTTP header (or trailer, or gRPC metadata) fields.

    Names are stored lower-cased, as Envoy does: HTTP/2 and HTTP/3 require lower-case
    names (RFC 9113 8.2.1, RFC 9114 4.2), and Envoy's HTTP/1 codec lower-cases them too
    ("When handling HTTP/1.1, Envoy will normalize the header keys to be all lowercase";
    its ``Http1ProtocolOptions.header_key_format`` formatters only change how names are
    written out again: envoyproxy.io, configuration/http/http_conn_man/header_casing), so a
    plugin in Envoy never sees an upper-case name. ``preserve_case=True`` keeps names as given instead (for
    hosts that preserve case); lookups still match any case. Values are kept byte for
    byte. ``str`` accessors decode UTF-8 (undecodable bytes round-trip through
    ``surrogateescape``); ``*_bytes`` accessors give the raw bytes.

    >>> h = HeaderMap({":method": "GET", "X-Id": "7"})
    >>> h["x-id"], "X-ID" in h, len(h), h.keys()
    ('7', True, 2, [':method', 'x-id'])
    >>> HeaderMap({"X-Id": "7"}, preserve_case=True).items()
    [('X-Id', '7')]
    """

    __slots__ = ("_flat", "_ser", "_keep")

    def __init__(self, headers: HeadersLike = None, *, preserve_case: bool = False) -> None:
        keep = bool(preserve_case)
        if keep and isinstance(headers, HeaderMap):
            flat = list(headers._flat)
        else:
            flat = _flatten(headers, lower=not keep)
        self._flat: list = flat
        self._ser: bytes | None = None
        self._keep = keep

    @classmethod
    def _from_flat(cls, flat: list, keep: bool = False) -> HeaderMap:
        m = object.__new__(cls)
        m._flat = flat
        m._ser = None
        m._keep = keep
        return m

    @property
    def preserve_case(self) -> bool:
        """Whether names keep the case they were given (``False``: lower-cased, as Envoy)."""
        return self._keep

    def _name(self, name: str | bytes) -> bytes:
        """``name`` as this map stores it."""
        return _b(name) if self._keep else _b(name).lower()

    def _where(self, name: str | bytes) -> list:
        """Indexes (in ``_flat``) of the fields called ``name``, in any case."""
        key = _b(name).lower()
        flat = self._flat
        if self._keep:
            return [i for i in range(0, len(flat), 2) if flat[i].lower() == key]
        return [i for i in range(0, len(flat), 2) if flat[i] == key]

    # -- serialized form ----------------------------------------------------------
    def serialize(self) -> bytes:
        """This map in the Proxy-Wasm serialized-pairs format."""
        s = self._ser
        if s is None:
            s = self._ser = serialize_flat(self._flat)
        return s

    # -- byte-level operations (used by the host functions) ---------------------
    def get_bytes(self, name: str | bytes) -> bytes | None:
        """The first value of ``name`` (any case) as bytes, or ``None``."""
        flat = self._flat
        if self._keep:
            where = self._where(name)
            return flat[where[0] + 1] if where else None
        key = _b(name).lower()
        try:
            return flat[2 * flat[::2].index(key) + 1]  # C-speed scan of the names
        except ValueError:
            return None

    def get_all_bytes(self, name: str | bytes) -> list:
        """Every value of ``name`` (any case) as bytes, in order."""
        flat = self._flat
        return [flat[i + 1] for i in self._where(name)]

    def add(self, name: str | bytes, value: str | bytes) -> None:
        """Append a field (keeps existing fields of the same name)."""
        self._flat += (self._name(name), _b(value))
        self._ser = None

    def replace(self, name: str | bytes, value: str | bytes) -> None:
        """Set ``name`` to ``value``: the first field keeps its place (and, preserving case, its
        name's case), later duplicates go; adds when missing."""
        value = _b(value)
        flat = self._flat
        where = self._where(name)
        if where:
            flat[where[0] + 1] = value
            for i in reversed(where[1:]):
                del flat[i:i + 2]
        else:
            flat.append(self._name(name))
            flat.append(value)
        self._ser = None

    def remove(self, name: str | bytes) -> None:
        """Remove every field called ``name`` (any case; no error when there is none)."""
        where = self._where(name)
        if not where:
            return
        gone = set(where)
        flat = self._flat
        self._flat = [x for i in range(0, len(flat), 2) if i not in gone for x in (flat[i], flat[i + 1])]
        self._ser = None

    def set_flat(self, flat: list) -> None:
        """Replace every field with ``flat`` (``[k0, v0, ...]`` bytes); names are lower-cased
        unless this map preserves case."""
        if not self._keep:
            for i in range(0, len(flat), 2):
                flat[i] = flat[i].lower()
        self._flat = flat
        self._ser = None

    def byte_size(self) -> int:
        """Bytes of all names and values (a rough wire size)."""
        return flat_nbytes(self._flat)

    # -- Python conveniences ----------------------------------------------------------
    def __getitem__(self, name: str) -> str:
        v = self.get_bytes(name)
        if v is None:
            raise KeyError(name)
        return _s(v)

    def __setitem__(self, name: str, value: str) -> None:
        self.replace(name, value)

    def __delitem__(self, name: str) -> None:
        if self.get_bytes(name) is None:
            raise KeyError(name)
        self.remove(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        return self.get_bytes(name) is not None

    def get(self, name: str, default=None):
        """The first value of ``name`` as ``str``, or ``default``."""
        v = self.get_bytes(name)
        return default if v is None else _s(v)

    def get_all(self, name: str) -> list:
        """Every value of ``name`` as ``str``, in order."""
        return [_s(v) for v in self.get_all_bytes(name)]

    def items(self) -> list:
        """Every field as ``(name, value)`` strings, in order (duplicates included)."""
        f = self._flat
        return [(_s(f[i]), _s(f[i + 1])) for i in range(0, len(f), 2)]

    def keys(self) -> list:
        """Field names in order (duplicates included)."""
        return [_s(k) for k in self._flat[::2]]

    def raw_items(self) -> list:
        """Every field as ``(name, value)`` bytes, in order."""
        f = self._flat
        return [(f[i], f[i + 1]) for i in range(0, len(f), 2)]

    def to_dict(self) -> dict:
        """A ``{name: value}`` dict (later duplicates joined with ``", "``)."""
        out: dict = {}
        for k, v in self.items():
            out[k] = f"{out[k]}, {v}" if k in out else v
        return out

    def copy(self) -> HeaderMap:
        """An independent copy (preserving case if this map does)."""
        return HeaderMap._from_flat(list(self._flat), self._keep)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._flat) >> 1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderMap):
            return self._flat == other._flat
        if isinstance(other, (Mapping, list, tuple)):
            try:
                return self._flat == _flatten(other, lower=not self._keep)
            except (TypeError, ValueError):
                return False
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._keep:
            return f"HeaderMap({self.items()!r}, preserve_case=True)"
        return f"HeaderMap({self.items()!r})"
