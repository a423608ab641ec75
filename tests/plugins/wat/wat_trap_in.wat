;; wat_trap_in - traps (unreachable) in the one callback its configuration names, for failure-policy
;; tests of every callback. Proxy-Wasm 0.2.1, no WASI.
;; The mode is the first byte of the plugin configuration (read in proxy_on_configure), or of the
;; VM configuration (read in proxy_on_vm_start, which runs first):
;;   v vm_start      c configure       x context_create (stream contexts only)
;;   h request_headers  b request_body  t request_trailers
;;   H response_headers B response_body T response_trailers
;;   d done (any context)  l log  D delete (any context)
;;   k tick (configure sets a 10 ms tick period)
;;   q queue_ready (configure registers the shared queue "q")
;;   r http_call_response (request headers call upstream "up": GET / a, 1000 ms, and return 1)
;;   f foreign_function
;;   n new_connection  u downstream_data  U upstream_data
;;   z downstream_connection_close  Z upstream_connection_close
;; Any other mode: every callback returns 0 (1 for vm_start, configure, done) and nothing traps.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 16384))
  (global $mode (mut i32) (i32.const 0))
  ;; 0..7: return pointer and size of proxy_get_buffer_bytes; 8: call token / queue id
  (data (i32.const 32) "q")   ;; queue name
  (data (i32.const 48) "up")  ;; upstream name
  ;; serialized headers :method GET, :path /, :authority a (61 bytes)
  (data (i32.const 64)
    "\03\00\00\00" "\07\00\00\00\03\00\00\00" "\05\00\00\00\01\00\00\00" "\0a\00\00\00\01\00\00\00"
    ":method\00GET\00:path\00/\00:authority\00a\00")

  (func (export "proxy_abi_version_0_2_1"))

  ;; bump allocator inside the first page (0 when exhausted)
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 65536)) (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  ;; the mode := first byte of buffer $type, when it has one
  (func $read_mode (param $type i32) (param $size i32)
    (if (i32.eqz (local.get $size)) (then (return)))
    (if (i32.eqz (call $get_buffer (local.get $type) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 4)))
      (then (global.set $mode (i32.load8_u (i32.load (i32.const 0)))))))

  (func $trap_if (param $c i32)
    (if (i32.eq (global.get $mode) (local.get $c)) (then unreachable)))

  (func (export "proxy_on_vm_start") (param i32) (param $size i32) (result i32)
    (call $read_mode (i32.const 6) (local.get $size))
    (call $trap_if (i32.const 0x76))  ;; v
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
    (call $read_mode (i32.const 7) (local.get $size))
    (call $trap_if (i32.const 0x63))  ;; c
    (if (i32.eq (global.get $mode) (i32.const 0x6b))  ;; k
      (then (drop (call $set_tick (i32.const 10)))))
    (if (i32.eq (global.get $mode) (i32.const 0x71))  ;; q
      (then (drop (call $register_queue (i32.const 32) (i32.const 1) (i32.const 8)))))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param i32) (param $parent i32)
    (if (local.get $parent) (then (call $trap_if (i32.const 0x78)))))  ;; x
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $trap_if (i32.const 0x68))  ;; h
    (if (i32.eq (global.get $mode) (i32.const 0x72))  ;; r
      (then
        (drop (call $http_call (i32.const 48) (i32.const 2) (i32.const 64) (i32.const 61)
                               (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                               (i32.const 1000) (i32.const 8)))
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (call $trap_if (i32.const 0x62)) (i32.const 0))  ;; b
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
    (call $trap_if (i32.const 0x74)) (i32.const 0))  ;; t
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $trap_if (i32.const 0x48)) (i32.const 0))  ;; H
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (call $trap_if (i32.const 0x42)) (i32.const 0))  ;; B
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
    (call $trap_if (i32.const 0x54)) (i32.const 0))  ;; T
  (func (export "proxy_on_done") (param i32) (result i32)
    (call $trap_if (i32.const 0x64)) (i32.const 1))  ;; d
  (func (export "proxy_on_log") (param i32)
    (call $trap_if (i32.const 0x6c)))  ;; l
  (func (export "proxy_on_delete") (param i32)
    (call $trap_if (i32.const 0x44)))  ;; D
  (func (export "proxy_on_tick") (param i32)
    (call $trap_if (i32.const 0x6b)))  ;; k
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (call $trap_if (i32.const 0x71)))  ;; q
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (call $trap_if (i32.const 0x72)))  ;; r
  (func (export "proxy_on_foreign_function") (param i32 i32 i32)
    (call $trap_if (i32.const 0x66)))  ;; f
  (func (export "proxy_on_new_connection") (param i32) (result i32)
    (call $trap_if (i32.const 0x6e)) (i32.const 0))  ;; n
  (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
    (call $trap_if (i32.const 0x75)) (i32.const 0))  ;; u
  (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
    (call $trap_if (i32.const 0x55)) (i32.const 0))  ;; U
  (func (export "proxy_on_downstream_connection_close") (param i32 i32)
    (call $trap_if (i32.const 0x7a)))  ;; z
  (func (export "proxy_on_upstream_connection_close") (param i32 i32)
    (call $trap_if (i32.const 0x5a)))  ;; Z
)
