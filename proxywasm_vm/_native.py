"""Building and loading the backends' cffi extension modules.

Native shims are compiled on first use (a few seconds, once per source
version and Python ABI) into the cache folder and imported from there. The
set-up scripts run this ahead of time (``pwvm setup``), so tests and
benchmarks never pay for it. Builds are serialised with a file lock, so
several processes starting at once build once.
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

__all__ = ["build_library", "load_extension", "native_cache_dir"]


def native_cache_dir() -> Path:
    """Where built extension modules are kept."""
    from ._settings import cache_dir

    return cache_dir() / "native"


def _key(sources: list[Path], extra: str) -> str:
    import cffi

    h = hashlib.sha256()
    for p in sources:
        h.update(p.read_bytes())
    h.update(f"{sys.implementation.cache_tag}|{sysconfig.get_platform()}|{cffi.__version__}|{extra}".encode())
    return h.hexdigest()[:20]


def load_extension(module_name: str, make_builder: Callable[[], object], sources: list[Path],
                   extra_key: str = "") -> ModuleType:
    """Import the cffi extension ``module_name``, building it first if needed.

    ``make_builder`` returns the ``cffi.FFI`` builder (called only to build);
    ``sources`` are the files whose content decides when to rebuild.
    """
    if module_name in sys.modules:
        return sys.modules[module_name]
    short = module_name.rsplit(".", 1)[-1]
    folder = native_cache_dir() / f"{module_name.replace('.', '-')}-{_key(sources, extra_key)}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    target = folder / f"{short}{suffix}"
    _build_once(target, lambda tmp: make_builder().compile(tmpdir=tmp, verbose=False))  # type: ignore[attr-defined]
    spec = importlib.util.spec_from_file_location(module_name, target)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = mod
    spec.loader.exec_module(mod)
    return mod


def build_library(filename: str, build: Callable[[str], None], sources: list[Path], extra_key: str = "") -> Path:
    """Path of the plain shared library ``filename`` in the cache folder, building it first if needed.

    ``build(output)`` compiles it to the path ``output``; ``sources`` (and
    ``extra_key``) decide when to rebuild, as for :func:`load_extension`.
    """
    target = native_cache_dir() / f"{filename.replace('.', '-')}-{_key(sources, extra_key)}" / filename

    def make(tmp: str) -> str:
        out = os.path.join(tmp, filename)
        build(out)
        return out

    _build_once(target, make)
    return target


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
