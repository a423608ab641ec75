#!/usr/bin/env bash
# Make libnode (V8) headers + library available and build the V8 shim.
# Idempotent; run as root on Debian 12 (libnode108, Node 18 / V8 10.2) or
# Debian 13 (libnode115, Node 20 / V8 11.3).
#
#   bash ci/setup_v8.sh
#
# Order: an installed libnode-dev; `apt-get install libnode-dev` when apt can
# do it without removing anything (a NodeSource `nodejs` conflicts with it);
# otherwise `apt-get download` libnodeNNN + libnode-dev and `dpkg -x` them into
# the project-local prefix .deps/libnode/ plus `apt-get install` of libnode's
# runtime library dependencies.  PYTHON selects the interpreter (python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.deps/libnode"
PY="${PYTHON:-python3}"
MA="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"

log() { echo "setup_v8: $*" >&2; }

# usable PREFIX_USR -> 0 when <prefix>/include/node/v8.h and the matching
# libnode.so.<NODE_MODULE_VERSION> are both there.
usable() {
  local usr="$1" ver
  [ -f "$usr/include/node/v8.h" ] || return 1
  ver="$(sed -n 's/^#define NODE_MODULE_VERSION \([0-9]*\).*/\1/p' "$usr/include/node/node_version.h" 2>/dev/null)"
  [ -n "$ver" ] && [ -e "$usr/lib/$MA/libnode.so.$ver" ]
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

apt_updated=""
apt_update() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >&2 || log "apt-get update failed (continuing with the cached lists)"
    apt_updated=1
  fi
}

# The runtime package libnode-dev depends on (libnode108, libnode115, ...).
libnode_pkg() {
  apt-cache depends libnode-dev 2>/dev/null | sed -n 's/^ *Depends: \(libnode[0-9][0-9]*\)$/\1/p' | head -n1
}

# Make sure a compiler and cffi are there (the shim is C++ built by cffi).
build_deps() {
  local need=()
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  if [ ${#need[@]} -gt 0 ]; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
  "$PY" -c "import cffi" 2>/dev/null || "$PY" -m pip install -q cffi >&2
}

SOURCE=""
if usable /usr; then
  SOURCE="system libnode-dev $(dpkg-query -W -f='${Version}' libnode-dev 2>/dev/null || echo '?') (/usr)"
elif usable "$PREFIX/usr"; then
  SOURCE="project-local prefix $PREFIX (unpacked earlier: $(cat "$PREFIX/SOURCE" 2>/dev/null || echo libnode))"
else
  apt_update
  if apt-get install -s -y --no-install-recommends libnode-dev >/tmp/pwvm-libnode-sim.$$ 2>&1 &&
     ! grep -q '^Remv ' /tmp/pwvm-libnode-sim.$$; then
    log "installing libnode-dev with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnode-dev >&2
  else
    log "apt-get cannot install libnode-dev here without removing packages (a newer nodejs?): unpacking into $PREFIX"
  fi
  rm -f /tmp/pwvm-libnode-sim.$$
  if usable /usr; then
    SOURCE="system libnode-dev $(dpkg-query -W -f='${Version}' libnode-dev) (/usr, installed now)"
  else
    pkg="$(libnode_pkg)"
    [ -n "$pkg" ] || { log "no libnode-dev in the apt sources"; exit 1; }
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && chmod 777 . && apt-get download -qq "$pkg" libnode-dev >&2)
    rm -rf "$PREFIX.new"
    mkdir -p "$PREFIX.new"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$PREFIX.new"; done
    vers="$(for deb in "$tmp"/*.deb; do dpkg-deb --showformat='${Package} ${Version}\n' -W "$deb"; done | paste -sd',' | sed 's/,/, /g')"
    echo "$vers" > "$PREFIX.new/SOURCE"
    rm -rf "$PREFIX"
    mv "$PREFIX.new" "$PREFIX"
    # Runtime libraries libnode links against (libc-ares2, libuv1, libicuNN,
    # libbrotli1, libnghttp2-14, libssl3, zlib1g on Debian 12; t64 names on
    # 13): taken from the package's own Depends, less its node-* JavaScript packages.
    deps=()
    for d in $(apt-cache depends "$pkg" | sed -n 's/^ *|\{0,1\}Depends: \([^ <>]*\)$/\1/p' | grep -v '^node-'); do
      installed "$d" || deps+=("$d")
    done
    if [ ${#deps[@]} -gt 0 ]; then
      log "installing libnode's runtime dependencies: ${deps[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${deps[@]}" >&2
    fi
    usable "$PREFIX/usr" || { log "unpacked libnode is not usable"; exit 1; }
    SOURCE="project-local prefix $PREFIX (unpacked now: $vers)"
  fi
fi

# Runtime deps can be missing on a machine that got .deps/ some other way.
if [[ "$SOURCE" == project-local* ]]; then
  missing="$(ldd "$(ls "$PREFIX"/usr/lib/"$MA"/libnode.so.[0-9]* | head -n1)" | sed -n 's/^\s*\(\S*\) => not found/\1/p')"
  if [ -n "$missing" ]; then
    pkg="$(ls "$PREFIX"/usr/lib/"$MA"/libnode.so.[0-9]* | head -n1 | sed 's/.*libnode\.so\.//; s/^/libnode/')"
    apt_update
    deps=()
    for d in $(apt-cache depends "$pkg" | sed -n 's/^ *|\{0,1\}Depends: \([^ <>]*\)$/\1/p' | grep -v '^node-'); do
      installed "$d" || deps+=("$d")
    done
    log "installing missing runtime libraries ($(echo $missing)): ${deps[*]:-}"
    [ ${#deps[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${deps[@]}" >&2
  fi
fi

build_deps
# Build the shim now (into the native-module cache) rather than in the first test.
out="$(cd "$ROOT" && "$PY" proxywasm_vm/backends/v8/_build.py 2>/tmp/pwvm-v8-build.$$.log)" || {
  cat /tmp/pwvm-v8-build.$$.log >&2; rm -f /tmp/pwvm-v8-build.$$.log; exit 1; }
rm -f /tmp/pwvm-v8-build.$$.log
log "shim: $out"
echo "libnode: $SOURCE"
