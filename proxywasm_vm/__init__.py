"""proxywasm-vm: WebAssembly runtimes behind one wasm-c-api-shaped interface.

>>> from proxywasm_vm import Engine, Module, Store, Instance
>>> engine = Engine()                       # wasmtime; Engine("v8") picks another backend
>>> module = Module(engine, '(module (func (export "add") (param i32 i32) (result i32)'
...                         ' local.get 0 local.get 1 i32.add))')
>>> Instance(Store(engine), module).exports["add"](2, 3)
5
"""

from ._backend import Backend, BackendInfo, Capabilities, available_backends, backend_names, get_backend, register_backend
from ._engine import DEFAULT_BACKEND, Engine, EngineConfig
from ._errors import BackendUnavailable, CompileError, LimitError, LinkError, Trap, TrapCode, WasmError, WorkerCrashed
from ._func import Caller, Func
from ._global import Global
from ._instance import Exports, Instance
from ._linker import Linker
from ._memory import PAGE_SIZE, Memory
from ._module import Module, wat2wasm
from ._store import Store, StoreLimits
from ._table import Table
from ._types import ExportType, ExternType, FuncType, GlobalType, ImportType, Limits, MemoryType, TableType, ValType

# The Proxy-Wasm host (proxywasm_vm/_proxywasm): plugins, streams and host services.
from ._proxywasm import (AbiError, AbiVersion, Action, BufferType, CallbackHttpDispatcher, CallbackSignatureError,
                         Clock, ForeignFunctionError,
                         ForeignFunctions, GrpcDispatcher, GrpcEvents, GrpcHandle, GrpcioDispatcher, HeaderMap,
                         HostLimits, HttpCallRequest, HttpCallResponse, HttpDispatcher, HttpMessage, HttpStream,
                         HttpxDispatcher, LocalResponse, Logger, LogLevel, LogRecord, ManualClock, MapType,
                         MemoryLogger, Metric, Metrics, MetricType, PeerType, Plugin, PluginConfig, PluginCrash,
                         PluginExit, PluginStartError, ProxyWasmError, ProxyWasmHost, RedisSharedData,
                         RedisSharedQueues, Scheduler, SharedData, SharedQueues, SharedStoreError, Status, StreamType, SystemClock, TcpDirection, TcpStream, UnknownGrpcUpstream,
                         UnknownUpstream, parse_pairs, redis_shared, serialize_pairs)

__version__ = "0.1.0"

__all__ = [
    "Backend", "BackendInfo", "BackendUnavailable", "Capabilities", "Caller", "CompileError", "DEFAULT_BACKEND",
    "Engine", "EngineConfig", "ExportType", "Exports", "ExternType", "Func", "FuncType", "Global", "GlobalType",
    "ImportType", "Instance", "LimitError", "Limits", "LinkError", "Linker", "Memory", "MemoryType", "Module",
    "PAGE_SIZE", "Store", "StoreLimits", "Table", "TableType", "Trap", "TrapCode", "ValType", "WasmError",
    "WorkerCrashed", "available_backends", "backend_names", "get_backend", "register_backend", "wat2wasm", "__version__",
    # Proxy-Wasm host
    "AbiError", "AbiVersion", "Action", "BufferType", "CallbackHttpDispatcher", "Clock", "ForeignFunctionError",
    "ForeignFunctions", "GrpcDispatcher", "GrpcEvents", "GrpcHandle", "GrpcioDispatcher", "HeaderMap", "HostLimits",
    "HttpCallRequest", "HttpCallResponse", "HttpDispatcher", "HttpMessage", "HttpStream", "HttpxDispatcher",
    "LocalResponse", "LogLevel", "LogRecord", "Logger", "ManualClock", "MapType", "MemoryLogger", "Metric",
    "MetricType", "Metrics", "PeerType", "Plugin", "PluginConfig", "PluginCrash", "PluginExit", "PluginStartError",
    "ProxyWasmError", "ProxyWasmHost", "Scheduler", "SharedData", "SharedQueues", "Status", "StreamType", "SystemClock",
    "TcpDirection", "TcpStream", "UnknownGrpcUpstream", "UnknownUpstream", "parse_pairs", "serialize_pairs",
    "CallbackSignatureError", "RedisSharedData", "RedisSharedQueues", "SharedStoreError", "redis_shared",
]
