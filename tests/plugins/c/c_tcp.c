/*
 * c_tcp - proxywasm-vm test plugin (C, Proxy-Wasm ABI 0.2.1): a TCP/network filter.
 *
 * Downstream data is uppercased in place (or the connection is closed when
 * a marker is seen); upstream data gets a prefix prepended. With
 * line_mode=1 downstream data is buffered (PAUSE) until it ends with '\n'.
 * Contract: tests/plugins/README.md.
 */
#include "pwvm_util.h"

#define LOGP "c_tcp: "

PWVM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PWVM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

static pw_config g_config;

typedef struct conn {
  uint32_t id;
  uint32_t down_bytes;
  uint32_t up_bytes;
  uint32_t down_chunks;
  uint32_t up_chunks;
  struct conn *next;
} conn;

static conn *g_conns;

static conn *find_conn(uint32_t id) {
  for (conn *c = g_conns; c; c = c->next)
    if (c->id == id) return c;
  return NULL;
}

PWVM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t config_size) {
  size_t len = 0;
  uint32_t st = 0;
  char *text = config_size ? pw_get_buffer(PW_BUF_PLUGIN_CONFIGURATION, config_size, &len, &st) : NULL;
  pw_config_parse(&g_config, text ? text : "", len);
  free(text);
  pw_logf(PW_INFO, LOGP "configured root=%u keys=%d", (unsigned)root_id, g_config.n);
  return 1;
}

PWVM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {
  if (parent_id == 0) return;
  conn *c = (conn *)calloc(1, sizeof(conn));
  c->id = context_id;
  c->next = g_conns;
  g_conns = c;
}

PWVM_EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t context_id) {
  pw_logf(PW_INFO, LOGP "new connection context=%u", (unsigned)context_id);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_downstream_data) uint32_t proxy_on_downstream_data(uint32_t context_id, uint32_t data_size,
                                                                        uint32_t end_of_stream) {
  conn *c = find_conn(context_id);
  pw_logf(PW_INFO, LOGP "downstream data context=%u size=%u eos=%u", (unsigned)context_id, (unsigned)data_size,
          (unsigned)end_of_stream);
  if (data_size == 0) return PW_CONTINUE;
  size_t len = 0;
  uint32_t st = 0;
  char *data = pw_get_buffer(PW_BUF_DOWNSTREAM_DATA, data_size, &len, &st);
  if (!data) {
    pw_logf(PW_WARN, LOGP "downstream read status=%u", (unsigned)st);
    return PW_CONTINUE;
  }
  const char *marker = pw_config_get(&g_config, "close_marker", "QUIT");
  if (*marker && strstr(data, marker)) {
    uint32_t cs = proxy_close_stream(PW_STREAM_DOWNSTREAM);
    pw_logf(PW_INFO, LOGP "close marker seen context=%u close=%u", (unsigned)context_id, (unsigned)cs);
    free(data);
    return PW_PAUSE;
  }
  if (strcmp(pw_config_get(&g_config, "line_mode", "0"), "1") == 0 && !end_of_stream &&
      (len == 0 || data[len - 1] != '\n')) {
    free(data);
    return PW_PAUSE; /* keep buffering until a full line arrived */
  }
  for (size_t i = 0; i < len; i++)
    if (data[i] >= 'a' && data[i] <= 'z') data[i] = (char)(data[i] - 32);
  uint32_t ws = proxy_set_buffer_bytes(PW_BUF_DOWNSTREAM_DATA, 0, (uint32_t)len, data, len);
  if (c) {
    c->down_bytes += (uint32_t)len;
    c->down_chunks++;
  }
  pw_logf(PW_INFO, LOGP "downstream uppercased bytes=%u status=%u", (unsigned)len, (unsigned)ws);
  free(data);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_upstream_data) uint32_t proxy_on_upstream_data(uint32_t context_id, uint32_t data_size,
                                                                    uint32_t end_of_stream) {
  conn *c = find_conn(context_id);
  pw_logf(PW_INFO, LOGP "upstream data context=%u size=%u eos=%u", (unsigned)context_id, (unsigned)data_size,
          (unsigned)end_of_stream);
  if (data_size == 0) return PW_CONTINUE;
  const char *prefix = pw_config_get(&g_config, "upstream_prefix", "up:");
  uint32_t ws = proxy_set_buffer_bytes(PW_BUF_UPSTREAM_DATA, 0, 0, prefix, strlen(prefix));
  if (c) {
    c->up_bytes += data_size;
    c->up_chunks++;
  }
  pw_logf(PW_INFO, LOGP "upstream prefixed status=%u", (unsigned)ws);
  return PW_CONTINUE;
}

PWVM_EXPORT(proxy_on_downstream_connection_close) void proxy_on_downstream_connection_close(uint32_t context_id,
                                                                                            uint32_t peer_type) {
  conn *c = find_conn(context_id);
  pw_logf(PW_INFO, LOGP "downstream close context=%u peer=%u down_bytes=%u", (unsigned)context_id,
          (unsigned)peer_type, c ? (unsigned)c->down_bytes : 0u);
}

PWVM_EXPORT(proxy_on_upstream_connection_close) void proxy_on_upstream_connection_close(uint32_t context_id,
                                                                                        uint32_t peer_type) {
  conn *c = find_conn(context_id);
  pw_logf(PW_INFO, LOGP "upstream close context=%u peer=%u up_bytes=%u", (unsigned)context_id, (unsigned)peer_type,
          c ? (unsigned)c->up_bytes : 0u);
}

PWVM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) { return 1; }

PWVM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
  conn *c = find_conn(context_id);
  if (c)
    pw_logf(PW_INFO, LOGP "on_log context=%u down_chunks=%u up_chunks=%u", (unsigned)context_id,
            (unsigned)c->down_chunks, (unsigned)c->up_chunks);
}

PWVM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {
  for (conn **pp = &g_conns; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == context_id) {
      conn *c = *pp;
      *pp = c->next;
      free(c);
      return;
    }
  }
}
