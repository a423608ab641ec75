/*
 * c_abi010 - proxywasm-vm test plugin (C, Proxy-Wasm ABI 0.1.0).
 *
 * Uses the 0.1.0 callback signatures: proxy_on_request_headers and
 * proxy_on_response_headers take (context_id, num_headers) only, and the
 * configuration is read with the 0.1.0 host call proxy_get_configuration.
 * With request header x-pwvm-legacy, it also probes what differs for 0.1.0-era
 * modules: reading a header value that is not there, and env.pthread_equal.
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

/* Reads header `name` of `map` and adds request headers <prefix>-status, -size, -ptr and (when
 * OK and not empty) -value. The out-words start as a sentinel, so "untouched" shows a host that
 * did not write them; "null" a null pointer written. */
#define UNTOUCHED 0xDEADu
static uint32_t legacy_read(uint32_t map, const char *name, const char *prefix) {
  const char *data = (const char *)(uintptr_t)UNTOUCHED;
  size_t size = UNTOUCHED;
  uint32_t st = proxy_get_header_map_value(map, name, strlen(name), &data, &size);
  int wrote_ptr = data != (const char *)(uintptr_t)UNTOUCHED;
  char key[64], val[32];
  snprintf(key, sizeof key, "%s-status", prefix);
  snprintf(val, sizeof val, "%u", (unsigned)st);
  pw_add_header(PW_MAP_REQUEST_HEADERS, key, val);
  snprintf(key, sizeof key, "%s-size", prefix);
  if (size == UNTOUCHED) snprintf(val, sizeof val, "untouched");
  else snprintf(val, sizeof val, "%u", (unsigned)size);
  pw_add_header(PW_MAP_REQUEST_HEADERS, key, val);
  snprintf(key, sizeof key, "%s-ptr", prefix);
  pw_add_header(PW_MAP_REQUEST_HEADERS, key, !wrote_ptr ? "untouched" : data ? "set" : "null");
  if (st == PW_OK && wrote_ptr && data && size != UNTOUCHED && size > 0) {
    char *v = pw_printable(data, size, 256);
    snprintf(key, sizeof key, "%s-value", prefix);
    pw_add_header(PW_MAP_REQUEST_HEADERS, key, v ? v : "");
    free(v);
    free((void *)data);
  }
  return st;
}

/* x-pwvm-legacy: <name> -> read <name> from the request headers (x-pwvm-legacy-*) and from the
 * request trailers, which do not exist while request headers are processed
 * (x-pwvm-legacy-trailer-*); x-pwvm-pthread-equal: <eq(id, id)>,<eq(id, id + 1)>. */
static void legacy_probe(uint32_t context_id) {
  char *name = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-legacy", NULL);
  if (name && *name) {
    uint32_t st = legacy_read(PW_MAP_REQUEST_HEADERS, name, "x-pwvm-legacy");
    uint32_t tst = legacy_read(PW_MAP_REQUEST_TRAILERS, name, "x-pwvm-legacy-trailer");
    char val[32];
    snprintf(val, sizeof val, "%u,%u", (unsigned)pwvm_env_pthread_equal(context_id, context_id),
             (unsigned)pwvm_env_pthread_equal(context_id, context_id + 1));
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-pthread-equal", val);
    pw_logf(PW_INFO, LOGP "legacy probe %s status=%u trailer_status=%u pthread_equal=%s", name, (unsigned)st,
            (unsigned)tst, val);
  }
  free(name);
}

/* 0.1.0: two arguments (no end_of_stream) */
PWVM_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers) {
  legacy_probe(context_id);
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
