"""Errors of the Proxy-Wasm host.

::

    WasmError (proxywasm_vm)
    └── ProxyWasmError
        ├── AbiError            the module is not a Proxy-Wasm plugin this host supports
        │   └── CallbackSignatureError  a callback export has a signature no ABI version defines
        ├── PluginStartError    start-up failed (_initialize/_start trapped, vm_start/configure said false)
        └── PluginCrash         the plugin failed during a callback (trap, abort, proc_exit)
            └── PluginExit      ... by calling WASI proc_exit
"""

from __future__ import annotations

from .._errors import WasmError

__all__ = ["ProxyWasmError", "AbiError", "CallbackSignatureError", "PluginStartError", "PluginCrash", "PluginExit"]


class ProxyWasmError(WasmError):
    """Base class of the Proxy-Wasm host's errors."""


class AbiError(ProxyWasmError):
    """The module exports no supported ``proxy_abi_version_*`` marker (or is unusable as a plugin)."""


class CallbackSignatureError(AbiError):
    """A callback export (``proxy_on_request_headers`` ...) has a signature no Proxy-Wasm ABI
    version defines for it: the module is refused at load, before anything of it runs.

    ``export`` is its name, ``allowed`` the signatures by ABI version
    (``{AbiVersion: ((params...), (results...))}``, see ``CALLBACK_SIGNATURES``).
    """

    def __init__(self, message: str, *, export: str, allowed: dict) -> None:
        super().__init__(message)
        self.export = export
        self.allowed = allowed


class PluginStartError(ProxyWasmError):
    """A VM or plugin could not start.

    ``phase`` is one of ``"instantiate"``, ``"initialize"``, ``"vm_start"``, ``"configure"``;
    ``cause`` the underlying exception, if any.
    """

    def __init__(self, message: str, *, phase: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.cause = cause


class PluginCrash(ProxyWasmError):
    """The plugin failed inside a callback; its VM is marked failed.

    ``callback`` names the export that was running, ``context_id`` the context,
    ``cause`` the underlying :class:`~proxywasm_vm.Trap` or exception.
    """

    def __init__(self, message: str, *, callback: str = "", context_id: int = 0,
                 cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.callback = callback
        self.context_id = context_id
        self.cause = cause


class PluginExit(PluginCrash):
    """The plugin called WASI ``proc_exit`` (``exit_code``) or an AssemblyScript ``abort``."""

    def __init__(self, exit_code: int, message: str = "", **kw) -> None:
        super().__init__(message or f"plugin exited with code {exit_code}", **kw)
        self.exit_code = exit_code


class _GuestExit(BaseException):
    """Raised by proc_exit/abort inside a host function; unwinds the wasm stack.

    A BaseException so that no host-function guard turns it into a status code.
    """

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"proc_exit({code})")
        self.code = code
        self.message = message
