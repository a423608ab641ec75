"""End-to-end tests of the Proxy-Wasm host on the test plugins in tests/plugins/."""
