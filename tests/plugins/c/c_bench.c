/*
 * c_bench - proxywasm-vm benchmark plugin (C, Proxy-Wasm ABI 0.2.1).
 *
 * Does exactly the request cycle the host benchmark measures, and nothing
 * else: on request headers it reads every header as serialized pairs and
 * adds `x-pwvm-bench: 1`; response headers, done, log and delete are no-ops.
 * With almost no guest-side work, its cost is the host's own.
 * Contract: tests/plugins/README.md.
 */
#include "pwvm_util.h"

PWVM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PWVM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

PWVM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t vm_config_size) {
  (void)root_id;
  (void)vm_config_size;
  return 1;
}

PWVM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
  (void)root_id;
  (void)config_size;
  return 1;
}

PWVM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
  (void)context_id;
  (void)parent_id;
}

static uint32_t g_pairs_seen; /* pairs parsed by the last request, so the read is not optimised away */

PWVM_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers,
                                                                        uint32_t end_of_stream) {
  (void)context_id;
  (void)num_headers;
  (void)end_of_stream;
  const char *data = NULL;
  size_t size = 0;
  if (proxy_get_header_map_pairs(PW_MAP_REQUEST_HEADERS, &data, &size) == PW_OK && data) {
    g_pairs_seen = size >= 4 ? pw_rd32(data) : 0;
    free((void *)data);
  }
  pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-bench", "1");
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers,
                                                                          uint32_t end_of_stream) {
  (void)context_id;
  (void)num_headers;
  (void)end_of_stream;
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
  (void)context_id;
  return 1;
}

PWVM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) { (void)context_id; }

PWVM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) { (void)context_id; }
