"""The worker process: a backend run in-process here, driven by requests from the parent.

Started by :mod:`._boot`. Objects (modules, stores, functions, memories ...)
live in a table keyed by integers; the parent holds proxies naming those keys.
Host functions are trampolines that send a ``host`` request to the parent and
return its answer; while waiting, the worker serves whatever the parent asks
(the host function reading memory, calling back into wasm ...).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from .._backend import get_backend
from .._engine import EngineConfig
from .._errors import WasmError
from .._func import Func
from .._global import Global
from .._instance import Instance
from .._linker import Linker
from .._memory import Memory
from .._module import Module, _backend_validate, _compile_validated
from .._store import Store, StoreLimits
from .._table import Table
from .._types import FuncType, ValType
from . import _extensions
from ._channel import Channel, LaneGroup, PeerGone
from ._protocol import (
    ERR,
    HOSTERR,
    HOSTEXC,
    OK,
    REQ,
    FuncRef,
    HostError,
    check_headroom,
    decode,
    decode_exception,
    encode,
    encode_exception,
)

_KIND = ((Func, "f"), (Memory, "m"), (Global, "g"), (Table, "t"))


def _has_refs(types: tuple[ValType, ...]) -> bool:
    return any(t is ValType.FUNCREF or t is ValType.EXTERNREF for t in types)


class Worker:
    def __init__(self, backend: str, config: EngineConfig) -> None:
        self._tl = threading.local()  # .chan: the lane this worker thread serves
        self.objs: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._cids = itertools.count(1)
        self.callers: dict[int, Any] = {}
        self.sid_of: dict[int, int] = {}  # id(worker store) -> its key
        self.backend = get_backend(f"{backend}@in-process")
        self.engine = self.backend.new_engine(config)
        from ._remote import worker_table

        self.remote = worker_table(self)  # objects sent to the parent by reference, proxies of its
        self.ops: dict[str, Callable[..., Any]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }

    # -- the conversation -------------------------------------------------------------
    def channel(self) -> Channel:
        """The channel (lane) the calling worker thread serves."""
        chan: Channel = self._tl.chan
        return chan

    def op_import(self, module: str) -> None:
        """Import a higher layer's module, which registers the handlers of its own requests
        (:func:`._extensions.worker_op`); serve them from now on."""
        importlib.import_module(module)
        for name, fn in list(_extensions.WORKER_OPS.items()):
            if name not in self.ops:
                self.ops[name] = functools.partial(fn, self)

    def _send(self, msg: tuple) -> None:
        self._tl.chan.send(encode(msg))

    def _recv(self) -> tuple:
        try:
            return decode(self._tl.chan.recv())
        except PeerGone:
            os._exit(0)  # the parent is gone: nobody to answer

    def serve_forever(self, chans: list[Channel]) -> None:
        """Serve these lanes (in the calling thread, one request at a time, in turn) until the
        parent goes. A request's nested requests come on its own lane."""
        group = LaneGroup(chans)
        tl = self._tl
        while True:
            try:
                tl.chan = group.wait()
            except PeerGone:
                os._exit(0)  # the parent is gone: nobody to answer
            msg = self._recv()
            if msg[0] != REQ:
                raise RuntimeError(f"worker: expected a request, got message kind {msg[0]}")
            self._handle(msg)

    def _handle(self, msg: tuple) -> None:
        _, op, args = msg
        failed: BaseException | None = None
        try:
            out: tuple = (OK, self.ops[op](*args))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
            failed = e
        # Every request gets exactly one answer, or the conversation falls out of step: the
        # answer is built and sent under guard, even when the stack is nearly full.
        try:
            if failed is not None:
                token = getattr(failed, "_pwvm_token", None)
                # a parent host function's exception coming home: the parent raises its original
                out = (HOSTEXC, token) if token is not None else (ERR, encode_exception(failed))
            self._send(out)
        except RecursionError:  # deep host <-> wasm recursion: answer with a little more room
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(limit + 200)
            try:
                self._send((ERR, encode_exception(RecursionError("host <-> wasm recursion too deep in the worker"))))
            finally:
                sys.setrecursionlimit(limit)
        except Exception as e:  # noqa: BLE001 - an unpicklable result, say
            self._send((ERR, encode_exception(TypeError(f"the worker cannot send the result of {op}: {e}"))))

    @staticmethod
    def _host_exception(msg: tuple) -> BaseException:
        """What to raise here for a parent host function's exception: a copy of it (the code
        here may catch it by type), tagged with the parent's token; else a HostError."""
        token = msg[1]
        exc: BaseException = HostError(token)
        if len(msg) > 2 and msg[2] is not None:
            copy = decode_exception(msg[2])
            if not (isinstance(copy, RuntimeError) and type(copy) is RuntimeError
                    and "could not be rebuilt" in str(copy)):
                exc = copy
        try:
            exc._pwvm_token = token  # type: ignore[attr-defined]
        except AttributeError:
            exc = HostError(token)
            exc._pwvm_token = token  # type: ignore[attr-defined]
        return exc

    def request(self, op: str, args: tuple) -> Any:
        """Ask the parent (a host call); serve nested requests until the answer comes."""
        tl = self._tl
        nest = getattr(tl, "nest", 0)
        if nest >= 16:
            check_headroom()
        self._send((REQ, op, args))
        tl.nest = nest + 1
        try:
            while True:
                msg = self._recv()
                kind = msg[0]
                if kind == OK:
                    return msg[1]
                if kind == REQ:
                    self._handle(msg)
                elif kind == HOSTERR:
                    raise self._host_exception(msg)
                elif kind == ERR:
                    raise decode_exception(msg[1])
                else:
                    raise RuntimeError(f"worker: unexpected message kind {kind}")
        finally:
            tl.nest = nest

    # -- objects ---------------------------------------------------------------------
    def add(self, obj: Any) -> int:
        oid = next(self._ids)
        self.objs[oid] = obj
        return oid

    def get(self, oid: int) -> Any:
        try:
            return self.objs[oid]
        except KeyError:
            raise WasmError("this object is gone: its store was closed") from None

    def desc(self, obj: Any) -> tuple | None:
        """(kind, key, type) for an extern, registering it; None for None."""
        if obj is None:
            return None
        for cls, kind in _KIND:
            if isinstance(obj, cls):
                return (kind, self.add(obj), obj.type)
        raise TypeError(f"not an extern: {obj!r}")

    def to_local(self, v: Any) -> Any:
        """A parent value (FuncRef handles) as a worker value."""
        if isinstance(v, FuncRef):
            return self.get(v.oid)
        if isinstance(v, tuple):
            return tuple(self.to_local(x) for x in v)
        return v

    def to_wire(self, v: Any) -> Any:
        if isinstance(v, Func):
            return FuncRef(self.add(v), v.type)
        if isinstance(v, tuple):
            return tuple(self.to_wire(x) for x in v)
        return v

    # -- engine and modules ---------------------------------------------------------------
    def op_ping(self) -> int:
        return os.getpid()

    def op_module_new(self, wasm: bytes, cache_path: str | None) -> int:
        mod = _compile_validated(self.engine, wasm)  # the parent validated the bytes (Module())
        if cache_path and not os.path.exists(cache_path):
            try:
                folder = os.path.dirname(cache_path)
                os.makedirs(folder, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(mod.serialize())
                os.replace(tmp, cache_path)
            except OSError:
                pass  # a read-only cache is not an error
        return self.add(mod)

    def op_module_validate(self, wasm: bytes) -> bool:
        return _backend_validate(self.engine, wasm)  # after the parent's own validation (Module.validate)

    def op_module_deserialize(self, data: bytes, wasm: bytes | None) -> int:
        mod = Module.deserialize(self.engine, data)
        if wasm is not None:
            mod._wasm = wasm
        return self.add(mod)

    def op_module_deserialize_file(self, path: str, wasm: bytes | None) -> int:
        mod = Module.deserialize_file(self.engine, path)
        if wasm is not None:
            mod._wasm = wasm
        return self.add(mod)

    def op_module_serialize(self, mid: int) -> bytes:
        return self.get(mid).serialize()

    def op_module_types(self, mid: int) -> tuple:
        mod = self.get(mid)
        return mod.imports, mod.exports

    # -- stores -------------------------------------------------------------------------
    def op_store_new(self, limits: StoreLimits) -> int:
        store = Store(self.engine, limits=limits)
        sid = self.add(store)
        self.sid_of[id(store)] = sid
        return sid

    def op_store_close(self, sid: int) -> None:
        store = self.objs.get(sid)
        if store is not None:
            store.close()  # first: it refuses while a call into the store runs
            self.objs.pop(sid, None)
            self.sid_of.pop(id(store), None)
            dead = [k for k, v in list(self.objs.items()) if getattr(v, "store", None) is store]
            for k in dead:
                self.objs.pop(k, None)

    def op_store_set_deadline(self, sid: int, seconds: float | None) -> None:
        self.get(sid).set_deadline(seconds)

    def op_store_get_fuel(self, sid: int) -> int:
        return self.get(sid).get_fuel()

    def op_store_set_fuel(self, sid: int, fuel: int) -> None:
        self.get(sid).set_fuel(fuel)

    def op_release(self, oids: list[int]) -> None:
        for oid in oids:
            obj = self.objs.pop(oid, None)
            if isinstance(obj, Store):
                self.sid_of.pop(id(obj), None)

    # -- host functions -------------------------------------------------------------------
    def _trampoline(self, hid: int, sid: int | None, ty: FuncType, need_caller: bool) -> tuple[Callable, bool]:
        """A worker-side callable that runs parent host function ``hid``; (fn, wants a Caller)."""
        request = self.request
        refs = _has_refs(ty.params + ty.results)
        to_wire, to_local = self.to_wire, self.to_local
        if not need_caller and sid is not None:
            if refs:
                def plain_refs(*args: Any) -> Any:
                    return to_local(request("host", (hid, sid, 0, to_wire(args))))
                return plain_refs, False

            def plain(*args: Any) -> Any:
                return request("host", (hid, sid, 0, args))
            return plain, False

        callers, cids, sid_of = self.callers, self._cids, self.sid_of

        def with_caller(caller: Any, *args: Any) -> Any:
            cid = next(cids)
            callers[cid] = caller
            try:
                s = sid if sid is not None else sid_of.get(id(caller.store), 0)
                r = request("host", (hid, s, cid, to_wire(args) if refs else args))
            finally:
                del callers[cid]
            return to_local(r) if refs else r

        return with_caller, True

    def op_func_new(self, sid: int, hid: int, ty: FuncType, access_caller: bool) -> int:
        fn, wants = self._trampoline(hid, sid, ty, access_caller)
        # raw: f32/f64/v128 arguments travel to the parent bit for bit (it cooks them if asked to)
        return self.add(Func(self.get(sid), ty, fn, access_caller=wants, raw=True))

    def op_caller_export(self, cid: int, name: str) -> tuple | None:
        caller = self.callers.get(cid)
        if caller is None:
            raise RuntimeError("Caller used outside of its host function call")
        return self.desc(caller.get_export(name))

    def op_caller_memory(self, cid: int) -> tuple | None:
        caller = self.callers.get(cid)
        if caller is None:
            raise RuntimeError("Caller used outside of its host function call")
        return self.desc(caller.memory)

    # -- externs ----------------------------------------------------------------------------
    def op_memory_new(self, sid: int, ty: Any) -> int:
        return self.add(Memory(self.get(sid), ty))

    def op_global_new(self, sid: int, ty: Any, value: Any) -> int:
        return self.add(Global(self.get(sid), ty, self.to_local(value)))

    def op_table_new(self, sid: int, ty: Any, init: Any) -> int:
        return self.add(Table(self.get(sid), ty, self.to_local(init)))

    def op_call(self, fid: int, args: tuple) -> Any:
        return self.get(fid)(*args)

    def op_call_refs(self, fid: int, args: tuple) -> Any:
        return self.to_wire(self.get(fid)(*self.to_local(args)))

    def op_call_raw(self, fid: int, args: tuple) -> Any:
        """A call whose f32/f64/v128 results come back raw (F32Bits ...: pickled, bit for bit)."""
        return self.to_wire(self.get(fid).call(*self.to_local(args), raw=True))

    def op_mem_read(self, oid: int, offset: int, length: int) -> bytes:
        return self.get(oid).read(offset, length)

    def op_mem_write(self, oid: int, offset: int, data: bytes) -> None:
        self.get(oid).write(offset, data)

    def op_mem_size(self, oid: int) -> tuple[int, int]:
        m = self.get(oid)
        return m.size, m.data_size

    def op_mem_grow(self, oid: int, delta: int) -> int:
        return self.get(oid).grow(delta)

    def op_global_get(self, oid: int, raw: bool = False) -> Any:
        return self.to_wire(self.get(oid).get(raw=raw))

    def op_global_set(self, oid: int, value: Any) -> None:
        self.get(oid).set(self.to_local(value))

    def op_table_size(self, oid: int) -> int:
        return self.get(oid).size

    def op_table_get(self, oid: int, index: int) -> Any:
        return self.to_wire(self.get(oid).get(index))

    def op_table_set(self, oid: int, index: int, value: Any) -> None:
        self.get(oid).set(index, self.to_local(value))

    def op_table_grow(self, oid: int, delta: int, init: Any) -> int:
        return self.get(oid).grow(delta, self.to_local(init))

    # -- instances and linkers ----------------------------------------------------------
    def op_instantiate(self, sid: int, mid: int, imports: list[int]) -> int:
        return self.add(Instance(self.get(sid), self.get(mid), [self.get(i) for i in imports]))

    def op_export(self, iid: int, name: str) -> tuple | None:
        return self.desc(self.get(iid).exports[name])

    def op_exports(self, iid: int, names: list[str]) -> list:
        ex = self.get(iid).exports
        return [self.desc(ex[n]) for n in names]

    def op_linker_new(self) -> int:
        return self.add(Linker(self.engine))

    def op_linker_func(self, lid: int, module: str, name: str, ty: FuncType, hid: int, access_caller: bool) -> None:
        fn, _ = self._trampoline(hid, None, ty, True)  # the store is learnt from the caller
        self.get(lid).define_func(module, name, ty, fn, access_caller=True, raw=True)

    def op_linker_define(self, lid: int, module: str, name: str, oid: int) -> None:
        self.get(lid).define(module, name, self.get(oid))

    def op_linker_instantiate(self, lid: int, sid: int, mid: int) -> int:
        return self.add(self.get(lid).instantiate(self.get(sid), self.get(mid)))


    # -- objects by reference (see _remote) ------------------------------------------------
    def op_obj_call(self, key: int, name: str, args: Any, kwargs: Any) -> Any:
        from ._remote import serve_call

        return serve_call(self.remote, key, name, args, kwargs)

    def op_obj_get(self, key: int, name: str) -> Any:
        from ._remote import serve_get

        return serve_get(self.remote, key, name)

    def op_obj_set(self, key: int, name: str, value: Any) -> None:
        from ._remote import serve_set

        serve_set(self.remote, key, name, value)

    def op_obj_list(self, key: int) -> list:
        from ._remote import serve_list

        return serve_list(self.remote, key)

    def op_obj_release(self, keys: list[int]) -> None:
        self.remote.release(keys)


def main(chans: list[Channel], backend: str, config: EngineConfig, remote: list[int] | None = None) -> None:
    """Start the backend, say hello on lane 0 (or why not), then serve every lane until the parent goes.

    The lanes in ``remote`` (lane 0 among them: the remote-object lanes) are served by one
    thread, every other lane by a thread of its own; a runtime whose objects are bound to the
    thread that made them has one thread serve every lane."""
    from .. import _guard
    from . import _conn

    _conn.IN_WORKER = True  # from now on, asking for a worker here raises (see refuse_in_worker)
    _guard.enable()  # limits a runtime cannot enforce itself may end this process (see _guard)
    remote_set = set(remote or [0]) | {0}
    try:
        worker = Worker(backend, config)
        b = worker.backend
        caps = b.capabilities()
        one_thread = not caps.concurrent_stores  # the runtime's objects are bound to the thread that made them
        info = {"pid": os.getpid(), "python": sys.version.split()[0], "version": b.version(),
                "capabilities": caps, "channel_helper": chans[0].helper is not None, "lanes": len(chans),
                "one_thread": one_thread}
    except BaseException as e:  # noqa: BLE001
        chans[0].send(encode((ERR, encode_exception(e))))
        return
    if one_thread:
        first = chans
    else:
        first = [c for i, c in enumerate(chans) if i in remote_set]
        for i, chan in enumerate(chans):
            if i not in remote_set:
                threading.Thread(target=worker.serve_forever, args=([chan],), daemon=True,
                                 name=f"pwvm-lane-{i}").start()
    chans[0].send(encode((OK, info)))
    worker.serve_forever(first)
