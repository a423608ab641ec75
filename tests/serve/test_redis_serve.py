"""Two ``pwvm serve`` processes on one Redis (``redis = ...`` in the configuration): a counter
plugin (c_shared, a CAS retry loop) incremented through both, concurrently, ends exact."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from ._serve_helpers import PLUGINS, Serve, Upstream


@pytest.fixture
def redis_url() -> Iterator[str]:
    from proxywasm.redis_server import RedisServer, redis_server_or_skip  # tests/proxywasm's throwaway server

    srv = RedisServer(redis_server_or_skip()).start()
    yield srv.url
    srv.close()


def _config(upstream: Upstream, redis_url: str, prefix: str) -> str:
    return f"""
listen = "127.0.0.1:0"
access_log = "off"
log_level = "warn"
redis = "{redis_url}"
redis_prefix = "{prefix}"

[clusters.app]
url = "{upstream.url}"

[[plugins]]
name = "counter"
path = "{PLUGINS / 'c_shared.wasm'}"
vm_id = "shop"
limits = {{ deadline = 10 }}
"""


def test_two_servers_one_redis_counter_exact(upstream: Upstream, redis_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "pwvm.toml"
    cfg.write_text(_config(upstream, redis_url, f"pwvm-serve-{uuid.uuid4().hex[:8]}:"))
    a = Serve(["-c", str(cfg)], tmp_path / "a")
    b = Serve(["-c", str(cfg)], tmp_path / "b")
    try:
        # the ABI has no create-if-absent: the first increment seeds the key, alone
        first = httpx.get(a.url + "/", headers={"x-pwvm-op": "incr"})
        assert (first.status_code, first.headers["x-pwvm-status"], first.headers["x-pwvm-counter"]) == \
            (200, "0", "1")
        per_thread = 40
        seen: list[Any] = []
        lock = threading.Lock()

        def client(url: str) -> None:
            with httpx.Client(timeout=30) as c:
                for _ in range(per_thread):
                    r = c.get(url + "/", headers={"x-pwvm-op": "incr"})
                    with lock:
                        seen.append((r.status_code, r.headers.get("x-pwvm-status"), r.headers.get("x-pwvm-counter")))

        threads = [threading.Thread(target=client, args=(s.url,)) for s in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(st == 200 and status == "0" for st, status, _ in seen), seen[:5]
        values = sorted(int(v) for _, _, v in seen)
        # every increment stored its own value, through whichever process: 2 .. 1 + 4*per_thread
        assert values == list(range(2, 2 + 4 * per_thread))
        for s in (a, b):
            r = httpx.get(s.url + "/", headers={"x-pwvm-op": "get"})
            assert r.headers["x-pwvm-counter"] == str(1 + 4 * per_thread)
    finally:
        assert a.stop() == 0, a.stderr()
        assert b.stop() == 0, b.stderr()
