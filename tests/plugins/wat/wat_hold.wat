;; wat_hold - holds everything: request and response headers callbacks return 1 (pause,
;; never resumed), body callbacks return 1 until end of stream, then 0. No imports: the host
;; keeps the headers and buffers the bodies (tests of the host's buffer limit).
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))

  (func (export "proxy_abi_version_0_2_1"))

  ;; a bump allocator inside the first page (0 when exhausted): the host never needs one here
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536)) (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_body") (param i32 i32) (param $eos i32) (result i32)
    (i32.eqz (local.get $eos)))
  (func (export "proxy_on_response_body") (param i32 i32) (param $eos i32) (result i32)
    (i32.eqz (local.get $eos)))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
