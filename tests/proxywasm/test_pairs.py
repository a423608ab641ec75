"""Header maps and the serialized-pairs format (no runtime involved)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxywasm_vm import HeaderMap, parse_pairs, serialize_pairs
from proxywasm_vm._proxywasm._pairs import MAX_PAIRS, PairsError


def test_serialize_matches_the_documented_layout():
    data = serialize_pairs([("a", "1"), ("b", "22")])
    assert data == struct.pack("<5I", 2, 1, 1, 1, 2) + b"a\x001\x00b\x0022\x00"


def test_empty_forms():
    assert parse_pairs(b"") == []
    assert parse_pairs(b"\x00") == []
    assert parse_pairs(b"\x00\x00\x00\x00") == []
    assert HeaderMap().serialize() == b"\x00\x00\x00\x00"


@pytest.mark.parametrize("data", [
    b"\x01\x00",                                              # too short
    struct.pack("<I", 2) + struct.pack("<2I", 1, 1) + b"a\0b\0",  # 2 pairs announced, 1 present
    struct.pack("<3I", 1, 0xFFFFFFF0, 1) + b"a\0b\0",           # key length past the end
    struct.pack("<3I", 1, 1, 1) + b"ab",                        # no NUL separators
])
def test_malformed_maps_raise(data):
    with pytest.raises(PairsError) as e:
        parse_pairs(data)
    assert not e.value.oversized


def test_oversized_maps_are_flagged():
    with pytest.raises(PairsError) as e:
        parse_pairs(struct.pack("<I", MAX_PAIRS + 1) + b"\0" * 64)
    assert e.value.oversized
    with pytest.raises(PairsError) as e:
        parse_pairs(b"\0" * ((1 << 20) + 1))
    assert e.value.oversized


def test_header_map_semantics():
    h = HeaderMap([("X-A", "1"), ("x-b", "2"), ("x-a", "3")])
    assert h["x-a"] == "1" and h.get_all("X-A") == ["1", "3"]
    assert "X-B" in h and "nope" not in h and len(h) == 3
    h.replace("x-a", "9")  # first keeps its place, duplicates go
    assert h.items() == [("x-a", "9"), ("x-b", "2")]
    h.replace("x-new", "n")  # replacing a missing header adds it
    assert h.keys() == ["x-a", "x-b", "x-new"]
    h.remove("X-B")
    h.remove("absent")
    assert h == [("x-a", "9"), ("x-new", "n")]
    assert h == {"X-A": "9", "x-new": "n"}
    assert h.to_dict() == {"x-a": "9", "x-new": "n"}
    h["x-a"] = "10"
    del h["x-new"]
    assert h.raw_items() == [(b"x-a", b"10")]
    with pytest.raises(KeyError):
        h["x-new"]


def test_bytes_round_trip_unchanged():
    h = HeaderMap([(b"k", b"\xff\x00\x01")])
    assert h.get_bytes("k") == b"\xff\x00\x01"
    assert HeaderMap._from_flat(parse_pairs(h.serialize())) == h


_text = st.binary(max_size=40).filter(lambda b: b"\0" not in b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_text, st.binary(max_size=60)), max_size=30))
def test_round_trip(pairs):
    flat = [x for kv in pairs for x in kv]
    assert parse_pairs(serialize_pairs(pairs)) == flat


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_crashes(data):
    try:
        flat = parse_pairs(data)
    except PairsError:
        return
    assert len(flat) % 2 == 0


# ---- the C codec (_pairs.c) against the format and against the general Python loop ----------------

def _reference_serialize(flat):
    """The format as the Proxy-Wasm spec writes it, spelled out."""
    out = struct.pack("<I", len(flat) // 2) + b"".join(struct.pack("<I", len(x)) for x in flat)
    return out + b"".join(x + b"\0" for x in flat)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=40).map(lambda xs: xs[: len(xs) & ~1]))
def test_serialize_flat_writes_the_format(flat):  # NULs inside names and values included
    from proxywasm_vm._proxywasm._pairs import serialize_flat

    expected = _reference_serialize(flat) if flat else b"\0\0\0\0"
    assert serialize_flat(flat) == expected
    assert parse_pairs(expected) == flat
    assert parse_pairs(bytearray(expected)) == flat and parse_pairs(memoryview(expected)) == flat


def test_serialize_flat_refuses_what_is_not_a_flat_list_of_bytes():
    from proxywasm_vm._proxywasm._pairs import serialize_flat

    with pytest.raises(TypeError):
        serialize_flat([b"k", "v"])
    with pytest.raises(TypeError):
        serialize_flat((b"k", b"v"))
    with pytest.raises(ValueError):
        serialize_flat([b"k"])


def _reference_parse(data, max_pairs, max_bytes):
    """What a serialized map says, read field by field: a flat list, or (oversized,) on error."""
    size = len(data)
    if size == 0 or data == b"\0":
        return []
    if size > max_bytes:
        return (True,)
    if size < 4:
        return (False,)
    n = struct.unpack_from("<I", data)[0]
    if n > max_pairs:
        return (True,)
    if 4 + 8 * n > size:
        return (False,)
    off, flat = 4 + 8 * n, []
    for i in range(2 * n):
        ln = struct.unpack_from("<I", data, 4 + 4 * i)[0]
        if off + ln >= size:
            return (False,)
        flat.append(data[off:off + ln])
        off += ln + 1
    return flat


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=120),
                 st.lists(st.binary(max_size=12), max_size=8).map(lambda xs: _reference_serialize(xs[: len(xs) & ~1]))
                 .flatmap(lambda d: st.tuples(st.just(d), st.integers(0, max(len(d) - 1, 0)), st.integers(0, 255))
                          .map(lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:] if t[0] else t[0]))),
       st.integers(0, 10), st.integers(0, 200))
def test_parse_agrees_with_the_format_read_field_by_field(data, max_pairs, max_bytes):
    expected = _reference_parse(data, max_pairs, max_bytes)
    try:
        got = parse_pairs(data, max_pairs=max_pairs, max_bytes=max_bytes)
    except PairsError as e:
        assert expected == (e.oversized,), (data, str(e))
    else:
        assert got == expected


_header_text = st.one_of(st.sampled_from([":path", "X-Id", "content-type", "x-id", "A"]), st.text(max_size=8))
_header_value = st.one_of(st.text(max_size=8), st.binary(max_size=6), st.integers(-5, 5),
                          st.sampled_from(["\udcff", "é", ""]), st.lists(st.text(max_size=3), max_size=2))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_header_text, _header_value), max_size=12), st.booleans(), st.booleans())
def test_the_fast_flatten_gives_what_the_general_loop_gives(pairs, lower, as_tuple):
    # _flatten takes lists, tuples and dicts through the C fast path; an iterator of the same pairs
    # goes through the Python loop alone. Same flat list, or the same error, whatever the input.
    from proxywasm_vm._proxywasm._pairs import _flatten

    given_ = tuple(pairs) if as_tuple else pairs

    def both(x, y):
        try:
            a = _flatten(x, lower=lower)
        except Exception as e:  # noqa: BLE001 - compared below
            a = type(e)
        try:
            b = _flatten(y, lower=lower)
        except Exception as e:  # noqa: BLE001
            b = type(e)
        return a, b

    for _ in range(2):  # the second time every name is in the cache: the fast path takes more
        a, b = both(given_, iter(pairs))
        assert a == b
    as_dict = dict(pairs)
    a, b = both(as_dict, iter(as_dict.items()))
    if not any(isinstance(v, list) for v in as_dict.values()):  # multi-value lists mean "several" only in maps
        assert a == b


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=30))
def test_flat_nbytes_counts_every_name_and_value(flat):
    from proxywasm_vm._proxywasm._pairs import flat_nbytes

    assert flat_nbytes(flat) == sum(len(x) for x in flat)
    with pytest.raises(TypeError):
        flat_nbytes([*flat, "not bytes"])
