;; wat_missing_import - ABI 0.2.1 plugin importing a host function that no
;; Proxy-Wasm host provides (env.proxy_pwvm_does_not_exist). A host must fail
;; to load it with an error naming the import (or, if it stubs unknown imports,
;; trap only when proxy_on_request_headers calls it).
(module
  (import "env" "proxy_pwvm_does_not_exist" (func $missing (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $missing (i32.const 0)))
    (i32.const 0))
)
