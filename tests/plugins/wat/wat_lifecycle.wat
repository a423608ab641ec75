;; wat_lifecycle - logs the context lifecycle, for tests of root-context shutdown (update, close).
;; Proxy-Wasm 0.2.1, no WASI. Every message is logged at info with the context as effective context:
;;   "create root" / "create stream"  (proxy_on_context_create, parent 0 or not)
;;   "done root" / "done stream"      (proxy_on_done, returns 1)
;;   "delete root" / "delete stream"  (proxy_on_delete)
;; Root ids below 4096 are remembered in a byte table at 8192 (a byte per context id).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 16384))
  (data (i32.const 16) "create root")    ;; 11 bytes
  (data (i32.const 32) "create stream")  ;; 13
  (data (i32.const 48) "done root")      ;; 9
  (data (i32.const 64) "done stream")    ;; 11
  (data (i32.const 80) "delete root")    ;; 11
  (data (i32.const 96) "delete stream")  ;; 13

  (func (export "proxy_abi_version_0_2_1"))

  ;; bump allocator inside the first page (0 when exhausted)
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536)) (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  (func $is_root (param $id i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $id) (i32.const 4096))
      (then (i32.load8_u (i32.add (i32.const 8192) (local.get $id))))
      (else (i32.const 0))))

  ;; log the root message (at $root_ptr, $root_len) or the stream one (16 bytes further, $stream_len)
  (func $say (param $id i32) (param $root_ptr i32) (param $root_len i32) (param $stream_len i32)
    (if (call $is_root (local.get $id))
      (then (drop (call $log (i32.const 2) (local.get $root_ptr) (local.get $root_len))))
      (else (drop (call $log (i32.const 2) (i32.add (local.get $root_ptr) (i32.const 16)) (local.get $stream_len))))))

  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
    (if (i32.and (i32.eqz (local.get $parent)) (i32.lt_u (local.get $id) (i32.const 4096)))
      (then (i32.store8 (i32.add (i32.const 8192) (local.get $id)) (i32.const 1))))
    (call $say (local.get $id) (i32.const 16) (i32.const 11) (i32.const 13)))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param $id i32) (result i32)
    (call $say (local.get $id) (i32.const 48) (i32.const 9) (i32.const 11))
    (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param $id i32)
    (call $say (local.get $id) (i32.const 80) (i32.const 11) (i32.const 13)))
)
