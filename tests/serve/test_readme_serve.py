"""The README's ``pwvm serve`` forms, run as written (only the addresses changed to free ports and
the test's upstream): the one command, and the configuration file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx

from ._serve_helpers import PLUGINS, ROOT, Serve, Upstream

README = (ROOT / "README.md").read_text()


def _addresses(text: str, upstream: Upstream) -> str:
    return (text.replace("127.0.0.1:8080", "127.0.0.1:0").replace("127.0.0.1:9901", "127.0.0.1:0")
            .replace("http://127.0.0.1:9000", upstream.url))


def _check_auth(s: Serve) -> None:
    r = httpx.get(s.url + "/", headers={"x-pwvm-test": "auth"})
    assert (r.status_code, r.text) == (401, "unauthorized")
    r = httpx.get(s.url + "/", headers={"x-pwvm-test": "auth", "authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["upstream"] == "app"
    assert httpx.get(s.admin + "/healthz").status_code == 200
    assert 'pwvm_requests_total{code_class="4xx"} 1' in httpx.get(s.admin + "/metrics").text


def test_readme_one_command(upstream: Upstream, tmp_path: Path) -> None:
    line = next(ln.strip() for ln in README.splitlines() if ln.strip().startswith("pwvm serve --listen"))
    argv = shlex.split(_addresses(line, upstream))
    assert argv[:2] == ["pwvm", "serve"]
    s = Serve(argv[2:] + ["--access-log", "off"], tmp_path)  # (run from the checkout, as the README says)
    try:
        _check_auth(s)
    finally:
        assert s.stop() == 0


def test_readme_configuration_file(upstream: Upstream, tmp_path: Path) -> None:
    block = re.search(r"`pwvm serve -c pwvm.toml`:\n\n```toml\n(.*?)```", README, re.S)
    assert block, "the README's configuration file example"
    text = _addresses(block.group(1), upstream)
    text = text.replace('path = "tests/plugins/build/c_http_all.wasm"', f'path = "{PLUGINS / "c_http_all.wasm"}"')
    cfg = tmp_path / "pwvm.toml"
    cfg.write_text(text)
    s = Serve(["-c", str(cfg)], tmp_path)
    try:
        _check_auth(s)
    finally:
        assert s.stop() == 0
    assert '"GET / HTTP/1.1" 401 ' in (tmp_path / "access.log").read_text()
