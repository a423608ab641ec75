"""Helpers shared by the conformance tests (the backend fixtures live in tests/conftest.py)."""

from __future__ import annotations

import struct
import textwrap

from _helpers import run_python
from hypothesis import HealthCheck, settings

from proxywasm_vm._wasmparse import uleb128

#: Examples reuse one instance per test on purpose (that is what a host does), and
#: wasm calls are not to be timed by hypothesis on a shared 2-core machine.
SETTINGS = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

I32_MIN, I32_MAX, U32_MAX = -(2**31), 2**31 - 1, 2**32 - 1
I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def signed32(v: int) -> int:
    """The signed i32 with the same low 32 bits as ``v``."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def signed64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def as_f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def custom_section(name: str, payload: bytes) -> bytes:
    """The bytes of a custom section (id 0) called ``name``."""
    raw = name.encode()
    body = uleb128(len(raw)) + raw + payload
    return b"\x00" + uleb128(len(body)) + body


_CHILD_PRELUDE = """
import sys
import proxywasm_vm as pw
from proxywasm_vm import FuncType, ValType
engine = pw.Engine(sys.argv[1])
"""


def run_child(backend_name: str, body: str, *args: str, timeout: float = 120) -> None:
    """Run ``body`` (with ``pw``, ``engine`` and ``sys.argv[2:] == args`` defined) in a fresh interpreter.

    For tests of misuse that could crash a backend: a crash then fails that one test with its
    exit status, instead of ending the whole run. ``body`` must print ``ok`` last.
    """
    run_python(_CHILD_PRELUDE + textwrap.dedent(body), backend_name, *args, timeout=timeout)
