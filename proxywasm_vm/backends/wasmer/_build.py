"""``pwvm setup wasmer``: the Python 3.10 environment wasmer's worker process runs in.

wasmer-python 1.1.0 has wheels only up to Python 3.10, so on a newer interpreter the
wasmer backend runs in a worker process under a 3.10 (see ``WasmerBackend.worker_python``).
:func:`setup` makes that environment in the cache folder (``<cache>/wasmer-worker``):
a virtual environment of a Python 3.10 found on this machine, with wasmer-python, its
cranelift (the default) and singlepass compilers, and this same proxywasm-vm; then it
records its interpreter (``<cache>/wasmer-worker-python``), where the backend looks.
(``bash ci/setup_wasmer.sh`` makes a checkout's ``.venv310`` the same way, with the LLVM
compiler too.) Loaded by path by ``pwvm setup``: importing nothing of the backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

#: The worker environment's packages: exact, as the backend was written against them.
WHEELS = ["wasmer==1.1.0", "wasmer-compiler-cranelift==1.1.0", "wasmer-compiler-singlepass==1.1.0"]
#: Run by the worker environment's interpreter: builds the guard's helper (``_guard.c``) into the cache.
BUILD_GUARD_HELPER = ("from proxywasm_vm._native import load_extension\n"
                      "from proxywasm_vm.backends.wasmer import _guard_build as b\n"
                      "load_extension(b.MODULE, b.make_builder, b.SOURCES)\n")
HOW_TO_GET_PYTHON310 = ("install a Python 3.10 (pyenv install 3.10, uv python install 3.10, or your distribution's "
                        "python3.10) and run `pwvm setup wasmer --python /path/to/python3.10`")


def _is_310(python: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                             capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip() == "True"


def find_python310() -> str | None:
    """A Python 3.10: ``$PYTHON310``, else python3.10 on PATH, else pyenv's newest 3.10."""
    cands = [os.environ.get("PYTHON310", ""), shutil.which("python3.10") or ""]
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=60, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            root = ""
        versions = Path(root.strip(), "versions") if root.strip() else None
        if versions and versions.is_dir():
            found = sorted((p for p in versions.glob("3.10.*") if p.name.replace(".", "").isdigit()),
                           key=lambda p: [int(x) for x in p.name.split(".")])
            cands += [str(p / "bin" / "python3") for p in reversed(found)]
    return next((c for c in cands if c and os.path.exists(c) and _is_310(c)), None)


def this_package() -> list[str]:
    """pip arguments installing the proxywasm-vm that runs this: the checkout of an editable
    install, the wheel file it was installed from (if still there), else the same version from PyPI."""
    try:
        dist = metadata.distribution("proxywasm-vm")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return ["-e", str(Path(__file__).resolve().parents[3])]
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        info = {}
    url = str(info.get("url", ""))
    if url.startswith("file://"):
        path = url[len("file://"):]
        if info.get("dir_info", {}).get("editable"):
            return ["-e", path]
        if os.path.exists(path):
            return [path]
    return [f"proxywasm-vm=={dist.version}"]


def _run(cmd: list[str], what: str) -> None:
    from proxywasm_vm._errors import BackendUnavailable

    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "WARNING: Location" not in ln]
        raise BackendUnavailable("wasmer", f"{what} failed: {' '.join(' | '.join(lines[-4:]).split())[:600]}",
                                 "fix the cause above and run `pwvm setup wasmer` again")


def setup(step: Callable[[str], None], python: str | None = None) -> str:
    """Make (or update) the wasmer worker environment and record its interpreter; returns its path.

    ``python`` is the Python 3.10 to use (default: :func:`find_python310`). Raises
    :class:`~proxywasm_vm.BackendUnavailable` saying what is missing and how to get it.
    """
    from proxywasm_vm._errors import BackendUnavailable
    from proxywasm_vm._settings import cache_dir

    if sys.version_info[:2] == (3, 10):  # wasmer-python installs right here
        _run([sys.executable, "-m", "pip", "install", "-q", *WHEELS], "pip install " + " ".join(WHEELS))
        return sys.executable
    if python is None:
        step("looking for a Python 3.10")
    py310 = python or find_python310()
    if py310 is None:
        raise BackendUnavailable("wasmer", "no Python 3.10 was found (wasmer-python 1.1.0 has wheels only up to "
                                 "Python 3.10, so wasmer runs in a worker process under one)", HOW_TO_GET_PYTHON310)
    if not _is_310(py310):
        raise BackendUnavailable("wasmer", f"{py310} is not a Python 3.10", HOW_TO_GET_PYTHON310)
    venv = cache_dir() / "wasmer-worker"
    vpy = venv / "bin" / "python"
    if not vpy.exists():
        step(f"creating the worker environment {venv} with {py310}")
        _run([py310, "-m", "venv", str(venv)], f"{py310} -m venv {venv}")
    pkg = this_package()
    step(f"installing {', '.join(WHEELS)} and proxywasm-vm ({pkg[-1]}) into it")
    _run([str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", *WHEELS, *pkg],
         "installing into the worker environment")
    step("checking that the worker environment imports wasmer and proxywasm_vm")
    _run([str(vpy), "-c", "import wasmer, wasmer_compiler_cranelift, proxywasm_vm"], "the worker environment check")
    # The guard's helper (_guard.c), built now rather than by the first worker. Best effort: without
    # a compiler the worker makes the same system calls from Python (a few µs more per call).
    step("building the worker's guard helper")
    subprocess.run([str(vpy), "-c", BUILD_GUARD_HELPER], capture_output=True, check=False)
    record = cache_dir() / "wasmer-worker-python"
    record.write_text(f"{vpy}\n")
    return str(vpy)
