"""Host functions find their VM one way (``_hostcalls.CURRENT``, this thread's running VM):
right when a host function of one VM runs another VM on the same thread, and after it."""

from __future__ import annotations

from .conftest import REQUEST


def test_a_vm_run_inside_another_vms_host_function(host_here, http_all, make_plugin, host):
    inner = make_plugin("as_solo_headers", root_id="pwvm_solo_headers")
    seen = []

    def nest(args: bytes) -> bytes:
        # runs inner's VM (its host functions need to find it) inside outer's proxy_call_foreign_function
        with inner.http_stream() as s:
            s.request_headers(REQUEST)
            seen.append(s.request.headers["x-pwvm-sdk"])
        return b"inner:" + args

    host.foreign_functions.register("nest", nest)
    outer = http_all()
    with outer.http_stream() as s:
        s.request_headers(REQUEST + [("x-pwvm-test", "foreign"), ("x-pwvm-foreign-name", "nest"),
                                     ("x-pwvm-foreign-arg", "hi")])
        s.response_headers({":status": "200"})
        h = s.response.headers
    # outer's host calls after the nested run (writing the result, its response headers) reached outer's VM
    assert seen == ["solo"]
    assert h["x-pwvm-foreign-status"] == "0" and h["x-pwvm-foreign-result"] == "inner:hi"
    # ... and its log call right after the nested run (in the same callback) is outer's, not inner's
    assert any("foreign nest status=0" in line for line in outer.logs)
    assert not any("foreign nest" in line for line in inner.logs)
    assert not outer.failed and not inner.failed
