"""Loading the native module (built on first use) and starting V8 once per process."""

from __future__ import annotations

import os
import threading

from proxywasm_vm._errors import BackendUnavailable

from . import _build

HOW_TO_ENABLE = "bash ci/setup_v8.sh (installs libnode and builds the V8 shim)"

node = _build.find_libnode()
if node is None:
    raise BackendUnavailable("v8", "libnode (Debian's libnode-dev: V8 10.2/11.3) is not installed", HOW_TO_ENABLE)
try:
    native = _build.load(node)
except BackendUnavailable:
    raise
except Exception as e:  # no compiler, a missing runtime library of libnode, ...
    raise BackendUnavailable("v8", f"cannot build or load the V8 shim: {' '.join(str(e).split())[:300]}",
                             HOW_TO_ENABLE) from e

ffi = native.ffi
lib = native.lib
FAIL = lib.PWV8_FAIL

_init_lock = threading.Lock()
_started: dict[str, bool] = {}


def start(signals_based_traps: bool) -> bool:
    """Initialise V8 (platform, flags, trap handler) the first time an engine is made.

    Once per process and never undone: the first engine decides whether
    out-of-bounds accesses are caught by guard pages and a SIGSEGV handler or
    by explicit bounds checks. Returns the mode in force.
    """
    with _init_lock:
        if "signals" not in _started:
            flags = os.environ.get("PWVM_V8_FLAGS", "").encode()
            if lib.pwv8_init(flags, 1 if signals_based_traps else 0) != 0:
                raise BackendUnavailable("v8", last_error(), HOW_TO_ENABLE)
            from ._func import install_trampolines

            install_trampolines()
            _started["signals"] = signals_based_traps
        return _started["signals"]


def last_error() -> str:
    return ffi.string(lib.pwv8_last_error()).decode(errors="replace")


def version() -> str:
    return ffi.string(lib.pwv8_version()).decode()
