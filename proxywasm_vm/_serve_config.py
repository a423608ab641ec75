"""``pwvm serve``'s configuration: the file (TOML or YAML) or the flags, checked into one
:class:`ServeConfig`. Every mistake is a :class:`ConfigError` naming the file, the key and what
is wrong (the command exits 2 on it).

Limits: the top-level ``[limits]`` table takes the fields of :class:`~proxywasm_vm.HostLimits`
(bounds of the one Proxy-Wasm host every plugin shares: ``ServeConfig.host_limits``) and the
defaults of each plugin's VM limits (``deadline``, ``start_deadline``, ``memory_mb``,
``table_elements``); a plugin's own ``limits`` table sets those four for it. Each value is a
number > 0, or ``"unlimited"`` for no limit (said explicitly; not ``start_deadline``); what is not
given keeps the library's defaults (``HostLimits()``, ``DEFAULT_PLUGIN_LIMITS``)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from ._proxywasm._limits import HostLimits

__all__ = ["ConfigError", "ClusterConfig", "RouteConfig", "PluginSpec", "ServeConfig", "load_config_file",
           "parse_address", "parse_config"]

_POLICIES = ("fail_closed", "fail_open", "fail_reload")
_LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
_ISOLATIONS = ("in-process", "namespace", "process")


class ConfigError(Exception):
    """A bad configuration (file or flags): one line saying where and what; exit status 2."""


@dataclass(frozen=True)
class ClusterConfig:
    """An upstream cluster: where requests routed to it go, and the target of plugin HTTP callouts
    by its name."""

    name: str
    url: str
    #: seconds the upstream may take to answer, and between two reads of its response (Envoy's
    #: route timeout, default 15 s, bounds the whole response; past it Envoy answers 504)
    timeout: float = 15.0
    #: seconds to open a connection (Envoy's cluster ``connect_timeout`` defaults to 5 s)
    connect_timeout: float = 5.0
    #: connections kept open to it at most (Envoy's circuit breaker ``max_connections``: 1024)
    max_connections: int = 1024


@dataclass(frozen=True)
class RouteConfig:
    """Requests whose path starts with ``prefix`` go to ``cluster`` (the first match wins, as Envoy)."""

    prefix: str
    cluster: str


@dataclass(frozen=True)
class PluginSpec:
    """One plugin of the chain, in the order requests meet them."""

    name: str
    path: str
    backend: str = "wasmtime"
    vm_per_stream: bool = False
    failure_policy: str = "fail_closed"
    root_id: str = ""
    vm_id: str = ""
    configuration: bytes = b""
    vm_config: bytes = b""
    #: seconds each callback may run (None: the plugin default, 0.5 s)
    deadline: float | None = None
    #: bytes each VM's memory may grow to (None: the plugin default, 512 MiB)
    memory_bytes: int | None = None
    #: elements each VM's tables may grow to (None: the default, 1,000,000)
    table_elements: int | None = None
    #: seconds each call of the start phase may run (None: the default, 5 s)
    start_deadline: float | None = None
    #: the limits above said ``"unlimited"`` explicitly (no limit at all)
    unlimited: frozenset[str] = frozenset()
    #: files the plugin is made of (code, configuration): ``--watch`` reloads when one changes
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``pwvm serve`` runs with."""

    listen: tuple[tuple[str, int], ...]
    clusters: Mapping[str, ClusterConfig]
    routes: tuple[RouteConfig, ...] = ()
    default_cluster: str | None = None
    plugins: tuple[PluginSpec, ...] = ()
    admin: tuple[str, int] | None = None
    #: "-": standard output; None: off; else a file appended to
    access_log: str | None = "-"
    #: seconds in-flight requests get to finish at shutdown
    shutdown_grace: float = 30.0
    #: the plugin log level (lower records are dropped)
    log_level: str = "info"
    #: the configuration file it came from (None: flags)
    source: str | None = None
    #: files whose change ``--watch`` reloads on
    files: tuple[str, ...] = field(default=())
    #: shared data and queues in this Redis (None: in memory, per process), keys under ``redis_prefix``
    redis: str | None = None
    redis_prefix: str = "pwvm:"
    #: bounds on what the plugins make the (one, shared) Proxy-Wasm host keep: the ``[limits]`` table
    host_limits: HostLimits = field(default_factory=HostLimits)

    def cluster_for(self, path: str) -> str | None:
        """The cluster of a request path: the first route whose prefix matches, else the default."""
        for r in self.routes:
            if path.startswith(r.prefix):
                return r.cluster
        return self.default_cluster


# ---- small checked readers -----------------------------------------------------------------

class _Where:
    """Names a place in the configuration for error messages: ``pwvm.toml: plugins[1].backend``."""

    def __init__(self, source: str, key: str = "") -> None:
        self.source = source
        self.key = key

    def at(self, key: str | int) -> _Where:
        if isinstance(key, int):
            return _Where(self.source, f"{self.key}[{key}]")
        return _Where(self.source, f"{self.key}.{key}" if self.key else key)

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key}: {what}" if self.key else f"{self.source}: {what}")


def _table(v: Any, w: _Where, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise w.fail(f"must be a table (mapping), not {_kind(v)}")
    for k in v:
        if not isinstance(k, str) or k not in allowed:
            raise w.at(str(k)).fail(f"unknown key; the keys here are {', '.join(sorted(allowed))}")
    return v


def _kind(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _str(d: dict, key: str, w: _Where, default: Any = None, *, empty: bool = True) -> Any:
    if key not in d:
        return default
    v = d[key]
    if not isinstance(v, str):
        raise w.at(key).fail(f"must be a string, not {_kind(v)}")
    if not empty and not v:
        raise w.at(key).fail("must not be empty")
    return v


def _num(d: dict, key: str, w: _Where, default: Any, *, positive: bool = True) -> Any:
    if key not in d:
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise w.at(key).fail(f"must be a number, not {_kind(v)}")
    if positive and not v > 0:
        raise w.at(key).fail(f"must be > 0, not {v}")
    return float(v)


def _int(d: dict, key: str, w: _Where, default: Any) -> Any:
    if key not in d:
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise w.at(key).fail(f"must be a whole number > 0, not {v!r}")
    return v


def _bool(d: dict, key: str, w: _Where, default: bool) -> bool:
    if key not in d:
        return default
    v = d[key]
    if not isinstance(v, bool):
        raise w.at(key).fail(f"must be true or false, not {v!r}")
    return v


def _choice(d: dict, key: str, w: _Where, default: str, choices: tuple[str, ...]) -> str:
    v = _str(d, key, w, default)
    if v not in choices:
        raise w.at(key).fail(f"must be one of {', '.join(choices)}, not {v!r}")
    return str(v)


def parse_address(text: str, w: _Where) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` / ``":8080"`` (all interfaces) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise w.fail(f"{text!r} is not an address: write HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    n = int(port)
    if not 0 <= n <= 65535:
        raise w.fail(f"{text!r}: port {n} is out of range 0..65535")
    return host or "0.0.0.0", n


def _url(text: str, w: _Where) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise w.fail(f"{text!r} is not an upstream URL: write http://HOST:PORT (or https://)")
    if parts.query or parts.fragment:
        raise w.fail(f"{text!r}: an upstream URL has no query or fragment")
    try:
        parts.port
    except ValueError as e:
        raise w.fail(f"{text!r}: {e}") from None
    return text.rstrip("/")


def _redis_url(text: str | None, w: _Where) -> str | None:
    if text is None:
        return None
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise w.fail(f"{text!r} is not a Redis URL: write redis://HOST:PORT/DB (or rediss://, unix://)")
    return text


def _read(path: Path, w: _Where) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise w.fail(f"cannot read {path}: {e.strerror or e}") from None


def _backend(text: str, isolation: str | None, w: _Where) -> str:
    """A backend id that exists here (``runtime`` or ``runtime@isolation``)."""
    from ._backend import backend_names, get_backend, parse_backend
    from ._errors import BackendUnavailable

    name = text
    if isolation is not None:
        if "@" in text:
            raise w.fail(f"backend {text!r} names its isolation already; drop 'isolation' or the '@...'")
        name = text if isolation == "in-process" else f"{text}@{isolation}"
    try:
        base, _ = parse_backend(name)
    except ValueError as e:
        raise w.fail(str(e)) from None
    if base not in backend_names():
        raise w.fail(f"unknown backend {name!r}; choose from {', '.join(backend_names())}")
    try:
        get_backend(name)
    except BackendUnavailable as e:
        raise w.fail(f"backend {name!r} is unavailable here: {e.reason} (enable it: {e.how_to_enable})") from None
    except ValueError as e:
        raise w.fail(str(e)) from None
    return name


# ---- the file ------------------------------------------------------------------------------

_TOP = {"listen", "admin", "access_log", "default_cluster", "shutdown_grace", "log_level", "backend", "clusters",
        "routes", "plugins", "redis", "redis_prefix", "limits"}
_CLUSTER = {"url", "timeout", "connect_timeout", "max_connections"}
_ROUTE = {"prefix", "cluster"}
_PLUGIN = {"name", "path", "backend", "isolation", "vm_per_stream", "failure_policy", "root_id", "vm_id",
           "configuration", "configuration_file", "vm_config", "vm_config_file", "limits"}
#: limits of each plugin's VMs: in a plugin's ``limits``, or as the default of every plugin in the
#: top-level ``[limits]``
_LIMITS = {"deadline", "start_deadline", "memory_mb", "table_elements"}
#: bounds on what plugins make the host keep (HostLimits' fields): one host serves every plugin, so
#: only in the top-level ``[limits]``
_HOST_LIMITS = frozenset(f.name for f in dataclasses.fields(HostLimits))
_UNLIMITED = "unlimited"


def _limit(d: dict, key: str, w: _Where, *, seconds: bool, unlimited: bool = True) -> Any:
    """A limit: a number > 0 (seconds, or a whole number), or ``"unlimited"`` (returned as
    ``_UNLIMITED``); None when absent."""
    if key not in d:
        return None
    v = d[key]
    if unlimited and v == _UNLIMITED:
        return _UNLIMITED
    off = ' or "unlimited"' if unlimited else ""
    if seconds:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise w.at(key).fail(f"must be a number of seconds > 0{off}, not {v!r}")
        return float(v)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise w.at(key).fail(f"must be a whole number > 0{off}, not {v!r}")
    return v


def _plugin_limits(d: dict, w: _Where) -> dict[str, Any]:
    """The plugin limits a ``limits`` table sets (absent keys left out)."""
    out = {"deadline": _limit(d, "deadline", w, seconds=True),
           "start_deadline": _limit(d, "start_deadline", w, seconds=True, unlimited=False),
           "memory_mb": _limit(d, "memory_mb", w, seconds=False),
           "table_elements": _limit(d, "table_elements", w, seconds=False)}
    return {k: v for k, v in out.items() if v is not None}


def _top_limits(v: Any, w: _Where) -> tuple[HostLimits, dict[str, Any]]:
    """The top-level ``[limits]``: the host's bounds (HostLimits, the safe defaults for what is not
    given) and the plugin limits every plugin gets unless its own ``limits`` says otherwise."""
    d = _table(v, w, _LIMITS | _HOST_LIMITS)
    host = {k: _limit(d, k, w, seconds=False) for k in _HOST_LIMITS if k in d}
    try:
        hl = HostLimits().with_(**{k: None if x == _UNLIMITED else x for k, x in host.items()})
    except (TypeError, ValueError) as e:  # (checked above already; HostLimits says it again)
        raise w.fail(str(e)) from None
    return hl, _plugin_limits(d, w)


def load_config_file(path: str) -> ServeConfig:
    """Read and check a configuration file (``.toml``, or ``.yaml`` / ``.yml`` with PyYAML)."""
    p = Path(path)
    w = _Where(path)
    raw = _read(p, w)
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise w.fail("a YAML configuration needs PyYAML: pip install pyyaml (or write it in TOML)") from None
        try:
            doc = yaml.safe_load(raw.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise w.fail(f"not valid YAML: {e}".replace("\n", " ")) from None
        if doc is None:
            doc = {}
    elif p.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover (Python 3.10)
            import tomli as tomllib
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise w.fail(f"not valid TOML: {e}") from None
    else:
        raise w.fail("name the configuration file .toml, .yaml or .yml")
    return parse_config(doc, source=path, base=p.parent)


def parse_config(doc: Any, *, source: str, base: Path) -> ServeConfig:
    """Check a configuration document (the parsed file); relative paths start at ``base``."""
    w = _Where(source)
    d = _table(doc, w, _TOP)
    listen_raw = d.get("listen", ["127.0.0.1:8080"])
    if isinstance(listen_raw, str):
        listen_raw = [listen_raw]
    if not isinstance(listen_raw, list) or not listen_raw:
        raise w.at("listen").fail("must be an address or a non-empty list of addresses (HOST:PORT)")
    listen = []
    for i, a in enumerate(listen_raw):
        if not isinstance(a, str):
            raise w.at("listen").at(i).fail(f"must be a string HOST:PORT, not {_kind(a)}")
        listen.append(parse_address(a, w.at("listen").at(i)))
    admin_text = _str(d, "admin", w)
    admin = parse_address(admin_text, w.at("admin")) if admin_text else None
    access_log = _str(d, "access_log", w, "-", empty=False)
    if access_log == "off":
        access_log = None
    elif access_log != "-":
        access_log = str(base / access_log)
    grace = _num(d, "shutdown_grace", w, 30.0)
    log_level = _choice(d, "log_level", w, "info", _LOG_LEVELS)
    default_backend = _str(d, "backend", w, "wasmtime", empty=False)

    clusters_raw = d.get("clusters", {})
    cw = w.at("clusters")
    if not isinstance(clusters_raw, dict) or not clusters_raw:
        raise cw.fail("give at least one upstream cluster: [clusters.NAME] with url = \"http://HOST:PORT\"")
    clusters = {}
    for name, c in clusters_raw.items():
        cwn = cw.at(name)
        c = _table(c, cwn, _CLUSTER)
        if "url" not in c:
            raise cwn.at("url").fail("missing: where the cluster is, e.g. http://127.0.0.1:9000")
        clusters[name] = ClusterConfig(name=name, url=_url(_str(c, "url", cwn), cwn.at("url")),
                                       timeout=_num(c, "timeout", cwn, 15.0),
                                       connect_timeout=_num(c, "connect_timeout", cwn, 5.0),
                                       max_connections=_int(c, "max_connections", cwn, 1024))

    routes_raw = d.get("routes", [])
    rw = w.at("routes")
    if not isinstance(routes_raw, list):
        raise rw.fail("must be a list of {prefix, cluster} tables ([[routes]] in TOML)")
    routes = []
    for i, r in enumerate(routes_raw):
        rwi = rw.at(i)
        r = _table(r, rwi, _ROUTE)
        prefix = _str(r, "prefix", rwi, "/")
        if not prefix.startswith("/"):
            raise rwi.at("prefix").fail(f"a path prefix starts with '/', not {prefix!r}")
        cluster = _str(r, "cluster", rwi)
        if cluster is None:
            raise rwi.at("cluster").fail("missing: the name of the cluster these requests go to")
        if cluster not in clusters:
            raise rwi.at("cluster").fail(f"unknown cluster {cluster!r}; the clusters are {', '.join(clusters)}")
        routes.append(RouteConfig(prefix, cluster))
    default = _str(d, "default_cluster", w)
    if default is not None and default not in clusters:
        raise w.at("default_cluster").fail(f"unknown cluster {default!r}; the clusters are {', '.join(clusters)}")
    if default is None and not routes:
        if len(clusters) > 1:
            raise w.at("default_cluster").fail("several clusters and no routes: say which cluster requests go to "
                                               "(default_cluster = NAME, or [[routes]])")
        default = next(iter(clusters))

    plugins_raw = d.get("plugins", [])
    pw = w.at("plugins")
    if not isinstance(plugins_raw, list):
        raise pw.fail("must be a list of plugin tables ([[plugins]] in TOML)")
    host_limits, default_limits = _top_limits(d.get("limits", {}), w.at("limits"))
    plugins: list[PluginSpec] = []
    for i, pl in enumerate(plugins_raw):
        plugins.append(_plugin(pl, pw.at(i), base, default_backend, default_limits))
    _unique_names(plugins, pw)
    files = [source] + [f for p in plugins for f in p.files]
    return ServeConfig(listen=tuple(listen), clusters=clusters, routes=tuple(routes), default_cluster=default,
                       plugins=tuple(plugins), admin=admin, access_log=access_log, shutdown_grace=grace,
                       log_level=log_level, source=source, files=tuple(files),
                       redis=_redis_url(_str(d, "redis", w, empty=False), w.at("redis")),
                       redis_prefix=_str(d, "redis_prefix", w, "pwvm:"), host_limits=host_limits)


def _unique_names(plugins: list[PluginSpec], w: _Where) -> None:
    seen = set()
    for i, p in enumerate(plugins):
        if p.name in seen:
            raise w.at(i).at("name").fail(f"two plugins are named {p.name!r}: give each its own name")
        seen.add(p.name)


def _plugin(pl: Any, w: _Where, base: Path, default_backend: str, default_limits: dict[str, Any]) -> PluginSpec:
    pl = _table(pl, w, _PLUGIN)
    path_text = _str(pl, "path", w, empty=False)
    if path_text is None:
        raise w.at("path").fail("missing: the plugin's .wasm file")
    path = base / path_text
    if not path.is_file():
        raise w.at("path").fail(f"no such file: {path}")
    files = [str(path)]
    isolation = pl.get("isolation")
    if isolation is not None and isolation not in _ISOLATIONS:
        raise w.at("isolation").fail(f"must be one of {', '.join(_ISOLATIONS)}, not {isolation!r}")
    backend = _backend(_str(pl, "backend", w, default_backend, empty=False), isolation, w.at("backend"))
    conf: dict[str, bytes] = {}
    for key in ("configuration", "vm_config"):
        inline = _str(pl, key, w)
        file = _str(pl, key + "_file", w, empty=False)
        if inline is not None and file is not None:
            raise w.at(key).fail(f"give {key} or {key}_file, not both")
        if file is not None:
            fp = base / file
            conf[key] = _read(fp, w.at(key + "_file"))
            files.append(str(fp))
        else:
            conf[key] = (inline or "").encode()
    lw = w.at("limits")
    raw = pl.get("limits", {})
    if isinstance(raw, dict):
        for k in raw:
            if k in _HOST_LIMITS:
                raise lw.at(k).fail("a bound of the Proxy-Wasm host, which every plugin shares: set it in the "
                                    "top-level [limits] table")
    limits = {**default_limits, **_plugin_limits(_table(raw, lw, _LIMITS), lw)}
    unlimited = frozenset(k for k, v in limits.items() if v == _UNLIMITED)
    limits = {k: v for k, v in limits.items() if v != _UNLIMITED}
    memory_mb = limits.get("memory_mb")
    return PluginSpec(name=_str(pl, "name", w, Path(path_text).stem, empty=False), path=str(path), backend=backend,
                      vm_per_stream=_bool(pl, "vm_per_stream", w, False),
                      failure_policy=_choice(pl, "failure_policy", w, "fail_closed", _POLICIES),
                      root_id=_str(pl, "root_id", w, ""), vm_id=_str(pl, "vm_id", w, ""),
                      configuration=conf["configuration"], vm_config=conf["vm_config"],
                      deadline=limits.get("deadline"), memory_bytes=memory_mb << 20 if memory_mb is not None else None,
                      table_elements=limits.get("table_elements"), start_deadline=limits.get("start_deadline"),
                      unlimited=frozenset({"memory_mb": "memory_bytes"}.get(k, k) for k in unlimited),
                      files=tuple(files))


# ---- the flags -----------------------------------------------------------------------------

def config_from_flags(*, listen: list[str], upstream: str | None, clusters: list[str], plugins: list[dict],
                      backend: str, admin: str | None, access_log: str, timeout: float | None,
                      grace: float, log_level: str, deadline: float | None = None, redis: str | None = None,
                      redis_prefix: str = "pwvm:") -> ServeConfig:
    """The simple form: ``--listen ADDR --upstream URL --plugin FILE [--config FILE] ...``; the same
    checks as a file (errors name the flag)."""
    w = _Where("pwvm serve")
    if upstream is None:
        raise w.fail("--upstream URL is required (or give a configuration file with -c)")
    for flag, v in (("--timeout", timeout), ("--grace", grace), ("--deadline", deadline)):
        if v is not None and not v > 0:
            raise w.at(flag).fail(f"must be > 0 seconds, not {v}")
    c: dict[str, ClusterConfig] = {}
    opts: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    c["upstream"] = ClusterConfig("upstream", _url(upstream, w.at("--upstream")), **opts)
    for text in clusters:
        name, sep, url = text.partition("=")
        if not sep or not name:
            raise w.at("--cluster").fail(f"{text!r}: write NAME=URL, e.g. auth=http://127.0.0.1:9100")
        if name in c:
            raise w.at("--cluster").fail(f"cluster {name!r} is given twice ('upstream' is --upstream's)")
        c[name] = ClusterConfig(name, _url(url, w.at("--cluster")), **opts)
    specs = []
    for i, p in enumerate(plugins):
        pwi = w.at(f"--plugin {p['path']}")
        path = Path(p["path"])
        if not path.is_file():
            raise pwi.fail(f"no such file: {path}")
        files = [str(path)]
        configuration = b""
        if p.get("config") is not None:
            configuration = _read(Path(p["config"]), pwi.at("--config"))
            files.append(p["config"])
        specs.append(PluginSpec(name=p.get("name") or (path.stem if len(plugins) == 1 else f"{path.stem}.{i}"),
                                path=str(path), backend=_backend(p.get("backend") or backend, None, pwi.at("--backend")),
                                failure_policy=p.get("failure_policy") or "fail_closed",
                                root_id=p.get("root_id") or "", vm_id=p.get("vm_id") or "",
                                configuration=configuration, deadline=deadline, files=tuple(files)))
    _unique_names(specs, w.at("--name"))
    if access_log == "off":
        log: str | None = None
    else:
        log = access_log if access_log == "-" else os.path.abspath(access_log)
    return ServeConfig(listen=tuple(parse_address(a, w.at("--listen")) for a in (listen or ["127.0.0.1:8080"])),
                       clusters=c, default_cluster="upstream", plugins=tuple(specs),
                       admin=parse_address(admin, w.at("--admin")) if admin else None, access_log=log,
                       shutdown_grace=grace, log_level=log_level, files=tuple(f for s in specs for f in s.files),
                       redis=_redis_url(redis, w.at("--redis")), redis_prefix=redis_prefix)
