/*
 * c_shared - proxywasm-vm test plugin for shared data and shared queues across processes
 * (C, Proxy-Wasm ABI 0.2.1). Contract: tests/plugins/README.md.
 *
 * Plugin configuration ("key=value" lines):
 *   counter=<key>        shared-data key of the counter (default "pwvm.counter")
 *   max_tries=<n>        compare-and-swap attempts per increment (default 1000)
 *   queue=<name>         the queue to use (default "pwvm.jobs")
 *   queue_vm_id=<vm_id>  whose queue to resolve for enqueue/dequeue (default: this VM's)
 *   consume=1            register the queue at configure and drain it on every proxy_on_queue_ready
 *
 * On request headers, `x-pwvm-op` picks one operation; its results are added to the request
 * headers and, on response headers, to the response headers:
 *   incr     get the counter, add 1, set it with the CAS just read; on CAS_MISMATCH read and
 *            try again (up to max_tries). x-pwvm-status: the last set's (or a failed get's)
 *            status; x-pwvm-counter: the value stored (on OK); x-pwvm-tries: attempts made.
 *            A missing counter reads as 0 and is set with CAS 0 ("no check"): the ABI has no
 *            create-if-absent, so concurrent first increments may both store 1 (seed the key)
 *   get      x-pwvm-status, x-pwvm-counter (the value), x-pwvm-cas
 *   enqueue  resolve the queue and enqueue `x-pwvm-item`: x-pwvm-status (resolve's if it failed)
 *   dequeue  resolve the queue and dequeue one item: x-pwvm-status, x-pwvm-item-out
 * Root context, with consume=1: logs "registered queue <name> token=<t> status=<s>" at
 * configure; each proxy_on_queue_ready dequeues until the queue is empty, logging
 * "consumed <item>" for each item and then "drained status=<s>" (7 EMPTY when drained).
 */
#include "pwvm_util.h"

#define LOGP "c_shared: "

static pw_config g_config;
static uint32_t g_queue_token;

static const char *conf(const char *key, const char *dflt) { return pw_config_get(&g_config, key, dflt); }

/* Results of one stream's operation, kept for its response headers (a small table by context id). */
#define SLOTS 64
typedef struct {
  uint32_t ctx;
  char status[16];
  char counter[24];
  char tries[16];
  char cas[16];
  char item[96];
} result;
static result g_results[SLOTS];

static result *slot(uint32_t ctx) { return &g_results[ctx % SLOTS]; }

PWVM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PWVM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

PWVM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t vm_config_size) { return 1; }

PWVM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {}

PWVM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
  size_t len = 0;
  uint32_t st = PW_OK;
  char *text = config_size ? pw_get_buffer(PW_BUF_PLUGIN_CONFIGURATION, config_size, &len, &st) : NULL;
  pw_config_parse(&g_config, text ? text : "", len);
  free(text);
  if (strcmp(conf("consume", "0"), "1") == 0) {
    const char *q = conf("queue", "pwvm.jobs");
    uint32_t s = proxy_register_shared_queue(q, strlen(q), &g_queue_token);
    pw_logf(PW_INFO, LOGP "registered queue %s token=%u status=%u", q, (unsigned)g_queue_token, (unsigned)s);
  }
  return 1;
}

PWVM_EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root_id, uint32_t token) {
  uint32_t s;
  for (;;) {
    const char *data = NULL;
    size_t size = 0;
    s = proxy_dequeue_shared_queue(token, &data, &size);
    if (s != PW_OK) break;
    char *item = pw_printable(data ? data : "", data ? size : 0, 256);
    free((void *)data);
    pw_logf(PW_INFO, LOGP "consumed %s", item ? item : "");
    free(item);
  }
  pw_logf(PW_INFO, LOGP "drained status=%u", (unsigned)s);
}

/* Reads the counter: status; value and cas when OK (a missing key reads as 0 with cas 0). */
static uint32_t read_counter(const char *key, uint32_t *value, uint32_t *cas) {
  const char *data = NULL;
  size_t size = 0;
  *value = 0;
  *cas = 0;
  uint32_t s = proxy_get_shared_data(key, strlen(key), &data, &size, cas);
  if (s == PW_OK) {
    char *v = pw_strndup(data ? data : "", data ? size : 0);
    *value = pw_atou(v, 0);
    free(v);
  }
  free((void *)data);
  return s;
}

static void op_incr(result *r) {
  const char *key = conf("counter", "pwvm.counter");
  uint32_t max_tries = pw_atou(conf("max_tries", "1000"), 1000);
  uint32_t tries = 0, s = PW_OK, value = 0, cas = 0;
  while (tries < max_tries) {
    tries++;
    s = read_counter(key, &value, &cas);
    if (s != PW_OK && s != PW_NOT_FOUND) break; /* the store failed: give up, say why */
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%u", (unsigned)(value + 1));
    s = proxy_set_shared_data(key, strlen(key), buf, (size_t)n, cas);
    if (s == PW_OK) {
      snprintf(r->counter, sizeof(r->counter), "%u", (unsigned)(value + 1));
      break;
    }
    if (s != PW_CAS_MISMATCH) break;
  }
  snprintf(r->status, sizeof(r->status), "%u", (unsigned)s);
  snprintf(r->tries, sizeof(r->tries), "%u", (unsigned)tries);
}

static void op_get(result *r) {
  uint32_t value = 0, cas = 0;
  uint32_t s = read_counter(conf("counter", "pwvm.counter"), &value, &cas);
  snprintf(r->status, sizeof(r->status), "%u", (unsigned)s);
  if (s == PW_OK) {
    snprintf(r->counter, sizeof(r->counter), "%u", (unsigned)value);
    snprintf(r->cas, sizeof(r->cas), "%u", (unsigned)cas);
  }
}

static uint32_t resolve(uint32_t *token) {
  const char *vm = conf("queue_vm_id", "");
  const char *q = conf("queue", "pwvm.jobs");
  return proxy_resolve_shared_queue(vm, strlen(vm), q, strlen(q), token);
}

static void op_enqueue(result *r) {
  uint32_t token = 0, s = resolve(&token);
  if (s == PW_OK) {
    uint32_t hs = 0;
    char *item = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-item", &hs);
    s = proxy_enqueue_shared_queue(token, item ? item : "", item ? strlen(item) : 0);
    free(item);
  }
  snprintf(r->status, sizeof(r->status), "%u", (unsigned)s);
}

static void op_dequeue(result *r) {
  uint32_t token = 0, s = resolve(&token);
  if (s == PW_OK) {
    const char *data = NULL;
    size_t size = 0;
    s = proxy_dequeue_shared_queue(token, &data, &size);
    if (s == PW_OK) {
      char *item = pw_printable(data ? data : "", data ? size : 0, sizeof(r->item) - 1);
      snprintf(r->item, sizeof(r->item), "%s", item ? item : "");
      free(item);
    }
    free((void *)data);
  }
  snprintf(r->status, sizeof(r->status), "%u", (unsigned)s);
}

static void add_results(uint32_t map, const result *r) {
  if (r->status[0]) pw_add_header(map, "x-pwvm-status", r->status);
  if (r->counter[0]) pw_add_header(map, "x-pwvm-counter", r->counter);
  if (r->tries[0]) pw_add_header(map, "x-pwvm-tries", r->tries);
  if (r->cas[0]) pw_add_header(map, "x-pwvm-cas", r->cas);
  if (r->item[0]) pw_add_header(map, "x-pwvm-item-out", r->item);
}

PWVM_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers,
                                                                        uint32_t end_of_stream) {
  result *r = slot(context_id);
  memset(r, 0, sizeof(*r));
  r->ctx = context_id;
  uint32_t hs = 0;
  char *op = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-op", &hs);
  if (op) {
    if (!strcmp(op, "incr")) op_incr(r);
    else if (!strcmp(op, "get")) op_get(r);
    else if (!strcmp(op, "enqueue")) op_enqueue(r);
    else if (!strcmp(op, "dequeue")) op_dequeue(r);
    else snprintf(r->status, sizeof(r->status), "unknown");
    free(op);
  }
  add_results(PW_MAP_REQUEST_HEADERS, r);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers,
                                                                          uint32_t end_of_stream) {
  result *r = slot(context_id);
  if (r->ctx == context_id) add_results(PW_MAP_RESPONSE_HEADERS, r);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) { return 1; }

PWVM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {}

PWVM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {
  result *r = slot(context_id);
  if (r->ctx == context_id) r->ctx = 0;
}
