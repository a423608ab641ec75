/*
 * c_http_all - proxywasm-vm test plugin (C, Proxy-Wasm ABI 0.2.1).
 *
 * An HTTP filter that exercises every family of host functions. Each family
 * is selected per request by the request header "x-pwvm-test: <name>" or,
 * when that header is absent, by the configuration key "test=<name>".
 * Root-level features (timer, queue, deferred done, metrics) are driven by
 * the plugin configuration. The exact contract is in tests/plugins/README.md.
 */
#include "pwvm_util.h"

#define LOGP "c_http_all: "

/* ------------------------------------------------------------------ */
/* ABI marker, allocator                                               */
/* ------------------------------------------------------------------ */

PWVM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PWVM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

typedef struct root_ctx {
  uint32_t id;
  pw_config config;
  uint32_t queue_token;
  int queue_registered;
  uint32_t queue_items;
  uint32_t ticks;
  uint32_t tick_max;
  int done_pending;
  int metrics_defined;
  uint32_t metric_ids[3];
  uint32_t metric_define_status[3];
  struct root_ctx *next;
} root_ctx;

typedef struct hdr {
  char *name;
  char *value;
  struct hdr *next;
} hdr;

typedef struct stream_ctx {
  uint32_t id;
  uint32_t root_id;
  char test[32];
  char req_body_mode[16];
  char resp_body_mode[16];
  int body_request;
  int body_response;
  int req_body_chunks;
  int resp_body_chunks;
  hdr *resp_headers; /* added in proxy_on_response_headers */
  hdr *resp_tail;
  struct stream_ctx *next;
} stream_ctx;

enum { CALL_CALLOUT = 1, CALL_TICK = 2, CALL_GRPC = 3 };

typedef struct pending {
  uint32_t token;
  uint32_t kind;
  uint32_t stream_id;
  uint32_t grpc_initial;
  uint32_t grpc_trailing;
  uint32_t grpc_messages;
  char *grpc_last;
  char *grpc_send_status;
  struct pending *next;
} pending;

static root_ctx *g_roots;
static stream_ctx *g_streams;
static pending *g_pending;

static root_ctx *find_root(uint32_t id) {
  for (root_ctx *r = g_roots; r; r = r->next)
    if (r->id == id) return r;
  return NULL;
}

static stream_ctx *find_stream(uint32_t id) {
  for (stream_ctx *s = g_streams; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

static pending *find_pending(uint32_t token) {
  for (pending *p = g_pending; p; p = p->next)
    if (p->token == token) return p;
  return NULL;
}

static pending *add_pending(uint32_t token, uint32_t kind, uint32_t stream_id) {
  pending *p = (pending *)calloc(1, sizeof(pending));
  p->token = token;
  p->kind = kind;
  p->stream_id = stream_id;
  p->next = g_pending;
  g_pending = p;
  return p;
}

static void drop_pending(pending *p) {
  for (pending **pp = &g_pending; *pp; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      free(p->grpc_last);
      free(p->grpc_send_status);
      free(p);
      return;
    }
  }
}

static const char *cfg(const root_ctx *r, const char *key, const char *dflt) {
  return r ? pw_config_get(&r->config, key, dflt) : dflt;
}

static root_ctx *root_of(const stream_ctx *s) { return s ? find_root(s->root_id) : NULL; }

/* Queue a response header (name, value are copied) to add in proxy_on_response_headers. */
static void resp_header(stream_ctx *s, const char *name, const char *value) {
  hdr *h = (hdr *)calloc(1, sizeof(hdr));
  h->name = pw_strndup(name, strlen(name));
  h->value = pw_strndup(value, strlen(value));
  if (s->resp_tail)
    s->resp_tail->next = h;
  else
    s->resp_headers = h;
  s->resp_tail = h;
}

static void resp_header_u(stream_ctx *s, const char *name, uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%u", (unsigned)v);
  resp_header(s, name, buf);
}

static void req_header_u(const char *name, uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%u", (unsigned)v);
  pw_add_header(PW_MAP_REQUEST_HEADERS, name, buf);
}

/* Request header value or config value or default; result must be freed. */
static char *hdr_or(uint32_t map, const char *name, const char *fallback) {
  char *v = pw_get_header(map, name, NULL);
  if (v) return v;
  return pw_strndup(fallback, strlen(fallback));
}

/* ------------------------------------------------------------------ */
/* Root context: lifecycle, configuration                              */
/* ------------------------------------------------------------------ */

PWVM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
  if (parent_id == 0) {
    if (find_root(context_id)) return;
    root_ctx *r = (root_ctx *)calloc(1, sizeof(root_ctx));
    r->id = context_id;
    r->next = g_roots;
    g_roots = r;
    return;
  }
  stream_ctx *s = (stream_ctx *)calloc(1, sizeof(stream_ctx));
  s->id = context_id;
  s->root_id = parent_id;
  s->next = g_streams;
  g_streams = s;
}

PWVM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t vm_config_size) {
  size_t len = 0;
  uint32_t st = 0;
  char *text = vm_config_size ? pw_get_buffer(PW_BUF_VM_CONFIGURATION, vm_config_size, &len, &st) : NULL;
  pw_logf(PW_INFO, LOGP "vm_start root=%u vm_config=%s", (unsigned)root_id, text ? text : "");
  uint32_t ok = !(text && strcmp(text, "fail") == 0);
  free(text);
  return ok;
}

PWVM_EXPORT(proxy_validate_configuration) uint32_t proxy_validate_configuration(uint32_t root_id, uint32_t size) {
  (void)root_id;
  (void)size;
  return 1;
}

static void define_metrics(root_ctx *r) {
  if (r->metrics_defined) return;
  static const char *names[3] = {"pwvm_requests", "pwvm_gauge", "pwvm_histogram"};
  static const uint32_t types[3] = {PW_METRIC_COUNTER, PW_METRIC_GAUGE, PW_METRIC_HISTOGRAM};
  for (int i = 0; i < 3; i++)
    r->metric_define_status[i] = proxy_define_metric(types[i], names[i], strlen(names[i]), &r->metric_ids[i]);
  r->metrics_defined = 1;
  pw_logf(PW_INFO, LOGP "metrics defined ids=%u,%u,%u status=%u,%u,%u", (unsigned)r->metric_ids[0],
          (unsigned)r->metric_ids[1], (unsigned)r->metric_ids[2], (unsigned)r->metric_define_status[0],
          (unsigned)r->metric_define_status[1], (unsigned)r->metric_define_status[2]);
}

PWVM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
  root_ctx *r = find_root(root_id);
  if (!r) {
    proxy_on_context_create(root_id, 0);
    r = find_root(root_id);
  }
  size_t len = 0;
  uint32_t st = PW_OK;
  char *text = config_size ? pw_get_buffer(PW_BUF_PLUGIN_CONFIGURATION, config_size, &len, &st) : NULL;
  pw_config_parse(&r->config, text ? text : "", len);
  free(text);
  pw_logf(PW_INFO, LOGP "configured root=%u keys=%d", (unsigned)root_id, r->config.n);

  if (strcmp(cfg(r, "fail_configure", "0"), "1") == 0) {
    pw_logf(PW_ERROR, LOGP "configuration rejected (fail_configure=1)");
    return 0;
  }

  uint32_t tick_ms = pw_atou(cfg(r, "tick_ms", "0"), 0);
  r->tick_max = pw_atou(cfg(r, "tick_max", "0"), 0);
  if (tick_ms) {
    uint32_t s = proxy_set_tick_period_milliseconds(tick_ms);
    pw_logf(PW_INFO, LOGP "tick period %u ms status=%u", (unsigned)tick_ms, (unsigned)s);
  }

  const char *queue = cfg(r, "queue", NULL);
  if (queue) {
    uint32_t s = proxy_register_shared_queue(queue, strlen(queue), &r->queue_token);
    r->queue_registered = (s == PW_OK);
    pw_logf(PW_INFO, LOGP "registered queue %s token=%u status=%u", queue, (unsigned)r->queue_token, (unsigned)s);
  }

  if (strcmp(cfg(r, "metrics", "0"), "1") == 0) define_metrics(r);
  return 1;
}

static void set_shared_u(const char *key, uint32_t v) {
  char buf[16];
  int n = snprintf(buf, sizeof(buf), "%u", (unsigned)v);
  proxy_set_shared_data(key, strlen(key), buf, (size_t)n, 0);
}

PWVM_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_id) {
  root_ctx *r = find_root(root_id);
  if (!r) return;
  if (r->done_pending) {
    r->done_pending = 0;
    proxy_set_tick_period_milliseconds(0);
    uint32_t s = proxy_done();
    pw_logf(PW_INFO, LOGP "proxy_done status=%u", (unsigned)s);
    return;
  }
  r->ticks++;
  set_shared_u("pwvm.ticks", r->ticks);
  pw_logf(PW_INFO, LOGP "tick %u", (unsigned)r->ticks);

  const char *up = cfg(r, "tick_callout_upstream", NULL);
  if (up) {
    pw_pair h[3] = {{PW_LIT(":method"), PW_LIT("GET")}, {PW_LIT(":path"), PW_LIT("/tick")},
                    {PW_LIT(":authority"), PW_LIT("pwvm.tick")}};
    size_t hs = 0;
    char *hb = pw_serialize_pairs(h, 3, &hs);
    uint32_t token = 0;
    uint32_t s = proxy_http_call(up, strlen(up), hb, hs, NULL, 0, NULL, 0, 5000, &token);
    free(hb);
    pw_logf(PW_INFO, LOGP "tick callout dispatch status=%u token=%u", (unsigned)s, (unsigned)token);
    if (s == PW_OK) add_pending(token, CALL_TICK, 0);
  }
  if (r->tick_max && r->ticks >= r->tick_max) {
    proxy_set_tick_period_milliseconds(0);
    pw_logf(PW_INFO, LOGP "ticks stopped after %u", (unsigned)r->ticks);
  }
}

PWVM_EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root_id, uint32_t token) {
  root_ctx *r = find_root(root_id);
  uint32_t s;
  for (;;) {
    const char *data = NULL;
    size_t size = 0;
    s = proxy_dequeue_shared_queue(token, &data, &size);
    if (s != PW_OK) break;
    char *item = pw_printable(data ? data : "", data ? size : 0, 256);
    free((void *)data);
    if (r) r->queue_items++;
    pw_logf(PW_INFO, LOGP "dequeued %s", item);
    proxy_set_shared_data(PW_LIT("pwvm.queue.last"), item, strlen(item), 0);
    if (r) set_shared_u("pwvm.queue.count", r->queue_items);
    free(item);
  }
  pw_logf(PW_INFO, LOGP "queue %u drained status=%u", (unsigned)token, (unsigned)s);
}

PWVM_EXPORT(proxy_on_foreign_function) void proxy_on_foreign_function(uint32_t root_id, uint32_t function_id,
                                                                      uint32_t size) {
  size_t len = 0;
  uint32_t st = 0;
  char *args = pw_get_buffer(PW_BUF_FOREIGN_FUNCTION_ARGUMENTS, size, &len, &st);
  char *p = pw_printable(args ? args : "", len, 256);
  pw_logf(PW_INFO, LOGP "on_foreign_function root=%u id=%u args=%s status=%u", (unsigned)root_id,
          (unsigned)function_id, p, (unsigned)st);
  free(p);
  free(args);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

PWVM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
  root_ctx *r = find_root(context_id);
  if (r && strcmp(cfg(r, "deferred_done", "0"), "1") == 0) {
    r->done_pending = 1;
    proxy_set_tick_period_milliseconds(1);
    pw_logf(PW_INFO, LOGP "on_done deferred root=%u", (unsigned)context_id);
    return 0;
  }
  return 1;
}

PWVM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
  stream_ctx *s = find_stream(context_id);
  pw_logf(PW_DEBUG, LOGP "on_log context=%u test=%s", (unsigned)context_id, s ? s->test : "");
}

PWVM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {
  for (stream_ctx **pp = &g_streams; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == context_id) {
      stream_ctx *s = *pp;
      *pp = s->next;
      for (hdr *h = s->resp_headers; h;) {
        hdr *n = h->next;
        free(h->name);
        free(h->value);
        free(h);
        h = n;
      }
      free(s);
      return;
    }
  }
  for (root_ctx **pp = &g_roots; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == context_id) {
      root_ctx *r = *pp;
      *pp = r->next;
      pw_config_clear(&r->config);
      free(r);
      return;
    }
  }
}

/* ------------------------------------------------------------------ */
/* Request tests                                                       */
/* ------------------------------------------------------------------ */

#define MAX_PAIRS 256

static uint32_t test_headers(stream_ctx *s) {
  const char *data = NULL;
  size_t size = 0;
  uint32_t st = proxy_get_header_map_pairs(PW_MAP_REQUEST_HEADERS, &data, &size);
  pw_pair pairs[MAX_PAIRS];
  int n = (st == PW_OK && data) ? pw_parse_pairs(data, size, pairs, MAX_PAIRS) : 0;
  char names[1024];
  size_t off = 0;
  names[0] = 0;
  for (int i = 0; i < n; i++) {
    if (off + pairs[i].key_len + 2 >= sizeof(names)) break;
    if (i) names[off++] = ',';
    memcpy(names + off, pairs[i].key, pairs[i].key_len);
    off += pairs[i].key_len;
    names[off] = 0;
  }
  size_t pairs_bytes = data ? size : 0;
  free((void *)data);

  size_t map_size = 0;
  uint32_t size_st = proxy_get_header_map_size(PW_MAP_REQUEST_HEADERS, &map_size);

  uint32_t echo_st = 0;
  char *echo = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-echo", &echo_st);

  uint32_t add_st = pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-added", "1");
  uint32_t rep_st = proxy_replace_header_map_value(PW_MAP_REQUEST_HEADERS, PW_LIT("x-pwvm-replace"), PW_LIT("replaced"));
  uint32_t rem_st = proxy_remove_header_map_value(PW_MAP_REQUEST_HEADERS, PW_LIT("x-pwvm-remove"));

  req_header_u("x-pwvm-header-count", n < 0 ? 0xFFFFFFFFu : (uint32_t)n);
  pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-header-names", names);
  req_header_u("x-pwvm-header-pairs-bytes", (uint32_t)pairs_bytes);
  if (size_st == PW_OK)
    req_header_u("x-pwvm-header-size", (uint32_t)map_size);
  else {
    char *v = pw_fmt("!%u", (unsigned)size_st);
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-header-size", v);
    free(v);
  }
  req_header_u("x-pwvm-echo-status", echo_st);
  if (echo) pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-echoed", echo);
  free(echo);
  pw_logf(PW_INFO, LOGP "headers pairs=%d add=%u replace=%u remove=%u", n, (unsigned)add_st, (unsigned)rep_st,
          (unsigned)rem_st);
  (void)s;
  return PW_CONTINUE;
}

static uint32_t test_auth(stream_ctx *s) {
  root_ctx *r = root_of(s);
  char *auth = pw_get_header(PW_MAP_REQUEST_HEADERS, "authorization", NULL);
  if (!auth) {
    pw_pair h[1] = {{PW_LIT("www-authenticate"), PW_LIT("Bearer realm=\"pwvm\"")}};
    size_t hs = 0;
    char *hb = pw_serialize_pairs(h, 1, &hs);
    uint32_t st = proxy_send_local_response(401, PW_LIT("pwvm_unauthorized"), PW_LIT("unauthorized"), hb, hs,
                                            PW_GRPC_STATUS_NONE);
    free(hb);
    pw_logf(PW_INFO, LOGP "auth missing -> 401 status=%u", (unsigned)st);
    return PW_PAUSE;
  }
  char *want = pw_fmt("Bearer %s", cfg(r, "auth_token", "secret"));
  int ok = strcmp(auth, want) == 0;
  free(want);
  free(auth);
  if (!ok) {
    uint32_t st = proxy_send_local_response(403, PW_LIT("pwvm_forbidden"), PW_LIT("forbidden"), NULL, 0,
                                            PW_GRPC_STATUS_NONE);
    pw_logf(PW_INFO, LOGP "auth wrong token -> 403 status=%u", (unsigned)st);
    return PW_PAUSE;
  }
  pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-auth", "ok");
  pw_logf(PW_INFO, LOGP "auth ok");
  return PW_CONTINUE;
}

static void copy_mode(char *dst, const char *src) {
  size_t n = strlen(src);
  if (n > 15) n = 15;
  memcpy(dst, src, n);
  dst[n] = 0;
}

static uint32_t test_body(stream_ctx *s) {
  char *target = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-body-target", "request");
  char *mode = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-body-mode", "replace");
  s->body_request = strcmp(target, "request") == 0 || strcmp(target, "both") == 0;
  s->body_response = strcmp(target, "response") == 0 || strcmp(target, "both") == 0;
  copy_mode(s->req_body_mode, mode);
  copy_mode(s->resp_body_mode, mode);
  free(target);
  free(mode);
  return PW_CONTINUE;
}

static uint32_t body_chunk(stream_ctx *s, uint32_t buf, const char *mode, int *chunks, uint32_t body_size,
                           uint32_t eos) {
  root_ctx *r = root_of(s);
  const char *which = buf == PW_BUF_HTTP_REQUEST_BODY ? "request" : "response";
  (*chunks)++;
  pw_logf(PW_INFO, LOGP "%s body size=%u eos=%u", which, (unsigned)body_size, (unsigned)eos);
  if (strcmp(mode, "replace") == 0) {
    if (!eos) return PW_PAUSE; /* buffer until end of stream */
    size_t len = 0;
    uint32_t st = 0;
    char *body = pw_get_buffer(buf, body_size, &len, &st);
    if (!body) {
      pw_logf(PW_WARN, LOGP "%s body read status=%u", which, (unsigned)st);
      return PW_CONTINUE;
    }
    for (size_t i = 0; i < len; i++)
      if (body[i] >= 'a' && body[i] <= 'z') body[i] = (char)(body[i] - 32);
    uint32_t ws = proxy_set_buffer_bytes(buf, 0, body_size, body, len);
    pw_logf(PW_INFO, LOGP "%s body replaced bytes=%u status=%u", which, (unsigned)len, (unsigned)ws);
    free(body);
    return PW_CONTINUE;
  }
  if (strcmp(mode, "prepend") == 0) {
    if (*chunks == 1) {
      const char *pre = cfg(r, "body_prefix", "<<");
      uint32_t ws = proxy_set_buffer_bytes(buf, 0, 0, pre, strlen(pre));
      pw_logf(PW_INFO, LOGP "%s body prepend status=%u", which, (unsigned)ws);
    }
    return PW_CONTINUE;
  }
  if (strcmp(mode, "append") == 0) {
    if (eos) {
      const char *suf = cfg(r, "body_suffix", ">>");
      uint32_t ws = proxy_set_buffer_bytes(buf, body_size, 0, suf, strlen(suf));
      pw_logf(PW_INFO, LOGP "%s body append status=%u", which, (unsigned)ws);
    }
    return PW_CONTINUE;
  }
  return PW_CONTINUE;
}

static uint32_t test_callout(stream_ctx *s) {
  root_ctx *r = root_of(s);
  char *up = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-callout-upstream", cfg(r, "callout_upstream", "pwvm_upstream"));
  const char *path = cfg(r, "callout_path", "/callout");
  const char *authority = cfg(r, "callout_authority", "pwvm.test");
  char ctxid[16];
  snprintf(ctxid, sizeof(ctxid), "%u", (unsigned)s->id);
  pw_pair h[4] = {{PW_LIT(":method"), PW_LIT("POST")},
                  {PW_LIT(":path"), path, strlen(path)},
                  {PW_LIT(":authority"), authority, strlen(authority)},
                  {PW_LIT("x-pwvm-context"), ctxid, strlen(ctxid)}};
  size_t hs = 0;
  char *hb = pw_serialize_pairs(h, 4, &hs);
  uint32_t token = 0;
  uint32_t timeout = pw_atou(cfg(r, "callout_timeout_ms", "5000"), 5000);
  uint32_t st = proxy_http_call(up, strlen(up), hb, hs, PW_LIT("ping"), NULL, 0, timeout, &token);
  free(hb);
  pw_logf(PW_INFO, LOGP "callout upstream=%s status=%u token=%u", up, (unsigned)st, (unsigned)token);
  free(up);
  if (st != PW_OK) {
    req_header_u("x-pwvm-callout-dispatch", st);
    return PW_CONTINUE;
  }
  add_pending(token, CALL_CALLOUT, s->id);
  return PW_PAUSE;
}

static uint32_t test_shared(stream_ctx *s) {
  char *key = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-shared-key", "pwvm.shared.counter");
  size_t kl = strlen(key);
  const char *data = NULL;
  size_t size = 0;
  uint32_t cas0 = 0;
  uint32_t s0 = proxy_get_shared_data(key, kl, &data, &size, &cas0);
  char *v0 = (s0 == PW_OK) ? pw_strndup(data ? data : "", data ? size : 0) : pw_strndup("", 0);
  free((void *)data);
  if (s0 != PW_OK) cas0 = 0;
  uint32_t next = pw_atou(v0, 0) + 1;
  free(v0);
  char nv[16];
  int nl = snprintf(nv, sizeof(nv), "%u", (unsigned)next);
  uint32_t s1 = proxy_set_shared_data(key, kl, nv, (size_t)nl, cas0);

  data = NULL;
  size = 0;
  uint32_t cas1 = 0;
  proxy_get_shared_data(key, kl, &data, &size, &cas1);
  free((void *)data);
  uint32_t stale = cas1 + 1u;
  if (stale == 0) stale = 1;
  uint32_t s2 = proxy_set_shared_data(key, kl, PW_LIT("stale"), stale);

  data = NULL;
  size = 0;
  uint32_t cas2 = 0;
  uint32_t s3 = proxy_get_shared_data(key, kl, &data, &size, &cas2);
  char *final = (s3 == PW_OK) ? pw_printable(data ? data : "", data ? size : 0, 256) : pw_fmt("!%u", (unsigned)s3);
  free((void *)data);

  resp_header_u(s, "x-pwvm-shared-get", s0);
  resp_header(s, "x-pwvm-shared-value", nv);
  resp_header_u(s, "x-pwvm-shared-set", s1);
  resp_header_u(s, "x-pwvm-shared-cas-mismatch", s2);
  resp_header(s, "x-pwvm-shared-final", final);
  pw_logf(PW_INFO, LOGP "shared key=%s get=%u set=%u stale_set=%u final=%s", key, (unsigned)s0, (unsigned)s1,
          (unsigned)s2, final);
  free(final);
  free(key);
  return PW_CONTINUE;
}

static uint32_t test_queue(stream_ctx *s) {
  root_ctx *r = root_of(s);
  const char *name = cfg(r, "queue", "pwvm_queue");
  const char *vm_id = cfg(r, "queue_vm_id", "");
  uint32_t token = 0;
  uint32_t rs = proxy_resolve_shared_queue(vm_id, strlen(vm_id), name, strlen(name), &token);
  resp_header_u(s, "x-pwvm-queue-resolve", rs);
  if (rs == PW_OK) {
    resp_header(s, "x-pwvm-queue-token-match", (r && r->queue_registered && r->queue_token == token) ? "1" : "0");
    char *item = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-queue-item", "item");
    uint32_t es = proxy_enqueue_shared_queue(token, item, strlen(item));
    resp_header_u(s, "x-pwvm-queue-enqueue", es);
    pw_logf(PW_INFO, LOGP "enqueued %s on %s status=%u", item, name, (unsigned)es);
    free(item);
  } else {
    pw_logf(PW_INFO, LOGP "resolve queue %s status=%u", name, (unsigned)rs);
  }
  return PW_CONTINUE;
}

static uint32_t test_metrics(stream_ctx *s) {
  root_ctx *r = root_of(s);
  if (!r) return PW_CONTINUE;
  define_metrics(r);
  char *vs = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-metric-value", "42");
  uint32_t v = pw_atou(vs, 42);
  free(vs);
  uint32_t c = r->metric_ids[0], g = r->metric_ids[1], h = r->metric_ids[2];
  uint32_t s_inc = proxy_increment_metric(c, 1);
  uint32_t s_rec = proxy_record_metric(g, v);
  uint32_t s_incg = proxy_increment_metric(g, -1);
  uint32_t s_rech = proxy_record_metric(h, v);
  uint32_t s_neg = proxy_increment_metric(c, -1);
  uint64_t cv = 0, gv = 0, hv = 0;
  uint32_t s_gc = proxy_get_metric(c, &cv);
  uint32_t s_gg = proxy_get_metric(g, &gv);
  uint32_t s_gh = proxy_get_metric(h, &hv);
  char *t;
  t = s_gc == PW_OK ? pw_fmt("%llu", (unsigned long long)cv) : pw_fmt("!%u", (unsigned)s_gc);
  resp_header(s, "x-pwvm-metric-counter", t);
  free(t);
  t = s_gg == PW_OK ? pw_fmt("%llu", (unsigned long long)gv) : pw_fmt("!%u", (unsigned)s_gg);
  resp_header(s, "x-pwvm-metric-gauge", t);
  free(t);
  t = pw_fmt("%u,%u,%u", (unsigned)r->metric_define_status[0], (unsigned)r->metric_define_status[1],
             (unsigned)r->metric_define_status[2]);
  resp_header(s, "x-pwvm-metric-define", t);
  free(t);
  t = pw_fmt("%u,%u,%u,%u", (unsigned)s_inc, (unsigned)s_rec, (unsigned)s_incg, (unsigned)s_rech);
  resp_header(s, "x-pwvm-metric-ops", t);
  free(t);
  resp_header_u(s, "x-pwvm-metric-counter-negative", s_neg);
  resp_header_u(s, "x-pwvm-metric-histogram-get", s_gh);
  pw_logf(PW_INFO, LOGP "metrics counter=%llu gauge=%llu", (unsigned long long)cv, (unsigned long long)gv);
  return PW_CONTINUE;
}

/* get_property with a path whose segments are given with NUL separators (path_len bytes). */
static char *prop(const char *path, size_t path_len) {
  const char *data = NULL;
  size_t size = 0;
  uint32_t st = proxy_get_property(path, path_len, &data, &size);
  if (st != PW_OK) return pw_fmt("!%u", (unsigned)st);
  char *v = pw_printable(data ? data : "", data ? size : 0, 256);
  free((void *)data);
  return v;
}

static uint32_t test_properties(stream_ctx *s) {
  char *v;
  v = prop("request\0path", 12); /* no trailing NUL */
  resp_header(s, "x-pwvm-prop-request-path", v);
  free(v);
  v = prop("plugin_root_id", 14); /* no trailing NUL */
  resp_header(s, "x-pwvm-prop-plugin-root-id", v);
  free(v);
  v = prop("plugin_name\0", 12); /* with trailing NUL */
  resp_header(s, "x-pwvm-prop-plugin-name", v);
  free(v);
  v = prop("source\0address\0", 15); /* with trailing NUL */
  resp_header(s, "x-pwvm-prop-source-address", v);
  free(v);

  char *value = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-prop-value", "v1");
  uint32_t ss = proxy_set_property(PW_LIT("pwvm_user"), value, strlen(value));
  free(value);
  resp_header_u(s, "x-pwvm-prop-set", ss);
  v = prop(PW_LIT("pwvm_user"));
  resp_header(s, "x-pwvm-prop-user", v);
  free(v);

  char *any = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-prop-get", NULL);
  if (any) {
    size_t n = strlen(any);
    for (size_t i = 0; i < n; i++)
      if (any[i] == '.') any[i] = 0;
    v = prop(any, n);
    resp_header(s, "x-pwvm-prop-get-result", v);
    free(v);
    free(any);
  }
  pw_logf(PW_INFO, LOGP "properties done");
  return PW_CONTINUE;
}

static uint32_t test_foreign(stream_ctx *s) {
  root_ctx *r = root_of(s);
  char *name = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-foreign-name", cfg(r, "foreign_function", "pwvm_echo"));
  char *arg = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-foreign-arg", "hello");
  const char *data = NULL;
  size_t size = 0;
  uint32_t st = proxy_call_foreign_function(name, strlen(name), arg, strlen(arg), &data, &size);
  resp_header_u(s, "x-pwvm-foreign-status", st);
  if (st == PW_OK) {
    char *v = pw_printable(data ? data : "", data ? size : 0, 256);
    resp_header(s, "x-pwvm-foreign-result", v);
    free(v);
  }
  free((void *)data);
  pw_logf(PW_INFO, LOGP "foreign %s status=%u", name, (unsigned)st);
  free(name);
  free(arg);
  return PW_CONTINUE;
}

static uint32_t test_grpc(stream_ctx *s) {
  root_ctx *r = root_of(s);
  const char *up = cfg(r, "grpc_upstream", "pwvm_grpc");
  const char *svc = cfg(r, "grpc_service", "pwvm.test.Echo");
  const char *method = cfg(r, "grpc_method", "Say");
  uint32_t timeout = pw_atou(cfg(r, "grpc_timeout_ms", "5000"), 5000);
  char *mode = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-mode", "call");
  char *msg = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-message", "ping");
  pw_pair md[1] = {{PW_LIT("x-pwvm-grpc-meta"), PW_LIT("1")}};
  size_t ms = 0;
  char *mb = pw_serialize_pairs(md, 1, &ms);
  uint32_t token = 0, st;
  uint32_t result = PW_CONTINUE;
  int stream = strcmp(mode, "stream") == 0 || strcmp(mode, "close") == 0;
  if (stream)
    st = proxy_grpc_stream(up, strlen(up), svc, strlen(svc), method, strlen(method), mb, ms, &token);
  else
    st = proxy_grpc_call(up, strlen(up), svc, strlen(svc), method, strlen(method), mb, ms, msg, strlen(msg), timeout,
                         &token);
  free(mb);
  pw_logf(PW_INFO, LOGP "grpc %s dispatch status=%u token=%u", mode, (unsigned)st, (unsigned)token);
  req_header_u("x-pwvm-grpc-dispatch", st);
  if (st == PW_OK) {
    if (strcmp(mode, "cancel") == 0) {
      req_header_u("x-pwvm-grpc-cancel", proxy_grpc_cancel(token));
    } else if (strcmp(mode, "close") == 0) {
      req_header_u("x-pwvm-grpc-close", proxy_grpc_close(token));
    } else {
      pending *p = add_pending(token, CALL_GRPC, s->id);
      if (stream) {
        uint32_t a = proxy_grpc_send(token, msg, strlen(msg), 0);
        uint32_t b = proxy_grpc_send(token, PW_LIT("end"), 1);
        p->grpc_send_status = pw_fmt("%u,%u", (unsigned)a, (unsigned)b);
      }
      result = PW_PAUSE;
    }
  }
  free(mode);
  free(msg);
  return result;
}

static uint32_t test_misc(stream_ctx *s) {
  char *t;
  uint32_t level = 0;
  uint32_t st = proxy_get_log_level(&level);
  t = st == PW_OK ? pw_fmt("%u", (unsigned)level) : pw_fmt("!%u", (unsigned)st);
  resp_header(s, "x-pwvm-log-level", t);
  free(t);
  uint64_t now = 0;
  st = proxy_get_current_time_nanoseconds(&now);
  t = st == PW_OK ? pw_strndup(now ? "nonzero" : "zero", now ? 7 : 4) : pw_fmt("!%u", (unsigned)st);
  resp_header(s, "x-pwvm-time", t);
  free(t);
  uint32_t code = 0;
  const char *msg = NULL;
  size_t msg_size = 0;
  st = proxy_get_status(&code, &msg, &msg_size);
  t = st == PW_OK ? pw_fmt("%u", (unsigned)code) : pw_fmt("!%u", (unsigned)st);
  free((void *)msg);
  resp_header(s, "x-pwvm-get-status", t);
  free(t);
  resp_header_u(s, "x-pwvm-clear-route-cache", proxy_clear_route_cache());
  size_t bsize = 0;
  uint32_t flags = 0;
  resp_header_u(s, "x-pwvm-buffer-status", proxy_get_buffer_status(PW_BUF_HTTP_REQUEST_BODY, &bsize, &flags));
  return PW_CONTINUE;
}

static uint32_t test_log(stream_ctx *s) {
  char statuses[64];
  size_t off = 0;
  for (uint32_t lvl = 0; lvl <= 5; lvl++) {
    uint32_t st = pw_logf(lvl, LOGP "log level %u", (unsigned)lvl);
    off += (size_t)snprintf(statuses + off, sizeof(statuses) - off, lvl ? ",%u" : "%u", (unsigned)st);
  }
  resp_header(s, "x-pwvm-log", statuses);
  return PW_CONTINUE;
}

static uint32_t test_local(stream_ctx *s) {
  (void)s;
  char *code = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-local-status", "200");
  char *body = hdr_or(PW_MAP_REQUEST_HEADERS, "x-pwvm-local-body", "local");
  pw_pair h[1] = {{PW_LIT("x-pwvm-local"), PW_LIT("1")}};
  size_t hs = 0;
  char *hb = pw_serialize_pairs(h, 1, &hs);
  uint32_t st = proxy_send_local_response(pw_atou(code, 200), PW_LIT("pwvm_local"), body, strlen(body), hb, hs,
                                          PW_GRPC_STATUS_NONE);
  pw_logf(PW_INFO, LOGP "local response %s status=%u", code, (unsigned)st);
  free(hb);
  free(code);
  free(body);
  return PW_PAUSE;
}

static uint32_t test_close(stream_ctx *s) {
  (void)s;
  uint32_t st = proxy_close_stream(PW_STREAM_REQUEST);
  pw_logf(PW_INFO, LOGP "close_stream status=%u", (unsigned)st);
  return PW_PAUSE;
}

/* ------------------------------------------------------------------ */
/* HTTP stream callbacks                                               */
/* ------------------------------------------------------------------ */

PWVM_EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers,
                                                                        uint32_t end_of_stream) {
  stream_ctx *s = find_stream(context_id);
  if (!s) return PW_CONTINUE;
  root_ctx *r = root_of(s);
  char *test = pw_get_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-test", NULL);
  const char *t = test ? test : cfg(r, "test", "");
  size_t tl = strlen(t);
  if (tl > sizeof(s->test) - 1) tl = sizeof(s->test) - 1;
  memcpy(s->test, t, tl);
  s->test[tl] = 0;
  free(test);
  pw_logf(PW_INFO, LOGP "request headers context=%u n=%u eos=%u test=%s", (unsigned)context_id, (unsigned)num_headers,
          (unsigned)end_of_stream, s->test);

  if (!strcmp(s->test, "headers")) return test_headers(s);
  if (!strcmp(s->test, "auth")) return test_auth(s);
  if (!strcmp(s->test, "body")) return test_body(s);
  if (!strcmp(s->test, "callout")) return test_callout(s);
  if (!strcmp(s->test, "shared")) return test_shared(s);
  if (!strcmp(s->test, "queue")) return test_queue(s);
  if (!strcmp(s->test, "metrics")) return test_metrics(s);
  if (!strcmp(s->test, "properties")) return test_properties(s);
  if (!strcmp(s->test, "foreign")) return test_foreign(s);
  if (!strcmp(s->test, "grpc")) return test_grpc(s);
  if (!strcmp(s->test, "misc")) return test_misc(s);
  if (!strcmp(s->test, "log")) return test_log(s);
  if (!strcmp(s->test, "local")) return test_local(s);
  if (!strcmp(s->test, "close")) return test_close(s);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t context_id, uint32_t body_size,
                                                                  uint32_t end_of_stream) {
  stream_ctx *s = find_stream(context_id);
  if (!s || !s->body_request) return PW_CONTINUE;
  return body_chunk(s, PW_BUF_HTTP_REQUEST_BODY, s->req_body_mode, &s->req_body_chunks, body_size, end_of_stream);
}

PWVM_EXPORT(proxy_on_request_trailers) uint32_t proxy_on_request_trailers(uint32_t context_id, uint32_t num_trailers) {
  stream_ctx *s = find_stream(context_id);
  if (s && !strcmp(s->test, "headers")) {
    pw_add_header(PW_MAP_REQUEST_TRAILERS, "x-pwvm-request-trailer", "1");
    pw_logf(PW_INFO, LOGP "request trailers n=%u", (unsigned)num_trailers);
  }
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers,
                                                                          uint32_t end_of_stream) {
  stream_ctx *s = find_stream(context_id);
  if (!s) return PW_CONTINUE;
  (void)end_of_stream;
  for (hdr *h = s->resp_headers; h; h = h->next) pw_add_header(PW_MAP_RESPONSE_HEADERS, h->name, h->value);
  if (!strcmp(s->test, "headers")) {
    /* Rewrite the whole map: drop x-pwvm-drop, append x-pwvm-set-pairs: <original count>. */
    const char *data = NULL;
    size_t size = 0;
    uint32_t st = proxy_get_header_map_pairs(PW_MAP_RESPONSE_HEADERS, &data, &size);
    pw_pair in[MAX_PAIRS], out[MAX_PAIRS + 1];
    int n = (st == PW_OK && data) ? pw_parse_pairs(data, size, in, MAX_PAIRS) : 0;
    if (n < 0) n = 0;
    int m = 0;
    for (int i = 0; i < n; i++)
      if (!pw_ieq(in[i].key, in[i].key_len, PW_LIT("x-pwvm-drop"))) out[m++] = in[i];
    char cnt[16];
    snprintf(cnt, sizeof(cnt), "%d", n);
    out[m].key = "x-pwvm-set-pairs";
    out[m].key_len = 16;
    out[m].value = cnt;
    out[m].value_len = strlen(cnt);
    m++;
    size_t os = 0;
    char *ob = pw_serialize_pairs(out, m, &os);
    uint32_t ss = proxy_set_header_map_pairs(PW_MAP_RESPONSE_HEADERS, ob, os);
    free(ob);
    free((void *)data);
    pw_logf(PW_INFO, LOGP "response headers n=%u rewritten pairs=%d status=%u", (unsigned)num_headers, m,
            (unsigned)ss);
  }
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_response_body) uint32_t proxy_on_response_body(uint32_t context_id, uint32_t body_size,
                                                                    uint32_t end_of_stream) {
  stream_ctx *s = find_stream(context_id);
  if (!s || !s->body_response) return PW_CONTINUE;
  return body_chunk(s, PW_BUF_HTTP_RESPONSE_BODY, s->resp_body_mode, &s->resp_body_chunks, body_size, end_of_stream);
}

PWVM_EXPORT(proxy_on_response_trailers) uint32_t proxy_on_response_trailers(uint32_t context_id, uint32_t num_trailers) {
  stream_ctx *s = find_stream(context_id);
  if (s && !strcmp(s->test, "headers")) {
    pw_add_header(PW_MAP_RESPONSE_TRAILERS, "x-pwvm-trailer", "1");
    pw_logf(PW_INFO, LOGP "response trailers n=%u", (unsigned)num_trailers);
  }
  return PW_CONTINUE;
}

/* ------------------------------------------------------------------ */
/* HTTP call and gRPC callbacks (delivered to the root context)        */
/* ------------------------------------------------------------------ */

PWVM_EXPORT(proxy_on_http_call_response) void proxy_on_http_call_response(uint32_t context_id, uint32_t token,
                                                                          uint32_t num_headers, uint32_t body_size,
                                                                          uint32_t num_trailers) {
  pending *p = find_pending(token);
  if (!p || p->kind == CALL_GRPC) {
    pw_logf(PW_WARN, LOGP "unknown http call token=%u context=%u", (unsigned)token, (unsigned)context_id);
    return;
  }
  char *status = pw_get_header(PW_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status", NULL);
  size_t blen = 0;
  uint32_t bst = 0;
  char *body = body_size ? pw_get_buffer(PW_BUF_HTTP_CALL_RESPONSE_BODY, body_size, &blen, &bst) : NULL;
  char *pbody = pw_printable(body ? body : "", blen, 256);
  free(body);

  if (p->kind == CALL_TICK) {
    pw_logf(PW_INFO, LOGP "tick callout response status=%s body=%s", status ? status : "", pbody);
    proxy_set_shared_data(PW_LIT("pwvm.tick.callout"), status ? status : "", status ? strlen(status) : 0, 0);
    drop_pending(p);
    free(status);
    free(pbody);
    return;
  }

  uint32_t stream_id = p->stream_id;
  drop_pending(p);
  uint32_t code = 0;
  const char *msg = NULL;
  size_t msg_size = 0;
  uint32_t gs = proxy_get_status(&code, &msg, &msg_size);
  free((void *)msg);
  char *value = pw_get_header(PW_MAP_HTTP_CALL_RESPONSE_HEADERS, "x-pwvm-callout-value", NULL);

  if (!find_stream(stream_id)) {
    pw_logf(PW_WARN, LOGP "callout response for gone context=%u", (unsigned)stream_id);
  } else {
    uint32_t es = proxy_set_effective_context(stream_id);
    if (num_headers == 0) {
      uint32_t ls = proxy_send_local_response(503, PW_LIT("pwvm_callout_failed"), PW_LIT("callout failed"), NULL, 0,
                                              PW_GRPC_STATUS_NONE);
      pw_logf(PW_INFO, LOGP "callout failed token=%u effective=%u local=%u", (unsigned)token, (unsigned)es,
              (unsigned)ls);
    } else {
      pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-callout-status", status ? status : "");
      if (value) pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-callout-value", value);
      pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-callout-body", pbody);
      req_header_u("x-pwvm-callout-headers", num_headers);
      req_header_u("x-pwvm-callout-trailers", num_trailers);
      char *gsv = gs == PW_OK ? pw_fmt("%u", (unsigned)code) : pw_fmt("!%u", (unsigned)gs);
      pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-callout-code", gsv);
      free(gsv);
      uint32_t cs = proxy_continue_stream(PW_STREAM_REQUEST);
      pw_logf(PW_INFO, LOGP "callout response token=%u status=%s effective=%u continue=%u", (unsigned)token,
              status ? status : "", (unsigned)es, (unsigned)cs);
    }
  }
  free(value);
  free(status);
  free(pbody);
}

PWVM_EXPORT(proxy_on_grpc_receive_initial_metadata) void proxy_on_grpc_receive_initial_metadata(uint32_t context_id,
                                                                                                uint32_t token,
                                                                                                uint32_t n) {
  pending *p = find_pending(token);
  pw_logf(PW_INFO, LOGP "grpc initial metadata token=%u n=%u", (unsigned)token, (unsigned)n);
  if (!p || p->kind != CALL_GRPC) {
    pw_logf(PW_WARN, LOGP "unknown grpc token=%u context=%u", (unsigned)token, (unsigned)context_id);
    return;
  }
  p->grpc_initial = n;
}

PWVM_EXPORT(proxy_on_grpc_receive) void proxy_on_grpc_receive(uint32_t context_id, uint32_t token, uint32_t size) {
  pending *p = find_pending(token);
  pw_logf(PW_INFO, LOGP "grpc receive token=%u size=%u", (unsigned)token, (unsigned)size);
  if (!p || p->kind != CALL_GRPC) {
    pw_logf(PW_WARN, LOGP "unknown grpc token=%u context=%u", (unsigned)token, (unsigned)context_id);
    return;
  }
  size_t len = 0;
  uint32_t st = 0;
  char *m = pw_get_buffer(PW_BUF_GRPC_RECEIVE_BUFFER, size, &len, &st);
  free(p->grpc_last);
  p->grpc_last = pw_printable(m ? m : "", len, 256);
  free(m);
  p->grpc_messages++;
}

PWVM_EXPORT(proxy_on_grpc_receive_trailing_metadata) void proxy_on_grpc_receive_trailing_metadata(uint32_t context_id,
                                                                                                  uint32_t token,
                                                                                                  uint32_t n) {
  pending *p = find_pending(token);
  pw_logf(PW_INFO, LOGP "grpc trailing metadata token=%u n=%u", (unsigned)token, (unsigned)n);
  if (!p || p->kind != CALL_GRPC) {
    pw_logf(PW_WARN, LOGP "unknown grpc token=%u context=%u", (unsigned)token, (unsigned)context_id);
    return;
  }
  p->grpc_trailing = n;
}

PWVM_EXPORT(proxy_on_grpc_close) void proxy_on_grpc_close(uint32_t context_id, uint32_t token, uint32_t status_code) {
  pending *p = find_pending(token);
  pw_logf(PW_INFO, LOGP "grpc close token=%u status=%u", (unsigned)token, (unsigned)status_code);
  char sc[16];
  int scl = snprintf(sc, sizeof(sc), "%u", (unsigned)status_code);
  proxy_set_shared_data(PW_LIT("pwvm.grpc.last_close"), sc, (size_t)scl, 0);
  if (!p || p->kind != CALL_GRPC) {
    pw_logf(PW_WARN, LOGP "unknown grpc token=%u context=%u", (unsigned)token, (unsigned)context_id);
    return;
  }
  uint32_t code = 0;
  const char *msg = NULL;
  size_t msg_size = 0;
  uint32_t gs = proxy_get_status(&code, &msg, &msg_size);
  char *pmsg = pw_printable(msg ? msg : "", msg ? msg_size : 0, 256);
  free((void *)msg);
  uint32_t stream_id = p->stream_id;
  if (find_stream(stream_id)) {
    uint32_t es = proxy_set_effective_context(stream_id);
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-status", sc);
    req_header_u("x-pwvm-grpc-messages", p->grpc_messages);
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-last-message", p->grpc_last ? p->grpc_last : "");
    req_header_u("x-pwvm-grpc-initial-metadata", p->grpc_initial);
    req_header_u("x-pwvm-grpc-trailing-metadata", p->grpc_trailing);
    char *gsv = gs == PW_OK ? pw_fmt("%u", (unsigned)code) : pw_fmt("!%u", (unsigned)gs);
    pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-get-status", gsv);
    free(gsv);
    if (gs == PW_OK) pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-get-status-message", pmsg);
    if (p->grpc_send_status) pw_add_header(PW_MAP_REQUEST_HEADERS, "x-pwvm-grpc-send", p->grpc_send_status);
    uint32_t cs = proxy_continue_stream(PW_STREAM_REQUEST);
    pw_logf(PW_INFO, LOGP "grpc resumed context=%u effective=%u continue=%u", (unsigned)stream_id, (unsigned)es,
            (unsigned)cs);
  }
  free(pmsg);
  drop_pending(p);
}
