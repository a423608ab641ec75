"""pyproject's explicit package list names every package of the source tree.

An editable install finds sub-packages on disk whatever the list says, so a package missing
from it (a new backend folder) would work in every test here and be absent from a built
wheel. This test reads the list itself.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

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
    # the shims are compiled on first use from their sources: a backend with C/C++ sources must ship them
    data = _config()["package-data"]
    for src in (ROOT / "proxywasm_vm").rglob("*"):
        if src.suffix in (".c", ".cpp", ".h"):
            pkg = ".".join(src.parent.relative_to(ROOT).parts)
            patterns = data.get(pkg, [])
            assert any(src.match(p) for p in patterns), f"{src.relative_to(ROOT)} is not in {pkg}'s package-data"
