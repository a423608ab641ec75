/*
 * pwvm_util.h - small helpers shared by the proxywasm-vm C test plugins:
 * formatted logging, header-map (de)serialization, "key=value" configuration,
 * string formatting. Header-only (static functions), plain C11.
 */
#ifndef PWVM_UTIL_H
#define PWVM_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm_abi.h"

#define PW_LIT(s) (s), (sizeof(s) - 1)

/* ---------- logging ---------- */

static char pw_log_buf[2048];

__attribute__((format(printf, 2, 3))) static uint32_t pw_logf(uint32_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(pw_log_buf, sizeof(pw_log_buf), fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof(pw_log_buf)) n = sizeof(pw_log_buf) - 1;
  return proxy_log(level, pw_log_buf, (size_t)n);
}

/* ---------- strings ---------- */

/* Heap copy of (p, n) with a terminating NUL. */
static char *pw_strndup(const char *p, size_t n) {
  char *s = (char *)malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* Heap formatted string. */
__attribute__((format(printf, 1, 2))) static char *pw_fmt(const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof(tmp)) n = sizeof(tmp) - 1;
  return pw_strndup(tmp, (size_t)n);
}

/* Heap copy with bytes outside 0x20..0x7e replaced by '?', at most max bytes. */
static char *pw_printable(const char *p, size_t n, size_t max) {
  if (n > max) n = max;
  char *s = pw_strndup(p, n);
  if (!s) return NULL;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) s[i] = '?';
  return s;
}

static int pw_ieq(const char *a, size_t an, const char *b, size_t bn) {
  if (an != bn) return 0;
  for (size_t i = 0; i < an; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
    if (x != y) return 0;
  }
  return 1;
}

static uint32_t pw_atou(const char *s, uint32_t dflt) {
  if (!s || !*s) return dflt;
  uint32_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return dflt;
    v = v * 10u + (uint32_t)(*s - '0');
  }
  return v;
}

static uint32_t pw_rd32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
}

static void pw_wr32(char *p, uint32_t v) {
  unsigned char *u = (unsigned char *)p;
  u[0] = (unsigned char)v;
  u[1] = (unsigned char)(v >> 8);
  u[2] = (unsigned char)(v >> 16);
  u[3] = (unsigned char)(v >> 24);
}

/* ---------- header maps ----------
 * Serialized form: u32 count, count x (u32 key_len, u32 value_len),
 * then for each pair: key bytes, NUL, value bytes, NUL. All little endian.
 */
typedef struct {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} pw_pair;

/* Parses buf into pairs (pointing into buf). Returns the number of pairs, or -1 when malformed.
 * An empty buffer (size 0) or a single 0 byte is an empty map. */
static int pw_parse_pairs(const char *buf, size_t size, pw_pair *pairs, int max_pairs) {
  if (size == 0 || (size == 1 && buf[0] == 0)) return 0;
  if (size < 4) return -1;
  uint32_t n = pw_rd32(buf);
  if (n > (uint32_t)max_pairs || (size - 4) / 8 < n) return -1;
  size_t off = 4 + (size_t)n * 8;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t kl = pw_rd32(buf + 4 + i * 8), vl = pw_rd32(buf + 8 + i * 8);
    if (kl > size || vl > size || off + kl + 1 + vl + 1 > size) return -1;
    pairs[i].key = buf + off;
    pairs[i].key_len = kl;
    off += kl + 1;
    pairs[i].value = buf + off;
    pairs[i].value_len = vl;
    off += vl + 1;
  }
  return (int)n;
}

/* Serializes pairs into a malloc'd buffer; *out_size receives its size. */
static char *pw_serialize_pairs(const pw_pair *pairs, int n, size_t *out_size) {
  size_t size = 4 + (size_t)n * 8;
  for (int i = 0; i < n; i++) size += pairs[i].key_len + pairs[i].value_len + 2;
  char *buf = (char *)malloc(size);
  if (!buf) return NULL;
  pw_wr32(buf, (uint32_t)n);
  size_t off = 4 + (size_t)n * 8;
  for (int i = 0; i < n; i++) {
    pw_wr32(buf + 4 + i * 8, (uint32_t)pairs[i].key_len);
    pw_wr32(buf + 8 + i * 8, (uint32_t)pairs[i].value_len);
    memcpy(buf + off, pairs[i].key, pairs[i].key_len);
    off += pairs[i].key_len;
    buf[off++] = 0;
    memcpy(buf + off, pairs[i].value, pairs[i].value_len);
    off += pairs[i].value_len;
    buf[off++] = 0;
  }
  *out_size = size;
  return buf;
}

static uint32_t pw_add_header(uint32_t map, const char *key, const char *value) {
  return proxy_add_header_map_value(map, key, strlen(key), value, strlen(value));
}

/* Gets a header value as a malloc'd NUL-terminated string (NULL if not OK); *status gets the host status. */
static char *pw_get_header(uint32_t map, const char *key, uint32_t *status) {
  const char *data = NULL;
  size_t size = 0;
  uint32_t s = proxy_get_header_map_value(map, key, strlen(key), &data, &size);
  if (status) *status = s;
  if (s != PW_OK) return NULL;
  char *v = pw_strndup(data ? data : "", data ? size : 0);
  free((void *)data);
  return v;
}

/* Reads a whole buffer (start 0, up to max) as a malloc'd NUL-terminated string (size in *len). */
static char *pw_get_buffer(uint32_t type, uint32_t max, size_t *len, uint32_t *status) {
  const char *data = NULL;
  size_t size = 0;
  uint32_t s = proxy_get_buffer_bytes(type, 0, max, &data, &size);
  if (status) *status = s;
  if (s != PW_OK) {
    if (len) *len = 0;
    return NULL;
  }
  /* An empty buffer may leave the out-pointers untouched. */
  char *v = pw_strndup(data ? data : "", data ? size : 0);
  if (len) *len = data ? size : 0;
  free((void *)data);
  return v;
}

/* ---------- "key=value" configuration ----------
 * One entry per line; leading/trailing spaces and tabs trimmed around keys
 * and values; empty lines and lines starting with '#' ignored; the first
 * '=' separates key and value; a later duplicate key overrides an earlier one.
 */
#define PW_MAX_CONFIG 64
typedef struct {
  int n;
  char *keys[PW_MAX_CONFIG];
  char *values[PW_MAX_CONFIG];
} pw_config;

static void pw_config_clear(pw_config *c) {
  for (int i = 0; i < c->n; i++) {
    free(c->keys[i]);
    free(c->values[i]);
  }
  c->n = 0;
}

static void pw_trim(const char **b, const char **e) {
  while (*b < *e && (**b == ' ' || **b == '\t' || **b == '\r')) (*b)++;
  while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r')) (*e)--;
}

static const char *pw_config_get(const pw_config *c, const char *key, const char *dflt) {
  for (int i = c->n - 1; i >= 0; i--)
    if (strcmp(c->keys[i], key) == 0) return c->values[i];
  return dflt;
}

static void pw_config_parse(pw_config *c, const char *text, size_t len) {
  pw_config_clear(c);
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *lb = p, *le = eol;
    pw_trim(&lb, &le);
    if (lb < le && *lb != '#') {
      const char *eq = memchr(lb, '=', (size_t)(le - lb));
      if (eq && c->n < PW_MAX_CONFIG) {
        const char *kb = lb, *ke = eq, *vb = eq + 1, *ve = le;
        pw_trim(&kb, &ke);
        pw_trim(&vb, &ve);
        c->keys[c->n] = pw_strndup(kb, (size_t)(ke - kb));
        c->values[c->n] = pw_strndup(vb, (size_t)(ve - vb));
        c->n++;
      }
    }
    p = eol + 1;
  }
}

#endif /* PWVM_UTIL_H */
