"""bench/load.py in a tiny form: it runs, stops by itself, reports every variant, no request fails.
(The figures are measured and printed, never asserted.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ._serve_helpers import ROOT


def test_load_bench_tiny(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--requests", "200", "--concurrency", "8",
                        "--backends", "wasmtime", "--json", str(out)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)
    doc = json.loads(out.read_text())
    rows = {v["variant"]: v for v in doc["variants"]}
    assert set(rows) == {"no plugin", "wasmtime"}
    for v in rows.values():
        assert (v["requests"], v["errors"]) == (200, 0)
        assert v["rss_mib"] > 0 and v["p50_ms"] > 0 and v["rps"] > 0
    assert "p50_overhead_ms" in rows["wasmtime"] and "rps_ratio" in rows["wasmtime"]
    lines = r.stdout.splitlines()
    assert any(ln.startswith("no plugin") for ln in lines) and any(ln.startswith("wasmtime") for ln in lines)
