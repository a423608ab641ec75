"""What a built wheel holds, and that it works once installed.

pyproject's explicit package list must name every package of the source tree: an editable
install finds sub-packages on disk whatever the list says, so a package missing from it (a new
backend folder) would work in every test here and be absent from a built wheel. These tests
read the list itself; the last one builds the wheel and runs it without a compiler.
"""

from __future__ import annotations

import json
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


def test_native_shims_are_built_into_the_wheel(monkeypatch):
    # What setup.py hands setuptools (its setup() caught): the builders of the pure-C cffi shims
    # (the V8 shim needs libnode: not there), and the plain extensions (the Proxy-Wasm host's pairs
    # codec, the channel's GIL-keeping steps) with their sources, headers found.
    import runpy

    import setuptools

    given: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: given.update(kw))
    monkeypatch.chdir(ROOT)  # (the extensions name their sources from the project root)
    runpy.run_path(str(ROOT / "setup.py"))
    assert set(given["cffi_modules"]) == {f"{b}:make_builder" for b in (
        "proxywasm_vm/backends/wasmtime/_build.py", "proxywasm_vm/_isolation/_build.py",
        "proxywasm_vm/backends/wasmer/_guard_build.py")}
    exts = {e.name: e for e in given["ext_modules"]}
    assert set(exts) == {"proxywasm_vm._proxywasm._pairs_ext", "proxywasm_vm._isolation._chanpy_ext"}
    for e in exts.values():
        assert e.py_limited_api and all((ROOT / src).is_file() for src in e.sources), e.sources
        for d in e.include_dirs:
            assert (ROOT / d).is_dir(), d


@pytest.mark.slow
def test_installed_wheel_runs_wasmtime_without_a_compiler():
    """ci/test_wheel.sh builds the wheel, installs it into fresh environments on Python 3.11 and a
    newer one, and runs the README's first example, a wasmtime@process worker and ``pwvm backends``
    there with no C compiler reachable, then ``pwvm setup wasmer`` and wasmer in its worker.
    (ci/test.sh runs the script itself and leaves this test out.)"""
    proc = subprocess.run(["bash", str(ROOT / "ci" / "test_wheel.sh")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=900, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    interpreters = len(os.environ.get("PWVM_WHEEL_PYTHONS", "").split()) or 2  # 3.11 and a newer one
    assert log.count("README example on wasmtime: b'hello'") == interpreters, log[-6000:]
    assert log.count("prebuilt shim and helper in") == interpreters, log[-6000:]
    assert "wasmer example after pwvm setup wasmer: 7" in log, log[-6000:]


# ---- loading a prebuilt native module, or building it -------------------------------------------

def test_a_prebuilt_module_is_used_only_with_the_sources_it_was_built_from(tmp_path, monkeypatch):
    # An editable checkout holds the module built at install time next to its sources: once a
    # source changes, that module is stale and the current sources are built into the cache.
    import cffi

    from proxywasm_vm._native import KEY_CDEF, BuildError, key_source, load_extension, source_key

    monkeypatch.setenv("PWVM_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site"
    (site / "pwvm_prebuilt_probe").mkdir(parents=True)
    (site / "pwvm_prebuilt_probe" / "__init__.py").write_text("")
    src = site / "pwvm_prebuilt_probe" / "answer.c"
    name = "pwvm_prebuilt_probe._answer"

    def builder():
        ffi = cffi.FFI()
        ffi.cdef("int answer(void);" + KEY_CDEF)
        ffi.set_source(name, src.read_text() + key_source(source_key([src])))
        return ffi

    def load():
        sys.modules.pop(name, None)
        mod = load_extension(name, builder, [src])
        return mod.lib.answer(), Path(mod.__file__)

    src.write_text("int answer(void) { return 1; }\n")
    builder().compile(tmpdir=str(site))  # what the wheel build does (into the package folder)
    monkeypatch.syspath_prepend(str(site))
    try:
        answer, where = load()
        assert answer == 1 and where.parent == site / "pwvm_prebuilt_probe"  # the prebuilt one
        src.write_text("int answer(void) { return 2; }\n")
        answer, where = load()
        assert answer == 2 and (tmp_path / "cache" / "native") in where.parents  # built now, not the stale one
        src.write_text("int answer(void) { return 3; }\n")
        monkeypatch.setenv("CC", "pwvm-no-such-compiler")
        with pytest.raises(BuildError, match="was built from other sources, and building it here failed"):
            load()
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop("pwvm_prebuilt_probe", None)


def test_the_wasmtime_shim_and_channel_helper_are_stamped_with_their_sources():
    from proxywasm_vm._isolation import _build as chan_build
    from proxywasm_vm._isolation._channel import load_helper
    from proxywasm_vm._native import source_key
    from proxywasm_vm.backends.wasmtime import _build as wasmtime_build
    from proxywasm_vm.backends.wasmtime._ffi import native

    from proxywasm_vm._native import load_extension
    from proxywasm_vm.backends.wasmer import _guard_build as guard_build

    guard = load_extension(guard_build.MODULE, guard_build.make_builder, guard_build.SOURCES)
    for mod, build in ((native, wasmtime_build), (load_helper(), chan_build), (guard, guard_build)):
        assert mod is not None
        assert mod.ffi.string(mod.lib.pwvm_build_key()).decode() == source_key(build.SOURCES)
    from proxywasm_vm._isolation._channel import load_gil_helper

    gil = load_gil_helper()  # the channel's steps that keep the GIL: a plain extension
    assert gil is not None and gil.BUILD_KEY == source_key(chan_build.GIL_SOURCES)


def test_the_pairs_codec_is_stamped_with_its_sources_and_rebuilt_when_they_change(tmp_path, monkeypatch):
    # the plain extension goes through the same loader as the cffi shims (BUILD_KEY, not lib.pwvm_build_key)
    from proxywasm_vm._native import CExtensionBuilder, load_extension, source_key
    from proxywasm_vm._proxywasm import _build as pairs_build
    from proxywasm_vm._proxywasm._pairs import _ext

    assert _ext.BUILD_KEY == source_key(pairs_build.SOURCES)
    monkeypatch.setenv("PWVM_CACHE_DIR", str(tmp_path / "cache"))
    changed = tmp_path / "changed.c"  # the same sources plus one more: another key, so a build here
    changed.write_text("/* a change */\n")
    monkeypatch.delitem(sys.modules, pairs_build.MODULE)
    try:
        mod = load_extension(pairs_build.MODULE, lambda: CExtensionBuilder(pairs_build.make_extension(relative=False)),
                             [*pairs_build.SOURCES, changed])
        assert (tmp_path / "cache" / "native") in Path(mod.__file__).parents
        assert mod.serialize([b"k", b"v"]) == _ext.serialize([b"k", b"v"])
    finally:
        sys.modules[pairs_build.MODULE] = _ext


# ---- pwvm setup: what a pip user is told -----------------------------------------------------------

def test_setup_of_an_unknown_backend_is_a_usage_error(capsys):
    from proxywasm_vm._cli import main

    for argv in (["setup", "nosuch"], ["setup", "wasmtime@nosuch"], ["setup", "wasmtime", "--require", "nosuch"],
                 ["setup", "wasmtime", "--python", sys.executable]):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("pwvm: error: "), (argv, err)


def test_setup_unknown_backend_exits_2_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "proxywasm_vm", "setup", "nosuch"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "unknown backend 'nosuch'" in proc.stderr


def _setup_module_patched(monkeypatch, base, **patches):
    """pwvm setup's set-up module of ``base``, with functions replaced."""
    from proxywasm_vm import _cli

    real = _cli._setup_module

    def patched(b):
        mod = real(b)
        if b == base:
            for attr, value in patches.items():
                setattr(mod, attr, value)
        return mod

    monkeypatch.setattr(_cli, "_setup_module", patched)


def _names_repo_scripts(text: str) -> bool:
    """Whether ``text`` sends the reader to this repository's ci/ scripts (a path that merely
    contains "ci/", such as the folder of the checkout, does not count)."""
    import re

    return re.search(r"(?<![\w/])ci/\w+\.sh|bash ci/", text) is not None


def test_setup_v8_without_libnode_says_what_to_install(monkeypatch, capsys):
    from proxywasm_vm._cli import main

    _setup_module_patched(monkeypatch, "v8", find_libnode=lambda: None)
    assert main(["setup", "v8"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("v8: unavailable: libnode (V8 10.2 or 11.3, with its headers) was not found")
    assert "apt install libnode-dev g++" in out and "PWVM_LIBNODE_PREFIX" in out and "`pwvm setup v8`" in out
    assert not _names_repo_scripts(out) and "Traceback" not in out + err
    assert "v8: looking for libnode" in err  # the steps, one line each when not on a terminal


def test_setup_v8_without_a_compiler_says_what_to_install(monkeypatch, capsys, tmp_path):
    from proxywasm_vm._cli import main

    monkeypatch.setenv("PWVM_CACHE_DIR", str(tmp_path))  # nothing built there: the shim would need compiling
    monkeypatch.setenv("CXX", "pwvm-no-such-c++")
    monkeypatch.setenv("CC", "pwvm-no-such-cc")
    _libnode_or_skip()
    assert main(["setup", "v8"]) == 1
    out, _ = capsys.readouterr()
    assert "needs a C++ compiler (pwvm-no-such-c++), a C compiler (pwvm-no-such-cc)" in out, out
    assert "to enable it: apt install g++ gcc" in out and not _names_repo_scripts(out)
    assert not (tmp_path / "native").exists()  # it stopped before trying


def _libnode_or_skip():
    from proxywasm_vm._cli import _setup_module
    from proxywasm_vm._settings import in_ci

    node = _setup_module("v8").find_libnode()  # (importing the v8 package would build its shim)
    if node is None:
        if in_ci():
            pytest.fail("CI requires libnode (bash ci/setup_v8.sh)")
        pytest.skip("libnode is not installed here")
    return node


def test_setup_v8_builds_with_progress_and_loads(capsys):
    from proxywasm_vm._cli import main

    _libnode_or_skip()
    assert main(["setup", "v8", "v8@namespace"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["v8: ready", "v8@namespace: ready"]
    assert "v8: compiling the V8 shim against libnode" in err or "v8: the V8 shim is built already, for libnode" in err


def test_setup_wasmer_refuses_a_python_that_is_not_3_10(capsys):
    from proxywasm_vm._cli import main

    assert sys.version_info[:2] != (3, 10)
    assert main(["setup", "wasmer", "--python", sys.executable, "--json"]) == 1
    row, = json.loads(capsys.readouterr().out)
    assert row["name"] == "wasmer" and not row["ready"]
    assert row["reason"] == f"{sys.executable} is not a Python 3.10"
    assert "pwvm setup wasmer --python" in row["how_to_enable"]


def test_setup_wasmer_without_python_3_10_says_how_to_get_one(monkeypatch):
    from proxywasm_vm import BackendUnavailable
    from proxywasm_vm._cli import _setup_module

    mod = _setup_module("wasmer")
    monkeypatch.setattr(mod, "find_python310", lambda: None)
    with pytest.raises(BackendUnavailable) as e:
        mod.setup(lambda msg: None)
    assert "no Python 3.10 was found" in e.value.reason
    assert "pyenv install 3.10" in e.value.how_to_enable and "pwvm setup wasmer --python" in e.value.how_to_enable


def test_the_wasmer_worker_environment_gets_this_same_proxywasm_vm():
    from proxywasm_vm._cli import _setup_module

    args = _setup_module("wasmer").this_package()
    # here an editable install of this checkout; from a wheel file, that file; else the same version from PyPI
    assert args == ["-e", str(ROOT)] or args[-1].endswith(".whl") or args[-1].startswith("proxywasm-vm==")


def test_hints_speak_to_a_pip_user():
    from proxywasm_vm._backend import _REGISTRY
    from proxywasm_vm.backends.v8._build import HOW_TO_GET_LIBNODE
    from proxywasm_vm.backends.wasmtime._ffi import HOW_TO_BUILD, HOW_TO_ENABLE

    hints = [how for _, how in _REGISTRY.values()] + [HOW_TO_GET_LIBNODE, HOW_TO_BUILD, HOW_TO_ENABLE]
    for how in hints:
        assert how and not _names_repo_scripts(how) and ".sh" not in how, how
    assert "pwvm setup v8" in _REGISTRY["v8"][1] and "pwvm setup wasmer" in _REGISTRY["wasmer"][1]
