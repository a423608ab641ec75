/*
 * c_bad_guest - proxywasm-vm test plugin (C, Proxy-Wasm ABI 0.2.1) for host
 * robustness tests. It deliberately misuses host functions (out-of-range
 * pointers and sizes, malformed header maps, unknown map/buffer/stream
 * types, unknown ids, a failing allocator) and records the status codes the
 * host returns; and it can trap, loop forever, overflow the stack, grow
 * memory without bound or call proc_exit, in any callback.
 * Contract: tests/plugins/README.md.
 */
#include "pwvm_util.h"

#define LOGP "c_bad_guest: "

__attribute__((import_module("wasi_snapshot_preview1"), import_name("proc_exit"))) _Noreturn void
pw_wasi_proc_exit(uint32_t code);

PWVM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* ---------- allocator that can be told to misbehave ---------- */

enum { ALLOC_OK = 0, ALLOC_NULL = 1, ALLOC_OOB = 2 };
static int g_alloc_mode = ALLOC_OK;

PWVM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
  if (g_alloc_mode == ALLOC_NULL) return NULL;
  if (g_alloc_mode == ALLOC_OOB) return (void *)(uintptr_t)0xFFFFFF00u;
  return malloc(size);
}

/* ---------- configuration ---------- */

static pw_config g_config;

static const char *cfg(const char *key, const char *dflt) { return pw_config_get(&g_config, key, dflt); }

/* ---------- fatal behaviours ---------- */

static volatile uint32_t g_sink;

#pragma clang diagnostic ignored "-Winfinite-recursion"
__attribute__((noinline)) static uint32_t recurse(uint32_t n) {
  volatile char pad[256];
  pad[n & 255] = (char)n;
  g_sink += pad[(n * 7) & 255];
  return recurse(n + 1) + pad[0];
}

static void do_fatal(const char *mode, const char *where) {
  pw_logf(PW_WARN, LOGP "fatal mode=%s in %s", mode, where);
  if (!strcmp(mode, "loop")) {
    for (;;) g_sink++;
  } else if (!strcmp(mode, "stack")) {
    g_sink = recurse(0);
  } else if (!strcmp(mode, "grow")) {
    uint32_t pages = 0;
    while (__builtin_wasm_memory_grow(0, 16) != (size_t)-1) pages += 16;
    pw_logf(PW_WARN, LOGP "memory.grow failed after %u pages (memory now %u pages)", (unsigned)pages,
            (unsigned)__builtin_wasm_memory_size(0));
    return;
  } else if (!strcmp(mode, "proc_exit")) {
    pw_wasi_proc_exit(3);
  }
  __builtin_trap();
}

/* Runs the configured fatal behaviour when fail_in=<where>. */
static void maybe_fail(const char *where) {
  const char *in = cfg("fail_in", "");
  if (!strcmp(in, where)) do_fatal(cfg("fail_mode", "trap"), where);
}

/* ---------- result recording ---------- */

static char g_results[1024];
static size_t g_results_len;

static void rec(const char *name, uint32_t status) {
  int n = snprintf(g_results + g_results_len, sizeof(g_results) - g_results_len, "%s%s=%u", g_results_len ? "," : "",
                   name, (unsigned)status);
  if (n > 0 && g_results_len + (size_t)n < sizeof(g_results)) g_results_len += (size_t)n;
}

#define OOB_PTR ((const char *)(uintptr_t)0xFFFFFF00u)
#define OOB_RET_PTR ((const char **)(uintptr_t)0xFFFFFFF0u)
#define OOB_RET_SIZE ((size_t *)(uintptr_t)0xFFFFFFF4u)
#define LAST_WORD_PTR ((uint32_t *)(uintptr_t)0xFFFFFFFCu)

static size_t mem_end(void) { return __builtin_wasm_memory_size(0) * 65536u; }

static char g_scratch[64] = "scratch";

static void case_oob_ptr(void) {
  const char *d = NULL;
  size_t sz = 0;
  rec("log", proxy_log(PW_INFO, OOB_PTR, 16));
  rec("add_key", proxy_add_header_map_value(PW_MAP_REQUEST_HEADERS, OOB_PTR, 8, "v", 1));
  rec("add_value", proxy_add_header_map_value(PW_MAP_REQUEST_HEADERS, PW_LIT("x-pwvm-k"), OOB_PTR, 8));
  rec("get_pairs_ret", proxy_get_header_map_pairs(PW_MAP_REQUEST_HEADERS, OOB_RET_PTR, OOB_RET_SIZE));
  rec("get_value_ret", proxy_get_header_map_value(PW_MAP_REQUEST_HEADERS, PW_LIT(":path"),
                                                  (const char **)LAST_WORD_PTR, &sz));
  rec("get_property_ret", proxy_get_property(PW_LIT("plugin_root_id"), &d, OOB_RET_SIZE));
  free((void *)d);
  rec("set_shared_value", proxy_set_shared_data(PW_LIT("pwvm.bad"), OOB_PTR, 4, 0));
  rec("get_log_level_ret", proxy_get_log_level(LAST_WORD_PTR));
  rec("metric_ret", proxy_define_metric(PW_METRIC_COUNTER, PW_LIT("pwvm_bad"), LAST_WORD_PTR));
}

static void case_oob_size(void) {
  rec("log", proxy_log(PW_INFO, g_scratch, 0xFFFFFFFFu));
  rec("log_edge", proxy_log(PW_INFO, (const char *)(mem_end() - 4), 8));
  rec("add_value", proxy_add_header_map_value(PW_MAP_REQUEST_HEADERS, PW_LIT("x-pwvm-k"), g_scratch, 0x7FFFFFFFu));
  rec("set_pairs", proxy_set_header_map_pairs(PW_MAP_REQUEST_HEADERS, g_scratch, 0xFFFFFFF0u));
  const char *d = NULL;
  size_t sz = 0;
  rec("get_buffer_start", proxy_get_buffer_bytes(PW_BUF_HTTP_REQUEST_BODY, 0xFFFFFFFFu, 0xFFFFFFFFu, &d, &sz));
  free((void *)d);
  rec("send_body", proxy_set_buffer_bytes(PW_BUF_HTTP_REQUEST_BODY, 0, 0, g_scratch, 0xFFFFFFFFu));
}

static void put32(char *p, uint32_t v) { pw_wr32(p, v); }

static void case_bad_pairs(void) {
  char b[32];
  memset(b, 0, sizeof(b));
  /* count far larger than the buffer */
  put32(b, 0x10000000u);
  rec("count_huge", proxy_set_header_map_pairs(PW_MAP_REQUEST_HEADERS, b, 12));
  /* one pair whose key length runs past the buffer */
  put32(b, 1);
  put32(b + 4, 0xFFFFFFF0u);
  put32(b + 8, 1);
  rec("len_huge", proxy_set_header_map_pairs(PW_MAP_REQUEST_HEADERS, b, 16));
  /* two pairs announced, data for one */
  put32(b, 2);
  put32(b + 4, 1);
  put32(b + 8, 1);
  put32(b + 12, 1);
  put32(b + 16, 1);
  memcpy(b + 20, "a\0b\0", 4);
  rec("truncated", proxy_set_header_map_pairs(PW_MAP_REQUEST_HEADERS, b, 24));
  /* one pair, no NUL separators (2 bytes short) */
  put32(b, 1);
  put32(b + 4, 3);
  put32(b + 8, 3);
  memcpy(b + 12, "abcdef", 6);
  rec("no_nul", proxy_set_header_map_pairs(PW_MAP_REQUEST_HEADERS, b, 18));
  /* a 3-byte map */
  rec("size3", proxy_set_header_map_pairs(PW_MAP_REQUEST_HEADERS, b, 3));
  /* malformed headers for an HTTP call */
  uint32_t token = 0;
  put32(b, 0x10000000u);
  rec("http_call_headers", proxy_http_call(PW_LIT("pwvm_upstream"), b, 12, NULL, 0, NULL, 0, 1000, &token));
}

static void case_bad_type(void) {
  const char *d = NULL;
  size_t sz = 0;
  uint32_t flags = 0, id = 0;
  rec("get_pairs", proxy_get_header_map_pairs(99, &d, &sz));
  free((void *)d);
  d = NULL;
  rec("get_value", proxy_get_header_map_value(99, PW_LIT("a"), &d, &sz));
  free((void *)d);
  d = NULL;
  rec("add_value", proxy_add_header_map_value(99, PW_LIT("a"), PW_LIT("b")));
  rec("map_size", proxy_get_header_map_size(99, &sz));
  rec("get_buffer", proxy_get_buffer_bytes(99, 0, 16, &d, &sz));
  free((void *)d);
  d = NULL;
  rec("buffer_status", proxy_get_buffer_status(99, &sz, &flags));
  rec("set_buffer", proxy_set_buffer_bytes(99, 0, 0, PW_LIT("x")));
  rec("continue_stream", proxy_continue_stream(99));
  rec("close_stream", proxy_close_stream(99));
  rec("define_metric", proxy_define_metric(99, PW_LIT("pwvm_bad_type"), &id));
  rec("log_level", proxy_log(99, PW_LIT("c_bad_guest: log with level 99")));
}

static void case_bad_ids(void) {
  const char *d = NULL;
  size_t sz = 0;
  uint64_t v = 0;
  rec("effective_context", proxy_set_effective_context(999999));
  rec("get_metric", proxy_get_metric(999999, &v));
  rec("increment_metric", proxy_increment_metric(999999, 1));
  rec("record_metric", proxy_record_metric(999999, 1));
  rec("dequeue", proxy_dequeue_shared_queue(999999, &d, &sz));
  free((void *)d);
  rec("enqueue", proxy_enqueue_shared_queue(999999, PW_LIT("x")));
  rec("grpc_send", proxy_grpc_send(999999, PW_LIT("x"), 0));
  rec("grpc_cancel", proxy_grpc_cancel(999999));
  rec("grpc_close", proxy_grpc_close(999999));
  rec("continue_unpaused", proxy_continue_stream(PW_STREAM_REQUEST));
  rec("done_not_pending", proxy_done());
}

static void case_alloc(int mode) {
  const char *d = NULL;
  size_t sz = 0;
  g_alloc_mode = mode;
  rec("get_pairs", proxy_get_header_map_pairs(PW_MAP_REQUEST_HEADERS, &d, &sz));
  d = NULL;
  rec("get_property", proxy_get_property(PW_LIT("plugin_root_id"), &d, &sz));
  g_alloc_mode = ALLOC_OK;
}

static uint32_t case_double_local(void) {
  rec("first", proxy_send_local_response(418, PW_LIT("pwvm_first"), PW_LIT("first"), NULL, 0, PW_GRPC_STATUS_NONE));
  rec("second",
      proxy_send_local_response(419, PW_LIT("pwvm_second"), PW_LIT("second"), NULL, 0, PW_GRPC_STATUS_NONE));
  return PW_PAUSE;
}

static void case_huge_log(void) {
  size_t n = 1u << 20;
  char *m = (char *)malloc(n);
  if (!m) {
    rec("malloc", 1);
    return;
  }
  memset(m, 'x', n);
  memcpy(m, "c_bad_guest: huge ", 18);
  rec("log_1mib", proxy_log(PW_DEBUG, m, n));
  free(m);
}

/* ---------- callbacks ---------- */

PWVM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t size) {
  (void)root_id;
  (void)size;
  return 1;
}

PWVM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
  size_t len = 0;
  uint32_t st = 0;
  char *text = config_size ? pw_get_buffer(PW_BUF_PLUGIN_CONFIGURATION, config_size, &len, &st) : NULL;
  pw_config_parse(&g_config, text ? text : "", len);
  free(text);
  pw_logf(PW_INFO, LOGP "configured root=%u keys=%d", (unsigned)root_id, g_config.n);
  uint32_t tick = pw_atou(cfg("tick_ms", "0"), 0);
  if (tick) proxy_set_tick_period_milliseconds(tick);
  maybe_fail("configure");
  return 1;
}

PWVM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
  (void)context_id;
  if (parent_id != 0) maybe_fail("context_create");
}

PWVM_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_id) {
  (void)root_id;
  maybe_fail("tick");
}

PWVM_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers,
                                                                        uint32_t end_of_stream) {
  (void)num_headers;
  (void)end_of_stream;
  maybe_fail("request_headers");
  char *which = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-bad", NULL);
  const char *c = which ? which : cfg("bad", "");
  g_results_len = 0;
  g_results[0] = 0;
  uint32_t action = PW_CONTINUE;
  int known = 1;
  if (!strcmp(c, "oob_ptr"))
    case_oob_ptr();
  else if (!strcmp(c, "oob_size"))
    case_oob_size();
  else if (!strcmp(c, "bad_pairs"))
    case_bad_pairs();
  else if (!strcmp(c, "bad_type"))
    case_bad_type();
  else if (!strcmp(c, "bad_ids"))
    case_bad_ids();
  else if (!strcmp(c, "alloc_null"))
    case_alloc(ALLOC_NULL);
  else if (!strcmp(c, "alloc_oob"))
    case_alloc(ALLOC_OOB);
  else if (!strcmp(c, "double_local"))
    action = case_double_local();
  else if (!strcmp(c, "huge_log"))
    case_huge_log();
  else if (!strcmp(c, "trap") || !strcmp(c, "loop") || !strcmp(c, "stack") || !strcmp(c, "grow") ||
           !strcmp(c, "proc_exit"))
    do_fatal(c, "request_headers");
  else
    known = 0;
  if (known && g_results_len) {
    pw_logf(PW_WARN, LOGP "%s context=%u %s", c, (unsigned)context_id, g_results);
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-bad-results", g_results);
  } else if (known) {
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-bad-results", "");
  }
  free(which);
  return action;
}

PWVM_EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t context_id, uint32_t size, uint32_t eos) {
  (void)context_id;
  (void)size;
  (void)eos;
  maybe_fail("request_body");
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers,
                                                                          uint32_t end_of_stream) {
  (void)context_id;
  (void)num_headers;
  (void)end_of_stream;
  maybe_fail("response_headers");
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
  (void)context_id;
  maybe_fail("done");
  return 1;
}

PWVM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
  (void)context_id;
  maybe_fail("log");
}

PWVM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {
  (void)context_id;
  maybe_fail("delete");
}
