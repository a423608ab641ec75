;; wat_bad_signature - a Proxy-Wasm 0.2.1 plugin whose proxy_on_request_headers has a signature no
;; ABI version defines: (f32, i64) -> i32 instead of (i32, i32, i32) -> i32 (0.2.x) or
;; (i32, i32) -> i32 (0.1.0). Loading it must fail, naming the export and the allowed signatures.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param f32 i64) (result i32) (i32.const 0))
)
