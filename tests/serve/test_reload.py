"""Reloads and shutdown under load: SIGHUP (and ``--watch``) swap in a new plugin chain while a
client loop runs, without a failed request; a bad new configuration keeps the old chain; SIGTERM
lets the requests in flight through a plugin finish."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._serve_helpers import PLUGINS, Serve, Upstream, header


def gcore_config(upstream: Upstream, configuration: str) -> str:
    # as_gcore_headers (AssemblyScript, G-Core SDK) adds x-pwvm-config: <its configuration> to each
    # request: the upstream's echo says which chain served it
    return f"""
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
access_log = "off"
log_level = "warn"

[clusters.app]
url = "{upstream.url}"

[[plugins]]
name = "gcore"
path = "{PLUGINS / 'as_gcore_headers.wasm'}"
configuration = "{configuration}"
limits = {{ deadline = 10 }}
"""


class ClientLoop:
    """``threads`` clients sending requests back to back until stopped; keeps every outcome."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.stop_flag = threading.Event()
        self.outcomes: list[Any] = []  # (status, x-pwvm-config seen) or an exception
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop_flag.is_set():
                try:
                    r = client.get(self.url + "/loop")
                    out: Any = (r.status_code, (header(r.json(), "x-pwvm-config") or [""])[0])
                except Exception as e:  # noqa: BLE001 (a failed request: the test reports it)
                    out = e
                with self.lock:
                    self.outcomes.append(out)

    def seen(self, configuration: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if any(isinstance(o, tuple) and o[1] == configuration for o in self.outcomes[-20:]):
                    return
            assert time.monotonic() < deadline, f"no response from the chain configured {configuration!r}"
            time.sleep(0.02)

    def finish(self) -> list[Any]:
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)
        return self.outcomes


def test_sighup_reload_under_load_drops_nothing(upstream: Upstream, tmp_path: Path) -> None:
    cfg = tmp_path / "pwvm.toml"
    cfg.write_text(gcore_config(upstream, "gen1"))
    s = Serve(["-c", str(cfg)], tmp_path)
    loop = ClientLoop(s.url)
    slow: list[Any] = []
    tag = uuid.uuid4().hex  # names this test's slow request at the (session-wide) upstream

    def slow_call() -> None:  # in flight across the first swap: it ends on the chain it began on
        r = httpx.get(s.url + "/slow?delay=1.5&tag=" + tag, timeout=30)
        slow.append((r.status_code, header(r.json(), "x-pwvm-config")))

    slow_thread = threading.Thread(target=slow_call)
    try:
        loop.seen("gen1")
        slow_thread.start()
        # the slow request is at the upstream, so it went through the first chain: only then reload
        # (the client loop's requests come and go meanwhile: the upstream's count of active
        # requests does not tell which one arrived)
        deadline = time.monotonic() + 30
        while f"delay=1.5&tag={tag}" not in upstream.slow_queries:
            assert time.monotonic() < deadline, "the slow request did not reach the upstream"
            time.sleep(0.01)
        for gen in ("gen2", "gen3", "gen4"):
            cfg.write_text(gcore_config(upstream, gen))
            s.signal(signal.SIGHUP)
            loop.seen(gen)
            n = len(loop.outcomes)
            while len(loop.outcomes) < n + 20 and time.monotonic() < deadline + 60:  # some load on each chain
                time.sleep(0.02)
        slow_thread.join(30)
        assert slow == [(200, ["gen1"])]
        good = cfg.read_text()
        cfg.write_text(good.replace("[[plugins]]", "[[plugins]]\nbackend = \"nosuch\""))  # a bad one
        s.signal(signal.SIGHUP)
        s.wait_for("reload (SIGHUP) failed, the running configuration stays")
        n = len(loop.outcomes)
        while len(loop.outcomes) < n + 10:  # still served, by the last good chain
            time.sleep(0.02)
        assert all(o == (200, "gen4") for o in loop.outcomes[n:n + 10])
    finally:
        outcomes = loop.finish()
        metrics = httpx.get(s.admin + "/metrics").text if s.proc.poll() is None else ""
        code = s.stop()
    failed = [o for o in outcomes if not (isinstance(o, tuple) and o[0] == 200)]
    assert failed == [], f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    assert code == 0
    assert 'pwvm_reloads_total{result="success"} 3' in metrics
    assert 'pwvm_reloads_total{result="failure"} 1' in metrics
    assert "pwvm_config_generation 4" in metrics
    assert "plugins[0].backend: unknown backend 'nosuch'" in s.stderr()
    print(f"reload under load: {len(outcomes)} requests, none failed")


def test_watch_reloads_on_file_change(upstream: Upstream, tmp_path: Path) -> None:
    cfg = tmp_path / "pwvm.toml"
    cfg.write_text(gcore_config(upstream, "first"))
    s = Serve(["-c", str(cfg), "--watch", "0.2"], tmp_path)
    loop = ClientLoop(s.url, threads=2)
    try:
        loop.seen("first")
        time.sleep(0.05)
        cfg.write_text(gcore_config(upstream, "second-" + "x" * 3))  # another size: seen even within one mtime tick
        loop.seen("second-xxx")
    finally:
        outcomes = loop.finish()
        assert s.stop() == 0
    assert all(isinstance(o, tuple) and o[0] == 200 for o in outcomes)
    assert "reloaded (changed: pwvm.toml)" in s.stderr()


def test_sigterm_completes_requests_in_flight_through_a_plugin(upstream: Upstream, tmp_path: Path) -> None:
    s = Serve(["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--access-log", "off",
               "--plugin", str(PLUGINS / "as_gcore_headers.wasm"), "--deadline", "10", "--grace", "20"], tmp_path)
    results: list[Any] = []
    tag = uuid.uuid4().hex  # names this test's requests at the session-wide upstream (see test_proxy)

    def call(i: int) -> None:
        try:
            r = httpx.get(f"{s.url}/slow?delay=1.5&tag={tag}-{i}", timeout=30)
            results.append((r.status_code, header(r.json(), "x-pwvm-sdk")))
        except Exception as e:  # noqa: BLE001
            results.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(f"tag={tag}-" in q for q in upstream.slow_queries) < 3:
        assert time.monotonic() < deadline, "the requests did not reach the upstream"
        time.sleep(0.01)
    s.signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert results == [(200, ["gcore"])] * 3
    assert s.proc.wait(30) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_stops_too(sig: int, upstream: Upstream, tmp_path: Path) -> None:
    s = Serve(["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--access-log", "off"], tmp_path)
    assert httpx.get(s.url + "/").status_code == 200
    s.signal(sig)
    assert s.proc.wait(30) == 0
    assert "SIGINT: draining" in s.stderr()
