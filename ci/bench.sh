#!/usr/bin/env bash
# Set up (idempotently) and run `pwvm bench` on the default backend, wasmtime.
# Extra arguments go to `pwvm bench`, e.g. `bash ci/bench.sh --quick`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/ci/setup.sh"
exec "$ROOT/.venv/bin/pwvm" bench --backends wasmtime "$@"
