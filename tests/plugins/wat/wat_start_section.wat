;; wat_start_section - a wasm start section calls a host function while the
;; module is being instantiated: proxy_log(INFO, "pwvm wat start section").
;; Imports must therefore be live at instantiation time. ABI 0.2.1.
;; proxy_on_request_headers logs "pwvm wat request headers" (INFO).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "pwvm wat start section")     ;; 22 bytes
  (data (i32.const 64) "pwvm wat request headers")   ;; 24 bytes
  (func $start (drop (call $log (i32.const 2) (i32.const 16) (i32.const 22))))
  (start $start)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 64) (i32.const 24)))
    (i32.const 0))
)
