"""``pwvm serve`` as a plain reverse proxy (no plugin), started from flags: what it forwards, what
it answers when the upstream fails, /metrics, the access log, and a drain on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from ._serve_helpers import Serve, Upstream, header


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = Serve(["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--admin", "127.0.0.1:0", "--timeout", "1"],
              tmp_path_factory.mktemp("proxy"))
    yield s
    assert s.stop() == 0, s.stderr()


def test_forwards_headers_as_a_proxy(proxy: Serve) -> None:
    r = httpx.get(proxy.url + "/a/b?x=1&y=2", headers={"x-forwarded-for": "10.0.0.9", "x-custom": "kept",
                                                        "connection": "keep-alive, x-conn-only", "x-conn-only": "1",
                                                        "x-request-id": "rid-1"})
    assert r.status_code == 200
    doc = r.json()
    assert (doc["method"], doc["path"], doc["query"]) == ("GET", "/a/b", "x=1&y=2")
    assert header(doc, "x-custom") == ["kept"]
    # hop-by-hop headers (and those `connection` names) stop at the proxy
    assert header(doc, "connection") == [] and header(doc, "x-conn-only") == []
    # as Envoy at the edge: the client's address appended, the scheme, the request id kept
    assert header(doc, "x-forwarded-for") == ["10.0.0.9, 127.0.0.1"]
    assert header(doc, "x-forwarded-proto") == ["http"]
    assert header(doc, "x-request-id") == ["rid-1"]
    assert header(doc, "x-envoy-expected-rq-timeout-ms") == ["1000"]
    assert header(doc, "host") == [proxy.url.removeprefix("http://")]  # the client's authority, as Envoy
    assert r.headers["x-pwvm-drop"] == "1"  # response headers come back
    assert int(r.headers["x-envoy-upstream-service-time"]) >= 0


def test_generates_a_request_id(proxy: Serve) -> None:
    ids = {header(httpx.get(proxy.url + "/").json(), "x-request-id")[0] for _ in range(3)}
    assert len(ids) == 3 and all(len(i) == 36 for i in ids)


def test_streams_bodies_both_ways(proxy: Serve) -> None:
    def chunks() -> Iterator[bytes]:
        for i in range(4):
            yield f"chunk{i};".encode()

    r = httpx.post(proxy.url + "/upload", content=chunks())  # sent chunked
    assert r.json()["body"] == "chunk0;chunk1;chunk2;chunk3;"
    # streamed up as it arrived (chunked), or as one piece when it arrived at once
    assert header(r.json(), "transfer-encoding") == ["chunked"] or header(r.json(), "content-length") == ["28"]
    r = httpx.post(proxy.url + "/upload", content=b"x" * 300_000)
    assert len(r.json()["body"]) == 300_000 and header(r.json(), "content-length") == ["300000"]
    with httpx.stream("GET", proxy.url + "/stream") as r:
        parts = list(r.iter_raw())
    assert b"".join(parts) == b"part0part1part2part3part4"


def test_slow_upstream_is_504(proxy: Serve) -> None:
    r = httpx.get(proxy.url + "/slow?delay=3", timeout=30)
    assert r.status_code == 504  # Envoy: the route timeout passed, "upstream request timeout" (UT)
    assert r.text == "upstream request timeout"


def test_upstream_down_is_503(tmp_path: Path) -> None:
    # a port nothing listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = Serve(["--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{port}", "--admin", "127.0.0.1:0"],
                tmp_path)
    try:
        r = httpx.get(srv.url + "/")
        # Envoy answers a connection it cannot make with 503 and response flag UF (a 502 is its
        # answer to an upstream that replied with something that is not HTTP)
        assert r.status_code == 503
        assert r.text.startswith("upstream connect error or disconnect/reset before headers")
        metrics = httpx.get(srv.admin + "/metrics").text
        assert f'pwvm_upstream_errors_total{{cluster="upstream",flag="UF"}} 1' in metrics
    finally:
        assert srv.stop() == 0
    assert '" 503 UF ' in srv.stdout()


def test_metrics_parse_and_count(proxy: Serve) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def counts() -> dict[str, float]:
        text = httpx.get(proxy.admin + "/metrics").text
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        out = {s.labels["code_class"]: s.value for s in fams["pwvm_requests"].samples
               if s.name == "pwvm_requests_total"}
        hist = [s for s in fams["pwvm_request_duration_seconds"].samples if s.name.endswith("_count")]
        out["latency_count"] = hist[0].value
        return out

    before = counts()
    for _ in range(5):
        assert httpx.get(proxy.url + "/count").status_code == 200
    httpx.get(proxy.url + "/slow?delay=3", timeout=30)  # a 504
    after = counts()
    assert after["2xx"] - before["2xx"] == 5
    assert after["5xx"] - before["5xx"] == 1
    assert after["latency_count"] - before["latency_count"] == 6
    health = httpx.get(proxy.admin + "/healthz")
    assert (health.status_code, health.text) == (200, "LIVE\n")


def test_access_log_one_line_per_request(proxy: Serve) -> None:
    httpx.get(proxy.url + "/logged?q=1", headers={"user-agent": "pwvm-test", "x-request-id": "log-me"})
    import time

    deadline = time.monotonic() + 10
    while "log-me" not in proxy.stdout() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(ln for ln in proxy.stdout().splitlines() if "log-me" in ln)
    assert '"GET /logged?q=1 HTTP/1.1" 200 - 0 ' in line
    assert '"pwvm-test" "log-me"' in line


def test_sigterm_lets_requests_in_flight_finish(upstream: Upstream, tmp_path: Path) -> None:
    srv = Serve(["--listen", "127.0.0.1:0", "--upstream", upstream.url, "--access-log", "off", "--grace", "20"],
                tmp_path)
    results: list[Any] = []
    # names this test's requests at the session-wide upstream: its count of requests in progress
    # also holds earlier tests' (a /slow request whose client gave up goes on there, and ends)
    tag = uuid.uuid4().hex

    def call(i: int) -> None:
        try:
            results.append(httpx.get(f"{srv.url}/slow?delay=1.5&tag={tag}-{i}", timeout=30).status_code)
        except Exception as e:  # noqa: BLE001 (reported by the assertion)
            results.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    import time

    deadline = time.monotonic() + 20
    while sum(f"tag={tag}-" in q for q in upstream.slow_queries) < 4:  # all four reached the upstream
        assert time.monotonic() < deadline, "the requests did not reach the upstream"
        time.sleep(0.01)
    srv.signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert results == [200] * 4
    assert srv.proc.wait(30) == 0
    assert "SIGTERM: draining" in srv.stderr()
    with pytest.raises(httpx.ConnectError):  # nothing listens any more
        httpx.get(srv.url + "/")


def test_help_names_both_forms() -> None:
    from ._serve_helpers import run_serve

    r = run_serve(["--help"])
    assert r.returncode == 0 and "-c FILE" in r.stdout and "--upstream URL" in r.stdout
    json.dumps(r.stdout)


def test_upstream_answer_that_is_not_http_is_502(tmp_path: Path) -> None:
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def garbage() -> None:  # answers every connection with bytes that are no HTTP response
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not http\r\n\r\n")

    threading.Thread(target=garbage, daemon=True).start()
    srv = Serve(["--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{port}", "--access-log", "off"],
                tmp_path)
    try:
        r = httpx.get(srv.url + "/")
        assert r.status_code == 502  # Envoy: an upstream protocol error (UPE)
        assert "protocol error" in r.text
    finally:
        lsock.close()
        assert srv.stop() == 0
