"""Runtime backends, one sub-package per runtime (installed as ``proxywasm_vm.backends``)."""
