"""Linear memory: size, grow (within and past limits), read/write/view, LE helpers, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import proxywasm_vm as pw
from proxywasm_vm import PAGE_SIZE, Limits, MemoryType

from ._support import SETTINGS, run_child, signed32, signed64

MEM = """
(module
  (memory (export "memory") 1 4)
  (data (i32.const 16) "hello, wasm")
  (func (export "load8") (param i32) (result i32) local.get 0 i32.load8_u)
  (func (export "load32") (param i32) (result i32) local.get 0 i32.load)
  (func (export "load64") (param i32) (result i64) local.get 0 i64.load)
  (func (export "store32") (param i32 i32) local.get 0 local.get 1 i32.store)
  (func (export "store64") (param i32 i64) local.get 0 local.get 1 i64.store)
  (func (export "size") (result i32) memory.size)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
)
"""


@pytest.fixture
def mem(instantiate):
    ex = instantiate(MEM).exports
    return ex["memory"], ex


def test_size_and_data_segment(mem):
    m, ex = mem
    assert isinstance(m, pw.Memory)
    assert m.type == MemoryType(Limits(1, 4))
    assert m.size == 1 == ex["size"]()
    assert m.data_size == PAGE_SIZE
    assert m.read(16, 11) == b"hello, wasm"
    assert m.read(0, 16) == bytes(16)


def test_write_then_wasm_reads(mem):
    m, ex = mem
    m.write(100, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert ex["load8"](100) == 1
    assert ex["load32"](100) == 0x04030201
    assert ex["load64"](100) == 0x0807060504030201
    m.write(PAGE_SIZE - 3, bytearray(b"end"))
    m.write(200, memoryview(b"view"))
    assert m.read(PAGE_SIZE - 3, 3) == b"end" and m.read(200, 4) == b"view"


def test_wasm_writes_then_python_reads(mem):
    m, ex = mem
    ex["store32"](8, 0xDEADBEEF)
    assert m.read(8, 4) == bytes.fromhex("efbeadde")
    assert m.read_u32(8) == 0xDEADBEEF  # unsigned
    ex["store64"](32, -2)
    assert m.read_u64(32) == 2**64 - 2
    assert m.read(32, 8) == (2**64 - 2).to_bytes(8, "little")


def test_little_endian_helpers(mem):
    m, ex = mem
    m.write_u32(40, 0x11223344)
    assert m.read(40, 4) == b"\x44\x33\x22\x11"
    assert ex["load32"](40) == 0x11223344
    m.write_u32(44, 0xFFFFFFFF)
    assert ex["load32"](44) == -1 and m.read_u32(44) == 0xFFFFFFFF
    m.write_u64(48, 0x0102030405060708)
    assert m.read(48, 8) == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert ex["load64"](48) == 0x0102030405060708
    m.write_u64(56, -1)
    assert m.read_u64(56) == 2**64 - 1 and ex["load64"](56) == -1
    m.write_u32(PAGE_SIZE - 4, 7)
    assert m.read_u32(PAGE_SIZE - 4) == 7


@pytest.mark.capability("memory_view")
def test_view_is_zero_copy_both_ways(mem):
    m, ex = mem
    v = m.view()
    assert len(v) == m.data_size and not v.readonly
    assert bytes(v[16:21]) == b"hello"
    v[300:304] = b"\x2a\x00\x00\x00"
    assert ex["load32"](300) == 42
    ex["store32"](304, 0x01020304)
    assert bytes(v[304:308]) == b"\x04\x03\x02\x01"


def test_grow_within_maximum(mem):
    m, ex = mem
    assert m.grow(1) == 1
    assert m.size == 2 and m.data_size == 2 * PAGE_SIZE
    assert ex["size"]() == 2
    m.write(2 * PAGE_SIZE - 1, b"z")
    assert ex["load8"](2 * PAGE_SIZE - 1) == ord("z")
    assert m.read(2 * PAGE_SIZE - 4, 4) == b"\0\0\0z"  # new pages are zeroed
    assert ex["grow"](1) == 2 and m.size == 3  # wasm grows, Python sees it
    assert m.grow(0) == 3


def test_grow_past_maximum(mem):
    m, ex = mem
    with pytest.raises(pw.LimitError):
        m.grow(4)  # 1 + 4 > 4
    assert m.size == 1
    assert ex["grow"](4) == -1  # inside wasm a refused grow is -1
    assert m.grow(3) == 1 and m.size == 4
    with pytest.raises(pw.LimitError):
        m.grow(1)
    with pytest.raises(ValueError):
        m.grow(-1)
    assert m.size == 4 and ex["size"]() == 4


@pytest.mark.capability("memory_limit", "exact_memory_limit")
def test_grow_past_store_memory_limit(engine, wat_module):
    store = pw.Store(engine, limits=pw.StoreLimits(memory_bytes=3 * PAGE_SIZE))
    ex = pw.Instance(store, wat_module('(module (memory (export "memory") 1) '
                                       '(func (export "grow") (param i32) (result i32) local.get 0 memory.grow))')).exports
    m = ex["memory"]
    assert m.grow(2) == 1
    with pytest.raises(pw.LimitError):
        m.grow(1)
    assert m.size == 3
    assert ex["grow"](1) == -1 and m.size == 3
    # a memory made from Python obeys the same limit
    own = pw.Memory(store, MemoryType(Limits(1)))
    with pytest.raises(pw.LimitError):
        own.grow(3)
    assert own.grow(2) == 1 and own.data_size == 3 * PAGE_SIZE


def test_memory_made_in_python_and_imported(instantiate, store):
    m = pw.Memory(store, MemoryType(Limits(2, 3)))
    assert m.size == 2 and m.type.limits == Limits(2, 3) and m.store is store
    m.write_u32(1000, 1234)
    ex = instantiate(
        """(module (import "env" "memory" (memory 1))
             (func (export "load32") (param i32) (result i32) local.get 0 i32.load))""",
        {"env": {"memory": m}},
    ).exports
    assert ex["load32"](1000) == 1234


@pytest.mark.parametrize("offset,length", [(PAGE_SIZE, 1), (PAGE_SIZE - 1, 2), (-1, 1), (0, -1), (0, PAGE_SIZE + 1),
                                           (2**32, 1), (2**64 - 1, 2), (2**64, 0), (2**70, 4), (-(2**70), 4),
                                           (PAGE_SIZE + 1, 0)])
def test_out_of_range_read_and_write_raise_index_error(mem, offset, length):
    m, ex = mem
    before = m.read(0, PAGE_SIZE)
    with pytest.raises(IndexError):
        m.read(offset, length)
    if length >= 0:
        with pytest.raises(IndexError):
            m.write(offset, b"x" * length)
    assert m.read(0, PAGE_SIZE) == before  # nothing was written anywhere
    assert ex["size"]() == 1


@pytest.mark.parametrize("offset", [PAGE_SIZE - 3, PAGE_SIZE, -1, 2**64 - 1, 2**70])
def test_out_of_range_le_helpers_raise_index_error(mem, offset):
    m, _ = mem
    with pytest.raises(IndexError):
        m.read_u32(offset)
    with pytest.raises(IndexError):
        m.write_u32(offset, 1)
    with pytest.raises(IndexError):
        m.read_u64(offset + 4 if offset == PAGE_SIZE - 3 else offset)
    with pytest.raises(IndexError):
        m.write_u64(offset, 1)


def test_zero_length_access_at_the_end(mem):
    m, _ = mem
    assert m.read(PAGE_SIZE, 0) == b""
    m.write(PAGE_SIZE, b"")


def test_read_after_grow_sees_new_size(mem):
    m, _ = mem
    with pytest.raises(IndexError):
        m.read(PAGE_SIZE, 1)
    m.grow(1)
    assert m.read(PAGE_SIZE, 1) == b"\0"
    assert m.data_size == 2 * PAGE_SIZE


@given(offset=st.integers(min_value=-8, max_value=PAGE_SIZE + 8) | st.integers(min_value=-(2**65), max_value=2**65),
       data=st.binary(max_size=300))
@SETTINGS
def test_write_read_round_trip_property(mem, offset, data):
    m, ex = mem
    if 0 <= offset and offset + len(data) <= m.data_size:
        m.write(offset, data)
        assert m.read(offset, len(data)) == data
        if len(data) >= 4:
            assert ex["load32"](offset) == signed32(int.from_bytes(data[:4], "little"))
            assert m.read_u32(offset) == int.from_bytes(data[:4], "little")
        if len(data) >= 8:
            assert m.read_u64(offset) == int.from_bytes(data[:8], "little")
            assert ex["load64"](offset) == signed64(int.from_bytes(data[:8], "little"))
    else:
        with pytest.raises(IndexError):
            m.write(offset, data)
        with pytest.raises(IndexError):
            m.read(offset, len(data))


@given(offset=st.integers(min_value=0, max_value=PAGE_SIZE), length=st.integers(min_value=-4, max_value=PAGE_SIZE + 4))
@SETTINGS
def test_read_bounds_property(mem, offset, length):
    m, _ = mem
    if length >= 0 and offset + length <= PAGE_SIZE:
        assert len(m.read(offset, length)) == length
    else:
        with pytest.raises(IndexError):
            m.read(offset, length)


def test_memory_constructor_validates(store):
    with pytest.raises(TypeError):
        pw.Memory(store, Limits(1))  # type: ignore[arg-type]


BAD_MEMORY_TYPES = """
from proxywasm_vm import Limits, MemoryType
store = pw.Store(engine)
for lim in (Limits(70000), Limits(1, 70000), Limits(0, 2**40)):
    try:
        pw.Memory(store, MemoryType(lim))
    except (ValueError, OverflowError, pw.WasmError):
        continue
    raise AssertionError(f"a 32-bit memory with limits {lim} was created")
m = pw.Memory(store, MemoryType(Limits(0, 65536)))  # the largest legal maximum
assert m.size == 0 and m.data_size == 0 and m.read(0, 0) == b""
print("ok")
"""


def test_impossible_memory_types_are_refused(backend_name):
    # In a child process: a runtime that aborts on this input fails this test, not the whole run.
    run_child(backend_name, BAD_MEMORY_TYPES)
