"""One loaded copy of libwasmtime: its function table and the type objects made with it.

The backend can load the library more than once: in-process (local, deep
symbol binding) and in fresh linker namespaces (``dlmopen``), each a separate
copy with its own globals and heap. Objects made by one copy must only ever
be passed back to the same copy, so everything that calls the C API reaches
it through the :class:`Runtime` of its engine.
"""

from __future__ import annotations

import threading
from typing import Any

from proxywasm_vm._errors import BackendUnavailable
from proxywasm_vm._types import FuncType, GlobalType, Limits, MemoryType, TableType, ValType

from ._ffi import HOW_TO_ENABLE, ffi, lib, library_path
from ._values import WASM_KIND

__all__ = ["Runtime", "default_runtime", "namespace_runtime"]


class Runtime:
    """A loaded libwasmtime (``api`` is its ``pwvm_api`` table)."""

    def __init__(self, api: Any, path: str, namespace: bool) -> None:
        self.api = api
        self.path = path
        self.namespace = namespace
        self._known_valtypes: list[tuple[Any, ValType]] = []

    def take_error_message(self, err: Any) -> str:
        """The message of a ``wasmtime_error_t`` (which is deleted)."""
        api = self.api
        vec = ffi.new("wasm_byte_vec_t*")
        api.wasmtime_error_message(err, vec)
        msg = ffi.unpack(ffi.cast("char*", vec.data), vec.size).decode(errors="replace")
        api.wasm_byte_vec_delete(vec)
        api.wasmtime_error_delete(err)
        return msg

    def trap_message(self, trap: Any) -> str:
        api = self.api
        vec = ffi.new("wasm_byte_vec_t*")
        api.wasm_trap_message(trap, vec)
        n = vec.size
        if n and ffi.cast("char*", vec.data)[n - 1] == b"\0":
            n -= 1  # wasm.h messages carry a trailing NUL
        msg = ffi.unpack(ffi.cast("char*", vec.data), n).decode(errors="replace")
        api.wasm_byte_vec_delete(vec)
        return msg

    def new_valtype(self, t: ValType) -> Any:
        """An owned ``wasm_valtype_t*`` (wasmtime's ``wasm_valtype_new`` aborts the process for v128)."""
        if t is ValType.V128:
            return self.api.wasmtime_wasm_valtype_v128()
        return self.api.wasm_valtype_new(WASM_KIND[t])

    def _valtype_vec(self, types: tuple[ValType, ...]) -> Any:
        vec = ffi.new("wasm_valtype_vec_t*")
        arr = ffi.new("wasm_valtype_t*[]", [self.new_valtype(t) for t in types] or [ffi.NULL])
        self.api.wasm_valtype_vec_new(vec, len(types), arr)
        return vec

    def new_functype(self, ty: FuncType) -> Any:
        """An owned ``wasm_functype_t*`` (deleted when collected)."""
        ft = self.api.wasm_functype_new(self._valtype_vec(ty.params), self._valtype_vec(ty.results))
        return ffi.gc(ft, self.api.wasm_functype_delete)

    def _limits(self, lim: Limits) -> Any:
        return ffi.new("wasm_limits_t*", (lim.min, 0xFFFFFFFF if lim.max is None else lim.max))

    def new_memorytype(self, ty: MemoryType) -> Any:
        if ty.is_64 or ty.shared:
            raise ValueError("64-bit and shared memories cannot be created from Python")
        lim = ty.limits
        if lim.min > 65536 or (lim.max is not None and lim.max > 65536):
            # wasm_memorytype_new panics (aborting the process) past 4 GiB of 32-bit memory
            raise ValueError(f"a 32-bit memory has at most 65536 pages, got limits {lim.min}..{lim.max}")
        return ffi.gc(self.api.wasm_memorytype_new(self._limits(lim)), self.api.wasm_memorytype_delete)

    def new_globaltype(self, ty: GlobalType) -> Any:
        gt = self.api.wasm_globaltype_new(self.new_valtype(ty.content), 1 if ty.mutable else 0)
        return ffi.gc(gt, self.api.wasm_globaltype_delete)

    def new_tabletype(self, ty: TableType) -> Any:
        tt = self.api.wasm_tabletype_new(self.new_valtype(ty.element), self._limits(ty.limits))
        return ffi.gc(tt, self.api.wasm_tabletype_delete)

    def valtype(self, vt: Any) -> ValType:
        """The ValType of a borrowed ``wasm_valtype_t*``.

        Not ``wasm_valtype_kind``: wasmtime aborts the process in it for v128 (and
        for GC reference types), so the type is compared with known ones instead.
        """
        if not self._known_valtypes:
            self._known_valtypes.extend((self.new_valtype(t), t) for t in ValType)
        for known, t in self._known_valtypes:
            if self.api.wasmtime_wasm_valtype_equal(vt, known):
                return t
        raise TypeError("unsupported value type (only i32, i64, f32, f64, v128, funcref and externref are)")

    def _types_of(self, vec: Any) -> tuple[ValType, ...]:
        return tuple(self.valtype(vec.data[i]) for i in range(vec.size))

    def _functype(self, ft: Any) -> FuncType:
        return FuncType(self._types_of(self.api.wasm_functype_params(ft)), self._types_of(self.api.wasm_functype_results(ft)))

    def _memorytype(self, mt: Any) -> MemoryType:
        mx = ffi.new("uint64_t*")
        has_max = self.api.wasmtime_memorytype_maximum(mt, mx)
        return MemoryType(Limits(self.api.wasmtime_memorytype_minimum(mt), mx[0] if has_max else None),
                          is_64=bool(self.api.wasmtime_memorytype_is64(mt)))

    def _globaltype(self, gt: Any) -> GlobalType:
        return GlobalType(self.valtype(self.api.wasm_globaltype_content(gt)),
                          bool(self.api.wasm_globaltype_mutability(gt)))

    def _tabletype(self, tt: Any) -> TableType:
        lim = self.api.wasm_tabletype_limits(tt)
        return TableType(self.valtype(self.api.wasm_tabletype_element(tt)),
                         Limits(lim.min, None if lim.max == 0xFFFFFFFF else lim.max))

    def externtype(self, et: Any) -> Any:
        """The public type of a borrowed ``wasm_externtype_t*``."""
        kind = self.api.wasm_externtype_kind(et)
        if kind == 0:
            return self._functype(self.api.wasm_externtype_as_functype_const(et))
        if kind == 1:
            return self._globaltype(self.api.wasm_externtype_as_globaltype_const(et))
        if kind == 2:
            return self._tabletype(self.api.wasm_externtype_as_tabletype_const(et))
        if kind == 3:
            return self._memorytype(self.api.wasm_externtype_as_memorytype_const(et))
        raise TypeError(f"unsupported extern kind {kind}")

    def functype_of(self, ctx: Any, f: Any) -> FuncType:
        ft = self.api.wasmtime_func_type(ctx, f)
        try:
            return self._functype(ft)
        finally:
            self.api.wasm_functype_delete(ft)

    def memorytype_of(self, ctx: Any, m: Any) -> MemoryType:
        mt = self.api.wasmtime_memory_type(ctx, m)
        try:
            return self._memorytype(mt)
        finally:
            self.api.wasm_memorytype_delete(mt)

    def globaltype_of(self, ctx: Any, g: Any) -> GlobalType:
        gt = self.api.wasmtime_global_type(ctx, g)
        try:
            return self._globaltype(gt)
        finally:
            self.api.wasm_globaltype_delete(gt)

    def tabletype_of(self, ctx: Any, t: Any) -> TableType:
        tt = self.api.wasmtime_table_type(ctx, t)
        try:
            return self._tabletype(tt)
        finally:
            self.api.wasm_tabletype_delete(tt)


def _open(path: str, namespace: bool) -> Runtime:
    err = ffi.new("char[256]")
    api = lib.pwvm_open(path.encode(), 1 if namespace else 0, err)
    if api == ffi.NULL:
        why = ffi.string(err).decode(errors="replace")
        if namespace:
            raise BackendUnavailable(
                "wasmtime@namespace", f"{why} ({len(_namespaces)} namespaces already loaded; a process holds "
                "about 10 copies, each distinct library path takes one and is never unloaded)",
                "reuse the engines you have, or use isolation='process'")
        raise BackendUnavailable("wasmtime", why, HOW_TO_ENABLE)
    return Runtime(api, path, namespace)


_lock = threading.Lock()
_default: Runtime | None = None
_namespaces: dict[str, Runtime] = {}


def default_runtime() -> Runtime:
    """The in-process copy (the wheel's library, or ``$PWVM_WASMTIME_LIBRARY``)."""
    global _default
    with _lock:
        if _default is None:
            _default = _open(library_path(), namespace=False)
        return _default


def namespace_runtime(path: str | None = None) -> Runtime:
    """A copy of the library at ``path`` in its own linker namespace (one per path, made once).

    A process holds about ten: glibc's namespace table has 16 slots, but the
    static TLS space each copy of libc needs runs out first (measured here: the
    11th copy fails). Past that :class:`BackendUnavailable` says so, and
    nothing already loaded is disturbed. A namespace is never unloaded. Each
    thread that calls into a namespace leaves ~3 KiB behind when it exits, so
    call from long-lived threads.
    """
    p = path or library_path()
    with _lock:
        rt = _namespaces.get(p)
        if rt is None:
            rt = _namespaces[p] = _open(p, namespace=True)
        return rt
