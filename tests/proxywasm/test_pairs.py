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
