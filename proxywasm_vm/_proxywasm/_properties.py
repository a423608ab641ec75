"""Properties (``proxy_get_property`` / ``proxy_set_property``).

A path from the guest is a list of segments separated by NUL bytes, with or
without a trailing NUL; it is looked up as the dotted name ``"a.b.c"``. Values
are encoded the way Envoy encodes them: strings and bytes raw, integers as
8-byte little-endian, booleans as one byte, floats as 8-byte doubles, maps
of headers as serialized pairs.

Lookup order: values the plugin set on the effective context, the stream's
properties (given by the embedder), the plugin's properties, the host's
properties, then the well-known attributes computed from the stream.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Mapping
from typing import Any

from ._pairs import HeaderMap, serialize_pairs

__all__ = ["encode_property", "normalize_path", "flatten_properties"]

_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


def normalize_path(raw: bytes) -> str:
    """``b"request\\0path\\0"`` -> ``"request.path"``."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.replace(b"\0", b".").decode("utf-8", "surrogateescape")


def encode_property(v: Any) -> bytes | None:
    """The bytes a plugin receives for the Python value ``v`` (``None``: not found)."""
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    if isinstance(v, bool):
        return b"\x01" if v else b"\x00"
    if isinstance(v, int):
        return _I64.pack(((v + (1 << 63)) % (1 << 64)) - (1 << 63))
    if isinstance(v, float):
        return _F64.pack(v)
    if isinstance(v, datetime.datetime):
        return _I64.pack(int(v.timestamp() * 1e9))
    if isinstance(v, datetime.timedelta):
        return _I64.pack(int(v.total_seconds() * 1e9))
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, HeaderMap):
        return v.serialize()
    if isinstance(v, Mapping) or isinstance(v, (list, tuple)):
        return serialize_pairs(v)
    return str(v).encode()


def flatten_properties(props: Mapping[str, Any] | None) -> dict[str, bytes]:
    """Nested ``{"a": {"b": 1}}`` and dotted ``{"a.b": 1}`` both become ``{"a.b": <bytes>}``.

    A nested mapping is also reachable as a whole (``"a"``, as serialized pairs).
    """
    out: dict[str, bytes] = {}
    if not props:
        return out

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and not isinstance(value, HeaderMap):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
            if prefix:
                flat = {k: v for k, v in value.items() if not isinstance(v, Mapping)}
                out.setdefault(prefix, serialize_pairs({k: (v if isinstance(v, (str, bytes)) else str(v))
                                                        for k, v in flat.items()}))
            return
        enc = encode_property(value)
        if enc is not None:
            out[prefix] = enc

    walk("", props)
    return out
