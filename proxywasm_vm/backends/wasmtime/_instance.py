"""Instance and Linker of the wasmtime backend."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable

from proxywasm_vm._errors import LinkError
from proxywasm_vm._instance import Instance
from proxywasm_vm._lifetime import release_after_finalizers
from proxywasm_vm._linker import Linker
from proxywasm_vm._types import FuncType

from ._ffi import ffi, lib
from ._func import FREE_ENV, TRAMPOLINE, register_host

if TYPE_CHECKING:
    from proxywasm_vm._instance import Extern
    from proxywasm_vm._types import ExternType

    from ._engine import WasmtimeEngine, WasmtimeModule
    from ._store import WasmtimeStore


class WasmtimeInstance(Instance):
    """A ``wasmtime_instance_t`` of a store."""

    store: WasmtimeStore
    module: WasmtimeModule
    _inst: Any  # cffi wasmtime_instance_t*
    _types: dict[str, ExternType]  # export types by name

    @classmethod
    def _wrap(cls, store: WasmtimeStore, module: WasmtimeModule, inst: Any) -> WasmtimeInstance:
        i = object.__new__(cls)
        i.store = store
        i.module = module
        i._inst = inst
        i._types = {e.name: e.type for e in module.exports}
        return i

    def _export(self, name: str) -> Extern:
        rt = self.store._rt
        api = rt.api
        ext = ffi.new("wasmtime_extern_t*")
        raw = name.encode()
        if not api.wasmtime_instance_export_get(self.store._ctx, self._inst, raw, len(raw), ext):
            raise KeyError(f"no export named {name!r}")
        return self.store._wrap_extern(ext, self._types.get(name))


def _free_linker(api: Any, ptr: Any, pres: Any) -> None:
    api.wasmtime_linker_delete(ptr)


class WasmtimeLinker(Linker):
    """wasmtime's native linker: host functions are defined once for every store,
    and each module is pre-linked once (``instance_pre``), so a new VM costs one
    store plus one ``wasmtime_instance_pre_instantiate``."""

    engine: WasmtimeEngine
    _ptr: Any  # cffi wasmtime_linker_t*
    _pre: weakref.WeakKeyDictionary[WasmtimeModule, Any]  # cffi wasmtime_instance_pre_t* by module

    @classmethod
    def _create(cls, engine: WasmtimeEngine) -> WasmtimeLinker:
        api = engine._rt.api
        self = object.__new__(cls)
        self._setup(engine)
        self._ptr = api.wasmtime_linker_new(engine._ptr)
        api.wasmtime_linker_allow_shadowing(self._ptr, True)
        self._pre = weakref.WeakKeyDictionary()
        # The pre-instantiations (ffi.gc cdata, each freed when its module goes) ride with the
        # release, so a finalizer of the linker's cycle never finds one already freed.
        release_after_finalizers(self, _free_linker, api, self._ptr, self._pre)
        return self

    def _define_func(self, module: str, name: str, ty: FuncType, fn: Callable[..., Any], access_caller: bool) -> None:
        rt = self.engine._rt
        api = rt.api
        env = register_host(api, fn, ty, access_caller)
        m, n = module.encode(), name.encode()
        err = api.wasmtime_linker_define_func_unchecked(self._ptr, m, len(m), n, len(n), rt.new_functype(ty),
                                                        TRAMPOLINE, env, FREE_ENV)
        if err != ffi.NULL:
            raise LinkError(rt.take_error_message(err), module=module, name=name)
        super()._define_func(module, name, ty, fn, access_caller)

    def define(self, module: str, name: str, item: Any) -> None:
        rt = self.engine._rt
        api = rt.api
        ext = ffi.new("wasmtime_extern_t*")
        item._to_extern(ext)
        m, n = module.encode(), name.encode()
        err = api.wasmtime_linker_define(self._ptr, item.store._ctx, m, len(m), n, len(n), ext)
        if err != ffi.NULL:
            raise LinkError(rt.take_error_message(err), module=module, name=name)
        super().define(module, name, item)

    def _changed(self) -> None:
        self.__dict__.get("_pre", {}).clear()

    def _instance_pre(self, module: Any) -> Any:
        rt = self.engine._rt
        api = rt.api
        pre = self._pre.get(module)
        if pre is None:
            for imp in module.imports:
                if not self.has(imp.module, imp.name):
                    raise LinkError(f"missing import {imp.module}::{imp.name} ({imp.type})",
                                    module=imp.module, name=imp.name, expected=imp.type)
            out = ffi.new("wasmtime_instance_pre_t**")
            err = api.wasmtime_linker_instantiate_pre(self._ptr, module._ptr, out)
            if err != ffi.NULL:
                raise LinkError(rt.take_error_message(err))
            pre = self._pre[module] = ffi.gc(out[0], api.wasmtime_instance_pre_delete)
        return pre

    def instantiate(self, store: Any, module: Any) -> Instance:
        if module.engine is not self.engine or store.engine is not self.engine:
            raise ValueError("linker, store and module must share one engine")
        pre = self._instance_pre(module)
        out = ffi.new("wasmtime_instance_t*")
        if lib.pwvm_instantiate_pre(store._sp, pre, out):
            store._raise_last(instantiating=True)
        return WasmtimeInstance._wrap(store, module, out)
