"""``pwvm serve``'s configuration: a bad file or bad flags exit 2 with one line naming the file,
the key and what is wrong; nothing listens."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ._serve_helpers import PLUGINS, run_serve
from proxywasm_vm._cli import main
from proxywasm_vm._serve_config import ConfigError, load_config_file

GOOD = f"""
listen = "127.0.0.1:0"

[clusters.app]
url = "http://127.0.0.1:9"

[[plugins]]
path = "{PLUGINS / 'c_http_all.wasm'}"
configuration = "test=headers"
"""


def _write(tmp_path: Path, text: str, name: str = "pwvm.toml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_good_file_parses(tmp_path: Path) -> None:
    cfg = load_config_file(_write(tmp_path, GOOD))
    assert cfg.listen == (("127.0.0.1", 0),)
    assert cfg.default_cluster == "app" and cfg.clusters["app"].timeout == 15.0
    (p,) = cfg.plugins
    assert (p.name, p.backend, p.failure_policy, p.configuration) == ("c_http_all", "wasmtime", "fail_closed",
                                                                     b"test=headers")


def test_yaml_file_parses_like_toml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = _write(tmp_path, f"""
        listen: ["127.0.0.1:0"]
        clusters:
          app: {{url: "http://127.0.0.1:9", timeout: 2}}
        plugins:
          - path: {PLUGINS / 'c_http_all.wasm'}
            failure_policy: fail_open
            limits: {{deadline: 2, memory_mb: 64}}
        """, "pwvm.yaml")
    cfg = load_config_file(path)
    (p,) = cfg.plugins
    assert (p.failure_policy, p.deadline, p.memory_bytes) == ("fail_open", 2.0, 64 << 20)
    assert cfg.clusters["app"].timeout == 2.0


@pytest.mark.parametrize("change, message", [
    ('listn = "127.0.0.1:0"\n', "listn: unknown key"),
    ('admin = "localhost"\n', "admin: 'localhost' is not an address"),
    ('shutdown_grace = -1\n', "shutdown_grace: must be > 0"),
    ('redis = "http://127.0.0.1:6379"\n', "redis: 'http://127.0.0.1:6379' is not a Redis URL"),
    ("[clusters.other]\nurl = \"ftp://x\"\n", "clusters.other.url: 'ftp://x' is not an upstream URL"),
    ('[[routes]]\nprefix = "/a"\ncluster = "nope"\n', "routes[0].cluster: unknown cluster 'nope'"),
    ('[[plugins]]\npath = "missing.wasm"\n', "plugins[1].path: no such file"),
    ('[[plugins]]\npath = "PLUGIN"\nfailure_policy = "sometimes"\n',
     "plugins[1].failure_policy: must be one of fail_closed, fail_open, fail_reload, not 'sometimes'"),
    ('[[plugins]]\npath = "PLUGIN"\nbackend = "nosuch"\n', "plugins[1].backend: unknown backend 'nosuch'"),
    ('[[plugins]]\npath = "PLUGIN"\nlimits = {deadline = "1s"}\n', "plugins[1].limits.deadline: must be a number"),
    ('[[plugins]]\npath = "PLUGIN"\nconfiguration = "a"\nconfiguration_file = "b"\n',
     "plugins[1].configuration: give configuration or configuration_file, not both"),
    ('[[plugins]]\npath = "PLUGIN"\n', "plugins[1].name: two plugins are named 'c_http_all'"),
    ("[clusters\n", "not valid TOML"),
    ("[limits]\nbody_buffer_max_bytes = 0\n", "limits.body_buffer_max_bytes: must be a whole number > 0"),
    ("[limits]\nqueue_max_items = 1.5\n", "limits.queue_max_items: must be a whole number > 0"),
    ("[limits]\nbody_max = 1\n", "limits.body_max: unknown key; the keys here are body_buffer_max_bytes"),
    ('[limits]\ndeadline = "fast"\n', "limits.deadline: must be a number of seconds > 0"),
    ('[[plugins]]\npath = "PLUGIN"\nname = "b"\nlimits = {body_buffer_max_bytes = 10}\n',
     "plugins[1].limits.body_buffer_max_bytes: a bound of the Proxy-Wasm host, which every plugin shares"),
    ('[[plugins]]\npath = "PLUGIN"\nname = "b"\nlimits = {start_deadline = "unlimited"}\n',
     "plugins[1].limits.start_deadline: must be a number of seconds > 0, not 'unlimited'"),
    ('[[plugins]]\npath = "PLUGIN"\nname = "b"\nlimits = {fuel = 10}\n', "plugins[1].limits.fuel: unknown key"),
])
def test_bad_file_names_key_and_problem(tmp_path: Path, change: str, message: str) -> None:
    text = GOOD + change.replace("PLUGIN", str(PLUGINS / "c_http_all.wasm"))
    if change.startswith(("listn", "admin", "shutdown", "redis")):  # top-level keys go before the tables
        text = change + GOOD
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config_file(path)
    assert str(e.value).startswith(path + ": ")
    assert message in str(e.value)


def test_bad_file_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + '[[routes]]\nprefix = "no-slash"\ncluster = "app"\n')
    r = run_serve(["-c", path])
    assert r.returncode == 2, r.stderr
    assert f"{path}: routes[0].prefix: a path prefix starts with '/'" in r.stderr
    assert "listening" not in r.stderr


def test_plugin_that_cannot_start_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('"test=headers"', '"fail_configure=1"'))
    r = run_serve(["-c", path])
    assert r.returncode == 2, r.stderr
    assert "plugins[0] (c_http_all): cannot start" in r.stderr and "listening" not in r.stderr


def test_yaml_without_pyyaml_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(ConfigError, match="needs PyYAML: pip install pyyaml"):
        load_config_file(_write(tmp_path, "listen: x\n", "pwvm.yml"))


@pytest.mark.parametrize("argv, message", [
    (["--upstream", "http://127.0.0.1:9", "--config", "x.json"], "--config sets a field of the plugin before it"),
    (["--plugin", "x.wasm"], "give --upstream URL"),
    (["--upstream", "127.0.0.1:9"], "--upstream: '127.0.0.1:9' is not an upstream URL"),
    (["--upstream", "http://127.0.0.1:9", "--plugin", "missing.wasm"], "--plugin missing.wasm: no such file"),
    (["--upstream", "http://127.0.0.1:9", "--cluster", "noequals"], "--cluster: 'noequals': write NAME=URL"),
    (["-c", "pwvm.toml", "--upstream", "http://127.0.0.1:9"], "--upstream: with -c FILE the configuration file"),
    (["--upstream", "http://127.0.0.1:9", "--timeout", "0"], "--timeout: must be > 0"),
])
def test_bad_flags_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_limits_default_to_the_librarys_and_are_set_per_host_and_per_plugin(tmp_path: Path) -> None:
    from proxywasm_vm import HostLimits
    from proxywasm_vm._proxywasm._plugin import DEFAULT_PLUGIN_LIMITS
    from proxywasm_vm._serve import _plugin_config

    cfg = load_config_file(_write(tmp_path, GOOD))
    assert cfg.host_limits == HostLimits()  # nothing said: the library's safe defaults
    pc = _plugin_config(cfg.plugins[0])
    assert pc.limits is None and pc.start_deadline == 5.0  # the plugin defaults (0.5 s, 512 MiB)

    cfg = load_config_file(_write(tmp_path, f"""
        [limits]                        # the host's bounds, and every plugin's defaults
        body_buffer_max_bytes = 4096
        shared_data_max_keys = "unlimited"
        deadline = 2
        memory_mb = 64

        [clusters.app]
        url = "http://127.0.0.1:9"

        [[plugins]]
        name = "a"
        path = "{PLUGINS / 'c_http_all.wasm'}"
        limits = {{ deadline = 3, start_deadline = 7, table_elements = 5000 }}

        [[plugins]]
        name = "b"
        path = "{PLUGINS / 'c_http_all.wasm'}"
        limits = {{ memory_mb = "unlimited" }}
        """))
    assert cfg.host_limits == HostLimits(body_buffer_max_bytes=4096, shared_data_max_keys=None)
    a, b = (_plugin_config(p) for p in cfg.plugins)
    assert (a.limits.deadline, a.limits.memory_bytes, a.limits.table_elements, a.start_deadline) == \
        (3.0, 64 << 20, 5000, 7.0)
    assert (b.limits.deadline, b.limits.memory_bytes, b.limits.table_elements, b.start_deadline) == \
        (2.0, None, DEFAULT_PLUGIN_LIMITS.table_elements, 5.0)
