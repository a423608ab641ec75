"""Building and loading the backends' cffi extension modules.

Two ways a native shim gets here, one loader (:func:`load_extension`):

- **prebuilt**: the shims that need only Python and cffi (the wasmtime backend's,
  the worker channel's wake-up helper) are compiled when the wheel is built
  (``setup.py``'s ``cffi_modules``) and ship inside the package. Each is stamped with
  the key of the sources it was built from (:func:`key_source`); it is used only
  when that key is the key of the sources next to it, so an editable checkout
  whose sources changed never runs a stale module.
- **built on first use**: otherwise (a changed checkout, the V8 shim, which needs
  libnode) the module is compiled (a few seconds, once per source version and
  Python ABI) into the cache folder and imported from there. ``pwvm setup`` does
  this ahead of time. Builds are serialised with a file lock, so several
  processes starting at once build once.

This file imports only the standard library at module level: the builders
(``_build.py``) also load it by path at wheel-build time, where the package
itself cannot be imported.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Callable

__all__ = ["KEY_CDEF", "BuildError", "CExtensionBuilder", "build_library", "key_source", "library_path", "load_extension",
           "native_cache_dir", "source_key"]

#: The declaration a stamped module's cdef carries (see :func:`key_source`).
KEY_CDEF = "const char *pwvm_build_key(void);"


def native_cache_dir() -> Path:
    """Where built extension modules are kept."""
    from ._settings import cache_dir

    return cache_dir() / "native"


def source_key(sources: list[Path], extra: str = "") -> str:
    """The key of a module's sources: their content (in order) and ``extra``."""
    h = hashlib.sha256()
    for p in sources:
        data = Path(p).read_bytes()
        h.update(len(data).to_bytes(8, "little") + data)
    h.update(extra.encode())
    return h.hexdigest()[:20]


def key_source(key: str) -> str:
    """C source to append to a builder's ``set_source`` (with :data:`KEY_CDEF` in its cdef):
    ``lib.pwvm_build_key()`` then returns ``key``, what :func:`load_extension` checks a
    prebuilt module against."""
    return f'\nconst char *pwvm_build_key(void) {{ return "{key}"; }}\n'


def _cache_key(sources: list[Path], extra: str) -> str:
    """The cache folder's key: the sources and what the built file depends on (Python ABI, platform, cffi)."""
    import cffi

    return source_key(sources, f"{sys.implementation.cache_tag}|{sysconfig.get_platform()}|{cffi.__version__}|{extra}")


class BuildError(RuntimeError):
    """A native module could not be built (no compiler, no Python headers, a compile error ...)."""


def load_extension(module_name: str, make_builder: Callable[[], object], sources: list[Path],
                   extra_key: str = "") -> ModuleType:
    """Import the extension ``module_name`` (a cffi module, or a plain one built by a
    :class:`CExtensionBuilder`): the prebuilt one shipped in the package
    when it was built from exactly ``sources``, else one built (first, if needed) in the
    cache folder.

    ``make_builder`` returns the ``cffi.FFI`` builder or the :class:`CExtensionBuilder`
    (called only to build);
    ``sources`` (and ``extra_key``) are what decide when to rebuild. Raises
    :class:`BuildError` when the module has to be built and cannot be.
    """
    if module_name in sys.modules:
        return sys.modules[module_name]
    key = source_key(sources, extra_key)
    prebuilt = _prebuilt(module_name, key)
    if isinstance(prebuilt, ModuleType):
        return prebuilt
    short = module_name.rsplit(".", 1)[-1]
    folder = native_cache_dir() / f"{module_name.replace('.', '-')}-{_cache_key(sources, extra_key)}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    target = folder / f"{short}{suffix}"
    try:
        _build_once(target, lambda tmp: make_builder().compile(tmpdir=tmp, verbose=False))  # type: ignore[attr-defined]
    except Exception as e:  # cffi's VerificationError, setuptools missing (Python >= 3.12), ...
        why = " ".join(f"{type(e).__name__}: {e}".split())[:400]
        raise BuildError(f"{prebuilt}, and building it here failed ({why})") from e
    return _import_file(module_name, target)


def _prebuilt(module_name: str, key: str) -> ModuleType | str:
    """The prebuilt ``module_name`` of the package if it is stamped with ``key``; else why not."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return f"{module_name} is not prebuilt in this installation"
    try:
        mod = _import_file(module_name, Path(spec.origin))
    except ImportError as e:  # a cffi too old for the module, ...
        return f"the prebuilt {Path(spec.origin).name} does not load ({e})"
    if _built_key(mod) == key:
        return mod
    # An editable checkout whose sources changed since: build the current ones instead.
    del sys.modules[module_name]
    return f"the prebuilt {Path(spec.origin).name} was built from other sources"


def _built_key(mod: ModuleType) -> str | None:
    """The key a module was stamped with: a plain extension's ``BUILD_KEY``, a cffi module's
    ``lib.pwvm_build_key()``."""
    if isinstance(getattr(mod, "BUILD_KEY", None), str):
        return mod.BUILD_KEY  # type: ignore[attr-defined,no-any-return]
    got = getattr(getattr(mod, "lib", None), "pwvm_build_key", None)
    return mod.ffi.string(got()).decode() if got is not None else None  # type: ignore[attr-defined]


class CExtensionBuilder:
    """Builds a plain CPython extension (a ``setuptools.Extension``) with the ``compile`` call
    :func:`load_extension` makes of a cffi builder, so both kinds load the same way."""

    def __init__(self, extension: object) -> None:
        self.extension = extension

    def compile(self, tmpdir: str, verbose: bool = False) -> str:
        from setuptools import Distribution
        from setuptools.command.build_ext import build_ext

        cmd = build_ext(Distribution({"ext_modules": [self.extension]}))
        cmd.build_lib = cmd.build_temp = tmpdir
        cmd.verbose = verbose  # type: ignore[assignment]
        cmd.ensure_finalized()
        cmd.run()
        return str(cmd.get_ext_fullpath(self.extension.name))  # type: ignore[attr-defined]


def _import_file(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[module_name]
        raise
    return mod


def build_library(filename: str, build: Callable[[str], None], sources: list[Path], extra_key: str = "") -> Path:
    """Path of the plain shared library ``filename`` in the cache folder, building it first if needed.

    ``build(output)`` compiles it to the path ``output``; ``sources`` (and
    ``extra_key``) decide when to rebuild, as for :func:`load_extension`.
    """
    target = library_path(filename, sources, extra_key)

    def make(tmp: str) -> str:
        out = os.path.join(tmp, filename)
        build(out)
        return out

    _build_once(target, make)
    return target


def library_path(filename: str, sources: list[Path], extra_key: str = "") -> Path:
    """Where :func:`build_library` keeps ``filename`` built from ``sources`` (it may not be built yet)."""
    return native_cache_dir() / f"{filename.replace('.', '-')}-{_cache_key(sources, extra_key)}" / filename


def _build_once(target: Path, build: Callable[[str], str]) -> None:
    """Make ``target`` if it is missing: ``build(tmpdir)`` returns the file it made in ``tmpdir``,
    which is then moved into place (atomically, under the folder's lock: one process builds)."""
    if target.exists():
        return
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            tmp = tempfile.mkdtemp(dir=folder, prefix="build-")
            try:
                os.replace(build(tmp), target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
