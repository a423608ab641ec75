"""What travels between a parent and its worker, shared by both sides.

Every message is a tuple (marshalled when it holds only plain data, pickled
otherwise) whose first item says what it is:

    (REQ, op, args)      a request; the other side answers it before anything else of its own
    (OK, value)          the answer to the innermost open request
    (ERR, exception)     it failed: the exception, pickled (or a stand-in when it cannot be)
    (HOSTERR, token, copy)  parent -> worker: the host function raised; the parent keeps the
                         exception object under ``token``; the worker raises ``copy`` (pickled,
                         or None: a HostError) tagged with the token
    (HOSTEXC, token)     worker -> parent: the call failed because of that host exception

Either side may send a request while it waits for an answer (a host function
called by wasm, which calls back into wasm ...): the waiting side serves it and
keeps waiting, so nesting is as deep as the two call stacks.

Reference values cross as handles: a ``funcref`` is a :class:`FuncRef` naming an
object in the worker's table; an ``externref`` is an :class:`ExternRef` token for
a Python object that stays in the parent (wasm only passes it around).
"""

from __future__ import annotations

import marshal
import pickle
import sys
from typing import Any

REQ, OK, ERR, HOSTERR, HOSTEXC = 0, 1, 2, 3, 4
PICKLE_PROTOCOL = 5  # the newest protocol both 3.10 and later understand

dumps = pickle.dumps
loads = pickle.loads
_PICKLED = 0x80  # the first byte of every pickle (protocol >= 2); never the first byte of a marshal


def encode(msg: tuple) -> bytes:
    """A message as bytes: marshal for plain data (the common case: ints, floats, bytes, tuples),
    pickle when it holds anything else (types, handles, exceptions)."""
    try:
        return marshal.dumps(msg)
    except ValueError:
        return pickle.dumps(msg, PICKLE_PROTOCOL)


def decode(data: bytes) -> Any:
    return pickle.loads(data) if data[0] == _PICKLED else marshal.loads(data)


#: Python frames a request's own conversation may still need below it (sending, receiving,
#: decoding, and the start of serving a nested request, whose own request checks again).
_HEADROOM = 150


def check_headroom() -> None:
    """Raise RecursionError *before* a request is sent when the stack is near Python's limit.

    Either side calls this for a deeply nested request (host <-> wasm recursion without end,
    on a runtime without a stack limit of its own, such as wasmer). Running out of stack
    after the request went out (while waiting for or decoding the answer) would leave the
    answer unread and the conversation out of step; refused before sending, the recursion
    unwinds through the host calls like any other exception.
    """
    try:
        sys._getframe(sys.getrecursionlimit() - _HEADROOM)
    except ValueError:
        return  # not that deep
    raise RecursionError("host <-> wasm recursion too deep: the Python stack is nearly full")


class FuncRef:
    """A function of the worker's object table (``ty`` travels worker -> parent)."""

    __slots__ = ("oid", "ty")

    def __init__(self, oid: int, ty: Any = None) -> None:
        self.oid = oid
        self.ty = ty

    def __reduce__(self) -> Any:
        return (FuncRef, (self.oid, self.ty))


class ExternRef:
    """An externref payload in the worker standing for parent object ``key``."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key

    def __reduce__(self) -> Any:
        return (ExternRef, (self.key,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExternRef) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("ExternRef", self.key))


class HostError(Exception):
    """Raised in the worker by a host-function trampoline whose parent function raised."""

    def __init__(self, token: int) -> None:
        super().__init__(f"host function raised (exception #{token} is kept by the parent)")
        self.token = token


class _Rebuilt:
    """An exception whose class cannot be pickled the usual way (a constructor with other arguments):
    its class, ``args`` and attributes, rebuilt without calling ``__init__``."""

    def __init__(self, module: str, qualname: str, args: tuple, state: dict) -> None:
        self.module, self.qualname, self.args, self.state = module, qualname, args, state


def encode_exception(exc: BaseException) -> bytes:
    """The pickled exception; else its class, args and attributes; else a RuntimeError naming it."""
    try:
        data = dumps(exc, PICKLE_PROTOCOL)
        loads(data)  # some exceptions pickle but cannot be rebuilt
        return data
    except Exception:  # noqa: BLE001, S110 - rebuilt below from its class, args and attributes
        pass
    t = type(exc)
    state = {k: v for k, v in getattr(exc, "__dict__", {}).items() if not k.startswith("__")}
    for attempt in (state, {}):
        try:
            return dumps(_Rebuilt(t.__module__, t.__qualname__, exc.args, attempt), PICKLE_PROTOCOL)
        except Exception:  # noqa: BLE001, S112 - an attribute that does not pickle: try without them
            continue
    stand_in = RuntimeError(f"{t.__module__}.{t.__qualname__}: {exc}")
    return dumps(stand_in, PICKLE_PROTOCOL)


def decode_exception(data: bytes) -> BaseException:
    try:
        exc = loads(data)
    except Exception as e:  # noqa: BLE001 - a class the parent cannot import, say
        return RuntimeError(f"an exception from the worker could not be rebuilt: {e}")
    if isinstance(exc, _Rebuilt):
        try:
            import importlib

            cls: Any = importlib.import_module(exc.module)
            for part in exc.qualname.split("."):
                cls = getattr(cls, part)
            rebuilt = cls.__new__(cls)
            rebuilt.args = exc.args
            rebuilt.__dict__.update(exc.state)
            return rebuilt
        except Exception as e:  # noqa: BLE001
            return RuntimeError(f"{exc.module}.{exc.qualname}{exc.args!r} (not rebuilt: {e})")
    if not isinstance(exc, BaseException):
        return RuntimeError(f"the worker sent a non-exception as an error: {exc!r}")
    return exc
