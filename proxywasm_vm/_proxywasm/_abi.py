"""Proxy-Wasm ABI constants and ABI-version detection.

Values follow the Proxy-Wasm specification (ABI 0.1.0, 0.2.0, 0.2.1).
"""

from __future__ import annotations

import enum

__all__ = [
    "AbiVersion", "Status", "LogLevel", "Action", "BufferType", "MapType", "StreamType", "MetricType",
    "PeerType", "detect_abi", "CALLBACK_SIGNATURES", "callback_signature_error",
]


class AbiVersion(enum.Enum):
    """The Proxy-Wasm ABI a module was built for (from its ``proxy_abi_version_*`` export)."""

    V0_1_0 = "0.1.0"
    V0_2_0 = "0.2.0"
    V0_2_1 = "0.2.1"

    @property
    def marker(self) -> str:
        """The export name that advertises this version."""
        return "proxy_abi_version_" + self.value.replace(".", "_")


_MARKERS = {v.marker: v for v in AbiVersion}


def detect_abi(export_names) -> AbiVersion | None:
    """The newest ABI version whose marker is among ``export_names`` (``None`` if none is)."""
    found = [_MARKERS[n] for n in export_names if n in _MARKERS]
    if not found:
        return None
    order = list(AbiVersion)
    return max(found, key=order.index)


# -- callback signatures -------------------------------------------------------------------------

def _sig(params: int, result: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return ("i32",) * params, ("i32",) if result else ()


_ALL = tuple(AbiVersion)
_V02 = (AbiVersion.V0_2_0, AbiVersion.V0_2_1)

#: The callback exports the host calls, with the signature ``(params, results)`` each ABI version
#: defines for them (every value an ``i32``), from the Proxy-Wasm specification
#: (``abi-versions/v0.1.0``, ``v0.2.0``, ``v0.2.1``). The only change between versions: the HTTP
#: header callbacks gained ``end_of_stream`` in 0.2.0. ``proxy_on_foreign_function`` is a 0.2.x
#: callback of proxy-wasm-cpp-host (Envoy); ``proxy_on_grpc_trailing_metadata`` is the solo-io
#: AssemblyScript SDK's name for ``proxy_on_grpc_receive_trailing_metadata``; ``malloc`` the
#: allocator 0.1.0 names before ``proxy_on_memory_allocate``.
CALLBACK_SIGNATURES: dict[str, dict[AbiVersion, tuple[tuple[str, ...], tuple[str, ...]]]] = {}
for _names, _versions, _s in [
    (("proxy_on_memory_allocate", "malloc"), _ALL, _sig(1, True)),
    (("proxy_on_context_create",), _ALL, _sig(2, False)),
    (("proxy_on_vm_start", "proxy_on_configure"), _ALL, _sig(2, True)),
    (("proxy_on_done", "proxy_on_new_connection"), _ALL, _sig(1, True)),
    (("proxy_on_log", "proxy_on_delete", "proxy_on_tick"), _ALL, _sig(1, False)),
    (("proxy_on_downstream_data", "proxy_on_upstream_data", "proxy_on_request_body", "proxy_on_response_body"),
     _ALL, _sig(3, True)),
    (("proxy_on_downstream_connection_close", "proxy_on_upstream_connection_close", "proxy_on_queue_ready"),
     _ALL, _sig(2, False)),
    (("proxy_on_request_trailers", "proxy_on_response_trailers"), _ALL, _sig(2, True)),
    (("proxy_on_request_headers", "proxy_on_response_headers"), (AbiVersion.V0_1_0,), _sig(2, True)),
    (("proxy_on_request_headers", "proxy_on_response_headers"), _V02, _sig(3, True)),
    (("proxy_on_http_call_response",), _ALL, _sig(5, False)),
    (("proxy_on_grpc_receive_initial_metadata", "proxy_on_grpc_receive", "proxy_on_grpc_receive_trailing_metadata",
      "proxy_on_grpc_trailing_metadata", "proxy_on_grpc_close"), _ALL, _sig(3, False)),
    (("proxy_on_foreign_function",), _V02, _sig(3, False)),
]:
    for _n in _names:
        for _v in _versions:
            CALLBACK_SIGNATURES.setdefault(_n, {})[_v] = _s


def _fmt(sig: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    return f"({', '.join(sig[0])}) -> ({', '.join(sig[1])})"


def callback_signature_error(name: str, functype: object) -> str | None:
    """Why export ``name`` (of ``functype``, a FuncType or any other extern type) cannot be the
    callback of that name, or None when some ABI version defines its signature (or the name is
    no callback). SDKs mix versions (0.1.0 header callbacks in a 0.2.x module ...), so any
    version's signature is accepted, whatever the module's marker."""
    allowed = CALLBACK_SIGNATURES.get(name)
    if allowed is None:
        return None
    params = getattr(functype, "params", None)
    if params is None:
        found = f"a {type(functype).__name__}, not a function"
    else:
        sig = (tuple(getattr(v, "value", str(v)) for v in params),
               tuple(getattr(v, "value", str(v)) for v in functype.results))  # type: ignore[attr-defined]
        if sig in allowed.values():
            return None
        found = f"signature {_fmt(sig)}"
    spec = "; ".join(f"{v.value}: {_fmt(s)}" for v, s in allowed.items())
    return f"export {name!r} has {found}, which no Proxy-Wasm ABI version defines for it (ABI {spec})"


class Status(enum.IntEnum):
    """``proxy_status_t`` (a.k.a. WasmResult): what every ``proxy_*`` host function returns."""

    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    BAD_EXPRESSION = 5
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    RESULT_MISMATCH = 9
    INTERNAL_FAILURE = 10
    BROKEN_CONNECTION = 11
    UNIMPLEMENTED = 12


class LogLevel(enum.IntEnum):
    """``proxy_log_level_t``."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class Action(enum.IntEnum):
    """What a stream callback asked for: go on (``CONTINUE``) or stop here (``PAUSE``).

    SDK-specific values (Envoy's ``StopAllIterationAndBuffer`` ...) are folded in:
    0 and 2 (``ContinueAndEndStream``) are ``CONTINUE``, everything else ``PAUSE``.
    """

    CONTINUE = 0
    PAUSE = 1


class BufferType(enum.IntEnum):
    """``proxy_buffer_type_t``."""

    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_RECEIVE_BUFFER = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    FOREIGN_FUNCTION_ARGUMENTS = 8


class MapType(enum.IntEnum):
    """``proxy_map_type_t``."""

    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_RECEIVE_INITIAL_METADATA = 4
    GRPC_RECEIVE_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class StreamType(enum.IntEnum):
    """``proxy_stream_type_t``."""

    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType(enum.IntEnum):
    """``proxy_metric_type_t``."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class PeerType(enum.IntEnum):
    """``proxy_peer_type_t``: who closed a TCP connection."""

    UNKNOWN = 0
    LOCAL = 1
    REMOTE = 2


# WASI errno values used by the host.
WASI_SUCCESS = 0
WASI_BADF = 8
WASI_FAULT = 21
WASI_INVAL = 28
WASI_NOSYS = 52
WASI_NOTSUP = 58
WASI_SPIPE = 70
