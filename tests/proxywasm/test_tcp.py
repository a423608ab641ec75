"""TCP (network filter) streams on the c_tcp plugin."""

from __future__ import annotations

import proxywasm_vm as pw
from proxywasm_vm import Action


def test_tcp_rewrites_both_directions(make_plugin):
    p = make_plugin("c_tcp", configuration="upstream_prefix=up:")
    with p.tcp_stream(properties={"source.address": "1.2.3.4:1000"}) as t:
        assert t.new_connection() is Action.CONTINUE
        assert t.downstream_data(b"hello ") is Action.CONTINUE
        assert t.downstream_data(b"world", True) is Action.CONTINUE
        assert t.downstream.data == b"HELLO WORLD"
        assert t.upstream_data(b"pong", True) is Action.CONTINUE
        assert t.upstream.data == b"up:pong"
        t.downstream_close(pw.PeerType.REMOTE)
        t.upstream_close(pw.PeerType.LOCAL)
    cid = t.context_id
    assert f"c_tcp: downstream close context={cid} peer=2 down_bytes=11" in p.logs
    assert f"c_tcp: upstream close context={cid} peer=1 up_bytes=4" in p.logs
    assert f"c_tcp: on_log context={cid} down_chunks=2 up_chunks=1" in p.logs


def test_tcp_line_mode_buffers_until_newline(make_plugin):
    p = make_plugin("c_tcp", configuration="line_mode=1")
    with p.tcp_stream() as t:
        assert t.downstream_data(b"hello ") is Action.PAUSE
        assert t.downstream.buffered == b"hello " and t.downstream.data == b""
        assert t.downstream_data(b"world\n") is Action.CONTINUE
        assert t.downstream.data == b"HELLO WORLD\n"
    assert any("downstream data context=" in m and "size=12" in m for m in p.logs)


def test_tcp_close_marker(make_plugin):
    p = make_plugin("c_tcp")
    with p.tcp_stream() as t:
        assert t.downstream_data(b"please QUIT now") is Action.PAUSE
        assert t.connection_closed_by_plugin
        assert t.downstream_data(b"more") is Action.PAUSE
        assert t.downstream.data == b""
