"""Modules: compiled WebAssembly code, and the compiled-module cache."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ._contract import AbstractModule
from ._errors import CompileError
from ._wasmparse import parse_module

if TYPE_CHECKING:
    from ._engine import Engine
    from ._types import ExportType, ImportType

__all__ = ["Module", "wat2wasm"]

WasmSource = Union[bytes, bytearray, memoryview, str]


def wat2wasm(wat: str) -> bytes:
    """Translate WebAssembly text to binary (uses the ``wasmtime`` package)."""
    try:
        import wasmtime
    except ImportError as e:  # pragma: no cover - wasmtime is a dependency
        raise CompileError("wat2wasm needs the 'wasmtime' package") from e
    try:
        return bytes(wasmtime.wat2wasm(wat))
    except Exception as e:
        raise CompileError(f"invalid WebAssembly text: {e}") from e


def _as_bytes(wasm: WasmSource) -> bytes:
    if isinstance(wasm, str):
        return wat2wasm(wasm)
    if not isinstance(wasm, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected module bytes or WebAssembly text, got {type(wasm).__name__}")
    return bytes(wasm)


def _compile_validated(engine: Engine, data: bytes) -> Module:
    """Compile bytes the core has validated (a worker process compiles what its parent validated)."""
    mod = engine._module_new(data)
    mod._wasm = data
    # Read the import/export types now, so a module whose types the
    # interface cannot express fails here with CompileError rather than later
    # at instantiation. (The V8 backend has read them already, before rewriting the module.)
    if mod._info is None:
        mod._info = parse_module(data)
    return mod


def _backend_validate(engine: Engine, data: bytes) -> bool:
    """The backend's own verdict on bytes the core has validated (agreeing with :func:`_compile_validated`)."""
    try:
        parse_module(data)  # what Module() reads itself must be readable too
    except CompileError:
        return False
    return engine._module_validate(data)


class Module(AbstractModule):
    """A compiled WebAssembly module, ready to instantiate in any store of its engine.

    ``Module(engine, wasm)`` compiles binary bytes (or WebAssembly text, given as
    ``str``). Bad bytes raise :class:`CompileError`, with the same verdict on every
    backend: the bytes are validated first, under the engine's features
    (``EngineConfig.features``), by the reference validator (see
    :mod:`proxywasm_vm._validate`). Modules are immutable and can be shared by threads.

    A backend subclasses it and implements :class:`~proxywasm_vm._contract.AbstractModule`.
    """

    def __new__(cls, engine: Engine, wasm: WasmSource) -> Module:
        if cls is not Module:
            return super().__new__(cls)
        data = _as_bytes(wasm)
        if len(data) < 8 or data[:4] != b"\0asm":
            raise CompileError("not a WebAssembly binary module (bad magic number)", offset=0)
        # One verdict for every backend: the core validates (under the engine's features) before
        # any backend reads, rewrites or compiles the bytes. See proxywasm_vm._validate.
        engine._validate_wasm(data)
        return _compile_validated(engine, data)

    @staticmethod
    def validate(engine: Engine, wasm: WasmSource) -> bool:
        """True if ``wasm`` is a valid module for this engine (``Module(engine, wasm)`` would compile it)."""
        try:
            data = _as_bytes(wasm)
            engine._validate_wasm(data)
        except CompileError:
            return False
        return _backend_validate(engine, data)

    @classmethod
    def from_file(cls, engine: Engine, path: str | os.PathLike[str], *, cache: bool = True) -> Module:
        """Load a ``.wasm`` (or ``.wat``) file, through the compiled-module cache when allowed."""
        p = Path(path)
        data = p.read_bytes()
        if p.suffix == ".wat":
            data = wat2wasm(data.decode())
        return cls.cached(engine, data) if cache else Module(engine, data)

    @classmethod
    def cached(cls, engine: Engine, wasm: WasmSource) -> Module:
        """Compile ``wasm``, or load it from the engine's compiled-module cache.

        The cache key is the SHA-256 of the bytes plus the runtime version and
        engine configuration (features included); entries are written atomically. A hit
        is not validated again (the entry exists only for bytes that were). On backends
        that cannot serialize this simply compiles.
        """
        data = _as_bytes(wasm)
        if not engine.capabilities.serialize:
            return Module(engine, data)
        key = hashlib.sha256(data + engine.config.fingerprint().encode()).hexdigest()
        folder = engine.cache_dir
        path = folder / f"{key}.cwasm"
        if path.exists():
            try:
                mod = engine._module_deserialize_file(str(path))
                mod._wasm = data  # types are read lazily: an entry exists only for bytes that parsed
                return mod
            except Exception:
                path.unlink(missing_ok=True)  # stale or corrupt entry: rebuild it
        mod = Module(engine, data)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(mod.serialize())
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache is not an error
        return mod

    @classmethod
    def deserialize(cls, engine: Engine, data: bytes) -> Module:
        """Load bytes produced by :meth:`serialize` on the same backend version.

        Only load bytes you produced yourself: they are trusted native code.
        """
        return engine._module_deserialize(bytes(data))

    @classmethod
    def deserialize_file(cls, engine: Engine, path: str | os.PathLike[str]) -> Module:
        """Like :meth:`deserialize`, from a file (memory-mapped where the backend can)."""
        return engine._module_deserialize_file(os.fspath(path))

    @property
    def imports(self) -> list[ImportType]:
        """The module's imports, in order, with their types."""
        return list(self._module_info().imports)

    @property
    def exports(self) -> list[ExportType]:
        """The module's exports, in order, with their types."""
        return list(self._module_info().exports)

    def custom_sections(self, name: str) -> list[bytes]:
        """The payloads of every custom section called ``name``."""
        return [d for n, d in self._module_info().custom_sections if n == name]

    def __repr__(self) -> str:
        return f"<Module on {self.engine.name}: {len(self.imports)} imports, {len(self.exports)} exports>"
