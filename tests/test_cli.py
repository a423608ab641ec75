"""The pwvm command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import proxywasm_vm as pw
from proxywasm_vm._settings import in_ci


def pwvm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxywasm_vm", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_backends_json_lists_every_registered_backend():
    from proxywasm_vm import _features as pw_features
    from proxywasm_vm import backend_names

    out = pwvm("backends", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(rows) == set(backend_names())
    wt = rows["wasmtime"]
    assert wt["available"] and wt["version"] and wt["capabilities"]["deadline"]
    assert set(pw_features.WASM2_FEATURES) <= set(wt["capabilities"]["features"])  # a set, as a list
    for r in rows.values():
        if not r["available"]:
            assert r["how_to_enable"], f"{r['name']} is unavailable without saying how to enable it"


def test_bench_quick_writes_samples(tmp_path):
    path = tmp_path / "out.json"
    out = pwvm("bench", "--quick", "--backends", "wasmtime", "--workloads", "call,memory_read_1k",
               "--json", str(path))
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    cells = {(r["workload"], r["runner"]): r for r in data["results"]}
    for w in ("call", "memory_read_1k"):
        for runner in ("wasmtime", "wasmtime-py"):
            samples = cells[(w, runner)]["samples"]
            assert len(samples) == 3 and all(s > 0 for s in samples)  # no speed assertion in the gate
    assert data["header"]["runtimes"]["wasmtime"]
    assert "call" in out.stdout and "wasmtime-py" in out.stdout


def test_bench_every_backend_and_isolation_gives_json_and_png(tmp_path):
    """The issue's end-to-end check: one sample set per backend x isolation x workload, plus a chart."""
    from proxywasm_vm import available_backends

    rows = available_backends()
    if in_ci():
        missing = [r.name for r in rows if not r.available]
        assert not missing, f"CI requires every backend: {missing} unavailable"
    runners = [r.name for r in rows if r.available]
    path, png = tmp_path / "all.json", tmp_path / "all.png"
    out = pwvm("bench", "--quick", "--backends", ",".join(runners), "--workloads",
               "call,request_c,request_go,rss_per_vm", "--json", str(path), "--plot", str(png), timeout=600)
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    cells = {(r["workload"], r["runner"]): r for r in data["results"]}
    for runner in runners:
        for w in ("call", "request_c", "request_go", "rss_per_vm"):
            cell = cells[(w, runner)]
            assert not cell["error"], (w, runner, cell["error"])
            assert len(cell["samples"]) == 3 and all(v >= 0 for v in cell["samples"])
        for w in ("request_c", "request_go"):
            req = cells[(w, runner)]
            assert req["passed_through"] is True, (w, runner)
            assert len(req["latency_seconds"]) >= 3 * 200
            assert 0 < req["p50"] <= req["p90"] <= req["p99"] and req["requests_per_second"] > 0
    assert "p99" in out.stdout and "req/s" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_runs_a_users_plugin(tmp_path):
    from proxywasm_vm._workloads import plugin_path

    config = tmp_path / "config.txt"
    config.write_text("anything")
    path = tmp_path / "p.json"
    out = pwvm("bench", "--quick", "--backends", "wasmtime", "--plugin", plugin_path("as_solo_headers"),
               "--root-id", "pwvm_solo_headers", "--config", str(config), "--workloads", "plugin_ready,plugin_request",
               "--no-baseline", "--json", str(path))
    assert out.returncode == 0, out.stderr
    cells = {r["workload"]: r for r in json.loads(path.read_text())["results"]}
    assert set(cells) == {"plugin_ready", "plugin_request"}
    assert all(len(c["samples"]) == 3 and not c["error"] for c in cells.values())


def test_bench_isolation_selects_runners(tmp_path):
    path = tmp_path / "iso.json"
    out = pwvm("bench", "--quick", "--isolation", "namespace", "--workloads", "call", "--no-baseline",
               "--json", str(path))
    assert out.returncode == 0, out.stderr
    runners = {r["runner"] for r in json.loads(path.read_text())["results"]}
    expected = {b.name for b in pw.available_backends() if b.available and b.name.endswith("@namespace")}
    assert "wasmtime@namespace" in expected and runners == expected


@pytest.mark.parametrize("args, needle", [
    (["bench", "--isolation", "nowhere"], "unknown isolation 'nowhere'"),
    (["bench", "--isolation", ""], "--isolation '': give comma-separated names, none empty"),
    (["bench", "--plugin", "/no/such/plugin.wasm"], "cannot read plugin /no/such/plugin.wasm"),
    (["bench", "--plugin", "PLUGINS/wat_no_marker.wasm"], "is not a Proxy-Wasm plugin"),
    (["bench", "--plugin", "PLUGINS/../c/c_bench.c"], "is not a WebAssembly module"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--config", "PLUGINS"], "cannot read --config"),
    (["bench", "--backends", "nosuch"], "unknown backend 'nosuch'"),
    (["bench", "--backends", "wasmtime@nowhere"], "unknown isolation 'nowhere' in 'wasmtime@nowhere'"),
    (["bench", "--backends", "wasmtime,,v8"], "--backends 'wasmtime,,v8': give comma-separated names, none empty"),
    (["bench", "--backends", "v8,v8"], "--backends: v8 given twice"),
    (["bench", "--workloads", "nosuch"], "unknown workload 'nosuch'"),
    (["bench", "--workloads", ""], "--workloads '': give comma-separated names, none empty"),
    (["bench", "--repeats", "many"], "invalid int value"),
    (["bench", "--repeats", "-1"], "argument --repeats: -1 is out of range 1..1000"),
    (["bench", "--repeats", "0"], "argument --repeats: 0 is out of range 1..1000"),
    (["bench", "--json", "TMP/no-such-folder/out.json"], "folder TMP/no-such-folder does not exist"),
    (["bench", "--json", "TMP"], "--json TMP: is a folder"),
    (["bench", "--plot", "TMP/no-such-folder/out.png"], "folder TMP/no-such-folder does not exist"),
    (["bench", "--plot", "TMP/out.nosuchformat"], "name the file with one of the extensions"),
    (["bench", "--require", "wasmtime@"], "unknown isolation ''"),
    (["bench", "--require", "wasm"], "unknown backend 'wasm'"),  # exact ids, never a prefix
    (["bench", "--require", "v8", "--backends", "wasmtime"], "--require v8: v8 is not among the selected"),
    (["bench", "--header", "a: b"], "--header sets the request of --plugin's plugin_request workload"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--header", "no colon"], "write a header as 'name: value'"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--path", "relative"], "a request path starts with '/'"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--method", "GE T"], "is not an HTTP method"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--body", "x", "--body-file", "y"], "not both"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--body-file", "TMP/none"], "cannot read --body-file"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--request", "TMP/none"], "cannot read --request"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--request", "PLUGINS/c_bench.wasm"], "not JSON"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--request", "TMP/extra.json"], "with only method, path"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--request", "TMP/badheaders.json"], "headers must be"),
    (["bench", "--json", ""], "--json: give a file name"),
    (["bench", "--plot", ""], "--plot: give a file name"),
    (["bench", "--plugin", ""], "cannot read plugin"),
    (["bench", "--config", "TMP/extra.json"], "--config is the configuration of --plugin's plugin"),
    (["bench", "--plugin", "PLUGINS/c_bench.wasm", "--workloads", "call", "--path", "/x"],
     "--workloads leaves it out"),
    (["backends", "--nosuch"], "unrecognized arguments: --nosuch"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, needle, tmp_path):
    import os

    from proxywasm_vm._workloads import plugin_path

    (tmp_path / "extra.json").write_text('{"method": "GET", "verb": "x"}')
    (tmp_path / "badheaders.json").write_text('{"headers": [["a"]]}')
    plugins = os.path.dirname(plugin_path("c_bench"))

    def fill(text: str) -> str:
        return text.replace("PLUGINS", plugins).replace("TMP", str(tmp_path))

    out = pwvm(*[fill(a) for a in args])
    assert out.returncode == 2
    assert fill(needle) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.glob("no-such-folder"))  # a mistyped folder is not created


def test_bench_check_exits_1_when_a_backend_is_unavailable(tmp_path):
    """``--check`` turns what the table only shows (an unavailable backend) into exit status 1."""
    import os

    env = {**os.environ, "PWVM_WORKER_PYTHON": str(tmp_path / "no-python")}
    args = ["bench", "--quick", "--backends", "wasmtime,wasmer", "--workloads", "call", "--no-baseline"]
    plain = subprocess.run([sys.executable, "-m", "proxywasm_vm", *args], capture_output=True, text=True,
                           timeout=120, env=env)
    checked = subprocess.run([sys.executable, "-m", "proxywasm_vm", *args, "--check"], capture_output=True,
                             text=True, timeout=120, env=env)
    assert plain.returncode == 0, plain.stderr
    assert checked.returncode == 1
    assert "backend wasmer is unavailable" in checked.stderr


def test_bench_targets_are_judged_from_the_run():
    from proxywasm_vm._bench import BASELINE, BenchResult, Cell, judge_targets

    def result(ours: float, theirs: float, request: float) -> BenchResult:
        cells = [Cell("call", "wasmtime", "s/call", [ours]), Cell("call", BASELINE, "s/call", [theirs]),
                 Cell("request_c", "wasmtime", "s/request", [request])]
        return BenchResult({}, ["call", "request_c"], ["wasmtime", BASELINE], cells, {})

    judged = {t.workload: (round(v, 6), met) for t, v, met in judge_targets(result(300e-9, 30e-6, 12e-6))}
    assert judged == {"call": (100.0, True), "request_c": (12e-6, True)}  # host_call was not measured
    judged = {t.workload: met for t, _, met in judge_targets(result(1e-6, 30e-6, 25e-6))}
    assert judged == {"call": False, "request_c": False}


def test_bench_reports_the_ratios_of_issue_16_in_the_table_and_json(tmp_path):
    """Every ratio row, measured in one run, in the table and the JSON; its value is a
    positive number and its goal stated, never judged here (a ratio moves with the load)."""
    from proxywasm_vm._bench import RATIOS

    runners = sorted({r for ratio in RATIOS for _, r in (ratio.top, ratio.bottom)} - {"wasmtime-py"})
    workloads = sorted({w for ratio in RATIOS for w, _ in (ratio.top, ratio.bottom)})
    path = tmp_path / "ratios.json"
    out = pwvm("bench", "--quick", "--repeats", "1", "--backends", ",".join(runners), "--workloads",
               ",".join(workloads), "--json", str(path), timeout=600)
    assert out.returncode == 0, out.stderr
    rows = json.loads(path.read_text())["ratios"]
    assert [r["name"] for r in rows] == [r.name for r in RATIOS]
    for row, ratio in zip(rows, RATIOS):
        assert isinstance(row["value"], float) and row["value"] > 0, row
        assert (row["numerator"], row["denominator"]) == ({"workload": ratio.top[0], "runner": ratio.top[1]},
                                                          {"workload": ratio.bottom[0], "runner": ratio.bottom[1]})
        assert row["goal_is"] in (("at least" if ratio.at_least else "at most") if ratio.goal else None,)
        assert row["met"] in ((True, False) if ratio.goal else (None,))
    table = out.stdout[out.stdout.index("ratios of this run's medians"):]
    for ratio in RATIOS:
        assert ratio.name in table


def test_bench_ratios_leave_out_what_the_run_did_not_measure():
    from proxywasm_vm._bench import BASELINE, RATIOS, BenchResult, Cell, ratios

    cells = [Cell("call", "wasmtime", "s/call", [250e-9]), Cell("call", BASELINE, "s/call", [25e-6]),
             Cell("request_c", "wasmtime", "s/request", [10e-6]), Cell("request_go", "wasmtime", "s/request", [])]
    result = BenchResult({}, ["call", "request_c", "request_go"], ["wasmtime", BASELINE], cells, {})
    values = {rv.ratio.name: rv for rv in ratios(result)}
    assert list(values) == [r.name for r in RATIOS]
    assert round(values["call: wasmtime-py / wasmtime"].value, 6) == 100.0
    assert values["call: wasmtime-py / wasmtime"].met is True
    assert round(values["request_c / call, wasmtime"].value, 6) == 40.0
    assert values["request_c / call, wasmtime"].met is False
    assert values["request_go / request_c, wasmtime"].value is None  # no sample
    assert values["request_go / request_c, wasmtime"].met is None
    assert sum(rv.value is not None for rv in values.values()) == 2
    assert result.to_json()["ratios"][0] == {
        "name": "call: wasmtime-py / wasmtime", "value": values["call: wasmtime-py / wasmtime"].value, "unit": "×",
        "numerator": {"workload": "call", "runner": BASELINE}, "denominator": {"workload": "call", "runner": "wasmtime"},
        "goal": 100.0, "goal_is": "at least", "met": True}


def test_bench_require_exits_1_naming_the_unavailable_backend(tmp_path):
    import os

    env = {**os.environ, "PWVM_WORKER_PYTHON": str(tmp_path / "no-python")}
    args = ["bench", "--quick", "--backends", "wasmtime,wasmer", "--workloads", "call", "--no-baseline",
            "--require", "wasmer"]
    out = subprocess.run([sys.executable, "-m", "proxywasm_vm", *args], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 1
    assert "required backend wasmer is unavailable" in out.stderr
    assert "Traceback" not in out.stderr
    ok = pwvm("bench", "--quick", "--backends", "wasmtime", "--workloads", "call", "--no-baseline",
              "--require", "wasmtime")
    assert ok.returncode == 0, ok.stderr


def _auth_plugin(tmp_path):
    """c_http_all configured as an auth filter: 401 without an authorization header."""
    from proxywasm_vm._workloads import plugin_path

    config = tmp_path / "auth.txt"
    config.write_text("test=auth\n")
    return ["--plugin", plugin_path("c_http_all"), "--config", str(config)]


def test_bench_does_not_time_a_plugin_that_answers_locally(tmp_path):
    path = tmp_path / "auth.json"
    out = pwvm("bench", "--quick", "--backends", "wasmtime", *_auth_plugin(tmp_path),
               "--workloads", "plugin_request,call", "--no-baseline", "--json", str(path))
    assert out.returncode == 1
    line = "plugin_request on wasmtime: not timed: the plugin answered locally with 401 (pwvm_unauthorized)"
    assert line in out.stderr
    assert "pwvm bench: 1 cell(s) not measured" in out.stderr and "call on" not in out.stderr
    assert "not timed" in out.stdout and "--time-stopped" in " ".join(out.stdout.split())
    cells = {r["workload"]: r for r in json.loads(path.read_text())["results"]}
    req = cells["plugin_request"]
    assert req["passed_through"] is False and req["timed"] is False and req["samples"] == []
    assert req["not_passed_through"] == "answered locally with 401 (pwvm_unauthorized)"
    assert len(cells["call"]["samples"]) == 3 and "passed_through" not in cells["call"]


def test_bench_times_a_local_response_only_when_asked(tmp_path):
    path = tmp_path / "timed.json"
    out = pwvm("bench", "--quick", "--backends", "wasmtime", *_auth_plugin(tmp_path), "--workloads",
               "plugin_request", "--no-baseline", "--time-stopped", "--json", str(path))
    assert out.returncode == 0, out.stderr
    (req,) = json.loads(path.read_text())["results"]
    assert req["passed_through"] is False and req["timed"] is True and len(req["samples"]) == 3
    assert "timed although the plugin answered locally with 401" in " ".join(out.stdout.split())


def test_bench_sends_the_request_given_by_options(tmp_path):
    path = tmp_path / "ok.json"
    out = pwvm("bench", "--quick", "--backends", "wasmtime", *_auth_plugin(tmp_path), "--workloads",
               "plugin_request", "--no-baseline", "--method", "POST", "--body", "hello",
               "-H", "Authorization: Bearer secret", "--json", str(path))
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    (req,) = data["results"]
    assert req["passed_through"] is True and len(req["samples"]) == 3
    assert data["request"] == "POST /bench (1 extra header, 5-byte body)"
    wrong = pwvm("bench", "--quick", "--backends", "wasmtime", *_auth_plugin(tmp_path), "--workloads",
                 "plugin_request", "--no-baseline", "--header", "authorization: Bearer wrong")
    assert wrong.returncode == 1 and "answered locally with 403 (pwvm_forbidden)" in wrong.stderr


def test_bench_sends_the_request_from_a_file_and_the_options_override_it(tmp_path):
    from proxywasm_vm._workloads import plugin_path

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"method": "PUT", "path": "/go-local", "headers": {"x-a": "1"}, "body": "b"}))
    go = ["bench", "--quick", "--backends", "wasmtime", "--plugin", plugin_path("go_http"), "--workloads",
          "plugin_request", "--no-baseline", "--request", str(request)]
    local = pwvm(*go)  # go_http answers /go-local itself: the path from the file reached the plugin
    assert local.returncode == 1
    assert "plugin_request on wasmtime: not timed: the plugin answered locally with 200 (go_local)" in local.stderr
    path = tmp_path / "go.json"
    out = pwvm(*go, "--path", "/elsewhere", "--json", str(path))
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    assert data["request"] == "PUT /elsewhere (1 extra header, 1-byte body)"
    assert data["results"][0]["passed_through"] is True


def test_bench_exits_1_naming_a_failed_cell(tmp_path):
    from proxywasm_vm._workloads import plugin_path

    config = tmp_path / "trap.txt"
    config.write_text("fail_in=request_headers\n")
    out = pwvm("bench", "--quick", "--backends", "wasmtime", "--plugin", plugin_path("c_bad_guest"), "--config",
               str(config), "--workloads", "plugin_request,call", "--no-baseline")
    assert out.returncode == 1
    assert "pwvm bench: 1 cell(s) not measured" in out.stderr
    assert "plugin_request on wasmtime: PluginFailed: the plugin failed in proxy_on_request_headers" in out.stderr
    assert "Traceback" not in out.stderr and "error" in out.stdout


@pytest.mark.parametrize("json_args", [["--json"], ["--json", "-"]])
def test_bench_json_to_stdout_is_the_json_only(json_args):
    out = pwvm("bench", "--quick", "--backends", "wasmtime", "--workloads", "call", "--no-baseline", *json_args)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [r["workload"] for r in data["results"]] == ["call"] and len(data["results"][0]["samples"]) == 3


def test_bench_list_names_every_workload():
    from proxywasm_vm._bench import all_workloads

    table = pwvm("bench", "--list")
    assert table.returncode == 0, table.stderr
    for w in all_workloads():
        assert w in table.stdout
    rows = json.loads(pwvm("bench", "--list", "--json").stdout)
    assert [r["name"] for r in rows] == all_workloads() and all(r["description"] and r["unit"] for r in rows)


@pytest.mark.parametrize("command", ["backends", "bench"])
def test_help_describes_the_command_and_its_exit_status(command):
    out = pwvm(command, "--help")
    assert out.returncode == 0 and out.stderr == ""
    assert f"usage: pwvm {command}" in out.stdout and "--json" in out.stdout
    assert "Exit status" in out.stdout


def test_output_to_a_pipe_has_no_colour_and_fits_80_columns():
    """Not a terminal: rich writes no escape codes and lays out for 80 columns."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS", "TTY_COMPATIBLE")}
    for args in (["backends"], ["bench", "--quick", "--backends", "wasmtime,v8", "--workloads",
                                "cached_load_500k,request_c"]):
        out = subprocess.run([sys.executable, "-m", "proxywasm_vm", *args], capture_output=True, text=True,
                             timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        assert "\x1b[" not in out.stdout and "\x1b[" not in out.stderr
        assert max(len(line.rstrip()) for line in out.stdout.splitlines()) <= 80
    assert "cached_load_500k" in out.stdout and "p99" in out.stdout


def test_every_bench_form_the_readme_shows_runs(tmp_path):
    """The `pwvm bench` lines of the README, run as written (in a folder holding the files they name:
    my_filter.wasm is the c_http_all auth filter), with the exit status the README gives."""
    import os
    import re
    import shlex
    import shutil

    from proxywasm_vm._workloads import plugin_path

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    section = readme[readme.index("## `pwvm bench`"):]
    section = section[:section.index("\n## ", 1)]
    forms = [line.strip() for line in section.splitlines() if line.startswith("    pwvm bench")]
    assert len(forms) >= 5, forms
    shutil.copy(plugin_path("c_http_all"), tmp_path / "my_filter.wasm")
    (tmp_path / "config.txt").write_text("test=auth\n")
    (tmp_path / "request.json").write_text(json.dumps(
        {"method": "POST", "path": "/login", "headers": {"authorization": "Bearer secret"}, "body": "hi"}))
    for form in forms:
        command, _, comment = form.partition("#")
        expected = int(m.group(1)) if (m := re.search(r"exit (\d)", comment)) else 0
        argv = shlex.split(command)
        assert argv[:2] == ["pwvm", "bench"]
        out = subprocess.run([sys.executable, "-m", "proxywasm_vm", *argv[1:]], capture_output=True, text=True,
                             timeout=600, cwd=tmp_path)
        assert out.returncode == expected, (form, out.stderr)
        assert "Traceback" not in out.stderr
        if "--json -" in command:
            assert json.loads(out.stdout)["results"]
    assert json.loads((tmp_path / "out.json").read_text())["results"]
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_and_colour_on_a_terminal():
    """On a terminal (FORCE_COLOR makes rich treat the streams as one) the long work shows progress on
    stderr, and the table is coloured; the JSON on stdout stays plain."""
    import os

    env = {**os.environ, "FORCE_COLOR": "1"}
    bench = subprocess.run([sys.executable, "-m", "proxywasm_vm", "bench", "--quick", "--backends", "wasmtime",
                            "--workloads", "call", "--no-baseline"], capture_output=True, text=True, timeout=120,
                           env=env)
    assert bench.returncode == 0, bench.stderr
    assert "done" in bench.stderr and "\x1b[" in bench.stderr  # the bar's last state, then cleared
    assert "\x1b[" in bench.stdout
    backends = subprocess.run([sys.executable, "-m", "proxywasm_vm", "backends"], capture_output=True, text=True,
                              timeout=120, env=env)
    assert backends.returncode == 0 and "checking the backends" in backends.stderr
    as_json = subprocess.run([sys.executable, "-m", "proxywasm_vm", "backends", "--json"], capture_output=True,
                             text=True, timeout=120, env=env)
    assert json.loads(as_json.stdout)
