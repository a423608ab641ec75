"""ctypes declarations of the wasm3 C API, bound in the library pywasm3 0.5.0 builds.

pywasm3's own Python API has no memory growth, no host globals and no nested calls, but its
extension module exports the whole wasm3 C API (``m3_*``), so this backend calls that directly
(ctypes releases the GIL around each call; callbacks take it back). Two private fields of
``M3Runtime`` are reached by offset: ``stack`` (moved up for a call into wasm made from a host
function, see :func:`nested_base`) and ``memory`` (``numPages``/``maxPages`` of an imported memory).
Their offset is found once, by looking for a marker passed as the runtime's user data (see
:func:`_layout`), and checked against the stack size, so a changed layout fails loudly.
"""

from __future__ import annotations

import ctypes
import importlib.util
from ctypes import POINTER, c_char_p, c_int, c_uint32, c_uint64, c_void_p
from typing import Any

__all__ = ["LIB", "RAW_CALL", "TaggedValue", "ErrorInfo", "check", "message", "T_I32", "T_I64", "T_F32", "T_F64"]

T_NONE, T_I32, T_I64, T_F32, T_F64 = 0, 1, 2, 3, 4

_spec = importlib.util.find_spec("wasm3")
if _spec is None or not _spec.origin:
    raise ImportError("pywasm3 0.5.0 is not installed")
import wasm3 as _wasm3  # noqa: E402  (loads the library once; ctypes then opens the same handle)

VERSION = str(getattr(_wasm3, "M3_VERSION", "0.5.0"))
LIB = ctypes.CDLL(_spec.origin)


class _Value(ctypes.Union):
    _fields_ = [("i32", c_uint32), ("i64", c_uint64), ("f32", ctypes.c_float), ("f64", ctypes.c_double)]


class TaggedValue(ctypes.Structure):
    _fields_ = [("type", c_int), ("value", _Value)]


class ErrorInfo(ctypes.Structure):
    _fields_ = [("result", c_void_p), ("runtime", c_void_p), ("module", c_void_p), ("function", c_void_p),
                ("file", c_char_p), ("line", c_uint32), ("message", c_char_p)]


#: ``const void * (*)(IM3Runtime, IM3ImportContext, uint64_t * sp, void * mem)``: a raw host function.
RAW_CALL = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)


def _decl(name: str, restype: Any, *argtypes: Any) -> None:
    f = getattr(LIB, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_decl("m3_NewEnvironment", c_void_p)
_decl("m3_FreeEnvironment", None, c_void_p)
_decl("m3_NewRuntime", c_void_p, c_void_p, c_uint32, c_void_p)
_decl("m3_FreeRuntime", None, c_void_p)
_decl("m3_GetMemory", c_void_p, c_void_p, POINTER(c_uint32), c_uint32)
_decl("m3_ParseModule", c_void_p, c_void_p, POINTER(c_void_p), c_char_p, c_uint32)
_decl("m3_FreeModule", None, c_void_p)
_decl("m3_LoadModule", c_void_p, c_void_p, c_void_p)
_decl("m3_CompileModule", c_void_p, c_void_p)
_decl("m3_RunStart", c_void_p, c_void_p)
_decl("m3_LinkRawFunctionEx", c_void_p, c_void_p, c_char_p, c_char_p, c_char_p, RAW_CALL, c_void_p)
_decl("m3_FindGlobal", c_void_p, c_void_p, c_char_p)
_decl("m3_GetGlobal", c_void_p, c_void_p, POINTER(TaggedValue))
_decl("m3_SetGlobal", c_void_p, c_void_p, POINTER(TaggedValue))
_decl("m3_GetGlobalType", c_int, c_void_p)
_decl("m3_FindFunction", c_void_p, POINTER(c_void_p), c_void_p, c_char_p)
_decl("m3_GetArgCount", c_uint32, c_void_p)
_decl("m3_GetRetCount", c_uint32, c_void_p)
_decl("m3_GetArgType", c_int, c_void_p, c_uint32)
_decl("m3_GetRetType", c_int, c_void_p, c_uint32)
_decl("m3_Call", c_void_p, c_void_p, c_uint32, POINTER(c_void_p))
_decl("m3_GetResults", c_void_p, c_void_p, c_uint32, POINTER(c_void_p))
_decl("m3_GetErrorInfo", None, c_void_p, POINTER(ErrorInfo))
_decl("ResizeMemory", c_void_p, c_void_p, c_uint32)  # internal, but exported: memory.grow from Python
# internal, but exported: a function by index (an export name past wasm3's third alias is dropped)
_decl("Module_GetFunction", c_void_p, c_void_p, c_uint32)
_decl("CompileFunction", c_void_p, c_void_p)


def message(res: int | None) -> str:
    """The text of an ``M3Result`` (a static C string)."""
    return ctypes.string_at(res).decode("utf-8", "replace") if res else ""


def error_text(runtime: int | None, res: int) -> str:
    """``res`` with the runtime's detail message, when it has one."""
    text = message(res)
    if runtime:
        info = ErrorInfo()
        LIB.m3_GetErrorInfo(runtime, ctypes.byref(info))
        if info.message:
            detail = info.message.decode("utf-8", "replace")
            if detail and detail not in text:
                text = f"{text} ({detail})"
    return text


def check(res: int | None, exc: type[Exception], runtime: int | None = None) -> None:
    """Raise ``exc`` with the error text when ``res`` is an error."""
    if res:
        raise exc(error_text(runtime, res))


# ---- two private fields of M3Runtime, located once --------------------------------------------

_MARK = 0x5057_564D_5733_2E30  # "PWVMW3.0", passed as the probe runtime's user data
_PROBE_STACK = 0x1_2340  # an unusual stack size, to check the located offset against


def _layout() -> tuple[int, int]:
    """(offset of ``M3Runtime.stack``, offset of ``M3Runtime.memory``).

    In wasm3 0.5.0: ``void * stack; u32 stackSize; u32 numStackSlots; IM3Function lastCalled;
    void * userdata; M3Memory memory {M3MemoryHeader * mallocated; u32 numPages; u32 maxPages}``.
    """
    env = LIB.m3_NewEnvironment()
    rt = LIB.m3_NewRuntime(env, _PROBE_STACK, _MARK)
    try:
        for off in range(24, 16384, 8):
            if c_uint64.from_address(rt + off).value != _MARK:
                continue
            stack = off - 24
            # numStackSlots: the stack size in 4-byte slots (d_m3Use32BitSlots, wasm3's default)
            if (c_uint32.from_address(rt + stack + 12).value in (_PROBE_STACK // 4, _PROBE_STACK // 8)
                    and c_uint64.from_address(rt + stack).value != 0):
                return stack, off + 8
        raise ImportError("wasm3: the M3Runtime layout is not that of wasm3 0.5.0 (pin pywasm3==0.5.0)")
    finally:
        LIB.m3_FreeRuntime(rt)
        LIB.m3_FreeEnvironment(env)


STACK_OFFSET, MEMORY_OFFSET = _layout()

#: ``M3Function.compiled``: after ``module``, ``import`` (2 pointers), ``wasm``, ``wasmEnd``,
#: ``names[3]``, ``numNames`` (padded) and ``funcType``; checked below on a compiled function.
COMPILED_OFFSET = 8 * (1 + 2 + 2 + 3 + 1 + 1)


def _check_function_layout() -> None:
    # (module (func (export "f")))
    wasm = bytes.fromhex("0061736d0100000001040160000003020100070501016600000a040102000b")
    env = LIB.m3_NewEnvironment()
    rt = LIB.m3_NewRuntime(env, 4096, None)
    try:
        mod = c_void_p()
        if LIB.m3_ParseModule(env, ctypes.byref(mod), wasm, len(wasm)) or LIB.m3_LoadModule(rt, mod):
            raise ImportError("wasm3: cannot load the layout probe module")
        f = LIB.Module_GetFunction(mod, 0)
        if not f or c_uint64.from_address(f).value != mod.value or c_uint64.from_address(f + COMPILED_OFFSET).value:
            raise ImportError("wasm3: the M3Function layout is not that of wasm3 0.5.0 (pin pywasm3==0.5.0)")
        found = c_void_p()
        if LIB.m3_FindFunction(ctypes.byref(found), rt, b"f") or found.value != f \
                or not c_uint64.from_address(f + COMPILED_OFFSET).value:
            raise ImportError("wasm3: the M3Function layout is not that of wasm3 0.5.0 (pin pywasm3==0.5.0)")
    finally:
        LIB.m3_FreeRuntime(rt)
        LIB.m3_FreeEnvironment(env)


_check_function_layout()


def compiled_function(mod: int, index: int) -> int:
    """Function ``index`` of loaded module ``mod``, compiled (0 when there is none)."""
    f = LIB.Module_GetFunction(mod, index)
    if f and not c_uint64.from_address(f + COMPILED_OFFSET).value:
        if LIB.CompileFunction(f):
            return 0
    return int(f or 0)


def stack_base(rt: int) -> c_uint64:
    """``rt->stack`` (read and written)."""
    return c_uint64.from_address(rt + STACK_OFFSET)


def memory_pages(rt: int) -> tuple[c_uint32, c_uint32]:
    """``rt->memory.numPages`` and ``rt->memory.maxPages``."""
    return c_uint32.from_address(rt + MEMORY_OFFSET + 8), c_uint32.from_address(rt + MEMORY_OFFSET + 12)
