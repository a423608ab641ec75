"""The exception hierarchy.

Every error a backend raises is one of these, whatever runtime produced it::

    WasmError
    ├── CompileError          malformed or invalid module bytes, or a feature that is off
    ├── FeatureUnsupported    an engine asked for a wasm feature its runtime cannot run
    ├── LinkError             a missing or mistyped import
    ├── Trap                  wasm execution stopped; ``.code`` says why
    ├── LimitError            a store limit refused a memory/table grow from Python
    ├── BackendUnavailable    the backend cannot be loaded here; says how to enable it
    └── WorkerCrashed         the worker process running the engine died (or was lost with it)

A Python exception raised by a host function is re-raised unchanged from the
call into wasm that led to it (the same object, with a note naming the host
function), so ``except ValueError`` works across the wasm boundary.
"""

from __future__ import annotations

import enum

__all__ = [
    "WasmError",
    "CompileError",
    "FeatureUnsupported",
    "LinkError",
    "Trap",
    "TrapCode",
    "LimitError",
    "BackendUnavailable",
    "WorkerCrashed",
]


class WasmError(Exception):
    """Base class of every error raised by proxywasm_vm."""


class CompileError(WasmError):
    """The module bytes are malformed, invalid, or use an unsupported feature.

    ``offset`` is the byte offset in the module where the problem was found, when known;
    ``feature`` names the wasm feature (a :class:`~proxywasm_vm.WasmFeatures` field, e.g.
    ``"tail_call"``) the module uses while the engine has it off or its runtime cannot run it,
    else ``None`` (the bytes are malformed or invalid).
    """

    def __init__(self, message: str, *, offset: int | None = None, feature: str | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.feature = feature

    def __reduce__(self):  # picklable for the worker transport, with its fields
        return (_rebuild_compile_error, (str(self), self.offset, self.feature))


def _rebuild_compile_error(message: str, offset: int | None, feature: str | None) -> CompileError:
    return CompileError(message, offset=offset, feature=feature)


class FeatureUnsupported(WasmError):
    """An engine was asked for wasm features its runtime cannot run (raised by ``Engine()``).

    ``backend`` is the backend id, ``features`` the names it cannot enable.
    """

    def __init__(self, backend: str, features: frozenset[str] | set[str]) -> None:
        self.backend = backend
        self.features = frozenset(features)
        super().__init__(f"the {backend} backend cannot run wasm feature(s) {', '.join(sorted(self.features))} "
                         "(see its Capabilities.features); switch them off in EngineConfig.features")

    def __reduce__(self):
        return (FeatureUnsupported, (self.backend, self.features))


class LinkError(WasmError):
    """Instantiation failed because an import is missing or has the wrong type.

    ``module`` and ``name`` name the import; ``expected`` is the type the module
    declares and ``actual`` what was supplied (``None`` when missing).
    """

    def __init__(self, message: str, *, module: str | None = None, name: str | None = None,
                 expected: object = None, actual: object = None) -> None:
        super().__init__(message)
        self.module = module
        self.name = name
        self.expected = expected
        self.actual = actual


class TrapCode(enum.Enum):
    """Why wasm execution stopped."""

    UNREACHABLE = "unreachable"
    MEMORY_OUT_OF_BOUNDS = "memory out of bounds"
    TABLE_OUT_OF_BOUNDS = "table out of bounds"
    INDIRECT_CALL_TO_NULL = "indirect call to null"
    INDIRECT_CALL_TYPE_MISMATCH = "indirect call type mismatch"
    INTEGER_DIVIDE_BY_ZERO = "integer divide by zero"
    INTEGER_OVERFLOW = "integer overflow"
    BAD_CONVERSION_TO_INTEGER = "bad conversion to integer"
    STACK_OVERFLOW = "stack overflow"
    HEAP_MISALIGNED = "misaligned memory access"
    OUT_OF_FUEL = "out of fuel"
    INTERRUPTED = "interrupted (deadline exceeded)"
    MEMORY_LIMIT = "memory limit exceeded"
    HOST_ERROR = "host error"
    UNKNOWN = "unknown"


class Trap(WasmError):
    """WebAssembly execution trapped.

    ``code`` is a :class:`TrapCode`; ``message`` the runtime's own text. For
    :attr:`TrapCode.HOST_ERROR` raised across a process boundary, ``exception``
    holds the original exception when it could be carried over.
    """

    def __init__(self, code: TrapCode, message: str = "", *, exception: BaseException | None = None) -> None:
        self.code = code
        self.message = message or code.value
        self.exception = exception
        super().__init__(f"wasm trap: {code.value}" + (f": {message}" if message and message != code.value else ""))

    def __reduce__(self):  # picklable for the worker transport
        return (_rebuild_trap, (self.code.value, self.message))


def _rebuild_trap(code: str, message: str) -> Trap:
    return Trap(TrapCode(code), message)


class LimitError(WasmError):
    """A store limit (memory bytes, table elements) refused a grow asked from Python."""


class BackendUnavailable(WasmError):
    """The requested backend cannot run on this machine.

    The message says why and how to enable it (for example the set-up command).
    """

    def __init__(self, backend: str, reason: str, how_to_enable: str = "") -> None:
        self.backend = backend
        self.reason = reason
        self.how_to_enable = how_to_enable
        msg = f"backend {backend!r} is unavailable: {reason}"
        if how_to_enable:
            msg += f" (to enable it: {how_to_enable})"
        super().__init__(msg)


class WorkerCrashed(WasmError):
    """The worker process of an engine (``isolation="process"``) died.

    Raised by the call in flight when the worker dies (killed or crashed),
    and by any later use of a store, instance or extern that lived in that
    worker (also after the engine option ``call_timeout`` stopped one, whose
    call raised ``Trap(INTERRUPTED)``): those are gone with it. The engine itself
    recovers: its next call starts a new worker and reloads its modules (from
    the compiled-module cache where the backend can). ``pid`` is the dead
    worker's process id and ``signal`` the signal that ended it, if any.
    """

    def __init__(self, message: str, *, pid: int | None = None, signal: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.signal = signal
