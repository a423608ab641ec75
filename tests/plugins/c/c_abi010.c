/*
 * c_abi010 - proxywasm-vm test plugin (C, Proxy-Wasm ABI 0.1.0).
 *
 * Uses the 0.1.0 callback signatures: proxy_on_request_headers and
 * proxy_on_response_headers take (context_id, num_headers) only, and the
 * configuration is read with the 0.1.0 host call proxy_get_configuration.
 * Contract: tests/plugins/README.md.
 */
#include "pwvm_util.h"

#define LOGP "c_abi010: "

PWVM_EXPORT(proxy_abi_version_0_1_0) void proxy_abi_version_0_1_0(void) {}

PWVM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

static char *g_config; /* plugin configuration text */

PWVM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t vm_config_size) {
  pw_logf(PW_INFO, LOGP "vm_start root=%u size=%u", (unsigned)root_id, (unsigned)vm_config_size);
  return 1;
}

PWVM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
  const char *data = NULL;
  size_t size = 0;
  uint32_t st = proxy_get_configuration(&data, &size);
  free(g_config);
  g_config = pw_printable(data ? data : "", (st == PW_OK && data) ? size : 0, 256);
  free((void *)data);
  pw_logf(PW_INFO, LOGP "configured root=%u size=%u status=%u config=%s", (unsigned)root_id, (unsigned)config_size,
          (unsigned)st, g_config);
  return 1;
}

PWVM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
  pw_logf(PW_DEBUG, LOGP "context_create %u parent=%u", (unsigned)context_id, (unsigned)parent_id);
}

/* 0.1.0: two arguments (no end_of_stream) */
PWVM_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers) {
  pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-abi", "0.1.0");
  if (g_config && *g_config) pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-config", g_config);
  pw_logf(PW_INFO, LOGP "request headers context=%u n=%u", (unsigned)context_id, (unsigned)num_headers);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t context_id, uint32_t body_size,
                                                                  uint32_t end_of_stream) {
  pw_logf(PW_INFO, LOGP "request body context=%u size=%u eos=%u", (unsigned)context_id, (unsigned)body_size,
          (unsigned)end_of_stream);
  return PW_CONTINUE;
}

/* 0.1.0: two arguments (no end_of_stream) */
PWVM_EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers) {
  pw_add_header(PW_MAP_RESPONSE_HEADERS, "x-pwvm-abi-response", "0.1.0");
  pw_logf(PW_INFO, LOGP "response headers context=%u n=%u", (unsigned)context_id, (unsigned)num_headers);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) { return 1; }

PWVM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
  pw_logf(PW_INFO, LOGP "on_log context=%u", (unsigned)context_id);
}

PWVM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) { (void)context_id; }
