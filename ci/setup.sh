#!/usr/bin/env bash
# Set up everything proxywasm-vm needs, on a fresh Debian 12/13 machine as root.
# Idempotent: a second run only checks. Only the package registries are used
# (Debian apt, PyPI, npm).
#
#   bash ci/setup.sh            base: system packages, .venv, the wasmtime shim
#   bash ci/setup.sh --all      also V8 (libnode + shim) and wasmer (a Python 3.10 worker env)
#
# The base install has the wasm3 backend's pywasm3 (the "wasm3" extra, built from source with gcc).
#
# PYTHON picks the interpreter for .venv (default: python3, must be >= 3.10).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
ALL=""
[ "${1:-}" = "--all" ] && ALL=1

log() { echo "setup: $*" >&2; }

apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. A C compiler and, when the interpreter is Debian's own, its venv and headers.
command -v gcc >/dev/null && command -v g++ >/dev/null || apt_install gcc g++ libc6-dev
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
if [ ! -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
  apt_install python3-dev
fi
# redis-server: the Redis services' tests start their own on a free port (never the system's)
command -v redis-server >/dev/null || apt_install redis-server
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { log "$PY is older than 3.10; set PYTHON to a newer interpreter"; exit 1; }

# 2. The project's virtual environment, with the package installed editable.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.pwvm-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ]; then
  log "installing proxywasm-vm and its test dependencies into .venv"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test,plot,wasm3,redis]"
  touch "$STAMP"
fi

# 3. Check that the wasmtime backend loads (the editable install compiled its shim into the checkout;
#    a shim source changed since is rebuilt now, rather than in the first test).
"$VENV/bin/pwvm" setup wasmtime --require wasmtime >&2

if [ -n "$ALL" ]; then
  # 4. V8: libnode (apt, or unpacked into .deps/ where a newer Node.js blocks apt) and the shim.
  PYTHON="$VENV/bin/python" bash "$ROOT/ci/setup_v8.sh"
  "$VENV/bin/pwvm" setup v8 --require v8 >&2
  # 5. wasmer: a Python 3.10 environment (.venv310) for its worker process.
  bash "$ROOT/ci/setup_wasmer.sh"
  "$VENV/bin/pwvm" setup wasmer wasm3 wasmtime@namespace wasmtime@process v8@namespace v8@process --require wasmer --require wasm3 \
    --require wasmtime@namespace --require wasmtime@process --require v8@namespace --require v8@process >&2
fi
log "ready"
