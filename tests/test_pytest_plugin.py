"""The pytest plugin for plugin authors (``proxywasm_vm.testing``), tested with pytest's own ``pytester``.

Each test writes a test file as a plugin author would, runs pytest on it (in this process, with
the plugin loaded from its ``pytest11`` entry point, as an installed package has it), and checks
the outcome. The flows run on every backend this suite runs on (the ``backend_name`` fixture of
``conftest.py``), each passed to the inner run as ``--pwvm-backends=<backend>``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import pkgutil
import re
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import proxywasm_vm as pw
from proxywasm_vm import _settings
from proxywasm_vm.testing import FakeHttpDispatcher, LogView, NoPendingCall, PluginHarness, pytest_plugin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tests" / "plugins" / "build"
RUNTIMES = [n for n in pw.backend_names() if "@" not in n]

HEAD = '''
import pytest
from proxywasm_vm import Action, LogLevel
from proxywasm_vm.testing import FakeGrpcDispatcher, FakeHttpDispatcher

REQ = {":method": "GET", ":path": "/p", ":authority": "example.test"}
ALL = "build/c_http_all.wasm"
'''


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """Import, in this process, whatever the inner runs would import, and make their engines.

    ``pytester`` runs pytest in this process and afterwards removes from ``sys.modules`` every
    module imported during the run; the next run would import a second copy of a lazily loaded
    module (a backend's, the Proxy-Wasm host's) beside the first copy the engines it caches
    still use. (A plugin author's pytest session runs once per process: this is ours alone.)
    """
    for m in pkgutil.walk_packages(pw.__path__, "proxywasm_vm."):
        spec = m.module_finder.find_spec(m.name, None)  # type: ignore[call-arg]
        if spec is not None and str(spec.origin).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            continue  # a compiled helper: imported through _native.load_extension, which checks its build
            # key (a prebuilt one left from other sources must not be the one in sys.modules)
        if m.name != "proxywasm_vm.__main__":
            try:
                importlib.import_module(m.name)
            except ImportError:  # a backend whose runtime is not installed here
                pass
    for name in _settings.selected_backends() or pw.backend_names():
        try:
            engine = pytest_plugin._ENGINES.setdefault(name, pw.Engine(name))
        except pw.BackendUnavailable:
            continue
        with PluginHarness(BUILD / "c_http_all.wasm", engine=engine, configuration="test=callout") as h:
            h.request({":method": "GET", ":path": "/", ":authority": "a"})
            h.next_http_call().respond(200)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A plugin author's project: an ini file (the rootdir) and the built plugins in ``build/``."""
    pytester.makeini("[pytest]\n")
    (pytester.path / "build").mkdir()
    for name in ("c_http_all", "c_tcp", "wat_trap_in"):
        shutil.copy(BUILD / f"{name}.wasm", pytester.path / "build" / f"{name}.wasm")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # -p no:faulthandler: pytest re-enables faulthandler when an inner run ends, installing its
    # handlers over those the runtimes already loaded in this process catch their wasm traps with
    # (a trap in a later test would then end the process). A user's single session enables it
    # first, and the engines are made later, in the fixtures.
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:faulthandler", "-rA", *args)


def run_on(pytester: pytest.Pytester, backend: str, source: str, *args: str) -> pytest.RunResult:
    """Write ``source`` as a test file and run it on ``backend``; every test in it must pass there."""
    pytester.makepyfile(test_author=HEAD + source)
    result = run(pytester, f"--pwvm-backends={backend}", *args)
    n = len(re.findall(r"^def test_", source, re.M))
    result.assert_outcomes(passed=n)
    ids = set(re.findall(r"test_\w+\[([^\]]+)\]", result.stdout.str()))
    assert ids == {backend}
    return result


# ------------------------------------------------------------------------- registration, options


def test_the_plugin_is_registered_by_its_entry_point():
    eps = [ep for ep in entry_points(group="pytest11") if ep.name == "proxywasm_vm"]
    assert [ep.value for ep in eps] == ["proxywasm_vm.testing.pytest_plugin"]


def test_default_runs_each_available_runtime(project):
    project.makepyfile("def test_x(pwvm_backend):\n    pass\n")
    result = run(project, "--collect-only", "-q")
    assert re.findall(r"test_x\[([^\]]+)\]", result.stdout.str()) == RUNTIMES
    assert result.ret == 0


def test_all_means_every_backend_id(project):
    project.makepyfile("def test_x(pwvm_backend):\n    pass\n")
    result = run(project, "--pwvm-backends=all", "--collect-only", "-q")
    assert re.findall(r"test_x\[([^\]]+)\]", result.stdout.str()) == pw.backend_names()


def test_the_option_picks_backends_and_the_ini_sets_a_default(project):
    chosen = (_settings.selected_backends() or pw.backend_names())[:2]
    project.makepyfile("""
        def test_x(proxywasm, pwvm_backend, pwvm_engine):
            p = proxywasm("build/c_http_all.wasm")
            assert p.backend == pwvm_engine.name == pwvm_backend
    """)
    result = run(project, "--pwvm-backends=" + ",".join(chosen), "-v")
    result.assert_outcomes(passed=len(chosen))
    assert re.findall(r"test_x\[([^\]]+)\] PASSED", result.stdout.str()) == chosen
    assert f"proxywasm backends: {', '.join(chosen)} (--pwvm-backends)" in result.stdout.str()
    project.makeini(f"[pytest]\npwvm_backends = {chosen[0]}\n")
    result = run(project, "-v")
    result.assert_outcomes(passed=1)
    assert re.findall(r"test_x\[([^\]]+)\] PASSED", result.stdout.str()) == chosen[:1]


def test_a_test_may_pick_its_own_backends(project):
    project.makepyfile("""
        import pytest

        @pytest.mark.parametrize("pwvm_backend", ["wasmtime"], indirect=True)
        def test_only_wasmtime(proxywasm):
            assert proxywasm("build/c_http_all.wasm").backend == "wasmtime"
    """)
    result = run(project, "--pwvm-backends=all", "-v")
    result.assert_outcomes(passed=1)
    assert "test_only_wasmtime[wasmtime] PASSED" in result.stdout.str()


@pytest.mark.parametrize("value, message", [
    ("nosuch", "--pwvm-backends: unknown backend 'nosuch'; known: wasmtime, "),
    ("wasmtime,v9@process", "--pwvm-backends: unknown backend 'v9@process'; known: "),
    ("wasmtime@nowhere", "--pwvm-backends: unknown backend 'wasmtime@nowhere'; known: "),
    ("all,v8", "--pwvm-backends: 'all' stands alone"),
    (" , ", "--pwvm-backends is empty"),
])
def test_an_unknown_backend_is_a_usage_error(project, value, message):
    project.makepyfile("def test_x(pwvm_backend):\n    pass\n")
    result = run(project, f"--pwvm-backends={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ERROR: {message}" in err and "Traceback" not in err


def test_unavailable_backend_skips_by_default_and_fails_when_named(pytester):
    # A registered runtime that cannot load here. In a fresh interpreter (runpytest_subprocess), so the
    # registry of this process stays as it is, and the plugin loads from its entry point as in a
    # user's project.
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(nowhere_backend="""
        from proxywasm_vm import BackendUnavailable
        raise BackendUnavailable("nowhere", "the nowhere runtime is not installed", "pip install nowhere")
    """)
    pytester.makeconftest("""
        import proxywasm_vm as pw
        pw.register_backend("nowhere", "nowhere_backend")
    """)
    pytester.makepyfile("def test_x(pwvm_backend):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "-k", "nowhere")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*backend nowhere is not available here: *not installed*pip install nowhere*"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--pwvm-backends=nowhere")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--pwvm-backends asks for nowhere, which cannot run here: *not installed*"])


def test_missing_wasm_file_fails_with_the_path(project):
    project.makepyfile("""
        def test_x(proxywasm):
            proxywasm("build/nope.wasm")
    """)
    result = run(project, "--pwvm-backends=wasmtime")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"proxywasm: no Proxy-Wasm module at {project.path / 'build' / 'nope.wasm'} (a relative path starts at " \
           f"the rootdir, {project.path})" in out
    assert "Traceback" not in out


def test_the_backend_is_not_an_option_of_the_fixture(project):
    project.makepyfile("""
        import pytest

        def test_x(proxywasm):
            with pytest.raises(TypeError, match="runs the plugin on each selected backend"):
                proxywasm("build/c_http_all.wasm", backend="v8")
    """)
    run(project, "--pwvm-backends=wasmtime").assert_outcomes(passed=1)


def test_a_failed_test_shows_the_plugin_logs(project, backend_name):
    project.makepyfile(test_fails=HEAD + """
def test_x(proxywasm):
    p = proxywasm(ALL, configuration="test=headers")
    p.request(REQ)
    assert False, "the author's assertion"
""")
    result = run(project, f"--pwvm-backends={backend_name}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*proxywasm logs: c_http_all on {backend_name}*",
                                 "INFO     [[]ctx *[]] c_http_all: request headers context=* test=headers"])


# ------------------------------------------------------------------------- the flows, on every backend


def test_http_headers_bodies_trailers_and_local_responses(project, backend_name):
    run_on(project, backend_name, '''
def test_headers_and_trailers(proxywasm, pwvm_backend):
    p = proxywasm(ALL, configuration="test=headers")
    assert p.backend == pwvm_backend
    s = p.http_stream()
    assert s.request_headers({**REQ, "x-pwvm-replace": "old", "x-pwvm-remove": "x"}) is Action.CONTINUE
    h = s.request.headers
    assert h["x-pwvm-added"] == "1" and h["x-pwvm-replace"] == "replaced" and "x-pwvm-remove" not in h
    assert h["x-pwvm-header-count"] == "5"
    assert s.request_trailers({"t": "1"}) is Action.CONTINUE
    assert s.request.trailers["x-pwvm-request-trailer"] == "1"
    assert s.response_headers({":status": "200", "x-pwvm-drop": "1", "keep": "k"}) is Action.CONTINUE
    assert "x-pwvm-drop" not in s.response.headers and s.response.headers["x-pwvm-set-pairs"] == "3"
    assert not s.closed
    assert s.response_trailers({"rt": "1"}) is Action.CONTINUE
    assert s.response.trailers["x-pwvm-trailer"] == "1"
    assert s.closed  # both directions ended: done, log and delete ran

def test_body_across_chunks(proxywasm):
    p = proxywasm(ALL, configuration="test=body")
    s = p.http_stream()
    s.request_headers(REQ)
    assert s.request_body(b"hello ") is Action.PAUSE
    assert s.request.buffered == b"hello " and s.request.body == b""
    assert s.request_body(b"world", end_of_stream=True) is Action.CONTINUE
    assert s.request.body == b"HELLO WORLD"
    assert p.request(REQ, "abc").request.body == b"ABC"

def test_local_response(proxywasm):
    p = proxywasm(ALL, configuration="test=auth\\nauth_token=s3cret")
    denied = p.request(REQ)
    r = denied.local_response
    assert (r.status, r.body, r.details) == (401, b"unauthorized", "pwvm_unauthorized")
    assert r.headers["www-authenticate"] == 'Bearer realm="pwvm"'
    assert p.request({**REQ, "authorization": "Bearer nope"}).local_response.status == 403
    ok = p.request({**REQ, "authorization": "Bearer s3cret"})
    assert ok.local_response is None and ok.request.headers["x-pwvm-auth"] == "ok"

def test_a_trap_raises_in_the_test_unless_a_policy_is_asked_for(proxywasm):
    from proxywasm_vm import PluginCrash

    p = proxywasm("build/wat_trap_in.wasm", configuration="h")  # traps in proxy_on_request_headers
    with pytest.raises(PluginCrash, match="proxy_on_request_headers"):
        p.request(REQ)
    assert p.stats()["vm_failed"] == 1 and p.logs.error
    proxy_like = proxywasm("build/wat_trap_in.wasm", configuration="h", failure_policy="fail_closed")
    assert proxy_like.request(REQ).local_response.status == 503
''')


def test_http_callouts_answered_or_failed_by_the_test(project, backend_name):
    run_on(project, backend_name, '''
def test_callout_answered_later_resumes_the_stream(proxywasm):
    p = proxywasm(ALL, configuration="test=callout\\ncallout_upstream=auth")
    s = p.http_stream()
    assert s.request_headers(REQ) is Action.PAUSE
    assert s.request_body(b"payload", end_of_stream=True) is Action.CONTINUE  # held while headers wait
    assert s.request.buffered == b"payload"
    [call] = p.pending_http_calls
    assert (call.upstream, call.method, call.path, call.authority, call.body) == (
        "auth", "POST", "/callout", "pwvm.test", b"ping")
    assert call.headers["x-pwvm-context"] == str(s.context_id) and call.timeout_ms == 5000
    p.advance(ms=100)
    assert s.request.paused and call.pending  # nothing answers but the test
    call.respond(201, {"x-pwvm-callout-value": "v42"}, b"pong")
    assert call.state == "answered" and p.pending_http_calls == []
    h = s.request.headers
    assert h["x-pwvm-callout-status"] == "201" and h["x-pwvm-callout-value"] == "v42"
    assert h["x-pwvm-callout-body"] == "pong" and h["x-pwvm-callout-code"] == "0"
    assert not s.request.paused and s.request.body == b"payload"
    with pytest.raises(RuntimeError, match="already answered"):
        call.respond()

def test_failed_callout(proxywasm):
    p = proxywasm(ALL, configuration="test=callout")
    s = p.request(REQ)
    p.next_http_call("pwvm_upstream").fail("timeout")
    assert p.http_calls[0].state == "failed"
    assert (s.local_response.status, s.local_response.details) == (503, "pwvm_callout_failed")
    assert any(m.startswith("c_http_all: callout failed") for m in p.logs.info)

def test_unknown_upstream_and_no_call(proxywasm):
    p = proxywasm(ALL, configuration="test=callout", http=FakeHttpDispatcher(upstreams={"known"}))
    s = p.request(REQ)
    assert s.request.headers["x-pwvm-callout-dispatch"] == "2" and p.http_calls == []  # BAD_ARGUMENT
    with pytest.raises(AssertionError, match="no pending HTTP call"):
        p.next_http_call()
''')


def test_grpc_calls_and_streams_answered_by_the_test(project, backend_name):
    run_on(project, backend_name, '''
def test_grpc_call(proxywasm):
    p = proxywasm(ALL, configuration="test=grpc")
    s = p.request({**REQ, "x-pwvm-grpc-message": "hi"})
    assert s.request.paused
    call = p.next_grpc_call("pwvm.test.Echo", "Say")
    assert (call.upstream, call.message, call.streaming, call.timeout_ms) == ("pwvm_grpc", b"hi", False, 5000)
    assert call.metadata["x-pwvm-grpc-meta"] == "1"
    call.respond(b"echo:hi", initial_metadata={"x-init": "1"}, trailing_metadata=[("a", "1"), ("b", "2")])
    h = s.request.headers
    assert h["x-pwvm-grpc-status"] == "0" and h["x-pwvm-grpc-last-message"] == "echo:hi"
    assert h["x-pwvm-grpc-initial-metadata"] == "1" and h["x-pwvm-grpc-trailing-metadata"] == "2"
    assert not s.request.paused and call.state == "answered"

def test_grpc_failure(proxywasm):
    p = proxywasm(ALL, configuration="test=grpc")
    s = p.request(REQ)
    p.next_grpc_call().fail(14, "backend down")
    h = s.request.headers
    assert h["x-pwvm-grpc-status"] == "14" and h["x-pwvm-grpc-messages"] == "0"
    assert h["x-pwvm-grpc-get-status"] == "14" and h["x-pwvm-grpc-get-status-message"] == "backend down"

def test_grpc_stream(proxywasm):
    p = proxywasm(ALL, configuration="test=grpc\\ngrpc_method=Chat")
    s = p.request({**REQ, "x-pwvm-grpc-mode": "stream"})
    call = p.next_grpc_call(method="Chat")
    assert call.streaming and call.messages == [b"ping", b"end"] and call.half_closed
    call.send_initial_metadata({"x-init": "1"})
    call.send(b"got:ping")
    call.send(b"got:end")
    assert s.request.paused
    call.close(0)
    h = s.request.headers
    assert h["x-pwvm-grpc-messages"] == "2" and h["x-pwvm-grpc-last-message"] == "got:end"
    assert h["x-pwvm-grpc-send"] == "0,0" and h["x-pwvm-grpc-status"] == "0" and not s.request.paused

def test_grpc_cancelled_by_the_plugin(proxywasm):
    p = proxywasm(ALL, configuration="test=grpc")
    s = p.request({**REQ, "x-pwvm-grpc-mode": "cancel"})
    [call] = p.grpc_calls
    assert call.state == "cancelled" and s.request.headers["x-pwvm-grpc-cancel"] == "0"
    with pytest.raises(RuntimeError, match="cancelled"):
        call.respond(b"late")

def test_grpc_unknown_upstream(proxywasm):
    p = proxywasm(ALL, configuration="test=grpc", grpc=FakeGrpcDispatcher(upstreams={"other"}))
    s = p.request(REQ)
    assert s.request.headers["x-pwvm-grpc-dispatch"] == "4" and p.grpc_calls == []  # PARSE_FAILURE
''')


def test_timers_logs_metrics_shared_data_and_queues(project, backend_name):
    run_on(project, backend_name, '''
def test_timer_advanced_by_the_test(proxywasm):
    p = proxywasm(ALL, vm_id="t", configuration="tick_ms=100\\ntick_max=3\\ntick_callout_upstream=stats")
    assert p.advance(ms=99) == 0 and p.shared_data == {}
    p.advance(ms=1)
    assert p.shared_data[b"pwvm.ticks"] == b"1"
    call = p.next_http_call("stats")
    assert call.path == "/tick"
    call.respond(204)
    assert p.shared_data[b"pwvm.tick.callout"] == b"204"
    p.advance(seconds=1)
    assert p.shared_data[b"pwvm.ticks"] == b"3" and "c_http_all: ticks stopped after 3" in p.logs.info
    assert len(p.http_calls) == 3

def test_logs_by_level(proxywasm):
    p = proxywasm(ALL, configuration="test=log")
    p.request(REQ)
    logs = p.logs
    for level in LogLevel:
        assert f"c_http_all: log level {int(level)}" in logs.at(level)
    assert logs.trace == ["c_http_all: log level 0"]
    assert logs.error == ["c_http_all: log level 4"] and logs.critical == ["c_http_all: log level 5"]
    assert logs.at_least(LogLevel.WARN) == ["c_http_all: log level 3", "c_http_all: log level 4",
                                            "c_http_all: log level 5"]
    quiet = proxywasm(ALL, configuration="test=log", log_level=LogLevel.WARN)
    quiet.request(REQ)
    assert quiet.logs == ["c_http_all: log level 3", "c_http_all: log level 4", "c_http_all: log level 5"]

def test_metrics(proxywasm):
    p = proxywasm(ALL, configuration="test=metrics")
    for value in ("42", "7"):
        s = p.request({**REQ, "x-pwvm-metric-value": value})
        s.response_headers({":status": "200"}, end_of_stream=True)
    assert p.metrics == {"pwvm_requests": 2, "pwvm_gauge": 6, "pwvm_histogram": [42, 7]}
    assert p.metric("pwvm_requests") == 2
    with pytest.raises(KeyError, match="pwvm_requests"):
        p.metric("nope")

def test_shared_data_and_queues(proxywasm):
    p = proxywasm(ALL, vm_id="shared", configuration="test=shared\\nqueue=jobs")
    p.set_shared_data("pwvm.shared.counter", "41")
    s = p.request(REQ)
    s.response_headers({":status": "200"})
    assert s.response.headers["x-pwvm-shared-value"] == "42"
    assert p.shared_data[b"pwvm.shared.counter"] == b"42"
    p.enqueue("jobs", "job-1")  # the plugin's proxy_on_queue_ready runs
    assert "c_http_all: dequeued job-1" in p.logs.info and p.shared_data[b"pwvm.queue.last"] == b"job-1"
    p.request({**REQ, "x-pwvm-test": "queue", "x-pwvm-queue-item": "from-plugin"})
    assert p.dequeue("jobs") == b"from-plugin" and p.dequeue("jobs") is None  # taken before the plugin's poll
    with pytest.raises(LookupError, match="no shared queue 'nope'"):
        p.enqueue("nope", "x")
''')


def test_tcp_stream(project, backend_name):
    run_on(project, backend_name, '''
def test_tcp_rewrites_both_directions(proxywasm):
    p = proxywasm("build/c_tcp.wasm", configuration="upstream_prefix=up:")
    t = p.tcp_stream()
    assert t.new_connection() is Action.CONTINUE
    assert t.downstream_data(b"hello ") is Action.CONTINUE
    assert t.downstream_data(b"world", end_of_stream=True) is Action.CONTINUE
    assert t.downstream.data == b"HELLO WORLD"
    assert t.upstream_data(b"pong", end_of_stream=True) is Action.CONTINUE
    assert t.upstream.data == b"up:pong"
    t.downstream_close()
    t.upstream_close()
    t.close()
    assert f"c_tcp: on_log context={t.context_id} down_chunks=2 up_chunks=1" in p.logs.info

def test_tcp_close_marker(proxywasm):
    p = proxywasm("build/c_tcp.wasm")
    t = p.tcp_stream()
    assert t.downstream_data(b"please QUIT now") is Action.PAUSE
    assert t.connection_closed_by_plugin and t.downstream.data == b""
''')


# ------------------------------------------------------------------------- the README's test


def readme_test() -> str:
    """The first Python block of the README section "Testing your plugin with pytest"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Testing your plugin with pytest", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_passes(project, backend_name):
    source = readme_test()
    assert len(source.strip().splitlines()) <= 15  # "a complete test in about a dozen lines"
    shutil.copy(BUILD / "c_http_all.wasm", project.path / "build" / "filter.wasm")
    project.makepyfile(test_filter=source)
    result = run(project, f"--pwvm-backends={backend_name}", "-v")
    result.assert_outcomes(passed=1)
    assert re.findall(r"\[([^\]]+)\] PASSED", result.stdout.str()) == [backend_name]


# ------------------------------------------------------------------------- the harness without pytest


def test_harness_error_paths(engine):
    with pytest.raises(FileNotFoundError, match="no Proxy-Wasm module at"):
        PluginHarness("no/such/filter.wasm", engine=engine)
    with PluginHarness(BUILD / "c_http_all.wasm", backend=engine.name, configuration="test=headers") as h:
        assert h.backend == engine.name  # by backend id, as the README shows it without pytest
        assert h.request({":method": "GET", ":path": "/", ":authority": "a"}).request.headers["x-pwvm-added"] == "1"
    httpx = pytest.importorskip("httpx")
    real = pw.HttpxDispatcher({"pwvm_upstream": "http://auth.test"}, background=False,
                              transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"real")))
    with PluginHarness(BUILD / "c_http_all.wasm", engine=engine, configuration="test=callout", http=real) as h:
        s = h.request({":method": "GET", ":path": "/", ":authority": "a"})
        h.poll()
        assert s.request.headers["x-pwvm-callout-body"] == "real"  # any dispatcher works ...
        with pytest.raises(TypeError, match="does not record calls"):
            h.http_calls  # ... but only the fake records calls
    with PluginHarness(BUILD / "c_http_all.wasm", engine=engine) as h:
        with pytest.raises(NoPendingCall, match="no open gRPC call pwvm.test.Echo"):
            h.next_grpc_call("pwvm.test.Echo")
        assert h.name == "c_http_all" and h.backend == engine.name
    with pytest.raises(pw.PluginStartError):  # a plugin that rejects its configuration fails to load
        PluginHarness(BUILD / "c_http_all.wasm", engine=engine, configuration="fail_configure=1")


def test_log_view():
    recs = [pw.LogRecord(pw.LogLevel(i % 6), f"m{i}", "p", "", "", 1) for i in range(8)]
    logs = LogView(recs)
    assert logs == [f"m{i}" for i in range(8)] and logs.records == recs
    assert logs.trace == ["m0", "m6"] and logs.debug == ["m1", "m7"] and logs.critical == ["m5"]
    assert logs.at_least(pw.LogLevel.ERROR) == ["m4", "m5"]
    assert logs.text().splitlines()[3] == "WARN     [ctx 1] m3"
    assert isinstance(FakeHttpDispatcher().pending, list)


def test_docstring_examples():
    import doctest

    from proxywasm_vm.testing import _harness

    assert doctest.testmod(_harness).failed == 0
