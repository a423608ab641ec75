"""``pwvm inspect``, ``pwvm run`` and ``pwvm diff`` on every test plugin, checked against facts
stated independently of the code under test: tests/plugins/build/MANIFEST.txt (generated from
the bytes by tests/plugins/tools/wasm_manifest.py) and the behaviour tests/plugins/README.md
documents for each plugin."""

from __future__ import annotations

import json
import platform
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import BACKENDS
from proxywasm_vm._cli import main

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tests" / "plugins" / "build"
PLUGINS = sorted(p.stem for p in BUILD.glob("*.wasm"))


def pwvm(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def pwvm_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    rc, out, err = pwvm(capsys, *args, "--json")
    return rc, json.loads(out)


def manifest() -> dict[str, dict]:
    """MANIFEST.txt: per module its size, ABI marker, imports and exports."""
    mods: dict[str, dict] = {}
    cur: dict = {}
    section = ""
    for line in (BUILD / "MANIFEST.txt").read_text().splitlines():
        if line.startswith("## "):
            cur = mods.setdefault(line[3:].removesuffix(".wasm"), {"imports": [], "exports": []})
        elif line.startswith(("size: ", "abi: ")):
            key, _, value = line.partition(": ")
            cur[key] = value
        elif line.startswith(("imports: ", "exports: ")):
            section = line.split(":")[0]
        elif line.startswith("  ") and cur:
            name, _, ty = line.strip().partition(": ")
            cur[section].append((name, ty))
    return mods


MANIFEST = manifest()

# Language and SDK of each plugin, from tests/plugins/README.md (its source and toolchain).
LANGUAGE = {"as_solo_headers": "AssemblyScript", "as_gcore_headers": "AssemblyScript", "go_http": "Go"}
SDK = {"as_solo_headers": "@solo-io/proxy-runtime", "as_gcore_headers": "@gcoredev/proxy-wasm-sdk-as"}


def expected_language(name: str) -> str:
    if name in LANGUAGE:
        return LANGUAGE[name]
    if name.startswith("c_"):
        return "C (clang)"
    assert name.startswith("wat_"), name
    return "unknown"  # hand-written WAT carries no producer information


# ---- inspect ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PLUGINS)
def test_inspect_reads_every_plugin(capsys, name):
    facts = MANIFEST[name]
    rc, r = pwvm_json(capsys, "inspect", BUILD / f"{name}.wasm")
    assert rc == 0
    assert r["size"] == int(facts["size"])
    marker = facts["abi"]
    assert r["abi"] == (None if marker == "(none)" else marker.removeprefix("proxy_abi_version_").replace("_", "."))
    assert r["language"] == expected_language(name)
    assert r["sdk"] == SDK.get(name)
    listed = [(i["module"], i["name"], i["type"]) for g in ("proxy-wasm", "wasi", "other") for i in r["imports"][g]]
    assert sorted(f"{m}.{n}: {t}" for m, n, t in listed) == sorted(f"{n}: {t}" for n, t in facts["imports"])
    for m, n, _ in listed:  # grouped by where the import comes from
        group = "wasi" if m.startswith("wasi_") else "proxy-wasm" if n.startswith("proxy_") else "other"
        assert any(i["name"] == n for i in r["imports"][group])
    missing = {i["name"] for g in r["imports"].values() for i in g if not i["provided"]}
    assert missing == ({"proxy_pwvm_does_not_exist"} if name == "wat_missing_import" else set())
    exported = [n for n, _ in facts["exports"]]
    assert r["callbacks"] == [n for n in exported if n.startswith("proxy_on_") and n != "proxy_on_memory_allocate"]
    assert bool(r["bad_callbacks"]) == (name == "wat_bad_signature")
    kinds = []
    if any(n.startswith(("proxy_on_request_", "proxy_on_response_")) and not n.endswith("_metadata") for n in exported):
        kinds.append("http")
    if "proxy_on_new_connection" in exported:
        kinds.append("network")
    assert r["filter_kinds"] == kinds
    assert ("network" in kinds) == (name in ("c_tcp", "as_gcore_headers", "wat_trap_in"))  # README: TCP callbacks
    # the ABI 0.1.0 metadata callbacks both AssemblyScript SDKs still export: no host calls them
    assert r["uncalled_callbacks"] == [n for n in exported if n.endswith("_metadata") and "grpc" not in n]
    assert bool(r["uncalled_callbacks"]) == name.startswith("as_")


def test_inspect_report_names_what_matters(capsys):
    rc, out, _ = pwvm(capsys, "inspect", BUILD / "wat_missing_import.wasm")
    assert rc == 0
    assert "NOT PROVIDED" in out and "proxy_pwvm_does_not_exist" in out
    rc, out, _ = pwvm(capsys, "inspect", BUILD / "go_http.wasm")
    assert rc == 0
    assert re.search(r"ABI\s+0\.2\.1", out) and re.search(r"language\s+Go", out)
    assert "proxy_on_request_headers" in out and "NOT PROVIDED" not in out


def test_inspect_compile_times_every_backend(capsys):
    rc, r = pwvm_json(capsys, "inspect", BUILD / "c_http_all.wasm", "--compile", "--backends", ",".join(BACKENDS))
    assert rc == 0
    assert list(r["compile"]) == BACKENDS
    for name, res in r["compile"].items():
        assert res.get("ms", -1) >= 0, (name, res)  # compiled (no speed assertion)
    # a module one backend refuses is reported per backend, not a crash
    rc, r = pwvm_json(capsys, "inspect", BUILD / "wat_bad_signature.wasm", "--compile", "--backends", "wasmtime")
    assert rc == 0 and "ms" in r["compile"]["wasmtime"]  # (its callback signature is the host's concern)


# ---- run ---------------------------------------------------------------------------------------------

def run_json(capsys, name: str, *args: str) -> tuple[int, dict]:
    return pwvm_json(capsys, "run", BUILD / f"{name}.wasm", *args)


def added(r: dict, part: str = "request") -> dict[str, str]:
    return dict(r[part]["added"])


def test_run_local_response_401(capsys, backend_name):
    """c_http_all, test=auth without an authorization header: a 401 local response (README)."""
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: auth", "--backend", backend_name)
    assert rc == 0
    (r,) = out["requests"]
    assert r["steps"] == [{"callback": "request_headers", "action": "pause"}]
    lr = r["local_response"]
    assert (lr["status"], lr["details"], lr["body"]) == (401, "pwvm_unauthorized", "unauthorized")
    assert lr["headers"] == [["www-authenticate", 'Bearer realm="pwvm"']]
    assert not r["request"]["forwarded"] and r["response"] is None
    assert "c_http_all: auth missing -> 401 status=0" in [x["message"] for x in out["logs"]]
    rc, text, _ = pwvm(capsys, "run", BUILD / "c_http_all.wasm", "-H", "x-pwvm-test: auth", "--backend", backend_name)
    assert rc == 0 and "local response 401" in text


def test_run_go_plugin(capsys, backend_name):
    rc, out = run_json(capsys, "go_http", "--path", "/go-local", "--backend", backend_name)
    assert rc == 0
    lr = out["requests"][0]["local_response"]
    assert (lr["status"], lr["body"], lr["headers"]) == (200, "go local 1", [["x-pwvm-go-local", "1"]])
    rc, out = run_json(capsys, "go_http", "--path", "/x", "-H", "x-a: 1", "--backend", backend_name)
    r = out["requests"][0]
    assert added(r) == {"x-pwvm-go": "1"}
    assert added(r, "response")["x-pwvm-go-path"] == "/x"
    assert "go_http: header x-a: 1" in [x["message"] for x in out["logs"]]


def test_run_header_and_body_changes(capsys, tmp_path):
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: headers", "-H", "x-pwvm-remove: 1",
                       "-H", "x-pwvm-replace: old", "--body", "hello")
    assert rc == 0
    (r,) = out["requests"]
    assert [s["callback"] for s in r["steps"]] == ["request_headers", "request_body", "response_headers"]
    assert added(r)["x-pwvm-added"] == "1"
    assert r["request"]["removed"] == ["x-pwvm-remove"]
    assert r["request"]["changed"] == [["x-pwvm-replace", ["old"], ["replaced"]]]
    assert r["request"]["body"] == "hello" and r["request"]["forwarded"]
    assert added(r, "response") == {"x-pwvm-set-pairs": "1"}
    # the body test, from a file: replace mode upper-cases the request body
    body = tmp_path / "body.txt"
    body.write_text("hello world")
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: body", "--body-file", body)
    assert out["requests"][0]["request"]["body"] == "HELLO WORLD"


def test_run_callouts_pending_answered_failed(capsys, tmp_path, backend_name):
    """README of c_http_all, test=callout: the plugin pauses on an HTTP call; answered, it adds the
    answer's status, value and body to the request; failed, it answers 503 itself."""
    b = ["--backend", backend_name]
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: callout", *b)
    assert rc == 0
    (r,) = out["requests"]
    (call,) = r["callouts"]
    assert call["upstream"] == "pwvm_upstream" and call["body"] == "ping" and call["state"].startswith("pending")
    assert [":path", "/callout"] in call["headers"] and any(h[0] == "x-pwvm-context" for h in call["headers"])
    assert r["request"]["paused"] and not r["request"]["forwarded"]

    answers = tmp_path / "callouts.json"
    answers.write_text(json.dumps({"pwvm_upstream": {"status": 201, "headers": {"x-pwvm-callout-value": "v"},
                                                     "body": "pong"}}))
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: callout", "--callouts", answers, *b)
    (r,) = out["requests"]
    assert r["steps"][-2:] == [{"callback": "http_call_response", "action": "resumed"},
                               {"callback": "response_headers", "action": "continue"}]
    got = added(r)
    assert (got["x-pwvm-callout-status"], got["x-pwvm-callout-value"], got["x-pwvm-callout-body"]) == ("201", "v", "pong")

    answers.write_text(json.dumps({"*": None}))
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: callout", "--callouts", answers, *b)
    lr = out["requests"][0]["local_response"]
    assert (lr["status"], lr["body"]) == (503, "callout failed")

    # test=grpc: a unary call to pwvm_grpc pwvm.test.Echo/Say with message "ping", left pending
    rc, out = run_json(capsys, "c_http_all", "-H", "x-pwvm-test: grpc", *b)
    (r,) = out["requests"]
    assert r["grpc_calls"] == [{"kind": "call", "upstream": "pwvm_grpc", "service": "pwvm.test.Echo", "method": "Say",
                                "message": "ping", "state": "pending"}]
    assert added(r) == {"x-pwvm-grpc-dispatch": "0"} and r["request"]["paused"]


def test_run_requests_file_and_configuration(capsys, tmp_path):
    """Several requests from a file share the plugin (state carries over), configuration from a file."""
    req = tmp_path / "requests.json"
    req.write_text(json.dumps([{"path": "/go-local"}, {"path": "/go-local"}, {"path": "/a", "headers": {"x-b": "2"},
                                                                            "response": {"status": 404}}]))
    conf = tmp_path / "go.conf"
    conf.write_text("local_path=/go-local\nresponse_header=x-mine\n")
    rc, out = run_json(capsys, "go_http", "--request", req, "--config", conf)
    assert rc == 0
    bodies = [r["local_response"]["body"] for r in out["requests"][:2]]
    assert bodies == ["go local 1", "go local 2"]
    last = out["requests"][2]
    assert added(last, "response")["x-mine"] == "1"
    assert last["response"]["final"][0] == [":status", "404"]


@pytest.mark.parametrize("name", PLUGINS)
def test_run_every_plugin(capsys, tmp_path, name):
    """What README.md says each plugin does with a plain request (configuration where it needs one)."""
    args: list = []
    if name == "as_solo_headers":
        args = ["--root-id", "pwvm_solo_headers"]
    if name in ("as_gcore_headers", "c_abi010"):
        conf = tmp_path / "conf"
        conf.write_text("cfg1")
        args = ["--config", conf]
    if name == "wat_trap_in":
        conf = tmp_path / "conf"
        conf.write_text("h")  # trap in request headers
        args = ["--config", conf]
    if name == "wat_uncompress":
        body = tmp_path / "body"
        body.write_bytes(zlib.compress(b"inflated"))
        args = ["--body-file", body]
    if name == "c_bad_guest":
        args = ["-H", "x-pwvm-bad: trap"]
    rc, out = run_json(capsys, name, *args)
    load_fails = {"wat_start_trap": "trap: unreachable", "wat_no_marker": "proxy_abi_version",
                  "wat_missing_import": "proxy_pwvm_does_not_exist", "wat_bad_signature": "proxy_on_request_headers"}
    if name in load_fails:
        assert rc == 1 and not out["loaded"] and out["requests"] == []
        assert load_fails[name] in out["load_error"]
        return
    assert out["loaded"]
    (r,) = out["requests"]
    logs = [x["message"] for x in out["logs"]]
    if name in ("wat_trap_in", "c_bad_guest"):
        assert rc == 1 and r["steps"][0] == {"callback": "request_headers", "action": "failed"}
        assert r["local_response"]["status"] == 503  # fail_closed, as Envoy
        return
    assert rc == 0 and r["error"] is None
    expect = {"as_solo_headers": {"x-pwvm-sdk": "solo"}, "as_gcore_headers": {"x-pwvm-sdk": "gcore",
                                                                             "x-pwvm-config": "cfg1"},
              "c_abi010": {"x-pwvm-abi": "0.1.0", "x-pwvm-config": "cfg1"}, "c_bench": {"x-pwvm-bench": "1"},
              "go_http": {"x-pwvm-go": "1"}, "wat_minimal": {"x-pwvm-wat": "1"}}
    assert added(r) == expect.get(name, {})
    if name == "wat_hold":
        assert r["steps"] == [{"callback": "request_headers", "action": "pause"}]
        assert r["request"]["paused"] and not r["request"]["forwarded"]
    elif name == "wat_uncompress":
        lr = r["local_response"]
        assert (lr["status"], lr["body"]) == (200, "inflated")
    else:
        assert r["request"]["forwarded"] and r["response"] is not None
    if name in ("as_solo_headers", "as_gcore_headers"):
        assert added(r, "response") == {"x-pwvm-response": "1"}
    if name == "wat_lifecycle":
        assert {"create stream", "done stream", "delete stream"} <= set(logs)
    if name == "wat_start_section":
        assert logs[:1] == ["pwvm wat start section"] and "pwvm wat request headers" in logs
    if name == "c_tcp":  # a network filter: no HTTP callback, the request passes untouched
        assert all(s["action"] == "continue" for s in r["steps"]) and added(r) == {}


def test_run_tcp_network_filter(capsys, backend_name):
    """c_tcp (README): upper-cases the client's data, prefixes the upstream's with "up:", and closes
    the connection when the client sends the close marker QUIT."""
    rc, out = run_json(capsys, "c_tcp", "--tcp", "--body", "hello world", "--response-body", "pong",
                       "--backend", backend_name)
    assert rc == 0
    (c,) = out["requests"]
    assert [s["callback"] for s in c["steps"]] == ["new_connection", "downstream_data", "upstream_data"]
    assert (c["downstream"]["data"], c["upstream"]["data"]) == ("HELLO WORLD", "up:pong")
    assert "c_tcp: downstream close context=2 peer=2 down_bytes=11" in [x["message"] for x in out["logs"]]
    rc, out = run_json(capsys, "c_tcp", "--tcp", "--body", "QUIT now", "--backend", backend_name)
    (c,) = out["requests"]
    assert c["closed_by_plugin"] and c["downstream"]["data"] == "" and c["steps"][-1]["action"] == "pause"
    rc, text, _ = pwvm(capsys, "run", BUILD / "c_tcp.wasm")  # an HTTP request: the report says to use --tcp
    assert rc == 0 and "try --tcp" in text


# ---- diff ---------------------------------------------------------------------------------------------

DIFF_ARGS = {"as_solo_headers": ["--root-id", "pwvm_solo_headers"], "c_http_all": ["-H", "x-pwvm-test: headers"],
             "go_http": ["--path", "/x"], "c_tcp": ["--tcp", "--response-body", "pong"]}


@pytest.mark.parametrize("name", PLUGINS)
def test_diff_every_plugin_agrees_across_backends(capsys, name):
    """Every test plugin is deterministic: the same request gives the same outcome on every backend
    (for plugins that fail to load, the same failure)."""
    if len(BACKENDS) < 2:
        pytest.skip("diff needs two backends")
    rc, out = pwvm_json(capsys, "diff", BUILD / f"{name}.wasm", "--backends", ",".join(BACKENDS), "--body", "hi",
                        *DIFF_ARGS.get(name, []))
    assert out["differences"] == {n: [] for n in BACKENDS[1:]}
    assert rc == 0 and out["equal"]
    assert set(out["outcomes"]) == set(BACKENDS)


# A plugin whose result the WebAssembly spec leaves to the runtime: f32.min of a signalling NaN and
# 1.0 is "an arithmetic NaN" (spec 4.3.3, NaN propagation), and runtimes pick different bit patterns.
NAN_WAT = r"""
(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "0123456789abcdef")
  (data (i32.const 16) "x-nan-bits")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $bits i32) (local $i i32)
    (local.set $bits (i32.reinterpret_f32 (f32.min (f32.reinterpret_i32 (i32.const 0x7fa00001)) (f32.const 1))))
    (loop $hex  ;; the 8 hex digits of $bits at 32
      (i32.store8 (i32.add (i32.const 32) (local.get $i))
        (i32.load8_u (i32.and (i32.shr_u (local.get $bits) (i32.sub (i32.const 28) (i32.shl (local.get $i) (i32.const 2))))
                              (i32.const 15))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $hex (i32.lt_u (local.get $i) (i32.const 8))))
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 10) (i32.const 32) (i32.const 8)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
"""


def test_diff_reports_a_real_backend_difference(capsys, tmp_path):
    """diff exits 1 exactly when the backends really disagree: here on the NaN bits each runtime
    produces, read independently with ``run`` on each backend."""
    plugin = tmp_path / "nan.wat"
    plugin.write_text(NAN_WAT)
    bits = {}
    for b in BACKENDS:
        rc, out = pwvm_json(capsys, "run", plugin, "--backend", b)
        assert rc == 0
        bits[b] = added(out["requests"][0])["x-nan-bits"]
        f = int(bits[b], 16)
        assert f & 0x7F800000 == 0x7F800000 and f & 0x007FFFFF, f"{b}: {bits[b]} is not a NaN"
    if platform.machine() in ("x86_64", "AMD64"):  # the values README.md states (measured on x86-64)
        stated = {"wasmtime": "7fe00001", "v8": "ffc00000", "wasm3": "7fc00000"}
        assert {b: bits[b] for b in stated if b in bits} == {b: v for b, v in stated.items() if b in bits}
    if len(set(bits.values())) < 2:
        pytest.skip(f"the selected backends agree on the NaN bits ({bits}): nothing differs to report")
    rc, out = pwvm_json(capsys, "diff", plugin, "--backends", ",".join(BACKENDS))
    assert rc == 1 and not out["equal"]
    ref = BACKENDS[0]
    for b in BACKENDS[1:]:
        diffs = out["differences"][b]
        if bits[b] == bits[ref]:
            assert diffs == []
        else:
            assert diffs == [{"path": "request 1 / request headers[4]", ref: f"x-nan-bits: {bits[ref]}",
                              b: f"x-nan-bits: {bits[b]}"}]
    # the report names the header and both values
    rc, text, _ = pwvm(capsys, "diff", plugin, "--backends", ",".join(BACKENDS))
    other = next(b for b in BACKENDS if bits[b] != bits[ref])
    assert rc == 1 and f"x-nan-bits: {bits[other]}" in text and "differs" in text
    # two backends that agree: exit 0
    same = [b for b in BACKENDS if bits[b] == bits[ref]]
    if len(same) >= 2:
        rc, out = pwvm_json(capsys, "diff", plugin, "--backends", ",".join(same))
        assert rc == 0 and out["equal"]


# ---- command-line conventions -------------------------------------------------------------------

def test_help_of_each_command(capsys):
    for cmd in ("inspect", "run", "diff"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "--json" in out and "FILE" in out


@pytest.mark.parametrize("args, message", [
    (["inspect", "nosuch.wasm"], "cannot read nosuch.wasm"),
    (["run", "nosuch.wasm"], "cannot read nosuch.wasm"),
    (["diff", "nosuch.wasm"], "cannot read nosuch.wasm"),
    (["inspect", "{text}"], "not a WebAssembly module"),
    (["run", "{text}"], "not a WebAssembly module"),
    (["run", "{truncated}"], "past the end of the module"),
    (["inspect", "{dir}"], "is a directory"),
    (["diff", "{badwat}"], "not valid WebAssembly text"),
    (["run", "{wasm}", "--backend", "nosuch"], "unknown backend 'nosuch'"),
    (["diff", "{wasm}", "--backends", "wasmtime,nosuch"], "unknown backend 'nosuch'"),
    (["diff", "{wasm}", "--backends", "wasmtime"], "diff needs two available backends"),
    (["run", "{wasm}", "--response-status", "abc"], "invalid int value"),
    (["run", "{wasm}", "-H", "no-colon"], "expected 'name: value'"),
    (["run", "{wasm}", "--request", "{text}"], "is not valid JSON"),
    (["run", "{wasm}", "--request", "{badreq}"], "unknown key(s) bogus"),
    (["run", "{wasm}", "--callouts", "{badreq}"], "callout 'bogus'"),
    (["run", "{wasm}", "--config", "nosuch.conf"], "cannot read --config nosuch.conf"),
    (["run", "{wasm}", "--log-level", "loud"], "invalid choice"),
    (["inspect", "{wasm}", "--backends", "wasmtime"], "--backends needs --compile"),
    (["run", "{wasm}", "--nosuch"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, args, message):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not wasm")
    truncated = tmp_path / "cut.wasm"
    truncated.write_bytes((BUILD / "c_http_all.wasm").read_bytes()[:200])
    badwat = tmp_path / "bad.wat"
    badwat.write_text("(module (func")
    badreq = tmp_path / "bad.json"
    badreq.write_text(json.dumps({"bogus": 1}))
    subs = {"{text}": text, "{truncated}": truncated, "{dir}": tmp_path, "{badreq}": badreq, "{badwat}": badwat,
            "{wasm}": BUILD / "wat_minimal.wasm"}
    rc, out, err = pwvm(capsys, *[subs.get(a, a) for a in args])
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pwvm: error: ") and message in err, err


def test_as_a_user_runs_it_no_colour_and_no_traceback(tmp_path):
    """A subprocess, stdout a pipe: no colour codes; a bad file: one line on stderr, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "proxywasm_vm", "run", str(BUILD / "c_http_all.wasm"),
                           "-H", "x-pwvm-test: auth"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "local response 401" in proc.stdout and "\x1b[" not in proc.stdout
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm" + struct.pack("<I", 1) + b"\x01\xff")
    proc = subprocess.run([sys.executable, "-m", "proxywasm_vm", "inspect", str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# ---- the README's forms --------------------------------------------------------------------------

def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Inspect, run and diff a plugin", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in section.splitlines() if line.startswith("pwvm ")]


def test_readme_forms_run(capsys):
    """Every pwvm command the README's section shows, run as written (from the repository root),
    with the exit status its comment states."""
    import os
    import shlex

    cmds = readme_commands()
    assert len(cmds) >= 5
    text = (ROOT / "README.md").read_text()
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        for cmd in cmds:
            line = next(ln for ln in text.splitlines() if ln.startswith(cmd))
            want = int(m.group(1)) if (m := re.search(r"exit (\d)", line)) else 0
            argv = shlex.split(cmd)[1:]
            if argv[0] == "diff" and "--backends" not in argv:
                argv += ["--backends", ",".join(BACKENDS)]
            rc, out, err = pwvm(capsys, *argv)
            assert rc == want, (cmd, rc, out[-2000:], err)
    finally:
        os.chdir(old)
