#!/usr/bin/env bash
# Build the wheel and check what a pip user gets: the wheel installed into fresh virtual
# environments on Python 3.11 and a newer Python, run with no C compiler reachable (PATH holds
# only the environment's bin/, CC and CXX name a missing command), must run the README's first
# example on wasmtime from the shim prebuilt in the wheel, load the Proxy-Wasm host's prebuilt
# pairs codec, start a wasmtime@process worker with
# its prebuilt channel helper, and list the backends (`pwvm backends`); in the newest one,
# `pwvm setup wasmer` must make wasmer's Python 3.10 worker environment (it needs a Python 3.10),
# and the README's pytest example must pass there on wasmtime and wasmer (the pytest11 plugin).
#
#   bash ci/test_wheel.sh            (ci/test.sh runs it; so does tests/test_packaging.py)
#
# Interpreters: $PWVM_WHEEL_PYTHONS (space-separated paths) if set, else the newest 3.11 and the
# newest 3.13 (or 3.12) that pyenv has, else python3.11 and python3.13 (or 3.12) on PATH.
# The build and the environments live in a temporary folder, removed at the end (KEEP=1 keeps it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$BUILD_PY" ] || BUILD_PY=python3
log() { echo "test_wheel: $*" >&2; }

# The newest interpreter of a minor version: pyenv's, else on PATH.
find_python() {
  local minor="$1" v p
  if command -v pyenv >/dev/null 2>&1; then
    v="$(pyenv versions --bare 2>/dev/null | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n1 || true)"
    if [ -n "$v" ]; then
      p="$(pyenv prefix "$v" 2>/dev/null)/bin/python3"
      if [ -x "$p" ]; then echo "$p"; return 0; fi
    fi
  fi
  command -v "python$minor" 2>/dev/null || return 1
}

if [ -n "${PWVM_WHEEL_PYTHONS:-}" ]; then
  read -r -a PYTHONS <<< "$PWVM_WHEEL_PYTHONS"
else
  p311="$(find_python 3.11)" || { log "no Python 3.11 found (pyenv install 3.11, or set PWVM_WHEEL_PYTHONS)"; exit 1; }
  newer="$(find_python 3.13 || find_python 3.12)" \
    || { log "no Python 3.12 or 3.13 found (pyenv install 3.13, or set PWVM_WHEEL_PYTHONS)"; exit 1; }
  PYTHONS=("$p311" "$newer")
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pwvm-wheel.XXXXXX")"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else log "keeping $WORK"; fi

# 1. The wheel, built from a clean copy of what it is made of (no build/ folder, editable-install
#    modules or caches of the checkout can slip in).
mkdir -p "$WORK/src/tests/plugins" "$WORK/dist"
cp "$ROOT"/{pyproject.toml,setup.py,README.md,LICENSE} "$WORK/src/"
cp -r "$ROOT/proxywasm_vm" "$WORK/src/"
cp -r "$ROOT/tests/plugins/build" "$WORK/src/tests/plugins/"
find "$WORK/src" \( -name '__pycache__' -o -name '*.so' \) -prune -exec rm -rf {} +
log "building the wheel with $("$BUILD_PY" --version)"
"$BUILD_PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" 2>&1 | grep -v '^WARNING: Location' >&2 || true
WHEEL="$(ls "$WORK"/dist/proxywasm_vm-*.whl 2>/dev/null | head -n1)"
[ -n "$WHEEL" ] || { log "no wheel was built"; exit 1; }
case "$(basename "$WHEEL")" in
  *-none-any.whl) log "$(basename "$WHEEL") is a pure-Python wheel: its native shims are not prebuilt"; exit 1 ;;
esac
log "built $(basename "$WHEEL")"

# The README's first example, as the README shows it.
"$BUILD_PY" - "$ROOT/README.md" "$WORK/example.py" <<'EOF'
import re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), flags=re.DOTALL)
assert blocks, "README.md has no python example"
open(sys.argv[2], "w").write(blocks[0])
EOF

# What the installed package must show, in the no-compiler environment.
cat > "$WORK/check.py" <<'EOF'
import os, shutil, sys
for cc in ("cc", "gcc", "c++", "g++", "clang", os.environ["CC"]):
    assert shutil.which(cc) is None, f"a C compiler is reachable: {shutil.which(cc)}"
import proxywasm_vm
from proxywasm_vm import Engine, Module, Store, Instance
from proxywasm_vm._isolation._channel import load_helper
import proxywasm_vm.backends.wasmtime._ffi as ffi

site = os.path.dirname(os.path.dirname(proxywasm_vm.__file__))
assert ffi.native.__file__.startswith(site), f"the wasmtime shim was not the prebuilt one: {ffi.native.__file__}"
helper = load_helper()
assert helper is not None and helper.__file__.startswith(site), f"the channel helper is not prebuilt: {helper}"
from proxywasm_vm._proxywasm import _pairs
assert _pairs._ext.__file__.startswith(site), f"the pairs codec is not prebuilt: {_pairs._ext.__file__}"
from proxywasm_vm._isolation._channel import load_gil_helper
gil = load_gil_helper()
assert gil is not None and gil.__file__.startswith(site), f"the channel's GIL-keeping steps are not prebuilt: {gil}"
engine = Engine("wasmtime@process")  # a worker process, which loads the prebuilt helper too
inst = Instance(Store(engine), Module(engine, '(module (func (export "f") (result i32) i32.const 7))'))
assert inst.exports["f"]() == 7
native = os.path.join(os.environ["PWVM_CACHE_DIR"], "native")
assert not os.path.exists(native), f"something was compiled at run time: {os.listdir(native)}"
print(f"{sys.version.split()[0]}: prebuilt shim and helper in {site}")
EOF

status=0
for py in "${PYTHONS[@]}"; do
  ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  venv="$WORK/venv-$ver"
  log "Python $ver ($py): fresh environment, pip install $(basename "$WHEEL")"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$WHEEL" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  # (from $WORK: `python -c` puts the current folder first on sys.path, and here that is the checkout)
  (cd "$WORK" && "$venv/bin/python" -c 'import proxywasm_vm') \
    || { log "Python $ver: the wheel did not install"; status=1; continue; }
  # No compiler reachable: PATH is the environment's bin/ alone, CC/CXX a command that does not exist.
  run() {
    env -i HOME="$WORK/home-$ver" PATH="$venv/bin" CC=pwvm-no-compiler CXX=pwvm-no-compiler \
      PWVM_CACHE_DIR="$WORK/cache-$ver" LANG=C.UTF-8 COLUMNS=160 "$@"
  }
  if out="$(run "$venv/bin/python" "$WORK/example.py" 2>&1)" && [ "$out" = "b'hello'" ]; then
    log "Python $ver: README example on wasmtime: $out"
  else
    log "Python $ver: the README example failed without a compiler:"; echo "${out:-}" >&2; status=1
  fi
  run "$venv/bin/python" "$WORK/check.py" >&2 || { log "Python $ver: check failed"; status=1; }
  run "$venv/bin/pwvm" backends >&2 || { log "Python $ver: pwvm backends failed"; status=1; }
  run "$venv/bin/pwvm" backends --json | "$venv/bin/python" -c '
import json, sys
rows = {r["name"]: r for r in json.load(sys.stdin)}
sys.exit(0 if rows["wasmtime"]["available"] else "pwvm backends: wasmtime unavailable: " + rows["wasmtime"]["reason"])' \
    || { log "Python $ver: pwvm backends --json does not show wasmtime available"; status=1; }
done

# `pwvm setup wasmer` from the newest environment: a Python 3.10 worker environment, into which the
# same wheel is installed (an abi3 wheel: its prebuilt shims serve 3.10 too), then wasmer runs there.
# (HOME and the PIP_* settings stay: pip installs from its usual index and cache; no compiler still.
# The check runs from $WORK: `python -c` puts the current folder first on sys.path, and from the
# checkout that would import the checkout's package instead of the installed one.)
if py310="$(find_python 3.10)"; then
  log "Python $ver: pwvm setup wasmer --python $py310"
  pip_env=()
  while IFS= read -r kv; do pip_env+=("$kv"); done < <(env | grep '^PIP_' || true)
  if env -i HOME="$HOME" PATH="$venv/bin" CC=pwvm-no-compiler CXX=pwvm-no-compiler "${pip_env[@]}" \
       PWVM_CACHE_DIR="$WORK/cache-$ver" LANG=C.UTF-8 "$venv/bin/pwvm" setup wasmer --python "$py310" >&2 \
     && out="$(cd "$WORK" && run "$venv/bin/python" -c '
from proxywasm_vm import Engine, Instance, Module, Store
engine = Engine("wasmer")
print(Instance(Store(engine), Module(engine, "(module (func (export \"f\") (result i32) i32.const 7))")).exports["f"]())
' 2>&1)" && [ "$out" = "7" ]; then
    log "Python $ver: wasmer example after pwvm setup wasmer: $out"
  else
    log "Python $ver: pwvm setup wasmer, or wasmer after it, failed: ${out:-}"; status=1
  fi
else
  log "no Python 3.10 found: pwvm setup wasmer not checked"; status=1
fi

# The README's pytest example, as a plugin author runs it from that environment: pytest installed
# next to the wheel, the test file as the README shows it, their filter as build/filter.wasm (ours,
# c_http_all). It must pass on every runtime available there (wasmtime, and wasmer after the step
# above) and skip the others with a reason: no compiler, so no V8 shim and no pywasm3 build.
proj="$WORK/author-project"
mkdir -p "$proj/build"
cp "$ROOT/tests/plugins/build/c_http_all.wasm" "$proj/build/filter.wasm"
"$BUILD_PY" - "$ROOT/README.md" "$proj/test_filter.py" <<'EOF'
import re, sys
blocks = [b for b in re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), flags=re.DOTALL)
          if "(proxywasm)" in b]
assert len(blocks) == 1, "README.md: expected one pytest example using the proxywasm fixture"
open(sys.argv[2], "w").write(blocks[0])
EOF
pip_env=()
while IFS= read -r kv; do pip_env+=("$kv"); done < <(env | grep '^PIP_' || true)
env -i HOME="$HOME" PATH="$venv/bin" "${pip_env[@]}" "$venv/bin/python" -m pip install -q pytest 2>&1 \
  | grep -v '^WARNING: Location' >&2 || true
if out="$(cd "$proj" && run "$venv/bin/python" -m pytest -v -rs -p no:cacheprovider test_filter.py 2>&1)" \
   && grep -q "test_callout_then_continue\[wasmtime\] PASSED" <<< "$out" \
   && grep -q "test_callout_then_continue\[wasmer\] PASSED" <<< "$out"; then
  log "Python $ver: the README's pytest example: $(tail -n1 <<< "$out")"
else
  log "Python $ver: the README's pytest example did not pass on wasmtime and wasmer:"; echo "${out:-}" >&2; status=1
fi
[ "$status" -eq 0 ] && log "ok: ${#PYTHONS[@]} interpreters" || log "FAILED"
exit "$status"
