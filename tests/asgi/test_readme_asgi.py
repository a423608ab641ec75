"""The README section "In front of an ASGI app": its Python block, saved as main.py, served with
`uvicorn main:app` as the README says (a subprocess on 127.0.0.1), stopped with SIGTERM."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import plugin_file

ROOT = Path(__file__).resolve().parent.parent.parent


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## In front of an ASGI app"):]
    section = section[:section.index("\n## ", 1)]
    code = section[section.index("```python\n") + len("```python\n"):]
    return code[:code.index("```")]


def test_the_readme_fastapi_form_runs(tmp_path):
    code = readme_block()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10  # "in ten lines"
    (tmp_path / "main.py").write_text(code)
    shutil.copy(plugin_file("c_http_all"), tmp_path / "my_filter.wasm")
    with socket.socket() as s:  # a free port for uvicorn (the README runs it on its default one)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/hello"
        deadline = time.monotonic() + 60  # a "did not start" guard
        while True:
            try:
                r = httpx.get(url, timeout=30)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        assert r.status_code == 401 and r.text == "unauthorized"
        r = httpx.get(url, headers={"authorization": "Bearer secret"}, timeout=30)
        assert r.status_code == 200 and r.json() == {"hello": "world"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    # a clean shutdown (lifespan included: the middleware's thread ends there); uvicorn re-raises
    # the signal it caught once it has shut down, so its exit status is 0 or -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete." in out and "Finished server process" in out, out
    assert "Traceback" not in out, out
