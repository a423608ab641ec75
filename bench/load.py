"""Load: a bounded loopback load through ``pwvm serve``, with a real plugin on each backend and
without plugins, and the overhead the plugin adds.

    python bench/load.py                                  # 20,000 requests, 64 concurrent, every backend
    python bench/load.py --requests 2000 --concurrency 16 --backends wasmtime,v8
    python -m bench.load --json out.json                  # also write every figure as JSON

It starts an upstream (a minimal asyncio HTTP server, in a process of its own) and, for each
variant, ``pwvm serve`` in front of it (access log off, plugin logs at warn), sends a warm-up, then
the requests from a minimal asyncio HTTP/1.1 client (``--concurrency`` keep-alive connections),
and stops by itself. It reports p50 / p99
latency, requests per second, errors, the server's resident memory (its processes: a plugin on a
``@process`` backend has a worker) and, per plugin variant, what the plugin adds to the median
latency and takes from the throughput against the no-plugin proxy. The plugin is
``tests/plugins/build/c_http_all.wasm`` with ``test=headers`` (it reads every request header,
adds and replaces some, and rewrites the response headers) unless ``--plugin`` says otherwise.

The client, the proxy and the upstream share the machine's cores: the figures are those of this
machine at this moment, for comparing variants run side by side, not a capacity. Exit status 1
when a request failed or a variant could not run. Not part of the CI gate (tests/serve/test_load.py
runs a tiny form).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "tests" / "plugins" / "build" / "c_http_all.wasm"


# ---- the upstream (run as: python bench/load.py --upstream-server) --------------------------
# A minimal HTTP/1.1 keep-alive server on asyncio (one fixed answer): it costs next to nothing, so
# the figures are the proxy's, not the upstream's.

_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n"
           b"server: pwvm-load\r\n\r\n" b'{"ok": true}')


class _UpstreamProtocol(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            need = end + 4
            i = head.find(b"content-length:")
            if i >= 0:
                need += int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
            if len(self.buf) < need:
                return
            self.buf = self.buf[need:]
            self.transport.write(_ANSWER)


def _run_upstream() -> None:
    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY by asyncio
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        server = await asyncio.get_running_loop().create_server(_UpstreamProtocol, sock=sock)
        print(sock.getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


# ---- processes -------------------------------------------------------------------------------

def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (a worker process counts to its server)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:  # it ended meanwhile
            continue
    return total


class _Proc:
    def __init__(self, argv: list[str], ready: str, log: Path) -> None:
        self.log = log
        self.err = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE if ready == "port" else subprocess.DEVNULL,
                                     stderr=self.err, stdin=subprocess.DEVNULL, cwd=ROOT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + 120
        if ready == "port":
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode().strip()
            if not line.isdigit():
                raise RuntimeError(f"the upstream did not start: {self.text()}")
            self.url = f"http://127.0.0.1:{line}"
            return
        while True:
            m = re.search(r"listening on (http://\S+?);.*admin on (http://\S+?);", self.text())
            if m:
                self.url, self.admin = m.group(1), m.group(2)
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pwvm serve did not start:\n{self.text()[-2000:]}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


# ---- the load --------------------------------------------------------------------------------

async def _load(url: str, requests: int, concurrency: int, warmup: int) -> tuple[list[float], int, float, list[str]]:
    """``requests`` GETs over ``concurrency`` keep-alive connections; returns (latencies, errors,
    seconds, error samples). A minimal HTTP/1.1 client on asyncio streams: a general client (httpx)
    costs more CPU per request than the proxy under test, and the load would measure it."""
    host, _, port = url.removeprefix("http://").partition(":")
    request = ("GET /load HTTP/1.1\r\nhost: {h}\r\nuser-agent: pwvm-load\r\naccept: application/json\r\n"
               "x-tenant: bench\r\nauthorization: Bearer load\r\nx-pwvm-replace: original\r\n"
               "x-pwvm-remove: 1\r\nx-pwvm-echo: hello\r\n\r\n").format(h=f"{host}:{port}").encode()
    left = 0

    async def worker(out: list) -> None:
        nonlocal left
        reader = writer = None
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                assert reader is not None
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = head[9:12]
                low = head.lower()
                i = low.find(b"content-length:")
                if i < 0:
                    raise ValueError("no content-length in the answer")
                body = await reader.readexactly(int(low[i + 15:low.find(b"\r\n", i)]))
                if b"connection: close" in low:
                    writer.close()
                    reader = writer = None
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    asyncio.LimitOverrunError) as e:
                out.append(f"{type(e).__name__}: {e}")
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            if status != b"200":
                out.append(f"status {status.decode()}: {body[:100]!r}")
            else:
                out.append(time.perf_counter() - t0)
        if writer is not None:
            writer.close()

    left = warmup
    await asyncio.gather(*(worker([]) for _ in range(concurrency)))
    results: list[float | str] = []
    left = requests
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(results) for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    lat = sorted(r for r in results if isinstance(r, float))
    errors = [r for r in results if isinstance(r, str)]
    return lat, len(errors), seconds, errors[:3]


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(int(q * len(sorted_values)), len(sorted_values) - 1)]


def run_variant(name: str, backend: str | None, args: argparse.Namespace, upstream: str, tmp: Path) -> dict:
    argv = [sys.executable, "-m", "proxywasm_vm", "serve", "--listen", "127.0.0.1:0", "--upstream", upstream,
            "--admin", "127.0.0.1:0", "--access-log", "off", "--log-level", "warn", "--grace", "5"]
    if backend is not None:
        argv += ["--plugin", str(args.plugin), "--backend", backend]
        if args.deadline is not None:
            argv += ["--deadline", str(args.deadline)]
        if args.config:
            cfg = tmp / f"{name}.conf"
            cfg.write_text(args.config.replace("\\n", "\n"))
            argv += ["--config", str(cfg)]
    server = _Proc(argv, "listening", tmp / f"{name}.log")
    try:
        lat, errors, seconds, samples = asyncio.run(_load(server.url, args.requests, args.concurrency, args.warmup))
        rss = _rss(server.proc.pid)
    finally:
        server.stop()
    done = len(lat) + errors
    return {"variant": name, "backend": backend, "requests": done, "errors": errors, "error_samples": samples,
            "seconds": seconds, "rps": done / seconds if seconds else 0.0, "p50_ms": _pct(lat, 0.5) * 1e3,
            "p99_ms": _pct(lat, 0.99) * 1e3, "rss_mib": rss / 2**20}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/load.py", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20_000, help="timed requests per variant (default 20,000)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight at once (default 64)")
    p.add_argument("--warmup", type=int, default=None, help="untimed requests first (default 5%%, at most 1,000)")
    p.add_argument("--backends", help="comma-separated backend ids for the plugin variants "
                                      "(default: every available backend)")
    p.add_argument("--no-baseline", action="store_true", help="leave out the no-plugin proxy")
    p.add_argument("--plugin", type=Path, default=PLUGIN, help="the plugin (default c_http_all.wasm)")
    p.add_argument("--config", default="test=headers", help="its configuration (default 'test=headers')")
    p.add_argument("--deadline", type=float, help="each plugin callback's deadline in seconds (default: the "
                                                  "plugin default, 0.5; an overloaded machine can starve a worker "
                                                  "past it, which fails requests as in production)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON ('-': stdout)")
    p.add_argument("--upstream-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.upstream_server:
        _run_upstream()
        return 0
    if args.requests < 1 or args.concurrency < 1:
        p.error("--requests and --concurrency must be >= 1")
    if args.warmup is None:
        args.warmup = min(1000, max(args.concurrency, args.requests // 20))
    sys.path.insert(0, str(ROOT))
    from proxywasm_vm import BackendUnavailable, backend_names, get_backend

    names = args.backends.split(",") if args.backends else backend_names()
    variants: list[tuple[str, str | None]] = [] if args.no_baseline else [("no plugin", None)]
    missing = []
    for n in names:
        try:
            get_backend(n)
            variants.append((n, n))
        except (BackendUnavailable, ValueError) as e:
            missing.append(f"{n}: {getattr(e, 'reason', e)}")
    rows = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="pwvm-load-") as tmpdir:
        tmp = Path(tmpdir)
        up = _Proc([sys.executable, str(Path(__file__).resolve()), "--upstream-server"], "port", tmp / "upstream.log")
        try:
            for name, backend in variants:
                print(f"{name}: {args.requests} requests, {args.concurrency} concurrent ...", file=sys.stderr,
                      flush=True)
                try:
                    rows.append(run_variant(name, backend, args, up.url, tmp))
                    r = rows[-1]  # (as it comes: a run cut short still tells what it measured)
                    print(f"  {r['requests']} requests, {r['errors']} errors, {r['rps']:.0f} req/s, p50 "
                          f"{r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, RSS {r['rss_mib']:.1f} MiB",
                          file=sys.stderr, flush=True)
                except RuntimeError as e:
                    failed += 1
                    missing.append(f"{name}: {e}")
        finally:
            up.stop()
    base = next((r for r in rows if r["backend"] is None), None)
    for r in rows:
        if base is not None and r is not base:
            r["p50_overhead_ms"] = r["p50_ms"] - base["p50_ms"]
            r["rps_ratio"] = r["rps"] / base["rps"] if base["rps"] else float("nan")
    _print(rows, args, missing)
    if args.json:
        doc = {"requests": args.requests, "concurrency": args.concurrency, "plugin": str(args.plugin.name),
               "config": args.config, "cpus": os.cpu_count(), "load_average": os.getloadavg(), "variants": rows,
               "unavailable": missing}
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    errors = sum(r["errors"] for r in rows)
    return 1 if errors or failed else 0


def _print(rows: list[dict], args: argparse.Namespace, missing: list[str]) -> None:
    out = sys.stdout if args.json != "-" else sys.stderr
    print(f"pwvm serve load: {args.requests} requests per variant, {args.concurrency} concurrent, plugin "
          f"{args.plugin.name} ({args.config!r}); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", file=out)
    print(f"{'variant':<20}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50':>10}{'p99':>10}{'RSS':>10}"
          f"{'p50 added':>11}{'req/s':>8}", file=out)
    for r in rows:
        extra = ""
        if "p50_overhead_ms" in r:
            extra = f"{r['p50_overhead_ms']:>+9.2f}ms{r['rps_ratio'] * 100:>7.0f}%"
        print(f"{r['variant']:<20}{r['requests']:>9}{r['errors']:>7}{r['rps']:>9.0f}{r['p50_ms']:>8.2f}ms"
              f"{r['p99_ms']:>8.2f}ms{r['rss_mib']:>7.1f}MiB{extra}", file=out)
        for s in r["error_samples"]:
            print(f"  error: {s}", file=out)
    for m in missing:
        print(f"not run: {m}", file=out)
    if rows and any("rps_ratio" in r for r in rows):
        print("p50 added: the plugin variant's median minus the no-plugin proxy's; req/s: its throughput as a "
              "share of the no-plugin proxy's", file=out)


if __name__ == "__main__":
    sys.exit(main())
