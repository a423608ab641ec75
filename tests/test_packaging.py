"""What a built wheel holds, and that it works once installed.

pyproject's explicit package list must name every package of the source tree: an editable
install finds sub-packages on disk whatever the list says, so a package missing from it (a new
backend folder) would work in every test here and be absent from a built wheel. These tests
read the list itself; the last one builds the wheel and runs it without a compiler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_of_the_tree_is_listed():
    listed = set(_config()["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "proxywasm_vm").rglob("__init__.py")}
    assert on_disk, "no package found under proxywasm_vm/"
    missing = sorted(on_disk - listed)
    assert not missing, f"packages missing from pyproject's [tool.setuptools] packages: {missing}"


def test_every_listed_package_exists():
    cfg = _config()
    dirs = cfg.get("package-dir", {})
    for name in cfg["packages"]:
        where = dirs.get(name) or name.replace(".", "/")
        assert (ROOT / where).is_dir(), f"{name}: no folder {where}"


def test_native_sources_ship_with_their_backend():
    # a shim's sources ship with it: the prebuilt one is checked against them, and V8's is built from them
    data = _config()["package-data"]
    for src in (ROOT / "proxywasm_vm").rglob("*"):
        if src.suffix in (".c", ".cpp", ".h"):
            pkg = ".".join(src.parent.relative_to(ROOT).parts)
            patterns = data.get(pkg, [])
            assert any(src.match(p) for p in patterns), f"{src.relative_to(ROOT)} is not in {pkg}'s package-data"


def test_native_shims_are_built_into_the_wheel():
    # setup.py's cffi_modules name every builder of a pure-C shim (the V8 shim needs libnode: not there)
    setup = (ROOT / "setup.py").read_text()
    for builder in ("proxywasm_vm/backends/wasmtime/_build.py", "proxywasm_vm/_isolation/_build.py"):
        assert f"{builder}:make_builder" in setup


@pytest.mark.slow
def test_installed_wheel_runs_wasmtime_without_a_compiler():
    """ci/test_wheel.sh builds the wheel, installs it into fresh environments on Python 3.11 and a
    newer one, and runs the README's first example, a wasmtime@process worker and ``pwvm backends``
    there with no C compiler reachable. (ci/test.sh runs the script itself and leaves this test out.)"""
    proc = subprocess.run(["bash", str(ROOT / "ci" / "test_wheel.sh")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=900, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    interpreters = len(os.environ.get("PWVM_WHEEL_PYTHONS", "").split()) or 2  # 3.11 and a newer one
    assert log.count("README example on wasmtime: b'hello'") == interpreters, log[-6000:]
    assert log.count("prebuilt shim and helper in") == interpreters, log[-6000:]
