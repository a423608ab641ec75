"""Proxy-Wasm ABI constants and ABI-version detection.

Values follow the Proxy-Wasm specification (ABI 0.1.0, 0.2.0, 0.2.1).
"""

from __future__ import annotations

import enum

__all__ = [
    "AbiVersion", "Status", "LogLevel", "Action", "BufferType", "MapType", "StreamType", "MetricType",
    "PeerType", "detect_abi",
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
