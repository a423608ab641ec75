;; wat_uncompress - hands the whole request body to the host's "uncompress" foreign function
;; and answers with a local response: status 200 + the foreign call's proxy_status_t, body = its
;; result (so 200 with the inflated bytes, 203 for SERIALIZATION_FAILURE ...). The body is
;; buffered (request body callbacks return 1 until end of stream). Bump allocator as wat_minimal.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_call_foreign_function"
    (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "uncompress")   ;; 10 bytes
  ;; out-words: 64/68 the body (pointer, size), 72/76 the foreign function's result

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                                      (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))

  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (local $st i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (i64.store (i32.const 64) (i64.const 0))
    (i64.store (i32.const 72) (i64.const 0))
    (local.set $st (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 64) (i32.const 68)))
    (if (i32.eqz (local.get $st))
      (then
        (local.set $st (call $foreign (i32.const 16) (i32.const 10)
                                      (i32.load (i32.const 64)) (i32.load (i32.const 68))
                                      (i32.const 72) (i32.const 76)))))
    (drop (call $local (i32.add (i32.const 200) (local.get $st))
                       (i32.const 0) (i32.const 0)
                       (i32.load (i32.const 72)) (i32.load (i32.const 76))
                       (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
