"""``pwvm inspect``: what a Proxy-Wasm module is, read from its bytes.

The ABI version, the likely language and SDK, the imports grouped (Proxy-Wasm, WASI, other) with
any this host does not provide flagged, the exported callbacks, the wasm features its types and
sections use, sizes, and (on request) the compile time on each backend. Everything but the
compile times comes from the module's bytes: nothing is instantiated.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterable

from ._errors import CompileError, LinkError, WasmError
from ._proxywasm._abi import CALLBACK_SIGNATURES, AbiVersion, callback_signature_error, detect_abi
from ._proxywasm._hostcalls import check_imports
from ._types import FuncType, GlobalType, MemoryType, TableType, ValType
from ._wasmparse import Reader, parse_module, sections

__all__ = ["ModuleReport", "inspect_wasm", "compile_times", "read_wasm_file"]

WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
# The start-up exports a host calls before the root context (reactor / command).
START_EXPORTS = ("_initialize", "_start")
ALLOCATORS = ("proxy_on_memory_allocate", "malloc")
# What a plugin filters, by the stream callbacks it exports (Envoy: an HTTP or a network filter).
_KINDS = {
    "http": ("proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers",
             "proxy_on_response_headers", "proxy_on_response_body", "proxy_on_response_trailers"),
    "network": ("proxy_on_new_connection", "proxy_on_downstream_data", "proxy_on_upstream_data"),
}


def read_wasm_file(path: str) -> bytes:
    """The binary module in ``path`` (``.wat`` text is converted). Raises ``OSError`` when the
    file cannot be read and :class:`CompileError` when it is not WebAssembly."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"\0asm":
        return data
    if path.endswith(".wat") or data.lstrip()[:1] == b"(":
        from ._module import wat2wasm

        try:
            return wat2wasm(data.decode("utf-8"))
        except (UnicodeDecodeError, WasmError, ValueError) as e:
            raise CompileError(f"not valid WebAssembly text: {str(e).splitlines()[0] if str(e) else e}") from None
    raise CompileError("not a WebAssembly module (no \\0asm magic number, and not WebAssembly text)")


@dataclass
class ImportReport:
    module: str
    name: str
    type: str
    group: str  # "proxy-wasm", "wasi" or "other"
    missing: str | None = None  # why this host cannot provide it (None: it does)


@dataclass
class ModuleReport:
    """What :func:`inspect_wasm` found (``to_json()`` for ``--json``)."""

    size: int
    abi: str | None
    abi_markers: list[str]
    language: str
    sdk: str | None
    evidence: list[str]
    startup: list[str]
    imports: list[ImportReport]
    callbacks: list[str]
    filter_kinds: list[str]  # "http" and/or "network", from the callbacks exported
    uncalled_callbacks: list[str]
    bad_callbacks: list[str]
    other_exports: list[str]
    features: list[str]
    sections: dict[str, int]
    memory: str
    producers: dict[str, list[str]] = field(default_factory=dict)
    compile: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def missing_imports(self) -> list[ImportReport]:
        return [i for i in self.imports if i.missing]

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size, "abi": self.abi, "abi_markers": self.abi_markers, "language": self.language,
            "sdk": self.sdk, "evidence": self.evidence, "startup": self.startup,
            "imports": {g: [{"module": i.module, "name": i.name, "type": i.type, "provided": i.missing is None,
                             **({"missing": i.missing} if i.missing else {})}
                            for i in self.imports if i.group == g] for g in ("proxy-wasm", "wasi", "other")},
            "callbacks": self.callbacks, "filter_kinds": self.filter_kinds, "uncalled_callbacks": self.uncalled_callbacks, "bad_callbacks": self.bad_callbacks, "other_exports": self.other_exports,
            "features": self.features, "sections": self.sections, "memory": self.memory,
            "producers": self.producers, "compile": self.compile,
        }


def _type_str(t: Any) -> str:
    if isinstance(t, FuncType):
        return f"func ({', '.join(v.value for v in t.params)}) -> ({', '.join(v.value for v in t.results)})"
    if isinstance(t, MemoryType):
        return f"memory {_limits(t)}"
    if isinstance(t, TableType):
        return f"table {t.element.value} {t.limits.min}..{t.limits.max if t.limits.max is not None else ''}"
    if isinstance(t, GlobalType):
        return f"global {'mut ' if t.mutable else ''}{t.content.value}"
    return str(t)


def _limits(m: MemoryType) -> str:
    hi = f"{m.limits.max} pages" if m.limits.max is not None else "no maximum"
    return f"{m.limits.min} pages ({m.limits.min * 64} KiB) .. {hi}"


def _group(module: str, name: str) -> str:
    if module in WASI_MODULES:
        return "wasi"
    if module == "env" and name.startswith("proxy_"):
        return "proxy-wasm"
    return "other"


def _missing(imp: Any) -> str | None:
    """Why this host cannot link ``imp``: the host's own check (``check_imports``), one import at a time."""
    try:
        check_imports(SimpleNamespace(imports=[imp]))
    except LinkError as e:
        return str(e)
    return None


def _producers(custom: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    """The ``producers`` custom section (tool-conventions/ProducersSection.md): field -> ["name version"]."""
    out: dict[str, list[str]] = {}
    for name, payload in custom:
        if name != "producers":
            continue
        try:
            r = Reader(payload)
            for _ in range(r.u32()):
                fld = r.name()
                for _ in range(r.u32()):
                    value, version = r.name(), r.name()
                    out.setdefault(fld, []).append(f"{value} {version}".strip())
        except CompileError:
            pass  # a malformed producers section tells nothing; the module may still be fine
    return out


# SDK fingerprints: text an SDK leaves in the module (function names in the name section, source
# paths in panic messages, AssemblyScript's UTF-16 "~lib/<package>/" file names).
_AS_LIB = re.compile(rb"~\x00l\x00i\x00b\x00/\x00((?:[ -~]\x00)+?)/\x00")
_RUST_CRATE = re.compile(rb"proxy-wasm-(\d+\.\d+\.\d+)")


def _identify(data: bytes, custom: list[tuple[str, bytes]], producers: dict[str, list[str]], imports: list,
              exports: list) -> tuple[str, str | None, list[str]]:
    """(language, sdk, evidence) from producers, custom sections, import/export names and fingerprints."""
    evidence: list[str] = []
    language = ""
    sdk: str | None = None
    custom_names = {n for n, _ in custom}
    names = {e.name for e in exports}
    imported = {(i.module, i.name) for i in imports}
    langs = producers.get("language", [])
    tools = producers.get("processed-by", [])
    tools_text = " ".join(tools).lower()
    if langs:
        evidence.append(f"producers language: {', '.join(langs)}")
    if tools:
        evidence.append(f"producers processed-by: {', '.join(tools)}")
    if "tinygo" in tools_text or b"tinygo" in data.lower() and "go:buildid" not in custom_names:
        language = "Go (TinyGo)"
        evidence.append("TinyGo named in the module")
    elif "go:buildid" in custom_names or any(lang.split()[0] == "Go" for lang in langs):
        language = "Go"
        if "go:buildid" in custom_names:
            evidence.append("custom section go:buildid (the Go toolchain)")
    elif any(lang.split()[0] == "Rust" for lang in langs) or "rustc" in tools_text:
        language = "Rust"
    elif _AS_LIB.search(data) or names & {"__alloc", "__new", "__pin", "__retain", "__rtti_base"}:
        language = "AssemblyScript"
        evidence.append("AssemblyScript runtime (~lib/ file names in UTF-16, or its allocator exports)")
    elif ("env", "emscripten_notify_memory_growth") in imported or any(n.startswith("emscripten_") for n in names):
        language = "C/C++ (Emscripten)"
        evidence.append("Emscripten imports/exports")
    elif langs:
        language = langs[0].split()[0]
        if language.startswith("C") and language[1:2] in ("", "9", "1", "+"):
            language = "C++" if "++" in language else "C"
            language += " (clang)" if "clang" in tools_text else ""
    else:
        language = "unknown"
        evidence.append("no producers section and no runtime fingerprint (hand-written WAT, or a stripped build)")
    # SDKs
    if b"proxy-wasm-go-sdk" in data:
        sdk = "proxy-wasm-go-sdk"
    elif b"proxy_wasm_intrinsics" in data or b"proxy-wasm-cpp-sdk" in data:
        sdk = "proxy-wasm-cpp-sdk"
    elif language == "Rust" and (m := _RUST_CRATE.search(data)):
        sdk = f"proxy-wasm (Rust crate) {m.group(1).decode()}"
    elif language == "Rust" and b"proxy_wasm" in data:
        sdk = "proxy-wasm (Rust crate)"
    else:
        for m in _AS_LIB.finditer(data):
            pkg = m.group(1).decode("utf-16-le")
            if pkg.startswith("@"):  # "@scope" only: read the package name too
                rest = data[m.end():m.end() + 200]
                more = re.match(rb"((?:[ -~]\x00)+?)/\x00", rest)
                if more:
                    pkg += "/" + more.group(1).decode("utf-16-le")
            if "proxy" in pkg:
                sdk = pkg
                break
    if sdk:
        evidence.append(f"SDK named in the module: {sdk}")
    return language, sdk, evidence


_SECTION_NAMES = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
                  7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count", 13: "tag"}


def _types(data: bytes, secs: list[tuple[int, int, int, int]]) -> list[tuple[list[int], list[int]]]:
    """The raw function types of the type section (value type bytes), for feature detection."""
    out: list[tuple[list[int], list[int]]] = []
    for sid, _, body, end in secs:
        if sid != 1:
            continue
        r = Reader(data, body, end)
        for _ in range(r.u32()):
            r.byte()
            params = [r.byte() for _ in range(r.u32())]
            results = [r.byte() for _ in range(r.u32())]
            out.append((params, results))
    return out


def _features(data: bytes, info: Any, secs: list[tuple[int, int, int, int]]) -> list[str]:
    """Post-MVP features visible in the types and sections (instructions are not decoded, so
    e.g. bulk-memory or sign-extension operators in code are not listed)."""
    feats: list[str] = []
    types = _types(data, secs)
    ids = {s[0] for s in secs}
    if any(len(res) > 1 for _, res in types):
        feats.append("multi-value")
    if any(0x7B in p + r for p, r in types):
        feats.append("simd (v128)")
    if any(0x6F in p + r for p, r in types) or any(isinstance(i.type, TableType) for i in info.imports):
        feats.append("reference-types")
    if len(info.memories) > 1:
        feats.append("multi-memory")
    if any(m.is_64 for m in info.memories):
        feats.append("memory64")
    if any(m.shared for m in info.memories):
        feats.append("threads (shared memory)")
    if any(isinstance(i.type, GlobalType) and i.type.mutable for i in info.imports) or \
            any(isinstance(e.type, GlobalType) and e.type.mutable for e in info.exports):
        feats.append("mutable-globals (imported or exported)")
    if 12 in ids:
        feats.append("bulk-memory (data count section)")
    if 13 in ids:
        feats.append("exception-handling (tag section)")
    return feats


def inspect_wasm(data: bytes) -> ModuleReport:
    """Read ``data`` (a binary module). Raises :class:`CompileError` when it is not one."""
    info = parse_module(data)
    secs = sections(data)
    producers = _producers(info.custom_sections)
    names = [e.name for e in info.exports]
    abi = detect_abi(names)
    markers = [v.value for v in AbiVersion if v.marker in names]
    language, sdk, evidence = _identify(data, info.custom_sections, producers, info.imports, info.exports)
    imports = [ImportReport(i.module, i.name, _type_str(i.type), _group(i.module, i.name), _missing(i))
               for i in info.imports]
    callbacks, bad, other, uncalled = [], [], [], []
    for e in info.exports:
        if (e.name in CALLBACK_SIGNATURES or e.name.startswith("proxy_on_")) and e.name not in ALLOCATORS:
            callbacks.append(e.name)
            why = callback_signature_error(e.name, e.type)
            if why:
                bad.append(why)
            if e.name not in CALLBACK_SIGNATURES:  # e.g. 0.1.0's proxy_on_request_metadata, which Envoy never calls
                uncalled.append(e.name)
        elif not e.name.startswith("proxy_abi_version_"):
            other.append(f"{e.name}: {_type_str(e.type)}")
    startup = [f"export {n}" for n in START_EXPORTS if n in names]
    if info.has_start:
        startup.append("start section")
    startup += [f"allocator {n}" for n in ALLOCATORS if n in names]
    sizes: dict[str, int] = {}
    for sid, head, _, end in secs:
        if sid == 0:
            continue  # custom sections: by name, below
        label = _SECTION_NAMES.get(sid, str(sid))
        sizes[label] = sizes.get(label, 0) + end - head
    for name, payload in info.custom_sections:
        sizes[f"custom {name!r}"] = sizes.get(f"custom {name!r}", 0) + len(payload)
    memory = "; ".join(_limits(m) for m in info.memories) or "none"
    return ModuleReport(size=len(data), abi=abi.value if abi else None, abi_markers=markers, language=language,
                        sdk=sdk, evidence=evidence, startup=startup, imports=imports, callbacks=callbacks,
                        filter_kinds=[k for k, cbs in _KINDS.items() if set(cbs) & set(callbacks)],
                        uncalled_callbacks=uncalled, bad_callbacks=bad, other_exports=other, features=_features(data, info, secs),
                        sections=sizes, memory=memory, producers=producers)


def compile_times(data: bytes, backends: Iterable[str],
                  progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Compile ``data`` once on each backend (no compiled-module cache): ``{backend: {"ms": ...}}``
    or ``{"error": ...}`` for a backend that is unavailable or refuses the module."""
    from ._engine import Engine
    from ._module import Module

    out: dict[str, dict[str, Any]] = {}
    for name in backends:
        if progress is not None:
            progress(name)
        try:
            engine = Engine(name)
            Module(engine, b"\0asm\x01\0\0\0")  # start the runtime (or its worker) outside the timing
            t0 = time.perf_counter()
            Module(engine, data)
            out[name] = {"ms": round((time.perf_counter() - t0) * 1000, 3)}
        except Exception as e:  # noqa: BLE001 - reported per backend (unavailable, refused, crashed worker)
            out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return out
