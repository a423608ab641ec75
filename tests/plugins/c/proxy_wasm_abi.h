/*
 * proxy_wasm_abi.h - minimal Proxy-Wasm host-function declarations for the
 * proxywasm-vm C test plugins.
 *
 * Written for this project from the Proxy-Wasm ABI specification
 * (v0.1.0 / v0.2.0 / v0.2.1). Only plain C, no SDK.
 *
 * Every import lives in module "env". All integers crossing the boundary are
 * 32-bit except the metric values (i64). Pointers are wasm32 linear-memory
 * offsets. Hosts allocate returned buffers through the plugin's
 * proxy_on_memory_allocate (or malloc) export; the plugin frees them.
 */
#ifndef PWVM_PROXY_WASM_ABI_H
#define PWVM_PROXY_WASM_ABI_H

#include <stddef.h>
#include <stdint.h>

#define PWVM_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PWVM_EXPORT(name) __attribute__((export_name(#name)))

/* ---- status codes (proxy_status_t / WasmResult) ---- */
enum {
  PW_OK = 0,
  PW_NOT_FOUND = 1,
  PW_BAD_ARGUMENT = 2,
  PW_SERIALIZATION_FAILURE = 3,
  PW_PARSE_FAILURE = 4,
  PW_BAD_EXPRESSION = 5,
  PW_INVALID_MEMORY_ACCESS = 6,
  PW_EMPTY = 7,
  PW_CAS_MISMATCH = 8,
  PW_RESULT_MISMATCH = 9,
  PW_INTERNAL_FAILURE = 10,
  PW_BROKEN_CONNECTION = 11,
  PW_UNIMPLEMENTED = 12,
};

/* ---- log levels ---- */
enum { PW_TRACE = 0, PW_DEBUG = 1, PW_INFO = 2, PW_WARN = 3, PW_ERROR = 4, PW_CRITICAL = 5 };

/* ---- actions returned by stream callbacks ---- */
enum { PW_CONTINUE = 0, PW_PAUSE = 1 };

/* ---- map types ---- */
enum {
  PW_MAP_REQUEST_HEADERS = 0,
  PW_MAP_REQUEST_TRAILERS = 1,
  PW_MAP_RESPONSE_HEADERS = 2,
  PW_MAP_RESPONSE_TRAILERS = 3,
  PW_MAP_GRPC_INITIAL_METADATA = 4,
  PW_MAP_GRPC_TRAILING_METADATA = 5,
  PW_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
  PW_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
};

/* ---- buffer types ---- */
enum {
  PW_BUF_HTTP_REQUEST_BODY = 0,
  PW_BUF_HTTP_RESPONSE_BODY = 1,
  PW_BUF_DOWNSTREAM_DATA = 2,
  PW_BUF_UPSTREAM_DATA = 3,
  PW_BUF_HTTP_CALL_RESPONSE_BODY = 4,
  PW_BUF_GRPC_RECEIVE_BUFFER = 5,
  PW_BUF_VM_CONFIGURATION = 6,
  PW_BUF_PLUGIN_CONFIGURATION = 7,
  PW_BUF_FOREIGN_FUNCTION_ARGUMENTS = 8,
};

/* ---- stream types ---- */
enum { PW_STREAM_REQUEST = 0, PW_STREAM_RESPONSE = 1, PW_STREAM_DOWNSTREAM = 2, PW_STREAM_UPSTREAM = 3 };

/* ---- metric types ---- */
enum { PW_METRIC_COUNTER = 0, PW_METRIC_GAUGE = 1, PW_METRIC_HISTOGRAM = 2 };

/* ---- peer types ---- */
enum { PW_PEER_UNKNOWN = 0, PW_PEER_LOCAL = 1, PW_PEER_REMOTE = 2 };

/* "no gRPC status" for proxy_send_local_response */
#define PW_GRPC_STATUS_NONE 0xFFFFFFFFu

/* ================= host functions (imports) ================= */

/* logging, clocks, timers, context */
PWVM_IMPORT(proxy_log) uint32_t proxy_log(uint32_t level, const char *msg, size_t msg_size);
PWVM_IMPORT(proxy_get_log_level) uint32_t proxy_get_log_level(uint32_t *ret_level);
PWVM_IMPORT(proxy_get_current_time_nanoseconds) uint32_t proxy_get_current_time_nanoseconds(uint64_t *ret_time);
PWVM_IMPORT(proxy_set_tick_period_milliseconds) uint32_t proxy_set_tick_period_milliseconds(uint32_t period);
PWVM_IMPORT(proxy_set_effective_context) uint32_t proxy_set_effective_context(uint32_t context_id);
PWVM_IMPORT(proxy_done) uint32_t proxy_done(void);
PWVM_IMPORT(proxy_get_status) uint32_t proxy_get_status(uint32_t *ret_code, const char **ret_msg, size_t *ret_msg_size);

/* ABI 0.1.0 only: configuration of the current callback (vm or plugin) */
PWVM_IMPORT(proxy_get_configuration) uint32_t proxy_get_configuration(const char **ret_data, size_t *ret_size);

/* buffers */
PWVM_IMPORT(proxy_get_buffer_bytes) uint32_t proxy_get_buffer_bytes(uint32_t type, uint32_t start, uint32_t max_size,
                                                                    const char **ret_data, size_t *ret_size);
PWVM_IMPORT(proxy_get_buffer_status) uint32_t proxy_get_buffer_status(uint32_t type, size_t *ret_size, uint32_t *ret_flags);
PWVM_IMPORT(proxy_set_buffer_bytes) uint32_t proxy_set_buffer_bytes(uint32_t type, uint32_t start, uint32_t size,
                                                                    const char *data, size_t data_size);

/* header maps */
PWVM_IMPORT(proxy_get_header_map_pairs) uint32_t proxy_get_header_map_pairs(uint32_t type, const char **ret_data, size_t *ret_size);
PWVM_IMPORT(proxy_set_header_map_pairs) uint32_t proxy_set_header_map_pairs(uint32_t type, const char *data, size_t size);
PWVM_IMPORT(proxy_get_header_map_size) uint32_t proxy_get_header_map_size(uint32_t type, size_t *ret_size);
PWVM_IMPORT(proxy_get_header_map_value) uint32_t proxy_get_header_map_value(uint32_t type, const char *key, size_t key_size,
                                                                            const char **ret_value, size_t *ret_size);
PWVM_IMPORT(proxy_add_header_map_value) uint32_t proxy_add_header_map_value(uint32_t type, const char *key, size_t key_size,
                                                                            const char *value, size_t value_size);
PWVM_IMPORT(proxy_replace_header_map_value) uint32_t proxy_replace_header_map_value(uint32_t type, const char *key, size_t key_size,
                                                                                    const char *value, size_t value_size);
PWVM_IMPORT(proxy_remove_header_map_value) uint32_t proxy_remove_header_map_value(uint32_t type, const char *key, size_t key_size);

/* properties */
PWVM_IMPORT(proxy_get_property) uint32_t proxy_get_property(const char *path, size_t path_size, const char **ret_data, size_t *ret_size);
PWVM_IMPORT(proxy_set_property) uint32_t proxy_set_property(const char *path, size_t path_size, const char *value, size_t value_size);

/* stream control */
PWVM_IMPORT(proxy_continue_stream) uint32_t proxy_continue_stream(uint32_t stream_type);
PWVM_IMPORT(proxy_close_stream) uint32_t proxy_close_stream(uint32_t stream_type);
PWVM_IMPORT(proxy_send_local_response) uint32_t proxy_send_local_response(uint32_t status_code, const char *details, size_t details_size,
                                                                          const char *body, size_t body_size,
                                                                          const char *headers, size_t headers_size,
                                                                          uint32_t grpc_status);
PWVM_IMPORT(proxy_clear_route_cache) uint32_t proxy_clear_route_cache(void);

/* HTTP callouts */
PWVM_IMPORT(proxy_http_call) uint32_t proxy_http_call(const char *upstream, size_t upstream_size,
                                                      const char *headers, size_t headers_size,
                                                      const char *body, size_t body_size,
                                                      const char *trailers, size_t trailers_size,
                                                      uint32_t timeout_ms, uint32_t *ret_token);

/* gRPC (0.2.x signatures: with serialized initial metadata) */
PWVM_IMPORT(proxy_grpc_call) uint32_t proxy_grpc_call(const char *upstream, size_t upstream_size,
                                                      const char *service, size_t service_size,
                                                      const char *method, size_t method_size,
                                                      const char *metadata, size_t metadata_size,
                                                      const char *message, size_t message_size,
                                                      uint32_t timeout_ms, uint32_t *ret_token);
PWVM_IMPORT(proxy_grpc_stream) uint32_t proxy_grpc_stream(const char *upstream, size_t upstream_size,
                                                          const char *service, size_t service_size,
                                                          const char *method, size_t method_size,
                                                          const char *metadata, size_t metadata_size,
                                                          uint32_t *ret_token);
PWVM_IMPORT(proxy_grpc_send) uint32_t proxy_grpc_send(uint32_t token, const char *message, size_t message_size, uint32_t end_stream);
PWVM_IMPORT(proxy_grpc_cancel) uint32_t proxy_grpc_cancel(uint32_t token);
PWVM_IMPORT(proxy_grpc_close) uint32_t proxy_grpc_close(uint32_t token);

/* shared data and queues */
PWVM_IMPORT(proxy_get_shared_data) uint32_t proxy_get_shared_data(const char *key, size_t key_size, const char **ret_value,
                                                                  size_t *ret_size, uint32_t *ret_cas);
PWVM_IMPORT(proxy_set_shared_data) uint32_t proxy_set_shared_data(const char *key, size_t key_size, const char *value,
                                                                  size_t value_size, uint32_t cas);
PWVM_IMPORT(proxy_register_shared_queue) uint32_t proxy_register_shared_queue(const char *name, size_t name_size, uint32_t *ret_token);
PWVM_IMPORT(proxy_resolve_shared_queue) uint32_t proxy_resolve_shared_queue(const char *vm_id, size_t vm_id_size, const char *name,
                                                                            size_t name_size, uint32_t *ret_token);
PWVM_IMPORT(proxy_enqueue_shared_queue) uint32_t proxy_enqueue_shared_queue(uint32_t token, const char *data, size_t size);
PWVM_IMPORT(proxy_dequeue_shared_queue) uint32_t proxy_dequeue_shared_queue(uint32_t token, const char **ret_data, size_t *ret_size);

/* metrics */
PWVM_IMPORT(proxy_define_metric) uint32_t proxy_define_metric(uint32_t type, const char *name, size_t name_size, uint32_t *ret_id);
PWVM_IMPORT(proxy_increment_metric) uint32_t proxy_increment_metric(uint32_t id, int64_t offset);
PWVM_IMPORT(proxy_record_metric) uint32_t proxy_record_metric(uint32_t id, uint64_t value);
PWVM_IMPORT(proxy_get_metric) uint32_t proxy_get_metric(uint32_t id, uint64_t *ret_value);

/* foreign functions */
PWVM_IMPORT(proxy_call_foreign_function) uint32_t proxy_call_foreign_function(const char *name, size_t name_size,
                                                                              const char *args, size_t args_size,
                                                                              const char **ret_data, size_t *ret_size);

/* Emscripten-era embedder import (not a proxy_* function): 0.1.0 modules built with Emscripten
 * import it from "env", and proxy-wasm-cpp-host provides it. A C name of its own, so that a libc
 * definition of pthread_equal can never satisfy it instead of the host. */
__attribute__((import_module("env"), import_name("pthread_equal"))) uint32_t pwvm_env_pthread_equal(uint32_t a, uint32_t b);

#endif /* PWVM_PROXY_WASM_ABI_H */
