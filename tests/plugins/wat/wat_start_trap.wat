;; wat_start_trap - the wasm start section traps (unreachable), so
;; instantiation itself fails. ABI 0.2.1 marker present.
(module
  (memory (export "memory") 1)
  (func $start unreachable)
  (start $start)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
)
