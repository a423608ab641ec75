"""Objects by reference across the worker boundary, in both directions.

This is what lets a higher layer run a whole object graph *inside* the worker,
next to its runtime, so that its calls into wasm never cross: only the calls a
caller makes on those objects cross, and the objects they are handed back. The
Proxy-Wasm layer runs a plugin host there this way (its plugins' host calls stay
in the worker; see ``proxywasm_vm._proxywasm._remote_host``, which makes the
worker-side host through a request of its own, registered in :mod:`._extensions`)::

    host = remote_host(Engine("wasmer"), logger=MemoryLogger())  # a proxy of a worker object
    plugin = host.load(config, "plugin.wasm")                     # its result: a proxy too
    with plugin.http_stream() as s:                               # ... and so on
        s.request_headers([(":path", "/")])                       # one crossing

How a value crosses (both directions, containers element by element):

- plain data (None, bool, int, float, str, bytes, and tuples/lists/dicts of them),
  enums, dataclass instances, paths, exceptions and the types registered with
  :func:`._extensions.remote_by_value` (clocks): *by value* (a copy);
- a proxy of an object of the other side: that object itself;
- anything else (services, callables, streams, plugins ...): *by reference*: the
  receiver gets a proxy whose attribute reads and method calls cross back.

All remote-object traffic of an engine goes through the remote-object lanes,
all served by one worker thread (``_conn``, ``_channel.LaneGroup``): objects that
keep state per thread (the Proxy-Wasm host keeps its VMs per thread) see a single
thread, whichever parent thread calls, while parent threads each send on a lane
of their own (their requests wait in their mailboxes, not behind a lock).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import marshal
import operator
import os
import pickle
import types
from collections.abc import Callable
from typing import Any

from .._lifetime import release_after_finalizers
from ._extensions import BY_VALUE, COMPILING_METHODS

#: ``Connection.request(..., lane=REMOTE_LANE)``: on a remote-object lane (lane 0 is one of them).
REMOTE_LANE = 0

_PLAIN = (type(None), bool, int, float, str, bytes)
_METHODS = (types.MethodType, types.FunctionType, types.BuiltinMethodType, types.BuiltinFunctionType,
            functools.partial)


class Ref:
    """An object of the *sending* side, by reference (``key`` in its table, ``kind`` its type's name)."""

    __slots__ = ("key", "kind")

    def __init__(self, key: int, kind: str) -> None:
        self.key = key
        self.kind = kind

    def __reduce__(self) -> Any:
        return (Ref, (self.key, self.kind))


class Packed:
    """A container holding references or by-value objects (plain containers travel as they are)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> Any:
        return (Packed, (self.value,))


class Back:
    """An object of the *receiving* side coming home (it was sent as a Ref)."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key

    def __reduce__(self) -> Any:
        return (Back, (self.key,))


def _by_value(v: Any) -> bool:
    if isinstance(v, (enum.Enum, os.PathLike, BaseException, type)):
        return True
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return True
    return bool(BY_VALUE) and isinstance(v, tuple(BY_VALUE))


class Table:
    """One side's objects sent by reference, and proxies of the other side's."""

    def __init__(self, make_proxy: Callable[[int, str], Any]) -> None:
        self.objs: dict[int, Any] = {}
        #: (type name, attribute) -> True for the other side's methods, learnt once per type
        self.methods: dict[tuple[str, str], bool] = {}
        self._keys = itertools.count(1)
        self._make_proxy = make_proxy

    def export(self, obj: Any) -> Ref:
        key = next(self._keys)  # a key per sending: each proxy is released on its own
        self.objs[key] = obj
        t = type(obj)
        return Ref(key, f"{t.__module__}.{t.__qualname__}")

    def get(self, key: int) -> Any:
        try:
            return self.objs[key]
        except KeyError:
            raise LookupError(f"remote object #{key} was released") from None

    def release(self, keys: list[int]) -> None:
        for k in keys:
            self.objs.pop(k, None)

    def encode(self, v: Any) -> Any:
        t = type(v)
        if t in _PLAIN:  # exact types: an IntEnum or a NamedTuple is not plain data
            return v
        if isinstance(v, RemoteProxy):
            return Back(v._key) if v._table is self else self.export(v)
        if t is tuple or t is list or t is dict:
            try:
                marshal.dumps(v)  # plain all the way down (the common case: headers): as it is
                return v
            except ValueError:
                pass
            if isinstance(v, tuple):
                return Packed(tuple(self.encode(x) for x in v))
            if isinstance(v, list):
                return Packed([self.encode(x) for x in v])
            return Packed({self.encode(k): self.encode(x) for k, x in v.items()})
        if isinstance(v, tuple) or _by_value(v):  # NamedTuples (log records ...) are values
            try:
                pickle.dumps(v, 5)
                return v
            except Exception:  # noqa: BLE001, S110 - holds something that does not pickle: by reference
                pass
        from .._module import Module

        if isinstance(v, Module) and v._wasm is not None:
            return v._wasm  # a module crosses as its bytes (compiled again, or from the cache, there)
        return self.export(v)

    def decode(self, v: Any) -> Any:
        if type(v) in _PLAIN:
            return v
        if isinstance(v, Ref):
            return self._make_proxy(v.key, v.kind)
        if isinstance(v, Back):
            return self.get(v.key)
        if isinstance(v, Packed):
            v = v.value
            if isinstance(v, tuple):
                return tuple(self.decode(x) for x in v)
            if isinstance(v, list):
                return [self.decode(x) for x in v]
            return {self.decode(k): self.decode(x) for k, x in v.items()}
        return v


class RemoteProxy:
    """An object of the other side: attribute reads and method calls cross.

    ``_call(key, name, args, kwargs)`` and ``_get(key, name)`` are the side's
    transport; the common dunder methods (context manager, container, call) are forwarded too.
    """

    __slots__ = ("__weakref__", "_key", "_kind", "_methods", "_release", "_table", "_transport")

    def __init__(self, key: int, table: Table, transport: Any, kind: str = "") -> None:
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_transport", transport)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_methods", {})

    def _invoke(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        t = self._table
        r = self._transport.remote_call(self._key, name, t.encode(args), t.encode(kwargs))
        return t.decode(r)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        m = self._methods.get(name)
        if m is not None:
            return m
        known = self._table.methods.get((self._kind, name))
        if not known:
            kind, value = self._transport.remote_get(self._key, name)
            if kind != "m":
                return self._table.decode(value)
            if self._kind:
                self._table.methods[(self._kind, name)] = True  # every object of the type has it

        def method(*args: Any, **kwargs: Any) -> Any:  # bound once per proxy
            return self._invoke(name, *args, **kwargs)

        method.__name__ = name
        self._methods[name] = method
        return method

    def __setattr__(self, name: str, value: Any) -> None:
        self._transport.remote_set(self._key, name, self._table.encode(value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._invoke("__call__", *args, **kwargs)

    def __enter__(self) -> Any:
        return self._invoke("__enter__")

    def __exit__(self, *exc: object) -> Any:
        return self._invoke("__exit__", None, None, None) if exc[0] is None else \
            self._invoke("__exit__", exc[0], exc[1], None)

    def __getitem__(self, key: Any) -> Any:
        return self._invoke("__getitem__", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._invoke("__setitem__", key, value)

    def __delitem__(self, key: Any) -> None:
        self._invoke("__delitem__", key)

    def __contains__(self, key: Any) -> bool:
        return self._invoke("__contains__", key)

    def __len__(self) -> int:
        return self._invoke("__len__")

    def __iter__(self) -> Any:
        return iter(self._transport.remote_list(self._key))

    def __eq__(self, other: object) -> bool:
        return self._invoke("__eq__", other)

    def __hash__(self) -> int:
        return hash((id(self._table), self._key))

    def __bool__(self) -> bool:
        return self._invoke("__bool__")

    def __repr__(self) -> str:
        try:
            return f"<remote {self._invoke('__repr__')}>"
        except Exception:  # noqa: BLE001
            return f"<remote object #{self._key}>"


_OPERATORS: dict[str, Callable[..., Any]] = {
    "__bool__": bool, "__len__": len, "__contains__": operator.contains, "__getitem__": operator.getitem,
    "__setitem__": operator.setitem, "__delitem__": operator.delitem, "__eq__": operator.eq, "__repr__": repr,
}


def serve_call(table: Table, key: int, name: str, args: Any, kwargs: Any) -> Any:
    obj = table.get(key)
    op = _OPERATORS.get(name)
    if op is not None:
        return table.encode(op(obj, *table.decode(args)))
    fn = obj if name == "__call__" else getattr(obj, name)
    return table.encode(fn(*table.decode(args), **table.decode(kwargs)))


def serve_get(table: Table, key: int, name: str) -> tuple[str, Any]:
    obj = table.get(key)
    value = getattr(obj, name)
    if isinstance(value, _METHODS):  # methods and functions; callable objects are values (by reference)
        return ("m", None)
    return ("v", table.encode(value))


def serve_set(table: Table, key: int, name: str, value: Any) -> None:
    setattr(table.get(key), name, table.decode(value))


def serve_list(table: Table, key: int) -> list:
    return table.encode(list(table.get(key)))


class ParentTransport:
    """How a parent proxy reaches its worker object (on the remote-object lane)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def remote_call(self, key: int, name: str, args: Any, kwargs: Any) -> Any:
        # a method of a worker object: one registered as compiling (the Proxy-Wasm layer's
        # host.load, plugin.update) has the compile bound; anything else is bounded as an event
        from ._proxy import crossing_timeout

        budget, why = crossing_timeout(self.conn.bounds, "compile" if name in COMPILING_METHODS else "event")
        return self.conn.request("obj_call", (key, name, args, kwargs), budget, why, lane=REMOTE_LANE)

    def remote_get(self, key: int, name: str) -> tuple[str, Any]:
        return self.conn.request("obj_get", (key, name), lane=REMOTE_LANE)

    def remote_set(self, key: int, name: str, value: Any) -> None:
        self.conn.request("obj_set", (key, name, value), lane=REMOTE_LANE)

    def remote_list(self, key: int) -> list:
        return self.conn.remote.decode(self.conn.request("obj_list", (key,), lane=REMOTE_LANE))


class WorkerTransport:
    """How a worker proxy reaches its parent object (a request back on the current lane)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def remote_call(self, key: int, name: str, args: Any, kwargs: Any) -> Any:
        return self.worker.request("pobj_call", (key, name, args, kwargs))

    def remote_get(self, key: int, name: str) -> tuple[str, Any]:
        return self.worker.request("pobj_get", (key, name))

    def remote_set(self, key: int, name: str, value: Any) -> None:
        self.worker.request("pobj_set", (key, name, value))

    def remote_list(self, key: int) -> list:
        return self.worker.remote.decode(self.worker.request("pobj_list", (key,)))


def parent_table(conn: Any) -> Table:
    """The parent's table of a connection; its proxies are released in the worker when collected."""
    import weakref

    transport = ParentTransport(conn)
    conn_ref = weakref.ref(conn)

    def make(key: int, kind: str) -> RemoteProxy:
        p = (RemoteCallback if kind in _CALLBACK_KINDS else RemoteProxy)(key, table, transport, kind)
        release_after_finalizers(p, _release_remote, conn_ref, key)
        return p

    table = Table(make)
    return table


#: Worker functions handed to parent objects: callbacks (a callout's delivery, a queue's notifier ...).
_CALLBACK_KINDS = ("builtins.function", "builtins.method", "functools.partial")


class RemoteCallback(RemoteProxy):
    """A worker function held by a parent object as a callback: calling it once the worker
    is gone does nothing (the plugin it was for went with the worker)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._transport.conn.dead:
            return None
        return self._invoke("__call__", *args, **kwargs)


def _release_remote(conn_ref: Any, key: int) -> None:
    conn = conn_ref()
    if conn is not None and not conn.dead:
        conn.remote_released.append(key)


def worker_table(worker: Any) -> Table:
    transport = WorkerTransport(worker)

    def make(key: int, kind: str) -> RemoteProxy:
        return RemoteProxy(key, table, transport, kind)

    table = Table(make)
    return table
