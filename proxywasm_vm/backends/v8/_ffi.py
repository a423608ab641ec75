"""Loading the native module (built on first use) and starting V8 once per process.

This package is imported twice when ``v8@namespace`` is used: as
``proxywasm_vm.backends.v8`` (the in-process copy of the shim and V8) and
again as :data:`NAMESPACE_PACKAGE` (see ``__init__``), whose ``_ffi`` imports
its own cffi module and loads a second copy of the shim, libnode and V8 into a
new linker namespace.  Everything below is per copy.
"""

from __future__ import annotations

import threading

from proxywasm_vm._errors import BackendUnavailable
from proxywasm_vm._settings import v8_flags

from . import _build

HOW_TO_ENABLE = "run `pwvm setup v8` (it needs libnode: apt install libnode-dev g++)"
NAMESPACE_PACKAGE = "proxywasm_vm.backends._v8_namespace"
NAMESPACE = __package__ == NAMESPACE_PACKAGE
"""Whether this is the copy in its own linker namespace."""
NAME = "v8@namespace" if NAMESPACE else "v8"

_found = _build.find_libnode()
if _found is None:
    raise BackendUnavailable(NAME, "libnode (V8 10.2 or 11.3, with its headers) was not found", _build.HOW_TO_GET_LIBNODE)
node: _build.Libnode = _found
try:
    native = _build.load(node, namespace=NAMESPACE)
    _path = str(_build.library(node))
except BackendUnavailable:
    raise
except Exception as e:  # no compiler, ...
    raise BackendUnavailable(NAME, f"cannot build or load the V8 shim: {' '.join(str(e).split())[:300]}",
                             HOW_TO_ENABLE) from e
_err = native.lib.pwv8_open(_path.encode(), 1 if NAMESPACE else 0)
if _err != native.ffi.NULL:  # a missing runtime library of libnode, the namespace table full, ...
    _why = " ".join(native.ffi.string(_err).decode(errors="replace").split())[:300]
    if NAMESPACE:
        raise BackendUnavailable(NAME, f"{_why} (a process holds about 10 linker namespaces, wasmtime@namespace "
                                 "copies included)", "use isolation='process'")
    raise BackendUnavailable(NAME, f"cannot load the V8 shim: {_why}", HOW_TO_ENABLE)

ffi = native.ffi
lib = native.lib
FAIL = lib.PWV8_FAIL

_init_lock = threading.Lock()
_started: dict[str, bool] = {}

#: V8 flags set before any user flags (``PWVM_V8_FLAGS``, which may undo them). V8 10.2 and
#: 11.3 ship the legacy exception-handling proposal (``try``/``catch``, a tag section) enabled;
#: wasmtime rejects it, and a plugin must not compile on one runtime and fail on another, so
#: V8 gets the same feature set here. (Found by tests/fuzz: mutated code bodies with ``try``.)
DEFAULT_FLAGS = "--no-experimental-wasm-eh "


def start(signals_based_traps: bool) -> bool:
    """Initialise V8 (platform, flags, trap handler) the first time an engine is made.

    Once per process (per copy of V8) and never undone: the first engine decides whether
    out-of-bounds accesses are caught by guard pages and a SIGSEGV handler or
    by explicit bounds checks. Returns the mode in force.
    """
    with _init_lock:
        if "signals" not in _started:
            flags = (DEFAULT_FLAGS + v8_flags()).encode()
            if lib.pwv8_init(flags, 1 if signals_based_traps else 0) != 0:
                raise BackendUnavailable(NAME, last_error(), HOW_TO_ENABLE)
            from ._func import install_trampolines

            install_trampolines()
            _started["signals"] = signals_based_traps
        return _started["signals"]


def last_error() -> str:
    return ffi.string(lib.pwv8_last_error()).decode(errors="replace")


def version() -> str:
    return ffi.string(lib.pwv8_version()).decode()
