"""Test your own Proxy-Wasm plugin from Python: a harness on every runtime, no proxy needed.

:class:`PluginHarness` loads one ``.wasm`` filter into a private
:class:`~proxywasm_vm.ProxyWasmHost` whose services a test can see and drive:

- HTTP and gRPC callouts go to fakes (:class:`FakeHttpDispatcher`,
  :class:`FakeGrpcDispatcher`) that keep each call pending
  (:class:`PendingHttpCall`, :class:`PendingGrpcCall`) until the test answers it
  (``respond(...)``) or fails it (``fail(...)``), whenever it chooses;
- time stands still (a :class:`~proxywasm_vm.ManualClock`) until the test calls
  :meth:`PluginHarness.advance`, which fires the plugin's ticks in order;
- logs (:class:`LogView`, by level), metrics, shared data and queues are plain
  Python values;
- streams are the host's own :class:`~proxywasm_vm.HttpStream` and
  :class:`~proxywasm_vm.TcpStream`: headers, bodies, trailers and the local
  response as the plugin left them, after each callback.

With pytest, the plugin :mod:`proxywasm_vm.testing.pytest_plugin` (registered by
installing the package) gives the ``proxywasm`` fixture, which builds a harness
once per selected backend (README: "Testing your plugin with pytest")::

    def test_callout(proxywasm):
        plugin = proxywasm("build/filter.wasm", configuration="test=callout")
        stream = plugin.request({":method": "GET", ":path": "/", ":authority": "example.com"})
        plugin.next_http_call().respond(200, {"x-pwvm-callout-value": "ok"}, b"pong")
        assert stream.request.headers["x-pwvm-callout-value"] == "ok"
"""

from ._harness import (FakeGrpcDispatcher, FakeHttpDispatcher, LogView, NoPendingCall, PendingGrpcCall,
                       PendingHttpCall, PluginHarness)

__all__ = ["FakeGrpcDispatcher", "FakeHttpDispatcher", "LogView", "NoPendingCall", "PendingGrpcCall",
           "PendingHttpCall", "PluginHarness"]
