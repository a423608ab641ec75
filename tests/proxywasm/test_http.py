"""HTTP streams end to end: header maps, local responses, bodies, properties, logs, ABI 0.1.0, SDK plugins."""

from __future__ import annotations

import pytest

import proxywasm_vm as pw
from proxywasm_vm import Action

from .conftest import REQUEST


def req(test: str, *extra):
    return REQUEST + [("x-pwvm-test", test), *extra]


def test_header_rewrite(http_all):
    p = http_all()
    with p.http_stream() as s:
        assert s.request_headers(req("headers", ("x-pwvm-echo", "Hi"), ("X-PWVM-Remove", "1"),
                                     ("x-pwvm-replace", "a"), ("x-pwvm-replace", "b")), False) is Action.CONTINUE
        h = s.request.headers
        assert h["x-pwvm-header-count"] == "10"
        assert h["x-pwvm-header-names"].split(",")[:3] == [":method", ":path", ":authority"]
        assert h["x-pwvm-header-pairs-bytes"] == h["x-pwvm-header-size"]
        assert int(h["x-pwvm-header-size"]) == len(pw.HeaderMap(req("headers", ("x-pwvm-echo", "Hi"),
                                                                       ("x-pwvm-remove", "1"), ("x-pwvm-replace", "a"),
                                                                       ("x-pwvm-replace", "b"))).serialize())
        assert h["x-pwvm-echo-status"] == "0" and h["X-Pwvm-Echoed"] == "Hi"
        assert h["x-pwvm-added"] == "1"
        assert h.get_all("x-pwvm-replace") == ["replaced"]
        assert "x-pwvm-remove" not in h
        assert s.response_headers({":status": "200", "X-PWVM-Drop": "x", "a": "b"}) is Action.CONTINUE
        assert s.response.headers.items() == [(":status", "200"), ("a", "b"), ("x-pwvm-set-pairs", "3")]
        assert s.request_trailers({"t": "1"}) is Action.CONTINUE
        assert s.request.trailers["x-pwvm-request-trailer"] == "1"
        s.response_trailers([("grpc-status", "0")])
        assert s.response.trailers.items() == [("grpc-status", "0"), ("x-pwvm-trailer", "1")]
    assert "c_http_all: headers pairs=10 add=0 replace=0 remove=0" in p.logs


def test_auth_local_responses(http_all):
    p = http_all("test=auth\nauth_token=tok")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST, True) is Action.PAUSE
        lr = s.local_response
        assert (lr.status, lr.body, lr.details) == (401, b"unauthorized", "pwvm_unauthorized")
        assert lr.headers["www-authenticate"] == 'Bearer realm="pwvm"'
        assert lr.grpc_status is None
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("authorization", "Bearer nope")]) is Action.PAUSE
        assert s.local_response.status == 403 and s.local_response.body == b"forbidden"
        assert s.request_body(b"ignored", True) is Action.PAUSE  # the stream was answered locally
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("Authorization", "Bearer tok")]) is Action.CONTINUE
        assert s.local_response is None and s.request.headers["x-pwvm-auth"] == "ok"


@pytest.mark.parametrize("chunks", [[b"hello world"], [b"hel", b"lo ", b"wor", b"ld"], [b"", b"hello world", b""]])
def test_body_replace_across_chunks(http_all, chunks):
    p = http_all()
    with p.http_stream() as s:
        s.request_headers(req("body", ("x-pwvm-body-target", "both")))
        for i, c in enumerate(chunks):
            a = s.request_body(c, end_of_stream=i == len(chunks) - 1)
            assert a is (Action.CONTINUE if i == len(chunks) - 1 else Action.PAUSE)
            if i < len(chunks) - 1:
                assert s.request.paused and s.request.body == b""
        assert s.request.body == b"HELLO WORLD" and s.request.buffered == b""
        s.response_headers({":status": "200"})
        s.response_body(b"abc")
        s.response_body(b"def", True)
        assert s.response.body == b"ABCDEF"
    sizes = [int(m.split("size=")[1].split()[0]) for m in p.logs if "request body size=" in m]
    assert sizes == [sum(map(len, chunks[:i + 1])) for i in range(len(chunks))]  # body_size is the total so far


@pytest.mark.parametrize("mode, expected", [("prepend", b"<<abcdef"), ("append", b"abcdef>>"),
                                            ("other", b"abcdef")])
def test_body_prepend_append(http_all, mode, expected):
    p = http_all()
    with p.http_stream() as s:
        s.request_headers(req("body", ("x-pwvm-body-mode", mode)))
        assert s.request_body(b"abc") is Action.CONTINUE
        assert s.request_body(b"def", True) is Action.CONTINUE
        assert s.request.body == expected


def test_local_response_with_headers(http_all):
    p = http_all()
    with p.http_stream() as s:
        assert s.request_headers(req("local", ("x-pwvm-local-status", "429"), ("x-pwvm-local-body", "slow"))) \
            is Action.PAUSE
        assert s.local_response.status == 429 and s.local_response.body == b"slow"
        assert s.local_response.headers == {"x-pwvm-local": "1"}


def test_close_stream(http_all):
    p = http_all()
    with p.http_stream() as s:
        assert s.request_headers(req("close")) is Action.PAUSE
        assert s.reset
    assert "c_http_all: close_stream status=0" in p.logs


def test_properties(http_all):
    p = http_all(properties={"team": {"name": "edge"}}, name="props")
    with p.http_stream(properties={"source.address": "10.1.2.3:5555"}) as s:
        s.request_headers(req("properties", ("x-pwvm-prop-get", "team.name")))
        s.response_headers({":status": "200"})
        h = s.response.headers
        assert h["x-pwvm-prop-request-path"] == "/p?q=1"
        assert h["x-pwvm-prop-plugin-root-id"] == "pwvm_all"
        assert h["x-pwvm-prop-plugin-name"] == "props"
        assert h["x-pwvm-prop-source-address"] == "10.1.2.3:5555"
        assert h["x-pwvm-prop-set"] == "0" and h["x-pwvm-prop-user"] == "v1"
        assert h["x-pwvm-prop-get-result"] == "edge"
    with p.http_stream() as s:  # set_property is per stream; unknown paths are NOT_FOUND
        s.request_headers(req("properties", ("x-pwvm-prop-get", "no.such.thing")))
        s.response_headers({":status": "200"})
        assert s.response.headers["x-pwvm-prop-source-address"] == "!1"
        assert s.response.headers["x-pwvm-prop-get-result"] == "!1"


def test_log_levels_and_misc(http_all, host):
    host.logger.level = pw.LogLevel.WARN
    p = http_all()
    with p.http_stream() as s:
        s.request_headers(req("log"))
        s.response_headers({":status": "200"})
        assert s.response.headers["x-pwvm-log"] == "0,0,0,0,0,0"
    assert [m for m in p.logs if "log level" in m] == [f"c_http_all: log level {n}" for n in (3, 4, 5)]
    assert [r.level for r in p.log_records() if "log level" in r.message] == [3, 4, 5]
    with p.http_stream() as s:
        s.request_headers(req("misc"))
        s.response_headers({":status": "200"})
        h = s.response.headers
        assert h["x-pwvm-log-level"] == "3"
        assert h["x-pwvm-time"] == "nonzero"
        assert h["x-pwvm-get-status"] == "0"
        assert h["x-pwvm-clear-route-cache"] == "0" and s.route_cache_cleared == 1
        assert h["x-pwvm-buffer-status"] == "0"


def test_stream_logs_and_lifecycle(http_all):
    p = http_all()
    s = p.http_stream()
    s.request_headers(req("headers"))
    s.close()
    s.close()  # idempotent
    assert f"c_http_all: on_log context={s.context_id} test=headers" in s.logs
    with pytest.raises(RuntimeError):
        s.request_body(b"x")


def test_abi_0_1_0(make_plugin):
    p = make_plugin("c_abi010", configuration="cfg=1")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST, True) is Action.CONTINUE
        assert s.request.headers["x-pwvm-abi"] == "0.1.0" and s.request.headers["x-pwvm-config"] == "cfg=1"
        s.request_body(b"abc", True)
        s.response_headers({":status": "200"})
        assert s.response.headers["x-pwvm-abi-response"] == "0.1.0"
    assert "c_abi010: configured root=1 size=5 status=0 config=cfg=1" in p.logs
    assert "c_abi010: request body context=2 size=3 eos=1" in p.logs


@pytest.mark.parametrize("name, root_id, sdk", [("as_solo_headers", "pwvm_solo_headers", "solo"),
                                                ("as_gcore_headers", "pwvm_gcore_headers", "gcore")])
def test_assemblyscript_sdks(make_plugin, name, root_id, sdk):
    p = make_plugin(name, root_id=root_id, configuration="conf")
    with p.http_stream() as s:
        assert s.request_headers(REQUEST, True) is Action.CONTINUE
        assert s.request.headers["x-pwvm-sdk"] == sdk
        assert s.response_headers({":status": "200"}, True) is Action.CONTINUE
        assert s.response.headers["x-pwvm-response"] == "1"
    with p.http_stream() as s:
        assert s.request_headers(REQUEST + [("X-PWVM-Deny", "1")], True) is Action.PAUSE
        assert (s.local_response.status, s.local_response.body, s.local_response.details) == \
            (403, b"denied", "pwvm_denied")
    assert f"{'[INFO]: ' if sdk == 'gcore' else ''}{name} request headers: {len(REQUEST)}" in p.logs
    if sdk == "gcore":
        with p.http_stream() as s:
            s.request_headers(REQUEST)
            assert s.request.headers["x-pwvm-config"] == "conf"


def _on_log(p, s):
    return f"c_http_all: on_log context={s.context_id} test=headers" in p.logs


def test_stream_completes_once_both_directions_ended(http_all):
    p = http_all("test=headers")
    s = p.http_stream()
    assert s.request_headers(REQUEST, True) is Action.CONTINUE
    assert not s.closed and not _on_log(p, s)
    assert s.response_headers({":status": "200"}, True) is Action.CONTINUE
    assert s.closed and _on_log(p, s)  # done, log, delete ran at the end of the response, as in Envoy
    assert s.response.headers["x-pwvm-set-pairs"] == "1"  # the state stays readable
    s.close()  # nothing left to do
    assert p.logs.count(f"c_http_all: on_log context={s.context_id} test=headers") == 1
    with pytest.raises(RuntimeError, match="closed"):
        s.response_body(b"late")


@pytest.mark.parametrize("order", ["trailers", "response first"])
def test_stream_completion_by_trailers_or_in_either_order(http_all, order):
    p = http_all("test=headers")
    s = p.http_stream()
    if order == "trailers":
        s.request_headers(REQUEST)
        s.request_trailers({"t": "1"})
        s.response_headers({":status": "200"})
        assert not s.closed
        s.response_trailers({"grpc-status": "0"})
    else:
        s.request_headers(REQUEST)
        s.response_headers({":status": "200"}, True)  # an early response: the request is still open
        assert not s.closed
        s.request_body(b"rest", True)
    assert s.closed and _on_log(p, s)


def test_answered_or_unfinished_streams_wait_for_close(http_all):
    p = http_all("test=auth\nauth_token=tok")
    s = p.http_stream()
    assert s.request_headers(REQUEST, True) is Action.PAUSE  # answered locally (401)
    assert s.response_headers({":status": "401"}, True) is Action.PAUSE
    assert not s.closed  # the embedder decides when an answered stream ends
    s.close()
    assert s.closed
    q = http_all("test=headers")
    u = q.http_stream()
    u.request_headers(REQUEST)
    u.response_headers({":status": "200"})
    assert not u.closed and not _on_log(q, u)  # neither direction ended
    u.close()
    assert _on_log(q, u)


def test_forwarded_body_bytes_are_handed_over_once_and_not_kept(http_all):
    # What an embedder that passes a streamed body on does (the ASGI middleware): take what the
    # stream forwarded. Each byte comes once, in order, and the host (here, or in the worker) keeps
    # none of it, however long the stream.
    s = http_all().http_stream()
    assert s.request_headers(REQUEST) is Action.CONTINUE
    assert s._take_forwarded(True) == b""
    taken = []
    for i in range(40):
        chunk = bytes([65 + i % 26]) * 1000
        assert s.request_body(chunk, i == 39) is Action.CONTINUE
        if i % 7 == 0:
            taken.append(s._take_forwarded(True))
            assert s.request.body == b""  # nothing kept once taken
    taken.append(s._take_forwarded(True))
    assert b"".join(taken) == b"".join(bytes([65 + i % 26]) * 1000 for i in range(40))
    assert s._take_forwarded(True) == b""
    assert s.response_headers({":status": "200"}) is Action.CONTINUE
    assert s.response_body(b"out", True) is Action.CONTINUE
    assert s._take_forwarded(False) == b"out" and s.response.body == b""
    s.close()
