"""How many processes a plugin creates for each backend string, in each form the user can write it.

Each backend id runs in a fresh interpreter (the process-wide backend cache keeps a probe
worker for the first engine, which would make counts in this one ambiguous), which counts
its own direct and indirect children in /proc: none for in-process and namespace runtimes,
exactly one worker for ``@process`` and for runtimes that run in a worker by default (wasmer,
wasm3: ``Backend.default_isolation``), and none again once everything is closed.
A worker that started a worker (the chain this guards against) shows up as two or more.
"""

from __future__ import annotations

import json

import pytest
from _helpers import DESCENDANTS, in_ci, run_python
from proxywasm.conftest import plugin_path

import proxywasm_vm as pw

NAMES = pw.backend_names()  # every registered backend id (loaded only in the children)
FORMS = ["Engine(name)", "Engine(base, isolation=mode)", "PluginConfig(backend=name)",
         "Plugin(engine=Engine(name))", "ProxyWasmHost(backend=name)"]

CHILD = DESCENDANTS + """
import gc, json, sys
import proxywasm_vm as pw

name, wasm = sys.argv[1], sys.argv[2]
base, _, mode = name.partition("@")
mode = mode or pw._backend.load_runtime(base).default_isolation  # what the bare name runs with
REQUEST = [(":method", "GET"), (":path", "/"), (":authority", "a.test")]
ADD = pw.wat2wasm('(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))')


def use_engine(e):
    store = pw.Store(e)
    assert pw.Instance(store, pw.Module(e, ADD)).exports["add"](2, 3) == 5


def use_plugin(p):
    with p.http_stream() as s:
        assert s.request_headers(REQUEST) is pw.Action.CONTINUE, s.local_response
        assert s.request.headers["x-pwvm-sdk"] == "solo"


def config(**kw):
    return pw.PluginConfig(name="solo", root_id="pwvm_solo_headers", **kw)


def settle():
    gc.collect()


def close_engine(e):
    getattr(e, "close", lambda: None)()  # only a worker engine has something to stop


counts = {}


def run(form):
    before = len(descendants())
    if form == "Engine(name)":
        e = pw.Engine(name)
        use_engine(e)
        during = descendants()
        close_engine(e)
        del e
    elif form == "Engine(base, isolation=mode)":
        e = pw.Engine(base, isolation=mode)
        use_engine(e)
        during = descendants()
        close_engine(e)
        del e
    elif form == "PluginConfig(backend=name)":
        p = pw.Plugin(config(backend=name), wasm)
        use_plugin(p)
        during = descendants()
        p.close()
        p.host.close()
        del p
    elif form == "Plugin(engine=Engine(name))":
        e = pw.Engine(name)
        p = pw.Plugin(config(), wasm, engine=e)
        use_plugin(p)
        during = descendants()
        p.close()
        close_engine(e)
        del p, e
    else:
        h = pw.ProxyWasmHost(backend=name)
        p = h.load(config(), wasm)
        use_plugin(p)
        during = descendants()
        p.close()
        h.close()
        del p, h
    settle()
    counts[form] = (before, len(during), len(descendants()))


for form in json.loads(sys.argv[3]):
    try:
        run(form)
    except pw.BackendUnavailable as e:  # (loaded here only: the test's process stays as other tests expect it)
        if counts:
            raise
        counts = {"unavailable": " ".join(str(e).split())}
        break
if "unavailable" not in counts:
    counts["isolation"] = pw.get_backend(name).isolation  # "process": runs in a worker
print(json.dumps(counts))
print("ok")
"""


@pytest.mark.parametrize("name", NAMES)
def test_processes_per_backend_string(name):
    out = run_python(CHILD, name, str(plugin_path("as_solo_headers")), json.dumps(FORMS), timeout=300)
    counts = json.loads(out.strip().splitlines()[-2])
    if "unavailable" in counts:
        if in_ci():
            pytest.fail(f"CI=true requires every backend: {counts['unavailable']}", pytrace=False)
        pytest.skip(counts["unavailable"])
    if name.endswith("@process"):
        assert counts["isolation"] == "process"
    elif "@" in name:
        assert counts["isolation"] in ("in-process", "namespace")
    workers = 1 if counts["isolation"] == "process" else 0  # a bare name: as its runtime declares
    for form in FORMS:
        before, during, after = counts[form]
        assert (before, during, after) == (0, workers, 0), f"{name} as {form}: {counts[form]}"


def test_a_worker_never_starts_a_worker():
    # The flag the worker sets at start (see _isolation._worker.main): asking for a worker there
    # raises a clear error instead of starting one.
    out = run_python(DESCENDANTS + """
import proxywasm_vm as pw
from proxywasm_vm._isolation import _conn
_conn.IN_WORKER = True
for name in ("wasmtime@process", "v8@process"):
    try:
        pw.Engine(name)
    except pw.BackendUnavailable as e:
        assert "never starts a worker" in str(e), e
    else:
        raise AssertionError(f"{name} started a worker from a worker")
assert descendants() == [], descendants()
print("ok")
""")
    assert out.strip().endswith("ok")
