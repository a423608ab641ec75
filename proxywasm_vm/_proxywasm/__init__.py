"""The Proxy-Wasm host: runs Proxy-Wasm plugins (ABI 0.1.0, 0.2.0, 0.2.1) on any backend.

Built only on the runtime-neutral interface of :mod:`proxywasm_vm`. The
public names are re-exported from the package root.
"""

from ._abi import AbiVersion, Action, BufferType, LogLevel, MapType, MetricType, PeerType, Status, StreamType
from ._errors import AbiError, PluginCrash, PluginExit, PluginStartError, ProxyWasmError
from ._errors import CallbackSignatureError
from ._grpc import GrpcDispatcher, GrpcEvents, GrpcHandle, GrpcioDispatcher, UnknownGrpcUpstream
from ._http import (CallbackHttpDispatcher, HttpCallRequest, HttpCallResponse, HttpDispatcher, HttpxDispatcher,
                    UnknownUpstream)
from ._limits import HostLimits
from ._pairs import HeaderMap, parse_pairs, serialize_pairs
from ._plugin import Plugin, PluginConfig, ProxyWasmHost
from ._redis import RedisSharedData, RedisSharedQueues, SharedStoreError, redis_shared
from ._services import (Clock, ForeignFunctionError, ForeignFunctions, Logger, LogRecord, ManualClock, MemoryLogger,
                        Metric, Metrics, Scheduler, SharedData, SharedQueues, SystemClock)
from ._streams import HttpMessage, HttpStream, LocalResponse, TcpDirection, TcpStream

__all__ = [
    "AbiError", "AbiVersion", "Action", "BufferType", "CallbackHttpDispatcher", "Clock", "ForeignFunctionError",
    "ForeignFunctions", "GrpcDispatcher", "GrpcEvents", "GrpcHandle", "GrpcioDispatcher", "HeaderMap", "HostLimits",
    "HttpCallRequest", "HttpCallResponse", "HttpDispatcher", "HttpMessage", "HttpStream", "HttpxDispatcher",
    "LocalResponse", "LogLevel", "LogRecord", "Logger", "ManualClock", "MapType", "MemoryLogger", "Metric",
    "MetricType", "Metrics", "PeerType", "Plugin", "PluginConfig", "PluginCrash", "PluginExit", "PluginStartError",
    "ProxyWasmError", "ProxyWasmHost", "Scheduler", "SharedData", "SharedQueues", "Status", "StreamType", "SystemClock",
    "TcpDirection", "TcpStream", "UnknownGrpcUpstream", "UnknownUpstream", "parse_pairs", "serialize_pairs",
]
__all__ += ["CallbackSignatureError", "RedisSharedData", "RedisSharedQueues", "SharedStoreError", "redis_shared"]
